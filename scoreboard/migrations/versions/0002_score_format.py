"""boards.score_format: how a board shows its scores ("integer" for every existing board).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain ADD COLUMN on both databases, not a batch copy: SQLite adds a NOT NULL column
    # with a constant default in place (old rows read the default), whereas recreating the
    # boards table would fire the ON DELETE CASCADE of player_records with foreign keys on.
    # PostgreSQL 11+ stores the constant default without rewriting the table.
    op.add_column(
        "boards",
        sa.Column("score_format", sa.String(16), server_default="integer", nullable=False),
    )


def downgrade() -> None:
    # SQLite 3.35+ drops a column in place too (no table copy, so no cascade).
    op.drop_column("boards", "score_format")
