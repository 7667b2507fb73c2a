"""One database, one single-process server: an exclusive lock held for the server's life.

A server keeps its boards in memory, so a second server (or a management command writing
behind its back) on the same database would diverge from it. Without cluster mode a server
therefore holds this lock while it runs, and `run.py board|user …` takes it to write the
database directly, or finds it held and goes through the running server's HTTP API.

The processes of a cluster share their database by design, so each holds the lock *shared*:
together they keep out a single-process server and a management command that would write
behind their backs (it finds the lock held and goes through a process's API instead), and a
single-process server keeps them out.

- SQLite: `flock` on `<database file>.lock`, a lock the kernel drops when the process dies,
  however it dies (kill -9 included), so a crashed server never leaves a stale lock.
- PostgreSQL: `pg_try_advisory_lock` on a connection of its own kept open for the process's
  life; the server drops it when that connection ends, which a dead process's does.
- An in-memory SQLite database belongs to one process anyway: nothing to lock.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from .dbfile import check_header

#: PostgreSQL advisory lock key of the single-process server (any fixed number unique to
#: this app; store.MIGRATION_LOCK_ID is its neighbour).
SERVER_LOCK_ID = 7301130002


class LockHeld(Exception):
    """Another process holds the database lock; the message names the lock."""


class DatabaseLock:
    """The exclusive lock of one database; `acquire()` or LockHeld, `release()` when done."""

    def __init__(self, database_url: str, *, shared: bool = False) -> None:
        self.url = sa.make_url(database_url)
        self.shared = shared  # a cluster process's hold: other shared holders are welcome
        self.backend = self.url.get_backend_name()
        self._fd: int | None = None
        self._engine: Any = None
        self._conn: Any = None

    @property
    def name(self) -> str:
        """The lock as the refusal names it: a file path or an advisory lock key."""
        if self.backend == "postgresql":
            return f"PostgreSQL advisory lock {SERVER_LOCK_ID} on database {self.url.database!r}"
        return f"lock file {self._path()}"

    def _path(self) -> str | None:
        database = self.url.database
        if not database or database == ":memory:" or database.startswith("file::memory:"):
            return None
        return os.path.abspath(database) + ".lock"

    def acquire(self) -> DatabaseLock:
        """Take the lock without waiting; LockHeld when another process has it."""
        if self.backend == "postgresql":
            self._acquire_postgres()
        elif self.backend == "sqlite":
            self._acquire_file()
        return self

    def _acquire_file(self) -> None:
        path = self._path()
        if path is None:
            return
        # Nothing is made next to a file that is not a database (dbfile.NotADatabase).
        check_header(Path(path.removesuffix(".lock")))
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            # No such folder, or one we may not write: opening the database itself fails next,
            # and says so in its own words.
            return
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LockHeld(self.name) from None
        self._fd = fd

    def _acquire_postgres(self) -> None:
        # A pool of one that is never returned: the lock lives exactly as long as this session.
        self._engine = sa.create_engine(self.url, poolclass=sa.pool.NullPool)
        conn = self._engine.connect()
        take = "pg_try_advisory_lock_shared" if self.shared else "pg_try_advisory_lock"
        got = conn.execute(sa.text(f"SELECT {take}({SERVER_LOCK_ID})")).scalar()
        conn.commit()  # the lock is a session lock: it outlives this transaction
        if not got:
            conn.close()
            self._engine.dispose()
            self._engine = None
            raise LockHeld(self.name)
        self._conn = conn

    def release(self) -> None:
        """Give the lock back (the process ending does it too)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
