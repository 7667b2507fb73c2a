"""The change channel on Redis: publish committed changes, receive everyone's.

One subscriber task owns the subscription's connection for the life of the process: it
subscribes, hands every record to `on_change`, and when the connection breaks it says Redis is
unreachable, waits (doubling pauses) and subscribes again. Messages published while it was
away are gone for good (pub/sub keeps nothing), so every return of the subscription, including
one that redis-py's own retry made silently, calls `on_resubscribed`: the caller then reads
every board back from the database.

Publishing uses the process's shared client. A publish that fails is not retried: the change
is committed already, and the subscribers that missed it are the ones that lost their
connection too, so they resynchronize when it comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio
from redis.exceptions import RedisError

from .changes import Change, decode, encode

log = logging.getLogger(__name__)

#: The one channel every process publishes its committed changes on and listens to.
CHANNEL = "scoreboard:changes"
RECONNECT_FIRST_S = 0.1  # the first pause before subscribing again; it doubles up to
RECONNECT_MAX_S = 2.0  # this, so a returning Redis is noticed within about two seconds
READ_TIMEOUT_S = 1.0  # the subscriber wakes this often when nothing arrives (to notice close)
PUBLISH_FAILURE_LOG_S = 10.0  # a Redis that stays away is logged at most this often


class ChangeBus:
    """Publishes change records and feeds those of every process to `on_change`."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        *,
        on_change: Callable[[Change], None],
        on_resubscribed: Callable[[], None],
        channel: str = CHANNEL,
    ) -> None:
        self._client = client
        self._on_change = on_change
        self._on_resubscribed = on_resubscribed
        self._channel = channel
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._lost = False  # the subscription broke since it was last established
        self._publish_failure_logged_at = -PUBLISH_FAILURE_LOG_S
        self.problem: str | None = (
            "Redis: not subscribed yet"  # None while the subscription is live
        )

    @property
    def connected(self) -> bool:
        """Whether the subscription is live (a change published now would reach us)."""
        return self.problem is None

    def start(self) -> None:
        """Start the subscriber task (once, on the running loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._subscribe_forever())

    async def wait_subscribed(self, timeout: float) -> bool:
        """Wait up to `timeout` s for the first subscription; False if Redis did not answer."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), timeout)
        return self._subscribed.is_set()

    async def publish(self, change: Change) -> bool:
        """Publish a committed change; False (logged, at most every 10 s) when Redis is away."""
        try:
            await self._client.publish(self._channel, encode(change))
        except (RedisError, OSError) as exc:
            now = time.monotonic()
            if now - self._publish_failure_logged_at >= PUBLISH_FAILURE_LOG_S:
                self._publish_failure_logged_at = now
                log.warning("cannot publish on Redis (%s); other processes will resync", exc)
            return False
        return True

    async def close(self) -> None:
        """Stop the subscriber and release its connection."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _subscribe_forever(self) -> None:
        pause = RECONNECT_FIRST_S
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            connection = None
            try:
                await pubsub.subscribe(self._channel)
                connection = pubsub.connection
                # redis-py may reconnect and resubscribe by itself after a failed read;
                # whatever was published in between is lost, so that too is a resync.
                if connection is not None:
                    connection.register_connect_callback(self._reconnected)
                self._up()
                pause = RECONNECT_FIRST_S
                while True:
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=READ_TIMEOUT_S
                    )
                    if message is not None and message["type"] == "message":
                        self._deliver(message["data"])
            except (RedisError, OSError) as exc:
                self._down(str(exc) or type(exc).__name__)
            finally:
                if connection is not None:
                    connection.deregister_connect_callback(self._reconnected)
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(pause)
            pause = min(pause * 2, RECONNECT_MAX_S)

    def _up(self) -> None:
        self.problem = None
        self._subscribed.set()
        if self._lost:
            self._lost = False
            log.info("Redis is back: reading every board back from the database")
            self._on_resubscribed()

    def _down(self, reason: str) -> None:
        if self.problem is None:
            log.warning("lost the Redis subscription (%s); retrying", reason)
        self.problem = f"Redis does not answer ({reason})"
        self._lost = True

    def _reconnected(self, _connection: Any) -> None:
        log.info("the Redis subscription reconnected: reading every board back")
        self._on_resubscribed()

    def _deliver(self, data: bytes) -> None:
        try:
            change = decode(data)
        except ValueError as exc:
            # From a process of another version: skipping it leaves a gap, which reads back.
            log.warning("ignored a change record: %s", exc)
            return
        self._on_change(change)
