"""The Python floor with its send loop in C, without the GIL: a study of what that would buy.

    python bench/peers/gilfree_peer.py --port P --ext DIR [--loop c|uring|python] [--busy-thread]

The same server as tornado_peer.py's floor (same routes, same frame, same Tornado sockets),
except that a broadcast is one call of fanout.send_all (fanout_ext/fanout.c, built by
fanout_ext/fanout_build.py into DIR): the fds of every socket with nothing queued, kept in an
array.array that changes only when a client comes or goes, and the frame; the C loop sends to
each with the GIL released. A socket that did not take the whole frame (EAGAIN, or a short
write) gets the rest through Tornado's stream, and stays out of the C loop until its stream has
caught up, so that no frame overtakes the bytes queued before it; one that failed is closed.
--loop uring does the same sends as io_uring requests (fanout.send_all_uring, built only where
liburing is installed): a few system calls per broadcast instead of one per socket.

--loop python sends with the floor's own Python loop instead (tornado_peer.send_frame), for the
GIL study: --busy-thread runs a Python thread that only counts, and `GET /stats` answers (and
resets) what the broadcasts cost: the send loop's wall and thread CPU time, the busy thread's
progress during the loops against its rate outside them, and how many sockets fell short.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import errno
import importlib
import json
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import tornado.web
import tornado.websocket

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tornado_peer import FRAME_PAYLOAD, Noop, Ready, send_frame, server_frame

WOULD_BLOCK = (0, errno.EAGAIN, errno.EWOULDBLOCK)  # 0: a short write
# fanout.send_all or send_all_uring: (fds, frame) -> [(index, sent, errno)] of the shortfalls
SendAll = Callable[["array.array[int]", bytes], list[tuple[int, int, int]]]


class Counter:
    """A Python thread that does nothing but count: its progress is the GIL it was given."""

    def __init__(self) -> None:
        self.count = 0

    def run(self) -> None:
        while True:
            self.count += 1


class Stats:
    """What the broadcasts since the last `GET /stats` cost."""

    def __init__(self, busy_count: int) -> None:
        self.busy_at_start = busy_count
        self.loop_wall_s: list[float] = []
        self.loop_cpu_s: list[float] = []
        self.busy_during = 0  # the counter's progress while a send loop ran
        self.sockets = 0
        self.short_writes = 0
        self.failed = 0
        self.since = time.perf_counter()


class Fanout:
    """Every connected handler, by fd; the fds of those with nothing queued as a C int array."""

    def __init__(self, send_all: SendAll | None, counter: Counter | None) -> None:
        self.send_all = send_all  # None: the floor's Python loop
        self.counter = counter
        self.handlers: dict[int, Subscriber] = {}
        self.backed_up: set[Subscriber] = set()  # their stream still has bytes queued
        self.clean_fds = array.array("i")
        self.changed = True
        self.stats = Stats(0)

    def add(self, fd: int, handler: Subscriber) -> None:
        self.handlers[fd] = handler
        self.changed = True

    def remove(self, fd: int, handler: Subscriber) -> None:
        if self.handlers.get(fd) is handler:  # the fd may already be a new client's
            del self.handlers[fd]
        self.backed_up.discard(handler)
        self.changed = True

    def broadcast(self, frame: bytes) -> None:
        counter = self.counter
        busy_before = counter.count if counter else 0
        cpu_before, wall_before = time.thread_time(), time.perf_counter()
        if self.send_all is None:
            for handler in list(self.handlers.values()):
                send_frame(handler, frame)
        else:
            self.send_in_c(frame)
        wall, cpu = time.perf_counter() - wall_before, time.thread_time() - cpu_before
        stats = self.stats
        stats.loop_wall_s.append(wall)
        stats.loop_cpu_s.append(cpu)
        stats.busy_during += (counter.count - busy_before) if counter else 0
        stats.sockets += len(self.handlers)

    def send_in_c(self, frame: bytes) -> None:
        assert self.send_all is not None
        behind = list(self.backed_up)  # before this frame's shortfalls join them
        if self.changed:
            self.clean_fds = array.array(
                "i", (fd for fd, h in self.handlers.items() if h not in self.backed_up)
            )
            self.changed = False
        fds = self.clean_fds
        shortfalls = self.send_all(fds, frame)
        for index, sent, error in shortfalls:
            handler = self.handlers[fds[index]]
            stream = handler.ws_connection.stream if handler.ws_connection else None
            if stream is None or stream.closed():
                continue
            if error not in WOULD_BLOCK:
                self.stats.failed += 1
                stream.close()
                continue
            self.stats.short_writes += 1
            stream.write(memoryview(frame)[sent:])
            self.backed_up.add(handler)
            self.changed = True
        if behind:
            self.catch_up(behind, frame)

    def catch_up(self, behind: list[Subscriber], frame: bytes) -> None:
        """The sockets that were backed up (and so not in the C loop) get this frame the floor's
        way, after their queued bytes; those whose stream has then nothing queued go back into
        the C loop from the next broadcast."""
        for handler in behind:
            stream = handler.ws_connection.stream if handler.ws_connection else None
            if stream is None or stream.closed():
                self.backed_up.discard(handler)
                continue
            send_frame(handler, frame)
            if stream._total_write_index == stream._total_write_done_index:
                self.backed_up.discard(handler)
                self.changed = True

    def report(self) -> dict[str, float | int]:
        stats, counter = self.stats, self.counter
        elapsed = time.perf_counter() - stats.since
        in_loops = sum(stats.loop_wall_s)
        answer: dict[str, float | int] = {
            "broadcasts": len(stats.loop_wall_s),
            "sockets": stats.sockets,
            "short_writes": stats.short_writes,
            "failed": stats.failed,
        }
        if stats.loop_wall_s:
            # Means, not medians: the rare broadcast the busy thread interrupts is the point.
            answer["loop_wall_ms_mean"] = statistics.mean(stats.loop_wall_s) * 1000
            answer["loop_wall_ms_max"] = max(stats.loop_wall_s) * 1000
            answer["loop_cpu_ms_mean"] = statistics.mean(stats.loop_cpu_s) * 1000
        if counter is not None and in_loops > 0 and elapsed > in_loops:
            total = counter.count - stats.busy_at_start
            outside = (total - stats.busy_during) / (elapsed - in_loops)
            answer["busy_per_s_during_loops"] = stats.busy_during / in_loops
            answer["busy_per_s_outside_loops"] = outside
        self.stats = Stats(counter.count if counter else 0)
        return answer


class Subscriber(tornado.websocket.WebSocketHandler):
    def initialize(self, fanout: Fanout) -> None:
        self.fanout = fanout
        self.fd = -1

    def check_origin(self, origin: str) -> bool:
        return True

    def open(self) -> None:
        assert self.ws_connection is not None and self.ws_connection.stream is not None
        self.fd = self.ws_connection.stream.socket.fileno()
        self.fanout.add(self.fd, self)

    def on_close(self) -> None:
        self.fanout.remove(self.fd, self)


class Broadcast(tornado.web.RequestHandler):
    def initialize(self, fanout: Fanout) -> None:
        self.fanout = fanout

    def post(self) -> None:
        self.fanout.broadcast(server_frame(FRAME_PAYLOAD))
        self.write("ok")


class StatsHandler(tornado.web.RequestHandler):
    def initialize(self, fanout: Fanout) -> None:
        self.fanout = fanout

    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps(self.fanout.report()))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ext", type=Path, help="where fanout_build.py built fanout")
    parser.add_argument("--loop", choices=["c", "uring", "python"], default="c")
    parser.add_argument("--busy-thread", action="store_true")
    args = parser.parse_args()
    send_all = None
    if args.loop != "python":
        if args.ext is None:
            parser.error(f"--loop {args.loop} needs --ext (see fanout_ext/fanout_build.py)")
        sys.path.insert(0, str(args.ext))
        extension = importlib.import_module("fanout")
        send_all = extension.send_all if args.loop == "c" else extension.send_all_uring
    counter = None
    if args.busy_thread:
        counter = Counter()
        threading.Thread(target=counter.run, name="busy", daemon=True).start()
    fanout = Fanout(send_all, counter)
    app = tornado.web.Application(
        [
            (r"/ws", Subscriber, {"fanout": fanout}),
            (r"/broadcast", Broadcast, {"fanout": fanout}),
            (r"/stats", StatsHandler, {"fanout": fanout}),
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
