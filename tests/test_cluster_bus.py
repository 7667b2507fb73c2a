"""The change channel (scoreboard.cluster.bus) against a real redis-server of the test's own."""

from __future__ import annotations

import asyncio

import pytest
from helpers import until

from scoreboard.app import redis_client
from scoreboard.cluster.bus import ChangeBus
from scoreboard.cluster.changes import BoardDeleted, Change, ScoreChange

pytestmark = pytest.mark.redis


def test_changes_reach_every_subscriber_and_a_lost_subscription_asks_for_a_resync(private_redis):
    async def scenario() -> None:
        received: dict[str, list[Change]] = {"a": [], "b": []}
        resyncs = {"a": 0, "b": 0}
        clients = [redis_client(private_redis.url) for _ in received]
        buses = {}
        for name, client in zip(received, clients, strict=True):

            def resync(name: str = name) -> None:
                resyncs[name] += 1

            buses[name] = ChangeBus(client, on_change=received[name].append, on_resubscribed=resync)
        try:
            for bus in buses.values():
                bus.start()
                assert await bus.wait_subscribed(10)
                assert bus.connected
            change = ScoreChange("b1", 4, "u", "U", 10, 0, 4, 1.5)
            assert await buses["a"].publish(change)
            await until("both got it", lambda: all(r == [change] for r in received.values()))
            assert resyncs == {"a": 0, "b": 0}

            private_redis.stop()
            await until("the loss noticed", lambda: not any(b.connected for b in buses.values()))
            assert "Redis" in (buses["a"].problem or "")
            assert not await buses["b"].publish(BoardDeleted("b1"))  # refused, not raised

            private_redis.start()
            await until("subscribed again", lambda: all(b.connected for b in buses.values()))
            assert resyncs == {"a": 1, "b": 1}
            assert await buses["b"].publish(BoardDeleted("b1"))
            await until("delivered after", lambda: all(len(r) == 2 for r in received.values()))
            assert received["a"][1] == BoardDeleted("b1")
        finally:
            for bus in buses.values():
                await bus.close()
            for client in clients:
                await client.aclose()

    asyncio.run(scenario())


def test_a_record_it_cannot_read_is_skipped(private_redis):
    async def scenario() -> None:
        received: list[Change] = []
        client = redis_client(private_redis.url)
        bus = ChangeBus(client, on_change=received.append, on_resubscribed=lambda: None)
        try:
            bus.start()
            assert await bus.wait_subscribed(10)
            await client.publish("scoreboard:changes", b'{"v": 99, "kind": "score"}')
            await client.publish("scoreboard:changes", b"not json")
            await bus.publish(BoardDeleted("x"))
            await until("the good one", lambda: received == [BoardDeleted("x")])
        finally:
            await bus.close()
            await client.aclose()

    asyncio.run(scenario())


def test_deployments_on_two_databases_of_one_redis_do_not_hear_each_other(private_redis):
    """Channels are shared by every database of a Redis server; the bus's name holds the db."""

    async def scenario() -> None:
        heard: dict[int, list[Change]] = {1: [], 2: []}
        clients = {db: redis_client(f"redis://127.0.0.1:{private_redis.port}/{db}") for db in heard}
        buses = {
            db: ChangeBus(client, on_change=heard[db].append, on_resubscribed=lambda: None)
            for db, client in clients.items()
        }
        try:
            for bus in buses.values():
                bus.start()
                assert await bus.wait_subscribed(10)
            assert await buses[1].publish(BoardDeleted("one"))
            assert await buses[2].publish(BoardDeleted("two"))
            await until("each heard its own", lambda: all(heard.values()))
            await asyncio.sleep(0.2)  # room for a stray delivery to arrive, were there one
            assert heard == {1: [BoardDeleted("one")], 2: [BoardDeleted("two")]}
        finally:
            for bus in buses.values():
                await bus.close()
            for client in clients.values():
                await client.aclose()

    asyncio.run(scenario())
