"""Season schedules: when a board's `reset_schedule` ends a season, as pure date maths.

Boundaries are UTC: `daily` at 00:00, `weekly` on Monday 00:00, `monthly` on the 1st at 00:00;
`never` has none. Every function takes the time it reasons about as an argument (unix
seconds) and reads no clock, so the service can run them with whatever clock it was given
and the tests with one they control.

A server that was down over one or more boundaries performs one reset when it starts: the
season in force ends at the *latest* boundary that has passed (`due_boundary`), the next one
starts there, and its own next boundary lies in the future, so nothing is reset twice.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

NEVER = "never"
DAILY = "daily"
WEEKLY = "weekly"
MONTHLY = "monthly"
#: Every accepted `reset_schedule`, in the order the docs and the forms list them.
SCHEDULES = (NEVER, DAILY, WEEKLY, MONTHLY)

#: Why a season ended, as the seasons list says it.
REASON_MANUAL = "manual"  # POST /api/boards/{id}/reset or `run.py board reset`
REASON_SCHEDULED = "scheduled"  # the board's reset_schedule reached a boundary


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _floor(schedule: str, moment: datetime) -> datetime:
    """The latest boundary of `schedule` at or before `moment`."""
    midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if schedule == DAILY:
        return midnight
    if schedule == WEEKLY:
        return midnight - timedelta(days=midnight.weekday())  # Monday is weekday 0
    if schedule == MONTHLY:
        return midnight.replace(day=1)
    raise ValueError(f"schedule has no boundaries, got {schedule!r}")


def _step(schedule: str, boundary: datetime) -> datetime:
    """The boundary after `boundary` (itself a boundary of `schedule`)."""
    if schedule == DAILY:
        return boundary + timedelta(days=1)
    if schedule == WEEKLY:
        return boundary + timedelta(days=7)
    if boundary.month == 12:
        return boundary.replace(year=boundary.year + 1, month=1)
    return boundary.replace(month=boundary.month + 1)


def next_boundary(schedule: str, *, after: float) -> float | None:
    """The first boundary strictly after unix time `after`; None for `never`."""
    if schedule == NEVER:
        return None
    return _step(schedule, _floor(schedule, _utc(after))).timestamp()


def due_boundary(schedule: str, *, season_started_at: float, now: float) -> float | None:
    """The latest boundary in (season_started_at, now]: the season is over there; else None.

    However many boundaries passed (a server down for a week on a daily board), this is one
    boundary, so the missed reset happens once.
    """
    if schedule == NEVER:
        return None
    latest = _floor(schedule, _utc(now)).timestamp()
    return latest if latest > season_started_at else None
