"""The WebSocket endpoint `/ws`: the handshake's checks and the socket side of a connection.

Before the upgrade it checks, in order, the browser origin (403), the token (401, or an
anonymous read-only connection under --anonymous-read) and the connection limits (503 / 429),
answering problem+json like the rest of the API. After the upgrade it is a thin adapter: client
messages, pongs and the close go to the hub, and it implements the hub's `Sink`.

The sink is where the per-frame cost of a broadcast is decided. Tornado's `write_message`
frames the message and creates and chains a Future per call; the hub instead hands the same
pre-framed bytes to every connection, and the sink sends them with the socket's own `send`
when the stream has nothing queued (the common case), falling back to `IOStream.write` for the
rest. It reads private attributes of Tornado's IOStream (`_write_buffer`, `_total_write_index`,
`_total_write_done_index`), which is what keeps a delivered frame at a few microseconds, and
overrides two private hooks of the handler (`_detach_stream`, `_request_summary`) to save memory
per connection and keep tokens out of logs; after the upgrade it drops the request's references
to Tornado's finished HTTP/1.1 connection objects (about 2 KiB per idle connection). Tornado
is pinned in requirements.txt; tests/test_live.py drives both write paths, the handshake and the
logs.
"""

from __future__ import annotations

import logging
import socket
from typing import Any
from urllib.parse import urlsplit

import tornado.websocket
from tornado.httputil import HTTPHeaders
from tornado.iostream import IOStream, SSLIOStream, StreamClosedError

from .. import metrics
from ..auth import Identity
from ..errors import AuthFailed, Forbidden, ScoreboardError
from ..hub import MAX_MESSAGE_BYTES, CloseCode, Connection, Hub
from .base import Services, problem_body, redacted_uri

log = logging.getLogger(__name__)

SUBPROTOCOL = "scoreboard.v1"
BEARER_PREFIX = "bearer."  # `Sec-WebSocket-Protocol: scoreboard.v1, bearer.<token>`
# Shared by every upgraded connection in place of its own (used) argument containers; nothing
# reads or writes them after open().
_NO_ARGS: tuple[str, ...] = ()
_NO_KWARGS: dict[str, str] = {}


class LiveSocket(tornado.websocket.WebSocketHandler):
    """One WebSocket connection; the hub decides everything past the handshake.

    Auth rule: the handshake. Tornado's own `get()` performs the upgrade (not overridden, so
    that no extra coroutine frame lives as long as the connection); `prepare()` runs first and
    answers 401 / 403 / 429 / 503 before any upgrade.
    """

    auth_rule = "handshake"

    def initialize(self, services: Services) -> None:
        # Few attributes on purpose: tens of thousands of these live at once.
        self.services = services
        self._identity: Identity | None = None
        self._conn: Connection | None = None
        self._stream: IOStream | None = None
        self._socket: socket.socket | None = None

    @property
    def hub(self) -> Hub:
        return self.services.hub

    # -- handshake -------------------------------------------------------------------------

    def prepare(self) -> None:
        origin = self.request.headers.get("Origin")
        if origin is not None and not self._origin_allowed(origin):
            self._reject(Forbidden(f"origin {origin[:200]!r} is not allowed"), "origin")
            return
        try:
            identity = self._authenticate()
        except ScoreboardError as exc:
            self._reject(exc, "auth")
            return
        refusal = self.hub.admission(identity)
        if refusal is not None:
            self._reject(refusal, "limit")
            return
        self._identity = identity

    def _authenticate(self) -> Identity | None:
        header = self.request.headers.get("Authorization")
        token: str | None = None
        if header is not None:
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise AuthFailed("expected Authorization: Bearer <token>")
            token = value.strip()
        else:
            for offer in self._offered_subprotocols():
                if offer.startswith(BEARER_PREFIX):
                    token = offer[len(BEARER_PREFIX) :]
                    break
            else:
                token = self.get_query_argument("access_token", None)
        if token is None:
            if self.services.settings.anonymous_read:
                return None
            raise AuthFailed("a token is required")
        return self.services.tokens.decode(token)

    def _offered_subprotocols(self) -> list[str]:
        header = self.request.headers.get("Sec-WebSocket-Protocol", "")
        return [part.strip() for part in header.split(",") if part.strip()]

    def _origin_allowed(self, origin: str) -> bool:
        # The server's own origin is always allowed; others only when listed exactly.
        if urlsplit(origin).netloc.lower() == self.request.headers.get("Host", "").lower():
            return True
        return origin.rstrip("/") in self.services.settings.allowed_origins

    def check_origin(self, origin: str) -> bool:
        return self._origin_allowed(origin)

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        # Only the protocol name: the `bearer.<token>` offer is never echoed back.
        return SUBPROTOCOL if SUBPROTOCOL in subprotocols else None

    def get_compression_options(self) -> dict[str, Any] | None:
        # Off on purpose: one framed byte string must be valid for every peer.
        return None

    @property
    def max_message_size(self) -> int:
        return MAX_MESSAGE_BYTES

    @property
    def ping_interval(self) -> float | None:
        return None  # the hub pings every connection from one timer

    def _reject(self, exc: ScoreboardError, reason: str) -> None:
        metrics.WS_REJECTED_BY_REASON[reason].inc()
        metrics.ERRORS.labels(exc.code).inc()
        self.set_status(exc.status)
        self.set_header("Content-Type", "application/problem+json")
        self.set_header("Cache-Control", "no-store")
        if exc.retry_after is not None:
            self.set_header("Retry-After", str(max(1, round(exc.retry_after))))
        self.finish(problem_body(exc.status, exc.code, exc.title, exc.detail))

    def _detach_stream(self) -> IOStream:
        # Tornado also replaces seven HTTP methods on the instance here so that they raise once
        # upgraded; that grows every connection's __dict__ by about 1.5 KiB. Nothing here
        # calls them after the upgrade, so only the detach itself is kept.
        return self.detach()

    def _request_summary(self) -> str:
        # Tornado's error log lines quote the URI; the access_token must never reach a log.
        uri = redacted_uri(self.request.uri or "")
        return f"{self.request.method} {uri} ({self.request.remote_ip})"

    # -- connection events -----------------------------------------------------------------

    def open(self, *args: str, **kwargs: str) -> None:
        protocol = self.ws_connection
        assert protocol is not None
        stream = protocol.stream
        self._stream = stream
        # The fast path writes to the socket itself; TLS streams always go through Tornado.
        self._socket = None if isinstance(stream, SSLIOStream) else stream.socket
        # Frames are small and must not wait for Nagle's algorithm.
        stream.set_nodelay(True)
        board = self.get_query_argument("board", None)
        reconnect = self.get_query_argument("reconnect", None) == "1"
        identity, self._identity = self._identity, None
        self._release_handshake()
        self._conn = self.hub.open(self, identity, board=board, reconnect=reconnect)

    def _release_handshake(self) -> None:
        """Drop what only the handshake needed; it would otherwise live as long as the socket.

        The request headers (which hold the token, too) and parsed arguments are about a third
        of an idle connection's memory. Tornado's upgrade coroutine keeps a reference to the
        headers object, so it is emptied in place rather than replaced.
        """
        request = self.request
        request.headers.__init__()  # type: ignore[misc]  # new empty tables, same object
        request.arguments.clear()
        request.query_arguments.clear()
        # The HTTP/1.1 connection objects are done once the stream is detached; only the
        # request still pointed at them.
        request.connection = None
        request.server_connection = None
        self._headers = HTTPHeaders()  # the 101 answer is long sent
        self.ui = None  # type: ignore[assignment]  # templates are never rendered here
        # The URL arguments were only for open(); share one empty value instead.
        self.path_args = self.open_args = _NO_ARGS  # type: ignore[assignment]
        self.path_kwargs = self.open_kwargs = _NO_KWARGS

    def on_message(self, message: str | bytes) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            self.hub.receive(conn, message)
        except Exception:  # a bug must cost this connection only, with the right close code
            log.exception("handling a WebSocket message failed")
            self.hub.close(conn, CloseCode.INTERNAL, "error", "internal error")

    def on_pong(self, data: bytes) -> None:
        if self._conn is not None:
            self.hub.pong(self._conn)

    def on_close(self) -> None:
        if self._conn is not None:
            self.hub.closed(self._conn, client_code=self.close_code)

    # -- Sink ------------------------------------------------------------------------------

    def send_frame(self, data: bytes) -> bool:
        """Hand whole frames over; False when some bytes wait in the stream's buffer."""
        stream = self._stream
        if stream is None:
            return True
        sock = self._socket
        # Equal indexes mean an empty write buffer (two loads instead of a __len__ call).
        if sock is not None and stream._total_write_index == stream._total_write_done_index:
            # Nothing queued: the kernel gets the bytes now, no Future, no copy.
            try:
                sent = sock.send(data)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                stream.close(exc_info=exc)
                return True
            if sent == len(data):
                return True
            if sent:
                data = memoryview(data)[sent:]  # type: ignore[assignment]
        try:
            future = stream.write(data)
        except StreamClosedError:
            return True  # on_close follows
        future.add_done_callback(self._on_flushed)
        return not stream._write_buffer

    def _on_flushed(self, future: Any) -> None:
        if self._conn is not None and self._stream is not None and not self._stream.closed():
            self.hub.drained(self._conn)

    def unsent_bytes(self) -> int:
        stream = self._stream
        return len(stream._write_buffer) if stream is not None else 0

    def flushed_bytes(self) -> int:
        stream = self._stream
        return stream._total_write_done_index if stream is not None else 0

    def abort(self) -> None:
        if self._stream is not None:
            self._stream.close()
