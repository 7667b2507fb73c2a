"""Benchmark of the pure leaderboard engine (scoreboard.ranking) at 1,000,000 players.

Not a test: run it on purpose, `.venv/bin/python bench/bench_ranking.py [--players N]`, and read
the table. The targets at 1M players (README, Benchmarks): rank lookup <= 5 us, score update
<= 15 us.
Each operation is timed one call at a time and the median (and p99) reported; the figures
include about one timer call of overhead, printed on the first line of the table.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import resource
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scoreboard.ranking import Leaderboard, Operator, Order, Record

SAMPLES = 100_000  # timed calls per operation: enough for a stable median and p99
SCORE_RANGE = 1_000_000  # scores drawn from [0, SCORE_RANGE): many ties at 1M players, as in play


def make_records(n: int, rng: random.Random, now: float) -> list[Record]:
    """n players with random (score, subscore) pairs, each reached at its own seq."""
    return [
        Record(
            f"user{i:07d}",
            f"Player user{i:07d}",
            rng.randrange(SCORE_RANGE),
            rng.randrange(100),
            i,
            now,
        )
        for i in range(1, n + 1)
    ]


def time_calls(calls: list[Callable[[], object]]) -> tuple[float, float]:
    """Median and p99 of one call each, in microseconds."""
    clock = time.perf_counter_ns
    times = []
    for call in calls:
        t0 = clock()
        call()
        times.append(clock() - t0)
    times.sort()
    return statistics.median(times) / 1000, times[int(len(times) * 0.99)] / 1000


def rss_mib() -> float:
    """Peak resident memory of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    """Build a 1M-player board and print the timing table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--players", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object instead of the table"
    )
    args = parser.parse_args()
    n = args.players
    rng = random.Random(args.seed)
    now = time.time()

    rss_before = rss_mib()
    records = make_records(n, rng, now)
    rss_records = rss_mib()
    board = Leaderboard(Order.DESC, Operator.SET)
    t0 = time.perf_counter()
    board.load(records, seq=n)
    load_s = time.perf_counter() - t0
    rss_board = rss_mib()
    # As the server should after start-up: move the long-lived objects out of the cyclic GC's
    # view, so that gen-2 collections do not walk millions of records while we time.
    gc.collect()
    gc.freeze()

    user_ids = [f"user{i:07d}" for i in range(1, n + 1)]
    pick = [rng.choice(user_ids) for _ in range(SAMPLES)]
    rows: list[tuple[str, float, float]] = []

    rows.append(("timer + partial overhead", *time_calls([partial(int)] * SAMPLES)))
    rows.append(("rank_of", *time_calls([partial(board.rank_of, u) for u in pick])))
    rows.append(("entry", *time_calls([partial(board.entry, u) for u in pick])))

    def submits(b: Leaderboard, start: float) -> list[Callable[[], object]]:
        return [
            partial(
                b.submit, u, "Player " + u, rng.randrange(SCORE_RANGE), rng.randrange(100),
                now=start + i,
            )
            for i, u in enumerate(pick)
        ]  # fmt: skip

    # `set` with a fresh random pair moves the player nearly every time: the full update path.
    rows.append(("submit set (moves)", *time_calls(submits(board, now))))
    rows.append(("around radius 5", *time_calls([partial(board.around, u, 5) for u in pick])))
    rows.append(("top(10)", *time_calls([board.top] * 10_000)))
    rows.append(("page(n/2, 100)", *time_calls([partial(board.page, n // 2, 100)] * 10_000)))

    for operator in (Operator.BEST, Operator.INCR):
        gc.unfreeze()
        board = Leaderboard(Order.DESC, operator)
        board.load(records, seq=n)
        gc.collect()
        gc.freeze()
        label = "submit best (~half keep)" if operator is Operator.BEST else "submit incr (moves)"
        rows.append((label, *time_calls(submits(board, now))))

    if args.json:  # for bench/bench_all.py
        print(
            json.dumps(
                {
                    "players": n,
                    "median_us": {name: median for name, median, _ in rows},
                    "p99_us": {name: p99 for name, _, p99 in rows},
                    "load_s": load_s,
                }
            )
        )
        return
    print(f"ranking.Leaderboard, {n:,} players, Python {sys.version.split()[0]}")
    print(f"{'operation':<26}{'median us':>12}{'p99 us':>12}")
    print("-" * 50)
    for name, median, p99 in rows:
        print(f"{name:<26}{median:>12.2f}{p99:>12.2f}")
    print("-" * 50)
    print(f"{'load() of all players':<26}{load_s:>12.3f} s")
    print(f"{'resident memory':<26}{rss_records - rss_before:>10.0f} MiB records")
    print(f"{'':<26}{rss_board - rss_records:>10.0f} MiB board (dict + sorted keys)")


if __name__ == "__main__":
    main()
