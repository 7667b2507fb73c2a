"""Shared pytest fixtures, grouped by what they provide.

A fixture that needs an outside service (PostgreSQL, Redis, a browser) calls
`missing_service(reason)` when the service cannot be reached: the test is skipped with that
reason, or fails under SCOREBOARD_REQUIRE_SERVICES=1 (CI), where a skip would hide a gap.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

from scoreboard.app import build_services, make_app
from scoreboard.auth import Role
from scoreboard.config import Settings
from scoreboard.handlers.base import Services

# -- outside services ------------------------------------------------------------------------


def missing_service(reason: str) -> NoReturn:
    """Skip the current test because a service is absent, or fail when CI requires services."""
    if os.environ.get("SCOREBOARD_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (SCOREBOARD_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


# -- databases -------------------------------------------------------------------------------

POSTGRES_HOST = "127.0.0.1"
POSTGRES_PORT = 5432
POSTGRES_USER = "postgres"  # trust authentication on the local server
POSTGRES_CONNECT_TIMEOUT_S = 3  # an absent server must skip fast, not hang the run


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLAlchemy URL of a fresh SQLite file (not created yet) in the test's tmp_path."""
    return f"sqlite:///{tmp_path / 'scoreboard.db'}"


def _postgres_admin():  # -> psycopg.Connection
    import psycopg

    return psycopg.connect(
        host=POSTGRES_HOST,
        port=POSTGRES_PORT,
        user=POSTGRES_USER,
        dbname="postgres",
        autocommit=True,  # CREATE/DROP DATABASE cannot run inside a transaction
        connect_timeout=POSTGRES_CONNECT_TIMEOUT_S,
    )


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A SQLAlchemy URL of a new, empty PostgreSQL database, dropped after the test."""
    import psycopg
    from psycopg import sql

    name = f"scoreboard_test_{uuid.uuid4().hex[:16]}"
    try:
        admin = _postgres_admin()
    except psycopg.OperationalError as exc:
        missing_service(f"PostgreSQL at {POSTGRES_HOST}:{POSTGRES_PORT} is unreachable: {exc}")
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"postgresql+psycopg://{POSTGRES_USER}@{POSTGRES_HOST}:{POSTGRES_PORT}/{name}"
    finally:
        # FORCE ends connections a failed test may have left open, so the drop cannot hang.
        with _postgres_admin() as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


# -- Redis -----------------------------------------------------------------------------------


class PrivateRedis:
    """A redis-server of the test's own on a free loopback port, which the test may stop and
    start again (the machine's shared Redis is never touched). Keeps nothing on disk."""

    def __init__(self, workdir: Path) -> None:
        from server_process import free_port  # tests/ is on sys.path (rootdir conftest)

        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            missing_service("redis-server is not installed")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock,
            ):
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.05)
        self.stop()
        missing_service(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        """Stop it the hard way (SIGKILL): what a crash of Redis looks like to the servers."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A started PrivateRedis, stopped after the test."""
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = PrivateRedis(workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- servers ------------------------------------------------------------------------------
# A real Scoreboard server on a free port inside the test's IOLoop (pytest-tornado's
# `io_loop`), built through the same `build_services` / `make_app` as `run.py`.

TEST_JWT_SECRET = "s" * 40


@dataclass
class Response:
    status: int
    headers: Any
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class ApiClient:
    """Talks JSON to one test server; mints tokens with the server's own key."""

    def __init__(self, base_url: str, services: Services) -> None:
        self.base_url = base_url
        self.services = services
        self.client = AsyncHTTPClient()
        self.admin = self.token("admin", role="admin")

    @property
    def ws_url(self) -> str:
        """The server's WebSocket endpoint."""
        return "ws" + self.base_url.removeprefix("http") + "/ws"

    def token(
        self, sub: str, *, role: str = "player", name: str | None = None, ttl: int | None = None
    ) -> str:
        return self.services.tokens.issue(sub, role=Role(role), name=name, ttl=ttl)

    async def fetch(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        token: str | None = None,
        headers: dict | None = None,
    ) -> Response:
        all_headers = dict(headers or {})
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        if body is not None:
            all_headers.setdefault("Content-Type", "application/json")
        response = await self.client.fetch(
            self.base_url + path,
            method=method,
            body=body,
            headers=all_headers,
            raise_error=False,
            allow_nonstandard_methods=True,
            request_timeout=30,
        )
        return Response(response.code, response.headers, response.body or b"")

    async def get(self, path: str, **kwargs: Any) -> Response:
        return await self.fetch("GET", path, **kwargs)

    async def post(self, path: str, payload: Any, **kwargs: Any) -> Response:
        return await self.fetch("POST", path, body=json.dumps(payload).encode(), **kwargs)

    async def patch(self, path: str, payload: Any, **kwargs: Any) -> Response:
        return await self.fetch("PATCH", path, body=json.dumps(payload).encode(), **kwargs)

    async def make_board(self, board_id: str, **fields: Any) -> dict:
        response = await self.post(
            "/api/boards", {"id": board_id, "title": board_id, **fields}, token=self.admin
        )
        assert response.status == 201, response.body
        return response.json

    async def metric_values(self) -> dict[str, float]:
        """`/metrics` as {'name{labels}': value} for before/after differences."""
        text = (await self.get("/metrics")).text
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                values[key] = float(value)
        return values


@pytest.fixture
def make_services(io_loop, tmp_path):
    """Factory of started services over a fresh SQLite file; closed after the test."""
    made: list[Services] = []

    async def make(*, load: bool = True, **overrides: Any) -> Services:
        settings = Settings(
            database_url=f"sqlite:///{tmp_path}/sb{len(made)}.db", jwt_secret=TEST_JWT_SECRET
        ).replace(**overrides)
        services = build_services(settings)
        services.store.start(io_loop.asyncio_loop)
        services.hub.start()
        if services.presence is not None:
            services.presence.start()
        if load:
            await services.service.load()
        made.append(services)
        return services

    yield make
    for services in made:
        services.service.stop_watching()
        services.hub.abort_all()
        services.hub.stop()
        services.sessions.stop()
        services.store.close()
        if services.presence is not None:
            io_loop.run_sync(services.presence.close)
        if services.redis is not None:
            # Cluster mode: drain closes the change bus and joins the cluster writer thread.
            io_loop.run_sync(lambda: services.service.drain(1))  # noqa: B023 (called at once)
            io_loop.run_sync(services.redis.aclose)


@pytest.fixture
def make_api(io_loop, make_services):
    """Factory: `await make_api(**settings)` serves a fresh app on a free port; gives a client."""
    servers: list[HTTPServer] = []

    async def make(*, load: bool = True, **overrides: Any) -> ApiClient:
        services = await make_services(load=load, **overrides)
        sock, port = bind_unused_port()
        server = HTTPServer(make_app(services), max_body_size=1024 * 1024)
        server.add_sockets([sock])
        servers.append(server)
        return ApiClient(f"http://127.0.0.1:{port}", services)

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def api(io_loop, make_api) -> ApiClient:
    return io_loop.run_sync(make_api)


@pytest.fixture
def unloaded_api(io_loop, make_api) -> ApiClient:
    """A server whose boards are not loaded yet (readiness 503)."""
    return io_loop.run_sync(lambda: make_api(load=False))
