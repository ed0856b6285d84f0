"""The OpenAPI 3.1 description of the JSON API, served at /api/v1/openapi.json.

Written by hand, next to the views it describes; a test checks the live responses against it.
"""

from __future__ import annotations

from typing import Any

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}

BATTLE = {
    "type": "object",
    "required": ["id", "status", "progress"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "status": {"type": "string", "enum": ["generating", "ready", "voted", "void"]},
        "progress": {"type": "integer", "minimum": 0, "maximum": 100},
        "images": {
            "type": "object",
            "description": "Present once both images are ready; sides only, never names.",
            "required": ["left", "right"],
            "properties": {
                "left": {"type": "string", "format": "uri"},
                "right": {"type": "string", "format": "uri"},
            },
        },
        "message": {"type": "string", "description": "Why a void battle ended; names no model."},
        "vote": {"type": "string", "enum": ["left", "right", "tie", "both_bad"]},
        "models": {
            "type": "object",
            "description": "Present only after the vote.",
            "required": ["left", "right"],
            "properties": {"left": {"type": "string"}, "right": {"type": "string"}},
        },
    },
}

SNAPSHOT = {
    "type": "object",
    "required": ["id", "category", "created_at", "method", "interval_method", "votes_used"],
    "properties": {
        "id": {"type": "integer"},
        "category": {"type": "string", "description": "'overall' or a category"},
        "created_at": {"type": "string", "format": "date-time"},
        "method": {"type": "string"},
        "interval_method": {"type": "string", "enum": ["sandwich", "bootstrap"]},
        "bootstrap_rounds": {"type": "integer"},
        "seed": {"type": ["integer", "null"]},
        "resampled_from": {
            "type": ["integer", "null"],
            "description": "Bootstrap boards: the board whose rounds this one extended",
        },
        "resample_steps": {
            "type": "integer",
            "description": "Extensions since the bootstrap rounds were last drawn afresh",
        },
        "level": {"type": "number"},
        "votes_used": {"type": "integer"},
        "both_bad_as_tie": {"type": "boolean"},
        "anchor": {"type": "string"},
        "components": {"type": "integer"},
        "code_version": {"type": "string"},
    },
}

BOARD_ROW = {
    "type": "object",
    "required": ["rank", "model", "key", "rating", "lower", "upper", "votes", "win_rate"],
    "properties": {
        "rank": {"type": "integer", "description": "Rank (UB)"},
        "model": {"type": "string"},
        "key": {"type": "string"},
        "version": {"type": "string"},
        "organisation": {"type": "string"},
        "licence": {"type": "string"},
        "in_house": {"type": "boolean"},
        "rating": {"type": "number"},
        "lower": {"type": "number"},
        "upper": {"type": "number"},
        "minus": {"type": "number"},
        "plus": {"type": "number"},
        "votes": {"type": "integer"},
        "win_rate": {"type": "number"},
        "online_elo": {"type": ["number", "null"]},
        "provisional": {"type": "boolean"},
    },
}


MODEL_VERSION = {
    "type": "object",
    "required": ["version", "name", "enabled", "retired", "created_at"],
    "additionalProperties": False,
    "properties": {
        "version": {"type": "string"},
        "name": {"type": "string"},
        "enabled": {"type": "boolean", "description": "Drawn into new battles"},
        "retired": {"type": "boolean", "description": "Superseded by a newer version"},
        "created_at": {"type": "string", "format": "date-time"},
    },
}

MODEL = {
    "type": "object",
    "required": [
        "key",
        "name",
        "organisation",
        "licence",
        "in_house",
        "current_version",
        "versions",
    ],
    "properties": {
        "key": {"type": "string"},
        "name": {"type": "string", "description": "Display name of the current version"},
        "organisation": {"type": "string"},
        "licence": {"type": "string"},
        "in_house": {"type": "boolean"},
        "current_version": {"type": "string"},
        "versions": {
            "type": "array",
            "description": "Newest first",
            "items": {"$ref": "#/components/schemas/ModelVersion"},
        },
    },
}

MODEL_DETAIL = {
    "allOf": [
        {"$ref": "#/components/schemas/Model"},
        {
            "type": "object",
            "required": ["rating", "snapshot"],
            "properties": {
                "rating": {
                    "description": "The newest version's row on the latest overall board",
                    "oneOf": [{"$ref": "#/components/schemas/BoardRow"}, {"type": "null"}],
                },
                "snapshot": {
                    "oneOf": [{"$ref": "#/components/schemas/Snapshot"}, {"type": "null"}],
                },
            },
        },
    ]
}

HISTORY_ROW = {
    "type": "object",
    "required": ["snapshot_id", "created_at", "version", "rank", "rating", "lower", "upper"],
    "additionalProperties": False,
    "properties": {
        "snapshot_id": {"type": "integer"},
        "created_at": {"type": "string", "format": "date-time"},
        "version": {"type": "string"},
        "rank": {"type": "integer", "description": "Rank (UB)"},
        "rating": {"type": ["number", "null"]},
        "lower": {"type": ["number", "null"]},
        "upper": {"type": ["number", "null"]},
        "votes": {"type": "integer"},
        "provisional": {"type": "boolean"},
    },
}

OUTCOMES = {
    "type": "object",
    "required": ["votes", "tie_share", "both_bad_share"],
    "additionalProperties": False,
    "properties": {
        "votes": {"type": "integer", "minimum": 0},
        "tie_share": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "both_bad_share": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
    },
}

STATS = {
    "type": "object",
    "description": "Live votes only (imported logs are not included). Counted votes are "
    "anonymous and not excluded, as on the boards.",
    "required": [
        "days",
        "votes_per_day",
        "total_votes",
        "counted_votes",
        "excluded_votes",
        "battles_voided",
        "outcomes",
    ],
    "additionalProperties": False,
    "properties": {
        "days": {"type": "integer"},
        "votes_per_day": {
            "type": "array",
            "description": "Counted votes per UTC day, oldest first, one entry per day",
            "items": {
                "type": "object",
                "required": ["date", "votes"],
                "additionalProperties": False,
                "properties": {
                    "date": {"type": "string", "format": "date"},
                    "votes": {"type": "integer", "minimum": 0},
                },
            },
        },
        "total_votes": {"type": "integer", "description": "Every vote, excluded ones too"},
        "counted_votes": {"type": "integer"},
        "excluded_votes": {"type": "integer"},
        "battles_voided": {"type": "integer"},
        "outcomes": {
            "type": "object",
            "required": ["overall", "categories"],
            "additionalProperties": False,
            "properties": {
                "overall": {"$ref": "#/components/schemas/Outcomes"},
                "categories": {
                    "type": "object",
                    "additionalProperties": {"$ref": "#/components/schemas/Outcomes"},
                },
            },
        },
    },
}


def _page(item_ref: str) -> dict[str, Any]:
    """A paginated list of ``item_ref`` items."""
    return {
        "type": "object",
        "required": ["count", "next", "previous", "results"],
        "additionalProperties": False,
        "properties": {
            "count": {"type": "integer", "minimum": 0},
            "next": {"type": ["string", "null"], "format": "uri"},
            "previous": {"type": ["string", "null"], "format": "uri"},
            "results": {"type": "array", "items": {"$ref": item_ref}},
        },
    }


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json({"$ref": "#/components/schemas/Error"}, description)


BATTLE_ID = {
    "name": "battle_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
}
MODEL_KEY = {"name": "key", "in": "path", "required": True, "schema": {"type": "string"}}
PAGINATION = [
    {
        "name": "page",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "default": 1},
    },
    {
        "name": "page_size",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
    },
]
CSRF: list[dict[str, list[str]]] = [{"csrfToken": [], "session": []}]

SCHEMA: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Image Arena API",
        "version": "1",
        "description": "Blind battles between text-to-image models, and the leaderboard. "
        "POSTs need the session cookie and the CSRF token from GET /api/v1/session.",
    },
    "components": {
        "schemas": {
            "Error": ERROR,
            "Battle": BATTLE,
            "Snapshot": SNAPSHOT,
            "BoardRow": BOARD_ROW,
            "ModelVersion": MODEL_VERSION,
            "Model": MODEL,
            "ModelDetail": MODEL_DETAIL,
            "HistoryRow": HISTORY_ROW,
            "ModelPage": _page("#/components/schemas/Model"),
            "HistoryPage": _page("#/components/schemas/HistoryRow"),
            "Outcomes": OUTCOMES,
            "Stats": STATS,
        },
        "securitySchemes": {
            "session": {"type": "apiKey", "in": "cookie", "name": "sessionid"},
            "csrfToken": {"type": "apiKey", "in": "header", "name": "X-CSRFToken"},
        },
    },
    "paths": {
        "/api/v1/session": {
            "get": {
                "summary": "Start a session and get the CSRF token",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["csrf_token"],
                            "properties": {"csrf_token": {"type": "string"}},
                        }
                    )
                },
            }
        },
        "/api/v1/battles": {
            "post": {
                "summary": "Start a battle for a prompt",
                "security": CSRF,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["prompt"],
                                "properties": {"prompt": {"type": "string", "minLength": 1}},
                            }
                        }
                    },
                },
                "responses": {
                    "201": _json({"$ref": "#/components/schemas/Battle"}, "Created"),
                    "400": _error("Empty, too long or otherwise unusable prompt"),
                    "403": _error("Missing or wrong CSRF token"),
                    "503": _error("Fewer than two models are enabled"),
                },
            }
        },
        "/api/v1/battles/{battle_id}": {
            "get": {
                "summary": "A battle's status and combined progress; images once ready",
                "parameters": [BATTLE_ID],
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/Battle"}),
                    "404": _error("No battle of this session has that id"),
                },
            }
        },
        "/api/v1/battles/{battle_id}/vote": {
            "post": {
                "summary": "Vote once; the answer reveals both models",
                "security": CSRF,
                "parameters": [BATTLE_ID],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["choice"],
                                "properties": {
                                    "choice": {
                                        "type": "string",
                                        "enum": ["left", "right", "tie", "both_bad"],
                                    }
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/Battle"}),
                    "400": _error("Unknown choice"),
                    "403": _error("Missing or wrong CSRF token"),
                    "404": _error("No battle of this session has that id"),
                    "409": _error("Already voted, not ready yet, or void"),
                },
            }
        },
        "/api/v1/leaderboard": {
            "get": {
                "summary": "The latest board, overall or for one category, or a past board by id",
                "parameters": [
                    {
                        "name": "category",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "snapshot",
                        "in": "query",
                        "required": False,
                        "description": "A snapshot id: that board, whatever its category",
                        "schema": {"type": "integer"},
                    },
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["snapshot", "rows"],
                            "properties": {
                                "snapshot": {
                                    "oneOf": [
                                        {"$ref": "#/components/schemas/Snapshot"},
                                        {"type": "null"},
                                    ]
                                },
                                "rows": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/BoardRow"},
                                },
                            },
                        }
                    ),
                    "400": _error("Unknown category, or a snapshot that is not an id"),
                    "404": _error("No snapshot has that id"),
                },
            }
        },
        "/api/v1/models": {
            "get": {
                "summary": "Every model key, with its versions; paginated",
                "parameters": PAGINATION,
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/ModelPage"}),
                    "400": _error("page or page_size is not a whole number in range"),
                    "404": _error("page is past the last page"),
                },
            }
        },
        "/api/v1/models/{key}": {
            "get": {
                "summary": "A model's details and its row on the latest overall board",
                "parameters": [MODEL_KEY],
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/ModelDetail"}),
                    "404": _error("No model has that key"),
                },
            }
        },
        "/api/v1/models/{key}/history": {
            "get": {
                "summary": "A model's overall rating and interval at each snapshot, newest "
                "first; paginated",
                "parameters": [MODEL_KEY, *PAGINATION],
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/HistoryPage"}),
                    "400": _error("page or page_size is not a whole number in range"),
                    "404": _error("No model has that key, or page is past the last page"),
                },
            }
        },
        "/api/v1/stats": {
            "get": {
                "summary": "Votes per day, share of ties and of both bad, voided battles",
                "parameters": [
                    {
                        "name": "days",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 366, "default": 30},
                    }
                ],
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/Stats"}),
                    "400": _error("days is not a whole number from 1 to 366"),
                },
            }
        },
    },
}
