"""Raw WebSocket and HTTP clients: the load generator's, and the benchmarks' (one implementation).

Why raw sockets: a load generator that costs as much per frame as the server measures itself.
asyncio Protocols ask for 256 KiB per read (about 27 us of CPU per frame at 1,000 sockets on a
2-core machine); a 16 KiB `recv` from `loop.add_reader` costs about 11 us. The parser only looks
at what it needs: the frame header and, for `score_update`, the first score of `top_10`. The
same client speaks socket.io (Engine.IO v4 over WebSocket) and plain broadcast servers, so that
the benchmark reads every peer (bench/peers/) with the same code.

Over 500 lines because the framing, the client, its group and the minimal HTTP client are the
one thing the load generator and the benchmarks share; apart, each would be a fragment.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import os
import re
import socket
import struct
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

RECV_BYTES = 16 * 1024  # one read per readiness event: many frames, without 256 KiB buffers
CONNECT_BATCH = 100  # concurrent handshakes: below Tornado's listen backlog of 128
HANDSHAKE_TIMEOUT_S = 15.0
HTTP_TIMEOUT_S = 10.0
LAG_PROBE_S = 0.01  # period of the loop-lag probe: lag finer than this is not seen

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


class LoadtestError(Exception):
    """A reason the load test cannot run, worded for the person who started it."""


# -- pure parts: percentiles, histograms, WebSocket framing ---------------------------------


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
                return min(self.max, math.pow(self.GROWTH, bucket + 0.5) / 1e6)
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
            return float(seconds) + float(nanos) * 1e-9
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
