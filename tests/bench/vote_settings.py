"""Settings for bench_vote_path.py only: the project's settings, plus one URL (vote_urls) with a
bare-insert view behind the same middleware. Never used outside that benchmark."""

from arena.settings import *  # noqa: F403

ROOT_URLCONF = "tests.bench.vote_urls"
