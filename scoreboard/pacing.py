"""The timing maths of live delivery: pure functions of keyword-only times, no clock read.

Whoever owns a timer (the hub, a session) reads the clock once and asks these when and how
often; tests/test_pacing.py checks them with plain numbers.
"""

from __future__ import annotations

from collections.abc import Iterable

# The sweep (pings, expiry, stalls) runs at a quarter of the shortest timer it serves, so a
# deadline is noticed at most 25 % late, but never more often than 50 times a second.
MAX_SWEEP_PERIOD_S = 1.0
MIN_SWEEP_PERIOD_S = 0.02


def broadcast_delay(*, last_sent_at: float, interval: float, now: float) -> float:
    """Seconds until a board may send its next score_update: 0 after a quiet period."""
    return max(0.0, last_sent_at + interval - now)


def sweep_period(*, ping_interval: float, slow_consumer_timeout: float) -> float:
    """Period of the hub-wide sweep timer, a quarter of the shortest deadline it checks."""
    quarter = min(ping_interval, slow_consumer_timeout) / 4
    return min(MAX_SWEEP_PERIOD_S, max(MIN_SWEEP_PERIOD_S, quarter))


def kernel_check_slices(*, slow_consumer_timeout: float, period: float) -> int:
    """How many slices the kernel send-queue checks are split into: each connection is looked
    at about four times per slow-consumer timeout, a slice per sweep."""
    return max(1, round(slow_consumer_timeout / 4 / period))


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
