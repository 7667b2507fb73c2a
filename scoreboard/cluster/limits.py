"""Rate limits that hold across the processes of a cluster: token buckets kept in Redis.

The same buckets as `limits.KeyedLimiter` (`rate` tokens a second, up to `burst` at once,
starting full; a refused take consumes nothing and answers the seconds to wait), but each
key's bucket is a Redis hash that every process takes from, so a player who spreads their
posts over several processes, or a client that tries log-ins on each, meets one limit.

One Lua script refills and takes atomically, so two processes taking at the same instant
cannot both spend the last token. A bucket's key expires when the bucket would be full
again: a full bucket behaves exactly like a missing one, so idle keys vanish and lose nothing.

Time comes from the Redis server (`TIME` inside the script): one clock for every process of
the cluster, on any number of machines, so skew between their clocks can neither refund nor
withhold tokens, and no clock value travels in the request. A caller's clock can be passed
instead (`shared_clock`), which the tests use to step time by hand.

Redis must never make a submission fail: when it does not answer within `timeout` (down,
restarting, a network stall), the take is made on this process's own KeyedLimiter instead, and
Redis is not asked again for `retry_after` seconds, so a dead Redis costs one timeout a second,
not one per request. The switch is logged once each way, never per request. While Redis is
away the limit holds per process (N processes allow N times the rate), and a bucket Redis lost
in a restart starts full again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ..limits import KeyedLimiter

log = logging.getLogger(__name__)

KEY_PREFIX = "scoreboard:limit:"
# A take is on the path of every submission: past this, Redis counts as away (its round trip
# on a LAN is well under a millisecond, so this is slack for a loaded host, not for a trip).
REDIS_TIMEOUT_S = 0.05
# After Redis failed to answer, takes stay local this long before Redis is tried again.
RETRY_SHARED_AFTER_S = 1.0

# KEYS[1]: the bucket, a hash {tokens, at}. ARGV: rate (tokens/s), burst, cost, and the time in
# seconds, or '' for the Redis server's own clock. Answers the seconds to wait, "0" when taken
# (a string: Redis would truncate a Lua number to an integer).
TAKE_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
if now == nil then
  local clock = redis.call('TIME')
  now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
end
local stored = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(stored[1])
local at = tonumber(stored[2])
if tokens == nil or at == nil then
  tokens, at = burst, now
elseif now > at then
  -- A clock that steps back counts as no time passing, never as a refund.
  tokens = math.min(burst, tokens + (now - at) * rate)
  at = now
end
-- The same float slack as limits.TokenBucket: waiting the answered time must be enough.
if tokens + 1e-9 < cost then
  return tostring((cost - tokens) / rate)
end
tokens = math.max(0, tokens - cost)
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
  'at', string.format('%.6f', at))
-- Gone once full again: a full bucket behaves exactly like a missing one.
local full_in_ms = ((at - now) + (burst - tokens) / rate) * 1000
redis.call('PEXPIRE', KEYS[1], string.format('%d', math.ceil(full_in_ms) + 1))
return '0'
"""


class RedisLimiter:
    """One token bucket per key (a player's sub, a client address), shared through Redis.

    `name` keeps limits of different kinds apart (`score`, `login`); `take` answers as
    `KeyedLimiter.take` does. Satisfies `limits.SharedLimiter`.
    """

    def __init__(
        self,
        redis: Redis,
        name: str,
        rate: float,
        burst: float,
        *,
        timeout: float = REDIS_TIMEOUT_S,
        retry_after: float = RETRY_SHARED_AFTER_S,
        shared_clock: Callable[[], float] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.rate = float(rate)
        self.burst = float(burst)
        self.timeout = timeout
        self.retry_after = retry_after
        # Also checks rate and burst, with the same messages as a single process.
        self._local = KeyedLimiter(rate, burst)
        self._script = redis.register_script(TAKE_SCRIPT)
        self._prefix = f"{KEY_PREFIX}{name}:"
        self._shared_clock = shared_clock
        self._monotonic = monotonic
        self._shared = True  # False from a failed take until Redis answers again
        self._retry_at = -float("inf")  # monotonic time before which Redis is not asked

    @property
    def shared(self) -> bool:
        """Whether the last take was made in Redis (False: on this process's own buckets)."""
        return self._shared

    async def take(self, key: str, cost: float = 1.0) -> float:
        """Take `cost` tokens from `key`'s bucket: 0.0 when allowed, else seconds to wait."""
        if not 0 <= cost <= self.burst:
            raise ValueError(f"cost must be between 0 and burst ({self.burst}), got {cost!r}")
        now = self._monotonic()
        if now >= self._retry_at:
            at = "" if self._shared_clock is None else repr(self._shared_clock())
            try:
                async with asyncio.timeout(self.timeout):
                    answer = await self._script(
                        keys=[self._prefix + key], args=[self.rate, self.burst, cost, at]
                    )
            except (RedisError, OSError, TimeoutError) as exc:
                self._redis_failed(exc, now)
            else:
                self._redis_answered()
                return float(answer)
        return self._local.take(key, now, cost)

    def _redis_failed(self, exc: BaseException, now: float) -> None:
        self._retry_at = now + self.retry_after
        if self._shared:
            self._shared = False
            log.warning(
                "Redis did not answer for the %s rate limit (%s): limiting per process "
                "until it does",
                self.name,
                type(exc).__name__ if isinstance(exc, TimeoutError) else exc,
            )

    def _redis_answered(self) -> None:
        if not self._shared:
            self._shared = True
            log.info("Redis answers again: the %s rate limit holds across processes", self.name)
