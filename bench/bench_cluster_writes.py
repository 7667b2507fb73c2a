"""Cluster writes on PostgreSQL: submissions committed per second by several processes.

Each writer is a process of its own (a Store, a ClusterWrites and an event loop, as a cluster
process has) running `--in-flight` clients that each submit a score, then store its answer,
one after another: the whole database work of a submission in cluster mode. Run once with
every writer on one board (all their transactions queue on that board's row lock) and once
spread over `--boards` boards, and print submissions/s, the mean batch per transaction and
the commit latency.

    .venv/bin/python bench/bench_cluster_writes.py [--database-url URL] [--seconds 5]

Without --database-url a scratch database is made on the local PostgreSQL and dropped after.
Not a test: run it on purpose and read the table.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scoreboard.cluster.pgwrites import ClusterScore, ClusterWrites
from scoreboard.schemas import new_board
from scoreboard.store import Store

PLAYERS_PER_BOARD = 1000  # players overlap across writers, as on a busy board
WARM_UP_S = 1.0  # connections made and first batches out of the way before counting


def writer_process(
    url: str, board_ids: list[str], in_flight: int, start_at: float, seconds: float, seed: int
) -> dict[str, Any]:
    """One cluster process: `in_flight` clients submitting until the window closes."""

    async def main() -> dict[str, Any]:
        store = Store(url)
        writes = ClusterWrites(store)
        writes.start(asyncio.get_running_loop())
        rng = random.Random(seed)
        count_from, count_until = start_at + WARM_UP_S, start_at + WARM_UP_S + seconds
        latencies: list[float] = []
        counted = 0

        async def client() -> None:
            nonlocal counted
            while time.time() < count_until:
                board_id = rng.choice(board_ids)
                began = time.perf_counter()
                committed = await writes.commit_score(
                    ClusterScore(
                        board_id=board_id,
                        user_id=f"p{rng.randrange(PLAYERS_PER_BOARD)}",
                        name="Player",
                        score=rng.randrange(1_000_000),
                        subscore=0,
                        actor="bench",
                        idempotency_key=uuid.uuid4().hex,
                        request_hash="h",
                        metadata=None,
                        now=time.time(),
                    )
                )
                assert committed.submission_id is not None
                await writes.store_answer(committed.submission_id, {"seq": committed.seq})
                if count_from <= time.time() < count_until:
                    counted += 1
                    latencies.append(time.perf_counter() - began)

        await asyncio.sleep(max(0.0, start_at - time.time()))
        batches_before = writes.batches_committed
        writes_before = writes.writes_committed
        await asyncio.gather(*(client() for _ in range(in_flight)))
        batches = writes.batches_committed - batches_before
        writes_done = writes.writes_committed - writes_before
        writes.close()
        store.close()
        return {
            "counted": counted,
            "latencies": latencies,
            "batch": writes_done / batches if batches else 0.0,
        }

    return asyncio.run(main())


def scenario(url: str, *, writers: int, in_flight: int, boards: int, seconds: float) -> None:
    board_ids = [f"bench{n}" for n in range(boards)]
    start_at = time.time() + 2.0  # every process connected and waiting by then
    args = [(url, board_ids, in_flight, start_at, seconds, n) for n in range(writers)]
    with multiprocessing.get_context("spawn").Pool(writers) as pool:
        results = pool.starmap(writer_process, args)
    total = sum(r["counted"] for r in results)
    latencies = sorted(x for r in results for x in r["latencies"])
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    batch = statistics.mean(r["batch"] for r in results)
    print(
        f"| {writers} writers x {in_flight} in flight | {boards:>3} board(s) "
        f"| {total / seconds:>8.0f}/s | {batch:>5.1f} | {p50:>6.1f} ms | {p99:>6.1f} ms |"
    )


def scratch_database() -> tuple[str, Any]:
    import psycopg
    from psycopg import sql

    name = f"scoreboard_bench_{uuid.uuid4().hex[:12]}"
    admin = psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True)
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def drop() -> None:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        admin.close()

    return f"postgresql+psycopg://postgres@127.0.0.1/{name}", drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="an empty PostgreSQL database to write into")
    parser.add_argument("--writers", type=int, default=3, help="processes (default 3)")
    parser.add_argument("--in-flight", type=int, default=50, help="clients per process")
    parser.add_argument("--boards", type=int, default=10, help="boards of the spread run")
    parser.add_argument("--seconds", type=float, default=5.0, help="counted time per run")
    options = parser.parse_args()
    url, drop = (options.database_url, None) if options.database_url else scratch_database()
    try:
        store = Store(url)
        store.migrate()
        for n in range(options.boards):
            store.create_board_sync(new_board({"id": f"bench{n}", "title": "Bench"}, created_at=0))
        store.close()
        print(
            "each submission: commit_score, then store_answer (two queued writes);"
            " batch = writes per transaction"
        )
        print("| writers | boards | submissions | batch | p50 | p99 |")
        print("|---|---|---|---|---|---|")
        for boards in (1, options.boards):
            scenario(
                url,
                writers=options.writers,
                in_flight=options.in_flight,
                boards=boards,
                seconds=options.seconds,
            )
    finally:
        if drop is not None:
            drop()


if __name__ == "__main__":
    main()
