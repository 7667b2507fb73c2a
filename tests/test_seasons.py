"""The pure schedule maths of seasons.py: each schedule across its UTC boundary."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from scoreboard.seasons import due_boundary, next_boundary


def ts(text: str) -> float:
    """'2026-11-30 23:59:59' (UTC) as unix seconds."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("schedule", "before", "boundary"),
    [
        ("daily", "2026-11-25 23:59:59.999", "2026-11-26 00:00:00"),
        ("daily", "2026-12-31 12:00:00", "2027-01-01 00:00:00"),
        # 2026-11-29 is a Sunday; the week turns on Monday 00:00 UTC.
        ("weekly", "2026-11-29 23:59:59", "2026-11-30 00:00:00"),
        ("weekly", "2026-11-30 00:00:00.001", "2026-12-07 00:00:00"),
        ("monthly", "2026-11-30 23:59:59", "2026-12-01 00:00:00"),
        ("monthly", "2026-12-15 08:00:00", "2027-01-01 00:00:00"),
        ("monthly", "2028-02-28 10:00:00", "2028-03-01 00:00:00"),  # leap year: 29 days
    ],
)
def test_next_boundary_is_the_first_utc_boundary_strictly_after(schedule, before, boundary):
    assert next_boundary(schedule, after=ts(before)) == ts(boundary)
    # On the boundary itself the next one is a whole period on, never the same instant.
    after_it = next_boundary(schedule, after=ts(boundary))
    assert after_it is not None and after_it > ts(boundary)


def test_never_has_no_boundary():
    assert next_boundary("never", after=ts("2026-11-25 10:00:00")) is None
    assert due_boundary("never", season_started_at=0, now=ts("2030-01-01 00:00:00")) is None


@pytest.mark.parametrize(
    ("schedule", "started", "boundary"),
    [
        ("daily", "2026-11-25 09:00:00", "2026-11-26 00:00:00"),
        ("weekly", "2026-11-25 09:00:00", "2026-11-30 00:00:00"),
        ("monthly", "2026-11-25 09:00:00", "2026-12-01 00:00:00"),
    ],
)
def test_a_season_is_due_from_its_boundary_on_and_not_a_moment_before(schedule, started, boundary):
    start, edge = ts(started), ts(boundary)
    assert due_boundary(schedule, season_started_at=start, now=edge - 0.001) is None
    assert due_boundary(schedule, season_started_at=start, now=edge) == edge
    assert due_boundary(schedule, season_started_at=start, now=edge + 3600) == edge
    # The season that starts at the boundary is not due again until the next one.
    assert due_boundary(schedule, season_started_at=edge, now=edge + 1) is None


def test_many_missed_boundaries_make_one_reset_at_the_latest():
    started = ts("2026-11-20 12:00:00")
    now = ts("2026-11-25 15:00:00")  # five daily boundaries passed while the server was down
    due = due_boundary("daily", season_started_at=started, now=now)
    assert due == ts("2026-11-25 00:00:00")
    # The season that starts there is next due tomorrow: the reset happens once.
    assert due_boundary("daily", season_started_at=due, now=now) is None
    assert next_boundary("daily", after=due) == ts("2026-11-26 00:00:00")
