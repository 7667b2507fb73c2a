"""Tests of scoreboard.limits: token buckets and the per-key limiter."""

from __future__ import annotations

import math
from typing import Any

import pytest

from scoreboard.limits import KeyedLimiter, TokenBucket

# --- TokenBucket -------------------------------------------------------------------------------


def test_starts_full_and_allows_the_burst_at_once() -> None:
    bucket = TokenBucket(rate=10, burst=20)
    assert [bucket.take(100.0) for _ in range(20)] == [0.0] * 20
    assert bucket.take(100.0) > 0


def test_retry_after_is_the_time_to_the_next_token() -> None:
    bucket = TokenBucket(rate=10, burst=20)
    for _ in range(20):
        bucket.take(0.0)
    assert bucket.take(0.0) == pytest.approx(0.1)
    assert bucket.take(0.04) == pytest.approx(0.06)
    assert bucket.take(0.1) == 0.0
    assert bucket.take(0.1) == pytest.approx(0.1)


def test_refused_take_consumes_nothing() -> None:
    bucket = TokenBucket(rate=2, burst=1)
    assert bucket.take(0.0) == 0.0
    waits = [bucket.take(0.0) for _ in range(50)]
    assert waits == [pytest.approx(0.5)] * 50
    assert bucket.take(0.5) == 0.0


def test_waiting_exactly_the_returned_time_is_enough() -> None:
    # rate 3/s gives waits of 1/3 s that do not add up exactly in floating point.
    bucket = TokenBucket(rate=3, burst=1)
    now = 0.0
    assert bucket.take(now) == 0.0
    for _ in range(1000):
        wait = bucket.take(now)
        assert wait > 0
        now += wait
        assert bucket.take(now) == 0.0


def test_sustained_rate() -> None:
    bucket = TokenBucket(rate=10, burst=20)
    for _ in range(20):
        bucket.take(0.0)
    allowed = sum(bucket.take(1.0) == 0.0 for _ in range(100))
    assert allowed == 10


def test_refill_is_capped_at_burst() -> None:
    bucket = TokenBucket(rate=10, burst=20)
    bucket.take(0.0)
    allowed = sum(bucket.take(3600.0) == 0.0 for _ in range(100))
    assert allowed == 20


def test_cost_takes_several_tokens() -> None:
    bucket = TokenBucket(rate=2, burst=5)
    assert bucket.take(0.0, cost=2) == 0.0
    assert bucket.take(0.0, cost=5) == pytest.approx(1.0)  # 3 left, 2 more at 2/s
    assert bucket.take(0.0, cost=3) == 0.0
    assert bucket.take(0.0, cost=0) == 0.0


@pytest.mark.parametrize("cost", [-1, 5.01, math.inf])
def test_impossible_cost_refused(cost: float) -> None:
    with pytest.raises(ValueError, match="cost"):
        TokenBucket(rate=1, burst=5).take(0.0, cost=cost)


def test_clock_stepping_back_gives_no_refund() -> None:
    bucket = TokenBucket(rate=1, burst=2)
    bucket.take(10.0)
    bucket.take(10.0)
    assert bucket.take(5.0) == pytest.approx(1.0)
    assert bucket.take(10.5) == pytest.approx(0.5)
    assert bucket.take(11.0) == 0.0


def test_tokens_and_is_full_do_not_change_the_bucket() -> None:
    bucket = TokenBucket(rate=1, burst=3)
    assert bucket.is_full(0.0)
    bucket.take(0.0, cost=3)
    assert bucket.tokens(1.5) == pytest.approx(1.5)
    assert not bucket.is_full(2.9)
    assert bucket.is_full(3.0)
    assert bucket.tokens(0.0) == 0.0


@pytest.mark.parametrize(
    ("rate", "burst"),
    [(0, 1), (-1, 1), (math.inf, 1), (math.nan, 1), (1, 0), (1, -2), (1, math.inf), ("1", 1)],
)
def test_bad_rate_or_burst_refused(rate: Any, burst: Any) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst)
    with pytest.raises(ValueError):
        KeyedLimiter(rate, burst)


# --- KeyedLimiter ------------------------------------------------------------------------------


def test_keys_have_separate_buckets() -> None:
    limiter = KeyedLimiter(rate=10, burst=20)
    assert all(limiter.take("alice", 0.0) == 0.0 for _ in range(20))
    assert limiter.take("alice", 0.0) == pytest.approx(0.1)
    assert limiter.take("bob", 0.0) == 0.0
    assert limiter.take("alice", 0.1) == 0.0


def test_keyed_retry_after_and_cost() -> None:
    limiter = KeyedLimiter(rate=4, burst=2)
    limiter.take("ip", 0.0, cost=2)
    assert limiter.take("ip", 0.0) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="cost"):
        limiter.take("new", 0.0, cost=3)
    assert "new" not in limiter


def test_key_count_is_bounded() -> None:
    limiter = KeyedLimiter(rate=1, burst=5, max_keys=50)
    for i in range(10_000):
        limiter.take(f"user{i}", 0.0)
        assert len(limiter) <= 50
    assert len(limiter) == 50


def test_least_recently_used_key_is_evicted_first() -> None:
    limiter = KeyedLimiter(rate=1, burst=3, max_keys=10)
    for _ in range(3):
        limiter.take("hot", 0.0)
    for i in range(100):
        limiter.take(f"cold{i}", 0.0)
        assert limiter.take("hot", 0.0) > 0  # still drained: its bucket was kept
    assert "hot" in limiter
    assert "cold0" not in limiter


def test_refilled_buckets_are_dropped_without_reaching_the_bound() -> None:
    limiter = KeyedLimiter(rate=10, burst=2, max_keys=100_000)
    for i in range(500):
        limiter.take(f"user{i}", 0.0)
    assert len(limiter) == 500
    # One second later every bucket has refilled; ordinary traffic sweeps them away.
    for _ in range(300):
        limiter.take("active", 1.0)
    assert len(limiter) == 1
    assert "active" in limiter


def test_dropped_full_bucket_loses_nothing() -> None:
    limiter = KeyedLimiter(rate=1, burst=2, max_keys=1000)
    limiter.take("a", 0.0)
    limiter.take("b", 10.0)  # "a" has refilled and is swept
    assert "a" not in limiter
    assert [limiter.take("a", 10.0) for _ in range(3)] == [0.0, 0.0, pytest.approx(1.0)]


def test_max_keys_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_keys"):
        KeyedLimiter(1, 1, max_keys=0)
