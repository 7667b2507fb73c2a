"""Live delivery (SPEC section 5): rooms, the coalescing tick, shared pre-encoded frames,
conflation for slow consumers, heartbeats, token expiry and the graceful drain.

The hub owns every live connection and every timer of live delivery. It knows sockets only
through the `Sink` interface (handlers/live.py implements it over a Tornado stream): hand over
bytes of whole WebSocket frames, say how many bytes still wait, close. It is told of committed
changes as a `service.BoardListener` and answers client messages by calling the service.

Cost model: a `score_update` is serialized and framed once per board per tick and the same
bytes object is handed to every subscriber. A connection whose stream still holds unsent bytes
never gets a second state frame for a board queued behind the first: it keeps only the newest
pending frame per board and gets it when its stream drains. One hub-wide sweep timer does the
protocol pings, token expiry and stall checks for all connections; a board has a timer only
while it has a merged change waiting.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import secrets
import struct
import time
from collections import deque
from collections.abc import Callable, Iterable
from enum import Enum, IntEnum
from typing import Any, Protocol

import orjson

from . import metrics
from .auth import Identity
from .config import Settings
from .errors import (
    AuthFailed,
    BadRequest,
    Forbidden,
    Overloaded,
    RateLimited,
    ScoreboardError,
)
from .limits import TokenBucket
from .ranking import TOP_N, Outcome, format_timestamp
from .service import ScoreboardService

log = logging.getLogger(__name__)

MAX_SUBSCRIPTIONS = 20  # boards per connection (SPEC section 5)
MAX_MESSAGE_BYTES = 4 * 1024  # larger client messages close with 1009 (SPEC section 5)
# What browsers are told to use for their `ping` messages: under the 30 s idle timeout of
# common proxies and load balancers, with room for one late ping.
HEARTBEAT_INTERVAL_S = 25
# The sweep (pings, expiry, stalls) runs at a quarter of the shortest timer it serves, so a
# deadline is noticed at most 25 % late, but never more often than 50 times a second.
MAX_SWEEP_PERIOD_S = 1.0
MIN_SWEEP_PERIOD_S = 0.02
LAG_PROBE_INTERVAL_S = 0.5  # how often the event-loop lag probe is scheduled
# A rate-limit streak ends after this long without a refused message: a client that slows down
# is forgiven, one that stays over the limit for `ws_abuse_close_after` s is closed with 1008.
ABUSE_QUIET_S = 1.0
# Per-connection connection_status frames are built in chunks of this many connections per
# loop turn, so that a status round over 20,000 connections never stalls the loop for long.
STATUS_CHUNK = 500
# After the last 1001 of a shutdown, clients get this long to answer the close handshake.
CLOSE_HANDSHAKE_GRACE_S = 1.0
SHUTDOWN_STEP_S = 0.01  # closes due within the same 10 ms go out together
EXPIRY_SLACK = 1024  # stale expiry entries tolerated before the heap is rebuilt
RATE_SAMPLES = 6  # messages/s of the admin stats: over the last ~5 sweeps
TOP_USERS = 10  # users listed in the admin stats' top_users_by_connections

PING_FRAME = b"\x89\x00"  # an unmasked protocol ping with no payload
PROCESS_TAG = secrets.token_hex(3)  # makes connection ids unique across restarts


class CloseCode(IntEnum):
    """WebSocket close codes of SPEC section 5."""

    NORMAL = 1000
    GOING_AWAY = 1001
    POLICY = 1008
    TOO_BIG = 1009
    INTERNAL = 1011
    TRY_AGAIN_LATER = 1013
    AUTH = 4401
    FORBIDDEN = 4403


class ConnState(Enum):
    """Where a connection is in its life, as the hub sees it."""

    OPEN = "open"  # the stream is idle: frames go straight to the socket
    BACKLOGGED = "backlogged"  # bytes wait in the stream: state frames are conflated
    CLOSING = "closing"  # the hub closed it; waiting for the socket to go
    CLOSED = "closed"


class Sink(Protocol):
    """The socket side of one connection, as the hub needs it."""

    def send_frame(self, data: bytes) -> bool:
        """Hand whole frames to the socket; False when some bytes wait in user space.

        Once it returned False, the sink calls `Hub.drained(conn)` when its queue empties.
        """
        ...

    def unsent_bytes(self) -> int:
        """Bytes accepted by `send_frame` and not yet handed to the kernel."""
        ...

    def flushed_bytes(self) -> int:
        """A counter that grows whenever queued bytes reach the kernel (progress)."""
        ...

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Start the closing handshake with `code`."""
        ...

    def abort(self) -> None:
        """Drop the TCP connection at once (the peer is gone or hostile)."""
        ...


# -- pure helpers: framing and timing maths --------------------------------------------------


def encode_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """An unmasked, unfragmented, uncompressed server frame (RFC 6455 section 5.2)."""
    length = len(payload)
    first = 0x80 | opcode
    if length < 126:
        return bytes((first, length)) + payload
    if length <= 0xFFFF:
        return struct.pack("!BBH", first, 126, length) + payload
    return struct.pack("!BBQ", first, 127, length) + payload


def message(kind: str, data: dict[str, Any]) -> bytes:
    """The framed JSON envelope `{"type", "data"}`."""
    return encode_frame(orjson.dumps({"type": kind, "data": data}))


def broadcast_delay(*, last_sent_at: float, interval: float, now: float) -> float:
    """Seconds until a board may send its next score_update: 0 after a quiet period."""
    return max(0.0, last_sent_at + interval - now)


def sweep_period(*, ping_interval: float, slow_consumer_timeout: float) -> float:
    """Period of the hub-wide sweep timer, a quarter of the shortest deadline it checks."""
    quarter = min(ping_interval, slow_consumer_timeout) / 4
    return min(MAX_SWEEP_PERIOD_S, max(MIN_SWEEP_PERIOD_S, quarter))


def ping_slices(*, ping_interval: float, period: float) -> int:
    """How many slices the connections are split into so each is pinged once per interval."""
    return max(1, round(ping_interval / period))


def stalled(*, mark: float, now: float, timeout: float) -> bool:
    """True when no byte could be written since `mark` for `timeout` seconds."""
    return now - mark >= timeout


def abuse_streak_start(
    *, streak_start: float | None, last_refused_at: float | None, now: float, quiet: float
) -> float:
    """When the current over-the-rate streak began, counting a refusal at `now`."""
    if streak_start is None or last_refused_at is None or now - last_refused_at > quiet:
        return now
    return streak_start


def close_delay(*, index: int, count: int, spread: float) -> float:
    """Seconds after the start of a shutdown at which connection `index` of `count` closes."""
    if count <= 0:
        return 0.0
    return spread * index / count


def message_rate(samples: Iterable[tuple[float, int]]) -> float:
    """Messages per second over (time, running total) samples, oldest first."""
    points = list(samples)
    if len(points) < 2 or points[-1][0] <= points[0][0]:
        return 0.0
    return (points[-1][1] - points[0][1]) / (points[-1][0] - points[0][0])


def affected_from(outcome: Outcome) -> float:
    """The best rank whose holder a submission may have moved (inf when it moved nobody).

    Players ranked above every such position kept their rank; only the rest need a look-up.
    """
    if outcome.previous_rank is None:
        return outcome.rank  # a new entry pushes everyone at or below it down one
    if outcome.previous_rank == outcome.rank:
        return math.inf
    return min(outcome.rank, outcome.previous_rank)


# -- state --------------------------------------------------------------------------------


class _Snapshot:
    """Marker in a pending queue: build a fresh snapshot when the stream drains."""

    __slots__ = ()


SNAPSHOT = _Snapshot()
_STATE = 0  # pending key kinds: the board's state (snapshot / score_update) ...
_RANK = 1  # ... and the user's own rank_update


class Connection:
    """One live WebSocket as the hub sees it; small on purpose (there are tens of thousands)."""

    __slots__ = (
        "awaiting_pong",
        "boards",
        "bucket",
        "close_reason",
        "identity",
        "last_refused_at",
        "pending",
        "serial",
        "sink",
        "stall_mark",
        "stall_since",
        "state",
        "streak_start",
    )

    def __init__(self, serial: int, identity: Identity | None, sink: Sink) -> None:
        self.serial = serial
        self.identity = identity
        self.sink = sink
        self.state = ConnState.OPEN
        self.boards: dict[str, int] = {}  # subscribed board -> seq of the last state frame
        self.pending: dict[tuple[int, str], bytes | _Snapshot] | None = None
        self.awaiting_pong = False
        self.stall_mark = 0
        self.stall_since = 0.0
        self.bucket: TokenBucket | None = None  # made at the first message
        self.streak_start: float | None = None
        self.last_refused_at: float | None = None
        self.close_reason: str | None = None

    @property
    def id(self) -> str:
        """The connection_id: unique across restarts, built on demand (not stored per socket)."""
        return f"{PROCESS_TAG}-{self.serial:x}"


class Room:
    """The subscribers of one board and its coalescing and rank-update state."""

    __slots__ = (
        "board_id",
        "conns",
        "known",
        "last_sent_at",
        "members",
        "players",
        "rank_from",
        "rank_timer",
        "subscribers_gauge",
        "timer",
        "updated_user",
        "window_start",
    )

    def __init__(self, board_id: str) -> None:
        self.board_id = board_id
        self.conns: dict[Connection, None] = {}
        self.members: tuple[Connection, ...] | None = ()  # cached for iteration; None = stale
        self.players: dict[str, list[Connection]] = {}  # signed-in subscribers by user
        self.known: dict[str, tuple[int, int]] = {}  # user -> (rank, score) they were told
        self.last_sent_at = -math.inf
        self.timer: asyncio.TimerHandle | None = None
        self.window_start: float | None = None  # accepted_at of the oldest merged change
        self.updated_user: dict[str, Any] | None = None
        self.rank_from = math.inf  # best rank touched since the last rank check
        self.rank_timer: asyncio.TimerHandle | None = None
        self.subscribers_gauge = metrics.BOARD_SUBSCRIBERS.labels(board_id)

    def member_tuple(self) -> tuple[Connection, ...]:
        if self.members is None:
            self.members = tuple(self.conns)
        return self.members


# -- the hub ------------------------------------------------------------------------------


class Hub:
    """Owns every live connection, room and timer of the process."""

    def __init__(
        self,
        settings: Settings,
        service: ScoreboardService,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.service = service
        self.clock = clock
        self.wall_clock = wall_clock
        self.accepting = True
        self._interval_s = settings.broadcast_interval_ms / 1000
        self._period = sweep_period(
            ping_interval=settings.ping_interval,
            slow_consumer_timeout=settings.slow_consumer_timeout,
        )
        self._slices: list[dict[Connection, None]] = [
            {}
            for _ in range(ping_slices(ping_interval=settings.ping_interval, period=self._period))
        ]
        self._conns: dict[Connection, None] = {}  # insertion order: the shutdown close order
        self._user_conns: dict[str, int] = {}
        self._anonymous = 0
        self._rooms: dict[str, Room] = {}
        self._backlogged: set[Connection] = set()
        self._closing: set[Connection] = set()  # closed by the hub, socket not gone yet
        self._expiry: list[tuple[float, int, Connection]] = []
        self._serials = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweep_handle: asyncio.TimerHandle | None = None
        self._probe_handle: asyncio.TimerHandle | None = None
        self._probe_due = 0.0
        self._sweeps = 0
        self._last_status_at = -math.inf
        self._status_count = 0  # user_count of the last status round
        self._status_handle: asyncio.Handle | None = None
        self._sent_total = 0
        self._received_total = 0
        self._rate_samples: deque[tuple[float, int, int]] = deque(maxlen=RATE_SAMPLES)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the hub-wide timers; needs the running loop."""
        self._loop = asyncio.get_running_loop()
        self._last_status_at = self.clock()  # open() already sent each client its status
        self._sweep_handle = self._loop.call_later(self._period, self._sweep)
        self._probe_due = self.clock() + LAG_PROBE_INTERVAL_S
        self._probe_handle = self._loop.call_later(LAG_PROBE_INTERVAL_S, self._probe)

    def abort_all(self) -> None:
        """Drop every socket at once, without a closing handshake (tests, last resort)."""
        for conn in [*self._conns, *self._closing]:
            conn.sink.abort()

    def stop(self) -> None:
        """Cancel every timer and task of the hub (the sockets are left as they are)."""
        for handle in (self._sweep_handle, self._probe_handle, self._status_handle):
            if handle is not None:
                handle.cancel()
        self._sweep_handle = self._probe_handle = self._status_handle = None
        for room in self._rooms.values():
            self._cancel_room_timers(room)
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()

    async def close_all(self) -> None:
        """Graceful drain: refuse new work, let acks go out, close with 1001 over the spread."""
        self.accepting = False
        deadline = self.clock() + CLOSE_HANDSHAKE_GRACE_S
        while self._tasks and self.clock() < deadline:
            await asyncio.sleep(SHUTDOWN_STEP_S)
        conns = list(self._conns)
        count = len(conns)
        start = self.clock()
        for index, conn in enumerate(conns):
            due = start + close_delay(
                index=index, count=count, spread=self.settings.shutdown_spread
            )
            wait = due - self.clock()
            if wait > SHUTDOWN_STEP_S:
                await asyncio.sleep(wait)
            self.close(conn, CloseCode.GOING_AWAY, "shutdown", "server shutting down")
        deadline = self.clock() + CLOSE_HANDSHAKE_GRACE_S
        while self._closing and self.clock() < deadline:
            await asyncio.sleep(SHUTDOWN_STEP_S)
        self.abort_all()
        self.stop()

    # -- admission and connections ---------------------------------------------------------

    def admission(self, identity: Identity | None) -> ScoreboardError | None:
        """Why a new connection must be refused (503 / 429), or None to admit it."""
        if not self.accepting:
            return Overloaded("the server is shutting down")
        if len(self._conns) >= self.settings.max_connections:
            return Overloaded(f"at most {self.settings.max_connections} connections per process")
        if identity is not None:
            limit = self.settings.max_connections_per_user
            if self._user_conns.get(identity.sub, 0) >= limit:
                return RateLimited(f"at most {limit} connections per user", retry_after=1.0)
        return None

    @property
    def user_count(self) -> int:
        """Signed-in users online plus anonymous connections (each counts as one viewer)."""
        return len(self._user_conns) + self._anonymous

    @property
    def connection_count(self) -> int:
        return len(self._conns)

    def open(
        self,
        sink: Sink,
        identity: Identity | None,
        *,
        board: str | None = None,
        reconnect: bool = False,
    ) -> Connection:
        """Register an upgraded connection: connection_status now, a snapshot if `board`."""
        serial = next(self._serials)
        conn = Connection(serial, identity, sink)
        self._conns[conn] = None
        self._slices[serial % len(self._slices)][conn] = None
        if identity is not None:
            self._user_conns[identity.sub] = self._user_conns.get(identity.sub, 0) + 1
            heapq.heappush(self._expiry, (identity.exp, serial, conn))
        else:
            self._anonymous += 1
        metrics.WS_CONNECTIONS.inc()
        metrics.WS_CONNECTIONS_OPENED.inc()
        if reconnect:
            metrics.WS_RECONNECTS.inc()
        self._send(conn, self._status_frame(conn, self.user_count), "connection_status")
        if board is not None:
            self._subscribe(conn, board, None)
        return conn

    def closed(self, conn: Connection, *, client_code: int | None) -> None:
        """The socket is gone (told by the handler's on_close)."""
        self._closing.discard(conn)
        if conn.state is ConnState.CLOSING:
            conn.state = ConnState.CLOSED
            return
        if conn.state is ConnState.CLOSED:
            return
        self._forget(conn, "normal" if client_code is not None else "client_gone")
        conn.state = ConnState.CLOSED

    def close(self, conn: Connection, code: int, reason: str, text: str) -> None:
        """Close a connection from the server side, counted under `reason`."""
        if conn.state in (ConnState.CLOSING, ConnState.CLOSED):
            return
        self._forget(conn, reason)
        conn.state = ConnState.CLOSING
        self._closing.add(conn)
        conn.sink.close(code, text)
        if reason == "ping_timeout":
            # The peer is presumed gone: no closing handshake to wait for. The close frame
            # already reached the kernel unless bytes were queued, and is then lost with them.
            conn.sink.abort()

    def _forget(self, conn: Connection, reason: str) -> None:
        """Take a connection out of every room and count; it gets nothing more."""
        self._conns.pop(conn, None)
        self._slices[conn.serial % len(self._slices)].pop(conn, None)
        self._backlogged.discard(conn)
        conn.pending = None
        for board_id in list(conn.boards):
            self._leave_room(conn, board_id)
        if conn.identity is not None:
            sub = conn.identity.sub
            left = self._user_conns.get(sub, 1) - 1
            if left > 0:
                self._user_conns[sub] = left
            else:
                self._user_conns.pop(sub, None)
        else:
            self._anonymous -= 1
        metrics.WS_CONNECTIONS.dec()
        metrics.WS_CLOSED_BY_REASON[reason].inc()

    # -- sending ---------------------------------------------------------------------------

    def _count(self, kind: str, n: int = 1) -> None:
        metrics.WS_SENT_BY_TYPE[kind].inc(n)
        self._sent_total += n

    def _send(self, conn: Connection, frame: bytes, kind: str) -> None:
        """Send a frame that must not be conflated (status, ack, pong, error)."""
        state = conn.state
        if state is ConnState.OPEN:
            if not conn.sink.send_frame(frame):
                self._backlog(conn)
        elif state is ConnState.BACKLOGGED:
            conn.sink.send_frame(frame)
            self._check_unsent(conn)
        else:
            return
        self._count(kind)

    def _send_state(self, conn: Connection, key: tuple[int, str], frame: bytes | _Snapshot) -> bool:
        """Send a state frame, or keep it as the newest pending one of its key; True if sent."""
        if conn.state is ConnState.OPEN:
            if isinstance(frame, _Snapshot):
                frame = self._snapshot_frame(conn, key[1])
            if not conn.sink.send_frame(frame):
                self._backlog(conn)
            return True
        if conn.state is ConnState.BACKLOGGED:
            pending = conn.pending
            if pending is None:
                pending = conn.pending = {}
            # A pending snapshot stays: it is built at drain time and so holds every later state.
            if not isinstance(pending.get(key), _Snapshot):
                pending[key] = frame
        return False

    def _backlog(self, conn: Connection) -> None:
        conn.state = ConnState.BACKLOGGED
        self._backlogged.add(conn)
        conn.stall_mark = conn.sink.flushed_bytes()
        conn.stall_since = self.clock()
        self._check_unsent(conn)

    def _check_unsent(self, conn: Connection) -> None:
        if conn.sink.unsent_bytes() > self.settings.max_unsent_bytes:
            self.close(conn, CloseCode.TRY_AGAIN_LATER, "slow_consumer", "too slow")

    def drained(self, conn: Connection) -> None:
        """The sink's queue emptied: write the pending frames, newest state per board."""
        if conn.state is not ConnState.BACKLOGGED or conn.sink.unsent_bytes():
            return
        pending, conn.pending = conn.pending, None
        conn.state = ConnState.OPEN
        self._backlogged.discard(conn)
        if not pending:
            return
        frames = []
        for (kind, board_id), frame in pending.items():
            if board_id not in conn.boards:
                continue
            if isinstance(frame, _Snapshot):
                frame = self._snapshot_frame(conn, board_id)
                self._count("snapshot")
            else:
                self._count("score_update" if kind == _STATE else "rank_update")
            frames.append(frame)
        if frames and not conn.sink.send_frame(b"".join(frames)):
            self._backlog(conn)

    def send_error(
        self,
        conn: Connection,
        code: str,
        text: str,
        *,
        request_id: Any = None,
        retry_after: float | None = None,
    ) -> None:
        data: dict[str, Any] = {"code": code, "message": text}
        if request_id is not None:
            data["request_id"] = request_id
        if retry_after is not None:
            data["retry_after"] = round(retry_after, 3)
        metrics.ERRORS.labels(code).inc()
        self._send(conn, message("error", data), "error")

    # -- frames ----------------------------------------------------------------------------

    def _status_frame(self, conn: Connection, user_count: int) -> bytes:
        identity = conn.identity
        user = (
            {
                "user_id": identity.sub,
                "name": identity.name or identity.sub,
                "role": identity.role.value,
            }
            if identity is not None
            else None
        )
        return message(
            "connection_status",
            {
                "status": "connected",
                "user_count": user_count,
                "connection_id": conn.id,
                "user": user,
                "heartbeat_interval": HEARTBEAT_INTERVAL_S,
                "server_time": format_timestamp(self.wall_clock()),
            },
        )

    def _snapshot_frame(self, conn: Connection, board_id: str) -> bytes:
        ranks = self.service.board(board_id).ranks
        you = ranks.entry(conn.identity.sub) if conn.identity is not None else None
        seq = ranks.seq
        conn.boards[board_id] = seq
        if you is not None:
            room = self._rooms.get(board_id)
            if room is not None:
                # Another connection of this user may not have heard of its latest move yet:
                # keep what it was told, so the next rank check still reaches it.
                room.known.setdefault(you.user_id, (you.rank, you.score))
        return message(
            "snapshot",
            {
                "board": board_id,
                "seq": seq,
                "top_10": [e.to_json() for e in ranks.top(TOP_N)],
                "you": you.to_json() if you is not None else None,
                "total_players": len(ranks),
            },
        )

    # -- rooms -----------------------------------------------------------------------------

    def _subscribe(self, conn: Connection, board_id: Any, request_id: Any) -> None:
        if not isinstance(board_id, str) or board_id not in self.service.boards:
            self.send_error(conn, "not_found", f"no board {board_id!r}", request_id=request_id)
            return
        if board_id not in conn.boards:
            if len(conn.boards) >= MAX_SUBSCRIPTIONS:
                self.send_error(
                    conn,
                    "bad_request",
                    f"at most {MAX_SUBSCRIPTIONS} boards per connection",
                    request_id=request_id,
                )
                return
            room = self._rooms.get(board_id)
            if room is None:
                room = self._rooms[board_id] = Room(board_id)
            room.conns[conn] = None
            room.members = None
            if conn.identity is not None:
                room.players.setdefault(conn.identity.sub, []).append(conn)
            room.subscribers_gauge.set(len(room.conns))
            conn.boards[board_id] = -1
        if self._send_state(conn, (_STATE, board_id), SNAPSHOT):
            self._count("snapshot")

    def _leave_room(self, conn: Connection, board_id: str) -> None:
        conn.boards.pop(board_id, None)
        room = self._rooms.get(board_id)
        if room is None or conn not in room.conns:
            return
        del room.conns[conn]
        room.members = None
        if conn.identity is not None:
            sub = conn.identity.sub
            mine = room.players.get(sub)
            if mine is not None:
                mine.remove(conn)
                if not mine:
                    del room.players[sub]
                    room.known.pop(sub, None)
        room.subscribers_gauge.set(len(room.conns))
        if not room.conns:
            self._cancel_room_timers(room)
            del self._rooms[board_id]

    @staticmethod
    def _cancel_room_timers(room: Room) -> None:
        for handle in (room.timer, room.rank_timer):
            if handle is not None:
                handle.cancel()
        room.timer = room.rank_timer = None

    # -- BoardListener ---------------------------------------------------------------------

    def score_accepted(self, board_id: str, outcome: Outcome, accepted_at: float) -> None:
        """A committed change: coalesce a score_update, tell the submitter, queue rank checks."""
        try:
            self._score_accepted(board_id, outcome, accepted_at)
        except Exception:
            # The score is already durable: a delivery fault must not turn its answer into a 500.
            log.exception("live delivery of a change on %s failed", board_id)

    def _score_accepted(self, board_id: str, outcome: Outcome, accepted_at: float) -> None:
        room = self._rooms.get(board_id)
        if room is None:
            return
        if outcome.top_changed:
            room.updated_user = {
                "user_id": outcome.user_id,
                "name": outcome.name,
                "score": outcome.score,
                "rank": outcome.rank,
                "previous_rank": outcome.previous_rank,
            }
            if room.window_start is None:
                room.window_start = accepted_at
            if room.timer is None:
                delay = broadcast_delay(
                    last_sent_at=room.last_sent_at, interval=self._interval_s, now=self.clock()
                )
                if delay <= 0:
                    self._broadcast(room)
                else:
                    room.timer = self._call_later(delay, self._broadcast_due, room)
        mine = room.players.get(outcome.user_id)
        if mine:
            room.known[outcome.user_id] = (outcome.rank, outcome.score)
            frame = message(
                "rank_update",
                {
                    "board": board_id,
                    "seq": outcome.seq,
                    "rank": outcome.rank,
                    "previous_rank": outcome.previous_rank,
                    "score": outcome.score,
                },
            )
            self._deliver_rank(mine, board_id, frame)
        moved_from = affected_from(outcome)
        if moved_from < room.rank_from:
            room.rank_from = moved_from
        if room.rank_timer is None and room.known and moved_from != math.inf:
            room.rank_timer = self._call_later(
                self.settings.rank_update_delay, self._rank_check, room
            )

    def board_reset(self, board_id: str) -> None:
        """The board's memory was reloaded: every subscriber gets a fresh snapshot."""
        room = self._rooms.get(board_id)
        if room is None:
            return
        room.known.clear()
        sent = 0
        for conn in room.member_tuple():
            sent += self._send_state(conn, (_STATE, board_id), SNAPSHOT)
        if sent:
            self._count("snapshot", sent)

    def board_deleted(self, board_id: str) -> None:
        """The board is gone: its subscribers are told and unsubscribed."""
        room = self._rooms.get(board_id)
        if room is None:
            return
        for conn in room.member_tuple():
            self._leave_room(conn, board_id)
            self.send_error(conn, "not_found", f"board {board_id!r} was deleted")

    # -- broadcasting ----------------------------------------------------------------------

    def _call_later(self, delay: float, callback: Callable[..., None], *args: Any) -> Any:
        loop = self._loop or asyncio.get_running_loop()
        return loop.call_later(delay, callback, *args)

    def _broadcast_due(self, room: Room) -> None:
        room.timer = None
        if self._rooms.get(room.board_id) is room:
            self._broadcast(room)

    def _broadcast(self, room: Room) -> None:
        """One score_update for the room: serialized and framed once, the same bytes for all."""
        board_id = room.board_id
        state = self.service.boards.get(board_id)
        if state is None:
            return
        ranks = state.ranks
        seq = ranks.seq
        frame = message(
            "score_update",
            {
                "board": board_id,
                "seq": seq,
                "top_10": [e.to_json() for e in ranks.top(TOP_N)],
                "updated_user": room.updated_user,
            },
        )
        key = (_STATE, board_id)
        sent = 0
        open_state = ConnState.OPEN
        for conn in room.member_tuple():
            boards = conn.boards
            if boards.get(board_id, seq) >= seq:
                continue  # its snapshot already holds this state
            boards[board_id] = seq
            if conn.state is open_state:
                if not conn.sink.send_frame(frame):
                    self._backlog(conn)
                sent += 1
            else:
                self._send_state(conn, key, frame)
        now = self.clock()
        if sent:
            self._count("score_update", sent)
        if room.window_start is not None:
            metrics.BROADCAST_LATENCY.observe(now - room.window_start)
        room.window_start = None
        room.last_sent_at = now

    def _deliver_rank(self, conns: list[Connection], board_id: str, frame: bytes) -> None:
        sent = 0
        key = (_RANK, board_id)
        for conn in tuple(conns):
            sent += self._send_state(conn, key, frame)
        if sent:
            self._count("rank_update", sent)

    def _rank_check(self, room: Room) -> None:
        """rank_update to connected players whose rank moved: one look-up per such player."""
        room.rank_timer = None
        state = self.service.boards.get(room.board_id)
        if state is None or self._rooms.get(room.board_id) is not room:
            return
        ranks = state.ranks
        moved_from, room.rank_from = room.rank_from, math.inf
        seq = ranks.seq
        for user_id, (rank, score) in list(room.known.items()):
            if rank < moved_from:
                continue  # above every change since the last check: the rank is unchanged
            entry = ranks.entry(user_id)
            if entry is None or (entry.rank, entry.score) == (rank, score):
                continue
            room.known[user_id] = (entry.rank, entry.score)
            frame = message(
                "rank_update",
                {
                    "board": room.board_id,
                    "seq": seq,
                    "rank": entry.rank,
                    "previous_rank": rank,
                    "score": entry.score,
                },
            )
            self._deliver_rank(room.players.get(user_id, []), room.board_id, frame)

    # -- client messages -------------------------------------------------------------------

    def receive(self, conn: Connection, raw: str | bytes) -> None:
        """One client message: rate limit, parse, dispatch; bad ones get `bad_request`."""
        if conn.state is ConnState.CLOSING or conn.state is ConnState.CLOSED:
            return
        self._received_total += 1
        now = self.clock()
        bucket = conn.bucket
        if bucket is None:
            s = self.settings
            bucket = conn.bucket = TokenBucket(s.ws_message_rate, s.ws_message_burst)
        wait = bucket.take(now)
        if wait > 0:
            self._refuse(conn, now, wait)
            return
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            metrics.WS_RECEIVED_BY_TYPE["invalid"].inc()
            self.send_error(conn, "bad_request", "the message is not JSON")
            return
        kind = body.get("type") if isinstance(body, dict) else None
        handler = self._handlers.get(kind) if isinstance(kind, str) else None
        data = body.get("data", {}) if isinstance(body, dict) else None
        if handler is None or not isinstance(data, dict):
            metrics.WS_RECEIVED_BY_TYPE["invalid"].inc()
            request_id = data.get("request_id") if isinstance(data, dict) else None
            self.send_error(
                conn,
                "bad_request",
                f'expected {{"type": <known type>, "data": {{...}}}}, got type {str(kind)[:40]!r}',
                request_id=request_id,
            )
            return
        metrics.WS_RECEIVED_BY_TYPE[kind].inc()
        try:
            handler(self, conn, data)
        except ScoreboardError as exc:
            self.send_error(conn, exc.code, exc.detail, request_id=data.get("request_id"))

    def _refuse(self, conn: Connection, now: float, wait: float) -> None:
        conn.streak_start = abuse_streak_start(
            streak_start=conn.streak_start,
            last_refused_at=conn.last_refused_at,
            now=now,
            quiet=ABUSE_QUIET_S,
        )
        conn.last_refused_at = now
        if now - conn.streak_start >= self.settings.ws_abuse_close_after:
            self.close(conn, CloseCode.POLICY, "policy", "message rate limit exceeded")
            return
        self.send_error(
            conn,
            "rate_limited",
            f"over {self.settings.ws_message_rate:g} messages/s",
            retry_after=wait,
        )

    def _on_subscribe(self, conn: Connection, data: dict[str, Any]) -> None:
        self._subscribe(conn, data.get("board"), data.get("request_id"))

    def _on_unsubscribe(self, conn: Connection, data: dict[str, Any]) -> None:
        board_id = data.get("board")
        if not isinstance(board_id, str):
            raise BadRequest(f"board must be a string, got {board_id!r}")
        self._leave_room(conn, board_id)

    def _on_ping(self, conn: Connection, data: dict[str, Any]) -> None:
        server_time = format_timestamp(self.wall_clock())
        pong = message("pong", {"t": data.get("t"), "server_time": server_time})
        self._send(conn, pong, "pong")

    def _on_auth(self, conn: Connection, data: dict[str, Any]) -> None:
        if conn.identity is None:
            raise Forbidden("an anonymous connection cannot take a token; reconnect with one")
        token = data.get("token")
        try:
            if not isinstance(token, str):
                raise AuthFailed("token must be a string")
            identity = self.service.tokens.decode(token)
            if identity.sub != conn.identity.sub:
                raise AuthFailed("the token is for another user")
        except ScoreboardError:
            self.send_error(conn, "auth_failed", "Authentication failed")
            self.close(conn, CloseCode.AUTH, "auth", "authentication failed")
            return
        conn.identity = identity
        heapq.heappush(self._expiry, (identity.exp, conn.serial, conn))

    def _on_submit(self, conn: Connection, data: dict[str, Any]) -> None:
        request_id = data.get("request_id")
        if conn.identity is None:
            raise AuthFailed("submitting a score needs a token")
        if not isinstance(request_id, str) or not 1 <= len(request_id) <= 255:
            raise BadRequest(
                f"request_id must be a string of 1-255 characters, got {request_id!r}"[:200]
            )
        board_id = data.get("board")
        if not isinstance(board_id, str):
            raise BadRequest(f"board must be a string, got {board_id!r}"[:200])
        if not self.accepting:
            raise Overloaded("the server is shutting down")
        body = {k: v for k, v in data.items() if k not in ("board", "request_id")}
        loop = self._loop or asyncio.get_running_loop()
        task = loop.create_task(self._submit(conn, conn.identity, board_id, body, request_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _submit(
        self, conn: Connection, identity: Identity, board_id: str, body: dict, request_id: str
    ) -> None:
        try:
            result = await self.service.submit_score(
                identity, board_id, body, idempotency_key=request_id
            )
        except ScoreboardError as exc:
            self.send_error(
                conn, exc.code, exc.detail, request_id=request_id, retry_after=exc.retry_after
            )
            return
        except Exception:
            log.exception("submit_score over WebSocket failed")
            self.send_error(conn, "internal", "Internal error", request_id=request_id)
            return
        self._send(conn, message("ack", {"request_id": request_id, **result}), "ack")

    _handlers: dict[str, Callable[[Hub, Connection, dict[str, Any]], None]] = {
        "subscribe": _on_subscribe,
        "unsubscribe": _on_unsubscribe,
        "submit_score": _on_submit,
        "ping": _on_ping,
        "auth": _on_auth,
    }

    def pong(self, conn: Connection) -> None:
        """A protocol pong arrived."""
        conn.awaiting_pong = False

    # -- timers ----------------------------------------------------------------------------

    def _sweep(self) -> None:
        """Hub-wide timer: stalled writers, expired tokens, one slice of pings, status."""
        loop = self._loop
        assert loop is not None
        self._sweep_handle = loop.call_later(self._period, self._sweep)
        now = self.clock()
        try:
            self._sweep_backlogged(now)
            self._sweep_expired()
            self._sweep_pings()
            self._maybe_status_round(now)
        except Exception:  # one bad connection must not stop the heartbeat of all others
            log.exception("hub sweep failed")
        self._rate_samples.append((now, self._sent_total, self._received_total))

    def _sweep_backlogged(self, now: float) -> None:
        timeout = self.settings.slow_consumer_timeout
        for conn in list(self._backlogged):
            if not conn.sink.unsent_bytes():
                self.drained(conn)
                continue
            flushed = conn.sink.flushed_bytes()
            if flushed != conn.stall_mark:
                conn.stall_mark, conn.stall_since = flushed, now
            elif stalled(mark=conn.stall_since, now=now, timeout=timeout):
                self.close(conn, CloseCode.TRY_AGAIN_LATER, "slow_consumer", "too slow")

    def _sweep_expired(self) -> None:
        now = self.wall_clock()
        expiry = self._expiry
        if len(expiry) > 2 * len(self._conns) + EXPIRY_SLACK:
            # Entries of closed or refreshed connections are skipped lazily; rebuilding once
            # they outnumber the live ones keeps the heap (and what it holds) bounded.
            expiry = self._expiry = [
                (c.identity.exp, c.serial, c) for c in self._conns if c.identity is not None
            ]
            heapq.heapify(expiry)
        while expiry and expiry[0][0] <= now:
            exp, _, conn = heapq.heappop(expiry)
            if conn.identity is None or conn.identity.exp != exp:
                continue  # refreshed since
            if conn.state in (ConnState.OPEN, ConnState.BACKLOGGED):
                self.send_error(conn, "token_expired", "Token expired")
                self.close(conn, CloseCode.AUTH, "auth", "token expired")

    def _sweep_pings(self) -> None:
        self._sweeps += 1
        group = self._slices[self._sweeps % len(self._slices)]
        for conn in list(group):
            if conn.awaiting_pong:
                self.close(conn, CloseCode.GOING_AWAY, "ping_timeout", "ping timeout")
                continue
            conn.awaiting_pong = True
            if conn.state is ConnState.OPEN:
                if not conn.sink.send_frame(PING_FRAME):
                    self._backlog(conn)
            elif conn.state is ConnState.BACKLOGGED:
                conn.sink.send_frame(PING_FRAME)

    def _maybe_status_round(self, now: float) -> None:
        count = self.user_count
        if (
            self._status_handle is not None
            or count == self._status_count
            or now - self._last_status_at < self.settings.status_interval
        ):
            return
        self._last_status_at = now
        self._status_count = count
        self._status_chunk(list(self._conns), 0, count)

    def _status_chunk(self, conns: list[Connection], start: int, count: int) -> None:
        self._status_handle = None
        stop = min(len(conns), start + STATUS_CHUNK)
        for conn in conns[start:stop]:
            self._send(conn, self._status_frame(conn, count), "connection_status")
        if stop < len(conns) and self._loop is not None:
            self._status_handle = self._loop.call_soon(self._status_chunk, conns, stop, count)

    def _probe(self) -> None:
        now = self.clock()
        metrics.EVENT_LOOP_LAG.observe(max(0.0, now - self._probe_due))
        self._probe_due = now + LAG_PROBE_INTERVAL_S
        assert self._loop is not None
        self._probe_handle = self._loop.call_later(LAG_PROBE_INTERVAL_S, self._probe)

    # -- figures ---------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """The live figures of `GET /api/admin/stats`."""
        samples = list(self._rate_samples)
        top = sorted(self._user_conns.items(), key=lambda item: (-item[1], item[0]))[:TOP_USERS]
        return {
            "connections": len(self._conns),
            "users_online": len(self._user_conns),
            "messages_sent_per_s": round(message_rate((t, s) for t, s, _ in samples), 3),
            "messages_received_per_s": round(message_rate((t, r) for t, _, r in samples), 3),
            "boards": [
                {
                    "id": board_id,
                    "players": len(state.ranks),
                    "subscribers": len(room.conns) if (room := self._rooms.get(board_id)) else 0,
                }
                for board_id, state in self.service.boards.items()
            ],
            "top_users_by_connections": [
                {"user_id": user_id, "connections": n} for user_id, n in top
            ],
        }

    def unsent_bytes(self) -> dict[str, int]:
        """Unsent bytes per open connection id (the slow-consumer accounting)."""
        return {conn.id: conn.sink.unsent_bytes() for conn in self._conns}
