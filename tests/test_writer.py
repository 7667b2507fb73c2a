"""The group-commit writer (scoreboard/writer.py) on its own, with payloads that are plain ints."""

from __future__ import annotations

import asyncio
import threading

import pytest

from scoreboard import errors
from scoreboard.writer import GroupWriter


class Sink:
    """A commit that records batches, refuses negative payloads, and can be held shut."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()

    def commit(self, payloads: list[int]) -> None:
        self.gate.wait()
        if any(p < 0 for p in payloads):
            raise ValueError("negative")
        self.batches.append(payloads)


def refused(payload: int, exc: Exception) -> BaseException:
    return errors.Conflict(f"{payload} refused: {exc}")


def no_outage(exc: Exception) -> errors.ScoreboardError | None:
    return None


def test_an_outage_refuses_the_whole_batch_at_once_without_retrying():
    async def scenario() -> None:
        sink = Sink()
        calls: list[list[int]] = []

        def commit(payloads: list[int]) -> None:
            calls.append(payloads)
            sink.commit(payloads)

        def outage(exc: Exception) -> errors.ScoreboardError | None:
            return errors.NotReady("the database does not answer")

        writer: GroupWriter[int] = GroupWriter(commit, refused, outage=outage, max_pending=100)
        writer.start(asyncio.get_running_loop())
        sink.gate.clear()
        first = writer.submit(0)
        await asyncio.sleep(0.1)
        rest = [writer.submit(n) for n in (1, -2, 3)]
        sink.gate.set()
        await first
        results = await asyncio.gather(*rest, return_exceptions=True)
        assert all(isinstance(r, errors.NotReady) for r in results)
        assert calls == [[0], [1, -2, 3]]  # no one-by-one retry against a database that is away
        writer.close()

    asyncio.run(scenario())


def test_writes_queued_meanwhile_commit_together_and_a_bad_one_fails_alone():
    async def scenario() -> None:
        sink = Sink()
        writer = GroupWriter[int](sink.commit, refused, outage=no_outage, max_pending=100)
        writer.start(asyncio.get_running_loop())
        sink.gate.clear()
        first = writer.submit(0)
        await asyncio.sleep(0.1)  # the thread holds 0 and waits at the gate
        rest = [writer.submit(n) for n in (1, -2, 3)]
        sink.gate.set()
        await first
        results = await asyncio.gather(*rest, return_exceptions=True)
        assert results[0] is None and results[2] is None
        assert isinstance(results[1], errors.Conflict) and "-2 refused" in results[1].detail
        # [0] alone; then [1, -2, 3] failed as a batch and was redone one by one.
        assert sink.batches == [[0], [1], [3]]
        assert (writer.batches_committed, writer.writes_committed) == (3, 3)
        writer.close()

    asyncio.run(scenario())


def test_close_commits_what_is_queued_and_later_writes_are_refused():
    async def scenario() -> None:
        sink = Sink()
        writer = GroupWriter[int](sink.commit, refused, outage=no_outage, max_pending=2)
        writer.start(asyncio.get_running_loop())
        sink.gate.clear()
        queued = [writer.submit(1)]
        await asyncio.sleep(0.1)
        queued += [writer.submit(2), writer.submit(3)]
        with pytest.raises(errors.Overloaded):
            writer.submit(4)  # two already wait
        sink.gate.set()
        await asyncio.get_running_loop().run_in_executor(None, writer.close)
        await asyncio.gather(*queued)
        assert [p for batch in sink.batches for p in batch] == [1, 2, 3]
        with pytest.raises(errors.NotReady):
            writer.submit(5)

    asyncio.run(scenario())
