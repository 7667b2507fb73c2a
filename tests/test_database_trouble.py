"""A database that goes away, changes or breaks under a running server (docs/operations.md).

Real `run.py` processes over real SQLite files: the file's directory deleted, the file replaced,
made immutable, corrupted, or not a database at all. Whatever happens, no write is acknowledged
that was not stored, `/readyz` says 503, reads that could show wrong data say 503 too, and the
service resumes by itself when the database is back.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from server_process import REPO, SECRET, ServerProcess, free_port

BOARD_ROUTES = [
    ("GET", "/api/boards", None),
    ("POST", "/api/boards", {"id": "new", "title": "New"}),
    ("GET", "/api/boards/b", None),
    ("GET", "/api/boards/b/leaderboard", None),
    ("GET", "/api/boards/b/players/u1", None),
    ("GET", "/api/boards/b/players/u1/around", None),
    ("POST", "/api/boards/b/scores", {"score": 5, "user_id": "late"}),
    ("PATCH", "/api/boards/b", {"title": "T"}),
    ("DELETE", "/api/boards/b", None),
]


def _server(tmp_path: Path, db: Path, *extra: str) -> ServerProcess:
    return ServerProcess(f"sqlite:///{db}", tmp_path / "server.log", *extra)


def _with_board(tmp_path: Path, db: Path, players: int = 10) -> tuple[ServerProcess, str]:
    server = _server(tmp_path, db).start()
    admin = server.token("admin", "admin")
    assert server.request("POST", "/api/boards", {"id": "b", "title": "B"}, admin)[0] == 201
    for i in range(players):
        body = {"score": i, "user_id": f"u{i}"}
        assert server.request("POST", "/api/boards/b/scores", body, admin)[0] == 200
    return server, admin


def _eventually(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def _ready(server: ServerProcess) -> int:
    return server.request("GET", "/readyz")[0]


def _assert_refused_everywhere(server: ServerProcess, admin: str) -> None:
    """Every board route: 503 not_ready with Retry-After, never a 200, 404 or 409."""
    for method, path, body in BOARD_ROUTES:
        status, problem, headers = server.request_with_headers(method, path, body, admin)
        assert (status, problem["code"]) == (503, "not_ready"), (method, path, status, problem)
        assert int(headers["Retry-After"]) >= 1, (method, path)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_deleted_database_directory_is_noticed_before_any_acknowledgement(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    server, admin = _with_board(tmp_path, data / "sb.db")
    try:
        shutil.rmtree(data)
        statuses = [
            server.request("POST", "/api/boards/b/scores", {"score": 99, "user_id": f"x{i}"}, admin)
            for i in range(30)
        ]
        assert {(s, body["code"]) for s, body in statuses} == {(503, "not_ready")}
        assert _ready(server) == 503
        _assert_refused_everywhere(server, admin)
        # Nothing silently made a fresh database where the configured one was.
        assert not data.exists()
        # The directory comes back empty (a new volume, say): still not the database we had.
        data.mkdir()
        time.sleep(1.5)
        assert _ready(server) == 503
        assert not (data / "sb.db").exists()
    finally:
        server.stop(signal.SIGKILL)


def test_a_replaced_database_file_is_not_written_to_or_adopted(tmp_path):
    db = tmp_path / "sb.db"
    server, admin = _with_board(tmp_path, db)
    try:
        # A consistent copy, as a restore would be.
        with sqlite3.connect(db) as copy_from, sqlite3.connect(tmp_path / "copy.db") as copy_to:
            copy_from.backup(copy_to)
        (tmp_path / "copy.db").replace(db)  # the path now names another file
        before = _digest(db)
        status, problem = server.request("POST", "/api/boards/b/scores", {"score": 7}, admin)
        assert (status, problem["code"]) == (503, "not_ready")
        assert _ready(server) == 503
        _assert_refused_everywhere(server, admin)
        assert _digest(db) == before
    finally:
        server.stop(signal.SIGKILL)


def _chattr(flag: str, path: Path) -> None:
    subprocess.run(["chattr", flag, str(path)], check=True, capture_output=True)


def test_an_immutable_database_file_is_not_ready_and_service_resumes_by_itself(tmp_path):
    db = tmp_path / "sb.db"
    server, admin = _with_board(tmp_path, db)
    try:
        try:
            _chattr("+i", db)
        except (OSError, subprocess.CalledProcessError) as exc:
            pytest.skip(f"chattr +i is not possible here: {exc}")
        try:
            status, problem = server.request("POST", "/api/boards/b/scores", {"score": 50}, admin)
            assert (status, problem["code"]) == (503, "not_ready")
            assert _ready(server) == 503
        finally:
            _chattr("-i", db)
        _eventually(lambda: _ready(server) == 200)
        body = {"score": 51, "user_id": "after"}
        assert server.request("POST", "/api/boards/b/scores", body, admin)[0] == 200
    finally:
        server.stop(signal.SIGKILL)
    with sqlite3.connect(db) as conn:
        stored = conn.execute("SELECT score FROM player_records WHERE user_id = 'after'").fetchall()
    assert stored == [(51,)]


def _corrupt_table(db: Path, table: str) -> None:
    """Overwrite the root page of `table` with junk (the file header stays valid)."""
    with sqlite3.connect(db) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,))
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with db.open("r+b") as f:
        f.seek((root[0] - 1) * page_size)
        f.write(b"\xa5" * page_size)


def test_a_corrupt_database_at_start_serves_nothing_wrong_and_writes_nothing(tmp_path):
    db = tmp_path / "sb.db"
    server, admin = _with_board(tmp_path, db)
    assert server.stop() == 0
    _corrupt_table(db, "player_records")
    before = _digest(db)
    server = _server(tmp_path, db).launch()
    try:
        _eventually(lambda: _answers(server))
        time.sleep(1)  # the load has failed at least once by now
        assert _ready(server) == 503
        _assert_refused_everywhere(server, admin)
        assert _digest(db) == before  # a corrupt file is never written to
    finally:
        server.stop(signal.SIGKILL)


def _answers(server: ServerProcess) -> bool:
    try:
        server.request("GET", "/healthz")
    except OSError:
        return False
    return True


def test_a_file_that_is_not_a_database_stops_the_start_with_one_line(tmp_path):
    db = tmp_path / "notes.db"
    db.write_bytes(b"my notes, not a database\n" * 100)
    before = _digest(db)
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "run.py"),
            "--database-url",
            f"sqlite:///{db}",
            "--jwt-secret",
            SECRET,
            "--port",
            "0",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(db) in lines[0] and "not a SQLite database" in lines[0]
    assert _digest(db) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]


def test_until_the_boards_are_loaded_board_routes_answer_503_never_404(tmp_path):
    """kill -9 a server with a big board, start it again and post at once: 503, then 200."""
    db = tmp_path / "sb.db"
    server, admin = _with_board(tmp_path, db, players=300)
    server.stop(signal.SIGKILL)
    # Widen the start-up window so the test cannot miss it: 200,000 more players to load.
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO users (id, name, role, created_at, username_key) "
            "VALUES (?, ?, 'player', 0, ?)",
            ((f"bulk{i}", f"bulk{i}", f"bulk{i}") for i in range(200_000)),
        )
        conn.executemany(
            "INSERT INTO player_records VALUES ('b', ?, ?, 0, 1, 0)",
            ((f"bulk{i}", i) for i in range(200_000)),
        )
    server = _server(tmp_path, db).launch()
    try:
        _eventually(lambda: _answers(server))
        seen = []
        while not seen or seen[-1][0] != 200:
            status, body, headers = server.request_with_headers(
                "POST", "/api/boards/b/scores", {"score": 1, "user_id": "early"}, admin
            )
            seen.append((status, body.get("code") if status != 200 else None))
            if status == 503:
                assert int(headers["Retry-After"]) >= 1
        assert seen[0] == (503, "not_ready"), seen[:3]
        assert set(seen) <= {(503, "not_ready"), (200, None)}, set(seen)
    finally:
        with contextlib.suppress(Exception):
            server.stop(signal.SIGKILL)


def test_a_truncated_shared_memory_file_kills_with_sigbus_but_says_so(tmp_path):
    """SQLite maps the -shm file; truncated under it, the next access is SIGBUS.

    It cannot be caught in Python; what the server can do is say what killed it, on stderr.
    """
    db = tmp_path / "sb.db"
    server, admin = _with_board(tmp_path, db)
    try:
        Path(f"{db}-shm").write_bytes(b"")  # truncate it to 0 bytes
        with contextlib.suppress(OSError):
            server.request("POST", "/api/boards/b/scores", {"score": 1, "user_id": "z"}, admin)
        assert server.process is not None
        assert server.process.wait(10) == -signal.SIGBUS
    finally:
        server.stop(signal.SIGKILL)
    log = server.log_path.read_text()
    assert "Fatal Python error: Bus error" in log
    assert "scoreboard/store.py" in log  # the stack of the thread that touched the mapping


# -- PostgreSQL that stops answering ---------------------------------------------------------


class CuttableProxy:
    """A TCP proxy to PostgreSQL that the test can cut (every connection dropped, new ones
    refused) and restore, so an outage never touches the PostgreSQL server others share."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def open(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            doomed, self._sockets = self._sockets, []
        for sock in [listener, *doomed]:
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@pytest.mark.postgres
@pytest.mark.timeout(90)
def test_postgres_that_stops_answering_acknowledges_nothing_and_resumes_by_itself(
    tmp_path, postgres_url
):
    url = sa.make_url(postgres_url)
    proxy = CuttableProxy((url.host, url.port))
    proxy.open()
    through_proxy = url.set(port=proxy.port).render_as_string(hide_password=False)
    server = ServerProcess(through_proxy, tmp_path / "server.log").start()
    admin = server.token("admin", "admin")
    try:
        assert server.request("POST", "/api/boards", {"id": "b", "title": "B"}, admin)[0] == 201
        acknowledged: dict[str, int] = {}
        outcomes: list[tuple[int, str | None]] = []

        def post(n: int) -> None:
            user = f"u{n}"
            status, body = server.request(
                "POST", "/api/boards/b/scores", {"score": n, "user_id": user}, admin
            )
            outcomes.append((status, body.get("code") if status != 200 else None))
            if status == 200:
                acknowledged[user] = n

        for n in range(20):
            post(n)
        proxy.cut()
        for n in range(20, 40):
            post(n)
        assert _ready(server) == 503
        status, problem = server.request("GET", "/api/boards/b/leaderboard", None, admin)
        assert (status, problem["code"]) == (503, "not_ready")
        proxy.open()
        _eventually(lambda: _ready(server) == 200, timeout=20)
        for n in range(40, 60):
            post(n)
        # During the outage: refused, never acknowledged; before and after: accepted.
        assert outcomes[:20] == [(200, None)] * 20
        assert set(outcomes[20:40]) == {(503, "not_ready")}
        assert outcomes[40:] == [(200, None)] * 20
    finally:
        server.stop(signal.SIGKILL)
        proxy.cut()
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            stored = dict(conn.execute(sa.text("SELECT user_id, score FROM player_records")).all())
    finally:
        engine.dispose()
    assert stored == acknowledged
