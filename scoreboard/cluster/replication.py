"""The service in cluster mode: PostgreSQL decides each change, Redis carries it to every process.

`ClusterService` is the single-process ScoreboardService with its writes replaced. A change is
decided and committed by the database (pgwrites.py), published on Redis (bus.py), and applied
to the in-memory boards only as a change record, in the board's seq order (replica.py): this
process's own changes take the same road as everyone else's, so every process's boards go
through the same states, and listeners (the hub, the long-poll waiters) are told of every
change of any process exactly as in single-process mode.

The score path: commit -> feed the record to this process's replica and publish it -> wait
until the replica has applied that seq (the records of other processes that came before it
may still be on their way) -> answer from the Outcome of that apply -> store the answer for
the idempotency key.

Redis away: commits and answers go on (the replica applies this process's own changes; a gap
left by another's is read back from the database after half a second, and every 2 s the
boards' seqs are compared with the database's so that other processes' changes still arrive),
`/readyz` says 503 naming Redis, and when the subscription is back every board is read back
and its listeners get `board_reset`, so clients get fresh snapshots.

About 550 lines: the score path, the admin changes, applying records and reading boards back
are one state machine over the same boards, waiters and read-backs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio

from .. import metrics, seasons
from ..auth import Identity, TokenCodec
from ..config import Settings
from ..errors import Conflict, NotFound, NotReady, ValidationFailed
from ..limits import SharedLimiter
from ..ranking import Leaderboard, Outcome, Record
from ..service import (
    BoardState,
    ScoreboardService,
    ScoreRequest,
    discard_standings,
    read_retrying,
)
from ..store import UNAVAILABLE_RETRY_AFTER_S, Store
from .bus import ChangeBus
from .changes import (
    BoardChanged,
    BoardDeleted,
    Change,
    ResetChange,
    ScoreChange,
)
from .pgwrites import ClusterScore, ClusterWrites
from .replica import Replica, Sequenced

log = logging.getLogger(__name__)

SUBSCRIBE_WAIT_S = 5.0  # at start-up, how long the load waits for the subscription
GAP_CHECK_S = 0.1  # how often boards with a missing change are looked for
# While Redis is away, how often the boards' seqs are compared with the database's, so that
# other processes' changes still arrive (by reading those boards back) within seconds.
REDIS_AWAY_POLL_S = 2.0
APPLY_WAIT_S = 5.0  # an answer waits this long for its change to be applied, then reads back
# A key's first request, committed on some process, is answered well within this (its wait,
# then a read-back); a reuse waits for that answer this long, looking every ANSWER_POLL_S.
FIRST_ANSWER_WAIT_S = 2 * APPLY_WAIT_S
ANSWER_POLL_S = 0.05


class ClusterService(ScoreboardService):
    """Every use case of ScoreboardService, with the database deciding and Redis carrying."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        tokens: TokenCodec,
        *,
        redis_client: redis.asyncio.Redis,
        clock: Callable[[], float] = time.time,
        shared_score_limiter: SharedLimiter | None = None,
    ) -> None:
        super().__init__(
            settings, store, tokens, clock=clock, shared_score_limiter=shared_score_limiter
        )
        self.writes = ClusterWrites(store)
        self.replica = Replica()
        self.bus = ChangeBus(
            redis_client, on_change=self._received, on_resubscribed=self._resync_later
        )
        # Answers waiting for their board's replica to reach a seq: (seq, future of the
        # Outcome of the score change at exactly that seq, or None once the seq is passed).
        self._waiters: dict[str, list[tuple[int, asyncio.Future[Outcome | None]]]] = {}
        self._read_backs: dict[str, asyncio.Task[None]] = {}
        self._resync: asyncio.Task[None] | None = None
        self._resync_again = False  # the subscription came back again during a resync
        self._gap_check: asyncio.TimerHandle | None = None
        self._away_poll: asyncio.TimerHandle | None = None
        self._away_polling: asyncio.Task[None] | None = None
        # When each board was last deleted (monotonic s): a read that began before then
        # must not bring it back.
        self._deleted_at: dict[str, float] = {}

    # -- lifecycle -------------------------------------------------------------------------

    async def load(self) -> None:
        """Subscribe first, then load: what is published during the load is held and applied
        on top of it, so nothing committed meanwhile is missed."""
        loop = asyncio.get_running_loop()
        self.writes.start(loop)
        self.replica.hold_all()
        self.bus.start()
        if not await self.bus.wait_subscribed(SUBSCRIBE_WAIT_S):
            # Serve anyway (the database is the truth); the boards are read back once the
            # subscription comes up, and /readyz names Redis meanwhile.
            log.warning("Redis does not answer; loading the boards without it")
        await super().load()
        self._gap_check = loop.call_later(GAP_CHECK_S, self._check_gaps)
        self._away_poll = loop.call_later(REDIS_AWAY_POLL_S, self._poll_while_redis_is_away)

    def _boards_loaded(self) -> None:
        for board_id, state in self.boards.items():
            self._apply_all(self.replica.loaded(board_id, state.ranks.seq))
        self.replica.release_all()

    async def check_ready(self) -> None:
        """Not ready while the database is away (as one process) or Redis is."""
        await super().check_ready()
        if self.bus.problem is not None:
            raise NotReady(self.bus.problem, retry_after=UNAVAILABLE_RETRY_AFTER_S)

    async def drain(self, timeout: float) -> None:
        await super().drain(timeout)
        if self._gap_check is not None:
            self._gap_check.cancel()
            self._gap_check = None
        if self._away_poll is not None:
            self._away_poll.cancel()
            self._away_poll = None
        if self._away_polling is not None:
            self._away_polling.cancel()
        await self.bus.close()
        for task in [*self._read_backs.values(), self._resync]:
            if task is not None:
                task.cancel()
        # Commits what is queued (the answers of the drained submissions) and joins the thread.
        await asyncio.get_running_loop().run_in_executor(None, self.writes.close)

    # -- scores ----------------------------------------------------------------------------

    async def _submit_score(
        self, identity: Identity, board_id: str, body: dict[str, Any], key: str | None
    ) -> dict[str, Any]:
        if self.ready and board_id not in self.boards:
            await self._take_board_made_elsewhere(board_id)
        return await super()._submit_score(identity, board_id, body, key)

    async def _take_board_made_elsewhere(self, board_id: str) -> None:
        """A board created on another process a moment ago may not have reached this one:
        a score for it must not be a 404. Ask the database (one primary-key read) and, if
        the board is there, read it back before going on."""
        loop = asyncio.get_running_loop()
        try:
            found = await loop.run_in_executor(None, self.store.load_board_settings, board_id)
        except Exception:  # the database is away: the score path answers not_ready itself
            return
        if found is not None:
            await self._read_back(board_id)

    async def _apply_and_commit(
        self,
        identity: Identity,
        state: BoardState,
        request: ScoreRequest,
        key: str | None,
        fingerprint: str | None,
    ) -> dict[str, Any]:
        board_id = state.config.id
        user_id = request.user_id
        seen_rank = state.ranks.rank_of(user_id)  # the rank to report if no Outcome comes
        committed = await self.writes.commit_score(
            ClusterScore(
                board_id=board_id,
                user_id=user_id,
                name=self._display_name(identity, state, request),
                score=request.score,
                subscore=request.subscore,
                actor=identity.sub,
                idempotency_key=key,
                request_hash=fingerprint,
                metadata=request.metadata,
                now=self.clock(),
            )
        )
        if committed.replay is not None:
            assert key is not None  # only a key replays
            return await self._replayed(identity.sub, key, fingerprint, board_id, user_id)
        outcome = await self._apply_own(board_id, committed.seq, committed.change)
        record = committed.record
        assert record is not None  # None only on a replay
        if outcome is not None:
            rank, previous_rank = outcome.rank, outcome.previous_rank
        else:
            # The change arrived with a read-back (or changed nothing): rank from the standings.
            rank = self._rank_now(board_id, record)
            previous_rank = seen_rank if committed.change is not None else rank
        result = {
            "board": board_id,
            "user_id": user_id,
            "score": record.score,
            "subscore": record.subscore,
            "rank": rank,
            "previous_rank": previous_rank,
            "improved": committed.change is not None,
            "seq": committed.seq,
        }
        if committed.submission_id is not None and key is not None:
            await self.writes.store_answer(committed.submission_id, result)
        outcome_kind = "accepted" if committed.change is not None else "unchanged"
        metrics.SUBMISSIONS_BY_RESULT[outcome_kind].inc()
        return result

    async def _replayed(
        self, actor: str, key: str, fingerprint: str | None, board_id: str, user_id: str
    ) -> dict[str, Any]:
        """The answer to a key used before, on any process: the stored one, as one process
        gives it. A first request still being answered is waited for; one whose process died
        between commit and answer left no answer, and gets the player's standing now."""
        deadline = time.monotonic() + FIRST_ANSWER_WAIT_S
        while True:
            stored = await self.store.find_answer(actor, key)
            if stored is not None and stored.request_hash != fingerprint:
                raise ValidationFailed("Idempotency-Key was used with another request body")
            if stored is not None and stored.response is not None:
                metrics.SUBMISSIONS_BY_RESULT["unchanged"].inc()
                return stored.response
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(ANSWER_POLL_S)
        log.warning(
            "board %s: the first answer for a key was never stored; answering anew", board_id
        )
        entry = self.board(board_id).ranks.entry(user_id)
        if entry is None:
            raise NotFound(f"player {user_id!r} has no score on board {board_id!r}")
        metrics.SUBMISSIONS_BY_RESULT["unchanged"].inc()
        return {
            "board": board_id,
            "user_id": user_id,
            "score": entry.score,
            "subscore": entry.subscore,
            "rank": entry.rank,
            "previous_rank": entry.rank,
            "improved": False,
            "seq": self.board(board_id).ranks.seq,
        }

    def _rank_now(self, board_id: str, record: Record) -> int:
        """The player's rank in the standings as they are, or where `record` would stand in
        them (the board was reset or the player removed since the commit)."""
        state = self.boards.get(board_id)
        if state is None:
            return 1
        rank = state.ranks.rank_of(record.user_id)
        return rank if rank is not None else state.ranks.placement(record)

    async def _apply_own(self, board_id: str, seq: int, change: Sequenced | None) -> Outcome | None:
        """Apply a change this process committed (None: nothing changed at `seq`) and publish
        it; return once the replica holds `seq`, with the Outcome if that seq's score change
        was applied here, None if it came in with a read-back or was no score change."""
        future: asyncio.Future[Outcome | None] = asyncio.get_running_loop().create_future()
        applied = self.replica.applied(board_id)
        if applied is not None and applied >= seq:
            future.set_result(None)
        # Registered before the change is offered: a change next in line applies at once.
        waiting = self._waiters.setdefault(board_id, [])
        waiting.append((seq, future))
        try:
            if change is not None:
                self._offer(change)
                await self.bus.publish(change)
            if future.done():  # the usual case: the change was next in line
                return future.result()
            return await asyncio.wait_for(asyncio.shield(future), APPLY_WAIT_S)
        except TimeoutError:
            log.warning(
                "board %s: seq %d not applied in %.0f s; reading back", board_id, seq, APPLY_WAIT_S
            )
            await self._read_back(board_id)
            return future.result() if future.done() else None
        finally:
            with contextlib.suppress(ValueError):
                waiting.remove((seq, future))
            if not waiting:
                self._waiters.pop(board_id, None)

    def _settle(self, board_id: str, outcome: Outcome | None = None) -> None:
        """Wake the answers whose seq the board's replica now holds."""
        waiting = self._waiters.get(board_id)
        if not waiting:
            return
        applied = self.replica.applied(board_id)
        for seq, future in waiting:
            if future.done():
                continue
            if applied is None:
                future.set_result(None)  # the board is gone: answer from what was committed
            elif outcome is not None and seq == outcome.seq:
                future.set_result(outcome)
            elif seq <= applied:
                future.set_result(None)

    # -- board changes ---------------------------------------------------------------------

    async def create_board(self, body: dict[str, Any]) -> dict[str, Any]:
        answer = await super().create_board(body)
        self._apply_all(self.replica.loaded(answer["id"], 0))
        await self.bus.publish(BoardChanged(answer["id"]))
        return answer

    async def update_board(self, board_id: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = await super().update_board(board_id, body)
        await self.bus.publish(BoardChanged(board_id))
        return answer

    async def delete_board(self, board_id: str) -> None:
        await super().delete_board(board_id)
        self._board_gone(board_id)
        await self.bus.publish(BoardDeleted(board_id))

    async def _reset(self, board_id: str, *, reason: str, ended_at: float | None) -> dict[str, Any]:
        """End the season in force in the database (one process wins a scheduled reset)."""
        state = self.board(board_id)
        season = state.season
        change = await self.writes.reset_board(
            board_id,
            reason=reason,
            ended_at=self.clock() if ended_at is None else ended_at,
            season=season,
        )
        if change is None:
            # Another process ended it first; read it back in case its record never comes.
            self._read_back_later(board_id)
            if reason == seasons.REASON_SCHEDULED:
                return {"board": board_id, "season": season, "current": season + 1}
            raise Conflict(f"season {season} of board {board_id!r} was just ended elsewhere")
        log.info("board %s: season %d archived (%s)", board_id, season, reason)
        await self._apply_own(board_id, change.seq, change)
        return {"board": board_id, "season": season, "current": change.season}

    async def remove_player(self, board_id: str, user_id: str) -> None:
        self.ready_board(board_id)
        change = await self.writes.remove_player(board_id, user_id)
        if change is None:
            raise NotFound(f"player {user_id!r} has no score on board {board_id!r}")
        await self._apply_own(board_id, change.seq, change)

    # -- applying records ------------------------------------------------------------------

    def _received(self, change: Change) -> None:
        """A record from Redis (any process's, our own echoes included)."""
        if isinstance(change, BoardChanged):
            if change.board_id in self.boards:
                self._read_settings_later(change.board_id)
            else:
                self._read_back_later(change.board_id)
        elif isinstance(change, BoardDeleted):
            self._board_gone(change.board_id)
        else:
            self._offer(change)

    def _offer(self, change: Sequenced) -> None:
        self._apply_all(self.replica.offer(change))

    def _apply_all(self, changes: list[Sequenced]) -> None:
        for change in changes:
            self._apply(change)

    def _apply(self, change: Sequenced) -> None:
        """Apply one record the replica released (in seq order) and tell the listeners."""
        board_id = change.board_id
        state = self.boards.get(board_id)
        if state is None:
            return
        outcome = None
        if isinstance(change, ScoreChange):
            record = Record(
                change.user_id,
                change.name,
                change.score,
                change.subscore,
                change.reached_seq,
                change.updated_at,
            )
            outcome = state.ranks.apply(record, seq=change.seq)
            metrics.BOARD_PLAYERS.labels(board_id).set(len(state.ranks))
            accepted_at = time.monotonic()
            for listener in self._listeners:
                listener.score_accepted(board_id, state.ranks, outcome, accepted_at)
        elif isinstance(change, ResetChange):
            fresh = Leaderboard(state.ranks.order, state.ranks.operator, seq=change.seq)
            self.boards[board_id] = BoardState(
                state.config,
                fresh,
                change.season,
                change.started_at,
                schedule_since=state.schedule_since,
            )
            metrics.BOARD_PLAYERS.labels(board_id).set(0)
            for listener in self._listeners:
                listener.board_reset(board_id, fresh)
            self._discard_later(state.ranks)
        else:
            removal = state.ranks.withdraw(change.user_id, seq=change.seq)
            state.ranks.advance(change.seq)
            metrics.BOARD_PLAYERS.labels(board_id).set(len(state.ranks))
            if removal is not None:
                for listener in self._listeners:
                    listener.player_removed(board_id, state.ranks, removal)
        self._settle(board_id, outcome)

    def _board_gone(self, board_id: str) -> None:
        self._deleted_at[board_id] = time.monotonic()
        self._forget_board(board_id)
        self.replica.forget(board_id)
        self._settle(board_id)

    def _discard_later(self, ranks: Leaderboard) -> None:
        task = asyncio.get_running_loop().create_task(discard_standings(ranks))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- reading back ----------------------------------------------------------------------

    def _check_gaps(self) -> None:
        """Read back every board whose missing change did not turn up in time."""
        for board_id in self.replica.overdue():
            log.info("board %s: a change went missing; reading the board back", board_id)
            self._read_back_later(board_id)
        self._gap_check = asyncio.get_running_loop().call_later(GAP_CHECK_S, self._check_gaps)

    def _poll_while_redis_is_away(self) -> None:
        """Without Redis no record arrives from other processes: compare every board's seq
        with the database's instead, and read back the boards that moved on."""
        loop = asyncio.get_running_loop()
        self._away_poll = loop.call_later(REDIS_AWAY_POLL_S, self._poll_while_redis_is_away)
        if self.bus.connected or (self._away_polling is not None and not self._away_polling.done()):
            return
        self._away_polling = loop.create_task(self._catch_up_from_the_database())

    async def _catch_up_from_the_database(self) -> None:
        loop = asyncio.get_running_loop()
        known = set(self.boards)  # committed before the read began: gone if it lacks them
        try:
            stored = await loop.run_in_executor(None, self.store.board_seqs)
        except Exception as exc:  # the database is away too: its own watch says so
            log.debug("comparing board seqs failed: %s", exc)
            return
        for board_id, seq in stored.items():
            applied = self.replica.applied(board_id)
            if applied is None or seq > applied:
                self._read_back_later(board_id)  # changed, or made, by another process
        for board_id in [b for b in known if b not in stored and b in self.boards]:
            self._board_gone(board_id)  # deleted by another process

    def _read_back_later(self, board_id: str) -> None:
        if board_id not in self._read_backs:
            self.replica.reading(board_id)
            task = asyncio.get_running_loop().create_task(self._read_back_now(board_id))
            self._read_backs[board_id] = task
            task.add_done_callback(lambda _: self._read_backs.pop(board_id, None))

    async def _read_back(self, board_id: str) -> None:
        self._read_back_later(board_id)
        with contextlib.suppress(KeyError):
            await asyncio.shield(self._read_backs[board_id])

    async def _read_back_now(self, board_id: str) -> None:
        started = time.monotonic()
        fresh = await read_retrying(
            f"reading board {board_id!r} back", lambda: self._read_board(board_id)
        )
        self._install(board_id, fresh, started)

    def _install(self, board_id: str, fresh: BoardState | None, read_started: float) -> None:
        """Replace a board with what the database held when the read began, then apply the
        records held since."""
        if fresh is None:
            self._board_gone(board_id)
            return
        if self._deleted_at.get(board_id, -1.0) >= read_started:
            return  # deleted while the read ran: what it found is gone
        old = self.boards.get(board_id)
        applied = self.replica.applied(board_id)
        if old is not None and applied is not None and fresh.ranks.seq < applied:
            # A read older than the replica (its snapshot began before a record we applied):
            # keep the newer standings; the replica still gets its held records.
            fresh = old
        else:
            self.boards[board_id] = fresh
            for listener in self._listeners:
                listener.board_reset(board_id, fresh.ranks)
            if old is not None and old.ranks is not fresh.ranks:
                self._discard_later(old.ranks)
        self._apply_all(self.replica.loaded(board_id, fresh.ranks.seq))
        self._settle(board_id)

    def _read_settings_later(self, board_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self._read_settings(board_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _read_settings(self, board_id: str) -> None:
        """Another process edited the board: take its settings (the standings stay)."""
        found = await read_retrying(
            f"reading the settings of board {board_id!r}",
            lambda: self.store.load_board_settings(board_id),
        )
        state = self.boards.get(board_id)
        if found is None or state is None:
            return  # deleted meanwhile: its BoardDeleted does the rest
        state.config, schedule_since = found
        if schedule_since is not None:
            state.schedule_since = schedule_since

    def _resync_later(self) -> None:
        """Redis came back: read every board back (what was published meanwhile is lost)."""
        if self._resync is not None and not self._resync.done():
            self._resync_again = True
            return
        self._resync = asyncio.get_running_loop().create_task(self._resync_all())

    async def _resync_all(self) -> None:
        while True:
            self._resync_again = False
            self.replica.hold_all()
            try:
                started = time.monotonic()
                known = set(self.boards)  # a board created here during the read stays
                states = await read_retrying("reading every board back", self._read_boards)
                found = {state.config.id: state for state in states}
                for board_id in [b for b in known if b not in found and b in self.boards]:
                    self._board_gone(board_id)
                for board_id, state in found.items():
                    self._install(board_id, state, started)
            finally:
                self.replica.release_all()
            log.info("resynchronized %d boards from the database", len(found))
            if not self._resync_again:
                return
