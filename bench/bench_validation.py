"""Micro-benchmark of checking a score body: the validation step of every score post.

Not a test: run it on purpose, `.venv/bin/python bench/bench_validation.py`, and read the table.
It times `ScoreboardService.parse_score` (permission and value checks of a submission, the
same call HTTP posts and WebSocket `submit_score` make) on typical bodies, one call at a time,
and prints the median and p99 in microseconds. Compare figures taken in one run of this machine
(it is shared, and its speed differs from day to day): run it before and after a change.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scoreboard.auth import Identity, Role
from scoreboard.ranking import Leaderboard, Operator, Order
from scoreboard.service import BoardState, ScoreboardService

SAMPLES = 200_000  # timed calls per body: enough for a stable median and p99
BODIES: dict[str, dict[str, Any]] = {
    "score only (a player)": {"score": 12345},
    "score, subscore, user_id (a game server)": {
        "score": 12345,
        "subscore": 7,
        "user_id": "u4242",
    },
    "with 100 bytes of metadata": {
        "score": 12345,
        "subscore": 7,
        "metadata": {"map": "dust2", "kills": 17, "weapon": "awp", "round": 12, "x": "y" * 30},
    },
}


def board_state() -> BoardState:
    """A board as the service holds it (the config type moved modules; find it either way)."""
    try:
        from scoreboard.schemas import BoardConfig
    except ImportError:
        from scoreboard.store import BoardConfig  # type: ignore[no-redef,attr-defined]
    config = BoardConfig(
        id="b",
        title="Bench",
        order="desc",
        operator="best",
        min_score=None,
        max_score=None,
        player_submissions=True,
        reset_schedule="never",
        score_format="integer",
        created_at=0.0,
    )
    return BoardState(config, Leaderboard(Order.DESC, Operator.BEST))


def main() -> None:
    state = board_state()
    parse = ScoreboardService.parse_score
    clock = time.perf_counter_ns
    overhead = []
    for _ in range(SAMPLES):
        t0 = clock()
        overhead.append(clock() - t0)
    print(f"{'body':<44} {'median µs':>10} {'p99 µs':>8}")
    print(f"{'(timer overhead, included below)':<44} {statistics.median(overhead) / 1000:>10.2f}")
    for label, body in BODIES.items():
        role = Role.SERVER if "user_id" in body else Role.PLAYER
        identity = Identity(sub="alice", role=role, name=None, exp=0.0)
        parse(None, identity, state, body)  # type: ignore[arg-type]  # warm up; self is unused
        times = []
        for _ in range(SAMPLES):
            t0 = clock()
            parse(None, identity, state, body)  # type: ignore[arg-type]
            times.append(clock() - t0)
        times.sort()
        median = statistics.median(times) / 1000
        p99 = times[int(len(times) * 0.99)] / 1000
        print(f"{label:<44} {median:>10.2f} {p99:>8.2f}")


if __name__ == "__main__":
    main()
