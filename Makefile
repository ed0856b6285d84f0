# Shortcuts; the README's two commands are the source of truth.
PY ?= python3.11

.PHONY: run test lint
run:
	$(PY) deploy/dev.py run
test:
	$(PY) deploy/dev.py test
lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy .
