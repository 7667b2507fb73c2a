"""scoreboard.store against real databases: a SQLite file and, where it runs, PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from scoreboard import errors, ranking
from scoreboard import store as store_module
from scoreboard.schemas import BoardConfig, new_board
from scoreboard.store import Store, make_engine
from scoreboard.tables import LoadedBoard, ScoreWrite, StoredAnswer, UserRow, metadata

T = TypeVar("T")

# Long enough for the writer thread to pick up a queued write and block on a held lock.
WRITER_PICKUP_S = 0.2


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_url")


def run(url: str, scenario: Callable[[Store], Awaitable[T]], **options: Any) -> T:
    """Run `scenario` with a migrated, started Store on a fresh event loop; close it after."""

    async def main() -> T:
        store = Store(url, **options)
        store.migrate()
        store.start(asyncio.get_running_loop())
        try:
            return await scenario(store)
        finally:
            store.close()

    return asyncio.run(main())


def board(board_id: str = "b", **changes: Any) -> BoardConfig:
    """A board with every default setting (as the API would make it), then `changes`."""
    made = new_board({"id": board_id, "title": f"Board {board_id}"}, created_at=1_790_000_000.25)
    return replace(made, **changes)


def write(
    n: int,
    *,
    board_id: str = "b",
    user_id: str | None = None,
    name: str | None = None,
    score: int | None = None,
    seq: int | None = None,
    improved: bool = True,
    key: str | None = None,
    actor: str = "server",
) -> ScoreWrite:
    """The n-th score write of a test; every field derives from n unless given."""
    user_id = user_id or f"user{n}"
    score = n * 10 if score is None else score
    seq = n if seq is None else seq
    return ScoreWrite(
        board_id=board_id,
        user_id=user_id,
        user_name=name or user_id.title(),
        score=score,
        subscore=n % 3,
        reached_seq=seq,
        updated_at=1_790_000_000.0 + n / 8,
        seq=seq,
        improved=improved,
        actor=actor,
        idempotency_key=key,
        request_hash=f"hash-{n}" if key else None,
        response={"board": board_id, "user_id": user_id, "score": score, "seq": seq},
        submitted_score=score,
        submitted_subscore=n % 3,
        metadata={"n": n} if n % 2 else None,
    )


def scalar(url: str, query: str, **params: Any) -> Any:
    """One value read through a separate engine (not the store under test)."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(query), params).scalar()
    finally:
        engine.dispose()


def block_writes(url: str) -> Callable[[], None]:
    """Hold the database's write lock from outside the store; returns the release function.

    While it is held the writer thread waits inside its transaction, so later writes queue up
    behind it: that makes the composition of the next batch certain.
    """
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        conn = sqlite3.connect(parsed.database, isolation_level=None, check_same_thread=False)
        conn.execute("BEGIN IMMEDIATE")

        def release() -> None:
            conn.execute("ROLLBACK")
            conn.close()

        return release
    import psycopg

    pg = psycopg.connect(
        host=parsed.host, port=parsed.port, user=parsed.username, dbname=parsed.database
    )
    pg.execute("LOCK TABLE users IN EXCLUSIVE MODE")  # every score write upserts a user first

    def release_pg() -> None:
        pg.rollback()
        pg.close()

    return release_pg


def records_by_user(loaded: LoadedBoard) -> dict[str, ranking.Record]:
    return {r.user_id: r for r in loaded.records}


# -- schema ---------------------------------------------------------------------------------


def test_migrate_creates_the_schema_on_an_empty_database(db_url: str) -> None:
    store = Store(db_url)
    try:
        store.migrate()
        store.migrate()  # already at head: nothing to do
        with store.engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
            version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
            # The migration spells out its own DDL; it must still build exactly the tables
            # the store's code uses.
            diff = compare_metadata(
                MigrationContext.configure(conn, opts={"compare_type": True}), metadata
            )
    finally:
        store.close()
    assert tables == {
        "alembic_version",
        "users",
        "boards",
        "player_records",
        "submissions",
        "server_settings",
        "seasons",
        "season_entries",
    }
    assert version == "0004"
    assert diff == []


def test_sqlite_connections_use_wal_and_full_sync(sqlite_url: str) -> None:
    expected = {"journal_mode": "wal", "synchronous": 2, "foreign_keys": 1, "busy_timeout": 5000}
    store = Store(sqlite_url)
    try:
        store.migrate()
        # Two connections at once: the pragmas are set on every connection, not just one.
        with store.engine.connect() as first, store.engine.connect() as second:
            for conn in (first, second):
                got = {name: conn.exec_driver_sql(f"PRAGMA {name}").scalar() for name in expected}
                assert got == expected
    finally:
        store.close()


# -- the writer -----------------------------------------------------------------------------


def test_group_commit_puts_concurrent_writes_in_one_transaction(db_url: str) -> None:
    async def scenario(store: Store) -> None:
        await store.create_board(board())
        before = store.batches_committed
        release = block_writes(db_url)
        try:
            first = asyncio.create_task(store.write_score(write(1)))
            await asyncio.sleep(WRITER_PICKUP_S)  # the writer holds write 1, waiting on the lock
            rest = [asyncio.create_task(store.write_score(write(n))) for n in range(2, 201)]
            await asyncio.sleep(0)  # let them queue
            assert store.pending_writes == 199
        finally:
            release()
        await asyncio.gather(first, *rest)
        assert store.batches_committed - before == 2  # write 1 alone, then the other 199
        assert store.writes_committed == 201  # and the board

    run(db_url, scenario)
    assert scalar(db_url, "SELECT count(*) FROM submissions") == 200
    assert scalar(db_url, "SELECT count(*) FROM player_records") == 200
    assert scalar(db_url, "SELECT seq FROM boards WHERE id = 'b'") == 200


def test_duplicate_idempotency_key_fails_alone_and_the_batch_commits(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(store: Store) -> list[Any]:
        await store.create_board(board())
        await store.write_score(write(1, key="k1"))
        release = block_writes(db_url)
        try:
            blocker = asyncio.create_task(store.write_score(write(2)))
            await asyncio.sleep(WRITER_PICKUP_S)
            batch = [
                asyncio.create_task(store.write_score(w))
                for w in (write(3, key="k1"), write(4, key="k4"), write(5), write(6, key="k6"))
            ]
            await asyncio.sleep(0)
        finally:
            release()
        await blocker
        results = await asyncio.gather(*batch, return_exceptions=True)
        # The failed write left nothing behind, not even its new user.
        assert await store.get_user("user3") is None
        assert (await store.get_user("user4")) == UserRow("user4", "User4", "player", None)
        return results

    with caplog.at_level(logging.WARNING, logger="scoreboard.store"):
        results = run(db_url, scenario)
    assert isinstance(results[0], errors.Conflict)
    assert results[1:] == [None, None, None]
    assert "group commit of 4 writes failed" in caplog.text
    assert scalar(db_url, "SELECT count(*) FROM submissions") == 5
    assert scalar(db_url, "SELECT count(*) FROM player_records WHERE user_id = 'user3'") == 0
    assert scalar(db_url, "SELECT seq FROM boards") == 6


def test_score_write_to_a_missing_board_is_not_found(db_url: str) -> None:
    async def scenario(store: Store) -> None:
        with pytest.raises(errors.NotFound):
            await store.write_score(write(1, board_id="nope"))

    run(db_url, scenario)


def test_close_commits_every_queued_write_before_returning(db_url: str) -> None:
    async def scenario(store: Store) -> None:
        await store.create_board(board())
        release = block_writes(db_url)
        tasks = [asyncio.create_task(store.write_score(write(n))) for n in range(1, 301)]
        await asyncio.sleep(0)  # all 300 are queued or held by the blocked writer
        assert store.writes_committed == 1
        # close() blocks this thread until drained, so the lock is let go from another one.
        threading.Timer(WRITER_PICKUP_S, release).start()
        store.close()
        assert store.writes_committed == 301
        assert scalar(db_url, "SELECT count(*) FROM submissions") == 300
        assert await asyncio.gather(*tasks) == [None] * 300
        with pytest.raises(errors.NotReady):
            await store.write_score(write(301))

    run(db_url, scenario)


def test_too_many_waiting_writes_are_refused_as_overloaded(sqlite_url: str) -> None:
    async def scenario(store: Store) -> None:
        await store.create_board(board())
        release = block_writes(sqlite_url)
        try:
            blocker = asyncio.create_task(store.write_score(write(1)))
            await asyncio.sleep(WRITER_PICKUP_S)  # taken by the writer: the queue is empty
            queued = [asyncio.create_task(store.write_score(write(n))) for n in (2, 3)]
            await asyncio.sleep(0)
            with pytest.raises(errors.Overloaded):
                await store.write_score(write(4))
        finally:
            release()
        await asyncio.gather(blocker, *queued)

    run(sqlite_url, scenario, max_pending_writes=2)


def test_score_writes_keep_the_better_record_the_log_and_the_highest_seq(db_url: str) -> None:
    async def scenario(store: Store) -> None:
        await store.create_board(board())
        await store.write_score(write(10, user_id="ann", score=500))
        # Unchanged record: only the name and the log change.
        await store.write_score(
            write(11, user_id="ann", name="Ann B.", score=500, seq=10, improved=False)
        )
        # A write whose seq is behind the board's (e.g. from another node) never lowers it.
        await store.write_score(write(5, user_id="bo", score=50))

    run(db_url, scenario)
    store = Store(db_url)
    try:
        (loaded,) = store.load_boards()
    finally:
        store.close()
    assert loaded.seq == 10
    ann = records_by_user(loaded)["ann"]
    assert (ann.name, ann.score, ann.reached_seq) == ("Ann B.", 500, 10)
    assert scalar(db_url, "SELECT count(*) FROM submissions WHERE user_id = 'ann'") == 2


# -- reads ----------------------------------------------------------------------------------


def test_load_boards_returns_configs_seq_and_named_records(db_url: str) -> None:
    laps = board(
        "laps",
        order="asc",
        operator="set",
        min_score=0,
        max_score=2**53 - 1,
        player_submissions=False,
        reset_schedule="weekly",
    )

    async def scenario(store: Store) -> None:
        await store.create_board(board("quiz"))
        await store.create_board(laps)
        await asyncio.gather(
            store.write_score(write(1, board_id="quiz", user_id="alice", name="Alice")),
            store.write_score(write(2, board_id="quiz", user_id="bob", name="Bob")),
            store.write_score(write(1, board_id="laps", user_id="alice", score=2**53 - 1)),
        )

    run(db_url, scenario)
    store = Store(db_url)
    try:
        loaded = store.load_boards()
        assert store.load_board("laps") == loaded[0]
        assert store.load_board("gone") is None
    finally:
        store.close()
    assert [b.config for b in loaded] == [laps, board("quiz")]
    assert [b.seq for b in loaded] == [1, 2]
    assert records_by_user(loaded[1]) == {
        "alice": ranking.Record("alice", "Alice", 10, 1, 1, 1_790_000_000.125),
        "bob": ranking.Record("bob", "Bob", 20, 2, 2, 1_790_000_000.25),
    }
    assert loaded[0].records == [
        ranking.Record("alice", "Alice", 2**53 - 1, 1, 1, 1_790_000_000.125)
    ]


def test_find_answer_replays_stored_keys_and_prune_forgets_old_ones(db_url: str) -> None:
    day = 24 * 3600

    async def scenario(store: Store) -> None:
        await store.create_board(board())
        w = write(1, key="retry-1", actor="alice")
        await store.write_score(w)
        answer = StoredAnswer(w.request_hash or "", w.response)
        assert await store.find_answer("alice", "retry-1") == answer
        assert await store.find_answer("bob", "retry-1") is None  # keys are per actor
        assert await store.find_answer("alice", "other") is None
        # Younger than 24 h: kept, whatever the caller asks for.
        assert store.prune_answers(time.time()) == 0
        assert await store.find_answer("alice", "retry-1") == answer
        with store.engine.begin() as conn:
            conn.execute(sa.text("UPDATE submissions SET created_at = created_at - :d"), {"d": day})
        assert store.prune_answers(time.time() - day + 60) == 1
        assert await store.find_answer("alice", "retry-1") is None
        # A forgotten key may be used again.
        await store.write_score(write(2, key="retry-1", actor="alice"))

    run(db_url, scenario)
    assert scalar(db_url, "SELECT count(*) FROM submissions") == 2


def test_look_ups_asked_together_are_answered_each_as_alone(db_url: str) -> None:
    """Answers, users and older keys asked for at once (one batched read) match one by one."""

    async def scenario(store: Store) -> None:
        await store.create_board(board())
        writes = [write(n, key=f"k{n}", actor=f"actor{n % 3}") for n in range(1, 10)]
        await asyncio.gather(*(store.write_score(w) for w in writes))
        last_id = store.last_submission_id_sync()
        later = write(10, key="k10", actor="late")
        await store.write_score(later)
        asked = [(w.actor, w.idempotency_key or "") for w in writes] + [("actor1", "k2")]
        answers = await asyncio.gather(*(store.find_answer(a, k) for a, k in asked))
        assert answers[:-1] == [StoredAnswer(w.request_hash or "", w.response) for w in writes]
        assert answers[-1] is None  # k2 is actor2's key, not actor1's
        users_asked = ["user1", "user5", "nobody", "user1"]
        found = await asyncio.gather(*(store.get_user(u) for u in users_asked))
        assert [u.name if u else None for u in found] == ["User1", "User5", None, "User1"]
        older = await asyncio.gather(
            *(store.has_keys_up_to(a, last_id) for a in ("actor0", "actor1", "late", "nobody"))
        )
        assert older == [True, True, False, False]  # "late" wrote after last_id only
        assert await store.has_keys_up_to("late", last_id + 1)

    run(db_url, scenario)


def test_prune_answers_works_through_many_rows_in_chunks(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "PRUNE_CHUNK_ROWS", 2)

    async def scenario(store: Store) -> int:
        await store.create_board(board())
        await asyncio.gather(*(store.write_score(write(n, key=f"k{n}")) for n in range(1, 6)))
        await store.write_score(write(6))  # no key: nothing to prune
        with store.engine.begin() as conn:
            conn.execute(sa.text("UPDATE submissions SET created_at = 0"))
        return store.prune_answers(time.time())

    assert run(db_url, scenario) == 5
    assert scalar(db_url, "SELECT count(idempotency_key) FROM submissions") == 0


def test_ping_answers(db_url: str) -> None:
    async def scenario(store: Store) -> None:
        await store.ping()

    run(db_url, scenario)


# -- boards, users, settings ----------------------------------------------------------------


def test_board_create_update_delete(db_url: str) -> None:
    async def scenario(store: Store) -> None:
        await store.create_board(board())
        with pytest.raises(errors.Conflict):
            await store.create_board(board(title="again"))
        with pytest.raises(errors.Conflict):
            store.create_board_sync(board())
        await store.write_score(write(7))

        changed = board(title="Renamed", max_score=99, player_submissions=False)
        await store.update_board(changed)
        (loaded,) = store.load_boards()
        assert (loaded.config, loaded.seq) == (changed, 7)  # settings change, seq stays
        with pytest.raises(errors.NotFound):
            await store.update_board(board("gone"))

        await store.delete_board("b")
        assert store.load_boards() == []
        with pytest.raises(errors.NotFound):
            await store.delete_board("b")

        store.create_board_sync(board("c"))
        assert [b.config.id for b in store.load_boards()] == ["c"]

    run(db_url, scenario)
    # The records went with their board; the users and the log stay.
    assert scalar(db_url, "SELECT count(*) FROM player_records") == 0
    assert scalar(db_url, "SELECT count(*) FROM users") == 1
    assert scalar(db_url, "SELECT count(*) FROM submissions") == 1


def test_users_create_get_ensure_and_duplicate_conflict(db_url: str) -> None:
    admin = UserRow("root", "Root", "admin", "scrypt$hash")

    async def scenario(store: Store) -> None:
        await store.create_user(admin)
        assert await store.get_user("root") == admin
        assert await store.get_user("nobody") is None
        with pytest.raises(errors.Conflict):
            await store.create_user(UserRow("root", "Other", "player", None))
        with pytest.raises(errors.Conflict):
            store.create_user_sync(admin)
        store.create_user_sync(UserRow("cli", "Cli", "admin", "x"))
        # ensure_user adds a missing user and leaves an existing one alone.
        await store.ensure_user("root", "Changed", "player")
        await store.ensure_user("tok", "Token User", "server")
        assert await store.get_user("root") == admin
        assert await store.get_user("tok") == UserRow("tok", "Token User", "server", None)
        assert await store.get_user("cli") == UserRow("cli", "Cli", "admin", "x")

    run(db_url, scenario)


def test_settings_get_and_set(db_url: str) -> None:
    store = Store(db_url)
    try:
        store.migrate()
        assert store.get_setting_sync("jwt_secret") is None
        store.set_setting_sync("jwt_secret", "first")
        assert store.get_setting_sync("jwt_secret") == "first"
        # Insert if absent: a second process starting at once does not overwrite the first.
        store.set_setting_sync("jwt_secret", "second")
        assert store.get_setting_sync("jwt_secret") == "first"
        store.set_setting_sync("jwt_secret", "third", replace=True)
        assert store.get_setting_sync("jwt_secret") == "third"
    finally:
        store.close()


# -- score_format (migration 0002) ----------------------------------------------------------


def alembic_to(url: str, revision: str, *, down: bool = False) -> None:
    """Move the database to `revision` with Alembic's command API, as Store.migrate() does."""
    from alembic import command

    config = store_module.alembic_config()
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            (command.downgrade if down else command.upgrade)(config, revision)
    finally:
        engine.dispose()


def test_score_format_is_stored_updated_and_read_back(db_url: str) -> None:
    assert board().score_format == "integer"  # the default keeps old constructors working

    async def scenario(store: Store) -> None:
        await store.create_board(board("laps", score_format="duration_ms"))
        store.create_board_sync(board("money", score_format="decimal:2"))
        await store.create_board(board("plain"))
        await store.update_board(board("plain", score_format="decimal:6"))

    run(db_url, scenario)
    store = Store(db_url)  # a fresh Store: what a restarted server reads
    try:
        loaded = {b.config.id: b.config for b in store.load_boards()}
    finally:
        store.close()
    assert loaded == {
        "laps": board("laps", score_format="duration_ms"),
        "money": board("money", score_format="decimal:2"),
        "plain": board("plain", score_format="decimal:6"),
    }
    assert scalar(db_url, "SELECT score_format FROM boards WHERE id = 'money'") == "decimal:2"


def test_migration_0002_gives_existing_boards_integer_and_keeps_their_records(
    db_url: str,
) -> None:
    alembic_to(db_url, "0001")
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns("boards")}
            assert "score_format" not in columns
            conn.execute(
                sa.text(
                    "INSERT INTO users (id, name, role, created_at) "
                    "VALUES ('alice', 'Alice', 'player', 1.5)"
                )
            )
            conn.execute(
                sa.text(
                    'INSERT INTO boards (id, title, "order", operator, player_submissions, '
                    "reset_schedule, created_at, seq) "
                    "VALUES ('old', 'Old board', 'asc', 'set', :yes, 'never', 2.5, 7)"
                ),
                {"yes": True},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO player_records "
                    "(board_id, user_id, score, subscore, reached_seq, updated_at) "
                    "VALUES ('old', 'alice', 62345, 1, 7, 3.5)"
                )
            )
    finally:
        engine.dispose()

    store = Store(db_url)
    try:
        store.migrate()  # 0001 -> head
        (loaded,) = store.load_boards()
    finally:
        store.close()
    assert loaded.config == board(
        "old",
        title="Old board",
        order="asc",
        operator="set",
        created_at=2.5,
        score_format="integer",
    )
    assert loaded.seq == 7
    # Adding the column did not recreate the boards table (whose cascade would empty this).
    assert loaded.records == [ranking.Record("alice", "Alice", 62345, 1, 7, 3.5)]
    assert scalar(db_url, "SELECT version_num FROM alembic_version") == "0004"

    # And back: the downgrade drops only the column.
    alembic_to(db_url, "0001", down=True)
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns("boards")}
    finally:
        engine.dispose()
    assert "score_format" not in columns
    assert scalar(db_url, "SELECT count(*) FROM player_records") == 1


# -- username_key (migration 0003) ----------------------------------------------------------


def test_migration_0003_keys_users_and_keeps_old_case_twins_able_to_log_in(db_url: str) -> None:
    alembic_to(db_url, "0002")
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            for user_id, password_hash, created in [
                ("alice", "h1", 1.0),
                ("Alice", "h2", 2.0),  # registered before usernames were case-insensitive
                ("Bob", None, 3.0),  # a player from an outside token
                ("bob", None, 4.0),
            ]:
                conn.execute(
                    sa.text(
                        "INSERT INTO users (id, name, role, password_hash, created_at) "
                        "VALUES (:id, :name, 'player', :h, :c)"
                    ),
                    {"id": user_id, "name": user_id, "h": password_hash, "c": created},
                )
    finally:
        engine.dispose()
    store = Store(db_url)
    try:
        store.migrate()
        with store.engine.connect() as conn:
            keys = dict(conn.execute(sa.text("SELECT id, username_key FROM users")).all())
        with pytest.raises(errors.Conflict):
            store.create_user_sync(UserRow("BOB", "B", "player", "h3"))
    finally:
        store.close()
    assert keys == {"alice": "alice", "Alice": None, "Bob": "bob", "bob": "bob"}

    async def logins(store: Store) -> list[str | None]:
        found = [await store.get_account(name) for name in ("alice", "Alice", "ALICE", "bob")]
        return [user.id if user else None for user in found]

    # An exact id wins; another case finds the key holder; players without password: none.
    assert run(db_url, logins) == ["alice", "Alice", "alice", None]


def test_reset_archives_ranks_as_the_engine_orders_them(db_url: str) -> None:
    """The archive is ranked by SQL; it must order exactly as ranking.py does, user ids
    compared byte by byte (a PostgreSQL collation would put "a" before "B")."""
    from scoreboard.store import SeasonEnd

    async def scenario(store: Store) -> tuple[list[tuple], list[tuple]]:
        await store.create_board(board("b"))
        order = ranking.Leaderboard(ranking.Order.DESC, ranking.Operator.BEST)
        # Stored pairs reached at the same seq: only the user_id can break these ties.
        for user, score in [("a", 5), ("B", 5), ("_x", 5), ("c", 9), ("Z", 1)]:
            record = ranking.Record(user, user.upper(), score, 0, 1, 1.0)
            order.put(record, seq=1)
            await store.write_score(score_write(record))
        end = SeasonEnd(
            board_id="b", order="desc", season=1, started_at=0, ended_at=5, reason="manual", seq=9
        )
        assert await store.reset_board(end) == 5
        row, entries = await store.season_page("b", 1, offset=0, limit=10)  # type: ignore[misc]
        assert (row.players, row.reason) == (5, "manual")
        expected = [(e.rank, e.user_id) for e in order.page(0, 10)]
        return expected, [(e.rank, e.user_id) for e in entries]

    expected, archived = run(db_url, scenario)
    assert archived == expected
    assert [user for _, user in archived] == ["c", "B", "_x", "a", "Z"]  # as Python sorts str


def score_write(record: ranking.Record) -> ScoreWrite:
    return ScoreWrite(
        board_id="b",
        user_id=record.user_id,
        user_name=record.name,
        score=record.score,
        subscore=record.subscore,
        reached_seq=record.reached_seq,
        updated_at=record.updated_at,
        seq=record.reached_seq,
        improved=True,
        actor="game",
        idempotency_key=None,
        request_hash=None,
        response={},
        submitted_score=record.score,
        submitted_subscore=record.subscore,
    )


def test_entry_chunks_stream_the_standings_and_an_archive_in_rank_order(db_url: str) -> None:
    """The export's read: one snapshot, fetched a chunk at a time on the read threads (a
    server-side cursor on PostgreSQL), closed early without harm."""
    import contextlib

    from scoreboard.store import SeasonEnd

    async def scenario(store: Store) -> tuple[list, list, list]:
        await store.create_board(board("b"))
        for i in range(25):
            record = ranking.Record(f"u{i:02d}", f"U{i}", i % 7, 0, i + 1, 1.0)
            await store.write_score(score_write(record))

        async def read(season: int | None) -> list:
            rows = []
            async for chunk in store.entry_chunks("b", "desc", season=season, chunk=4):
                assert len(chunk) <= 4
                rows += chunk
            return rows

        live = await read(None)
        end = SeasonEnd("b", "desc", season=1, started_at=0, ended_at=5, reason="manual", seq=99)
        await store.reset_board(end)
        archived = await read(1)
        early = []
        chunks = store.entry_chunks("b", "desc", season=1, chunk=3)
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                early += chunk
                break
        return live, archived, early

    live, archived, early = run(db_url, scenario)
    assert [row[0] for row in live] == list(range(1, 26))
    assert archived == live
    assert early == live[:3]
    # desc: higher score first, then who reached it first.
    assert [row[1] for row in live[:4]] == ["u06", "u13", "u20", "u05"]
