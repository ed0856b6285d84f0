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
        "schemas": {"Error": ERROR, "Battle": BATTLE, "Snapshot": SNAPSHOT, "BoardRow": BOARD_ROW},
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
                "summary": "The latest board, overall or for one category",
                "parameters": [
                    {
                        "name": "category",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                    }
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
                    "400": _error("Unknown category"),
                },
            }
        },
    },
}
