"""The HTTP server: Tornado's, with the limits a server on the open internet needs.

See docs/operations.md for the operator's view of these limits.

- **Deadlines.** A new connection gets `--request-head-timeout` (10 s) to send a complete
  request head, TLS handshake included; a keep-alive connection may sit idle between requests
  for `--idle-timeout` (60 s), and a request body may stall that long. Tornado alone has one
  timeout for both (an hour by default), so sockets that never send a head were held forever.
- **Head size.** Heads above `MAX_HEAD_BYTES` (Tornado's own default limit, 64 KiB) are
  answered 431 problem+json. Tornado reads up to `HARD_HEAD_BYTES` so that it can be answered
  at all (at its own limit it drops the connection without a word); beyond that the
  connection is still dropped.
- **Descriptor exhaustion.** When `accept()` fails for lack of file descriptors, Tornado's
  accept handler raised on every loop turn (a spinning core and a traceback each time). Here
  the connections already held keep being served; pending ones are refused (accepted on a
  descriptor kept in reserve and closed at once), accepting pauses briefly, and the
  condition is logged at most once per `EXHAUSTION_LOG_INTERVAL_S`.

Tornado's `HTTPServer.handle_stream`, `start_request` and the `HTTPMessageDelegate` interface
are public; running our own accept loop is not, and lives in handlers/tornado_internals.py
(`ListenerHTTPServer`, private use 5).
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import orjson
from tornado import httputil
from tornado.ioloop import IOLoop
from tornado.iostream import IOStream

from .. import metrics
from .tornado_internals import ListenerHTTPServer

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 64 * 1024  # larger request heads get 431 (Tornado's default limit)
HARD_HEAD_BYTES = 256 * 1024  # beyond this Tornado drops the connection unanswered
EXHAUSTION_LOG_INTERVAL_S = 10.0  # "out of file descriptors" is logged at most this often
ACCEPT_PAUSE_S = 0.1  # how long accepting pauses when descriptors run out (no spinning)
ACCEPT_BATCH = 128  # connections accepted per readiness event, like Tornado's own handler
_OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def head_size(start_line: httputil.RequestStartLine, headers: httputil.HTTPHeaders) -> int:
    """About the bytes of a request head as sent (the parsed form no longer has them)."""
    size = len(start_line.method) + len(start_line.path) + len(start_line.version) + 4
    return size + sum(len(name) + len(value) + 4 for name, value in headers.get_all())


@dataclass(slots=True)
class _AcceptState:
    """One listening socket's accept loop: stopped for good, or paused until a timer."""

    removed: bool = False
    paused: object | None = None  # the IOLoop timeout handle while accepting is paused


class ScoreboardHTTPServer(ListenerHTTPServer):
    """`HTTPServer` with a head deadline, a 431 answer and descriptor-exhaustion handling."""

    def initialize(  # type: ignore[override]
        self,
        request_callback: Any,
        *,
        request_head_timeout: float,
        idle_timeout: float,
        **kwargs: Any,
    ) -> None:
        super().initialize(
            request_callback,
            idle_connection_timeout=idle_timeout,
            body_timeout=idle_timeout,
            max_header_size=HARD_HEAD_BYTES,
            **kwargs,
        )
        self.request_head_timeout = request_head_timeout
        self._awaiting_head: dict[IOStream, Any] = {}
        self._spare_fd: int | None = _open_spare()
        self._refused = 0
        self._last_exhaustion_log = -float("inf")

    # -- the first request head's deadline -------------------------------------------------

    def handle_stream(self, stream: IOStream, address: tuple[Any, ...]) -> None:
        super().handle_stream(stream, address)
        self._awaiting_head[stream] = IOLoop.current().call_later(
            self.request_head_timeout, self._head_overdue, stream
        )

    def _head_overdue(self, stream: IOStream) -> None:
        if self._awaiting_head.pop(stream, None) is not None and not stream.closed():
            stream.close()

    def head_arrived(self, stream: IOStream | None) -> None:
        handle = self._awaiting_head.pop(stream, None) if stream is not None else None
        if handle is not None:
            handle.cancel()

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        delegate = super().start_request(server_conn, request_conn)
        return _HeadGuard(self, getattr(server_conn, "stream", None), request_conn, delegate)

    # -- accepting, and running out of descriptors -----------------------------------------

    def watch_listener(self, sock: socket.socket) -> Any:
        loop = IOLoop.current()
        state = _AcceptState()

        def ready(fd: Any, events: int) -> None:
            for _ in range(ACCEPT_BATCH):
                if state.removed:
                    return
                try:
                    connection, address = sock.accept()
                except BlockingIOError:
                    return
                except ConnectionAbortedError:
                    continue
                except OSError as exc:
                    if exc.errno not in _OUT_OF_DESCRIPTORS:
                        raise
                    self._out_of_descriptors(sock, exc)
                    loop.remove_handler(sock)
                    state.paused = loop.call_later(ACCEPT_PAUSE_S, resume)
                    return
                self.serve_connection(connection, address)

        def resume() -> None:
            state.paused = None
            if not state.removed:
                loop.add_handler(sock, ready, IOLoop.READ)

        def remove() -> None:
            state.removed = True
            if state.paused is not None:
                loop.remove_timeout(state.paused)
            else:
                loop.remove_handler(sock)

        loop.add_handler(sock, ready, IOLoop.READ)
        return remove

    def _out_of_descriptors(self, sock: socket.socket, exc: OSError) -> None:
        """Refuse what waits (on the reserve descriptor), log at most once per interval."""
        if self._spare_fd is not None:
            os.close(self._spare_fd)
            self._spare_fd = None
            try:
                for _ in range(ACCEPT_BATCH):
                    connection, _ = sock.accept()
                    connection.close()
                    self._refused += 1
            except OSError:
                pass
            self._spare_fd = _open_spare()
        now = time.monotonic()
        if now - self._last_exhaustion_log >= EXHAUSTION_LOG_INTERVAL_S:
            self._last_exhaustion_log = now
            log.error(
                "out of file descriptors (%s): serving the connections held, refusing new "
                "ones (%d refused so far); raise the limit (ulimit -n) or lower the load",
                exc.strerror,
                self._refused,
            )


def _open_spare() -> int | None:
    try:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


class _HeadGuard(httputil.HTTPMessageDelegate):
    """Stops the head deadline when a head arrives; answers 431 for an oversized one."""

    def __init__(
        self,
        server: ScoreboardHTTPServer,
        stream: IOStream | None,
        connection: httputil.HTTPConnection,
        delegate: httputil.HTTPMessageDelegate,
    ) -> None:
        self.server = server
        self.stream = stream
        self.connection = connection
        self.delegate = delegate
        self.answered = False

    def headers_received(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> Awaitable[None] | None:
        self.server.head_arrived(self.stream)
        assert isinstance(start_line, httputil.RequestStartLine)
        size = head_size(start_line, headers)
        if size > MAX_HEAD_BYTES:
            self.answered = True
            self._answer_431(size)
            return None
        return self.delegate.headers_received(start_line, headers)

    def _answer_431(self, size: int) -> None:
        code, status = "too_large", 431
        metrics.ERRORS.labels(code).inc()
        body = orjson.dumps(
            {
                "type": "https://scoreboard.dev/problems/" + code,
                "title": "Request header fields too large",
                "status": status,
                "detail": f"the request head must be at most {MAX_HEAD_BYTES} bytes, got {size}",
                "code": code,
            }
        )
        headers = httputil.HTTPHeaders(
            {
                "Content-Type": "application/problem+json",
                "Content-Length": str(len(body)),
                "Cache-Control": "no-store",
                "Connection": "close",
            }
        )
        start = httputil.ResponseStartLine("HTTP/1.1", status, "Request Header Fields Too Large")
        self.connection.write_headers(start, headers, body)
        self.connection.finish()
        log.info("431: a request head of %d bytes", size)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        return None if self.answered else self.delegate.data_received(chunk)

    def finish(self) -> None:
        if not self.answered:
            self.delegate.finish()

    def on_connection_close(self) -> None:
        if not self.answered:
            self.delegate.on_connection_close()
