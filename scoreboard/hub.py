"""Live delivery (docs/protocol.md): rooms, the coalescing tick, rank checks, heartbeats, token
expiry, connection counts and the graceful close.

The hub owns every live connection (connections.py) and every timer of live delivery. It is told
of committed changes as a `service.BoardListener`, each call handing it the board's standings,
so it never reads a board back and never imports the service; sessions (session.py) call it to
open, subscribe and answer. It keeps a read-only view of the boards for the admin figures only.

Cost model: a `score_update` is serialized and framed once per board per tick (frames.py) and
the same bytes object is handed to every subscriber; the `Outbox` conflates for connections
whose stream still holds bytes. One hub-wide sweep timer does the protocol pings, token expiry
and stall checks for all connections; a board has a timer only while it has a merged change
waiting or a rank check due.

In cluster mode the hub is given a `ClusterFigures` (cluster/presence.py) and adds what it says
about the other processes to its own live figures (`user_count`, `online`, `stats`); the hub
itself never touches Redis.

Why one module of about 850 lines: rooms, heartbeats, expiry and the connection counts all read
and change the same connection tables (`_conns`, the ping slices, the expiry heap, the rooms)
from one sweep timer, and a connection leaves all of them at once in `_forget`. Split by noun,
those tables would have two owners and the close path two halves; what could go is gone
(frames.py, pacing.py, connections.py, session.py). The figures (`stats`, `online`,
`presence_here`, about 100 lines that only read those tables) are the next piece that could
leave.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from . import frames, metrics
from .auth import Identity
from .config import Settings
from .connections import RANK, SNAPSHOT, STATE, Connection, ConnState, Outbox, Sink
from .errors import Overloaded, RateLimited, ScoreboardError
from .frames import PING_FRAME, CloseCode
from .pacing import (
    broadcast_delay,
    close_delay,
    kernel_check_slices,
    message_rate,
    ping_slices,
    sweep_period,
)
from .ranking import TOP_N, Leaderboard, Outcome, Removal, format_timestamp

log = logging.getLogger(__name__)

# How often the event-loop lag probe runs: 40 samples a second, so a 10 s run has 400 and its
# p99 is not its maximum; one probe costs a few µs (about 0.02 % of a core at this rate).
LAG_PROBE_INTERVAL_S = 0.025
# A broadcast hands its frame to this many sockets, then yields to the loop (call_soon) so that
# posts, acks and pings wait behind one slice (about 3 ms at 6 µs a socket), not the room.
BROADCAST_SLICE = 500
MIN_BROADCAST_WINDOW_S = 0.005  # the floor of the adaptive coalescing window
# Per-connection connection_status frames are built in chunks of this many connections per
# loop turn, so that a status round over 20,000 connections never stalls the loop for long.
STATUS_CHUNK = 500
# After the last 1001 of a shutdown, clients get this long to answer the close handshake.
CLOSE_HANDSHAKE_GRACE_S = 1.0
SHUTDOWN_STEP_S = 0.01  # closes due within the same 10 ms go out together
EXPIRY_SLACK = 1024  # stale expiry entries tolerated before the heap is rebuilt
RATE_SAMPLES = 6  # messages/s of the admin stats: over the last ~5 sweeps
TOP_USERS = 10  # users listed in the admin stats' top_users_by_connections


class BoardView(Protocol):
    """What the hub may read of a board: its standings (never changes them)."""

    @property
    def ranks(self) -> Leaderboard: ...


class ClusterFigures(Protocol):
    """The other processes of a cluster, as last heard of; merged with this hub's own figures,
    which are always live."""

    def viewers_elsewhere(self) -> int:
        """Signed-in users online on other processes and not here, plus their anonymous
        connections: what `user_count` adds to this process's own count. Must be O(1)."""
        ...

    def online(self, here: dict[str, Any]) -> dict[str, Any]:
        """`GET /api/admin/online` of the cluster, from `Hub.presence_here()` and the others'."""
        ...

    def stats(self, stats_here: dict[str, Any], here: dict[str, Any]) -> dict[str, Any]:
        """`GET /api/admin/stats` of the cluster: `Hub.stats_here()` (whose boards' `players`
        are the cluster's), with `Hub.presence_here()` and the others' figures."""
        ...


def affected_from(outcome: Outcome) -> float:
    """The best rank whose holder a submission may have moved (inf when it moved nobody).

    Players ranked above every such position kept their rank; only the rest need a look-up.
    """
    if outcome.previous_rank is None:
        return outcome.rank  # a new entry pushes everyone at or below it down one
    if outcome.previous_rank == outcome.rank:
        return math.inf
    return min(outcome.rank, outcome.previous_rank)


class Fanout:
    """A broadcast going out in slices: one frame, and the members still to be handed it.

    A newer broadcast of the room that starts before the slices are done takes over this
    object: it puts its own (newer) frame in, and the pass goes on from the same position
    round the whole room again, so every member gets the newest frame, the members not yet
    served are not pushed back to the end, and the per-connection seq check skips anyone a
    snapshot already brought up to date.
    """

    __slots__ = ("cpu", "frame", "handle", "left", "members", "oldest", "position", "seq")

    def __init__(self) -> None:
        self.frame = b""
        self.seq = 0
        self.members: tuple[Connection, ...] = ()
        self.position = 0  # index into members of the next connection
        self.left = 0  # connections of this pass still to visit
        self.oldest: float | None = None  # accepted_at of the oldest change in the frame
        self.cpu = 0.0  # CPU seconds spent on this pass so far
        self.handle: asyncio.Handle | None = None  # the next slice


class Room:
    """The subscribers of one board and its coalescing and rank-update state."""

    __slots__ = (
        "board_id",
        "conns",
        "fanout",
        "known",
        "last_cpu",
        "last_started_at",
        "members",
        "players",
        "rank_from",
        "rank_timer",
        "ranks",
        "subscribers_gauge",
        "timer",
        "updated_user",
        "window_start",
    )

    def __init__(self, board_id: str, ranks: Leaderboard) -> None:
        self.board_id = board_id
        self.ranks = ranks  # the board's standings, as last handed to the hub
        self.conns: dict[Connection, None] = {}
        self.members: tuple[Connection, ...] | None = ()  # cached for iteration; None = stale
        self.players: dict[str, list[Connection]] = {}  # signed-in subscribers by user
        self.known: dict[str, tuple[int, int]] = {}  # user -> (rank, score) they were told
        self.last_started_at = -math.inf  # when the last broadcast started (monotonic)
        self.last_cpu = 0.0  # CPU seconds the last whole broadcast took, over all its slices
        self.fanout: Fanout | None = None  # the broadcast still going out in slices, if any
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


class Hub:
    """Owns every live connection, room and timer of the process."""

    def __init__(
        self,
        settings: Settings,
        boards: Mapping[str, BoardView],
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.boards = boards  # read-only: for the admin figures
        self.clock = clock
        self.wall_clock = wall_clock
        self.accepting = True
        self.outbox = Outbox(
            max_unsent_bytes=settings.max_unsent_bytes,
            slow_consumer_timeout=settings.slow_consumer_timeout,
            clock=clock,
            fresh_snapshot=self._snapshot_frame,
            close_slow=self._close_slow,
        )
        self._interval_s = settings.broadcast_interval_ms / 1000
        self._period = sweep_period(
            ping_interval=settings.ping_interval,
            slow_consumer_timeout=settings.slow_consumer_timeout,
        )
        self._slices: list[dict[Connection, None]] = [
            {}
            for _ in range(ping_slices(ping_interval=settings.ping_interval, period=self._period))
        ]
        # Kernel send-queue checks (Outbox.check_kernel) take one slice per sweep.
        self._kernel_slices: list[dict[Connection, None]] = [
            {}
            for _ in range(
                kernel_check_slices(
                    slow_consumer_timeout=settings.slow_consumer_timeout, period=self._period
                )
            )
        ]
        self._conns: dict[Connection, None] = {}  # insertion order: the shutdown close order
        self._user_conns: dict[str, int] = {}
        self._user_names: dict[str, str] = {}  # display name of each user online (the newest)
        self._anonymous = 0
        self._rooms: dict[str, Room] = {}
        self._closing: set[Connection] = set()  # closed by the hub, socket not gone yet
        self._expiry: list[tuple[float, int, Connection]] = []
        self._serials = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweep_handle: asyncio.TimerHandle | None = None
        self._probe_handle: asyncio.TimerHandle | None = None
        self._probe_due = 0.0
        self._sweeps = 0
        self._last_status_at = -math.inf
        self._status_count = 0  # user_count of the last status round
        self._status_handle: asyncio.Handle | None = None
        self._received_total = 0
        self._rate_samples: deque[tuple[float, int, int]] = deque(maxlen=RATE_SAMPLES)
        # Cluster mode: the other processes' figures (set by the composition root).
        self.cluster: ClusterFigures | None = None

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
        """Cancel every timer of the hub (the sockets are left as they are)."""
        for handle in (self._sweep_handle, self._probe_handle, self._status_handle):
            if handle is not None:
                handle.cancel()
        self._sweep_handle = self._probe_handle = self._status_handle = None
        for room in self._rooms.values():
            self._cancel_room_timers(room)

    async def close_all(self) -> None:
        """Refuse new connections and close every one with 1001, spread over time."""
        self.accepting = False
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
        """Signed-in users online plus anonymous connections (each counts as one viewer),
        over the whole cluster in cluster mode."""
        here = len(self._user_conns) + self._anonymous
        cluster = self.cluster
        return here if cluster is None else here + cluster.viewers_elsewhere()

    @property
    def connection_count(self) -> int:
        return len(self._conns)

    def open(self, sink: Sink, identity: Identity | None, *, reconnect: bool = False) -> Connection:
        """Register an upgraded connection and send it its connection_status."""
        serial = next(self._serials)
        conn = Connection(serial, identity, sink)
        self._conns[conn] = None
        self._slices[serial % len(self._slices)][conn] = None
        self._kernel_slices[serial % len(self._kernel_slices)][conn] = None
        if identity is not None:
            self._user_conns[identity.sub] = self._user_conns.get(identity.sub, 0) + 1
            self._user_names[identity.sub] = identity.name or identity.sub
            heapq.heappush(self._expiry, (identity.exp, serial, conn))
        else:
            self._anonymous += 1
        metrics.WS_CONNECTIONS.inc()
        metrics.WS_CONNECTIONS_OPENED.inc()
        if reconnect:
            metrics.WS_RECONNECTS.inc()
        self.outbox.send(conn, self._status_frame(conn, self.user_count), "connection_status")
        return conn

    def refresh_identity(self, conn: Connection, identity: Identity) -> None:
        """The connection's user sent a new token (same `sub`): a new expiry."""
        conn.identity = identity
        self._user_names[identity.sub] = identity.name or identity.sub
        heapq.heappush(self._expiry, (identity.exp, conn.serial, conn))

    def pong(self, conn: Connection) -> None:
        """A protocol pong arrived."""
        conn.awaiting_pong = False

    def drained(self, conn: Connection) -> None:
        """The sink's queue emptied: write the pending frames, newest state per board."""
        self.outbox.drained(conn)

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
        if not conn.live:
            return
        self._forget(conn, reason)
        conn.state = ConnState.CLOSING
        self._closing.add(conn)
        conn.sink.close(code, text)
        if reason == "ping_timeout":
            # The peer is presumed gone: no closing handshake to wait for. The close frame
            # already reached the kernel unless bytes were queued, and is then lost with them.
            conn.sink.abort()

    def _close_slow(self, conn: Connection) -> None:
        self.close(conn, CloseCode.TRY_AGAIN_LATER, "slow_consumer", "too slow")

    def _forget(self, conn: Connection, reason: str) -> None:
        """Take a connection out of every room and count; it gets nothing more."""
        self._conns.pop(conn, None)
        self._slices[conn.serial % len(self._slices)].pop(conn, None)
        self._kernel_slices[conn.serial % len(self._kernel_slices)].pop(conn, None)
        self.outbox.forget(conn)
        for board_id in list(conn.boards):
            self.unsubscribe(conn, board_id)
        if conn.identity is not None:
            sub = conn.identity.sub
            left = self._user_conns.get(sub, 1) - 1
            if left > 0:
                self._user_conns[sub] = left
            else:
                self._user_conns.pop(sub, None)
                self._user_names.pop(sub, None)
        else:
            self._anonymous -= 1
        metrics.WS_CONNECTIONS.dec()
        metrics.WS_CLOSED_BY_REASON[reason].inc()

    # -- replies ---------------------------------------------------------------------------

    def count_received(self) -> None:
        """A client message arrived (for the admin stats' messages/s)."""
        self._received_total += 1

    def send_reply(self, conn: Connection, frame: bytes, kind: str) -> None:
        """Send a frame that is never conflated (ack, pong, error, status)."""
        self.outbox.send(conn, frame, kind)

    def send_error(
        self,
        conn: Connection,
        code: str,
        text: str,
        *,
        request_id: Any = None,
        retry_after: float | None = None,
    ) -> None:
        """Send an `error` frame and count its code."""
        metrics.ERRORS.labels(code).inc()
        frame = frames.error(code, text, request_id=request_id, retry_after=retry_after)
        self.outbox.send(conn, frame, "error")

    def _status_frame(self, conn: Connection, user_count: int) -> bytes:
        return frames.connection_status(
            connection_id=conn.id,
            user_count=user_count,
            identity=conn.identity,
            server_time=format_timestamp(self.wall_clock()),
        )

    def _snapshot_frame(self, conn: Connection, board_id: str) -> bytes:
        room = self._rooms[board_id]
        ranks = room.ranks
        you = ranks.entry(conn.identity.sub) if conn.identity is not None else None
        conn.boards[board_id] = ranks.seq
        if you is not None:
            # Another connection of this user may not have heard of its latest move yet:
            # keep what it was told, so the next rank check still reaches it.
            room.known.setdefault(you.user_id, (you.rank, you.score))
        return frames.snapshot(board_id, ranks, you)

    # -- rooms -----------------------------------------------------------------------------

    def subscribe(self, conn: Connection, board_id: str, ranks: Leaderboard) -> None:
        """Join the board's room (a no-op when in it) and send a snapshot of `ranks`."""
        room = self._rooms.get(board_id)
        if room is None:
            room = self._rooms[board_id] = Room(board_id, ranks)
        room.ranks = ranks
        if conn not in room.conns:
            room.conns[conn] = None
            room.members = None
            if conn.identity is not None:
                room.players.setdefault(conn.identity.sub, []).append(conn)
            room.subscribers_gauge.set(len(room.conns))
            conn.boards[board_id] = -1
        if self.outbox.send_state(conn, (STATE, board_id), SNAPSHOT):
            self.outbox.count("snapshot")

    def unsubscribe(self, conn: Connection, board_id: str) -> None:
        """Leave the board's room; not being in it is not an error."""
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
        fanout_handle = room.fanout.handle if room.fanout is not None else None
        for handle in (room.timer, room.rank_timer, fanout_handle):
            if handle is not None:
                handle.cancel()
        room.timer = room.rank_timer = room.fanout = None

    # -- BoardListener ---------------------------------------------------------------------

    def score_accepted(
        self, board_id: str, ranks: Leaderboard, outcome: Outcome, accepted_at: float
    ) -> None:
        """A committed change: coalesce a score_update, tell the submitter, queue rank checks."""
        try:
            self._score_accepted(board_id, ranks, outcome, accepted_at)
        except Exception:
            # The score is already durable: a delivery fault must not turn its answer into a 500.
            log.exception("live delivery of a change on %s failed", board_id)

    def _score_accepted(
        self, board_id: str, ranks: Leaderboard, outcome: Outcome, accepted_at: float
    ) -> None:
        room = self._rooms.get(board_id)
        if room is None:
            return
        room.ranks = ranks
        if outcome.top_changed:
            self._top_changed(room, frames.updated_user(outcome), accepted_at)
        mine = room.players.get(outcome.user_id)
        if mine:
            room.known[outcome.user_id] = (outcome.rank, outcome.score)
            frame = frames.rank_update(
                board_id,
                seq=outcome.seq,
                rank=outcome.rank,
                previous_rank=outcome.previous_rank,
                score=outcome.score,
            )
            self._deliver_rank(mine, board_id, frame)
        self._ranks_moved(room, affected_from(outcome))

    def _top_changed(self, room: Room, updated_user: dict[str, Any], accepted_at: float) -> None:
        """Coalesce a score_update: at once after a quiet period, else when the adaptive window
        counted from the last broadcast's start ends (pacing.broadcast_delay)."""
        room.updated_user = updated_user
        if room.window_start is None:
            room.window_start = accepted_at
        if room.timer is None:
            fanout = room.fanout
            delay = broadcast_delay(
                last_started_at=room.last_started_at,
                # A pass still going out has cost at least what it spent so far.
                last_cpu=max(room.last_cpu, fanout.cpu) if fanout else room.last_cpu,
                floor=MIN_BROADCAST_WINDOW_S,
                ceiling=self._interval_s,
                now=self.clock(),
            )
            if delay <= 0:
                self._broadcast(room)
            else:
                room.timer = self._call_later(delay, self._broadcast_due, room)

    def _ranks_moved(self, room: Room, moved_from: float) -> None:
        """Queue a rank check of the connected players ranked at or below `moved_from`."""
        if moved_from < room.rank_from:
            room.rank_from = moved_from
        if room.rank_timer is None and room.known and moved_from != math.inf:
            room.rank_timer = self._call_later(
                self.settings.rank_update_delay, self._rank_check, room
            )

    def player_removed(self, board_id: str, ranks: Leaderboard, removal: Removal) -> None:
        """An entry was removed: the top 10 if it was in it, `rank: null` to its owner, and
        a rank check for the players below, who each moved up one."""
        room = self._rooms.get(board_id)
        if room is None:
            return
        room.ranks = ranks
        if removal.previous_rank <= TOP_N:
            self._top_changed(room, frames.removed_user(removal), self.clock())
        room.known.pop(removal.user_id, None)
        mine = room.players.get(removal.user_id)
        if mine:
            frame = frames.rank_update(
                board_id,
                seq=removal.seq,
                rank=None,
                previous_rank=removal.previous_rank,
                score=None,
            )
            self._deliver_rank(mine, board_id, frame)
        self._ranks_moved(room, removal.previous_rank)

    def board_reset(self, board_id: str, ranks: Leaderboard) -> None:
        """The board's memory was reloaded: every subscriber gets a fresh snapshot."""
        room = self._rooms.get(board_id)
        if room is None:
            return
        room.ranks = ranks
        room.known.clear()
        sent = 0
        for conn in room.member_tuple():
            sent += self.outbox.send_state(conn, (STATE, board_id), SNAPSHOT)
        if sent:
            self.outbox.count("snapshot", sent)

    def board_deleted(self, board_id: str) -> None:
        """The board is gone: its subscribers are told and unsubscribed."""
        room = self._rooms.get(board_id)
        if room is None:
            return
        for conn in room.member_tuple():
            self.unsubscribe(conn, board_id)
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
        """Start one score_update for the room: serialized and framed once, the same bytes for
        all, handed out BROADCAST_SLICE sockets per loop turn."""
        fanout = room.fanout
        if fanout is None:
            fanout = room.fanout = Fanout()
        elif fanout.handle is not None:
            fanout.handle.cancel()  # this broadcast takes the pass over (see Fanout)
        ranks = room.ranks
        fanout.frame = frames.score_update(room.board_id, ranks, room.updated_user)
        fanout.seq = ranks.seq
        fanout.members = members = room.member_tuple()
        fanout.position %= len(members) or 1
        fanout.left = len(members)
        if room.window_start is not None and (
            fanout.oldest is None or room.window_start < fanout.oldest
        ):
            fanout.oldest = room.window_start
        room.window_start = None
        room.last_started_at = self.clock()
        self._send_slice(room, fanout)

    def _send_slice(self, room: Room, fanout: Fanout) -> None:
        """Hand the frame to the next BROADCAST_SLICE members; schedule the rest."""
        cpu_start = time.thread_time()
        fanout.handle = None
        board_id = room.board_id
        frame, seq, members = fanout.frame, fanout.seq, fanout.members
        count = len(members)
        outbox = self.outbox
        key = (STATE, board_id)
        open_state = ConnState.OPEN
        sent = 0
        position = fanout.position
        todo = min(BROADCAST_SLICE, fanout.left)
        for _ in range(todo):
            conn = members[position]
            position += 1
            if position == count:
                position = 0
            boards = conn.boards
            if boards.get(board_id, seq) >= seq:
                continue  # unsubscribed, or a snapshot or newer frame already holds this state
            boards[board_id] = seq
            if conn.state is open_state:
                if not conn.sink.send_frame(frame):
                    outbox.backlog(conn)
                sent += 1
            else:
                outbox.send_state(conn, key, frame)
        fanout.position = position
        fanout.left -= todo
        if sent:
            outbox.count("score_update", sent)
        fanout.cpu += time.thread_time() - cpu_start
        if fanout.left:
            loop = self._loop or asyncio.get_running_loop()
            fanout.handle = loop.call_soon(self._send_slice, room, fanout)
            return
        # The pass is done: every member has the newest frame.
        if fanout.oldest is not None:
            metrics.BROADCAST_LATENCY.observe(self.clock() - fanout.oldest)
        room.last_cpu = fanout.cpu
        room.fanout = None

    def _deliver_rank(self, conns: list[Connection], board_id: str, frame: bytes) -> None:
        sent = 0
        key = (RANK, board_id)
        for conn in tuple(conns):
            sent += self.outbox.send_state(conn, key, frame)
        if sent:
            self.outbox.count("rank_update", sent)

    def _rank_check(self, room: Room) -> None:
        """rank_update to connected players whose rank moved: one look-up per such player."""
        room.rank_timer = None
        if self._rooms.get(room.board_id) is not room:
            return
        ranks = room.ranks
        moved_from, room.rank_from = room.rank_from, math.inf
        seq = ranks.seq
        for user_id, (rank, score) in list(room.known.items()):
            if rank < moved_from:
                continue  # above every change since the last check: the rank is unchanged
            entry = ranks.entry(user_id)
            if entry is None or (entry.rank, entry.score) == (rank, score):
                continue
            room.known[user_id] = (entry.rank, entry.score)
            frame = frames.rank_update(
                room.board_id, seq=seq, rank=entry.rank, previous_rank=rank, score=entry.score
            )
            self._deliver_rank(room.players.get(user_id, []), room.board_id, frame)

    # -- timers ----------------------------------------------------------------------------

    def _sweep(self) -> None:
        """Hub-wide timer: stalled writers, expired tokens, one slice of pings, status."""
        loop = self._loop
        assert loop is not None
        self._sweep_handle = loop.call_later(self._period, self._sweep)
        now = self.clock()
        try:
            self.outbox.sweep(now)
            self._sweep_kernel(now)
            self._sweep_expired()
            self._sweep_pings()
            self._maybe_status_round(now)
        except Exception:  # one bad connection must not stop the heartbeat of all others
            log.exception("hub sweep failed")
        self._rate_samples.append((now, self.outbox.sent_total, self._received_total))

    def _sweep_kernel(self, now: float) -> None:
        group = self._kernel_slices[self._sweeps % len(self._kernel_slices)]
        check = self.outbox.check_kernel
        for conn in list(group):
            check(conn, now)

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
            if conn.live:
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
                    self.outbox.backlog(conn)
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
            self.outbox.send(conn, self._status_frame(conn, count), "connection_status")
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
        """The live figures of `GET /api/admin/stats`: the cluster's in cluster mode."""
        here = self.stats_here()
        cluster = self.cluster
        return here if cluster is None else cluster.stats(here, self.presence_here())

    def online(self) -> dict[str, Any]:
        """`GET /api/admin/online`: who is connected, to the whole cluster in cluster mode."""
        cluster = self.cluster
        return self.online_here() if cluster is None else cluster.online(self.presence_here())

    def presence_here(self) -> dict[str, Any]:
        """This process's figures as the other processes of a cluster read them.

        Copied from the hub's own tables, never by walking the connections: it is built every
        few seconds, and at 20,000 connections a walk costs tens of milliseconds of loop.
        `users`: connections by signed-in user; `names`: their display names; `boards`: the
        signed-in subscribers of each board; `subscribers`: connections per board.
        """
        samples = list(self._rate_samples)
        return {
            "users": dict(self._user_conns),
            "names": dict(self._user_names),
            "anonymous": self._anonymous,
            "connections": len(self._conns),
            "sent_per_s": message_rate((t, s) for t, s, _ in samples),
            "received_per_s": message_rate((t, r) for t, _, r in samples),
            "boards": {board_id: list(room.players) for board_id, room in self._rooms.items()},
            "subscribers": {board_id: len(room.conns) for board_id, room in self._rooms.items()},
        }

    def stats_here(self) -> dict[str, Any]:
        """This process's own live figures, in the shape of `GET /api/admin/stats`."""
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
                    "players": len(board.ranks),
                    "subscribers": len(room.conns) if (room := self._rooms.get(board_id)) else 0,
                }
                for board_id, board in self.boards.items()
            ],
            "top_users_by_connections": [
                {"user_id": user_id, "connections": n} for user_id, n in top
            ],
        }

    def online_here(self) -> dict[str, Any]:
        """Who is connected to this process: each signed-in user's connections and boards,
        most connected first; anonymous viewers as one count."""
        users: dict[str, dict[str, Any]] = {}
        for conn in self._conns:
            identity = conn.identity
            if identity is None:
                continue
            user = users.get(identity.sub)
            if user is None:
                user = users[identity.sub] = {
                    "user_id": identity.sub,
                    "name": identity.name or identity.sub,
                    "connections": 0,
                    "boards": set(),
                }
            user["connections"] += 1
            user["boards"].update(conn.boards)
        listed = sorted(users.values(), key=lambda u: (-u["connections"], u["user_id"]))
        for user in listed:
            user["boards"] = sorted(user["boards"])
        return {"users": listed, "anonymous": self._anonymous}

    def unsent_bytes(self) -> dict[str, int]:
        """Unsent bytes per open connection id (the slow-consumer accounting)."""
        return {conn.id: conn.sink.unsent_bytes() for conn in self._conns}
