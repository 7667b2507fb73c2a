"""The HTTP server's limits (scoreboard/handlers/http_server.py), against real `run.py` processes.

Deadlines are shrunk with their flags; the descriptor test runs the server under a low
`ulimit -n` and fills it with connections that never send a request head.
"""

from __future__ import annotations

import http.client
import json
import socket
import time

from server_process import ServerProcess


def _closed_after(sock: socket.socket, timeout: float) -> float:
    """Seconds until the server closed `sock` (EOF or reset); fails after `timeout`."""
    started = time.monotonic()
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        raise AssertionError(f"still open after {timeout} s") from None
    return time.monotonic() - started


def _status(server: ServerProcess, sock: socket.socket, path: str = "/healthz") -> int:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(65536)
        assert chunk, "closed instead of answering"
        head += chunk
    return int(head.split(b" ", 2)[1])


def test_connections_without_progress_are_closed(tmp_path):
    server = ServerProcess(
        f"sqlite:///{tmp_path / 'sb.db'}",
        tmp_path / "server.log",
        "--request-head-timeout",
        "1",
        "--idle-timeout",
        "2",
    ).start()
    try:
        silent = socket.create_connection(("127.0.0.1", server.port))
        partial = socket.create_connection(("127.0.0.1", server.port))
        partial.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # no blank line: never whole
        idle = socket.create_connection(("127.0.0.1", server.port))
        assert _status(server, idle) == 200
        assert 0.5 < _closed_after(silent, 5) < 2.5
        assert _closed_after(partial, 5) < 2.5
        # The keep-alive connection lives past the head deadline, and goes at the idle one.
        assert 0.5 < _closed_after(idle, 5) < 3.5
        for sock in (silent, partial, idle):
            sock.close()
    finally:
        assert server.stop() == 0


def test_oversized_heads_get_431_and_chunked_bodies_413(tmp_path):
    server = ServerProcess(f"sqlite:///{tmp_path / 'sb.db'}", tmp_path / "server.log").start()
    try:
        token = server.token("boss", "admin")
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.request("GET", "/api/me", headers={"Authorization": "Bearer " + "x" * 100_000})
        answer = conn.getresponse()
        body = json.loads(answer.read())
        assert answer.status == 431
        assert answer.headers["Content-Type"] == "application/problem+json"
        assert body["status"] == 431 and body["code"] == "too_large"
        conn.close()

        def chunks():
            piece = b"x" * 65536
            for _ in range(20 * 16):  # 20 MiB
                yield piece

        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        conn.request(
            "POST",
            "/api/boards",
            body=chunks(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            encode_chunked=True,
        )
        answer = conn.getresponse()
        body = json.loads(answer.read())
        assert answer.status == 413
        assert answer.headers["Content-Type"] == "application/problem+json"
        assert body["code"] == "too_large"
        conn.close()
    finally:
        assert server.stop() == 0
    assert "Traceback" not in (tmp_path / "server.log").read_text()


def test_an_oversized_form_post_gets_a_413_page_not_a_bare_400(tmp_path):
    """The HTML forms (log-in, register, score) have the API's body cap and answer a page."""
    server = ServerProcess(f"sqlite:///{tmp_path / 'sb.db'}", tmp_path / "server.log").start()
    form = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "text/html"}
    try:
        declared = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        declared.request("POST", "/login", body=b"a" * (1100 * 1024), headers=form)
        answer = declared.getresponse()
        assert answer.status == 413
        assert answer.headers["Content-Type"].startswith("text/html")
        assert "Too much to send" in answer.read().decode()
        declared.close()

        def chunks():
            for _ in range(2 * 16):  # 2 MiB, past Tornado's own 1 MiB cap
                yield b"username=" + b"x" * 65527

        chunked = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        chunked.request("POST", "/register", body=chunks(), headers=form, encode_chunked=True)
        answer = chunked.getresponse()
        assert answer.status == 413
        assert answer.headers["Content-Type"].startswith("text/html")
        answer.read()
        # The connection was read to the end of the body, so it still serves.
        chunked.request("GET", "/login", headers={"Accept": "text/html"})
        assert chunked.getresponse().status == 200
        chunked.close()

        unknown = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        unknown.request("POST", "/no/such/page", body=b"a=1" * 1000, headers=form)
        assert unknown.getresponse().status == 404
        unknown.close()
    finally:
        assert server.stop() == 0
    assert "Traceback" not in (tmp_path / "server.log").read_text()


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime in clock ticks


def test_descriptor_exhaustion_keeps_serving_what_is_held(tmp_path):
    log_path = tmp_path / "server.log"
    server = ServerProcess(
        f"sqlite:///{tmp_path / 'sb.db'}",
        log_path,
        "--request-head-timeout",
        "4",
        nofile=64,
    ).start()
    assert server.process is not None
    held: list[socket.socket] = []
    try:
        keeper = socket.create_connection(("127.0.0.1", server.port))
        assert _status(server, keeper) == 200
        for _ in range(120):  # far more than the 64 descriptors: half-open connections
            held.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
        time.sleep(0.5)
        cpu_before = _cpu_seconds(server.process.pid)
        started = time.monotonic()
        for _ in range(10):
            assert _status(server, keeper) == 200  # what is held is still served
        assert time.monotonic() - started < 2
        time.sleep(1.0)
        # No spinning while the listener has connections it cannot take.
        assert _cpu_seconds(server.process.pid) - cpu_before < 0.5
        # Once the head deadline closes the silent ones, new connections are served again.
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(("127.0.0.1", server.port), timeout=2) as fresh:
                    fresh.settimeout(2)
                    if _status(server, fresh) == 200:
                        break
            except (OSError, AssertionError):
                pass
            assert time.monotonic() < deadline, "never recovered"
            time.sleep(0.2)
        keeper.close()
    finally:
        for sock in held:
            sock.close()
        assert server.stop() == 0
    output = log_path.read_text()
    assert "Traceback" not in output
    assert "Too many open files" in output
    assert output.count("out of file descriptors") <= 3  # at most once per 10 s
