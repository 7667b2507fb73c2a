"""The database's tables (SQLAlchemy Core) and how a row maps to the values the code uses.

Alembic migrates these tables (scoreboard/migrations; a test compares them with the newest
revision). The row types here are what scoreboard/store.py reads and writes; this module runs
no statement and opens no connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from . import ranking
from .formatting import DEFAULT_SCORE_FORMAT
from .schemas import BOARD_SETTINGS, BoardConfig, board_settings

#: User and board ids follow auth.SUB_RE / schemas.ID_PATTERN: at most 64 characters.
ID_MAX_LENGTH = 64
#: An Idempotency-Key is 1-255 characters (docs/api.md#idempotency).
IDEMPOTENCY_KEY_MAX_LENGTH = 255
#: The longest score_format ("duration_ms" is 11 characters), with room for new ones.
SCORE_FORMAT_MAX_LENGTH = 16
#: Role given to users first seen through a score write (the token said nothing more).
DEFAULT_ROLE = "player"

# Alembic compares constraint names, so every constraint gets a predictable one.
metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.String(ID_MAX_LENGTH), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("password_hash", sa.Text, nullable=True),
    sa.Column("created_at", sa.Double, nullable=False),
    # lower(id), for case-insensitive usernames (migration 0003; see username_key()). Unique
    # among accounts only: outside issuers may use `Bob` and `bob` as two players.
    sa.Column("username_key", sa.String(ID_MAX_LENGTH), nullable=True),
    sa.Index("ix_users_username_key", "username_key"),
    sa.Index(
        "uq_users_account_key",
        "username_key",
        unique=True,
        sqlite_where=sa.text("password_hash IS NOT NULL AND username_key IS NOT NULL"),
        postgresql_where=sa.text("password_hash IS NOT NULL AND username_key IS NOT NULL"),
    ),
    # SQLite: store rows in the primary-key B-tree itself instead of a rowid table plus a
    # separate key index, one B-tree write fewer per upsert.
    sqlite_with_rowid=False,
)

boards = sa.Table(
    "boards",
    metadata,
    sa.Column("id", sa.String(ID_MAX_LENGTH), primary_key=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("order", sa.String(8), nullable=False),
    sa.Column("operator", sa.String(8), nullable=False),
    sa.Column("min_score", sa.BigInteger, nullable=True),
    sa.Column("max_score", sa.BigInteger, nullable=True),
    sa.Column("player_submissions", sa.Boolean, nullable=False),
    sa.Column("reset_schedule", sa.String(16), nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False, server_default="0"),
    # Added by migration 0002; boards made before it show "integer". formatting.py owns the
    # values.
    sa.Column(
        "score_format",
        sa.String(SCORE_FORMAT_MAX_LENGTH),
        nullable=False,
        server_default=DEFAULT_SCORE_FORMAT,
    ),
    # Added by migration 0004: the season in force and when it began (seasons.py), and when
    # reset_schedule was last changed (only boundaries after it end a season).
    sa.Column("season", sa.BigInteger, nullable=False, server_default="1"),
    sa.Column("season_started_at", sa.Double, nullable=True),
    sa.Column("schedule_since", sa.Double, nullable=True),
)

player_records = sa.Table(
    "player_records",
    metadata,
    sa.Column(
        "board_id",
        sa.String(ID_MAX_LENGTH),
        sa.ForeignKey("boards.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column(
        "user_id",
        sa.String(ID_MAX_LENGTH),
        sa.ForeignKey("users.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("score", sa.BigInteger, nullable=False),
    sa.Column("subscore", sa.BigInteger, nullable=False),
    sa.Column("reached_seq", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
    sqlite_with_rowid=False,  # see users
)

# The submissions log has no foreign keys on purpose: it is an append-only audit trail that
# outlives deleted boards, and deleting a board must not have to walk millions of log rows.
submissions = sa.Table(
    "submissions",
    metadata,
    # SQLite only auto-numbers an INTEGER PRIMARY KEY (the rowid); BIGINT would not be one.
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("board_id", sa.String(ID_MAX_LENGTH), nullable=False),
    sa.Column("user_id", sa.String(ID_MAX_LENGTH), nullable=False),
    sa.Column("actor", sa.String(ID_MAX_LENGTH), nullable=False),
    sa.Column("score", sa.BigInteger, nullable=False),
    sa.Column("subscore", sa.BigInteger, nullable=False),
    sa.Column("metadata", sa.JSON(none_as_null=True), nullable=True),
    sa.Column("idempotency_key", sa.String(IDEMPOTENCY_KEY_MAX_LENGTH), nullable=True),
    sa.Column("request_hash", sa.String(128), nullable=True),
    # JSON null (not SQL NULL) while a cluster's answer is not stored yet (StoredAnswer).
    sa.Column("response", sa.JSON, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    # NULL keys never collide (both databases treat NULLs as distinct), so key-less writes
    # and pruned rows are not constrained.
    sa.UniqueConstraint("actor", "idempotency_key"),
    # Only rows that still hold a key are indexed, so pruning finds its rows without a scan
    # and the index stays about one day of keyed writes large.
    sa.Index(
        "ix_submissions_keyed_created_at",
        "created_at",
        sqlite_where=sa.text("idempotency_key IS NOT NULL"),
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    ),
)

# An archived season: its final standings are frozen in season_entries, one row per rank.
seasons = sa.Table(
    "seasons",
    metadata,
    sa.Column(
        "board_id",
        sa.String(ID_MAX_LENGTH),
        sa.ForeignKey("boards.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("season", sa.BigInteger, primary_key=True),
    sa.Column("started_at", sa.Double, nullable=False),
    sa.Column("ended_at", sa.Double, nullable=False),
    sa.Column("players", sa.BigInteger, nullable=False),
    sa.Column("reason", sa.String(16), nullable=False),  # seasons.REASON_*
)

# Keyed by rank, so a page of an archive is a range scan of the primary key. The name is the
# one the player had when the season ended.
season_entries = sa.Table(
    "season_entries",
    metadata,
    sa.Column(
        "board_id",
        sa.String(ID_MAX_LENGTH),
        sa.ForeignKey("boards.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("season", sa.BigInteger, primary_key=True),
    sa.Column("rank", sa.BigInteger, primary_key=True),
    sa.Column("user_id", sa.String(ID_MAX_LENGTH), nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("score", sa.BigInteger, nullable=False),
    sa.Column("subscore", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
    sqlite_with_rowid=False,  # see users
)

server_settings = sa.Table(
    "server_settings",
    metadata,
    sa.Column("key", sa.String(128), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)


@dataclass(slots=True)
class LoadedBoard:
    """A board as read at start-up: its settings, its seq and every player's record."""

    config: BoardConfig
    seq: int
    records: list[ranking.Record]
    season: int = 1  # the season in force
    season_started_at: float | None = None  # None: when the board was created
    schedule_since: float | None = None  # when reset_schedule was last changed, if ever


@dataclass(frozen=True, slots=True)
class SeasonRow:
    """An archived season (GET /api/boards/{id}/seasons)."""

    season: int
    started_at: float
    ended_at: float
    players: int
    reason: str


@dataclass(frozen=True, slots=True)
class SeasonEnd:
    """What a reset archives: the season in force on `board_id`, ending at `ended_at`."""

    board_id: str
    order: str
    season: int
    started_at: float
    ended_at: float
    reason: str
    seq: int  # the board's seq after the reset


@dataclass(frozen=True, slots=True)
class UserRow:
    """An account or a player first seen through a token."""

    id: str
    name: str
    role: str
    password_hash: str | None


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """The first answer to an idempotent request, with the fingerprint of its body.

    `response` is None while the request's submission is committed but its answer is not
    stored yet: cluster mode writes the answer after the replica has ranked the change
    (scoreboard/cluster/pgwrites.py), so it is None while that first request is still being
    answered, or for good if its process died in between. One process never stores None.
    """

    request_hash: str
    response: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class ScoreWrite:
    """Everything one submission persists, in one transaction."""

    board_id: str
    user_id: str
    user_name: str
    score: int  # stored pair after the operator
    subscore: int
    reached_seq: int
    updated_at: float
    seq: int  # board seq after the submission
    improved: bool  # the record changed: upsert it and advance the board's seq
    actor: str  # the token's sub: the scope of the idempotency key
    idempotency_key: str | None
    request_hash: str | None
    response: dict[str, Any]  # the Result body, replayed for a repeated idempotency key
    submitted_score: int
    submitted_subscore: int
    metadata: dict[str, Any] | None = None


def username_key(user_id: str) -> str:
    """The case-insensitive form of a user id (ids are ASCII: [A-Za-z0-9_.-])."""
    return user_id.lower()


def board_columns(config: BoardConfig) -> dict[str, Any]:
    """The columns of a board that its settings decide (not its id, seq or creation time)."""
    return {name: value for name, value in board_settings(config).items() if name != "id"}


def board_config(row: sa.Row[Any]) -> BoardConfig:
    """A board's settings from its row."""
    columns = row._mapping
    return BoardConfig(
        **{name: columns[name] for name in BOARD_SETTINGS}, created_at=columns["created_at"]
    )
