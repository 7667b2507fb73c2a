"""The pure leaderboard engine: operators, ordering, ordinal ranks, pages and around-me.

This module owns the in-memory standings of one board: a dict user_id -> Record and a
`SortedList` of plain tuple keys, one per player, in rank order. It does no I/O and imports
neither tornado nor sqlalchemy: the service persists what `submit` returns and publishes it.

Ordering (docs/rules.md#order-and-ties): the board's order on (score, subscore) as one pair,
then the player who reached that pair first (lower `reached_seq`), then the smaller `user_id`.
Ranks are ordinal and 1-based.

Records are values: the board never mutates a Record it stores, it replaces it. So a Record
handed out (in an Outcome, or by `record()`) keeps describing that moment even after later
submissions, and callers must not mutate it either, because its fields make up its sort key.
"""

from __future__ import annotations

import time
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from sortedcontainers import SortedList

from .errors import ValidationFailed
from .validation import MAX_SAFE_INTEGER

#: Ranks that make up "the top" whose changes are pushed to every subscriber (docs/protocol.md).
TOP_N = 10


class Order(StrEnum):
    """Which end of the (score, subscore) pair is better."""

    DESC = "desc"  # higher is better
    ASC = "asc"  # lower is better, e.g. lap times


class Operator(StrEnum):
    """What a submission does to the player's stored pair."""

    BEST = "best"
    SET = "set"
    INCR = "incr"


@dataclass(slots=True)
class Record:
    """A player's stored standing on one board."""

    user_id: str
    name: str
    score: int
    subscore: int
    reached_seq: int  # board seq at which this (score, subscore) pair was reached: tie-break
    updated_at: float  # unix seconds of the last change of the pair


def format_timestamp(ts: float) -> str:
    """Format unix seconds as UTC RFC 3339 with milliseconds, e.g. "2026-11-25T21:00:00.123Z"."""
    # Round once to whole milliseconds so that e.g. 0.9996 becomes "…01.000Z", not "…00.1000Z".
    whole, ms = divmod(round(ts * 1000), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{ms:03d}Z"


@dataclass(frozen=True, slots=True)
class Entry:
    """One row of a leaderboard."""

    rank: int
    user_id: str
    name: str
    score: int
    subscore: int
    updated_at: float

    def to_json(self) -> dict[str, object]:
        """The Entry object of the API and the protocol (docs/api.md)."""
        return {
            "rank": self.rank,
            "user_id": self.user_id,
            "name": self.name,
            "score": self.score,
            "subscore": self.subscore,
            "updated_at": format_timestamp(self.updated_at),
        }


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one submission did to the board."""

    user_id: str
    name: str
    score: int  # stored pair after the operator
    subscore: int
    rank: int
    previous_rank: int | None  # None on the player's first score
    previous_score: int | None
    improved: bool  # stored pair changed (False: nothing changed, seq not advanced)
    seq: int  # board seq after this submission (unchanged if not improved)
    record: Record  # the stored record after the submission (for persistence)
    top_changed: bool  # improved and (rank <= TOP_N or previous_rank <= TOP_N)


@dataclass(frozen=True, slots=True)
class Removal:
    """What removing a player did to the board."""

    user_id: str
    name: str
    score: int  # the score they had
    previous_rank: int
    seq: int  # board seq after the removal


def apply_operator(
    operator: Operator, order: Order, old: tuple[int, int] | None, new: tuple[int, int]
) -> tuple[int, int]:
    """The pair a board stores when `new` is submitted over the stored `old` (None: no score)."""
    if old is None or operator == Operator.SET:
        return new
    if operator == Operator.INCR:
        return (old[0] + new[0], old[1] + new[1])
    if operator == Operator.BEST:
        # Strictly better only: on a tie the stored pair stays, and with it its reached_seq, so
        # the player who reached the pair first keeps the tie place.
        if order == Order.DESC:
            return new if new > old else old
        if order == Order.ASC:
            return new if new < old else old
        raise ValueError(f"unknown order, got {order!r}")
    raise ValueError(f"unknown operator, got {operator!r}")


def check_bounds(
    operator: Operator,
    score: int,
    pair: tuple[int, int],
    min_score: int | None,
    max_score: int | None,
) -> None:
    """Raise ValidationFailed when a board's rules refuse storing `pair` for a submitted `score`.

    `best` and `set` store the submitted score, so it must be within [min_score, max_score]
    itself; `incr` stores a sum, so the sum must. Either way the stored pair must stay within
    ±(2^53-1). The one check of both write paths: `Leaderboard.submit` in one process, the
    database-decided writes of a cluster (scoreboard/cluster/pgwrites.py).
    """
    checked = pair[0] if operator is Operator.INCR else score
    # Inline comparisons first: this runs for every submission, the wording only on a refusal.
    if (
        (min_score is None or checked >= min_score)
        and (max_score is None or checked <= max_score)
        and -MAX_SAFE_INTEGER <= pair[0] <= MAX_SAFE_INTEGER
        and -MAX_SAFE_INTEGER <= pair[1] <= MAX_SAFE_INTEGER
    ):
        return
    if min_score is not None and checked < min_score:
        raise ValidationFailed(f"score must be at least {min_score}, got {checked}")
    if max_score is not None and checked > max_score:
        raise ValidationFailed(f"score must be at most {max_score}, got {checked}")
    raise ValidationFailed(f"the stored (score, subscore) would leave ±(2^53-1): {pair}")


# The sort key of a record: plain tuples compare in C, which is what keeps a 1M-player
# SortedList at a few microseconds per operation. Negating the pair makes "higher is better"
# sort first while reached_seq and user_id stay ascending.
#: A record's place in the sorted standings: smaller sorts first (see _desc_key, _asc_key).
Key = tuple[int, int, int, str]


def _desc_key(r: Record) -> Key:
    return (-r.score, -r.subscore, r.reached_seq, r.user_id)


def _asc_key(r: Record) -> Key:
    return (r.score, r.subscore, r.reached_seq, r.user_id)


class _RankedList(SortedList[Key]):
    """A SortedList whose add and remove also return the value's index.

    `submit` needs the player's index before and after the move. With the public API that is
    four O(log n) searches (bisect_left + remove, add + bisect_left); these do it in two, which
    takes 1.5-2 us (over 10%) off an update at 1M players. They use SortedList's internal
    layout (`_lists`, `_maxes`, `_loc`, `_delete`, `_expand`) as of sortedcontainers 2.4.0,
    pinned in requirements.txt; tests/test_ranking.py checks them against a plain list.
    """

    if TYPE_CHECKING:
        # That internal layout, which the published type stubs rightly leave out.
        _lists: list[list[Key]]
        _maxes: list[Key]
        _len: int

        def _loc(self, pos: int, idx: int) -> int: ...
        def _delete(self, pos: int, idx: int) -> None: ...
        def _expand(self, pos: int) -> None: ...

    def remove_ranked(self, value: Key) -> int:
        """Remove `value` and return the index it had; ValueError when it is absent."""
        maxes = self._maxes
        pos = bisect_left(maxes, value)
        if pos == len(maxes):
            raise ValueError(f"{value!r} not in list")
        sublist = self._lists[pos]
        idx = bisect_left(sublist, value)
        if sublist[idx] != value:
            raise ValueError(f"{value!r} not in list")
        index = self._loc(pos, idx)
        self._delete(pos, idx)
        return index

    def add_ranked(self, value: Key) -> int:
        """Insert `value` (as `add` does) and return its index."""
        maxes = self._maxes
        if not maxes:
            self.add(value)
            return 0
        pos = bisect_right(maxes, value)
        if pos == len(maxes):
            pos -= 1
        sublist = self._lists[pos]
        idx = bisect_right(sublist, value)
        # The count of values before (pos, idx) before the insert is the new value's index.
        index = self._loc(pos, idx)
        sublist.insert(idx, value)
        maxes[pos] = sublist[-1]
        self._len += 1
        self._expand(pos)
        return index


class Leaderboard:
    """The standings of one board, kept sorted for O(log n) ranks and updates."""

    __slots__ = ("_key", "_operator", "_order", "_records", "_seq", "_sorted")

    def __init__(self, order: Order, operator: Operator, *, seq: int = 0) -> None:
        self._order = Order(order)
        self._operator = Operator(operator)
        if seq < 0:
            raise ValueError(f"seq must be >= 0, got {seq!r}")
        self._seq = seq
        self._key = _desc_key if self._order == Order.DESC else _asc_key
        self._records: dict[str, Record] = {}
        self._sorted = _RankedList()

    @property
    def order(self) -> Order:
        """The board's order (fixed at creation: the sort keys depend on it)."""
        return self._order

    @property
    def operator(self) -> Operator:
        """The board's operator."""
        return self._operator

    @property
    def seq(self) -> int:
        """The board seq: grows with every accepted change, never goes back."""
        return self._seq

    def _raise_seq(self, seq: int) -> None:
        if seq > self._seq:
            self._seq = seq

    def load(self, records: Iterable[Record], *, seq: int) -> None:
        """Replace the whole board with `records`; a repeated user_id: last wins."""
        by_user = {r.user_id: r for r in records}
        # Keys built inline (no function call per record), one sort, then the list is cut into
        # sublists in one go: 2.5x faster at 1M players than 1M single adds.
        if self._order == Order.DESC:
            keys = [(-r.score, -r.subscore, r.reached_seq, r.user_id) for r in by_user.values()]
        else:
            keys = [(r.score, r.subscore, r.reached_seq, r.user_id) for r in by_user.values()]
        keys.sort()
        self._records = by_user
        self._sorted = _RankedList(keys)
        # seq also covers every stored reached_seq, so that a later submission always ranks
        # behind the players who reached the same pair before it.
        self._raise_seq(max(seq, max((k[2] for k in keys), default=0)))

    def preview(self, user_id: str, score: int, subscore: int) -> tuple[int, int]:
        """The pair `submit()` would store for this submission; changes nothing."""
        old = self._records.get(user_id)
        if old is None:
            return (score, subscore)
        return apply_operator(
            self._operator, self._order, (old.score, old.subscore), (score, subscore)
        )

    def submit(
        self,
        user_id: str,
        name: str,
        score: int,
        subscore: int,
        *,
        now: float,
        seq: int | None = None,
        min_score: int | None = None,
        max_score: int | None = None,
    ) -> Outcome:
        """Apply the board's operator to the player's record and re-rank them.

        Raises ValidationFailed, changing nothing, when the board's bounds refuse the
        submission: `best` and `set` store the submitted score, so it must be within
        [min_score, max_score] itself; `incr` stores a sum, so the sum must. Either way the
        stored pair must stay within ±(2^53-1).
        """
        records = self._records
        ordered = self._sorted
        key_of = self._key
        old = records.get(user_id)
        if old is None:
            pair = (score, subscore)
            previous_rank = previous_score = None
        else:
            old_pair = (old.score, old.subscore)
            pair = apply_operator(self._operator, self._order, old_pair, (score, subscore))
        # Board rules, checked before anything changes.
        check_bounds(self._operator, score, pair, min_score, max_score)
        if old is not None:
            if pair == old_pair:
                # Nothing to re-rank and no seq to spend; only the display name may change.
                if name != old.name:
                    old = Record(
                        user_id, name, old.score, old.subscore, old.reached_seq, old.updated_at
                    )
                    records[user_id] = old
                rank = ordered.bisect_left(key_of(old)) + 1
                # Positional: a frozen dataclass's keyword call costs ~0.3 us more, per submit.
                return Outcome(
                    user_id, name, old.score, old.subscore, rank, rank, old.score, False,
                    self._seq, old, False,
                )  # fmt: skip
            previous_rank = ordered.remove_ranked(key_of(old)) + 1
            previous_score = old.score
        new_seq = seq if seq is not None and seq > self._seq else self._seq + 1
        self._seq = new_seq
        record = Record(user_id, name, pair[0], pair[1], new_seq, now)
        records[user_id] = record
        rank = ordered.add_ranked(key_of(record)) + 1
        top_changed = rank <= TOP_N or (previous_rank is not None and previous_rank <= TOP_N)
        return Outcome(
            user_id, name, record.score, record.subscore, rank, previous_rank, previous_score,
            True, new_seq, record, top_changed,
        )  # fmt: skip

    def apply(self, record: Record, *, seq: int) -> Outcome:
        """Store a record another party decided (a cluster's database) and re-rank its player.

        The Outcome is the one `submit` would have reported for the submission that produced
        `record` at `seq`, so listeners treat a replicated change like a local one. The caller
        applies each board's records in seq order, once each (cluster/replica.py sees to it).
        """
        ordered = self._sorted
        key_of = self._key
        old = self._records.get(record.user_id)
        previous_rank = previous_score = None
        if old is not None:
            previous_rank = ordered.remove_ranked(key_of(old)) + 1
            previous_score = old.score
        self._records[record.user_id] = record
        rank = ordered.add_ranked(key_of(record)) + 1
        self._raise_seq(max(seq, record.reached_seq))
        top_changed = rank <= TOP_N or (previous_rank is not None and previous_rank <= TOP_N)
        return Outcome(
            record.user_id, record.name, record.score, record.subscore, rank, previous_rank,
            previous_score, True, self._seq, record, top_changed,
        )  # fmt: skip

    def put(self, record: Record, *, seq: int) -> None:
        """Store `record` as it is (cluster replica apply); the board seq never goes back."""
        old = self._records.get(record.user_id)
        if old is not None:
            self._sorted.remove(self._key(old))
        self._records[record.user_id] = record
        self._sorted.add(self._key(record))
        self._raise_seq(max(seq, record.reached_seq))

    def remove(self, user_id: str) -> None:
        """Drop the player from the board; an absent player is not an error."""
        old = self._records.pop(user_id, None)
        if old is not None:
            self._sorted.remove(self._key(old))

    def withdraw(self, user_id: str, *, seq: int | None = None) -> Removal | None:
        """Remove the player as an accepted change; None when absent (nothing changes then).

        The seq advances by one, or to `seq` when the change was decided elsewhere (a cluster's
        database); it never goes back.
        """
        old = self._records.pop(user_id, None)
        if old is None:
            return None
        previous_rank = self._sorted.remove_ranked(self._key(old)) + 1
        self._raise_seq(self._seq + 1 if seq is None else seq)
        return Removal(user_id, old.name, old.score, previous_rank, self._seq)

    def advance(self, seq: int) -> None:
        """Raise the seq to `seq` for a change that left the standings as they are."""
        self._raise_seq(seq)

    def take_all(self) -> tuple[dict[str, Record], list[list[Key]]]:
        """Empty the board at once and hand over what it held (the seq stays).

        Dropping a million records in one go frees them all in one call, which holds the
        interpreter for a tenth of a second or more; the caller frees these piece by piece.
        """
        records, pieces = self._records, self._sorted._lists
        self._records = {}
        self._sorted = _RankedList()
        return records, pieces

    def clear(self, *, seq: int) -> None:
        """Empty the board (reset); the board seq never goes back."""
        self._records = {}
        self._sorted = _RankedList()
        self._raise_seq(seq)

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, user_id: object) -> bool:
        return user_id in self._records

    def record(self, user_id: str) -> Record | None:
        """The player's stored record, or None."""
        return self._records.get(user_id)

    def rank_of(self, user_id: str) -> int | None:
        """The player's 1-based rank, or None when they have no score. O(log n)."""
        record = self._records.get(user_id)
        if record is None:
            return None
        return self._sorted.bisect_left(self._key(record)) + 1

    def placement(self, record: Record) -> int:
        """The rank `record` has, or would have, among the standings as they are now."""
        return self._sorted.bisect_left(self._key(record)) + 1

    def entry(self, user_id: str) -> Entry | None:
        """The player's leaderboard row, or None when they have no score."""
        r = self._records.get(user_id)
        if r is None:
            return None
        rank = self._sorted.bisect_left(self._key(r)) + 1
        return Entry(rank, r.user_id, r.name, r.score, r.subscore, r.updated_at)

    def page(self, offset: int, limit: int) -> list[Entry]:
        """Up to `limit` rows starting after the first `offset` ones."""
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset!r}")
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit!r}")
        return self._entries(offset, offset + limit)

    def top(self, n: int = TOP_N) -> list[Entry]:
        """The first `n` rows."""
        return self.page(0, n)

    def around(self, user_id: str, radius: int) -> list[Entry]:
        """The player's row with up to `radius` rows on each side; [] when they have no score."""
        if radius < 0:
            raise ValueError(f"radius must be >= 0, got {radius!r}")
        record = self._records.get(user_id)
        if record is None:
            return []
        index = self._sorted.bisect_left(self._key(record))
        return self._entries(max(0, index - radius), index + radius + 1)

    def _entries(self, start: int, stop: int) -> list[Entry]:
        records = self._records
        entries = []
        # islice clips `stop` to the list's length and walks the sublists directly.
        for rank, key in enumerate(self._sorted.islice(start, stop), start + 1):
            r = records[key[3]]
            entries.append(Entry(rank, r.user_id, r.name, r.score, r.subscore, r.updated_at))
        return entries
