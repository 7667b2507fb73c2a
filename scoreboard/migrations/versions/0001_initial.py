"""The initial schema: users, boards, player_records, submissions, server_settings.

Revision ID: 0001
Revises:
Create Date: 2026-11-25 21:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here rather than imported from scoreboard.store, so that this revision keeps
# creating exactly this schema however the store's tables change later.
ID = sa.String(64)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", ID, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        # SQLite: rows live in the primary-key B-tree (no rowid table plus key index).
        sqlite_with_rowid=False,
    )
    op.create_table(
        "boards",
        sa.Column("id", ID, nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("order", sa.String(8), nullable=False),
        sa.Column("operator", sa.String(8), nullable=False),
        sa.Column("min_score", sa.BigInteger(), nullable=True),
        sa.Column("max_score", sa.BigInteger(), nullable=True),
        sa.Column("player_submissions", sa.Boolean(), nullable=False),
        sa.Column("reset_schedule", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("seq", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_boards"),
    )
    op.create_table(
        "player_records",
        sa.Column("board_id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("score", sa.BigInteger(), nullable=False),
        sa.Column("subscore", sa.BigInteger(), nullable=False),
        sa.Column("reached_seq", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["board_id"],
            ["boards.id"],
            name="fk_player_records_board_id_boards",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name="fk_player_records_user_id_users",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("board_id", "user_id", name="pk_player_records"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "submissions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("board_id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("actor", ID, nullable=False),
        sa.Column("score", sa.BigInteger(), nullable=False),
        sa.Column("subscore", sa.BigInteger(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("request_hash", sa.String(128), nullable=True),
        sa.Column("response", sa.JSON(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_submissions"),
        sa.UniqueConstraint(
            "actor", "idempotency_key", name="uq_submissions_actor_idempotency_key"
        ),
    )
    op.create_index(
        "ix_submissions_keyed_created_at",
        "submissions",
        ["created_at"],
        sqlite_where=sa.text("idempotency_key IS NOT NULL"),
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )
    op.create_table(
        "server_settings",
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_server_settings"),
    )


def downgrade() -> None:
    op.drop_table("server_settings")
    op.drop_index("ix_submissions_keyed_created_at", table_name="submissions")
    op.drop_table("submissions")
    op.drop_table("player_records")
    op.drop_table("boards")
    op.drop_table("users")
