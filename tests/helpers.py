"""Helpers shared by the test modules (plain functions and fakes, not fixtures)."""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from scoreboard.errors import ValidationFailed


def delta(before: dict[str, float], after: dict[str, float], name: str) -> float:
    """How much the metric sample `name` moved between two `metric_values()` reads."""
    return after.get(name, 0.0) - before.get(name, 0.0)


async def until(what: str, condition: Callable[[], bool], timeout: float = 20) -> None:
    """Poll `condition()` on the running loop until it is true; fail naming `what` after
    `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def refusal(check: Callable[[Any], Any], value: Any) -> str:
    """The detail of the 422 ValidationFailed that `check(value)` raises."""
    with pytest.raises(ValidationFailed) as caught:
        check(value)
    assert caught.value.status == 422 and caught.value.code == "validation_failed"
    return caught.value.detail


class FakeSink:
    """A socket that accepts `room` bytes, then queues; `drain()` plays the peer reading."""

    def __init__(self, room: int = 10**9) -> None:
        self.room = room
        self.delivered: list[bytes] = []
        self.queue: list[bytes] = []
        self.flushed = 0
        self.closed_with: int | None = None
        self.aborted = False
        self.kernel = 0  # what the "kernel" holds unsent (SIOCOUTQ)

    def send_frame(self, data: bytes) -> bool:
        if not self.queue and len(data) <= self.room:
            self.room -= len(data)
            self.delivered.append(data)
            return True
        self.queue.append(data)
        return False

    def unsent_bytes(self) -> int:
        return sum(map(len, self.queue))

    def flushed_bytes(self) -> int:
        return self.flushed

    def kernel_unsent_bytes(self) -> int:
        return self.kernel

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        self.closed_with = code

    def abort(self) -> None:
        self.aborted = True

    def drain(self) -> None:
        self.delivered.extend(self.queue)
        self.flushed += self.unsent_bytes()
        self.queue.clear()
        self.room = 10**9


def split_frames(blob: bytes) -> list[dict]:
    """Every JSON message in a run of frames."""
    out = []
    while blob:
        length, offset = blob[1] & 0x7F, 2
        if length == 126:
            (length,) = struct.unpack("!H", blob[2:4])
            offset = 4
        out.append(orjson.loads(blob[offset : offset + length]))
        blob = blob[offset + length :]
    return out
