"""The GIL-free C send loop of the benchmark study (bench/peers/gilfree_peer.py) delivers whole
frames in order, also to a client too slow to take them when they are sent: the sends that fall
short go through Tornado's stream, and that socket stays out of the C loop until it caught up.

Both loops: one send() per socket, and the same sends as io_uring requests. Needs a C compiler to
build bench/peers/fanout_ext/fanout.c, and liburing for the second (skipped without them, as
the benchmark then says "not measured"; a failure under SCOREBOARD_REQUIRE_SERVICES=1, and
.ci/run installs both).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass

import pytest
from conftest import missing_service
from server_process import REPO, free_port

sys.path.insert(0, str(REPO / "bench" / "peers" / "fanout_ext"))
sys.path.insert(0, str(REPO / "bench" / "peers"))

import fanout_build
from tornado_peer import FRAME_PAYLOAD, server_frame

from scoreboard.loadclient import upgrade_request

# The kernel's send buffer grows up to tcp_wmem's maximum (4 MiB by default) for a client that
# does not read: at 640 bytes a frame, a short write comes after some 6,500 broadcasts.
MAX_BROADCASTS = 30_000
AFTER_FALLING_BEHIND = 100  # broadcasts while the slow client's stream has bytes queued
DEADLINE_S = 60.0


@pytest.fixture(params=["c", "uring"])
def peer(request, tmp_path):
    try:
        ext = fanout_build.build(tmp_path / "ext")
    except fanout_build.Unavailable as exc:
        missing_service(f"fanout extension not built: {exc}")
    if request.param == "uring" and (problem := fanout_build.uring_problem(ext)):
        missing_service(f"io_uring loop not built: {problem}")
    port = free_port()
    log = (tmp_path / "peer.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, str(REPO / "bench/peers/gilfree_peer.py"), "--port", str(port),
         "--ext", str(ext), "--loop", request.param],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + DEADLINE_S
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1).close()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, "peer did not start"
                time.sleep(0.05)
        yield Peer(port, process)
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)
        log.close()


@dataclass
class Peer:
    port: int
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        """SIGTERM; its sockets close once the kernel sent what they had queued."""
        self.process.terminate()
        self.process.wait(timeout=DEADLINE_S)


def connect(port: int, receive_buffer: int | None = None) -> socket.socket:
    sock = socket.socket()
    if receive_buffer is not None:  # before connect, so that the TCP window is small too
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect(("127.0.0.1", port))
    sock.sendall(upgrade_request(f"127.0.0.1:{port}", "/ws"))
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 101"), answer[:100]
    assert answer.endswith(b"\r\n\r\n"), "no frame can have come before a broadcast"
    return sock


def broadcast(connection: http.client.HTTPConnection) -> bytes:
    connection.request("POST", "/broadcast", body=b"")
    return connection.getresponse().read()


def stats(port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=DEADLINE_S) as answer:
        return json.loads(answer.read())


def read_to_end(sock: socket.socket) -> bytes:
    sock.settimeout(DEADLINE_S)
    data = bytearray()
    while chunk := sock.recv(1 << 20):
        data += chunk
    return bytes(data)


def read_exactly(sock: socket.socket, size: int) -> bytes:
    sock.settimeout(DEADLINE_S)
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(min(size - len(data), 1 << 20))
        assert chunk, f"connection closed after {len(data)} of {size} bytes"
        data += chunk
    return bytes(data)


def test_every_client_gets_every_frame_whole_even_one_that_falls_behind(peer):
    with contextlib.ExitStack() as closing:
        fast = closing.enter_context(connect(peer.port))
        slow = closing.enter_context(connect(peer.port, receive_buffer=4096))
        trigger = http.client.HTTPConnection("127.0.0.1", peer.port, timeout=DEADLINE_S)
        closing.callback(trigger.close)
        time.sleep(0.2)  # the server has run open() for both
        check_delivery(trigger, fast, slow, peer.port)
        # Nothing more, and nothing twice: once the server is gone, each has exactly that.
        peer.stop()
        assert read_to_end(fast) == read_to_end(slow) == b""


def check_delivery(
    trigger: http.client.HTTPConnection, fast: socket.socket, slow: socket.socket, peer: int
) -> None:
    frame = server_frame(FRAME_PAYLOAD)
    sent = short_writes = 0
    while short_writes == 0:  # until the kernel refuses part of a frame for the slow client
        assert sent < MAX_BROADCASTS, "the kernel took every frame for a client that reads none"
        for _ in range(500):
            assert broadcast(trigger) == b"ok"
            assert read_exactly(fast, len(frame)) == frame  # the fast client reads as it goes
        sent += 500
        summary = stats(peer)  # counts since the last call
        assert summary["failed"] == 0
        short_writes += summary["short_writes"]
    for _ in range(AFTER_FALLING_BEHIND):  # these go through the slow client's stream
        assert broadcast(trigger) == b"ok"
    sent += AFTER_FALLING_BEHIND
    assert short_writes == 1, "the slow client left the C loop once it fell short"
    assert read_exactly(fast, len(frame) * AFTER_FALLING_BEHIND) == frame * AFTER_FALLING_BEHIND
    # Every frame, whole and in order (a torn or reordered frame would not compare equal);
    # read through a wide window, or the 4 KiB one would take minutes for the megabytes queued.
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    assert read_exactly(slow, len(frame) * sent) == frame * sent
    # Caught up, it goes back into the C loop, and the next frames reach it whole too.
    assert broadcast(trigger) == b"ok"
    assert broadcast(trigger) == b"ok"
    assert read_exactly(slow, len(frame) * 2) == frame * 2
    assert read_exactly(fast, len(frame) * 2) == frame * 2
    assert stats(peer)["short_writes"] == 0
