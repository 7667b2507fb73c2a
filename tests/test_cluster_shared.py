"""What holds across the processes of a cluster: rate limits and who is online.

Each "process" is its own Redis client on a redis-server of the test's own (`private_redis`),
which a test stops and starts to play Redis going away. The end-to-end tests run two app
instances in the test's IOLoop on one Redis, each with its own database: the limits and the
figures tested here live in Redis only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from helpers import FakeSink
from redis.asyncio import Redis
from tornado.httpclient import HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from scoreboard.auth import Identity, Role
from scoreboard.cluster.limits import KEY_PREFIX, RedisLimiter
from scoreboard.cluster.presence import (
    EXPIRY_KEY,
    PROCESSES_KEY,
    Presence,
    ProcessFigures,
    decode_snapshot,
    encode_snapshot,
    merge_online,
    merge_stats,
    viewers_elsewhere,
)

pytestmark = pytest.mark.redis

DEADLINE_S = 10.0  # generous: the machine is shared and loaded


@contextlib.asynccontextmanager
async def clients(url: str, count: int) -> AsyncIterator[list[Redis]]:
    """`count` Redis clients on `url`, as `count` processes would each hold one."""
    made = [Redis.from_url(url) for _ in range(count)]
    try:
        yield made
    finally:
        for client in made:
            await client.aclose()


async def eventually(check: Any, what: str, timeout: float = DEADLINE_S) -> None:
    """Poll the async `check()` until it is true; fail naming `what` past the deadline."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.02)


class Clock:
    """A clock the test steps by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- the shared rate limiter -----------------------------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_a_players_burst_and_rate_hold_across_two_processes(private_redis):
    clock = Clock()
    async with clients(private_redis.url, 2) as (one, two):
        a = RedisLimiter(one, "score", rate=2, burst=5, shared_clock=clock)
        b = RedisLimiter(two, "score", rate=2, burst=5, shared_clock=clock)
        assert [await a.take("alice") for _ in range(3)] == [0.0] * 3
        assert [await b.take("alice") for _ in range(2)] == [0.0] * 2
        # The sixth take is refused on either process, with the time to the next token.
        assert await a.take("alice") == pytest.approx(0.5)
        assert await b.take("alice") == pytest.approx(0.5)
        assert await b.take("bob") == 0.0  # another player has a bucket of their own
        # Refused takes consumed nothing: half a second later there is exactly one token.
        clock.now += 0.5
        assert await b.take("alice") == 0.0
        assert await a.take("alice") == pytest.approx(0.5)
        clock.now += 0.2
        assert await a.take("alice") == pytest.approx(0.3)
        # A clock that steps back refunds nothing.
        clock.now -= 100
        assert await a.take("alice") > 0
        assert a.shared and b.shared


@pytest.mark.gen_test(timeout=60)
async def test_on_the_redis_clock_a_bucket_expires_once_it_would_be_full(private_redis):
    async with clients(private_redis.url, 2) as (one, two):
        slow = [RedisLimiter(c, "score", rate=0.01, burst=5) for c in (one, two)]
        waits = [await slow[i % 2].take("alice") for i in range(6)]
        assert waits[:5] == [0.0] * 5
        assert 99 < waits[5] <= 100  # a token every 100 s, and one was just taken
        key = f"{KEY_PREFIX}score:alice"
        # Five tokens short at 0.01/s: full again in 500 s, and the key lives that long.
        assert 499_000 < await one.pttl(key) <= 500_001
        fast = RedisLimiter(one, "login", rate=50, burst=1)
        assert await fast.take("10.0.0.1") == 0.0
        login_key = f"{KEY_PREFIX}login:10.0.0.1"
        assert 0 < await one.pttl(login_key) <= 21  # full again in 20 ms

        async def gone() -> bool:
            return not await one.exists(login_key)

        await eventually(gone, "the refilled bucket's key expired")
        assert await fast.take("10.0.0.1") == 0.0  # and a missing bucket is a full one


@pytest.mark.gen_test(timeout=60)
async def test_redis_away_falls_back_to_local_limits_then_shares_again(private_redis, caplog):
    async with clients(private_redis.url, 2) as (one, two):
        a = RedisLimiter(one, "score", rate=0.01, burst=2, retry_after=0.1)
        b = RedisLimiter(two, "score", rate=0.01, burst=2, retry_after=0.1)
        assert await a.take("alice") == 0.0
        private_redis.stop()
        with caplog.at_level(logging.INFO, logger="scoreboard.cluster.limits"):
            # No exception: this process's own buckets take over, with the same semantics.
            waits = [await a.take("carol") for _ in range(4)]
            assert waits[:2] == [0.0, 0.0] and all(w > 0 for w in waits[2:])
            assert not a.shared
            private_redis.start()

            async def shared_again() -> bool:
                await a.take("probe")
                return a.shared

            await eventually(shared_again, "the limiter went back to Redis")
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "per process" in warnings[0].getMessage()
        assert any("holds across processes" in r.getMessage() for r in caplog.records)
        # Shared again: both processes take from one bucket.
        assert await a.take("dave") == 0.0
        assert await b.take("dave") == 0.0
        assert await a.take("dave") > 0
        assert await b.take("dave") > 0


@pytest.mark.gen_test(timeout=60)
async def test_a_redis_that_never_answers_costs_one_timeout_then_takes_are_local():
    # A listening socket nobody reads: the connection opens, the command never gets an answer.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    try:
        async with clients(f"redis://127.0.0.1:{silent.getsockname()[1]}/0", 1) as (client,):
            limiter = RedisLimiter(client, "score", rate=1, burst=3, timeout=0.05)
            started = time.monotonic()
            waits = [await limiter.take("alice") for _ in range(4)]
            # One timeout, then local takes for retry_after (1 s): generous bound, loaded host.
            assert time.monotonic() - started < 2.0
            assert waits[:3] == [0.0] * 3 and waits[3] > 0
            assert not limiter.shared
    finally:
        silent.close()


# -- presence: the figures of every process ----------------------------------------------


class FakeHub:
    """A process's own live figures, in the shape of `Hub.presence_here()`."""

    def __init__(self, users: list[tuple[str, int, tuple[str, ...]]], anonymous: int = 0):
        self.users = users  # (user_id, connections, boards)
        self.anonymous = anonymous

    def presence_here(self) -> dict[str, Any]:
        boards: dict[str, list[str]] = {}
        for user_id, _, subscribed in self.users:
            for board_id in subscribed:
                boards.setdefault(board_id, []).append(user_id)
        return {
            "users": {user_id: count for user_id, count, _ in self.users},
            "names": {user_id: user_id.title() for user_id, _, _ in self.users},
            "anonymous": self.anonymous,
            "connections": sum(count for _, count, _ in self.users) + self.anonymous,
            "sent_per_s": 1.5,
            "received_per_s": 0.25,
            "boards": boards,
            "subscribers": {board_id: len(subs) for board_id, subs in boards.items()},
        }


def user(
    user_id: str, connections: int = 1, boards: tuple[str, ...] = ("b",)
) -> tuple[str, int, tuple[str, ...]]:
    return (user_id, connections, boards)


def test_figures_merge_across_processes():
    here = ProcessFigures.of("p1", FakeHub([user("alice", 2), user("bob")], 1).presence_here())
    there = FakeHub([user("alice", 1, ("c",)), user("carol", 3)], anonymous=2)
    others = [decode_snapshot("p2", encode_snapshot(there.presence_here()))]
    assert viewers_elsewhere(here.users, others) == 1 + 2  # carol, and two anonymous
    online = merge_online([here, *others], complete=True)
    assert online == {
        "users": [
            {"user_id": "alice", "name": "Alice", "connections": 3, "boards": ["b", "c"]},
            {"user_id": "carol", "name": "Carol", "connections": 3, "boards": ["b"]},
            {"user_id": "bob", "name": "Bob", "connections": 1, "boards": ["b"]},
        ],
        "anonymous": 3,
        "scope": "cluster",
        "processes": 2,
    }
    stats_here = {
        "boards": [
            {"id": "b", "players": 7, "subscribers": 2},
            {"id": "d", "players": 0, "subscribers": 0},
        ]
    }
    stats = merge_stats(stats_here, [here, *others], complete=True)
    assert stats["connections"] == 4 + 6
    assert stats["users_online"] == 3
    assert stats["messages_sent_per_s"] == 3.0 and stats["messages_received_per_s"] == 0.5
    assert stats["boards"] == [
        {"id": "b", "players": 7, "subscribers": 3},
        {"id": "d", "players": 0, "subscribers": 0},
    ]
    assert stats["top_users_by_connections"] == [
        {"user_id": "alice", "connections": 3},
        {"user_id": "carol", "connections": 3},
        {"user_id": "bob", "connections": 1},
    ]
    assert (stats["scope"], stats["processes"]) == ("cluster", 2)
    with pytest.raises(ValueError, match="version"):
        decode_snapshot("p3", b'{"v": 99}')
    with pytest.raises(ValueError, match="unreadable"):
        decode_snapshot("p3", b"[1, 2]")
    with pytest.raises(ValueError, match="users is not an object"):
        decode_snapshot("p3", encode_snapshot({**there.presence_here(), "users": [1]}))


def test_the_hubs_own_figures_are_what_presence_reads(make_services, io_loop):
    """Hub.presence_here() from real connections: what the other processes read."""
    services = io_loop.run_sync(make_services)
    hub = services.hub

    def open_as(sub: str | None, name: str | None = None):
        identity = (
            None if sub is None else Identity(sub=sub, role=Role.PLAYER, name=name, exp=2**40)
        )
        return hub.open(FakeSink(), identity)

    io_loop.run_sync(lambda: services.service.create_board({"id": "b", "title": "B"}))
    ranks = services.service.boards["b"].ranks
    first = open_as("alice", "Alice")
    open_as("alice", "Alice")
    open_as("bob")
    open_as(None)
    hub.subscribe(first, "b", ranks)
    here = hub.presence_here()
    assert here["users"] == {"alice": 2, "bob": 1}
    assert here["names"] == {"alice": "Alice", "bob": "bob"}
    assert (here["anonymous"], here["connections"]) == (1, 4)
    assert here["boards"] == {"b": ["alice"]} and here["subscribers"] == {"b": 1}
    # The merged listing of one process is the process's own listing.
    alone = merge_online([ProcessFigures.of("me", here)], complete=True)
    assert alone["users"] == hub.online_here()["users"]
    assert alone["anonymous"] == hub.online_here()["anonymous"]
    hub.closed(first, client_code=1000)
    assert hub.presence_here()["users"] == {"alice": 1, "bob": 1}
    assert hub.presence_here()["boards"] == {}


@pytest.mark.gen_test(timeout=60)
async def test_two_processes_see_each_other_and_a_dead_one_expires(private_redis):
    async with clients(private_redis.url, 3) as (one, two, three):
        hub_a = FakeHub([user("alice", 2)], anonymous=1)
        hub_b = FakeHub([user("alice", 1, ("c",)), user("bob")], anonymous=2)
        # Entries live 3 intervals (1.5 s): long enough for a loaded machine between two
        # exchanges, short enough to watch one expire.
        a = Presence(one, hub_a, interval=0.5, process_id="a")
        b = Presence(two, hub_b, interval=0.5, process_id="b")
        await a.exchange()
        await b.exchange()
        await a.exchange()
        for mine, them in ((a, "b"), (b, "a")):
            assert [f.process_id for f in mine.others] == [them] and mine.complete
        # alice is on both: counted once; bob elsewhere; anonymous summed.
        assert a.viewers_elsewhere() == 1 + 2  # bob and b's two anonymous
        assert b.viewers_elsewhere() == 0 + 1  # alice is here too; a's one anonymous
        online = a.online(hub_a.presence_here())
        assert online["users"][0] == {
            "user_id": "alice",
            "name": "Alice",
            "connections": 3,
            "boards": ["b", "c"],
        }
        assert (online["anonymous"], online["scope"], online["processes"]) == (3, "cluster", 2)
        assert b.online(hub_b.presence_here())["users"] == online["users"]

        # A process that stops cleanly leaves at once.
        c = Presence(three, FakeHub([user("carol")]), interval=0.5, process_id="c")
        await c.exchange()
        await a.exchange()
        assert {f.process_id for f in a.others} == {"b", "c"}
        await c.close()
        await a.exchange()
        assert [f.process_id for f in a.others] == ["b"]

        # b dies (no close): its entry expires 3 intervals after its last write.
        async def b_gone() -> bool:
            await a.exchange()
            return not a.others

        await eventually(b_gone, "the dead process's entry expired")
        assert a.viewers_elsewhere() == 0
        assert a.online(hub_a.presence_here())["processes"] == 1
        # When the last process stops, nothing is left behind in Redis.
        await a.close()
        await b.close()
        assert not await one.exists(PROCESSES_KEY, EXPIRY_KEY)


@pytest.mark.gen_test(timeout=60)
async def test_redis_away_gives_this_processs_own_figures(private_redis, caplog):
    async with clients(private_redis.url, 2) as (one, two):
        hub_a = FakeHub([user("alice")])
        a = Presence(one, hub_a, interval=1.0, process_id="a")
        b = Presence(two, FakeHub([user("bob")], anonymous=4), interval=1.0, process_id="b")
        await b.exchange()
        await a.exchange()
        assert a.viewers_elsewhere() == 5
        private_redis.stop()
        with caplog.at_level(logging.INFO, logger="scoreboard.cluster.presence"):
            for _ in range(3):
                await a.exchange()
            warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
            assert len(warnings) == 1 and "this process only" in warnings[0].getMessage()
            assert not a.complete and a.viewers_elsewhere() == 0
            here = hub_a.presence_here()
            assert a.online(here) == {
                "users": [{"user_id": "alice", "name": "Alice", "connections": 1, "boards": ["b"]}],
                "anonymous": 0,
                "scope": "process",
                "processes": 1,
            }
            stats = a.stats({"boards": []}, here)
            assert (stats["connections"], stats["scope"]) == (1, "process")
            private_redis.start()

            async def cluster_again() -> bool:
                # The first command on a connection Redis dropped may fail: the next works.
                await b.exchange()
                await a.exchange()
                return a.complete and b.complete

            await eventually(cluster_again, "both processes exchanged figures again")
        assert a.viewers_elsewhere() == 5
        assert any("cover the cluster again" in r.getMessage() for r in caplog.records)
        await a.close()
        await b.close()


@pytest.mark.gen_test(timeout=60)
async def test_the_exchange_loop_starts_and_stops_with_its_owner(private_redis):
    async with clients(private_redis.url, 1) as (client,):
        presence = Presence(client, FakeHub([user("alice")]), interval=0.05, process_id="a")
        presence.start()

        async def published() -> bool:
            return bool(await client.hexists(PROCESSES_KEY, "a"))

        await eventually(published, "the loop wrote this process's entry")
        await presence.close()
        assert not await client.hexists(PROCESSES_KEY, "a")
        assert presence._task is None


# -- end to end: two app instances on one Redis ------------------------------------------


async def ws(api, token: str, query: str = "") -> WebSocketClientConnection:
    url = api.ws_url + (f"?{query}" if query else "")
    request = HTTPRequest(url, headers={"Authorization": f"Bearer {token}"}, request_timeout=5)
    return await websocket_connect(request)


async def next_status(conn: WebSocketClientConnection, timeout: float = DEADLINE_S) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        raw = await asyncio.wait_for(conn.read_message(), max(0.01, deadline - time.monotonic()))
        assert raw is not None, "closed while waiting for connection_status"
        message = json.loads(raw)
        if message["type"] == "connection_status":
            return message["data"]


@pytest.mark.gen_test(timeout=90)
async def test_two_servers_share_user_count_online_and_rate_limits(
    private_redis, postgres_url, make_api
):
    settings = {
        "database_url": postgres_url,  # cluster mode: one PostgreSQL for both
        "redis_url": private_redis.url,
        "presence_interval": 0.5,
        "status_interval": 0.2,
        "score_rate": 0.01,
        "score_burst": 3,
        "login_burst": 2,
    }
    a = await make_api(**settings)
    b = await make_api(**settings)
    await a.make_board("b")

    async def b_has_the_board() -> bool:
        return (await b.get("/api/boards/b", token=b.admin)).status == 200

    await eventually(b_has_the_board, "the board made on A reaches B")
    alice = await ws(a, a.token("alice", name="Alice"), "board=b")
    bob = await ws(b, b.token("bob"), "board=b")
    try:
        # Each server counts the other's user: a status round brings alice the figure 2.
        while (await next_status(alice))["user_count"] != 2:
            pass

        async def listed_on_a() -> bool:
            answer = (await a.get("/api/admin/online", token=a.admin)).json
            return [u["user_id"] for u in answer["users"]] == ["alice", "bob"] and (
                answer["scope"],
                answer["processes"],
            ) == ("cluster", 2)

        await eventually(listed_on_a, "server A lists the users of both servers")

        async def counted_on_b() -> bool:
            stats = (await b.get("/api/admin/stats", token=b.admin)).json
            return (stats["connections"], stats["users_online"], stats["scope"]) == (
                2,
                2,
                "cluster",
            ) and stats["boards"] == [{"id": "b", "players": 0, "subscribers": 2}]

        await eventually(counted_on_b, "server B's figures cover both servers")

        # A player's burst of 3 holds across the two servers.
        carol = a.token("carol")
        for api in (a, b, a):
            answer = await api.post("/api/boards/b/scores", {"score": 1}, token=carol)
            assert answer.status == 200, answer.body
        for api in (b, a):
            refused = await api.post("/api/boards/b/scores", {"score": 2}, token=carol)
            assert refused.status == 429 and refused.json["code"] == "rate_limited"
            assert int(refused.headers["Retry-After"]) >= 99
        # Server tokens are still not limited.
        game = a.token("game", role="server")
        for _ in range(5):
            body = {"score": 3, "user_id": "carol"}
            assert (await b.post("/api/boards/b/scores", body, token=game)).status == 200

        # So does the log-in limit per address (a burst of 2).
        wrong = {"username": "nobody", "password": "not the password"}
        assert (await a.post("/api/auth/login", wrong)).status == 401
        assert (await b.post("/api/auth/login", wrong)).status == 401
        assert (await a.post("/api/auth/login", wrong)).status == 429
    finally:
        alice.close()
        bob.close()
