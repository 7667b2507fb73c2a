"""The load generator behind `run.py loadtest`: N subscribers, a score poster, latency figures.

N subscribers (scoreboard.loadclient) connect to `/ws?board=B` with their own token; a poster
submits scores on an absolute schedule, over HTTP (a pool of keep-alive connections) or as
WebSocket `submit_score` messages. Post i of a run submits `base + i`, where `base` is above
every score an earlier run could have left on the board, so every post is a new top score and a
frame whose top score is `base + j` holds every post up to j. The latency of a post, per
subscriber, is the time from the moment the poster wrote it to the socket until the first frame
holding it was read (both wall-clock times taken here, so child processes on the same machine
compare them directly), or received by the kernel with `--kernel-timestamps`.

Over 500 lines because the run, its posters, its child processes and its progress line are one
procedure; the clients they drive live in scoreboard.loadclient.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import functools
import itertools
import json
import math
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .loadclient import (
    ACK_PREFIX,
    HTTP_TIMEOUT_S,
    Client,
    ClientGroup,
    HandshakeRefused,
    HttpConnection,
    LagProbe,
    LatencyHistogram,
    LoadtestError,
    Protocol,
    Target,
    bearer_requests,
    percentile,
    problem_detail,
)

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
REQUEST_ID_RE = re.compile(rb'"request_id":"lt\d+\.(\d+)"')  # lt<base>.<post index>
ERROR_CODE_RE = re.compile(rb'"code":"([a-z_]+)"')


# -- pure parts: the schedule ------------------------------------------------------------------


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


def score_base(now: float) -> int:
    """Post i submits base + i: a new top score over any earlier run (at up to 100,000 posts/s)."""
    return int(now * SCORE_UNITS_PER_S)


def subscriber_path(board: str | None) -> str:
    return "/ws" if board is None else f"/ws?board={board}"


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
    # Post to this server instead of `url`: another process of a cluster, so that the figures
    # include the hop from the posting process to the subscribers' one.
    post_url: str | None = None


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
                functools.partial(asyncio.StreamReaderProtocol, reader), process.stdout
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
    post_target = target if options.post_url is None else Target.from_url(options.post_url)
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
            poster_group = ClientGroup(post_target, Protocol.SUBMITTER)
            count = math.ceil(options.rate / WS_POSTS_PER_CONNECTION_S)
            requests = bearer_requests(post_target, "/ws", [options.poster_token] * count)
            try:
                await poster_group.connect(requests)
            except (HandshakeRefused, OSError) as exc:
                post_url = options.post_url or options.url
                raise LoadtestError(describe_connect_failure(exc, post_url)) from None
            poster = WsPoster(poster_group.clients, board=options.board, base=base, on_sent=on_sent)
        else:
            post_http = await HttpConnection(post_target).open()
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
