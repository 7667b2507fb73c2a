"""A bare Tornado WebSocket server: the Python floor, and a plain write_message loop.

    python bench/peers/tornado_peer.py --port P --mode floor|write_message

Clients connect to /ws (no authentication, no protocol). `POST /broadcast` sends the same
pre-built frame (frame.json in a `score_update` envelope) to every connected client;
`POST /noop` answers the same way and sends nothing, so the harness can subtract the cost of
the trigger itself. `GET /ready` answers 200.

floor: the frame is built once per broadcast and given to each socket's own `send` when its
  stream has nothing queued, falling back to the stream for whatever the kernel did not take.
  That is the least Python can do per delivery through Tornado's sockets.
write_message: Tornado's own `write_message` per client (frames, and a Future, per call).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

import tornado.web
import tornado.websocket

FRAME_PAYLOAD = (
    b'{"type":"score_update","data":'
    + (Path(__file__).with_name("frame.json").read_bytes().strip())
    + b"}"
)


def server_frame(payload: bytes) -> bytes:
    """One unmasked final text frame, as a server sends it."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 1 << 16:
        return bytes((0x81, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + n.to_bytes(8, "big") + payload


class Clients:
    """The connected handlers; the application's only state."""

    def __init__(self) -> None:
        self.handlers: set[Subscriber] = set()


class Subscriber(tornado.websocket.WebSocketHandler):
    def initialize(self, clients: Clients) -> None:
        self.clients = clients

    def check_origin(self, origin: str) -> bool:
        return True

    def open(self) -> None:
        self.clients.handlers.add(self)

    def on_close(self) -> None:
        self.clients.handlers.discard(self)


class Broadcast(tornado.web.RequestHandler):
    def initialize(self, clients: Clients, mode: str) -> None:
        self.clients = clients
        self.mode = mode

    def post(self) -> None:
        if self.mode == "write_message":
            for handler in list(self.clients.handlers):
                try:
                    handler.write_message(FRAME_PAYLOAD)
                except tornado.websocket.WebSocketClosedError:
                    self.clients.handlers.discard(handler)
        else:
            frame = server_frame(FRAME_PAYLOAD)
            for handler in list(self.clients.handlers):
                send_frame(handler, frame)
        self.write("ok")


def send_frame(handler: Subscriber, frame: bytes) -> None:
    connection = handler.ws_connection
    stream = connection.stream if connection is not None else None
    if stream is None or stream.closed():
        return
    data: bytes | memoryview = frame
    if stream._total_write_index == stream._total_write_done_index:  # nothing queued
        try:
            sent = stream.socket.send(frame)
        except BlockingIOError:
            sent = 0
        except OSError:
            stream.close()
            return
        if sent == len(frame):
            return
        data = memoryview(frame)[sent:]
    stream.write(data)


class Noop(tornado.web.RequestHandler):
    def post(self) -> None:
        self.write("ok")


class Ready(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write("ok")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=["floor", "write_message"], default="floor")
    args = parser.parse_args()
    clients = Clients()
    app = tornado.web.Application(
        [
            (r"/ws", Subscriber, {"clients": clients}),
            (r"/broadcast", Broadcast, {"clients": clients, "mode": args.mode}),
            (r"/noop", Noop),
            (r"/ready", Ready),
        ]
    )
    app.listen(args.port, "127.0.0.1")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
