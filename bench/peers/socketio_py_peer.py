"""python-socketio (on Tornado) broadcasting the same frame to every connected client.

    python bench/peers/socketio_py_peer.py --port P

Clients speak Engine.IO v4 over WebSocket at /socket.io/?EIO=4&transport=websocket.
`POST /broadcast` emits `score_update` with frame.json's object to everyone; `POST /noop`
answers without sending; `GET /ready` answers 200.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from pathlib import Path

import socketio
import tornado.web

DATA = json.loads(Path(__file__).with_name("frame.json").read_text())


class Broadcast(tornado.web.RequestHandler):
    def initialize(self, sio: socketio.AsyncServer) -> None:
        self.sio = sio

    async def post(self) -> None:
        await self.sio.emit("score_update", DATA)
        self.write("ok")


class Noop(tornado.web.RequestHandler):
    def post(self) -> None:
        self.write("ok")


class Ready(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write("ok")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    # Pings every 25 s as socket.io's defaults; no upgrade from polling is offered or needed.
    sio = socketio.AsyncServer(
        async_mode="tornado", cors_allowed_origins="*", transports=["websocket"]
    )
    app = tornado.web.Application(
        [
            (r"/socket.io/", socketio.get_tornado_handler(sio)),
            (r"/broadcast", Broadcast, {"sio": sio}),
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
