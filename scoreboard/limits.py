"""Token-bucket rate limiting: score submissions per player and login attempts per address.

Pure: the caller passes the time in (seconds on a monotonic clock), so one clock read serves a
whole request and the maths has plain unit tests. Nothing here reads a clock or does I/O.
`SharedLimiter` is the shape of the cluster's limiter (cluster/limits.py), whose buckets live
in Redis so that a limit holds across processes.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Hashable
from typing import Protocol

# Float slack when comparing token counts: waiting exactly the seconds `take` returned must be
# enough, even when rate * elapsed lands a hair below a whole token.
_EPSILON_TOKENS = 1e-9
# Idle buckets examined per `take`. More than the one key a call can add, so buckets that have
# refilled are cleared faster than new keys arrive.
_PRUNE_PER_TAKE = 2


def _check_rate_burst(rate: float, burst: float) -> None:
    if not (isinstance(rate, int | float) and math.isfinite(rate) and rate > 0):
        raise ValueError(f"rate must be a positive number of tokens per second, got {rate!r}")
    if not (isinstance(burst, int | float) and math.isfinite(burst) and burst > 0):
        raise ValueError(f"burst must be a positive number of tokens, got {burst!r}")


class SharedLimiter(Protocol):
    """Buckets shared by every process of a cluster: `KeyedLimiter.take`'s answers, awaited,
    on the clock of whatever keeps the buckets."""

    async def take(self, key: str, cost: float = 1.0) -> float: ...


class TokenBucket:
    """Allows `rate` tokens per second on average and up to `burst` at once; starts full."""

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float) -> None:
        _check_rate_burst(rate, burst)
        self.rate = float(rate)
        self.burst = float(burst)
        self._tokens = self.burst
        self._last: float | None = None

    def tokens(self, now: float) -> float:
        """Tokens available at `now`, without changing the bucket."""
        if self._last is None or now <= self._last:
            return self._tokens
        return min(self.burst, self._tokens + (now - self._last) * self.rate)

    def is_full(self, now: float) -> bool:
        """True when the bucket holds `burst` tokens at `now`: it is then as good as new."""
        return self.tokens(now) >= self.burst - _EPSILON_TOKENS

    def take(self, now: float, cost: float = 1.0) -> float:
        """Take `cost` tokens: 0.0 when allowed, else the seconds until they will be there.

        A refused take consumes nothing.
        """
        if not 0 <= cost <= self.burst:
            raise ValueError(f"cost must be between 0 and burst ({self.burst}), got {cost!r}")
        self._tokens = self.tokens(now)
        # A clock that steps back counts as no time passing, never as a refund.
        if self._last is None or now > self._last:
            self._last = now
        if self._tokens + _EPSILON_TOKENS >= cost:
            self._tokens = max(0.0, self._tokens - cost)
            return 0.0
        return (cost - self._tokens) / self.rate


class KeyedLimiter:
    """One TokenBucket per key (a player's sub, a client address), in bounded memory.

    A bucket that has refilled is dropped: a full bucket behaves exactly like a new one, so that
    loses nothing. Past `max_keys`, the least recently used bucket is dropped even if not full;
    that key then starts again with a full burst, the price of a hard memory bound.
    """

    def __init__(self, rate: float, burst: float, *, max_keys: int = 100_000) -> None:
        _check_rate_burst(rate, burst)
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, got {max_keys!r}")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        # Ordered least recently used first.
        self._buckets: OrderedDict[Hashable, TokenBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._buckets

    def take(self, key: Hashable, now: float, cost: float = 1.0) -> float:
        """Take `cost` tokens from `key`'s bucket: 0.0 when allowed, else seconds to wait."""
        if not 0 <= cost <= self.burst:
            raise ValueError(f"cost must be between 0 and burst ({self.burst}), got {cost!r}")
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst)
        else:
            self._buckets.move_to_end(key)
        wait = bucket.take(now, cost)
        self._prune(now)
        return wait

    def _prune(self, now: float) -> None:
        for _ in range(_PRUNE_PER_TAKE):
            oldest_key, oldest = next(iter(self._buckets.items()))
            if not oldest.is_full(now):
                break
            del self._buckets[oldest_key]
            if not self._buckets:
                return
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
