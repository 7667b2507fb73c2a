"""Every shape a client sends, defined once as JSON Schema, and a board's settings.

The schemas here both check requests (scoreboard/validation.py compiles them) and describe
them in the OpenAPI document (scoreboard/openapi.py publishes them as they are), for HTTP and
WebSocket alike. A board's settings are one table, `BOARD_SETTINGS`: the create and patch
bodies, the board's JSON answer, its `BoardConfig`, the store's columns and the CLI all follow
it.

How to add a board setting: an entry in `BOARD_SETTINGS` (its schema, default, whether a
patch may change it), the attribute of the same name in `BoardConfig`, and its column in
scoreboard/tables.py with an Alembic migration; tests/test_schemas.py fails until the three
agree. How to add a body: a `Body(name, schema)` constant here, checked by the service with
`SHAPE.check(body)` and named as the request body of its route in openapi.py. How to add a
query parameter: an entry in the route's `Query`, read by its handler with `query.parse(...)`
and listed in openapi.py with `parameters(query)`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any

from .formatting import DEFAULT_SCORE_FORMAT, SCORE_FORMAT_PATTERN
from .ranking import Operator, Order
from .seasons import SCHEDULES
from .validation import BLANKS, MAX_IDEMPOTENCY_KEY_LENGTH, MAX_SAFE_INTEGER, Body, Query, Schema

# Not "." or "..": a URL path segment of either is resolved away by browsers, so such a board
# or player could never be reached.
ID_PATTERN = r"^(?!\.{1,2}$)[A-Za-z0-9_.-]{1,64}$"
NOT_BLANK_PATTERN = f"[^{BLANKS.encode('unicode_escape').decode()}]"  # one non-blank at least
MAX_TITLE_LENGTH = 200
MAX_NAME_LENGTH = 64
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024  # scrypt of a megabyte password is a cheap denial of service
MAX_METADATA_BYTES = 1024
MAX_PAGE_LIMIT = 1000
MAX_AROUND_RADIUS = 100
MAX_POLL_TIMEOUT_S = 60
RESET_SCHEDULES = SCHEDULES  # seasons.py: when a season ends by itself


_ID_RE = re.compile(ID_PATTERN.removeprefix("^").removesuffix("$"))


def is_identifier(value: str) -> bool:
    """Whether `value` could be a user or board id (IDENTIFIER)."""
    return _ID_RE.fullmatch(value) is not None


# -- values ----------------------------------------------------------------------------------


def integer(
    minimum: int = -MAX_SAFE_INTEGER, maximum: int = MAX_SAFE_INTEGER, **extra: Any
) -> Schema:
    """An integer within [minimum, maximum] (by default what a JavaScript client reads exactly)."""
    return {"type": "integer", "minimum": minimum, "maximum": maximum, **extra}


def text(max_length: int) -> Schema:
    """Free text: 1-max_length characters, not only blanks; stored without surrounding blanks."""
    return {
        "type": "string",
        "minLength": 1,
        "maxLength": max_length,
        "pattern": NOT_BLANK_PATTERN,
        "x-strip": True,
        "description": f"1-{max_length} characters, not only blanks",
    }


def one_of(options: tuple[str, ...]) -> Schema:
    return {"type": "string", "enum": list(options)}


IDENTIFIER: Schema = {
    "type": "string",
    "pattern": ID_PATTERN,
    "description": "1-64 characters of A-Z a-z 0-9 _ . -, not . or ..",
}
SCORE_FORMAT: Schema = {
    "type": "string",
    "pattern": SCORE_FORMAT_PATTERN,
    "description": "integer, duration_ms or decimal:N with N 1-6",
    "x-details": (
        "How clients show the board's scores (scores stay integers on the wire): `integer` "
        "groups digits in threes (1,240); `decimal:N`, N 1-6, shows the score divided by 10^N "
        "with exactly N decimals (decimal:2: 123456 -> 1,234.56); `duration_ms` shows "
        "milliseconds as m:ss.mmm, h:mm:ss.mmm from an hour on (62345 -> 1:02.345)."
    ),
}
BOOLEAN: Schema = {"type": "boolean"}
METADATA: Schema = {"type": ["object", "null"], "x-max-bytes": MAX_METADATA_BYTES}
IDEMPOTENCY_KEY: Schema = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_IDEMPOTENCY_KEY_LENGTH,
}


# -- boards ----------------------------------------------------------------------------------

REQUIRED = object()  # the default of a setting that a new board must be given


@dataclass(frozen=True, slots=True)
class Setting:
    """One board setting: the schema of its value, its default, whether a patch may change it."""

    schema: Schema
    default: Any = REQUIRED
    patchable: bool = True


BOARD_SETTINGS: dict[str, Setting] = {
    "id": Setting(IDENTIFIER, patchable=False),
    "title": Setting(text(MAX_TITLE_LENGTH)),
    "order": Setting(one_of(tuple(o.value for o in Order)), "desc", patchable=False),
    "operator": Setting(one_of(tuple(o.value for o in Operator)), "best", patchable=False),
    "min_score": Setting(integer(type=["integer", "null"]), None),
    "max_score": Setting(integer(type=["integer", "null"]), None),
    "player_submissions": Setting(BOOLEAN, True),
    "reset_schedule": Setting(one_of(RESET_SCHEDULES), "never"),
    "score_format": Setting(SCORE_FORMAT, DEFAULT_SCORE_FORMAT),
}


@dataclass(frozen=True, slots=True)
class BoardConfig:
    """A board's settings (BOARD_SETTINGS, in the same order) and when it was made."""

    id: str
    title: str
    order: str
    operator: str
    min_score: int | None
    max_score: int | None
    player_submissions: bool
    reset_schedule: str
    score_format: str
    created_at: float


BOARD_CREATE = Body(
    "BoardCreate",
    {
        "type": "object",
        "required": [name for name, s in BOARD_SETTINGS.items() if s.default is REQUIRED],
        "additionalProperties": False,
        "properties": {
            name: s.schema if s.default is REQUIRED else {**s.schema, "default": s.default}
            for name, s in BOARD_SETTINGS.items()
        },
    },
)
BOARD_PATCH = Body(
    "BoardPatch",
    {
        "type": "object",
        "additionalProperties": False,
        "properties": {name: s.schema for name, s in BOARD_SETTINGS.items() if s.patchable},
    },
)
#: The board as the API answers it: its settings, its season and two live figures.
BOARD_ANSWER: Schema = {
    "type": "object",
    "required": [*BOARD_SETTINGS, "season", "next_reset_at", "players", "seq"],
    "properties": {
        **{name: s.schema for name, s in BOARD_SETTINGS.items()},
        "season": {"type": "integer", "minimum": 1},
        "next_reset_at": {
            "type": ["string", "null"],
            "format": "date-time",
            "description": "when reset_schedule next ends the season; null for never",
        },
        "players": {"type": "integer", "minimum": 0},
        "seq": {"type": "integer", "minimum": 0},
    },
}


def new_board(body: dict[str, Any], *, created_at: float) -> BoardConfig:
    """A new board's settings from a create body (API or CLI), or ValidationFailed."""
    return BoardConfig(**BOARD_CREATE.check(body), created_at=created_at)


def board_settings(config: BoardConfig) -> dict[str, Any]:
    """The settings of a board, by name (its JSON answer without the live figures)."""
    return {name: getattr(config, name) for name in BOARD_SETTINGS}


def board_answer(
    config: BoardConfig,
    *,
    players: int,
    seq: int,
    season: int = 1,
    next_reset_at: str | None = None,
) -> dict[str, Any]:
    """The board as the API answers it (BOARD_ANSWER)."""
    return {
        **board_settings(config),
        "season": season,
        "next_reset_at": next_reset_at,
        "players": players,
        "seq": seq,
    }


def config_fields() -> list[str]:
    """BoardConfig's attribute names (for the test that keeps them equal to BOARD_SETTINGS)."""
    return [f.name for f in fields(BoardConfig)]


# -- scores and accounts ---------------------------------------------------------------------

SCORE_POST = Body(
    "ScorePost",
    {
        "type": "object",
        "required": ["score"],
        "additionalProperties": False,
        "properties": {
            "score": integer(),
            "subscore": integer(default=0),
            "user_id": {
                **IDENTIFIER,
                "description": IDENTIFIER["description"] + " (server and admin tokens only)",
            },
            "metadata": METADATA,
        },
    },
)
REGISTER = Body(
    "Register",
    {
        "type": "object",
        "required": ["username", "password"],
        "additionalProperties": False,
        "properties": {
            "username": IDENTIFIER,
            "password": {
                "type": "string",
                "minLength": MIN_PASSWORD_LENGTH,
                "maxLength": MAX_PASSWORD_LENGTH,
                "writeOnly": True,
            },
            "display_name": {**text(MAX_NAME_LENGTH), "type": ["string", "null"]},
        },
    },
)
# Log-in takes any strings: a name or password that could never have been registered is
# simply wrong credentials (401), said the same way as for a user who does not exist.
LOGIN = Body(
    "Login",
    {
        "type": "object",
        "required": ["username", "password"],
        "additionalProperties": False,
        "properties": {
            "username": {"type": "string"},
            "password": {"type": "string", "writeOnly": True},
        },
    },
)

# An account made by an organiser (`run.py user create` on a running server): any role.
ACCOUNT = Body(
    "Account",
    {
        "type": "object",
        "required": ["username", "password"],
        "additionalProperties": False,
        "properties": {
            **REGISTER.schema["properties"],
            "role": {**one_of(("player", "server", "admin")), "default": "player"},
        },
    },
)

BODIES = (BOARD_CREATE, BOARD_PATCH, SCORE_POST, REGISTER, LOGIN, ACCOUNT)


# -- query parameters ------------------------------------------------------------------------

PAGE = Query({"limit": integer(1, MAX_PAGE_LIMIT, default=10), "offset": integer(0, default=0)})
AROUND = Query({"radius": integer(0, MAX_AROUND_RADIUS, default=5)})
#: An archived season's number (a path segment) and the season an export reads (absent: the
#: season in force).
SEASON = Query({"season": integer(1)})
USERS_PAGE = Query(
    {"limit": integer(1, MAX_PAGE_LIMIT, default=100), "offset": integer(0, default=0)}
)
EXPORT_FORMATS = ("csv", "json")
UPDATES = Query(
    {"since": integer(0, default=0), "timeout": integer(0, MAX_POLL_TIMEOUT_S, default=25)}
)
