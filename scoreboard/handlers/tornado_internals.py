"""Every use of Tornado's private API in the project, each with the figure that pays for it.

`LeanWebSocketHandler` is a `WebSocketHandler` that is also the hub's `Sink`: it writes whole
pre-framed frames, and keeps little memory once upgraded. Nothing else in the project touches a
name Tornado marks private; what public API can do at no measurable cost is done publicly
(`IOStream.writing()` on the slow path, `log_exception` instead of `_request_summary`,
`httputil.responses` instead of `_reason`). Tornado is pinned in requirements.txt, and
tests/test_tornado_internals.py checks each assumption below against the installed Tornado, so
an upgrade that changes one fails there, by name, rather than in production.

The private uses:

1. `IOStream._total_write_index` / `_total_write_done_index` (ints: bytes ever queued, bytes
   ever handed to the kernel). Equal indexes mean the stream queues nothing, so a frame may go
   straight to the socket's `send` without overtaking bytes Tornado itself queued (its pongs
   and close frames). Two attribute loads cost 27 ns; `stream.writing()` costs 104 ns (a method
   and a `__len__` call), about 1 % of a 7 µs delivery, paid once per frame per subscriber.
   Their difference is the unsent byte count and the done index is write progress: plain ints
   that stay valid after `IOStream.close()`, unlike `_write_buffer`, which close() sets to
   None a loop turn before `on_close` runs.
2. `WebSocketHandler._detach_stream`, overridden: Tornado replaces seven HTTP methods on the
   instance there so that they raise once upgraded, which grows every connection's `__dict__`
   by about 1.5 KiB. Nothing calls them after the upgrade, so only the detach is kept.
3. `RequestHandler._headers`, replaced by an empty `HTTPHeaders` after the upgrade: the 101
   answer is long sent, and its seven headers would stay for the life of the socket. The
   public `clear()` refills it with three default headers (a formatted Date among them).
4. `WebSocketProtocol13._handle_message`, extended: for a text frame that is not valid UTF-8
   Tornado drops the TCP connection without a close frame; RFC 6455 (and docs/protocol.md) say
   close 1007. The protocol object comes from the public `get_websocket_protocol`.
5. `TCPServer._sockets`, `_handlers` and `_handle_connection`, in `ListenerHTTPServer`:
   `add_sockets` replaced so that the server runs its own accept loop (http_server.py: on
   descriptor exhaustion Tornado's loop raised on every turn). The two tables are what
   `stop()` reads; `_handle_connection` wraps TLS and builds the stream, as before.
"""

from __future__ import annotations

import fcntl
import socket
import struct
import termios
from collections.abc import Callable, Iterable
from typing import Any

import tornado.websocket
from tornado.httpserver import HTTPServer
from tornado.httputil import HTTPHeaders
from tornado.iostream import IOStream, SSLIOStream, StreamClosedError

_INT_BUFFER = bytes(4)  # ioctl's answer buffer for SIOCOUTQ (TIOCOUTQ is the same request)
CLOSE_INVALID_PAYLOAD = 1007  # RFC 6455: a text frame that is not UTF-8

# Shared by every upgraded connection in place of its own (used) argument containers; nothing
# reads or writes them after open().
_NO_ARGS: tuple[str, ...] = ()
_NO_KWARGS: dict[str, str] = {}


class LeanWebSocketHandler(tornado.websocket.WebSocketHandler):
    """A WebSocket handler that sends pre-framed bytes and sheds its handshake state.

    Subclasses call `attach_stream()` and `release_handshake()` in `open()` and get
    `on_drained()` when bytes that had to wait in the stream's buffer have all been written.
    """

    _stream: IOStream | None = None
    _socket: socket.socket | None = None

    def _detach_stream(self) -> IOStream:
        # Private use 2 (module docstring): only the detach, not the seven method guards.
        return self.detach()

    def attach_stream(self) -> None:
        """Take the upgraded stream for `send_frame`; call first thing in `open()`."""
        protocol = self.ws_connection
        assert protocol is not None
        stream = protocol.stream
        if stream is None:
            raise RuntimeError("attach_stream() is for an upgraded connection")
        self._stream = stream
        # The fast path writes to the socket itself; TLS streams always go through Tornado.
        self._socket = None if isinstance(stream, SSLIOStream) else stream.socket
        # Frames are small and must not wait for Nagle's algorithm.
        stream.set_nodelay(True)

    def release_handshake(self) -> None:
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
        self._headers = HTTPHeaders()  # private use 3 (module docstring)
        self.ui = None  # type: ignore[assignment]  # templates are never rendered here
        # The URL arguments were only for open(); share one empty value instead.
        self.path_args = self.open_args = _NO_ARGS  # type: ignore[assignment]
        self.path_kwargs = self.open_kwargs = _NO_KWARGS

    def get_websocket_protocol(self) -> tornado.websocket.WebSocketProtocol | None:
        protocol = super().get_websocket_protocol()
        if type(protocol) is tornado.websocket.WebSocketProtocol13:
            protocol.__class__ = _StrictUtf8Protocol  # private use 4: same state, one override
        return protocol

    def on_drained(self) -> None:
        """Every byte that waited in the stream's buffer has reached the kernel."""

    # -- the hub's Sink --------------------------------------------------------------------

    def send_frame(self, data: bytes) -> bool:
        """Hand whole frames over; False when some bytes wait in the stream's buffer."""
        stream = self._stream
        if stream is None:
            return True
        sock = self._socket
        # Private use 1: equal indexes mean the stream queues nothing (see the docstring).
        if sock is not None and stream._total_write_index == stream._total_write_done_index:
            # Nothing queued: the kernel gets the bytes now, no Future, no copy.
            try:
                sent = sock.send(data)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                stream.close(exc_info=exc)
                return True  # on_close follows
            if sent == len(data):
                return True
            if sent:
                data = memoryview(data)[sent:]  # type: ignore[assignment]
        try:
            future = stream.write(data)
        except StreamClosedError:
            return True  # on_close follows
        future.add_done_callback(self._on_flushed)
        return not stream.writing()

    def _on_flushed(self, future: Any) -> None:
        stream = self._stream
        if stream is not None and not stream.closed():
            self.on_drained()

    def unsent_bytes(self) -> int:
        """Bytes accepted by `send_frame` and not yet handed to the kernel."""
        stream = self._stream
        if stream is None:
            return 0
        return stream._total_write_index - stream._total_write_done_index  # private use 1

    def flushed_bytes(self) -> int:
        """A counter that grows whenever queued bytes reach the kernel (progress)."""
        stream = self._stream
        return stream._total_write_done_index if stream is not None else 0  # private use 1

    def kernel_unsent_bytes(self) -> int:
        """Bytes the kernel holds unsent or unacknowledged for this socket (Linux SIOCOUTQ)."""
        stream = self._stream
        if stream is None or stream.closed():
            return 0
        try:
            raw = fcntl.ioctl(stream.socket.fileno(), termios.TIOCOUTQ, _INT_BUFFER)
        except OSError:
            return 0
        return int(struct.unpack("i", raw)[0])

    def abort(self) -> None:
        """Drop the TCP connection at once (the peer is gone or hostile)."""
        if self._stream is not None:
            self._stream.close()


class _StrictUtf8Protocol(tornado.websocket.WebSocketProtocol13):
    """Closes with 1007 on a text frame that is not UTF-8, where Tornado drops the socket."""

    def _handle_message(self, opcode: int, data: bytes) -> Any:  # private use 4
        if opcode == 0x1 and not self.client_terminated and not self._frame_compressed:
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                self.close(CLOSE_INVALID_PAYLOAD, "invalid UTF-8")
                return None
        return super()._handle_message(opcode, data)


class ListenerHTTPServer(HTTPServer):
    """An `HTTPServer` that runs its own accept loop: subclasses give `watch_listener`."""

    def add_sockets(self, sockets: Iterable[socket.socket]) -> None:
        for sock in sockets:
            self._sockets[sock.fileno()] = sock  # private use 5
            self._handlers[sock.fileno()] = self.watch_listener(sock)

    def watch_listener(self, sock: socket.socket) -> Callable[[], None]:
        """Start accepting on `sock`; return what stops it (called by `stop()`)."""
        raise NotImplementedError

    def serve_connection(self, connection: socket.socket, address: Any) -> None:
        """Serve an accepted connection (TLS wrapped as configured)."""
        self._handle_connection(connection, address)  # private use 5
