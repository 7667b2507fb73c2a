"""What the cluster rows of bench_all.py need: PostgreSQL, Redis and the command of a process.

Each cluster the benchmark starts gets a scratch database, created on the PostgreSQL server of
BENCH_POSTGRES_URL and dropped after, and a redis-server of the benchmark's own on a free port
(the machine's shared Redis is never touched), or the Redis of BENCH_REDIS_URL:

    BENCH_POSTGRES_URL  a SQLAlchemy URL of a PostgreSQL server and a database to connect to
                        while creating and dropping the scratch one
                        (default postgresql+psycopg://postgres@127.0.0.1:5432/postgres)
    BENCH_REDIS_URL     a Redis the benchmark may write to (a database of its own), instead of
                        starting redis-server

When either service cannot be had, `Unavailable` says why.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_ws import HOST, JWT_SECRET, ROOT, free_port

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
CONNECT_TIMEOUT_S = 3  # an absent PostgreSQL must be reported at once, not hang the run
REDIS_START_TIMEOUT_S = 10.0


class Unavailable(Exception):
    """PostgreSQL or Redis cannot be had: the message says which, in a few words for a table
    cell; `detail` is the error behind it, if any."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


@dataclass(frozen=True)
class Services:
    postgres_url: Any  # sqlalchemy.engine.URL of the server's maintenance database
    redis_url: str

    @contextlib.contextmanager
    def scratch_database(self) -> Iterator[str]:
        """The SQLAlchemy URL of a new, empty database, dropped (connections and all) after."""
        from psycopg import sql

        name = f"scoreboard_bench_{uuid.uuid4().hex[:12]}"
        with postgres_admin(self.postgres_url) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield self.postgres_url.set(database=name).render_as_string(hide_password=False)
        finally:
            # FORCE ends the connections of a server that did not stop cleanly.
            with postgres_admin(self.postgres_url) as admin:
                admin.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


def postgres_admin(url: Any) -> Any:  # -> psycopg.Connection
    import psycopg

    return psycopg.connect(
        host=url.host or HOST,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        dbname=url.database or "postgres",
        autocommit=True,  # CREATE/DROP DATABASE cannot run inside a transaction
        connect_timeout=CONNECT_TIMEOUT_S,
    )


@contextlib.contextmanager
def services() -> Iterator[Services]:
    """PostgreSQL checked and Redis running; raises Unavailable otherwise."""
    from sqlalchemy.engine import make_url

    postgres_url = make_url(os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    if postgres_url.get_backend_name() != "postgresql":
        raise Unavailable(f"BENCH_POSTGRES_URL is not a PostgreSQL URL: {postgres_url}")
    try:
        postgres_admin(postgres_url).close()
    except Exception as exc:  # psycopg's OperationalError, or psycopg not installed
        where = f"{postgres_url.host or HOST}:{postgres_url.port or 5432}"
        detail = " ".join(str(exc).split())  # psycopg's messages span lines
        raise Unavailable(f"PostgreSQL at {where} is unreachable", detail) from exc
    redis_url = os.environ.get("BENCH_REDIS_URL")
    if redis_url:
        yield Services(postgres_url, redis_url)
        return
    with private_redis() as port:
        yield Services(postgres_url, f"redis://{HOST}:{port}/0")


@contextlib.contextmanager
def private_redis() -> Iterator[int]:
    """A redis-server of the benchmark's own on a free loopback port, keeping nothing on disk;
    stopped by its PID however we leave. Yields the port."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise Unavailable("redis-server is not installed (or set BENCH_REDIS_URL)")
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="bench-redis-"))
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
         "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + REDIS_START_TIMEOUT_S
        while not redis_answers(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise Unavailable(f"redis-server did not start on port {port}")
            time.sleep(0.05)
        yield port
    finally:
        process.kill()  # it keeps nothing: no reason to wait for a clean shutdown
        process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def redis_answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((HOST, port), 0.5) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(16).startswith(b"+PONG")
    return False


def server_command(
    port: int, database_url: str, redis_url: str | None, max_connections: int, *extra: str
) -> list[str]:
    """One cluster process (a lone one without `redis_url`), with the settings
    bench_ws.running_server gives a single one."""
    redis = [] if redis_url is None else ["--redis-url", redis_url]
    return [
        sys.executable,
        str(ROOT / "run.py"),
        "--host", HOST,
        "--port", str(port),
        "--database-url", database_url,
        *redis,
        "--jwt-secret", JWT_SECRET,
        "--max-connections", str(max_connections),
        "--max-connections-per-user", str(max_connections),
        "--ping-interval", "600",
        "--shutdown-spread", "0",
        "--log-level", "warning",
        *extra,
    ]  # fmt: skip
