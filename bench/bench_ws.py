"""Benchmark of live delivery over WebSocket against a real `run.py` (README, Benchmarks).

Not a test: run it on purpose and read the tables. Each mode starts `run.py` on a free port with
a fresh SQLite file in a temporary directory, drives it with the load generator's raw WebSocket
clients (scoreboard.loadclient) in this process (sharing the machine with the server), prints its
figures with the target
next to each, and stops the server and removes the directory on every exit path.

    .venv/bin/python bench/bench_ws.py frames 2000      # server CPU per delivered score_update
    .venv/bin/python bench/bench_ws.py memory 10000     # resident memory per idle connection
    .venv/bin/python bench/bench_ws.py latency 1000 100 # score posted -> frame received, 10 s

frames N: N clients subscribe to board `b` (`/ws?board=b`, `Authorization: Bearer`); ~200 HTTP
  posts, each putting a new player on top, are sent one at a time and each waits until every
  subscriber has its frame, so each makes its own broadcast (`--broadcast-interval-ms 1`). The
  server's CPU time (/proc/PID/stat) for the same posts to a board nobody watches is subtracted,
  and the rest divided by the frames delivered (`scoreboard_ws_messages_sent_total
  {type="score_update"}`). Repeated --runs times in one server; each run and the median printed,
  with the `scoreboard_broadcast_latency_seconds` histogram of each run.
memory N: after 200 warm-up connections, N idle authenticated connections are opened; the
  server's VmRSS delta (/proc/PID/status) divided by N. Each run uses a fresh server.
latency N RATE: `run.py loadtest`'s run (scoreboard.loadtest) with N subscribers and RATE
  posts/s for --seconds: posts on an absolute schedule over a pool of keep-alive connections,
  each subscriber timing every post from the moment it was written until the first frame
  holding it was read. Also the server's event-loop lag p99 (its probe runs every 0.5 s: ~20
  samples in 10 s) and this process's own loop lag: the figures include the time this process
  takes to read N sockets.
  The server runs with its default --broadcast-interval-ms unless the option is given:

    .venv/bin/python bench/bench_ws.py latency 1000 100 --broadcast-interval-ms 1

Quantiles from /metrics are estimated from the histogram buckets by linear interpolation inside
the bucket, as Prometheus' histogram_quantile() does; they are only as fine as the buckets.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import jwt
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scoreboard import loadtest
from scoreboard.loadclient import (
    Client,
    ClientGroup,
    HttpConnection,
    Protocol,
    Target,
    upgrade_request,
)

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
JWT_SECRET = "bench-ws-secret-0123456789abcdefghijklm"  # 40 chars, HS256
TOKEN_TTL_S = 3600
BOARD = "b"  # the board the subscribers watch
QUIET_BOARD = "quiet"  # same posts, nobody subscribed: the CPU baseline of frames mode
PLAYERS = 10  # posts cycle through this many players, so each post reshuffles the top 10
SCORE_BASE = 1_000_000  # post i submits SCORE_BASE + i: every post is a new top score

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
CONNECT_BATCH = 100  # concurrent handshakes: below Tornado's listen backlog of 128
FD_MARGIN = 1000  # file descriptors beyond one per client (server, HTTP, stdio, ...)
DELIVERY_TIMEOUT_S = 10.0  # frames mode: longest wait for one broadcast to reach every client
CONNECTIONS_TIMEOUT_S = 10.0  # memory mode: longest wait for the server to count every client
SETTLE_S = 1.0  # quiet time before reading CPU or RSS, so in-flight work is counted
MEMORY_WARMUP_CONNECTIONS = 200
LATENCY_DRAIN_S = 2.0  # latency mode: wait after the last post for its frames

TARGET_CPU_PER_FRAME_US = 6.0
TARGET_RSS_PER_CONNECTION_KIB = 12.0
TARGET_LATENCY_P99_MS = 50.0  # at 1,000 subscribers, 100 posts/s
TARGET_LOOP_LAG_P99_MS = 20.0

SENT_METRIC = "scoreboard_ws_messages_sent"  # the parser drops the `_total` of counters
BROADCAST_LATENCY_METRIC = "scoreboard_broadcast_latency_seconds"
LOOP_LAG_METRIC = "scoreboard_event_loop_lag_seconds"
CONNECTIONS_METRIC = "scoreboard_ws_connections"

SCORE_UPDATE_PREFIX = b'{"type":"score_update"'
TOP_SCORE_RE = re.compile(rb'"top_10":\[\{[^}]*?"score":(-?\d+)')  # score of rank 1


# -- the server under test -----------------------------------------------------------------


def token(sub: str, role: str = "player") -> str:
    """An HS256 token the server accepts, signed with the secret it was started with."""
    now = int(time.time())
    claims = {"sub": sub, "role": role, "iat": now, "exp": now + TOKEN_TTL_S}
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def raise_fd_limit(needed: int) -> None:
    """Raise this process's soft RLIMIT_NOFILE (the server inherits it) to at least `needed`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        sys.exit(f"bench_ws: needs {needed} file descriptors, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all threads (10 ms resolution)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024  # reported in kB
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclass(frozen=True)
class Server:
    pid: int
    port: int
    log_path: Path


@contextlib.contextmanager
def running_server(
    broadcast_interval_ms: int | None, max_connections: int, *extra_args: str
) -> Iterator[Server]:
    """`run.py` on a free port and a fresh SQLite file; stopped and removed however we leave."""
    workdir = Path(tempfile.mkdtemp(prefix="bench_ws-"))
    log_path = workdir / "server.log"
    port = free_port()
    command = [
        sys.executable,
        str(ROOT / "run.py"),
        "--host", HOST,
        "--port", str(port),
        "--database-url", f"sqlite:///{workdir / 'bench.db'}",
        "--jwt-secret", JWT_SECRET,
        "--max-connections", str(max_connections),
        "--max-connections-per-user", str(max_connections),
        "--ping-interval", "600",
        "--shutdown-spread", "0",  # our clients are gone by then: no reason to wait 5 s
        "--log-level", "warning",
    ]  # fmt: skip
    if broadcast_interval_ms is not None:
        command += ["--broadcast-interval-ms", str(broadcast_interval_ms)]
    command += extra_args
    process = None
    try:
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                command, cwd=workdir, stdout=log_file, stderr=subprocess.STDOUT
            )
        server = Server(process.pid, port, log_path)
        wait_ready(process, server)
        yield server
    finally:
        if process is not None:
            stop_process(process)
        shutil.rmtree(workdir, ignore_errors=True)


def wait_ready(process: subprocess.Popen[bytes], server: Server) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"run.py exited with {process.returncode}:\n{log_tail(server)}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, server.port), 1) as s:
            s.sendall(f"GET /readyz HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
            if s.recv(64).startswith(b"HTTP/1.1 200"):
                return
        time.sleep(0.1)
    raise RuntimeError(f"run.py not ready after {READY_TIMEOUT_S:.0f} s:\n{log_tail(server)}")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def log_tail(server: Server, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(server.log_path.read_text(errors="replace").splitlines()[-lines:])
    return "(no server log)"


# -- HTTP: score posts and /metrics ----------------------------------------------------------


class HttpClient(HttpConnection):
    """The load generator's keep-alive HTTP client, opened on a local port."""

    @classmethod
    async def connect(cls, port: int) -> HttpClient:
        client = cls(Target(HOST, port))
        await client.open()
        return client

    async def post_json(self, path: str, body: object, bearer: str) -> bytes:
        status, answer = await self.request("POST", path, body, bearer)
        check_answer(path, status, answer)
        return answer


def check_answer(path: str, status: int, answer: bytes) -> None:
    if status >= 300:
        raise RuntimeError(f"POST {path} answered {status}: {answer[:200]!r}")


class Poster:
    """Posts scores as a `server`-role integration (not rate-limited) on one connection."""

    def __init__(self, http: HttpClient) -> None:
        self.http = http
        self.bearer = token("bench-feeder", "server")
        self.next_index = 0  # post i submits SCORE_BASE + i, across every run of the process

    def send(self, board: str) -> int:
        """Write the next score post without waiting for its answer; returns its post index."""
        index = self.next_index
        self.next_index += 1
        body = {"user_id": f"player{index % PLAYERS}", "score": SCORE_BASE + index}
        self.http.send("POST", self.path(board), body, self.bearer)
        return index

    async def post(self, board: str) -> int:
        """Submit the next score and wait for its answer; returns its post index."""
        index = self.send(board)
        await self.answer(board)
        return index

    async def answer(self, board: str) -> None:
        """Read the answer to the oldest post still unanswered."""
        check_answer(self.path(board), *await self.http.response())

    @staticmethod
    def path(board: str) -> str:
        return f"/api/boards/{board}/scores"


async def create_boards(http: HttpClient, *board_ids: str) -> None:
    admin = token("bench-admin", "admin")
    for board_id in board_ids:
        body = {"id": board_id, "title": f"Bench {board_id}", "operator": "set"}
        await http.post_json("/api/boards", body, admin)


@dataclass(frozen=True)
class Histogram:
    """Cumulative bucket counts of one Prometheus histogram, with its count and sum."""

    buckets: tuple[tuple[float, float], ...]  # (upper bound `le`, cumulative count)
    count: float
    total: float

    def minus(self, earlier: Histogram) -> Histogram:
        """The observations made since `earlier`."""
        buckets = tuple(
            (le, n - n0) for (le, n), (_, n0) in zip(self.buckets, earlier.buckets, strict=True)
        )
        return Histogram(buckets, self.count - earlier.count, self.total - earlier.total)

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else float("nan")

    def quantile(self, q: float) -> float:
        """Linear interpolation inside the bucket holding rank q*count (histogram_quantile)."""
        if not self.count:
            return float("nan")
        rank = q * self.count
        lower_le, lower_n = 0.0, 0.0
        for le, n in self.buckets:
            if n >= rank:
                if le == float("inf"):
                    return lower_le  # beyond the last finite bound: all we can say
                return lower_le + (le - lower_le) * (rank - lower_n) / max(n - lower_n, 1e-12)
            lower_le, lower_n = le, n
        return lower_le


@dataclass(frozen=True)
class Metrics:
    """The figures of one /metrics scrape that this benchmark reads."""

    score_updates_sent: float
    ws_connections: float
    broadcast_latency: Histogram
    loop_lag: Histogram


def parse_metrics(text: str) -> Metrics:
    families = {family.name: family for family in text_string_to_metric_families(text)}

    def sample_value(name: str, suffix: str = "", **labels: str) -> float:
        for sample in families[name].samples:
            if sample.name == name + suffix and all(
                sample.labels.get(k) == v for k, v in labels.items()
            ):
                return sample.value
        return 0.0

    def histogram(name: str) -> Histogram:
        buckets = tuple(
            (float(s.labels["le"]), s.value)
            for s in families[name].samples
            if s.name == name + "_bucket"
        )
        return Histogram(buckets, sample_value(name, "_count"), sample_value(name, "_sum"))

    return Metrics(
        score_updates_sent=sample_value(SENT_METRIC, "_total", type="score_update"),
        ws_connections=sample_value(CONNECTIONS_METRIC),
        broadcast_latency=histogram(BROADCAST_LATENCY_METRIC),
        loop_lag=histogram(LOOP_LAG_METRIC),
    )


async def scrape(http: HttpClient) -> Metrics:
    status, body = await http.request("GET", "/metrics")
    if status != 200:
        raise RuntimeError(f"GET /metrics answered {status}")
    return parse_metrics(body.decode())


# -- WebSocket clients -----------------------------------------------------------------------


class Watchers(ClientGroup):
    """Subscribers of the load generator whose score_update top scores go to a callback."""

    def __init__(self, port: int, on_top_score: Callable[[Client, int], None] | None) -> None:
        super().__init__(Target(HOST, port), Protocol.SCOREBOARD, base=SCORE_BASE)
        self.on_top_score = on_top_score

    def top_score(self, client: Client, index: int, now: float) -> None:
        if self.on_top_score is not None:
            self.on_top_score(client, index)


async def open_clients(
    port: int,
    count: int,
    board: str | None,
    prefix: str,
    on_top_score: Callable[[Client, int], None] | None = None,
    group: Watchers | None = None,
) -> Watchers:
    """`count` more authenticated clients (one user each) in `group` (or a new one)."""
    group = group if group is not None else Watchers(port, on_top_score)
    path = "/ws" if board is None else f"/ws?board={board}"
    host = f"{HOST}:{port}"
    await group.connect(
        [
            upgrade_request(host, path, {"Authorization": f"Bearer {token(f'{prefix}{n}')}"})
            for n in range(count)
        ]
    )
    if group.connect_failed:
        raise RuntimeError(f"{group.connect_failed} clients failed: {dict(group.errors)}")
    return group


# -- reporting ---------------------------------------------------------------------------------


def print_table(title: str, rows: list[tuple[str, str, str]]) -> None:
    """A three-column table: figure, measured value, target."""
    print(title)
    print(f"{'figure':<44}{'measured':>20}  {'target':<24}")
    print("-" * 90)
    for figure, value, target in rows:
        print(f"{figure:<44}{value:>20}  {target:<24}")
    print()


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


# -- frames: server CPU per delivered score_update ------------------------------------------


class DeliveryTracker:
    """Counts the subscribers that have seen a target post, to know when a broadcast landed."""

    def __init__(self) -> None:
        self.target = -1
        self.reached = 0
        self.total = 0
        self.done = asyncio.Event()

    def expect(self, index: int, subscribers: int) -> None:
        self.target, self.reached, self.total = index, 0, subscribers
        self.done.clear()

    def on_top_score(self, client: Client, index: int) -> None:
        if client.last_index < self.target <= index:
            self.reached += 1
            if self.reached == self.total:
                self.done.set()
        client.last_index = max(client.last_index, index)


@dataclass(frozen=True)
class FramesRun:
    frames: float
    cpu_with_subscribers_s: float
    cpu_baseline_s: float
    latency: Histogram

    @property
    def us_per_frame(self) -> float:
        return (self.cpu_with_subscribers_s - self.cpu_baseline_s) / self.frames * 1e6


async def post_and_await_delivery(
    poster: Poster, tracker: DeliveryTracker, subscribers: int
) -> None:
    tracker.expect(poster.next_index, subscribers)
    await poster.post(BOARD)
    await asyncio.wait_for(tracker.done.wait(), DELIVERY_TIMEOUT_S)


async def frames_run(
    server: Server,
    http: HttpClient,
    poster: Poster,
    tracker: DeliveryTracker,
    subscribers: int,
    posts: int,
) -> FramesRun:
    """One measurement: `posts` broadcasts to the subscribers, then the same posts unwatched."""
    before = await scrape(http)
    cpu_start = cpu_seconds(server.pid)
    for _ in range(posts):
        await post_and_await_delivery(poster, tracker, subscribers)
    await asyncio.sleep(SETTLE_S)
    cpu_with = cpu_seconds(server.pid) - cpu_start
    after = await scrape(http)

    cpu_start = cpu_seconds(server.pid)
    for _ in range(posts):
        await poster.post(QUIET_BOARD)
    await asyncio.sleep(SETTLE_S)
    cpu_baseline = cpu_seconds(server.pid) - cpu_start
    return FramesRun(
        frames=after.score_updates_sent - before.score_updates_sent,
        cpu_with_subscribers_s=cpu_with,
        cpu_baseline_s=cpu_baseline,
        latency=after.broadcast_latency.minus(before.broadcast_latency),
    )


async def measure_frames(server: Server, subscribers: int, posts: int, runs: int) -> None:
    http = await HttpClient.connect(server.port)
    tracker = DeliveryTracker()
    clients: Watchers | None = None
    try:
        await create_boards(http, BOARD, QUIET_BOARD)
        poster = Poster(http)
        for _ in range(PLAYERS):  # fill the top 10 before anyone watches
            await poster.post(BOARD)
            await poster.post(QUIET_BOARD)
        clients = await open_clients(server.port, subscribers, BOARD, "sub", tracker.on_top_score)
        await asyncio.sleep(SETTLE_S)
        results = []
        print_frames_header()
        for run in range(1, runs + 1):
            result = await frames_run(server, http, poster, tracker, subscribers, posts)
            results.append(result)
            print_frames_run(f"run {run}", result, posts)
    finally:
        if clients is not None:
            clients.close()
        http.close()

    def median(figure: Callable[[FramesRun], float]) -> float:
        return statistics.median(figure(result) for result in results)

    print()
    print_table(
        f"frames: {subscribers:,} subscribers, {posts} posts/run, median of {runs} runs",
        [
            (
                "server CPU per delivered score_update",
                f"{median(lambda r: r.us_per_frame):.2f} us",
                f"<= {TARGET_CPU_PER_FRAME_US:g} us",
            ),
            ("broadcast latency mean", ms(median(lambda r: r.latency.mean)), "-"),
            (
                "broadcast latency p50 (bucket estimate)",
                ms(median(lambda r: r.latency.quantile(0.5))),
                "-",
            ),
            (
                "broadcast latency p99 (bucket estimate)",
                ms(median(lambda r: r.latency.quantile(0.99))),
                "-",
            ),
        ],
    )


def print_frames_header() -> None:
    print(
        f"{'':<7}{'frames':>9}{'CPU subs s':>11}{'CPU base s':>11}{'us/frame':>10}"
        f"{'bcasts':>8}{'bcast mean':>12}{'p50':>10}{'p99':>10}"
    )


def print_frames_run(label: str, run: FramesRun, posts: int) -> None:
    """One row: CPU with and without subscribers, and the broadcast_latency histogram."""
    lat = run.latency
    print(
        f"{label:<7}{run.frames:>9.0f}{run.cpu_with_subscribers_s:>11.2f}"
        f"{run.cpu_baseline_s:>11.2f}{run.us_per_frame:>10.2f}{lat.count:>8.0f}"
        f"{ms(lat.mean):>12}{ms(lat.quantile(0.5)):>10}{ms(lat.quantile(0.99)):>10}"
    )
    if lat.count != posts:
        print(f"        (expected {posts} broadcasts, one per post; got {lat.count:.0f})")


# -- memory: resident memory per idle authenticated connection --------------------------------


async def wait_for_connections(http: HttpClient, expected: int) -> None:
    deadline = time.monotonic() + CONNECTIONS_TIMEOUT_S
    while (await scrape(http)).ws_connections != expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server never reported {expected} connections")
        await asyncio.sleep(0.1)


async def memory_run(server: Server, connections: int) -> tuple[int, int]:
    """RSS of the server before and after opening `connections` idle authenticated clients."""
    http = await HttpClient.connect(server.port)
    clients: Watchers | None = None
    try:
        clients = await open_clients(server.port, MEMORY_WARMUP_CONNECTIONS, None, "warm")
        await wait_for_connections(http, MEMORY_WARMUP_CONNECTIONS)
        await asyncio.sleep(SETTLE_S)
        before = rss_bytes(server.pid)
        await open_clients(server.port, connections, None, "idle", group=clients)
        await wait_for_connections(http, MEMORY_WARMUP_CONNECTIONS + connections)
        await asyncio.sleep(SETTLE_S)
        return before, rss_bytes(server.pid)
    finally:
        if clients is not None:
            clients.close()
        http.close()


def measure_memory(connections: int, runs: int) -> None:
    per_connection_kib = []
    for run in range(1, runs + 1):
        with running_server(None, connections + MEMORY_WARMUP_CONNECTIONS) as server:
            before, after = asyncio.run(memory_run(server, connections))
        per_connection_kib.append((after - before) / connections / 1024)
        print(
            f"run {run}: RSS {before / 2**20:.1f} -> {after / 2**20:.1f} MiB, "
            f"{per_connection_kib[-1]:.2f} KiB per connection"
        )
    print()
    print_table(
        f"memory: {connections:,} idle authenticated connections, {runs} runs (median)",
        [
            (
                "resident memory per idle connection",
                f"{statistics.median(per_connection_kib):.2f} KiB",
                f"<= {TARGET_RSS_PER_CONNECTION_KIB:g} KiB",
            )
        ],
    )


# -- latency: score posted -> frame received -------------------------------------------------


async def measure_latency(
    server: Server, subscribers: int, rate: float, seconds: float, interval: str
) -> None:
    http = await HttpClient.connect(server.port)
    try:
        before = await scrape(http)
        summary = await loadtest.run(
            loadtest.Options(
                url=f"http://{HOST}:{server.port}",
                clients=subscribers,
                rate=rate,
                duration=seconds,
                board=BOARD,
                drain=LATENCY_DRAIN_S,
                subscriber_tokens=[token(f"sub{n}") for n in range(subscribers)],
                poster_token=token("bench-feeder", "server"),
                admin_token=token("bench-admin", "admin"),
                create_board=True,
            )
        )
        after = await scrape(http)
    finally:
        http.close()

    latency, deliveries = summary["latency_ms"], summary["deliveries"]
    loop_lag = after.loop_lag.minus(before.loop_lag)
    print_table(
        f"latency: {subscribers:,} subscribers, {rate:g} posts/s for {seconds:g} s "
        f"({summary['posts']['per_s']} posts/s sent), broadcast interval {interval}",
        [
            ("posted -> frame received p50", f"{latency['p50']} ms", "-"),
            (
                "posted -> frame received p99",
                f"{latency['p99']} ms",
                f"p99 <= {TARGET_LATENCY_P99_MS:g} ms",
            ),
            ("posted -> frame received max", f"{latency['max']} ms", "-"),
            (
                "(post, client) pairs delivered",
                f"{deliveries['delivered']:,}/{deliveries['expected']:,}",
                "all",
            ),
            (
                f"server event-loop lag p99 ({loop_lag.count:.0f} probes)",
                ms(loop_lag.quantile(0.99)),
                f"p99 <= {TARGET_LOOP_LAG_P99_MS:g} ms",
            ),
            (
                "bench process loop lag p99 (client side)",
                f"{summary['client']['loop_lag_ms']['p99']} ms",
                "-",
            ),
        ],
    )


# -- entry point -----------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    modes = parser.add_subparsers(dest="mode", required=True)

    frames = modes.add_parser("frames", help="server CPU per delivered score_update frame")
    frames.add_argument("subscribers", type=int, nargs="?", default=2000)
    frames.add_argument("--posts", type=int, default=200, help="score posts per run")
    frames.add_argument("--runs", type=int, default=3)

    memory = modes.add_parser("memory", help="resident memory per idle connection")
    memory.add_argument("connections", type=int, nargs="?", default=10_000)
    memory.add_argument("--runs", type=int, default=3, help="each on a fresh server")

    latency = modes.add_parser("latency", help="score posted -> frame received")
    latency.add_argument("subscribers", type=int, nargs="?", default=1000)
    latency.add_argument("rate", type=float, nargs="?", default=100.0, help="posts per second")
    latency.add_argument("--seconds", type=float, default=10.0)
    latency.add_argument(
        "--broadcast-interval-ms",
        type=int,
        default=None,
        help="passed to the server (default: the server's own default)",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    # SIGTERM unwinds like Ctrl-C, so the server and temp dir are removed by the `finally`s.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if args.mode == "frames":
        raise_fd_limit(args.subscribers + FD_MARGIN)
        with running_server(1, args.subscribers + FD_MARGIN) as server:
            asyncio.run(measure_frames(server, args.subscribers, args.posts, args.runs))
    elif args.mode == "memory":
        raise_fd_limit(args.connections + MEMORY_WARMUP_CONNECTIONS + FD_MARGIN)
        measure_memory(args.connections, args.runs)
    else:
        raise_fd_limit(args.subscribers + FD_MARGIN)
        with running_server(args.broadcast_interval_ms, args.subscribers + FD_MARGIN) as server:
            interval = (
                f"{args.broadcast_interval_ms} ms"
                if args.broadcast_interval_ms is not None
                else "server default"
            )
            asyncio.run(
                measure_latency(server, args.subscribers, args.rate, args.seconds, interval)
            )


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # the server and temp dir are gone already (see running_server)
        sys.exit(130)
