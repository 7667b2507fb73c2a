"""The SQLite database file: is the configured path still the file the server opened?

A running server keeps its database file open. If the file's directory is deleted, or the file
is replaced or made unwritable, SQLite carries on writing into the open (possibly unlinked)
file and reports success, and a restart then finds an empty or different database. So the
store compares the path's device and inode with those it adopted at start-up before it commits
(and before it answers), refuses to open the path again once it stopped naming that file, and
never creates a database except at start-up, where a missing file means a new installation.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

#: The first 16 bytes of every SQLite 3 database file.
SQLITE_HEADER = b"SQLite format 3\x00"


class NotADatabase(Exception):
    """The configured file exists but is not a SQLite database (it is left untouched)."""


def check_header(path: Path) -> None:
    """Raise NotADatabase when `path` holds something other than a SQLite database.

    A missing or empty file is fine: SQLite makes a database of it. Anything else must start
    with the SQLite header, checked before any connection is opened, so that a foreign file
    is neither journaled nor migrated into.
    """
    try:
        with path.open("rb") as f:
            head = f.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return
    except IsADirectoryError:
        raise NotADatabase(f"the database path {str(path)!r} is a directory") from None
    if head and head != SQLITE_HEADER:
        raise NotADatabase(f"{str(path)!r} is not a SQLite database; refusing to touch it")


class SqliteFile:
    """One database file, recognised by its device and inode once it is adopted."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.identity: tuple[int, int] | None = None

    def adopt(self) -> None:
        """Remember the file the path names now (after migrating): from here on it is the one."""
        st = os.stat(self.path)
        self.identity = (st.st_dev, st.st_ino)

    def problem(self) -> str | None:
        """Why the path no longer leads to a writable adopted file; None when it does.

        Two or three system calls: cheap enough before every commit and every guarded request.
        """
        if self.identity is None:
            return None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return f"the database file {str(self.path)!r} no longer exists"
        except OSError as exc:
            return f"the database file {str(self.path)!r} cannot be reached: {exc.strerror}"
        if (st.st_dev, st.st_ino) != self.identity:
            return f"the database file {str(self.path)!r} was replaced by another file"
        for name in (self.path, Path(f"{self.path}-wal")):
            # access(2) also says no for an immutable file (chattr +i), even to root.
            if not os.access(name, os.W_OK) and name.exists():
                return f"the database file {str(name)!r} is not writable"
        return None

    def connect(self) -> sqlite3.Connection:
        """A new connection; after adoption, only to the adopted file and never creating one."""
        if self.identity is None:
            return sqlite3.connect(self.path, check_same_thread=False)
        # mode=rw: a path that vanished fails to open instead of becoming a fresh database.
        uri = f"file:{quote(str(self.path))}?mode=rw"
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        problem = self.problem()
        if problem is not None:
            conn.close()
            raise sqlite3.OperationalError(problem)
        return conn
