"""users.username_key: the lower-case form of the id, unique among accounts.

Registered usernames are unique whatever their case, and a username that is already a user id
(a player first seen through an outside token) cannot be registered. `username_key` holds
lower(id) for every user, indexed for that look-up; the partial unique index covers accounts
(rows with a password hash) only, because outside issuers may well use `Bob` and `bob` as two
players. The id keeps the form the user chose (the display form).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACCOUNTS = sa.text("password_hash IS NOT NULL AND username_key IS NOT NULL")


def upgrade() -> None:
    # Nullable and added in place, as in 0002: no batch copy of the users table, whose
    # recreation would fire the ON DELETE CASCADE of player_records.
    op.add_column("users", sa.Column("username_key", sa.String(64), nullable=True))
    op.execute("UPDATE users SET username_key = lower(id)")
    # Accounts registered before this rule that differ only in case keep working (log-in by
    # their exact id), but only the oldest of them keeps the key the unique index covers.
    op.execute(
        """
        UPDATE users SET username_key = NULL
        WHERE password_hash IS NOT NULL AND EXISTS (
            SELECT 1 FROM users AS older
            WHERE older.password_hash IS NOT NULL
              AND older.username_key = users.username_key
              AND (older.created_at < users.created_at
                   OR (older.created_at = users.created_at AND older.id < users.id))
        )
        """
    )
    op.create_index("ix_users_username_key", "users", ["username_key"])
    op.create_index(
        "uq_users_account_key",
        "users",
        ["username_key"],
        unique=True,
        sqlite_where=ACCOUNTS,
        postgresql_where=ACCOUNTS,
    )


def downgrade() -> None:
    op.drop_index("uq_users_account_key", table_name="users")
    op.drop_index("ix_users_username_key", table_name="users")
    op.drop_column("users", "username_key")
