"""The pure timing maths of pacing.py, with plain numbers."""

from __future__ import annotations

import math

import pytest

from scoreboard.pacing import (
    abuse_streak_start,
    broadcast_delay,
    broadcast_window,
    close_delay,
    kernel_check_slices,
    message_rate,
    ping_slices,
    stalled,
    sweep_period,
)


@pytest.mark.parametrize(
    ("last_cpu", "floor", "ceiling", "window"),
    [
        (0.0, 0.005, 0.1, 0.005),  # a tiny room: the floor
        (0.001, 0.005, 0.1, 0.005),  # 4 ms is still under the floor
        (0.002, 0.005, 0.1, 0.008),  # four times its CPU
        (0.010, 0.005, 0.1, 0.040),
        (0.025, 0.005, 0.1, 0.1),  # exactly the ceiling
        (0.200, 0.005, 0.1, 0.1),  # a huge room: never longer than --broadcast-interval-ms
        (0.002, 0.005, 0.001, 0.001),  # a ceiling under the floor wins (tests, frames bench)
    ],
)
def test_broadcast_window_is_four_times_the_last_cpu_within_floor_and_ceiling(
    last_cpu, floor, ceiling, window
):
    assert broadcast_window(last_cpu=last_cpu, floor=floor, ceiling=ceiling) == pytest.approx(
        window
    )


@pytest.mark.parametrize(
    ("last_started_at", "last_cpu", "now", "delay"),
    [
        (-math.inf, 0.0, 5.0, 0.0),  # the first change ever goes out at once
        (4.0, 0.010, 5.0, 0.0),  # after a quiet period: at once
        (4.99, 0.0, 5.0, 0.0),  # 10 ms since the last start, floor 5 ms: at once
        (4.998, 0.0, 5.0, 0.003),  # the rest of the 5 ms floor
        (4.98, 0.010, 5.0, 0.020),  # window 40 ms counted from the last start
        (4.95, 0.050, 5.0, 0.050),  # window capped at the 100 ms ceiling
        (5.0, 0.050, 5.0, 0.1),
    ],
)
def test_broadcast_delay_counts_the_window_from_the_last_start(
    last_started_at, last_cpu, now, delay
):
    assert broadcast_delay(
        last_started_at=last_started_at, last_cpu=last_cpu, floor=0.005, ceiling=0.1, now=now
    ) == pytest.approx(delay)


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
