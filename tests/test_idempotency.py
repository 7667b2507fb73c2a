"""Idempotency keys in single-process mode: which look-ups skip the database, and replays."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event

from scoreboard.idempotency import KeyFilter


def test_the_filter_holds_every_pair_added_and_few_others() -> None:
    held = KeyFilter(20_000)
    for i in range(20_000):
        held.add(f"actor{i % 7}", f"key{i}")
    assert all(held.may_hold(f"actor{i % 7}", f"key{i}") for i in range(20_000))
    mistaken = sum(held.may_hold("actor0", f"other{i}") for i in range(20_000))
    assert mistaken < 20_000 * 0.03  # about 1 % at capacity


def test_the_filter_refuses_a_size_that_holds_nothing() -> None:
    with pytest.raises(ValueError, match="got 0"):
        KeyFilter(0)


class AnswerReads:
    """Counts the statements that read idempotency answers from the submissions table."""

    def __init__(self, engine: Any) -> None:
        self.count = 0
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().startswith("SELECT") and "submissions.response" in statement:
            self.count += 1


@pytest.mark.gen_test(timeout=30)
async def test_new_keys_of_a_new_actor_need_no_read_and_a_retry_still_replays(api) -> None:
    await api.make_board("b", operator="incr")
    reads = AnswerReads(api.services.store.engine)
    server = api.token("srv", role="server")

    async def post(key: str) -> Any:
        return await api.post(
            "/api/boards/b/scores",
            {"score": 5, "user_id": "p1"},
            token=server,
            headers={"Idempotency-Key": key},
        )

    first = await post("k1")
    await post("k2")
    assert first.status == 200
    assert reads.count == 0  # nobody wrote these keys: this process would have
    replay = await post("k1")
    assert replay.json == first.json  # answered from the database, not applied again
    assert reads.count == 1
    player = await api.get("/api/boards/b/players/p1", token=server)
    assert player.json["score"] == 10


@pytest.mark.gen_test(timeout=30)
async def test_keys_stored_before_a_restart_are_read_and_replayed(api, make_api) -> None:
    await api.make_board("b", operator="incr")
    server = api.token("srv", role="server")
    body = {"score": 5, "user_id": "p1"}
    first = await api.post(
        "/api/boards/b/scores", body, token=server, headers={"Idempotency-Key": "k1"}
    )
    # As after a crash between the commit and the answer: the next server finds the key.
    restarted = await make_api(database_url=api.services.settings.database_url)
    reads = AnswerReads(restarted.services.store.engine)
    replay = await restarted.post(
        "/api/boards/b/scores", body, token=server, headers={"Idempotency-Key": "k1"}
    )
    assert replay.json == first.json
    # This actor has keys from before the start: its new keys are read too, and are new.
    fresh = await restarted.post(
        "/api/boards/b/scores", body, token=server, headers={"Idempotency-Key": "k2"}
    )
    assert fresh.json["score"] == 10
    assert reads.count == 2
    # Another actor, with no older keys, is trusted from memory.
    other = restarted.token("other-srv", role="server")
    await restarted.post(
        "/api/boards/b/scores", body, token=other, headers={"Idempotency-Key": "k1"}
    )
    assert reads.count == 2
