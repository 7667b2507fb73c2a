"""Seasons: boards.season and season_started_at; archived seasons and their frozen entries.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 18:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(64)  # spelled out, as in 0001


def upgrade() -> None:
    # Plain ADD COLUMNs (see 0002 for why not a batch copy): existing boards are in season 1,
    # which started when the board was made.
    op.add_column(
        "boards", sa.Column("season", sa.BigInteger(), server_default="1", nullable=False)
    )
    op.add_column("boards", sa.Column("season_started_at", sa.Double(), nullable=True))
    op.add_column("boards", sa.Column("schedule_since", sa.Double(), nullable=True))
    op.execute("UPDATE boards SET season_started_at = created_at")
    op.create_table(
        "seasons",
        sa.Column("board_id", ID, nullable=False),
        sa.Column("season", sa.BigInteger(), nullable=False),
        sa.Column("started_at", sa.Double(), nullable=False),
        sa.Column("ended_at", sa.Double(), nullable=False),
        sa.Column("players", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.ForeignKeyConstraint(
            ["board_id"], ["boards.id"], name="fk_seasons_board_id_boards", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("board_id", "season", name="pk_seasons"),
    )
    op.create_table(
        "season_entries",
        sa.Column("board_id", ID, nullable=False),
        sa.Column("season", sa.BigInteger(), nullable=False),
        sa.Column("rank", sa.BigInteger(), nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("score", sa.BigInteger(), nullable=False),
        sa.Column("subscore", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["board_id"],
            ["boards.id"],
            name="fk_season_entries_board_id_boards",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("board_id", "season", "rank", name="pk_season_entries"),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("season_entries")
    op.drop_table("seasons")
    op.drop_column("boards", "schedule_since")
    op.drop_column("boards", "season_started_at")
    op.drop_column("boards", "season")
