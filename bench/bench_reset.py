"""Archiving a 1,000,000-player board: how long the IOLoop is held while it happens.

Builds a SQLite file with one board of N players (default 1,000,000), loads it into a real
service (build_services, as run.py does), then resets the board while a probe on the loop
measures how late a 1 ms timer fires. Prints the loop lag during the reset (max, p99, p50),
the time until the reset answered (archive committed), and until the old standings were
freed, next to the same probe over an idle second for calibration.

    .venv/bin/python bench/bench_reset.py [N]
"""

from __future__ import annotations

import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa

from scoreboard.app import build_services
from scoreboard.config import Settings
from scoreboard.schemas import new_board
from scoreboard.store import Store
from scoreboard.tables import player_records, users

PROBE_S = 0.001
BATCH = 50_000


def populate(url: str, n: int) -> None:
    store = Store(url)
    store.migrate()
    store.create_board_sync(new_board({"id": "big", "title": "Big"}, created_at=time.time()))
    rng = random.Random(1)
    with store.engine.begin() as conn:
        for start in range(0, n, BATCH):
            ids = [f"p{i:07d}" for i in range(start, min(n, start + BATCH))]
            conn.execute(
                sa.insert(users),
                [{"id": u, "name": u, "role": "player", "created_at": 0.0} for u in ids],
            )
            conn.execute(
                sa.insert(player_records),
                [
                    {
                        "board_id": "big",
                        "user_id": u,
                        "score": rng.randrange(1_000_000),
                        "subscore": 0,
                        "reached_seq": i + 1,
                        "updated_at": 0.0,
                    }
                    for i, u in enumerate(ids, start)
                ],
            )
        conn.execute(sa.text("UPDATE boards SET seq = :n"), {"n": n})
    store.close()


MARKS: dict[str, float] = {}  # loop time of each phase's start
SPIKES: list[tuple[float, float]] = []  # (loop time, lag) of probes late by over 20 ms


async def probe(lags: list[float], stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        due = loop.time() + PROBE_S
        await asyncio.sleep(PROBE_S)
        lag = max(0.0, loop.time() - due)
        lags.append(lag)
        if lag > 0.02:
            SPIKES.append((loop.time(), lag))


def figures(lags: list[float]) -> str:
    ms = sorted(x * 1000 for x in lags)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    p50 = statistics.median(ms)
    return f"max {ms[-1]:.1f} ms, p99 {p99:.1f} ms, p50 {p50:.2f} ms ({len(ms)} probes)"


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/reset.db"
        t0 = time.perf_counter()
        populate(url, n)
        print(f"populated {n:,} players in {time.perf_counter() - t0:.1f} s")
        services = build_services(Settings(database_url=url, jwt_secret="b" * 40))
        services.store.start(asyncio.get_running_loop())
        t0 = time.perf_counter()
        await services.service.load()
        print(f"loaded in {time.perf_counter() - t0:.1f} s")
        service = services.service

        idle: list[float] = []
        stop = asyncio.Event()
        task = asyncio.create_task(probe(idle, stop))
        await asyncio.sleep(1.0)
        stop.set()
        await task
        print(f"loop lag, idle second:        {figures(idle)}")

        during: list[float] = []
        stop = asyncio.Event()
        task = asyncio.create_task(probe(during, stop))
        await asyncio.sleep(0.05)
        t0 = time.perf_counter()
        MARKS["reset"] = asyncio.get_running_loop().time()
        answer = await service.reset_board("big")
        MARKS["answered"] = asyncio.get_running_loop().time()
        answered = time.perf_counter() - t0
        while service._background:  # the old standings, freed a slice per loop turn
            await asyncio.sleep(0.01)
        freed = time.perf_counter() - t0
        stop.set()
        await task
        seasons = await service.seasons("big")
        print(f"reset answered in {answered:.2f} s (archive committed)")
        print(f"old standings freed in {freed:.2f} s")
        print(f"archived season {answer['season']}: {seasons['seasons'][0]['players']:,} players")
        print(f"loop lag, during the reset:   {figures(during)}")
        services.store.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000))
