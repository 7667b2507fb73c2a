"""Batched look-ups: the keys asked for while one read runs are all read by the next one.

A read of its own per request costs a thread hand-off each way, a pool check-out, a BEGIN, the
statement and a ROLLBACK: with a few thousand score submissions a second, each asking for its
idempotency key and for the name of a player new to the board, those reads took most of the
server's CPU. A `BatchedLookup` runs one read at a time; keys asked for meanwhile wait, and the
next read fetches them all with one statement (the group commit's shape, for reads). An idle
server reads at once; a busy one reads more keys per read. What a read is, and its SQL, is the
caller's business (scoreboard/store.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
T = TypeVar("T")

#: Runs a blocking function off the loop (the store's read threads) and returns its result.
Runner = Callable[[Callable[[], dict[K, V]]], Awaitable[dict[K, V]]]


class BatchedLookup(Generic[K, V]):
    """`get(key)` answers with `fetch(keys)[key]` (None when absent), one fetch at a time.

    `fetch(keys)` is blocking, gets distinct keys, and returns what it found; `run` runs it
    off the loop. A fetch that raises fails every `get` it was reading for.
    """

    def __init__(self, fetch: Callable[[list[K]], dict[K, V]], run: Runner[K, V]) -> None:
        self._fetch = fetch
        self._run = run
        self._queued: list[tuple[K, asyncio.Future[V | None]]] = []
        self._reading: asyncio.Task[None] | None = None
        #: Reads run and keys they answered (for tests and the benchmark's notes).
        self.reads = 0
        self.keys_read = 0

    async def get(self, key: K) -> V | None:
        """The value stored for `key`, or None."""
        future: asyncio.Future[V | None] = asyncio.get_running_loop().create_future()
        self._queued.append((key, future))
        if self._reading is None:
            self._start()
        return await future

    def _start(self) -> None:
        batch, self._queued = self._queued, []
        self._reading = asyncio.get_running_loop().create_task(self._read(batch))

    async def _read(self, batch: list[tuple[K, asyncio.Future[V | None]]]) -> None:
        keys = list(dict.fromkeys(key for key, _ in batch))
        try:
            found = await self._run(lambda: self._fetch(keys))
        except asyncio.CancelledError:  # the loop is shutting down
            for _, future in batch:
                future.cancel()
            self._queued, waiting = [], self._queued
            for _, future in waiting:
                future.cancel()
            raise
        except Exception as exc:
            for _, future in batch:
                if not future.done():  # a caller that gave up (cancelled) is not answered
                    future.set_exception(exc)
        else:
            self.reads += 1
            self.keys_read += len(keys)
            for key, future in batch:
                if not future.done():
                    future.set_result(found.get(key))
        finally:
            self._reading = None
            if self._queued:
                self._start()
