"""The pure timing maths of pacing.py, with plain numbers."""

from __future__ import annotations

import math

import pytest

from scoreboard.pacing import (
    abuse_streak_start,
    broadcast_delay,
    close_delay,
    kernel_check_slices,
    message_rate,
    ping_slices,
    stalled,
    sweep_period,
)


def test_broadcast_delay_is_zero_after_a_quiet_period_and_the_rest_of_the_window_otherwise():
    assert broadcast_delay(last_sent_at=-math.inf, interval=0.1, now=5.0) == 0
    assert broadcast_delay(last_sent_at=4.0, interval=0.1, now=5.0) == 0
    assert broadcast_delay(last_sent_at=4.97, interval=0.1, now=5.0) == pytest.approx(0.07)
    assert broadcast_delay(last_sent_at=5.0, interval=0.1, now=5.0) == pytest.approx(0.1)


def test_sweep_period_is_a_quarter_of_the_shortest_deadline_within_bounds():
    assert sweep_period(ping_interval=20, slow_consumer_timeout=30) == 1.0
    assert sweep_period(ping_interval=2, slow_consumer_timeout=30) == 0.5
    assert sweep_period(ping_interval=20, slow_consumer_timeout=0.4) == pytest.approx(0.1)
    assert sweep_period(ping_interval=0.01, slow_consumer_timeout=30) == 0.02


def test_every_connection_is_pinged_once_per_interval():
    assert ping_slices(ping_interval=20, period=1.0) == 20
    assert ping_slices(ping_interval=0.4, period=0.1) == 4
    assert ping_slices(ping_interval=0.01, period=0.02) == 1


def test_stalled_after_timeout_without_progress():
    assert not stalled(mark=10.0, now=39.9, timeout=30)
    assert stalled(mark=10.0, now=40.0, timeout=30)


def test_abuse_streak_starts_at_a_refusal_and_ends_after_a_quiet_second():
    start = abuse_streak_start(streak_start=None, last_refused_at=None, now=1.0, quiet=1.0)
    assert start == 1.0
    assert abuse_streak_start(streak_start=1.0, last_refused_at=1.5, now=2.2, quiet=1.0) == 1.0
    assert abuse_streak_start(streak_start=1.0, last_refused_at=1.5, now=2.6, quiet=1.0) == 2.6


def test_close_delays_spread_evenly_within_the_bound():
    delays = [close_delay(index=i, count=8, spread=5.0) for i in range(8)]
    assert delays[0] == 0
    assert delays == sorted(delays)
    assert max(delays) < 5.0
    assert delays[1] == pytest.approx(5.0 / 8)
    assert close_delay(index=0, count=0, spread=5.0) == 0


def test_message_rate_over_samples():
    assert message_rate([]) == 0
    assert message_rate([(1.0, 10)]) == 0
    assert message_rate([(1.0, 10), (2.0, 30), (3.0, 50)]) == 20


def test_kernel_queues_are_checked_about_four_times_per_slow_consumer_timeout():
    assert kernel_check_slices(slow_consumer_timeout=30, period=1.0) == 8
    assert kernel_check_slices(slow_consumer_timeout=1, period=0.25) == 1
