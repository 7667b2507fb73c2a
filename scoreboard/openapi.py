"""The OpenAPI 3.1 description of every `/api` route, served at /api/openapi.json.

A test compares its paths and methods with the application's route table, so the two cannot
drift apart.
"""

from __future__ import annotations

from typing import Any

from . import __version__
from .errors import ALL_CODES
from .formatting import DEFAULT_SCORE_FORMAT, SCORE_FORMAT_PATTERN


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_PROBLEM = {"$ref": "#/components/responses/Problem"}
_INT = {"type": "integer", "minimum": -(2**53 - 1), "maximum": 2**53 - 1}
# What validation.identifier and validation.text accept (schemathesis checks both ways).
_ID = {"type": "string", "pattern": r"^(?!\.{1,2}$)[A-Za-z0-9_.-]{1,64}$"}
_TITLE = {"type": "string", "minLength": 1, "maxLength": 200, "pattern": r"\S"}
_MAX_SAFE = 2**53 - 1
_BOARD_ID = {"name": "board_id", "in": "path", "required": True, "schema": {"type": "string"}}
_USER_ID = {"name": "user_id", "in": "path", "required": True, "schema": {"type": "string"}}
_SCORE_FORMAT = {
    "type": "string",
    "pattern": SCORE_FORMAT_PATTERN,
    "description": (
        "How clients show the board's scores (scores stay integers on the wire): `integer` "
        "groups digits in threes (1,240); `decimal:N`, N 1-6, shows the score divided by 10^N "
        "with exactly N decimals (decimal:2: 123456 -> 1,234.56); `duration_ms` shows "
        "milliseconds as m:ss.mmm, h:mm:ss.mmm from an hour on (62345 -> 1:02.345)."
    ),
}


def _query(name: str, minimum: int, maximum: int | None, default: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer", "minimum": minimum, "default": default}
    if maximum is not None:
        schema["maximum"] = maximum
    return {"name": name, "in": "query", "required": False, "schema": schema}


def _op(
    summary: str,
    responses: dict[str, Any],
    *,
    body: str | None = None,
    params: list[dict[str, Any]] | None = None,
    secured: bool = True,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {**responses, "default": _PROBLEM}}
    if body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    if params:
        op["parameters"] = params
    if not secured:
        op["security"] = []
    return op


SCHEMAS: dict[str, Any] = {
    "Entry": {
        "type": "object",
        "required": ["rank", "user_id", "name", "score", "subscore", "updated_at"],
        "properties": {
            "rank": {"type": "integer", "minimum": 1},
            "user_id": {"type": "string"},
            "name": {"type": "string"},
            "score": _INT,
            "subscore": _INT,
            "updated_at": {"type": "string", "format": "date-time"},
        },
    },
    "Board": {
        "type": "object",
        "required": ["id", "title"],
        "additionalProperties": False,
        "properties": {
            "id": _ID,
            "title": _TITLE,
            "order": {"enum": ["desc", "asc"]},
            "operator": {"enum": ["best", "set", "incr"]},
            "min_score": {"oneOf": [_INT, {"type": "null"}]},
            "max_score": {"oneOf": [_INT, {"type": "null"}]},
            "player_submissions": {"type": "boolean"},
            "reset_schedule": {"enum": ["never"]},
            "score_format": {**_SCORE_FORMAT, "default": DEFAULT_SCORE_FORMAT},
            "players": {"type": "integer", "readOnly": True},
            "seq": {"type": "integer", "readOnly": True},
        },
    },
    "BoardPatch": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "title": _TITLE,
            "min_score": {"oneOf": [_INT, {"type": "null"}]},
            "max_score": {"oneOf": [_INT, {"type": "null"}]},
            "player_submissions": {"type": "boolean"},
            "reset_schedule": {"enum": ["never"]},
            "score_format": _SCORE_FORMAT,
        },
    },
    "ScorePost": {
        "type": "object",
        "required": ["score"],
        "additionalProperties": False,
        "properties": {
            "score": _INT,
            "subscore": _INT,
            "user_id": _ID,
            "metadata": {"type": ["object", "null"], "description": "at most 1 KiB serialized"},
        },
    },
    "Result": {
        "type": "object",
        "properties": {
            "board": {"type": "string"},
            "user_id": {"type": "string"},
            "score": _INT,
            "subscore": _INT,
            "rank": {"type": "integer"},
            "previous_rank": {"type": ["integer", "null"]},
            "improved": {"type": "boolean"},
            "seq": {"type": "integer"},
        },
    },
    "Login": {
        "type": "object",
        "required": ["username", "password"],
        "additionalProperties": False,
        "properties": {"username": {"type": "string"}, "password": {"type": "string"}},
    },
    "Credentials": {
        "type": "object",
        "required": ["username", "password"],
        "additionalProperties": False,
        "properties": {
            "username": _ID,
            "password": {"type": "string", "minLength": 8},
            "display_name": {
                "type": ["string", "null"],
                "minLength": 1,
                "maxLength": 64,
                "pattern": r"\S",
            },
        },
    },
    "TokenAnswer": {
        "type": "object",
        "properties": {
            "access_token": {"type": "string"},
            "token_type": {"const": "Bearer"},
            "expires_in": {"type": "integer"},
            "user": _ref("User"),
        },
    },
    "User": {
        "type": "object",
        "properties": {
            "user_id": {"type": "string"},
            "name": {"type": "string"},
            "role": {"enum": ["player", "server", "admin"]},
        },
    },
    "BoardView": {
        "type": "object",
        "properties": {
            "board": {"type": "string"},
            "seq": {"type": "integer"},
            "top_10": {"type": "array", "items": _ref("Entry")},
            "you": {"oneOf": [_ref("Entry"), {"type": "null"}]},
        },
    },
    "Problem": {
        "type": "object",
        "required": ["type", "title", "status", "detail", "code"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "code": {"enum": list(ALL_CODES)},
        },
    },
}

PATHS: dict[str, dict[str, Any]] = {
    "/api/openapi.json": {
        "get": _op("This description", {"200": _json({"type": "object"})}, secured=False)
    },
    "/api/auth/register": {
        "post": _op(
            "Create an account",
            {"201": _json(_ref("TokenAnswer"), "Created")},
            body="Credentials",
            secured=False,
        )
    },
    "/api/auth/login": {
        "post": _op("Log in", {"200": _json(_ref("TokenAnswer"))}, body="Login", secured=False)
    },
    "/api/me": {"get": _op("The caller and their ranks", {"200": _json({"type": "object"})})},
    "/api/boards": {
        "get": _op(
            "List boards",
            {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {"boards": {"type": "array", "items": _ref("Board")}},
                    }
                )
            },
        ),
        "post": _op(
            "Create a board (admin)", {"201": _json(_ref("Board"), "Created")}, body="Board"
        ),
    },
    "/api/boards/{board_id}": {
        "get": _op("A board", {"200": _json(_ref("Board"))}, params=[_BOARD_ID]),
        "patch": _op(
            "Change a board (admin)",
            {"200": _json(_ref("Board"))},
            body="BoardPatch",
            params=[_BOARD_ID],
        ),
        "delete": _op(
            "Delete a board (admin)", {"204": {"description": "Deleted"}}, params=[_BOARD_ID]
        ),
    },
    "/api/boards/{board_id}/leaderboard": {
        "get": _op(
            "A page of the standings",
            {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {
                            "board": {"type": "string"},
                            "seq": {"type": "integer"},
                            "total": {"type": "integer"},
                            "entries": {"type": "array", "items": _ref("Entry")},
                        },
                    }
                )
            },
            params=[_BOARD_ID, _query("limit", 1, 1000, 10), _query("offset", 0, _MAX_SAFE, 0)],
        )
    },
    "/api/boards/{board_id}/players/{user_id}": {
        "get": _op("A player's entry", {"200": _json(_ref("Entry"))}, params=[_BOARD_ID, _USER_ID])
    },
    "/api/boards/{board_id}/players/{user_id}/around": {
        "get": _op(
            "The players around one player",
            {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {
                            "board": {"type": "string"},
                            "seq": {"type": "integer"},
                            "entries": {"type": "array", "items": _ref("Entry")},
                        },
                    }
                )
            },
            params=[_BOARD_ID, _USER_ID, _query("radius", 0, 100, 5)],
        )
    },
    "/api/boards/{board_id}/scores": {
        "post": _op(
            "Submit a score; 200 means it is durable",
            {"200": _json(_ref("Result"))},
            body="ScorePost",
            params=[
                _BOARD_ID,
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                },
            ],
        )
    },
    "/api/boards/{board_id}/updates": {
        "get": _op(
            "Long-poll: answers when seq passes `since`, or after `timeout` seconds",
            {"200": _json(_ref("BoardView"))},
            params=[_BOARD_ID, _query("since", 0, _MAX_SAFE, 0), _query("timeout", 0, 60, 25)],
        )
    },
    "/api/admin/stats": {
        "get": _op(
            "Live figures: connections, users online, messages/s, subscribers (admin)",
            {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {
                            "connections": {"type": "integer"},
                            "users_online": {"type": "integer"},
                            "messages_sent_per_s": {"type": "number"},
                            "messages_received_per_s": {"type": "number"},
                            "boards": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "id": {"type": "string"},
                                        "players": {"type": "integer"},
                                        "subscribers": {"type": "integer"},
                                    },
                                },
                            },
                            "top_users_by_connections": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "user_id": {"type": "string"},
                                        "connections": {"type": "integer"},
                                    },
                                },
                            },
                        },
                    }
                )
            },
        )
    },
}


def document() -> dict[str, Any]:
    """The whole OpenAPI document."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "Scoreboard", "version": __version__},
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "responses": {
                "Problem": {
                    "description": "An RFC 9457 problem",
                    "content": {"application/problem+json": {"schema": _ref("Problem")}},
                }
            },
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
        "security": [{"bearer": []}],
    }
