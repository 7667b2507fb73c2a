"""BatchedLookup: the keys asked for while one read runs are read together by the next one."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from scoreboard.lookups import BatchedLookup

STORED = {f"k{i}": i for i in range(100)}


class Reads:
    """A blocking fetch over STORED that records each call and can be held back."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.release = threading.Event()
        self.release.set()
        self.fail: Exception | None = None

    def fetch(self, keys: list[str]) -> dict[str, int]:
        self.release.wait(10)
        self.calls.append(keys)
        if self.fail is not None:
            raise self.fail
        return {key: STORED[key] for key in keys if key in STORED}


@pytest.fixture
def threads():
    with ThreadPoolExecutor(2) as pool:
        yield pool


def runner(pool: ThreadPoolExecutor) -> Callable:
    async def run(fn):
        return await asyncio.get_running_loop().run_in_executor(pool, fn)

    return run


def test_keys_asked_during_a_read_are_read_together_by_the_next(threads):
    async def scenario() -> None:
        reads = Reads()
        lookup = BatchedLookup(reads.fetch, runner(threads))
        reads.release.clear()
        first = asyncio.ensure_future(lookup.get("k1"))
        await asyncio.sleep(0.01)  # the first read is running, held back
        rest = [asyncio.ensure_future(lookup.get(key)) for key in ("k2", "k3", "k2", "nobody")]
        reads.release.set()
        assert await first == 1
        assert await asyncio.gather(*rest) == [2, 3, 2, None]
        # One read for the first key, one for the four asked meanwhile (a key asked twice once).
        assert reads.calls == [["k1"], ["k2", "k3", "nobody"]]
        assert (lookup.reads, lookup.keys_read) == (2, 4)

    asyncio.run(scenario())


def test_a_failed_read_fails_every_key_it_was_reading_and_the_next_read_runs(threads):
    async def scenario() -> None:
        reads = Reads()
        lookup = BatchedLookup(reads.fetch, runner(threads))
        reads.fail = RuntimeError("the database is away")
        asked = [asyncio.ensure_future(lookup.get(key)) for key in ("k1", "k2")]
        answers = await asyncio.gather(*asked, return_exceptions=True)
        assert [str(a) for a in answers] == ["the database is away"] * 2
        reads.fail = None
        assert await lookup.get("k5") == 5

    asyncio.run(scenario())


def test_a_caller_that_gives_up_does_not_disturb_the_others(threads):
    async def scenario() -> None:
        reads = Reads()
        lookup = BatchedLookup(reads.fetch, runner(threads))
        reads.release.clear()
        gives_up = asyncio.ensure_future(lookup.get("k1"))
        waits = asyncio.ensure_future(lookup.get("k1"))
        await asyncio.sleep(0.01)
        gives_up.cancel()
        reads.release.set()
        assert await waits == 1
        with pytest.raises(asyncio.CancelledError):
            await gives_up

    asyncio.run(scenario())
