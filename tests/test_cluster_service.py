"""The cluster service in one test process: two services on one PostgreSQL and one Redis.

What a lost record, or a scheduled reset that every process attempts, does to each service's
boards. (tests/test_cluster.py runs real processes; these need hooks into one.)
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest
from helpers import until

from scoreboard.auth import Identity, Role
from scoreboard.cluster.pgwrites import ClusterScore
from scoreboard.errors import NotFound

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.gen_test(timeout=60)]

SERVER = Identity(sub="game", role=Role.SERVER, name=None, exp=2**40)


def standings(service, board_id: str) -> list[tuple[str, int]]:
    return [
        (e["user_id"], e["score"])
        for e in service.leaderboard(board_id, limit=1000, offset=0)["entries"]
    ]


@pytest.fixture
def two_services(io_loop, make_services, postgres_url, private_redis):
    """Two cluster services ("processes") in this test's loop; drained at the end."""
    made = []

    async def make():
        for _ in range(2):
            services = await make_services(database_url=postgres_url, redis_url=private_redis.url)
            made.append(services)
        return [s.service for s in made]

    yield make
    for services in made:
        io_loop.run_sync(lambda s=services: s.service.drain(0))


async def test_a_record_that_never_arrives_is_read_back(two_services):
    a, b = await two_services()
    await a.create_board({"id": "b", "title": "B"})
    await until("the board on b", lambda: "b" in b.boards)
    # b commits a change and never publishes it, as if Redis had dropped the message.
    silent = ClusterScore("b", "quiet", "quiet", 50, 0, "game", None, None, None, time.time())
    committed = await b.writes.commit_score(silent)
    assert committed.change is not None and committed.change.seq == 1
    # a's own next change (seq 2) waits for seq 1, which never comes: a reads the board back.
    answer = await a.submit_score(SERVER, "b", {"user_id": "loud", "score": 70})
    assert (answer["seq"], answer["rank"]) == (2, 1)
    assert standings(a, "b") == [("loud", 70), ("quiet", 50)]
    await until("b caught up", lambda: standings(b, "b") == standings(a, "b"))


async def test_a_scheduled_reset_every_process_attempts_happens_once(two_services):
    a, b = await two_services()
    start = datetime(2026, 11, 25, 10, tzinfo=UTC).timestamp()
    for service in (a, b):
        service.clock = lambda: start
    await a.create_board({"id": "d", "title": "Daily", "reset_schedule": "daily"})
    await until("the board on b", lambda: "d" in b.boards)
    await until("b has the schedule", lambda: b.boards["d"].config.reset_schedule == "daily")
    await a.submit_score(SERVER, "d", {"user_id": "p", "score": 5})
    await until("b has the score", lambda: standings(b, "d") == [("p", 5)])
    after = datetime(2026, 11, 26, 0, 0, 1, tzinfo=UTC).timestamp()
    for service in (a, b):
        service.clock = lambda: after
    await asyncio.gather(a.run_due_resets(), b.run_due_resets())
    for service in (a, b):
        await until("season 2", lambda s=service: s.boards["d"].season == 2)
        assert standings(service, "d") == []
        archived = await service.seasons("d")
        assert [(s["season"], s["players"], s["reason"]) for s in archived["seasons"]] == [
            (1, 1, "scheduled")
        ]
    assert a.boards["d"].ranks.seq == b.boards["d"].ranks.seq == 2


async def test_a_score_for_a_board_made_elsewhere_a_moment_ago_is_not_a_404(two_services):
    a, b = await two_services()
    heard = b._received

    def deaf_to_new_boards(change) -> None:
        # As if the record announcing the board were still on its way from Redis.
        if getattr(change, "board_id", None) != "fresh":
            heard(change)

    b.bus._on_change = deaf_to_new_boards
    await a.create_board({"id": "fresh", "title": "Fresh"})
    assert "fresh" not in b.boards
    answer = await b.submit_score(SERVER, "fresh", {"user_id": "early", "score": 3})
    assert (answer["board"], answer["rank"], answer["seq"]) == ("fresh", 1, 1)
    assert standings(b, "fresh") == [("early", 3)]
    # A board nobody made is still a 404, and leaves nothing behind.
    with pytest.raises(NotFound):
        await b.submit_score(SERVER, "never-made", {"user_id": "x", "score": 1})
    assert "never-made" not in b.boards
