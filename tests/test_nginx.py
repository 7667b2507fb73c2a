"""docs/deploy/nginx.conf, as documented, in front of real servers (tests/nginx_process.py).

Debian's nginx runs as the current user on a free port with the documented site; the servers
are real `run.py` processes started with `--trusted-proxies 127.0.0.1`. Clients connect from
other loopback addresses (127.0.0.2, …) so that the address a server sees can be told apart
from nginx's own.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import secrets
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import websocket
from conftest import missing_service
from nginx_process import SITE, NginxProcess, nginx_binary, render_site
from server_process import ServerProcess, free_port

DEADLINE_S = 20  # generous: the machine is shared


@pytest.fixture
def nginx_in_front(tmp_path: Path) -> Iterator[Callable[..., NginxProcess]]:
    """Start nginx with the documented site in front of the given `host:port` upstreams."""
    binary = nginx_binary()
    if binary is None:
        missing_service("nginx is not installed (Debian package nginx)")
    started: list[NginxProcess] = []

    def start(*upstreams: str) -> NginxProcess:
        proxy = NginxProcess(binary, tmp_path / f"nginx{len(started)}", list(upstreams))
        started.append(proxy)
        return proxy.start()

    yield start
    for proxy in started:
        proxy.stop()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """One server on SQLite that believes forwarded addresses from nginx (127.0.0.1)."""
    process = ServerProcess(
        f"sqlite:///{tmp_path / 'scoreboard.db'}",
        tmp_path / "server.log",
        "--trusted-proxies",
        "127.0.0.1",
        "--login-burst",
        "3",
        "--login-rate",
        "0.01",
    ).start()
    yield process
    assert process.stop() == 0


# -- clients ---------------------------------------------------------------------------------


def request(
    proxy: NginxProcess,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str | None = None,
    source: str = "127.0.0.2",
    headers: dict[str, str] | None = None,
    timeout: float = DEADLINE_S,
) -> tuple[int, Any]:
    """One HTTP request through nginx from the loopback address `source`; (status, JSON)."""
    sent = {"Content-Type": "application/json", **(headers or {})}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    conn = http.client.HTTPConnection(
        "127.0.0.1", proxy.port, timeout=timeout, source_address=(source, 0)
    )
    try:
        conn.request(method, path, None if body is None else json.dumps(body), sent)
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    try:
        return response.status, json.loads(raw) if raw else None
    except ValueError:
        return response.status, raw.decode(errors="replace")  # nginx's own HTML error page


class Subscriber:
    """A raw WebSocket client through nginx that follows the browser client's rules: on a lost
    connection it connects again, subscribes again and takes the fresh snapshot."""

    def __init__(self, proxy: NginxProcess, token: str, board: str) -> None:
        self.proxy = proxy
        self.token = token
        self.board = board
        self.reconnects = 0
        self.seq = 0
        self.top: list[dict[str, Any]] = []
        self.ws: websocket.WebSocket | None = None
        self.connect()

    def connect(self) -> dict[str, Any]:
        """Connect and subscribe; the snapshot that answers."""
        self.ws = websocket.create_connection(
            self.proxy.ws_url,
            header=[f"Authorization: Bearer {self.token}"],
            # A browser sends its page's origin; the server compares it with the Host that
            # nginx passes on, so a wrong Host header would make this a 403.
            origin=self.proxy.base_url,
            timeout=DEADLINE_S,
        )
        self.ws.send(json.dumps({"type": "subscribe", "data": {"board": self.board}}))
        return self.wait_for(lambda frame: frame["type"] == "snapshot")

    def wait_for(self, matches: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """Read frames (reconnecting if the connection is lost) until one matches."""
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            assert self.ws is not None
            try:
                frame = json.loads(self.ws.recv())
            except (websocket.WebSocketException, OSError, ValueError):
                # The fresh snapshot may already hold what is waited for: no frame after it
                # needs to come.
                frame = self.reconnect()
            if frame["type"] in ("snapshot", "score_update") and frame["data"]["seq"] > self.seq:
                self.seq = frame["data"]["seq"]
                self.top = frame["data"]["top_10"]
            if matches(frame):
                return frame
        pytest.fail(f"no matching frame within {DEADLINE_S} s (last top: {self.top})")

    def reconnect(self) -> dict[str, Any]:
        self.reconnects += 1
        self.close()
        deadline = time.monotonic() + DEADLINE_S
        while True:
            try:
                return self.connect()
            except (websocket.WebSocketException, OSError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2 + 0.3 * secrets.randbelow(100) / 100)  # jittered backoff

    def sees(self, user_id: str, score: int) -> dict[str, Any]:
        """Wait until the board's top 10, as this client holds it, shows `user_id` at `score`."""

        def shown(frame: dict[str, Any]) -> bool:
            return any(e["user_id"] == user_id and e["score"] == score for e in self.top)

        if shown({}):
            return {}
        return self.wait_for(shown)

    def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                self.ws.close(timeout=1)
            self.ws = None


# -- the configuration -----------------------------------------------------------------------


def test_the_documented_site_is_valid_nginx_configuration(tmp_path):
    binary = nginx_binary()
    if binary is None:
        missing_service("nginx is not installed (Debian package nginx)")
    proxy = NginxProcess(binary, tmp_path / "check", ["127.0.0.1:1", "127.0.0.1:2"])
    checked = proxy.check()
    assert checked.returncode == 0, checked.stderr
    assert "test is successful" in checked.stderr
    # Only the addresses were replaced: every other line is the documented one.
    documented = SITE.read_text().splitlines()
    rendered = proxy.site.read_text().splitlines()
    changed = set(rendered) - set(documented)
    assert changed == {
        f"    listen 127.0.0.1:{proxy.port};",
        "    server 127.0.0.1:1 max_fails=1 fail_timeout=5s;",
        "    server 127.0.0.1:2 max_fails=1 fail_timeout=5s;",
    }


def test_rendering_refuses_a_site_of_another_shape():
    with pytest.raises(AssertionError, match="upstream"):
        render_site("server { listen 80; }", listen="127.0.0.1:1", upstreams=["127.0.0.1:2"])


# -- one server behind nginx -----------------------------------------------------------------


def test_http_api_and_a_live_update_through_nginx(server, nginx_in_front):
    proxy = nginx_in_front(f"127.0.0.1:{server.port}")
    admin = server.token("admin", "admin")
    player = server.token("amy")
    assert (
        request(proxy, "POST", "/api/boards", {"id": "cup", "title": "Cup"}, token=admin)[0] == 201
    )
    status, boards = request(proxy, "GET", "/api/boards", token=player)
    assert status == 200 and [b["id"] for b in boards["boards"]] == ["cup"]

    subscriber = Subscriber(proxy, player, "cup")
    try:
        status, answer = request(
            proxy, "POST", "/api/boards/cup/scores", {"score": 42}, token=player
        )
        assert status == 200 and answer["rank"] == 1
        update = subscriber.wait_for(lambda f: f["type"] == "score_update")
        assert update["data"]["updated_user"]["user_id"] == "amy"
        assert update["data"]["top_10"][0]["score"] == 42
        assert subscriber.reconnects == 0
    finally:
        subscriber.close()


def test_the_server_sees_the_clients_address_not_nginxs(server, nginx_in_front):
    proxy = nginx_in_front(f"127.0.0.1:{server.port}")
    wrong = {"username": "nobody", "password": "not the password"}
    # Log-ins are limited per client address (burst 3 here): 127.0.0.2 uses up its own...
    statuses = [request(proxy, "POST", "/api/auth/login", wrong)[0] for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    # ...and claiming another address in X-Forwarded-For does not get it a new bucket: nginx
    # appends the real peer, and the server takes the nearest hop it does not trust.
    spoofed = {"X-Forwarded-For": "127.0.0.9"}
    assert request(proxy, "POST", "/api/auth/login", wrong, headers=spoofed)[0] == 429
    # Another client behind the same nginx still has its whole burst.
    assert request(proxy, "POST", "/api/auth/login", wrong, source="127.0.0.3")[0] == 401
    # The access log names the client (it is written just after the answer: poll for it).
    deadline = time.monotonic() + DEADLINE_S
    while "login (127.0.0.3)" not in server.log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = server.log_path.read_text()
    assert "POST /api/auth/login (127.0.0.2)" in log
    assert "POST /api/auth/login (127.0.0.3)" in log
    assert "POST /api/auth/login (127.0.0.1)" not in log


def test_a_long_poll_through_nginx_answers_when_a_score_arrives(server, nginx_in_front):
    proxy = nginx_in_front(f"127.0.0.1:{server.port}")
    admin = server.token("admin", "admin")
    player = server.token("bob")
    assert (
        request(proxy, "POST", "/api/boards", {"id": "quiz", "title": "Q"}, token=admin)[0] == 201
    )
    answers: list[tuple[int, Any]] = []
    poll = threading.Thread(
        target=lambda: answers.append(
            request(proxy, "GET", "/api/boards/quiz/updates?since=0&timeout=30", token=player)
        )
    )
    poll.start()
    time.sleep(0.5)  # let the poll start waiting (if it has not, it answers at once: still right)
    assert request(proxy, "POST", "/api/boards/quiz/scores", {"score": 7}, token=player)[0] == 200
    poll.join(DEADLINE_S)
    assert not poll.is_alive()
    ((status, state),) = answers
    assert status == 200 and state["seq"] >= 1
    assert [(e["user_id"], e["score"]) for e in state["top_10"]] == [("bob", 7)]


# -- which requests nginx sends again to another server --------------------------------------


class DroppingUpstream:
    """An upstream that reads each request whole and closes the connection unanswered: a
    server that died after the request reached it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[bytes] = []
        self.sock = socket.create_server(("127.0.0.1", self.port))
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            with conn:
                self.requests.append(_read_request(conn))

    def close(self) -> None:
        self.sock.close()


def _read_request(conn: socket.socket) -> bytes:
    conn.settimeout(5)
    data = b""
    with contextlib.suppress(OSError):
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                break
            body += chunk
            data += chunk
    return data


@pytest.fixture
def dropping_upstream() -> Iterator[DroppingUpstream]:
    upstream = DroppingUpstream()
    yield upstream
    upstream.close()


def _post_until_dropped(
    proxy: NginxProcess, dropping: DroppingUpstream, token: str, key: str | None
) -> tuple[int, Any]:
    """Post scores until one reaches the dropping upstream; the answer to that one."""
    for score in range(1, 5):
        seen = len(dropping.requests)
        headers = {"Idempotency-Key": f"{key}-{score}"} if key else {}
        answer = request(
            proxy, "POST", "/api/boards/cup/scores", {"score": score}, token=token, headers=headers
        )
        if len(dropping.requests) > seen:
            return answer
    pytest.fail("nginx never chose the dropping upstream")


def test_a_post_without_idempotency_key_is_not_replayed_elsewhere(
    server, nginx_in_front, dropping_upstream
):
    proxy = nginx_in_front(f"127.0.0.1:{dropping_upstream.port}", f"127.0.0.1:{server.port}")
    admin = server.token("admin", "admin")
    assert server.request("POST", "/api/boards", {"id": "cup", "title": "Cup"}, admin)[0] == 201
    status, _ = _post_until_dropped(proxy, dropping_upstream, server.token("amy"), key=None)
    # The server that got it may have stored it: sending it to another could store it twice.
    assert status == 502
    assert b"POST /api/boards/cup/scores" in dropping_upstream.requests[-1]


def test_a_post_with_idempotency_key_is_replayed_elsewhere(
    server, nginx_in_front, dropping_upstream
):
    proxy = nginx_in_front(f"127.0.0.1:{dropping_upstream.port}", f"127.0.0.1:{server.port}")
    admin = server.token("admin", "admin")
    assert server.request("POST", "/api/boards", {"id": "cup", "title": "Cup"}, admin)[0] == 201
    key = uuid.uuid4().hex
    status, answer = _post_until_dropped(proxy, dropping_upstream, server.token("amy"), key=key)
    # The replay reached the real server, which stored it once under its key.
    assert status == 200 and answer["user_id"] == "amy"
    assert b"Idempotency-Key: " + key.encode() in dropping_upstream.requests[-1]
    status, board = server.request("GET", "/api/boards/cup/leaderboard", token=admin)
    assert status == 200 and [e["user_id"] for e in board["entries"]] == ["amy"]


def test_a_get_is_replayed_elsewhere(server, nginx_in_front, dropping_upstream):
    proxy = nginx_in_front(f"127.0.0.1:{dropping_upstream.port}", f"127.0.0.1:{server.port}")
    admin = server.token("admin", "admin")
    for _ in range(4):
        seen = len(dropping_upstream.requests)
        status, _ = request(proxy, "GET", "/api/boards", token=admin)
        if len(dropping_upstream.requests) > seen:
            assert status == 200
            return
    pytest.fail("nginx never chose the dropping upstream")


# -- three cluster processes behind nginx ----------------------------------------------------


def test_three_cluster_processes_behind_nginx_and_one_killed(
    tmp_path, postgres_url, private_redis, nginx_in_front
):
    """Raw clients through nginx see updates posted through nginx, whichever process either
    side landed on; a process killed with SIGKILL costs its clients one reconnect, after which
    they see updates again."""
    servers = [
        ServerProcess(
            postgres_url,
            tmp_path / f"server{i}.log",
            "--redis-url",
            private_redis.url,
            "--trusted-proxies",
            "127.0.0.1",
            # These raw clients answer pings only while they read, and they read one at a time:
            # on a loaded machine one could sit unread past two ping intervals and be closed for
            # it, a reconnect this test would wrongly blame on the killed process.
            "--ping-interval",
            "600",
        )
        for i in range(3)
    ]
    subscribers: list[Subscriber] = []
    try:
        for process in servers:
            process.start()
        proxy = nginx_in_front(*(f"127.0.0.1:{s.port}" for s in servers))
        admin = servers[0].token("admin", "admin")
        poster = servers[0].token("game", "server")
        status, _ = request(proxy, "POST", "/api/boards", {"id": "cup", "title": "C"}, token=admin)
        assert status == 201
        # least_conn spreads nine long-lived connections three to a process.
        subscribers = [Subscriber(proxy, servers[0].token(f"p{i}"), "cup") for i in range(9)]
        held = [_websockets_held(s) for s in servers]
        assert sum(held) == 9 and min(held) >= 1, held

        def post(user: str, score: int) -> None:
            body = {"score": score, "user_id": user}
            headers = {"Idempotency-Key": uuid.uuid4().hex}
            status, answer = request(
                proxy, "POST", "/api/boards/cup/scores", body, token=poster, headers=headers
            )
            assert status == 200, answer

        post("alice", 10)
        for subscriber in subscribers:
            subscriber.sees("alice", 10)
        assert all(s.reconnects == 0 for s in subscribers)

        victim = servers[1]
        victim.stop(signal.SIGKILL)
        post("bob", 20)  # nginx leaves the dead process out (passive failover)
        for subscriber in subscribers:
            subscriber.sees("bob", 20)
        # Exactly the clients the dead process held reconnected, each once.
        assert sorted(s.reconnects for s in subscribers) == [0] * (9 - held[1]) + [1] * held[1]

        post("carol", 30)
        for subscriber in subscribers:
            subscriber.sees("carol", 30)
        assert sum(s.reconnects for s in subscribers) == held[1]
    finally:
        for subscriber in subscribers:
            subscriber.close()
        # Every survivor is stopped before any status is judged, so none outlives the test.
        survivors = [s for s in servers if s.process is not None and s.process.poll() is None]
        statuses = [process.stop() for process in survivors]
    assert statuses == [0] * len(survivors)


def _websockets_held(server: ServerProcess) -> int:
    """Open WebSocket connections of one process, from its own /metrics (not through nginx)."""
    import urllib.request

    with urllib.request.urlopen(server.base_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith("scoreboard_ws_connections "):
            return int(float(line.split()[1]))
    pytest.fail("no scoreboard_ws_connections in /metrics")
