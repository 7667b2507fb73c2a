"""The load generator behind `run.py loadtest`: raw WebSocket subscribers, a score poster, figures.

N subscribers connect to `/ws?board=B` with their own token; a poster submits scores on an
absolute schedule, over HTTP (pipelined on one keep-alive connection) or as WebSocket
`submit_score` messages. Post i of a run submits `base + i`, where `base` is above every score
an earlier run could have left on the board, so every post is a new top score and a frame whose
top score is `base + j` holds every post up to j. The latency of a post, per subscriber, is the
time from the moment the poster wrote it to the socket until the first frame holding it was read
(both wall-clock times taken here, so child processes on the same machine compare them directly).

Why raw sockets: a load generator that costs as much per frame as the server measures itself.
asyncio Protocols ask for 256 KiB per read (about 27 us of CPU per frame at 1,000 sockets on a
2-core machine); a 16 KiB `recv` from `loop.add_reader` costs about 11 us. The parser below only
looks at what it needs: the frame header and, for `score_update`, the first score of `top_10`.

The same client speaks socket.io (Engine.IO v4 over WebSocket) and plain broadcast servers for
the benchmark's peers (bench/peers/), so that every server is read by the same code.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import contextlib
import itertools
import json
import math
import os
import re
import socket
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

RECV_BYTES = 16 * 1024  # one read per readiness event: many frames, without 256 KiB buffers
CONNECT_BATCH = 100  # concurrent handshakes: below Tornado's listen backlog of 128
HANDSHAKE_TIMEOUT_S = 15.0
HTTP_TIMEOUT_S = 10.0
LAG_PROBE_S = 0.01  # period of the loop-lag probe: lag finer than this is not seen
PROGRESS_S = 1.0  # the progress line on stderr, and the children's progress reports
PLAYERS = 10  # posts cycle through this many players, so each post reshuffles the top 10
SCORE_UNITS_PER_S = 100_000  # score base = wall clock in 10 us units: above any earlier run's
CHILD_READY_TIMEOUT_S = 120.0
POSTER_SUB = "loadtest-poster"
MAX_POST_CONNECTIONS = 64  # HTTP posts in flight at most, one per keep-alive connection
# A connection may send 20 messages/s (burst 50) before the server refuses them: stay below.
WS_POSTS_PER_CONNECTION_S = 15.0
ADMIN_SUB = "loadtest-admin"
TOKEN_TTL_S = 3600

# Linux's SO_TIMESTAMPNS (asm-generic/socket.h): the kernel stamps each received skb with
# CLOCK_REALTIME; recvmsg hands the stamp of the first skb read as a struct timespec.
SO_TIMESTAMPNS = 35
TIMESPEC = struct.Struct("@qq")
ANCILLARY_BYTES = socket.CMSG_SPACE(TIMESPEC.size)

OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

SCORE_UPDATE_PREFIX = b'{"type":"score_update"'
ACK_PREFIX = b'{"type":"ack"'
ERROR_PREFIX = b'{"type":"error"'
TOP_SCORE_RE = re.compile(rb'"top_10":\[\{[^}]*?"score":(-?\d+)')  # score of rank 1
REQUEST_ID_RE = re.compile(rb'"request_id":"lt\d+\.(\d+)"')  # lt<base>.<post index>
ERROR_CODE_RE = re.compile(rb'"code":"([a-z_]+)"')


class LoadtestError(Exception):
    """A reason the load test cannot run, worded for the person who started it."""


# -- pure parts: percentiles, histograms, schedule, WebSocket framing --------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 1]) of an ascending sequence; NaN when empty."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class LatencyHistogram:
    """Durations in buckets 1% wide, so percentiles are within 1% and histograms merge by adding.

    Millions of (post, subscriber) pairs cost one dict entry per bucket, not one float each, and
    child processes send their histograms, not their samples.
    """

    GROWTH = 1.01
    _LOG_GROWTH = math.log(GROWTH)

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.count = 0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        micros = seconds * 1e6
        bucket = int(math.log(micros) / self._LOG_GROWTH) if micros > 1.0 else 0
        self.counts[bucket] = self.counts.get(bucket, 0) + 1
        self.count += 1
        if seconds > self.max:
            self.max = seconds

    def merge(self, other: LatencyHistogram) -> None:
        for bucket, n in other.counts.items():
            self.counts[bucket] = self.counts.get(bucket, 0) + n
        self.count += other.count
        self.max = max(self.max, other.max)

    def quantile(self, q: float) -> float:
        """Seconds at nearest rank q*count: the bucket's geometric middle, capped at the max."""
        if not self.count:
            return math.nan
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for bucket in sorted(self.counts):
            seen += self.counts[bucket]
            if seen >= rank:
                if bucket == 0:
                    return min(self.max, 1e-6)
                return min(self.max, self.GROWTH ** (bucket + 0.5) / 1e6)
        return self.max

    def to_json(self) -> dict[str, Any]:
        return {"counts": {str(k): v for k, v in self.counts.items()}, "max": self.max}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LatencyHistogram:
        histogram = cls()
        histogram.counts = {int(k): v for k, v in data["counts"].items()}
        histogram.count = sum(histogram.counts.values())
        histogram.max = data["max"]
        return histogram

    def summary_ms(self) -> dict[str, float | int | None]:
        def ms(seconds: float) -> float | None:
            return None if math.isnan(seconds) else round(seconds * 1000, 3)

        return {
            "count": self.count,
            "p50": ms(self.quantile(0.5)),
            "p90": ms(self.quantile(0.9)),
            "p99": ms(self.quantile(0.99)),
            "max": ms(self.max) if self.count else None,
        }


def schedule(rate: float, duration: float) -> list[float]:
    """Offsets from the start at which posts are due: `rate` per second, every one due before
    `duration` ends."""
    if rate <= 0 or duration <= 0:
        return []
    return [i / rate for i in range(math.ceil(rate * duration - 1e-9))]


def split(total: int, parts: int) -> list[int]:
    """`total` as `parts` shares differing by at most one, larger first."""
    share, extra = divmod(total, parts)
    return [share + (1 if i < extra else 0) for i in range(parts)]


def mask_payload(payload: bytes, mask: bytes) -> bytes:
    """XOR with the repeating 4-byte mask (RFC 6455 5.3), as one big-integer operation."""
    if not payload:
        return b""
    n = len(payload)
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def client_frame(payload: bytes, opcode: int = OP_TEXT, mask: bytes | None = None) -> bytes:
    """One final frame from client to server: always masked, as RFC 6455 requires."""
    mask = os.urandom(4) if mask is None else mask
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 1 << 16:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    return head + mask + mask_payload(payload, mask)


class FrameParser:
    """Splits a byte stream into whole messages (opcode, payload), however the reads cut it.

    Server frames are unmasked; a masked one is unmasked anyway. Fragments are joined.
    """

    __slots__ = ("_buffer", "_fragment_opcode", "_fragments")

    def __init__(self) -> None:
        self._buffer = b""
        self._fragments: list[bytes] = []
        self._fragment_opcode = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buffer = self._buffer + data if self._buffer else data
        messages: list[tuple[int, bytes]] = []
        size = len(buffer)
        pos = 0
        while size - pos >= 2:
            first, second = buffer[pos], buffer[pos + 1]
            length = second & 0x7F
            start = pos + 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(buffer[pos + 2 : pos + 4], "big")
                start = pos + 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buffer[pos + 2 : pos + 10], "big")
                start = pos + 10
            mask = None
            if second & 0x80:
                mask = buffer[start : start + 4]
                start += 4
            end = start + length
            if end > size:
                break
            payload = buffer[start:end]
            if mask is not None:
                payload = mask_payload(payload, mask)
            pos = end
            opcode, fin = first & 0x0F, first & 0x80
            if opcode >= OP_CLOSE:  # control frames may come between fragments
                messages.append((opcode, payload))
            elif not fin:
                if opcode != OP_CONTINUATION:
                    self._fragment_opcode = opcode
                self._fragments.append(payload)
            elif opcode == OP_CONTINUATION:
                self._fragments.append(payload)
                messages.append((self._fragment_opcode, b"".join(self._fragments)))
                self._fragments.clear()
            else:
                messages.append((opcode, payload))
        self._buffer = buffer[pos:]
        return messages


def upgrade_request(host: str, path: str, headers: dict[str, str] | None = None) -> bytes:
    """The HTTP/1.1 upgrade request of a WebSocket client."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def parse_response_head(buffer: bytes) -> tuple[int, bytes, bytes] | None:
    """(status, head, rest) once the head of an HTTP response is complete, else None."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buffer[:end]
    parts = head.split(b" ", 2)
    try:
        status = int(parts[1])
    except (IndexError, ValueError):
        status = 0
    return status, head, buffer[end + 4 :]


def close_code(payload: bytes) -> int:
    """The status code of a close frame (1005 when it carries none, as RFC 6455 says)."""
    return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005


def score_base(now: float) -> int:
    """Post i submits base + i: a new top score over any earlier run (at up to 100,000 posts/s)."""
    return int(now * SCORE_UNITS_PER_S)


# -- the clients ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where the server is: address for sockets, Host header, WebSocket path prefix."""

    host: str
    port: int

    @classmethod
    def from_url(cls, url: str) -> Target:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme in ("https", "wss"):
            raise LoadtestError(f"--url: TLS is not supported by the load generator, got {url!r}")
        if parts.scheme not in ("http", "ws") or not parts.hostname:
            raise LoadtestError(f"--url: expected http://HOST:PORT, got {url!r}")
        try:
            port = parts.port or 80
        except ValueError:
            raise LoadtestError(f"--url: bad port in {url!r}") from None
        return cls(parts.hostname, port)

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def family(self) -> int:
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET


class Protocol:
    """What a client speaks over WebSocket; `frame` sees every whole text/binary message."""

    SCOREBOARD = "scoreboard"  # counts score_update frames and reads their top score
    SOCKETIO = "socketio"  # Engine.IO v4: answers `0` with `40` and `2` with `3`; counts `42`
    PLAIN = "plain"  # counts every message
    SUBMITTER = "submitter"  # counts ack / error answers to submit_score
    ALL = (SCOREBOARD, SOCKETIO, PLAIN, SUBMITTER)


class Client:
    """One raw WebSocket client on a non-blocking socket, read by `loop.add_reader`."""

    __slots__ = (
        "closed",
        "connect_started",
        "fd",
        "group",
        "head",
        "last_index",
        "on_answer",
        "parser",
        "sock",
        "upgraded",
    )

    def __init__(self, group: ClientGroup, sock: socket.socket) -> None:
        self.group = group
        self.sock = sock
        self.fd = sock.fileno()
        self.parser = FrameParser()
        self.upgraded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.head: bytes | None = b""  # the upgrade answer until it is complete; then None
        self.last_index = -1  # highest post index seen in a score_update
        self.closed = False
        self.connect_started = 0.0
        self.on_answer: Callable[[bytes], None] | None = None  # submitter: ack / error

    def send(self, payload: bytes, opcode: int = OP_TEXT) -> None:
        try:
            self.sock.send(client_frame(payload, opcode))
        except OSError as exc:
            self.lost(f"send: {exc.strerror or exc}")

    def readable(self) -> None:
        group = self.group
        try:
            if group.kernel_timestamps:
                data, ancillary, _, _ = self.sock.recvmsg(RECV_BYTES, ANCILLARY_BYTES)
                now = kernel_time(ancillary)
                group.read_delay.add(max(0.0, time.time() - now))  # our own delay, per read
            else:
                data = self.sock.recv(RECV_BYTES)
                now = time.time()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.lost(f"recv: {exc.strerror or exc}")
            return
        if not data:
            self.lost("connection closed by the server without a close frame")
            return
        if self.head is not None:
            data = self.handshake(data)
            if not data:
                return
        for opcode, payload in self.parser.feed(data):
            if opcode in (OP_TEXT, OP_BINARY):
                group.message(self, payload, now)
            elif opcode == OP_PING:
                self.send(payload, OP_PONG)
            elif opcode == OP_CLOSE:
                group.close_codes[close_code(payload)] += 1
                self.shutdown()
                return

    def handshake(self, data: bytes) -> bytes:
        """Reads the 101 answer; returns the bytes after it (frames), or b"" if not done."""
        assert self.head is not None
        parsed = parse_response_head(self.head + data)
        if parsed is None:
            self.head += data
            return b""
        status, head, rest = parsed
        self.head = None
        if status != 101:
            self.group.errors[f"handshake HTTP {status}"] += 1
            self.upgraded.set_exception(HandshakeRefused(status, head + b"\r\n\r\n" + rest))
            self.shutdown()
            return b""
        if self.group.protocol != Protocol.SOCKETIO:  # socket.io is up once `40` arrives
            self.upgraded.set_result(None)
        return rest

    def lost(self, reason: str) -> None:
        if self.closed:
            return
        if self.upgraded.done():
            self.group.errors[reason] += 1
        else:
            self.upgraded.set_exception(ConnectionError(reason))
        self.shutdown()

    def shutdown(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.group.open_clients -= 1
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self.fd)
        self.sock.close()

    def close(self) -> None:
        """A polite close: a close frame (1000), then the socket."""
        if self.closed:
            return
        with contextlib.suppress(OSError):
            self.sock.send(client_frame((1000).to_bytes(2, "big"), OP_CLOSE))
        self.shutdown()


class HandshakeRefused(Exception):
    def __init__(self, status: int, answer: bytes) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.answer = answer


def kernel_time(ancillary: list[tuple[int, int, bytes]]) -> float:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= TIMESPEC.size:
            seconds, nanos = TIMESPEC.unpack_from(data)
            return seconds + nanos * 1e-9
    return time.time()


class ClientGroup:
    """Clients of one process: connects them, counts what they read, records latencies."""

    def __init__(
        self,
        target: Target,
        protocol: str = Protocol.SCOREBOARD,
        *,
        base: int = 0,
        kernel_timestamps: bool = False,
    ) -> None:
        self.target = target
        self.protocol = protocol
        self.base = base
        self.kernel_timestamps = kernel_timestamps
        self.clients: list[Client] = []
        self.open_clients = 0
        self.messages = 0  # every text/binary message
        self.frames = 0  # score_update, socket.io `42` or every plain message: the counted kind
        self.sent_at: dict[int, float] = {}  # post index -> wall time the poster wrote it
        self.pending: list[tuple[int, float]] = []  # frames that arrived before their post time
        self.latency = LatencyHistogram()
        self.read_delay = LatencyHistogram()  # kernel receive -> read (--kernel-timestamps)
        self.delivered = 0  # (post, subscriber) pairs seen
        self.posts = 0  # posts this run will make: a higher top score is no post of ours
        self.errors: Counter[str] = Counter()
        self.close_codes: Counter[int] = Counter()
        self.connect_times: list[float] = []
        self.connect_failed = 0

    # -- connecting

    async def connect(
        self, requests: Sequence[bytes], on_progress: Callable[[], None] | None = None
    ) -> None:
        """One client per upgrade request, CONNECT_BATCH at a time; failures are counted."""
        for start in range(0, len(requests), CONNECT_BATCH):
            batch = requests[start : start + CONNECT_BATCH]
            results = await asyncio.gather(
                *(self.connect_one(request) for request in batch), return_exceptions=True
            )
            for result in results:
                if isinstance(result, BaseException):
                    self.connect_failed += 1
                    if not isinstance(result, HandshakeRefused):  # counted by the client
                        self.errors[connect_error(result)] += 1
                    if isinstance(result, HandshakeRefused | ConnectionRefusedError) and not (
                        self.clients
                    ):
                        raise result  # the first batch fails the same way for everyone
            if on_progress is not None:
                on_progress()

    async def connect_one(self, request: bytes) -> Client:
        loop = asyncio.get_running_loop()
        sock = socket.socket(self.target.family(), socket.SOCK_STREAM)
        sock.setblocking(False)
        started = time.perf_counter()
        try:
            await asyncio.wait_for(
                loop.sock_connect(sock, (self.target.host, self.target.port)), HTTP_TIMEOUT_S
            )
        except BaseException:
            sock.close()
            raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.kernel_timestamps:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        client = Client(self, sock)
        self.open_clients += 1
        loop.add_reader(client.fd, client.readable)
        sock.send(request)
        try:
            await asyncio.wait_for(asyncio.shield(client.upgraded), HANDSHAKE_TIMEOUT_S)
        except BaseException:
            client.shutdown()
            raise
        self.connect_times.append(time.perf_counter() - started)
        self.clients.append(client)
        return client

    def close(self) -> None:
        for client in self.clients:
            client.close()

    # -- reading

    def message(self, client: Client, payload: bytes, now: float) -> None:
        self.messages += 1
        protocol = self.protocol
        if protocol == Protocol.SCOREBOARD:
            if payload.startswith(SCORE_UPDATE_PREFIX):
                self.frames += 1
                match = TOP_SCORE_RE.search(payload)
                if match is not None:
                    self.top_score(client, int(match.group(1)) - self.base, now)
        elif protocol == Protocol.SOCKETIO:
            if payload.startswith(b"42"):
                self.frames += 1
            elif payload == b"2":
                client.send(b"3")
            elif payload.startswith(b"40"):
                if not client.upgraded.done():
                    client.upgraded.set_result(None)
            elif payload.startswith(b"0"):
                client.send(b"40")
            elif payload.startswith(b"44"):  # connect_error of the namespace
                client.lost(f"socket.io refused: {payload[:80]!r}")
        elif protocol == Protocol.SUBMITTER:
            if client.on_answer is not None and payload.startswith((ACK_PREFIX, ERROR_PREFIX)):
                client.on_answer(payload)
        else:
            self.frames += 1

    def top_score(self, client: Client, index: int, now: float) -> None:
        """A frame's top score says it holds every post up to `index`: time those not seen."""
        if index >= self.posts:  # not a post of this run (another poster's score on top)
            return
        last = client.last_index
        if index <= last:
            return
        sent_at = self.sent_at
        latency = self.latency
        for post in range(last + 1, index + 1):
            sent = sent_at.get(post)
            if sent is None:
                self.pending.append((post, now))
            else:
                latency.add(max(0.0, now - sent))
        self.delivered += index - last
        client.last_index = index

    def post_sent(self, index: int, when: float) -> None:
        self.sent_at[index] = when

    def settle_pending(self) -> None:
        """Time the frames that arrived before their post's send time was known here."""
        still = []
        for post, now in self.pending:
            sent = self.sent_at.get(post)
            if sent is None:
                still.append((post, now))
            else:
                self.latency.add(max(0.0, now - sent))
        self.pending = still

    def report(self) -> dict[str, Any]:
        """Everything this group measured, in a form that merges across processes."""
        self.settle_pending()
        return {
            "connected": len(self.connect_times),
            "connect_failed": self.connect_failed,
            "connect_times": self.connect_times,
            "open": self.open_clients,
            "messages": self.messages,
            "frames": self.frames,
            "delivered": self.delivered,
            "latency": self.latency.to_json(),
            "read_delay": self.read_delay.to_json(),
            "errors": dict(self.errors),
            "close_codes": {str(k): v for k, v in self.close_codes.items()},
        }


def connect_error(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "handshake timed out"
    if isinstance(exc, OSError):
        return f"connect: {exc.strerror or exc}"
    return f"connect: {exc}"


def subscriber_path(board: str | None) -> str:
    return "/ws" if board is None else f"/ws?board={board}"


def bearer_requests(target: Target, path: str, tokens: Iterable[str]) -> list[bytes]:
    return [
        upgrade_request(target.host_header, path, {"Authorization": f"Bearer {token}"})
        for token in tokens
    ]


class LagProbe:
    """This process's event-loop lag: how late its reads run, so its own delay is visible."""

    def __init__(self) -> None:
        self.histogram = LatencyHistogram()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + LAG_PROBE_S
            await asyncio.sleep(LAG_PROBE_S)
            self.histogram.add(max(0.0, loop.time() - due))


# -- HTTP: a minimal keep-alive client ----------------------------------------------------------


class HttpConnection:
    """HTTP/1.1 keep-alive requests, answered in order (Tornado answers with Content-Length)."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> HttpConnection:
        try:
            self.reader, self.writer = await asyncio.wait_for(
                asyncio.open_connection(self.target.host, self.target.port), HTTP_TIMEOUT_S
            )
        except ConnectionRefusedError:
            raise LoadtestError(
                f"cannot connect to {self.target.host_header}: connection refused "
                "(is the server running there?)"
            ) from None
        except (OSError, TimeoutError) as exc:
            raise LoadtestError(f"cannot connect to {self.target.host_header}: {exc}") from None
        return self

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def send(self, method: str, path: str, body: object = None, bearer: str | None = None) -> None:
        assert self.writer is not None
        payload = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.target.host_header}\r\n"
            f"Content-Length: {len(payload)}\r\n"
        )
        if body is not None:
            head += "Content-Type: application/json\r\n"
        if bearer is not None:
            head += f"Authorization: Bearer {bearer}\r\n"
        self.writer.write(head.encode() + b"\r\n" + payload)

    async def response(self) -> tuple[int, bytes]:
        assert self.reader is not None
        header = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *fields = header.decode("latin-1").split("\r\n")
        length = 0
        for name, _, value in (f.partition(":") for f in fields):
            if name.strip().lower() == "content-length":
                length = int(value)
        return int(status_line.split()[1]), await self.reader.readexactly(length)

    async def request(
        self, method: str, path: str, body: object = None, bearer: str | None = None
    ) -> tuple[int, bytes]:
        self.send(method, path, body, bearer)
        return await asyncio.wait_for(self.response(), HTTP_TIMEOUT_S)


def problem_detail(body: bytes) -> str:
    with contextlib.suppress(ValueError, AttributeError):
        return str(json.loads(body).get("detail", ""))[:200]
    return body[:200].decode(errors="replace")


# -- the poster -------------------------------------------------------------------------------


class Poster(abc.ABC):
    """Submits post i as `base + i` for player i % PLAYERS at its due time; counts answers."""

    def __init__(self, board: str, base: int, on_sent: Callable[[int, float], None]) -> None:
        self.board = board
        self.base = base
        self.on_sent = on_sent
        self.sent = 0
        self.accepted = 0
        self.failed: Counter[str] = Counter()
        self.answer_times = LatencyHistogram()  # written -> answered
        self.sent_at: dict[int, float] = {}
        self.answered = asyncio.Event()

    def body(self, index: int) -> dict[str, Any]:
        return {"user_id": f"loadtest-player{index % PLAYERS}", "score": self.base + index}

    def note_sent(self, index: int) -> None:
        now = time.time()
        self.sent_at[index] = now
        self.sent += 1
        self.on_sent(index, now)

    def note_answer(self, index: int, error: str | None) -> None:
        sent = self.sent_at.get(index)
        if sent is not None:
            self.answer_times.add(time.time() - sent)
        if error is None:
            self.accepted += 1
        else:
            self.failed[error] += 1
        if self.accepted + sum(self.failed.values()) >= self.sent:
            self.answered.set()

    async def run(self, offsets: Sequence[float], start: float) -> None:
        """Send on the absolute schedule `start + offset` (loop time)."""
        loop = asyncio.get_running_loop()
        for index, offset in enumerate(offsets):
            delay = start + offset - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self.answered.clear()
            self.send(index)

    @abc.abstractmethod
    def send(self, index: int) -> None:
        """Write post `index` now, without waiting for its answer."""

    async def wait_answers(self, timeout: float) -> None:
        if self.sent and self.accepted + sum(self.failed.values()) < self.sent:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.answered.wait(), timeout)

    @abc.abstractmethod
    def close(self) -> None:
        """Close the poster's connection."""


class HttpPoster(Poster):
    """Posts on a pool of keep-alive connections, one post in flight on each.

    Tornado reads a connection's next request only after answering the one before, so posts
    pipelined on one connection would wait behind every slow commit and the figures would
    measure that queue. A post goes out on an idle connection, else on a new one (up to
    MAX_POST_CONNECTIONS; beyond that it waits for one, and its time starts when written).
    Posts on different connections may be applied a few ms out of order.
    """

    def __init__(self, http: HttpConnection, bearer: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target = http.target
        self.bearer = bearer
        self.path = f"/api/boards/{kwargs['board']}/scores"
        self.idle: list[HttpConnection] = [http]
        self.connections: list[HttpConnection] = [http]
        self.waiting: list[int] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, index: int) -> None:
        if self.idle:
            http = self.idle.pop()
            self._write(http, index)
            self._spawn(self._answer(http, index))
        elif len(self.connections) < MAX_POST_CONNECTIONS:
            self._spawn(self._open_and_post(index))
        else:
            self.waiting.append(index)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _write(self, http: HttpConnection, index: int) -> None:
        http.send("POST", self.path, self.body(index), self.bearer)
        self.note_sent(index)

    async def _open_and_post(self, index: int) -> None:
        http = HttpConnection(self.target)
        self.connections.append(http)
        try:
            await http.open()
        except LoadtestError as exc:
            self.connections.remove(http)
            self.note_answer(index, f"post: {exc}")
            return
        self._write(http, index)
        await self._answer(http, index)

    async def _answer(self, http: HttpConnection, index: int) -> None:
        while True:
            try:
                status, _ = await http.response()
            except (OSError, asyncio.IncompleteReadError) as exc:
                self.note_answer(index, f"post: {type(exc).__name__}")
                http.close()
                self.connections.remove(http)
                return
            self.note_answer(index, None if status < 300 else f"post HTTP {status}")
            if not self.waiting:
                self.idle.append(http)
                return
            index = self.waiting.pop(0)
            self._write(http, index)

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for http in self.connections:
            http.close()


class WsPoster(Poster):
    """Posts as `submit_score` messages, round-robin over WebSocket connections with server
    tokens: one connection per WS_POSTS_PER_CONNECTION_S posts/s keeps each under the server's
    per-connection message rate limit."""

    def __init__(self, clients: list[Client], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.clients = clients
        for client in clients:
            client.on_answer = self._answer

    def send(self, index: int) -> None:
        body = self.body(index)
        data = {"board": self.board, **body, "request_id": f"lt{self.base}.{index}"}
        message = json.dumps({"type": "submit_score", "data": data}, separators=(",", ":"))
        self.clients[index % len(self.clients)].send(message.encode())
        self.note_sent(index)

    def _answer(self, payload: bytes) -> None:
        match = REQUEST_ID_RE.search(payload)
        if payload.startswith(ACK_PREFIX):
            if match is not None:
                self.note_answer(int(match.group(1)), None)
            return
        code = ERROR_CODE_RE.search(payload)  # a refusal may name no request (rate_limited)
        error = f"submit_score {code.group(1).decode() if code else 'error'}"
        self.note_answer(int(match.group(1)) if match else -1, error)

    def close(self) -> None:
        for client in self.clients:
            client.close()


# -- one run ----------------------------------------------------------------------------------


@dataclass
class Options:
    """Everything `run.py loadtest` was asked to do."""

    url: str
    clients: int
    rate: float
    duration: float
    board: str = "loadtest"
    via: str = "http"
    processes: int = 1
    drain: float = 2.0
    subscriber_tokens: list[str] = field(default_factory=list)  # one per client (cycled)
    poster_token: str = ""
    admin_token: str | None = None  # only for --create-board
    create_board: bool = False
    kernel_timestamps: bool = False
    progress: TextIO | None = None


async def prepare_board(http: HttpConnection, options: Options) -> None:
    """Checks that the board exists and the token works; creates it if asked to."""
    path = f"/api/boards/{options.board}"
    status, body = await http.request("GET", path, bearer=options.poster_token)
    if status == 401:
        raise LoadtestError(
            f"the server at {options.url} refused the poster's token (HTTP 401: "
            f"{problem_detail(body)}): is the secret the server's? (--jwt-secret)"
        )
    if status == 200:
        return
    if status != 404:
        raise LoadtestError(f"GET {path} answered HTTP {status}: {problem_detail(body)}")
    if not options.create_board:
        raise LoadtestError(
            f"board {options.board!r} does not exist on {options.url}; "
            "create it, or pass --create-board"
        )
    if options.admin_token is None:
        raise LoadtestError("--create-board needs the secret to sign an admin token")
    board = {"id": options.board, "title": "Load test", "operator": "set"}
    status, body = await http.request("POST", "/api/boards", board, options.admin_token)
    if status not in (200, 201):
        detail = problem_detail(body)
        raise LoadtestError(f"creating board {options.board!r}: HTTP {status}: {detail}")


class Children:
    """Child processes, each running a ClientGroup with its share of the subscribers."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []
        self.readers: list[asyncio.StreamReader] = []
        self.progress: list[dict[str, Any]] = []
        self.reports: list[dict[str, Any] | None] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._ready: list[asyncio.Future[dict[str, Any]]] = []

    async def start(self, config: dict[str, Any], shares: list[list[str]]) -> None:
        loop = asyncio.get_running_loop()
        package_parent = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
        for number, tokens in enumerate(shares):
            process = subprocess.Popen(
                [sys.executable, "-c", "from scoreboard.loadtest import child_main; child_main()"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
            )
            self.processes.append(process)
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write(json.dumps({**config, "tokens": tokens}).encode() + b"\n")
            process.stdin.flush()
            reader = asyncio.StreamReader(limit=1 << 30)
            await loop.connect_read_pipe(
                lambda r=reader: asyncio.StreamReaderProtocol(r), process.stdout
            )
            self.readers.append(reader)
            self.progress.append({})
            self.reports.append(None)
            self._ready.append(loop.create_future())
            self._tasks.append(loop.create_task(self._listen(number)))

    async def _listen(self, number: int) -> None:
        reader = self.readers[number]
        while line := await reader.readline():
            message = json.loads(line)
            if "ready" in message and not self._ready[number].done():
                self._ready[number].set_result(message["ready"])
            elif "progress" in message:
                self.progress[number] = message["progress"]
            elif "report" in message:
                self.reports[number] = message["report"]
        if not self._ready[number].done():
            self._ready[number].set_exception(
                LoadtestError(f"load test child {number} exited before it was ready")
            )

    async def ready(self) -> None:
        results = await asyncio.wait_for(asyncio.gather(*self._ready), CHILD_READY_TIMEOUT_S)
        for result in results:
            if "error" in result:
                raise LoadtestError(result["error"])

    def tell(self, message: dict[str, Any]) -> None:
        line = json.dumps(message).encode() + b"\n"
        for process in self.processes:
            if process.poll() is None and process.stdin is not None:
                with contextlib.suppress(OSError):
                    process.stdin.write(line)
                    process.stdin.flush()

    async def finish(self) -> list[dict[str, Any]]:
        self.tell({"stop": True})
        await asyncio.wait_for(asyncio.gather(*self._tasks), CHILD_READY_TIMEOUT_S)
        return [report for report in self.reports if report is not None]

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)
            if process.poll() is None:
                process.kill()
                process.wait()


def child_main() -> None:
    """A child process: config on stdin, then post times and `stop`; reports on stdout."""
    config = json.loads(sys.stdin.readline())
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_child(config))


async def _child(config: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    target = Target(config["host"], config["port"])
    group = ClientGroup(
        target, config["protocol"], base=config["base"], kernel_timestamps=config["kernel_ts"]
    )
    group.posts = config["posts"]
    out = sys.stdout

    def emit(message: dict[str, Any]) -> None:
        out.write(json.dumps(message) + "\n")
        out.flush()

    probe = LagProbe()
    cpu_start = time.process_time()
    try:
        await group.connect(bearer_requests(target, config["path"], config["tokens"]))
    except (HandshakeRefused, OSError) as exc:
        emit({"ready": {"error": describe_connect_failure(exc, config["url"])}})
        return
    emit({"ready": {"connected": len(group.clients)}})
    probe.start()
    stopped = asyncio.Event()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)

    async def listen() -> None:
        while line := await stdin.readline():
            message = json.loads(line)
            for index, when in message.get("sent", ()):
                group.post_sent(index, when)
            if message.get("stop"):
                break
        stopped.set()

    async def report_progress() -> None:
        while True:
            await asyncio.sleep(PROGRESS_S)
            emit({"progress": {"frames": group.frames, "delivered": group.delivered}})

    tasks = [loop.create_task(listen()), loop.create_task(report_progress())]
    await stopped.wait()
    for task in tasks:
        task.cancel()
    probe.stop()
    report = group.report()
    report["loop_lag"] = probe.histogram.to_json()
    report["cpu_s"] = time.process_time() - cpu_start
    group.close()
    emit({"report": report})


def describe_connect_failure(exc: BaseException, url: str) -> str:
    if isinstance(exc, HandshakeRefused):
        if exc.status == 401:
            detail = problem_detail(exc.answer.partition(b"\r\n\r\n")[2])
            return (
                f"the server at {url} refused the subscribers' tokens (HTTP 401: {detail}): "
                "is the secret the server's? (--jwt-secret)"
            )
        return f"the server at {url} refused the WebSocket upgrade: HTTP {exc.status}"
    if isinstance(exc, ConnectionRefusedError):
        return f"cannot connect to {url}: connection refused (is the server running there?)"
    return f"cannot connect to {url}: {exc}"


def merge_reports(reports: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {
        "connected": 0,
        "connect_failed": 0,
        "connect_times": [],
        "open": 0,
        "messages": 0,
        "frames": 0,
        "delivered": 0,
        "cpu_s": 0.0,
    }
    latency, lag, read_delay = LatencyHistogram(), LatencyHistogram(), LatencyHistogram()
    errors: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    for report in reports:
        for key in ("connected", "connect_failed", "open", "messages", "frames", "delivered"):
            merged[key] += report[key]
        merged["connect_times"] += report["connect_times"]
        merged["cpu_s"] += report["cpu_s"]
        latency.merge(LatencyHistogram.from_json(report["latency"]))
        lag.merge(LatencyHistogram.from_json(report["loop_lag"]))
        read_delay.merge(LatencyHistogram.from_json(report["read_delay"]))
        errors.update(report["errors"])
        codes.update(report["close_codes"])
    merged["latency"], merged["loop_lag"], merged["read_delay"] = latency, lag, read_delay
    merged["errors"], merged["close_codes"] = errors, codes
    return merged


async def run(options: Options) -> dict[str, Any]:
    """One load test: connect, post on schedule for `duration`, drain, and summarize."""
    loop = asyncio.get_running_loop()
    target = Target.from_url(options.url)
    http = await HttpConnection(target).open()
    children: Children | None = None
    group = ClientGroup(target, Protocol.SCOREBOARD, kernel_timestamps=options.kernel_timestamps)
    poster: Poster | None = None
    probe = LagProbe()
    base = score_base(time.time())
    group.base = base
    path = subscriber_path(options.board)
    offsets = schedule(options.rate, options.duration)
    group.posts = len(offsets)
    tokens = list(itertools.islice(itertools.cycle(options.subscriber_tokens), options.clients))
    progress = Progress(options, group)
    try:
        await prepare_board(http, options)
        connect_started = time.perf_counter()
        if options.processes > 1:
            children = Children()
            progress.children = children
            config = {
                "host": target.host,
                "port": target.port,
                "url": options.url,
                "path": path,
                "protocol": Protocol.SCOREBOARD,
                "base": base,
                "posts": len(offsets),
                "kernel_ts": options.kernel_timestamps,
            }
            sizes = split(len(tokens), options.processes)
            shares, start = [], 0
            for size in sizes:
                shares.append(tokens[start : start + size])
                start += size
            await children.start(config, shares)
            await children.ready()
        else:
            try:
                await group.connect(bearer_requests(target, path, tokens), progress.connecting)
            except (HandshakeRefused, OSError) as exc:
                raise LoadtestError(describe_connect_failure(exc, options.url)) from None
        connect_wall_s = time.perf_counter() - connect_started

        def on_sent(index: int, when: float) -> None:
            group.post_sent(index, when)
            if children is not None:
                children.tell({"sent": [[index, when]]})

        if options.via == "ws":
            poster_group = ClientGroup(target, Protocol.SUBMITTER)
            count = math.ceil(options.rate / WS_POSTS_PER_CONNECTION_S)
            requests = bearer_requests(target, "/ws", [options.poster_token] * count)
            try:
                await poster_group.connect(requests)
            except (HandshakeRefused, OSError) as exc:
                raise LoadtestError(describe_connect_failure(exc, options.url)) from None
            poster = WsPoster(poster_group.clients, board=options.board, base=base, on_sent=on_sent)
        else:
            post_http = await HttpConnection(target).open()
            poster = HttpPoster(
                post_http, options.poster_token, board=options.board, base=base, on_sent=on_sent
            )
        progress.poster = poster
        probe.start()
        progress.start()
        started = loop.time()
        cpu_run_start = time.process_time()
        frames_before = group.frames
        await poster.run(offsets, started + 0.05)
        posting_s = loop.time() - started
        await poster.wait_answers(HTTP_TIMEOUT_S)
        expected = poster.accepted * options.clients
        drain_until = loop.time() + options.drain
        while loop.time() < drain_until and progress.delivered() < expected:
            await asyncio.sleep(0.05)
        elapsed_s = loop.time() - started
        progress.stop()
        probe.stop()
        own = group.report()
        own["loop_lag"] = probe.histogram.to_json()
        own["cpu_s"] = time.process_time() - cpu_run_start
        reports = [own]
        if children is not None:
            reports += await children.finish()
        merged = merge_reports(reports)
        frames = merged["frames"] - frames_before
    finally:
        progress.stop()
        probe.stop()
        if poster is not None:
            poster.close()
        group.close()
        http.close()
        if children is not None:
            children.stop()

    connect_times = sorted(merged["connect_times"])
    latency: LatencyHistogram = merged["latency"]
    lag: LatencyHistogram = merged["loop_lag"]
    return {
        "url": options.url,
        "board": options.board,
        "via": options.via,
        "clients": options.clients,
        "processes": options.processes,
        "rate": options.rate,
        "duration_s": options.duration,
        "kernel_timestamps": options.kernel_timestamps,
        "connect": {
            "connected": merged["connected"],
            "failed": merged["connect_failed"],
            "total_s": round(connect_wall_s, 3),
            "p50_ms": round(percentile(connect_times, 0.5) * 1000, 3) if connect_times else None,
            "p99_ms": round(percentile(connect_times, 0.99) * 1000, 3) if connect_times else None,
            "max_ms": round(connect_times[-1] * 1000, 3) if connect_times else None,
        },
        "posts": {
            "scheduled": len(offsets),
            "sent": poster.sent,
            "accepted": poster.accepted,
            "failed": dict(poster.failed),
            "per_s": round(poster.sent / posting_s, 2) if posting_s > 0 else None,
            "answer_ms": poster.answer_times.summary_ms(),
        },
        "frames": {
            "received": frames,
            "per_s": round(frames / elapsed_s, 1) if elapsed_s > 0 else None,
            "messages": merged["messages"],
        },
        "deliveries": {"expected": expected, "delivered": merged["delivered"]},
        "latency_ms": latency.summary_ms(),
        "errors": dict(merged["errors"]),
        "close_codes": dict(merged["close_codes"]),
        "open_at_end": merged["open"],
        "client": {
            "loop_lag_ms": lag.summary_ms(),
            # With --kernel-timestamps: how long frames waited in the socket for this process.
            "read_delay_ms": merged["read_delay"].summary_ms(),
            "cpu_s": round(merged["cpu_s"], 3),
            "cpu_us_per_frame": round(merged["cpu_s"] / frames * 1e6, 2) if frames else None,
        },
    }


class Progress:
    """The progress line on stderr, once a second, while the load runs."""

    def __init__(self, options: Options, group: ClientGroup) -> None:
        self.options = options
        self.group = group
        self.children: Children | None = None
        self.poster: Poster | None = None
        self._task: asyncio.Task[None] | None = None
        self._started = self._last_time = 0.0
        self._last_frames = 0

    def frames(self) -> int:
        frames = self.group.frames
        if self.children is not None:
            frames += sum(p.get("frames", 0) for p in self.children.progress)
        return frames

    def delivered(self) -> int:
        """(post, subscriber) pairs seen so far; children report theirs once a second."""
        delivered = self.group.delivered
        if self.children is not None:
            delivered += sum(p.get("delivered", 0) for p in self.children.progress)
        return delivered

    def connecting(self) -> None:
        if self.options.progress is not None:
            n = len(self.group.clients)
            self.options.progress.write(f"loadtest: connected {n}/{self.options.clients}\n")
            self.options.progress.flush()

    def start(self) -> None:
        if self.options.progress is not None:
            self._started = self._last_time = time.monotonic()
            self._last_frames = self.frames()
            self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        """Stops the line; the last one is written now, so even a short run shows one."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
            self.line()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(PROGRESS_S)
            self.line()

    def line(self) -> None:
        out = self.options.progress
        assert out is not None
        now, frames = time.monotonic(), self.frames()
        rate = (frames - self._last_frames) / max(now - self._last_time, 1e-9)
        self._last_frames, self._last_time = frames, now
        poster = self.poster
        posts = f"{poster.sent} sent, {poster.accepted} accepted" if poster else "-"
        p99 = self.group.latency.quantile(0.99) * 1000  # this process's clients only
        errors = sum(self.group.errors.values()) + (sum(poster.failed.values()) if poster else 0)
        out.write(
            f"loadtest {now - self._started:5.1f}/{self.options.duration:g} s | "
            f"posts {posts} | frames {frames:,} ({rate:,.0f}/s) | "
            f"latency p99 {p99:.1f} ms | errors {errors}\n"
        )
        out.flush()
