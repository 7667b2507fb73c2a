"""The writes of cluster mode, where PostgreSQL, not memory, decides each result and seq.

In one process the in-memory board decides a submission's result and the board's seq, and the
store only commits it. Several processes cannot each decide from their own replica, so here
every submission is decided inside its transaction, from the rows as they stand once the
board's row is locked, and the caller applies the change record it gets back (and publishes
it) instead of deciding anything itself.

Writes go through a group commit of their own (scoreboard/writer.py): every write queued while
the previous batch committed goes into one transaction, which

1. locks every board row the batch touches, in id order (`SELECT ... FOR UPDATE`), so that
   two processes never wait on each other's boards in opposite orders, and a board's
   submissions are decided one transaction after another;
2. decides the submissions in queue order, as `ranking.Leaderboard.submit` would on a board
   holding exactly the stored rows: `ranking.apply_operator`, then `ranking.check_bounds`
   with the locked row's bounds; a changed pair spends the board's next seq (the deciding is
   pure code, in scoreboard/cluster/decisions.py);
3. writes users (in id order, like the store), records and the submissions log, each as one
   statement for the whole run, and the boards' new seqs at the end.

Refusals (a board's bounds, a missing board) are decided before anything is written, so they
fail alone and their neighbours commit. Idempotency keys hold across processes: a key already
committed replays its stored answer and writes nothing; a key that another process's open
transaction holds makes our INSERT wait on the unique index until that one commits, then fail.
The batch is then tried again from the start, finds that key stored and replays it. (A
savepoint around the writes would keep the locks, but costs two round trips in every batch
with a key, for a race that only a client sending one key to two processes at once causes.)

A submission's answer carries ranks only a replica knows, so the submissions row is written
with a JSON null answer (tables.StoredAnswer: response None) and `store_answer` fills it in,
through the same group commit, once the replica has ranked the change.

Changes to the API first agreed: `ScoreCommitted.record` is None on a replay (nothing of this
submission was stored, and the player may have no record at all). PostgreSQL only: `FOR
UPDATE` and waiting on a unique index are what this module relies on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from .. import errors, ranking
from ..store import DEFAULT_MAX_PENDING_WRITES, Store
from ..tables import (
    DEFAULT_ROLE,
    SeasonEnd,
    StoredAnswer,
    boards,
    player_records,
    submissions,
    username_key,
    users,
)
from ..writer import GroupWriter
from .changes import RemovalChange, ResetChange
from .decisions import Answers, ClusterScore, LockedBoard, RunDecision, ScoreCommitted, Stored

__all__ = ["ClusterScore", "ClusterWrites", "ScoreCommitted"]

log = logging.getLogger(__name__)

R = TypeVar("R")

#: Times one batch is tried when its transaction fails in a way that trying again decides
#: differently: another process committed one of its idempotency keys meanwhile (the next try
#: finds the key stored and replays it, so each try settles at least one key), or PostgreSQL
#: aborted it to break a deadlock (our own transactions take their locks in one order and
#: never deadlock each other; another process's board edit next to a user write can, rarely).
RETRY_ATTEMPTS = 3
#: SQLSTATEs of those failures: unique_violation, deadlock_detected, serialization_failure.
RETRY_SQLSTATES = frozenset({"23505", "40P01", "40001"})


@dataclass(slots=True, eq=False)
class _ScoreJob:
    score: ClusterScore
    outcome: ScoreCommitted | errors.ScoreboardError | None = None

    @property
    def board_id(self) -> str:
        return self.score.board_id


@dataclass(slots=True, eq=False)
class _ResetJob:
    board_id: str
    reason: str
    ended_at: float
    season: int
    outcome: ResetChange | errors.ScoreboardError | None = None


@dataclass(slots=True, eq=False)
class _RemovalJob:
    board_id: str
    user_id: str
    outcome: RemovalChange | errors.ScoreboardError | None = None


@dataclass(slots=True, eq=False)
class _AnswerJob:
    submission_id: int
    response: dict[str, Any]
    outcome: None = None  # nothing to report: committed or failed


_Job = _ScoreJob | _ResetJob | _RemovalJob | _AnswerJob
_Outcome = ScoreCommitted | ResetChange | RemovalChange | errors.ScoreboardError | None


def _key_order(row: dict[str, Any]) -> tuple[bool, str, str]:
    return (row["idempotency_key"] is None, row["actor"], row["idempotency_key"] or "")


def _sqlstate(exc: BaseException) -> str | None:
    return getattr(getattr(exc, "orig", None), "sqlstate", None)


class ClusterWrites:
    """The writer thread of one cluster process, on its Store's engine."""

    def __init__(self, store: Store, *, max_pending: int = DEFAULT_MAX_PENDING_WRITES) -> None:
        if store.dialect != "postgresql":
            raise ValueError(f"cluster mode needs PostgreSQL, got {store.dialect!r}")
        self._store = store
        self._engine = store.engine
        self._writer: GroupWriter[_Job] = GroupWriter(
            self._commit,
            lambda _job, exc: exc,
            outage=self._outage,
            max_pending=max_pending,
        )
        upsert_user = postgresql.insert(users)
        self._upsert_user = upsert_user.on_conflict_do_update(
            index_elements=[users.c.id],
            set_={"name": upsert_user.excluded.name},
            # No row write (and no dead tuple) when the name did not change.
            where=users.c.name != upsert_user.excluded.name,
        )
        upsert_record = postgresql.insert(player_records)
        self._upsert_record = upsert_record.on_conflict_do_update(
            index_elements=[player_records.c.board_id, player_records.c.user_id],
            set_={
                name: upsert_record.excluded[name]
                for name in ("score", "subscore", "reached_seq", "updated_at")
            },
        )
        self._insert_submissions = sa.insert(submissions).returning(
            submissions.c.id, sort_by_parameter_order=True
        )
        self._set_seq = (
            sa.update(boards)
            .where(boards.c.id == sa.bindparam("b_id"))
            .values(seq=sa.bindparam("b_seq", type_=sa.BigInteger))
        )
        self._set_answer = (
            sa.update(submissions)
            .where(submissions.c.id == sa.bindparam("s_id", type_=sa.BigInteger))
            .values(response=sa.bindparam("s_response", type_=sa.JSON))
        )

    @property
    def writes_committed(self) -> int:
        """Writes committed so far (scores, answers, resets, removals)."""
        return self._writer.writes_committed

    @property
    def batches_committed(self) -> int:
        """Transactions those writes took."""
        return self._writer.batches_committed

    @property
    def pending(self) -> int:
        """Writes queued and not yet committed (approximate)."""
        return self._writer.pending

    def start(self, loop: Any) -> None:
        """Start the writer thread; callers' futures are resolved on `loop`."""
        self._writer.start(loop)

    def close(self) -> None:
        """Commit every write queued so far and stop the thread (the Store keeps its engine)."""
        self._writer.close()

    # -- the API of the loop ---------------------------------------------------------------

    async def commit_score(self, s: ClusterScore) -> ScoreCommitted:
        """Decide and commit one submission; ValidationFailed, NotFound, NotReady refuse it."""
        job = _ScoreJob(s)
        await self._writer.submit(job)
        committed = _settled(job.outcome)
        assert committed is not None  # every score job of a committed batch has its outcome
        return committed

    async def store_answer(self, submission_id: int, response: dict[str, Any]) -> None:
        """Store the answer a replay of this submission's idempotency key will give."""
        await self._writer.submit(_AnswerJob(submission_id, response))

    async def reset_board(
        self, board_id: str, *, reason: str, ended_at: float, season: int
    ) -> ResetChange | None:
        """Archive season `season` and start the next one; None when `season` is no longer
        the board's season in force (another process reset it first). NotFound if absent."""
        job = _ResetJob(board_id, reason, ended_at, season)
        await self._writer.submit(job)
        return _settled(job.outcome)

    async def remove_player(self, board_id: str, user_id: str) -> RemovalChange | None:
        """Delete the player's record as a change (the seq advances); None when they have
        none. NotFound if the board is absent."""
        job = _RemovalJob(board_id, user_id)
        await self._writer.submit(job)
        return _settled(job.outcome)

    # -- the writer thread -----------------------------------------------------------------

    def _outage(self, exc: Exception) -> errors.ScoreboardError | None:
        if _sqlstate(exc) in RETRY_SQLSTATES:
            return None  # not the database's absence: the writer tries the writes one by one
        return self._store.outage(exc)

    def _commit(self, jobs: list[_Job]) -> None:
        """The writer's commit: one transaction for the batch, tried again (from the start,
        decided anew) after a failure in RETRY_SQLSTATES. Outcomes are handed over only once
        COMMIT has returned."""
        attempt = 1
        while True:
            try:
                with self._engine.begin() as conn:
                    outcomes = _Transaction(self, conn).run(jobs)
                break
            except DBAPIError as exc:
                if _sqlstate(exc) not in RETRY_SQLSTATES or attempt >= RETRY_ATTEMPTS:
                    raise
                log.debug("cluster batch of %d tried again: %s", len(jobs), _sqlstate(exc))
                attempt += 1
        for job, outcome in zip(jobs, outcomes, strict=True):
            job.outcome = outcome  # run() gives each job an outcome of its own kind


def _settled(outcome: R | errors.ScoreboardError) -> R:
    """A job's outcome, raised if it is a refusal."""
    if isinstance(outcome, errors.ScoreboardError):
        raise outcome
    return outcome


class _Transaction:
    """One attempt at one batch, inside its transaction."""

    def __init__(self, writes: ClusterWrites, conn: Connection) -> None:
        self.writes = writes
        self.conn = conn
        self.boards: dict[str, LockedBoard] = {}
        self.now = time.time()  # submissions.created_at: when idempotency keys may be pruned

    def run(self, jobs: Sequence[_Job]) -> list[_Outcome]:
        answers = [
            {"s_id": job.submission_id, "s_response": job.response}
            for job in jobs
            if isinstance(job, _AnswerJob)
        ]
        if answers:
            # Before the boards are locked: answers need no lock, so others wait less.
            self.conn.execute(self.writes._set_answer, answers)
        self._lock_boards({job.board_id for job in jobs if not isinstance(job, _AnswerJob)})
        locked_seqs = {board_id: board.seq for board_id, board in self.boards.items()}
        outcomes: list[_Outcome] = []
        run: list[_ScoreJob] = []
        for job in jobs:
            if isinstance(job, _ScoreJob):
                run.append(job)
                continue
            if run:
                outcomes += self._scores(run)
                run = []
            if isinstance(job, _ResetJob):
                outcomes.append(self._reset(job))
            elif isinstance(job, _RemovalJob):
                outcomes.append(self._remove(job))
            else:
                outcomes.append(None)
        if run:
            outcomes += self._scores(run)
        moved = [
            {"b_id": board_id, "b_seq": board.seq}
            for board_id, board in sorted(self.boards.items())
            if board.seq != locked_seqs[board_id]
        ]
        if moved:
            self.conn.execute(self.writes._set_seq, moved)
        return outcomes

    def _lock_boards(self, board_ids: Iterable[str]) -> None:
        ids = sorted(board_ids)
        if not ids:
            return
        b = boards.c
        rows = self.conn.execute(
            sa.select(
                b.id,
                b.operator,
                b.order,
                b.min_score,
                b.max_score,
                b.seq,
                b.season,
                sa.func.coalesce(b.season_started_at, b.created_at),
            )
            .where(b.id.in_(ids))
            # Byte order, the same in every process whatever the database's collation.
            .order_by(b.id.collate("C"))
            .with_for_update()
        )
        for row in rows:
            self.boards[row[0]] = LockedBoard(
                ranking.Operator(row[1]), ranking.Order(row[2]), *row[3:]
            )

    # -- scores ------------------------------------------------------------------------------

    def _scores(self, jobs: list[_ScoreJob]) -> list[ScoreCommitted | errors.ScoreboardError]:
        """Decide and write a run of submissions (a key already stored replays)."""
        keys = {
            (job.score.actor, job.score.idempotency_key)
            for job in jobs
            if job.score.idempotency_key is not None and job.score.board_id in self.boards
        }
        decision = RunDecision(
            self.boards,
            self._stored_pairs(jobs),
            self._stored_answers(keys),
            [job.score for job in jobs],
        )
        return self._write(decision)

    def _stored_answers(self, keys: set[tuple[str, str]]) -> Answers:
        if not keys:
            return {}
        s = submissions.c
        rows = self.conn.execute(
            sa.select(s.actor, s.idempotency_key, s.request_hash, s.response).where(
                sa.tuple_(s.actor, s.idempotency_key).in_(sorted(keys))
            )
        )
        return {
            (actor, key): StoredAnswer(hash_ or "", response)
            for actor, key, hash_, response in rows
        }

    def _stored_pairs(self, jobs: list[_ScoreJob]) -> dict[tuple[str, str], Stored]:
        pairs = sorted(
            {(j.score.board_id, j.score.user_id) for j in jobs if j.score.board_id in self.boards}
        )
        if not pairs:
            return {}
        r = player_records.c
        rows = self.conn.execute(
            sa.select(
                r.board_id, r.user_id, r.score, r.subscore, r.reached_seq, r.updated_at
            ).where(sa.tuple_(r.board_id, r.user_id).in_(pairs))
        )
        return {(row[0], row[1]): (row[2], row[3], row[4], row[5]) for row in rows}

    def _write(self, decision: RunDecision) -> list[ScoreCommitted | errors.ScoreboardError]:
        """Write what `decision` decided; then its outcomes, and the boards' seqs, stand."""
        conn, writes = self.conn, self.writes
        if decision.names:
            conn.execute(
                writes._upsert_user,
                [
                    {
                        "id": user_id,
                        "name": name,
                        "role": DEFAULT_ROLE,
                        "created_at": self.now,
                        "username_key": username_key(user_id),
                    }
                    for user_id, name in sorted(decision.names.items())
                ],
            )
        if decision.changed:
            conn.execute(
                writes._upsert_record,
                [
                    {
                        "board_id": board_id,
                        "user_id": record.user_id,
                        "score": record.score,
                        "subscore": record.subscore,
                        "reached_seq": record.reached_seq,
                        "updated_at": record.updated_at,
                    }
                    for (board_id, _), record in sorted(decision.changed.items())
                ],
            )
        rows = decision.log_rows
        ids = [0] * len(rows)
        if rows:
            for row in rows:
                row["created_at"] = self.now
            # Keyed rows in key order: two processes inserting the same keys wait on each
            # other's in one order, never in a circle (which PostgreSQL would only break
            # after deadlock_timeout, a second).
            order = sorted(range(len(rows)), key=lambda i: _key_order(rows[i]))
            written = conn.execute(writes._insert_submissions, [rows[i] for i in order])
            for i, submission_id in zip(order, written.scalars(), strict=True):
                ids[i] = submission_id
        for board_id, seq in decision.seqs.items():
            self.boards[board_id].seq = seq
        return decision.outcomes(ids)

    # -- resets and removals -----------------------------------------------------------------

    def _reset(self, job: _ResetJob) -> _Outcome:
        board = self.boards.get(job.board_id)
        if board is None:
            return errors.NotFound(f"no board {job.board_id!r}")
        if board.season != job.season:
            return None  # reset already, by another process or an earlier request
        end = SeasonEnd(
            board_id=job.board_id,
            order=board.order,
            season=job.season,
            started_at=board.season_started_at,
            ended_at=job.ended_at,
            reason=job.reason,
            seq=board.seq + 1,
        )
        self.writes._store.archive_season(self.conn, end)
        board.seq, board.season, board.season_started_at = end.seq, job.season + 1, job.ended_at
        return ResetChange(job.board_id, end.seq, board.season, job.ended_at)

    def _remove(self, job: _RemovalJob) -> _Outcome:
        board = self.boards.get(job.board_id)
        if board is None:
            return errors.NotFound(f"no board {job.board_id!r}")
        r = player_records.c
        gone = self.conn.execute(
            sa.delete(player_records)
            .where(r.board_id == job.board_id, r.user_id == job.user_id)
            .returning(r.user_id)
        ).first()
        if gone is None:
            return None
        board.seq += 1
        return RemovalChange(job.board_id, board.seq, job.user_id)
