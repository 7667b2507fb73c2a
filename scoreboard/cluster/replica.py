"""In which order a process applies a board's change records: each seq once, in seq order.

Processes commit a board's changes concurrently, so records arrive out of order as a matter of
course: another process may publish seq N+1 before this process's own N reaches its replica.
Per board, this keeps the seq the replica holds and:
- hands over a record whose seq is the next one at once, with any held successors it unblocks;
- drops one at or below the replica's seq (a duplicate, or this process's own echo);
- holds one further ahead until the gap fills, and when the gap stays open longer than
  `gap_wait_s` (the record went missing: Redis dropped it, or was away) names the board in
  `overdue()`, so the caller reads it back from the database.
While a board is being read back (or all boards, at start-up and after Redis came back), every
record for it is held; `loaded()` then drops what the read already holds and hands over the
rest in order.

Pure: no I/O, no timers; the clock is injected and the caller polls `overdue()`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .changes import RemovalChange, ResetChange, ScoreChange

#: The records that carry a board seq and go through the ordering.
Sequenced = ScoreChange | ResetChange | RemovalChange

GAP_WAIT_S = 0.5  # how long a missing seq may stay missing before the board is read back


@dataclass(slots=True)
class _BoardOrder:
    seq: int | None  # the seq the replica holds; None: the board was never loaded here
    held: dict[int, Sequenced] = field(default_factory=dict)
    gap_since: float | None = None  # when the oldest open gap was noticed
    reading: bool = False  # a read-back is under way: hold everything until loaded()


class Replica:
    """The apply order of every board's change records (see the module docstring)."""

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, gap_wait_s: float = GAP_WAIT_S
    ) -> None:
        self._clock = clock
        self._gap_wait_s = gap_wait_s
        self._boards: dict[str, _BoardOrder] = {}
        self._holding_all = False

    def applied(self, board_id: str) -> int | None:
        """The seq the replica holds for the board (None: not loaded here)."""
        board = self._boards.get(board_id)
        return None if board is None else board.seq

    def hold_all(self) -> None:
        """Every board is about to be (re)read (start-up, resync): hold each board's records
        until its `loaded()`, and report no gaps until `release_all()`."""
        self._holding_all = True
        for board in self._boards.values():
            board.reading = True

    def release_all(self) -> None:
        """End `hold_all`: records of boards not (re)loaded start waiting for their gaps."""
        self._holding_all = False
        now = self._clock()
        for board in self._boards.values():
            board.reading = False
            board.gap_since = now if board.held else None

    def reading(self, board_id: str) -> None:
        """A read-back of the board starts: hold its records until `loaded()`."""
        self._board(board_id).reading = True

    def loaded(self, board_id: str, seq: int) -> list[Sequenced]:
        """The board was read at `seq`: the held records to apply on top of it, in order."""
        board = self._board(board_id)
        board.reading = False
        board.seq = seq if board.seq is None else max(board.seq, seq)
        return self._drain(board)

    def forget(self, board_id: str) -> None:
        """The board is gone: drop its order and anything held for it."""
        self._boards.pop(board_id, None)

    def offer(self, change: Sequenced) -> list[Sequenced]:
        """A record arrived: those to apply now, in seq order (often just it, maybe none)."""
        board = self._board(change.board_id)
        if board.seq is not None and change.seq <= board.seq:
            return []  # already held: a duplicate or this process's own echo
        board.held.setdefault(change.seq, change)
        if board.reading:
            return []
        return self._drain(board)

    def overdue(self) -> list[str]:
        """Boards whose gap stayed open too long; each is marked as being read back."""
        if self._holding_all:
            return []  # the (re)load under way reads every board anyway
        limit = self._clock() - self._gap_wait_s
        late = [
            board_id
            for board_id, board in self._boards.items()
            if not board.reading and board.gap_since is not None and board.gap_since <= limit
        ]
        for board_id in late:
            self._boards[board_id].reading = True
        return late

    def _board(self, board_id: str) -> _BoardOrder:
        board = self._boards.get(board_id)
        if board is None:
            board = self._boards[board_id] = _BoardOrder(seq=None)
        return board

    def _drain(self, board: _BoardOrder) -> list[Sequenced]:
        """Take the held records that follow the board's seq without a gap."""
        held = board.held
        ready: list[Sequenced] = []
        # A board never loaded here has nothing to apply its records to: they wait, and if it
        # stays unknown the gap timer has it read back (a board made while Redis was away).
        if board.seq is not None:
            for stale in [seq for seq in held if seq <= board.seq]:
                del held[stale]
            while (nxt := held.pop(board.seq + 1, None)) is not None:
                ready.append(nxt)
                board.seq = nxt.seq
        # The wait for a gap runs from when it last made progress, and only while something
        # is still held behind it.
        if not held:
            board.gap_since = None
        elif ready or board.gap_since is None:
            board.gap_since = self._clock()
        return ready
