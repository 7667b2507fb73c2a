"""Every private Tornado name the project uses (scoreboard/handlers/tornado_internals.py).

These check Tornado itself, not our code: if an upgrade renames or changes one of them, a test
here fails and names it, instead of the fast path or the memory savings failing quietly.
"""

from __future__ import annotations

import asyncio
import inspect
import socket

import pytest
import tornado.web
import tornado.websocket
from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine
from tornado.iostream import IOStream

from scoreboard.handlers.tornado_internals import LeanWebSocketHandler


def _indexes(stream: IOStream) -> tuple[int, int]:
    return stream._total_write_index, stream._total_write_done_index


@pytest.mark.gen_test(timeout=10)
async def test_iostream_write_indexes_count_queued_and_written_bytes():
    ours, peer = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    peer.setblocking(False)
    stream = IOStream(ours)
    try:
        queued, done = _indexes(stream)
        assert isinstance(queued, int) and isinstance(done, int)
        assert queued == done and not stream.writing()

        payload = b"x" * (4 * 2**20)  # far more than the socket buffers take at once
        future = stream.write(payload)
        queued, done = _indexes(stream)
        assert queued - done > 0 and stream.writing()  # the difference is what still waits
        assert queued == len(payload)

        received = 0
        while not future.done():
            try:
                received += len(peer.recv(2**20))
            except BlockingIOError:
                await asyncio.sleep(0.001)
        queued, done = _indexes(stream)
        assert queued == done == len(payload) and not stream.writing()
    finally:
        stream.close()
        peer.close()


@pytest.mark.gen_test(timeout=10)
async def test_iostream_write_indexes_stay_ints_after_close():
    # The reason the sink reads them instead of _write_buffer, which close() sets to None.
    ours, peer = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    stream = IOStream(ours)
    stream.write(b"x" * 2**20).add_done_callback(lambda f: f.exception())
    stream.close()
    queued, done = _indexes(stream)
    assert queued - done > 0
    assert not stream.writing()
    peer.close()


def test_websocket_upgrade_detaches_through_the_overridden_hook():
    assert callable(tornado.websocket.WebSocketHandler._detach_stream)
    # The protocol takes the stream from the handler's hook, so the override is what runs.
    assert "handler._detach_stream()" in inspect.getsource(tornado.websocket)
    base = tornado.websocket.WebSocketHandler
    assert LeanWebSocketHandler._detach_stream is not base._detach_stream


class _Connection:
    """Just enough of an HTTP/1.1 connection for a RequestHandler to be built."""

    def set_close_callback(self, callback: object) -> None:
        pass


def test_request_handler_keeps_its_response_headers_in_underscore_headers():
    start = RequestStartLine("GET", "/", "HTTP/1.1")
    headers = HTTPHeaders({"Host": "127.0.0.1"})
    request = HTTPServerRequest(start_line=start, headers=headers, connection=_Connection())
    handler = tornado.web.RequestHandler(tornado.web.Application(), request)
    assert isinstance(handler._headers, HTTPHeaders)
    handler.set_header("X-Probe", "1")
    assert handler._headers["X-Probe"] == "1"


def test_websocket_protocol13_decodes_text_frames_in_handle_message():
    # Private use 4: the override sees each whole message with its opcode before Tornado.
    source = inspect.getsource(tornado.websocket.WebSocketProtocol13._handle_message)
    assert "opcode == 0x1" in source and 'decode("utf-8")' in source
    assert hasattr(tornado.websocket.WebSocketProtocol13, "_frame_compressed") or (
        "_frame_compressed" in inspect.getsource(tornado.websocket.WebSocketProtocol13)
    )


def test_tcpserver_keeps_its_listeners_in_sockets_and_handlers():
    # Private use 5: add_sockets fills the two tables stop() reads, and hands accepted
    # connections to _handle_connection(connection, address).
    from tornado.tcpserver import TCPServer

    add = inspect.getsource(TCPServer.add_sockets)
    assert "self._sockets[sock.fileno()] = sock" in add
    assert "self._handlers[sock.fileno()]" in add
    stop = inspect.getsource(TCPServer.stop)
    assert "self._handlers" in stop and "self._sockets" in stop
    params = list(inspect.signature(TCPServer._handle_connection).parameters)
    assert params == ["self", "connection", "address"]
