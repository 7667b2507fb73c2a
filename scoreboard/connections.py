"""One live connection as the hub sees it, and the outbox that writes to it.

A `Connection` is small on purpose (there are tens of thousands). It knows its socket only
through the `Sink` interface: hand over bytes of whole WebSocket frames, say how many bytes
still wait, close. The `Outbox` decides how a frame reaches a connection: straight to the sink
while its stream is idle; while bytes wait there (BACKLOGGED), state frames are conflated to the
newest per board and key, replies still queue, and a connection whose unsent bytes pass the
bound or that makes no progress for `slow_consumer_timeout` is handed to `close_slow` (1013).

The stream's buffer is only half of a backlog: a peer that stops reading first fills the
kernel's socket buffers, which can hold megabytes before a `send` ever comes up short. The
hub's sweep therefore also samples the kernel's unsent bytes (`SIOCOUTQ`) of each connection a
few times per timeout (`check_kernel`): a kernel queue that never shrinks, or that with the
stream's bytes passes the bound, is a slow consumer too.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from enum import Enum
from typing import Protocol

from . import metrics
from .auth import Identity
from .pacing import stalled

PROCESS_TAG = secrets.token_hex(3)  # makes connection ids unique across restarts


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

        Once it returned False, the sink's owner calls `Hub.drained(conn)` when its queue
        empties.
        """
        ...

    def unsent_bytes(self) -> int:
        """Bytes accepted by `send_frame` and not yet handed to the kernel."""
        ...

    def flushed_bytes(self) -> int:
        """A counter that grows whenever queued bytes reach the kernel (progress)."""
        ...

    def kernel_unsent_bytes(self) -> int:
        """Bytes the kernel holds for the peer and has not had acknowledged (SIOCOUTQ)."""
        ...

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Start the closing handshake with `code`."""
        ...

    def abort(self) -> None:
        """Drop the TCP connection at once (the peer is gone or hostile)."""
        ...


class _Snapshot:
    """Marker in a pending queue: build a fresh snapshot when the stream drains."""

    __slots__ = ()


SNAPSHOT = _Snapshot()
STATE = 0  # pending key kinds: the board's state (snapshot / score_update) ...
RANK = 1  # ... and the user's own rank_update
PendingKey = tuple[int, str]  # (STATE or RANK, board id)


class Connection:
    """One live WebSocket as the hub sees it; small on purpose (there are tens of thousands)."""

    __slots__ = (
        "awaiting_pong",
        "boards",
        "identity",
        "kernel_queued",
        "kernel_since",
        "pending",
        "serial",
        "sink",
        "stall_mark",
        "stall_since",
        "state",
    )

    def __init__(self, serial: int, identity: Identity | None, sink: Sink) -> None:
        self.serial = serial
        self.identity = identity
        self.sink = sink
        self.state = ConnState.OPEN
        self.boards: dict[str, int] = {}  # subscribed board -> seq of the last state frame
        self.pending: dict[PendingKey, bytes | _Snapshot] | None = None
        self.awaiting_pong = False
        self.stall_mark = 0
        self.stall_since = 0.0
        self.kernel_queued = 0  # the kernel's unsent bytes at the last check
        self.kernel_since = 0.0  # when that queue last shrank or emptied

    @property
    def id(self) -> str:
        """The connection_id: unique across restarts, built on demand (not stored per socket)."""
        return f"{PROCESS_TAG}-{self.serial:x}"

    @property
    def live(self) -> bool:
        """True until the hub closed it or the socket went."""
        return self.state is ConnState.OPEN or self.state is ConnState.BACKLOGGED


class Outbox:
    """Writes frames to connections: at once while a stream is idle, conflated while not."""

    def __init__(
        self,
        *,
        max_unsent_bytes: int,
        slow_consumer_timeout: float,
        clock: Callable[[], float],
        fresh_snapshot: Callable[[Connection, str], bytes],
        close_slow: Callable[[Connection], None],
    ) -> None:
        self._max_unsent_bytes = max_unsent_bytes
        self._slow_consumer_timeout = slow_consumer_timeout
        self._clock = clock
        self._fresh_snapshot = fresh_snapshot
        self._close_slow = close_slow
        self.backlogged: set[Connection] = set()
        self.sent_total = 0  # frames handed over, for the admin stats' messages/s

    def count(self, kind: str, n: int = 1) -> None:
        """Count `n` frames of `kind` as sent; once per broadcast, not once per socket."""
        metrics.WS_SENT_BY_TYPE[kind].inc(n)
        self.sent_total += n

    def send(self, conn: Connection, frame: bytes, kind: str) -> None:
        """Send a frame that must not be conflated (status, ack, pong, error)."""
        state = conn.state
        if state is ConnState.OPEN:
            if not conn.sink.send_frame(frame):
                self.backlog(conn)
        elif state is ConnState.BACKLOGGED:
            conn.sink.send_frame(frame)
            self.check_unsent(conn)
        else:
            return
        self.count(kind)

    def send_state(self, conn: Connection, key: PendingKey, frame: bytes | _Snapshot) -> bool:
        """Send a state frame, or keep it as the newest pending one of its key; True if sent."""
        if conn.state is ConnState.OPEN:
            if isinstance(frame, _Snapshot):
                frame = self._fresh_snapshot(conn, key[1])
            if not conn.sink.send_frame(frame):
                self.backlog(conn)
            return True
        if conn.state is ConnState.BACKLOGGED:
            pending = conn.pending
            if pending is None:
                pending = conn.pending = {}
            # A pending snapshot stays: it is built at drain time and so holds every later state.
            if not isinstance(pending.get(key), _Snapshot):
                pending[key] = frame
        return False

    def backlog(self, conn: Connection) -> None:
        """The sink queued bytes: conflate from now on, and start the stall clock."""
        conn.state = ConnState.BACKLOGGED
        self.backlogged.add(conn)
        conn.stall_mark = conn.sink.flushed_bytes()
        conn.stall_since = self._clock()
        self.check_unsent(conn)

    def check_unsent(self, conn: Connection) -> None:
        if conn.sink.unsent_bytes() > self._max_unsent_bytes:
            self._close_slow(conn)

    def forget(self, conn: Connection) -> None:
        """The connection gets nothing more: drop what waits for it."""
        self.backlogged.discard(conn)
        conn.pending = None

    def drained(self, conn: Connection) -> None:
        """The sink's queue emptied: write the pending frames, newest state per board."""
        if conn.state is not ConnState.BACKLOGGED or conn.sink.unsent_bytes():
            return
        pending, conn.pending = conn.pending, None
        conn.state = ConnState.OPEN
        self.backlogged.discard(conn)
        if not pending:
            return
        frames = []
        for (kind, board_id), frame in pending.items():
            if board_id not in conn.boards:
                continue
            if isinstance(frame, _Snapshot):
                frame = self._fresh_snapshot(conn, board_id)
                self.count("snapshot")
            else:
                self.count("score_update" if kind == STATE else "rank_update")
            frames.append(frame)
        if frames and not conn.sink.send_frame(b"".join(frames)):
            self.backlog(conn)

    def check_kernel(self, conn: Connection, now: float) -> None:
        """Close a connection whose kernel send queue has not shrunk for the timeout, or that
        holds more than the bound in kernel and stream together (one ioctl; sweep only)."""
        if not conn.live:
            return
        queued = conn.sink.kernel_unsent_bytes()
        if queued == 0 or queued < conn.kernel_queued or conn.kernel_queued == 0:
            # Empty, or the peer read something since the last look: progress.
            conn.kernel_queued, conn.kernel_since = queued, now
            return
        conn.kernel_queued = queued
        if queued + conn.sink.unsent_bytes() > self._max_unsent_bytes or stalled(
            mark=conn.kernel_since, now=now, timeout=self._slow_consumer_timeout
        ):
            self._close_slow(conn)

    def sweep(self, now: float) -> None:
        """Drain what emptied, close what made no progress for the slow-consumer timeout."""
        for conn in list(self.backlogged):
            if not conn.sink.unsent_bytes():
                self.drained(conn)
                continue
            flushed = conn.sink.flushed_bytes()
            if flushed != conn.stall_mark:
                conn.stall_mark, conn.stall_since = flushed, now
            elif stalled(mark=conn.stall_since, now=now, timeout=self._slow_consumer_timeout):
                self._close_slow(conn)
