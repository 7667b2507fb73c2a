"""The OpenAPI 3.1 description of every `/api` route, served at /api/openapi.json.

Request bodies and query parameters are the very schemas that check requests
(scoreboard/schemas.py), published as they are. A test compares the paths and methods here with
the application's route table, so the two cannot drift apart either. Adding a route: its
handler in app.py's route table, its entry in PATHS, with `body=` naming its schemas.Body and
`params=` its schemas.Query.
"""

from __future__ import annotations

from typing import Any

from . import __version__, schemas
from .errors import ALL_CODES
from .validation import Body, Query


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_PROBLEM = {"$ref": "#/components/responses/Problem"}
_INT = schemas.integer()
_BOARD_ID = {"name": "board_id", "in": "path", "required": True, "schema": schemas.IDENTIFIER}
_USER_ID = {"name": "user_id", "in": "path", "required": True, "schema": schemas.IDENTIFIER}
_SEASON = {"name": "season", "in": "path", "required": True, "schema": schemas.integer(1)}
_DATE = {"type": "string", "format": "date-time"}


def _params(query: Query) -> list[dict[str, Any]]:
    """The OpenAPI parameters of a route's query, from the schemas that check it."""
    return [
        {"name": name, "in": "query", "required": False, "schema": schema}
        for name, schema in query.parameters.items()
    ]


#: What the admin figures add in cluster mode (docs/api.md#admin-figures).
_CLUSTER_SCOPE: dict[str, Any] = {
    "scope": {
        "type": "string",
        "enum": ["cluster", "process"],
        "description": "cluster mode only: `process` while Redis is away (own figures only)",
    },
    "processes": {
        "type": "integer",
        "description": "cluster mode only: how many processes the figures cover",
    },
}


def _op(
    summary: str,
    responses: dict[str, Any],
    *,
    body: Body | None = None,
    params: list[dict[str, Any]] | None = None,
    secured: bool = True,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {**responses, "default": _PROBLEM}}
    if body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(body.name)}},
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
    "Board": schemas.BOARD_ANSWER,
    **{body.name: body.schema for body in schemas.BODIES},
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
    "Season": {
        "type": "object",
        "required": ["season", "started_at", "ended_at", "players", "reason"],
        "properties": {
            "season": {"type": "integer", "minimum": 1},
            "started_at": _DATE,
            "ended_at": _DATE,
            "players": {"type": "integer"},
            "reason": {"enum": ["manual", "scheduled"]},
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
            body=schemas.REGISTER,
            secured=False,
        )
    },
    "/api/auth/login": {
        "post": _op(
            "Log in", {"200": _json(_ref("TokenAnswer"))}, body=schemas.LOGIN, secured=False
        )
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
            "Create a board (admin)",
            {"201": _json(_ref("Board"), "Created")},
            body=schemas.BOARD_CREATE,
        ),
    },
    "/api/boards/{board_id}": {
        "get": _op("A board", {"200": _json(_ref("Board"))}, params=[_BOARD_ID]),
        "patch": _op(
            "Change a board (admin)",
            {"200": _json(_ref("Board"))},
            body=schemas.BOARD_PATCH,
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
            params=[_BOARD_ID, *_params(schemas.PAGE)],
        )
    },
    "/api/boards/{board_id}/players/{user_id}": {
        "get": _op("A player's entry", {"200": _json(_ref("Entry"))}, params=[_BOARD_ID, _USER_ID]),
        "delete": _op(
            "Remove the player's entry (admin); subscribers see the new standings",
            {"204": {"description": "Removed"}},
            params=[_BOARD_ID, _USER_ID],
        ),
    },
    "/api/boards/{board_id}/reset": {
        "post": _op(
            "Archive the standings as a season and start the next one empty (admin)",
            {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {
                            "board": {"type": "string"},
                            "season": {"type": "integer", "description": "the archived season"},
                            "current": {"type": "integer", "description": "the new season"},
                        },
                    }
                )
            },
            params=[_BOARD_ID],
        )
    },
    "/api/boards/{board_id}/seasons": {
        "get": _op(
            "The board's archived seasons, oldest first",
            {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {
                            "board": {"type": "string"},
                            "current": {"type": "integer"},
                            "seasons": {"type": "array", "items": _ref("Season")},
                        },
                    }
                )
            },
            params=[_BOARD_ID],
        )
    },
    "/api/boards/{board_id}/seasons/{season}/leaderboard": {
        "get": _op(
            "A page of an archived season's final standings",
            {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {
                            "board": {"type": "string"},
                            "season": {"type": "integer"},
                            "total": {"type": "integer"},
                            "entries": {"type": "array", "items": _ref("Entry")},
                        },
                    }
                )
            },
            params=[
                _BOARD_ID,
                _SEASON,
                *_params(schemas.PAGE),
            ],
        )
    },
    "/api/boards/{board_id}/export": {
        "get": _op(
            "Every entry of the board or of an archived season, streamed (admin)",
            {
                "200": {
                    "description": (
                        "CSV with the header rank,user_id,name,score,score_display,subscore,"
                        "updated_at; or JSON {board, season, archived, score_format, entries}"
                    ),
                    "content": {
                        "text/csv": {"schema": {"type": "string"}},
                        "application/json": {"schema": {"type": "object"}},
                    },
                }
            },
            params=[
                _BOARD_ID,
                {
                    "name": "format",
                    "in": "query",
                    "required": False,
                    "schema": {"enum": ["csv", "json"], "default": "csv"},
                },
                # The same schema the handler checks the query with.
                *(
                    {**param, "description": "an archived season; absent: the season in force"}
                    for param in _params(schemas.SEASON)
                ),
            ],
        )
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
            params=[_BOARD_ID, _USER_ID, *_params(schemas.AROUND)],
        )
    },
    "/api/boards/{board_id}/scores": {
        "post": _op(
            "Submit a score; 200 means it is durable",
            {"200": _json(_ref("Result"))},
            body=schemas.SCORE_POST,
            params=[
                _BOARD_ID,
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "schema": schemas.IDEMPOTENCY_KEY,
                },
            ],
        )
    },
    "/api/boards/{board_id}/updates": {
        "get": _op(
            "Long-poll: answers when seq passes `since`, or after `timeout` seconds",
            {"200": _json(_ref("BoardView"))},
            params=[_BOARD_ID, *_params(schemas.UPDATES)],
        )
    },
    "/api/admin/online": {
        "get": _op(
            "Who is connected: to this process, or the whole cluster in cluster mode (admin)",
            {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {
                            "users": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "user_id": {"type": "string"},
                                        "name": {"type": "string"},
                                        "connections": {"type": "integer"},
                                        "boards": {"type": "array", "items": {"type": "string"}},
                                    },
                                },
                            },
                            "anonymous": {"type": "integer"},
                            **_CLUSTER_SCOPE,
                        },
                    }
                )
            },
        )
    },
    "/api/admin/users": {
        "get": _op(
            "A page of the users, by id (admin)",
            {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {
                            "total": {"type": "integer"},
                            "users": {"type": "array", "items": {"type": "object"}},
                        },
                    }
                )
            },
            params=_params(schemas.USERS_PAGE),
        ),
        "post": _op(
            "Create an account with any role (admin)",
            {"201": _json(_ref("User"), "Created")},
            body=schemas.ACCOUNT,
        ),
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
                            **_CLUSTER_SCOPE,
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
