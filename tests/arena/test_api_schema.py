"""The generated OpenAPI document: complete, strict, and what the README documents."""

from __future__ import annotations

import json
import re
import typing
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from arena import schemas
from arena.models import Vote

from ..conftest import check_api_answer

README = Path(__file__).resolve().parents[2] / "README.md"
# Request shapes may be lenient; every answer must forbid what it does not declare.
INPUTS = {"BattleIn", "VoteIn", "Paging", "BoardQuery", "StatsQuery"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    from arena.urls import json_api

    return json.loads(json.dumps(json_api.get_openapi_schema()))


def test_every_answer_schema_forbids_undeclared_fields(document: dict[str, Any]) -> None:
    loose = [
        name
        for name, schema in document["components"]["schemas"].items()
        if name not in INPUTS
        and schema.get("type") == "object"
        and schema.get("additionalProperties") is not False
    ]
    assert not loose


def test_every_error_status_of_every_operation_has_the_one_error_shape(
    document: dict[str, Any],
) -> None:
    for route, methods in document["paths"].items():
        for method, operation in methods.items():
            for status, response in operation["responses"].items():
                if status == "304":  # Not Modified has no body by definition
                    assert "content" not in response, (route, method)
                    continue
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert (ref == "#/components/schemas/Error") == (int(status) >= 400), (
                    route,
                    method,
                    status,
                )


def test_the_readme_documents_exactly_the_served_paths(document: dict[str, Any]) -> None:
    text = README.read_text(encoding="utf-8")
    documented = set()
    for path in re.findall(r"`(?:GET|POST) (/api/v1/[^`? ]*)", text):
        documented.add(re.sub(r"<\w+>", "{}", path))
    for path in re.findall(r", `(/api/v1/[^`? ]*)`", text):
        documented.add(re.sub(r"<\w+>", "{}", path))
    served = {re.sub(r"\{\w+\}", "{}", path) for path in document["paths"]}
    assert documented - {"/api/v1/openapi.json"} == served


def test_the_vote_choices_are_the_vote_models_choices() -> None:
    assert set(typing.get_args(schemas.Choice)) == set(Vote.Choice.values)


class Answer:
    def __init__(self, status: int, body: Any) -> None:
        self.status_code, self.content = status, json.dumps(body).encode()


def test_the_answer_check_refuses_an_undeclared_field() -> None:
    good = {"csrf_token": "x"}
    check_api_answer("/api/v1/session", "GET", Answer(200, good))
    with pytest.raises(jsonschema.ValidationError, match="Additional properties"):
        check_api_answer("/api/v1/session", "GET", Answer(200, good | {"debug": 1}))


def test_the_answer_check_refuses_an_error_in_another_shape() -> None:
    with pytest.raises(jsonschema.ValidationError):
        check_api_answer("/api/v1/stats", "GET", Answer(400, {"detail": "bad"}))
    with pytest.raises(jsonschema.ValidationError):
        check_api_answer("/api/v1/nowhere", "GET", Answer(404, {"detail": "Not Found"}))


def test_the_answer_check_refuses_a_success_status_the_route_does_not_declare() -> None:
    with pytest.raises(AssertionError, match="does not declare"):
        check_api_answer("/api/v1/session", "GET", Answer(201, {"csrf_token": "x"}))
