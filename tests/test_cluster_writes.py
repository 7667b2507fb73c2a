"""scoreboard.cluster.pgwrites on a real PostgreSQL: several writers, one database decides.

Each ClusterWrites has a Store (an engine, a pool) of its own, as the processes of a cluster
would; they share one event loop here, but every transaction runs on its writer's own thread
and connection, so PostgreSQL sees them race exactly as it would from three processes.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa

from scoreboard import errors, ranking
from scoreboard.cluster.changes import RemovalChange, ResetChange, ScoreChange
from scoreboard.cluster.pgwrites import ClusterScore, ClusterWrites, ScoreCommitted
from scoreboard.schemas import BoardConfig, new_board
from scoreboard.store import Store
from scoreboard.tables import StoredAnswer, boards, player_records, seasons, submissions, users

pytestmark = pytest.mark.postgres

T = TypeVar("T")

#: Long enough for a writer thread to take a queued write and block on a held lock.
WRITER_PICKUP_S = 0.2
#: Generous: a loaded 2-core machine may be slow, never this slow.
DEADLINE_S = 30


def board(board_id: str = "b", **changes: Any) -> BoardConfig:
    made = new_board({"id": board_id, "title": f"Board {board_id}"}, created_at=1_790_000_000.0)
    return replace(made, **changes)


def score(
    user_id: str,
    value: int,
    *,
    board_id: str = "b",
    subscore: int = 0,
    name: str | None = None,
    actor: str = "server",
    key: str | None = None,
    now: float = 1_790_000_100.0,
) -> ClusterScore:
    return ClusterScore(
        board_id=board_id,
        user_id=user_id,
        name=name or user_id.title(),
        score=value,
        subscore=subscore,
        actor=actor,
        idempotency_key=key,
        request_hash=None if key is None else f"hash-of-{board_id}-{value}",
        metadata=None,
        now=now,
    )


def run_cluster(
    url: str,
    scenario: Callable[[list[ClusterWrites], Store], Awaitable[T]],
    *,
    processes: int = 3,
    configs: tuple[BoardConfig, ...] = (),
) -> T:
    """Run `scenario` with `processes` started ClusterWrites, each on its own Store."""

    async def main() -> T:
        stores = [Store(url) for _ in range(processes)]
        stores[0].migrate()
        for config in configs:
            stores[0].create_board_sync(config)
        writers = [ClusterWrites(store) for store in stores]
        for writer in writers:
            writer.start(asyncio.get_running_loop())
        try:
            return await asyncio.wait_for(scenario(writers, stores[0]), DEADLINE_S * 4)
        finally:
            for writer, store in zip(writers, stores, strict=True):
                writer.close()
                store.close()

    return asyncio.run(main())


def stored_records(store: Store, board_id: str) -> dict[str, tuple[Any, ...]]:
    r, u = player_records.c, users.c
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(r.user_id, u.name, r.score, r.subscore, r.reached_seq, r.updated_at)
            .join_from(player_records, users, u.id == r.user_id)
            .where(r.board_id == board_id)
        ).all()
    return {row[0]: tuple(row) for row in rows}


def board_row(store: Store, board_id: str) -> Any:
    with store.engine.connect() as conn:
        return conn.execute(sa.select(boards).where(boards.c.id == board_id)).one()


def logged(store: Store) -> dict[int, Any]:
    """Every submissions row by id."""
    with store.engine.connect() as conn:
        return {row.id: row for row in conn.execute(sa.select(submissions))}


# -- many writers, one board ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("operator", "order"),
    [("best", "desc"), ("best", "asc"), ("set", "desc"), ("incr", "desc")],
)
def test_three_writers_on_one_board_equal_a_sequential_replay(
    postgres_url: str, operator: str, order: str
) -> None:
    players = [f"p{i:02d}" for i in range(12)]  # few players: they overlap all the time
    rng = random.Random(f"{operator}-{order}")
    # 3 writers x 20 concurrent clients x 10 submissions one after another.
    plans = [
        [
            [
                score(
                    rng.choice(players),
                    rng.randrange(-50, 100),
                    subscore=rng.randrange(3),
                    now=1_790_000_000.0 + rng.random(),
                )
                for _ in range(10)
            ]
            for _ in range(20)
        ]
        for _ in range(3)
    ]

    async def scenario(
        writers: list[ClusterWrites], store: Store
    ) -> list[tuple[ClusterScore, ScoreCommitted]]:
        async def client(writer: ClusterWrites, plan: list[ClusterScore]) -> list[Any]:
            return [(s, await writer.commit_score(s)) for s in plan]

        done = await asyncio.gather(
            *(
                client(writer, plan)
                for writer, plans_of_writer in zip(writers, plans, strict=True)
                for plan in plans_of_writer
            )
        )
        return [pair for pairs in done for pair in pairs]

    config = board(operator=operator, order=order)
    results = run_cluster(postgres_url, scenario, configs=(config,))
    store = Store(postgres_url)
    try:
        rows = logged(store)
        final = stored_records(store, "b")
        head = board_row(store, "b")
    finally:
        store.close()

    assert len(results) == len(rows) == 600
    # Seqs: each change spends the next one, across all three writers, without a gap.
    change_seqs = sorted(c.change.seq for _, c in results if c.change is not None)
    assert change_seqs == list(range(1, head.seq + 1))
    # Replaying the committed submissions one by one in seq order (a submission that changed
    # nothing is logged with the seq it saw, after the change that spent it) decides the same.
    replay = ranking.Leaderboard(ranking.Order(order), ranking.Operator(operator))
    in_order = sorted(results, key=lambda sc: (rows[sc[1].submission_id].seq, sc[1].change is None))
    for s, committed in in_order:
        row = rows[committed.submission_id]
        assert (row.board_id, row.user_id, row.score, row.subscore) == (
            s.board_id,
            s.user_id,
            s.score,
            s.subscore,
        )
        outcome = replay.submit(s.user_id, s.name, s.score, s.subscore, now=s.now)
        assert outcome.seq == committed.seq == row.seq
        assert outcome.record == committed.record
        assert outcome.improved is (committed.change is not None)
        if committed.change is not None:
            assert committed.change == ScoreChange(
                "b", outcome.seq, s.user_id, s.name, outcome.score, outcome.subscore,
                outcome.seq, s.now,
            )  # fmt: skip
    expected = {
        user_id: (user_id, r.name, r.score, r.subscore, r.reached_seq, r.updated_at)
        for user_id in players
        if (r := replay.record(user_id)) is not None
    }
    assert final == expected
    assert head.seq == replay.seq
    if operator == "incr":  # exact sums: no increment lost or counted twice
        for user_id, (_, _, total, subtotal, _, _) in final.items():
            mine = [s for s, _ in results if s.user_id == user_id]
            assert (total, subtotal) == (sum(s.score for s in mine), sum(s.subscore for s in mine))


# -- bounds and missing boards -----------------------------------------------------------------


def refusal_in_one_process(config: BoardConfig, earlier: list[int], value: int) -> str:
    """The message `Leaderboard.submit` refuses `value` with, after `earlier` scores."""
    ranks = ranking.Leaderboard(ranking.Order(config.order), ranking.Operator(config.operator))
    bounds = {"min_score": config.min_score, "max_score": config.max_score}
    for earlier_value in earlier:
        ranks.submit("u", "U", earlier_value, 0, now=0.0, **bounds)
    with pytest.raises(errors.ValidationFailed) as refused:
        ranks.submit("u", "U", value, 0, now=0.0, **bounds)
    return str(refused.value.detail)


async def in_one_batch(
    writer: ClusterWrites, store: Store, *calls: Callable[[], Awaitable[Any]]
) -> list[Any]:
    """Run `calls` in one batch of `writer`: every board is held while they queue up behind
    an opener that the writer thread has taken; refusals are returned, not raised."""
    with store.engine.connect() as blocker:
        held = blocker.execute(sa.select(boards.c.id).with_for_update()).scalars().all()
        opener = asyncio.ensure_future(writer.remove_player(held[0], "nobody"))
        await asyncio.sleep(WRITER_PICKUP_S)  # the writer waits on the lock with the opener
        batch = [asyncio.ensure_future(call()) for call in calls]  # type: ignore[var-annotated]
        await asyncio.sleep(0)
        before = writer.batches_committed
        blocker.rollback()
    results = await asyncio.gather(*batch, return_exceptions=True)
    await opener
    assert writer.batches_committed - before <= 2  # the opener's, and these together
    return results


async def one_batch(
    writer: ClusterWrites, store: Store, scores: list[ClusterScore]
) -> list[ScoreCommitted | BaseException]:
    """Commit `scores` in one batch."""
    return await in_one_batch(writer, store, *(lambda s=s: writer.commit_score(s) for s in scores))


def test_bounds_refuse_alone_with_the_single_process_wording(postgres_url: str) -> None:
    bounded = board("bounded", min_score=0, max_score=100)
    summed = board("summed", operator="incr", max_score=100)
    unbounded = board("unbounded", operator="incr")
    big = ranking.MAX_SAFE_INTEGER

    async def scenario(writers: list[ClusterWrites], store: Store) -> None:
        writer = writers[0]
        results = await one_batch(
            writer,
            store,
            [
                score("u", 50, board_id="bounded"),
                score("u", 101, board_id="bounded"),  # over max_score
                score("v", -1, board_id="bounded"),  # under min_score
                score("v", 7, board_id="bounded"),
                score("u", 60, board_id="summed"),
                score("u", 50, board_id="summed"),  # the sum 110 is over max_score
                score("u", 40, board_id="summed"),  # 100 is within
                score("u", big, board_id="unbounded"),
                score("u", 1, board_id="unbounded"),  # the sum leaves ±(2^53-1)
                score("u", 1, board_id="nowhere"),
            ],
        )
        ok = [r for r in results if isinstance(r, ScoreCommitted)]
        assert [(r.record.user_id, r.record.score) for r in ok if r.record] == [
            ("u", 50), ("v", 7), ("u", 60), ("u", 100), ("u", big),
        ]  # fmt: skip
        refused = [str(r.detail) for r in results if isinstance(r, errors.ValidationFailed)]
        assert refused == [
            refusal_in_one_process(bounded, [], 101),
            refusal_in_one_process(bounded, [], -1),
            refusal_in_one_process(summed, [60], 50),
            refusal_in_one_process(unbounded, [big], 1),
        ]
        assert "at most 100, got 101" in refused[0] and "got 110" in refused[2]
        assert isinstance(results[-1], errors.NotFound)
        # Refused submissions wrote nothing: no seq, no log row.
        assert board_row(store, "summed").seq == 2
        assert sorted(r.user_id for r in logged(store).values() if r.board_id != "bounded") == [
            "u", "u", "u",
        ]  # fmt: skip

    run_cluster(postgres_url, scenario, processes=1, configs=(bounded, summed, unbounded))


def test_an_unchanged_pair_spends_no_seq_but_stores_a_new_name(postgres_url: str) -> None:
    async def scenario(writers: list[ClusterWrites], store: Store) -> None:
        first = await writers[0].commit_score(score("u", 10, name="Ann", now=5.0))
        worse = await writers[1].commit_score(score("u", 3, name="Ann B.", now=6.0))
        assert first.change is not None and first.seq == 1
        assert worse.change is None and worse.seq == 1 and worse.submission_id is not None
        assert worse.record == ranking.Record("u", "Ann B.", 10, 0, 1, 5.0)
        assert stored_records(store, "b") == {"u": ("u", "Ann B.", 10, 0, 1, 5.0)}
        assert logged(store)[worse.submission_id].seq == 1

    run_cluster(postgres_url, scenario, processes=2, configs=(board(),))


# -- idempotency keys across processes ---------------------------------------------------------


def test_the_same_key_from_two_writers_at_once_writes_once(postgres_url: str) -> None:
    async def scenario(writers: list[ClusterWrites], store: Store) -> None:
        for n in range(20):
            # Same board for even n (the board lock orders them), two boards for odd n (the
            # unique index does).
            other_board = "b" if n % 2 == 0 else "c"
            a, b = await asyncio.gather(
                writers[0].commit_score(score("u", n, key=f"k{n}")),
                writers[1].commit_score(score("u", n, key=f"k{n}", board_id=other_board)),
            )
            written, replayed = (a, b) if a.replay is None else (b, a)
            assert written.replay is None and written.submission_id is not None
            assert replayed.replay is not None and replayed.submission_id is None
            assert replayed.change is None and replayed.record is None
            first_hash = logged(store)[written.submission_id].request_hash
            # Committed, not yet answered: the stored answer is None until store_answer.
            assert replayed.replay in (
                StoredAnswer(first_hash, None),
                StoredAnswer(first_hash, {"n": n}),
            )
            await writers[0 if a is written else 1].store_answer(written.submission_id, {"n": n})
            again = await writers[2].commit_score(score("u", n, key=f"k{n}"))
            assert again.replay == StoredAnswer(first_hash, {"n": n})
        keyed = [row.idempotency_key for row in logged(store).values()]
        assert sorted(keyed) == sorted(f"k{n}" for n in range(20))

    run_cluster(postgres_url, scenario, configs=(board("b"), board("c")))


def test_a_key_held_by_an_open_transaction_waits_then_replays(postgres_url: str) -> None:
    async def scenario(writers: list[ClusterWrites], store: Store) -> None:
        writer = writers[0]
        # Another process's transaction has written the key and not committed yet.
        other = store.engine.connect()
        other.execute(
            sa.insert(submissions).values(
                board_id="c", user_id="u", actor="server", score=9, subscore=0,
                idempotency_key="k", request_hash="theirs", response={"theirs": True},
                seq=1, created_at=0.0,
            )
        )  # fmt: skip
        keyed = asyncio.ensure_future(writer.commit_score(score("u", 5, key="k")))
        neighbour = asyncio.ensure_future(writer.commit_score(score("v", 6)))
        await asyncio.sleep(WRITER_PICKUP_S * 2)
        assert not keyed.done() and not neighbour.done()  # waiting on the unique index
        await asyncio.to_thread(other.commit)
        other.close()
        replayed, written = await keyed, await neighbour
        assert replayed.replay == StoredAnswer("theirs", {"theirs": True})
        assert replayed.change is None and replayed.submission_id is None
        # The batch was decided again without the replay: its neighbour took seq 1.
        assert written.change is not None and written.seq == 1
        assert stored_records(store, "b") == {"v": ("v", "V", 6, 0, 1, 1_790_000_100.0)}

    run_cluster(postgres_url, scenario, processes=1, configs=(board("b"),))


def test_a_key_twice_in_one_batch_replays_the_first(postgres_url: str) -> None:
    async def scenario(writers: list[ClusterWrites], store: Store) -> None:
        first, second = await one_batch(
            writers[0], store, [score("u", 5, key="k"), score("u", 7, key="k")]
        )
        assert isinstance(first, ScoreCommitted) and isinstance(second, ScoreCommitted)
        assert first.change is not None and first.replay is None
        assert second.replay == StoredAnswer("hash-of-b-5", None)
        assert stored_records(store, "b")["u"][2] == 5

    run_cluster(postgres_url, scenario, processes=1, configs=(board("b"),))


# -- resets and removals ------------------------------------------------------------------------


def test_two_resets_of_one_season_archive_it_once(postgres_url: str) -> None:
    async def scenario(writers: list[ClusterWrites], store: Store) -> None:
        for n in range(5):
            await writers[n % 3].commit_score(score(f"u{n}", n))
        first, second = await asyncio.gather(
            *(
                writer.reset_board("b", reason="scheduled", ended_at=1_790_003_600.0, season=1)
                for writer in writers[:2]
            )
        )
        changes = [c for c in (first, second) if c is not None]
        assert changes == [ResetChange("b", 6, 2, 1_790_003_600.0)]
        assert (first is None) != (second is None)
        with store.engine.connect() as conn:
            archived = conn.execute(sa.select(seasons.c.season, seasons.c.players)).all()
        assert archived == [(1, 5)]
        head = board_row(store, "b")
        assert (head.seq, head.season, head.season_started_at) == (6, 2, 1_790_003_600.0)
        assert stored_records(store, "b") == {}
        # The next season's scores follow the reset's seq; a stale reset changes nothing.
        after = await writers[2].commit_score(score("u0", 1))
        assert after.seq == 7 and after.record is not None and after.record.reached_seq == 7
        assert await writers[2].reset_board("b", reason="manual", ended_at=0.0, season=1) is None
        with pytest.raises(errors.NotFound):
            await writers[0].reset_board("nowhere", reason="manual", ended_at=0.0, season=1)

    run_cluster(postgres_url, scenario, configs=(board("b"),))


def test_a_reset_between_scores_of_one_batch_splits_them_by_season(postgres_url: str) -> None:
    async def scenario(writers: list[ClusterWrites], store: Store) -> None:
        writer = writers[0]
        before, reset, after = await in_one_batch(
            writer,
            store,
            lambda: writer.commit_score(score("u", 5)),
            lambda: writer.reset_board("b", reason="manual", ended_at=9.0, season=1),
            lambda: writer.commit_score(score("u", 3)),
        )
        assert before.seq == 1 and reset == ResetChange("b", 2, 2, 9.0)
        # The new season starts empty: 3 is the player's first score there, not worse than 5.
        assert after.change is not None and after.record.score == 3 and after.seq == 3

    run_cluster(postgres_url, scenario, processes=1, configs=(board("b"),))


def test_removal_advances_the_seq_and_an_absent_player_is_none(postgres_url: str) -> None:
    async def scenario(writers: list[ClusterWrites], store: Store) -> None:
        await writers[0].commit_score(score("u", 5))
        await writers[1].commit_score(score("v", 6))
        removed, again = await asyncio.gather(
            writers[0].remove_player("b", "u"), writers[1].remove_player("b", "u")
        )
        assert [c for c in (removed, again) if c is not None] == [RemovalChange("b", 3, "u")]
        assert await writers[2].remove_player("b", "nobody") is None
        assert board_row(store, "b").seq == 3
        assert set(stored_records(store, "b")) == {"v"}
        with pytest.raises(errors.NotFound):
            await writers[2].remove_player("nowhere", "v")

    run_cluster(postgres_url, scenario, configs=(board("b"),))


# -- a deadlock with another process ------------------------------------------------------------


def test_a_batch_chosen_to_break_a_deadlock_is_tried_again(postgres_url: str) -> None:
    async def scenario(writers: list[ClusterWrites], store: Store) -> None:
        writer = writers[0]
        await writer.commit_score(score("u", 1))
        # Another process holds the user's row, and will want the board's row next.
        other = store.engine.connect()
        other.execute(sa.update(users).where(users.c.id == "u").values(name="Other"))
        task = asyncio.ensure_future(writer.commit_score(score("u", 5, name="Mine")))
        await asyncio.sleep(WRITER_PICKUP_S)  # our batch holds the board, waits for the user
        # PostgreSQL breaks the circle after deadlock_timeout (1 s), aborting the transaction
        # that waited first: ours. The other one gets the board, and lets go.
        await asyncio.to_thread(
            other.execute, sa.select(boards.c.id).where(boards.c.id == "b").with_for_update()
        )
        other.rollback()
        other.close()
        committed = await task
        assert committed.change is not None and committed.seq == 2
        assert stored_records(store, "b")["u"][1:3] == ("Mine", 5)
        assert store.unavailable() is None

    run_cluster(postgres_url, scenario, processes=1, configs=(board("b"),))


# -- the database away --------------------------------------------------------------------------


def test_an_unreachable_database_refuses_the_batch_as_not_ready(postgres_url: str) -> None:
    from server_process import free_port

    url = sa.make_url(postgres_url).set(port=free_port())  # nothing listens there

    async def scenario() -> None:
        store = Store(url.render_as_string(hide_password=False))
        writer = ClusterWrites(store)
        writer.start(asyncio.get_running_loop())
        try:
            results = await asyncio.gather(
                writer.commit_score(score("u", 1)),
                writer.remove_player("b", "u"),
                return_exceptions=True,
            )
            assert all(isinstance(r, errors.NotReady) for r in results), results
            assert store.unavailable() is not None
        finally:
            writer.close()
            store.close()

    asyncio.run(scenario())


def test_cluster_writes_refuse_sqlite(sqlite_url: str) -> None:
    store = Store(sqlite_url)
    try:
        with pytest.raises(ValueError, match="needs PostgreSQL"):
            ClusterWrites(store)
    finally:
        store.close()
