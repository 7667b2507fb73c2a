"""Which Idempotency-Keys need a database read before a submission: in one process, few do.

A submission that carries a key (HTTP `Idempotency-Key`, every WebSocket `request_id`) must
first learn whether the key was used before: then the stored answer is replayed
(docs/api.md#idempotency). A read per submission was the largest cost of a WebSocket
submission. In single-process mode this process holds the database lock (scoreboard/dblock.py),
so every key written since it started was written by it, and a key it never wrote can only be
stored if it was written before the start:

- the keys this process writes go into a Bloom filter (`KeyFilter`, 12 bits per key);
  a key the filter does not hold was not written here. A key it may hold is read from the
  database (about 1 % of new keys by mistake at the filter's capacity, more beyond it: the
  cost grows, the answers stay right);
- an actor's first keyed submission asks once whether the database holds keys of theirs
  written before the start (the submissions' ids up to the largest one at start-up). When it
  holds none, a key the filter does not hold is new, without a read; when it does, that
  actor's keys are always read.

Not for cluster mode: there another process may have written a key this one never saw.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from .tables import StoredAnswer

#: Keys the filter holds at about 1 % false positives: 12 bits each with 3 positions per key
#: ((1 - e^(-3/12))^3 = 1.1 %), about 6 MB. Three positions rather than the textbook optimum
#: of eight for the same rate: each costs a step of Python on every submission (7 positions
#: cost 8 µs per submission, 3 cost about 1).
FILTER_CAPACITY = 4_000_000
FILTER_BITS_PER_KEY = 12
#: Actors whose answer ("keys from before the start?") is remembered; the oldest is forgotten
#: beyond this, and asked again if it comes back (the answer cannot change).
REMEMBERED_ACTORS = 100_000


class KeyFilter:
    """A Bloom filter of (actor, key) pairs: `may_hold` is False only for pairs never added.

    Positions come from Python's own string hashes (salted per process, and cached on each
    str): the filter lives and dies with this process, so they need not be stable. Three
    positions by double hashing (Kirsch and Mitzenmacher): h1, h1 + h2, h1 + 2 h2.
    """

    __slots__ = ("_bits", "_size")

    def __init__(self, capacity: int, bits_per_key: int = FILTER_BITS_PER_KEY) -> None:
        if capacity < 1 or bits_per_key < 1:
            raise ValueError(
                f"need capacity and bits_per_key >= 1, got {capacity!r} and {bits_per_key!r}"
            )
        self._size = capacity * bits_per_key
        self._bits = bytearray((self._size + 7) // 8)

    def add(self, actor: str, key: str) -> None:
        first, step, size, bits = hash((actor, key)), hash((key, actor)), self._size, self._bits
        for p in (first % size, (first + step) % size, (first + 2 * step) % size):
            bits[p >> 3] |= 1 << (p & 7)

    def may_hold(self, actor: str, key: str) -> bool:
        first, step, size, bits = hash((actor, key)), hash((key, actor)), self._size, self._bits
        p = first % size
        if not bits[p >> 3] & (1 << (p & 7)):
            return False
        p = (first + step) % size
        if not bits[p >> 3] & (1 << (p & 7)):
            return False
        p = (first + 2 * step) % size
        return bool(bits[p >> 3] & (1 << (p & 7)))


class KeyLedger:
    """The keys one sole writer wrote since it started, and the actors with older keys.

    `find_answer(actor, key)` reads the database's answer for a key; `has_older_keys(actor)`
    says whether the database holds keys of the actor from before this process started.
    """

    def __init__(
        self,
        find_answer: Callable[[str, str], Awaitable[StoredAnswer | None]],
        has_older_keys: Callable[[str], Awaitable[bool]],
        *,
        capacity: int = FILTER_CAPACITY,
        remembered_actors: int = REMEMBERED_ACTORS,
    ) -> None:
        self._find_answer = find_answer
        self._has_older_keys = has_older_keys
        self._written = KeyFilter(capacity)
        self._older_keys: dict[str, bool] = {}  # actor -> keys from before the start?
        self._remembered_actors = remembered_actors
        #: Look-ups answered without reading the database (for tests and the benchmark).
        self.answered_from_memory = 0

    def writing(self, actor: str, key: str) -> None:
        """Note a key before its write is queued: from here on it must be looked up."""
        self._written.add(actor, key)

    async def stored_answer(self, actor: str, key: str) -> StoredAnswer | None:
        """The stored answer for the key, or None when it was never used."""
        if not self._written.may_hold(actor, key) and not await self._older_keys_of(actor):
            self.answered_from_memory += 1
            return None
        return await self._find_answer(actor, key)

    async def _older_keys_of(self, actor: str) -> bool:
        known = self._older_keys.get(actor)
        if known is not None:
            return known
        known = await self._has_older_keys(actor)
        remembered = self._older_keys
        if actor not in remembered and len(remembered) >= self._remembered_actors:
            del remembered[next(iter(remembered))]  # the first remembered, not the least used
        remembered[actor] = known
        return known
