"""Alembic environment: runs Scoreboard's migrations against the schema in scoreboard.store.

Store.migrate() hands in an open connection (config.attributes["connection"]) so that the
store's own engine set-up (SQLite pragmas, JSON codec) applies and the URL never passes through
the ini file. The `alembic` command line instead builds an engine from `-x url=...` or, failing
that, the ini's sqlalchemy.url.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from scoreboard.store import make_engine
from scoreboard.tables import metadata

config = context.config
target_metadata = metadata


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if url is None:
        raise RuntimeError("no database URL: pass -x url=... or set sqlalchemy.url")
    return url


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; autogenerate then writes copy-and-move batch ops.
        # Such a migration must switch PRAGMA foreign_keys off around the copy, or the
        # ON DELETE CASCADE of player_records fires when the boards table is recreated.
        render_as_batch=connection.dialect.name == "sqlite",
        # SQLite's DDL is transactional once a BEGIN is issued, and store.make_engine's
        # connections issue it themselves; so an upgrade is all-or-nothing there too.
        transactional_ddl=True,
        compare_type=True,
    )
    # Inside the caller's transaction when Store.migrate() passed one in: a no-op wrapper.
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    """Print the SQL instead of running it (`alembic upgrade head --sql`)."""
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations on the connection given by Store.migrate(), or on a new engine."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    # Command-line use only: configure logging from the ini, but keep the loggers of anything
    # already running.
    if config.config_file_name is not None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    engine = make_engine(_url())
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
