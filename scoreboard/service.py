"""The use cases: boards, scores and reads — validate, persist, apply, publish.

Handlers (HTTP and WebSocket) call these and nothing deeper. Every accepted change is handed to
the registered BoardListeners (the live-delivery hub, the long-poll waiters) after its commit,
so transports never learn about each other.

Ordering of a score submission: the ranking engine applies it in memory at once (so that
concurrent submissions of one player see each other, in arrival order), the store commits it in
the writer's next group commit, and only then is the caller answered and the change published.
If the commit fails, the board is reloaded from the database so memory never keeps a change the
database does not have.

About 615 lines, one noun: the use cases over the in-memory boards (loading and reading them
back, readiness and the database watch, board changes, reads, the score path). Accounts live
in accounts.py already; the long-poll waiters (UpdateWaiters, about 40 lines) could leave next.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

import orjson

from . import frames, metrics, schemas, seasons, validation
from .auth import Identity, Role, TokenCodec
from .config import Settings
from .errors import (
    Conflict,
    Forbidden,
    Internal,
    NotFound,
    NotReady,
    RateLimited,
    ScoreboardError,
    ValidationFailed,
)
from .limits import KeyedLimiter
from .ranking import Leaderboard, Operator, Order, Outcome, Removal, format_timestamp
from .schemas import BoardConfig
from .store import UNAVAILABLE_RETRY_AFTER_S, Store
from .tables import LoadedBoard, ScoreWrite, SeasonEnd

log = logging.getLogger(__name__)
T = TypeVar("T")

RELOAD_POLL_S = 0.01  # how often a reload checks that the board's writes have settled
READ_RETRY_FIRST_S = 0.5  # a failed database read (start-up, read-back) is retried with
READ_RETRY_MAX_S = 10.0  # doubling pauses up to this, for as long as the database stays away
LOADING_RETRY_AFTER_S = 1  # Retry-After while the boards load: a big board takes seconds
PING_TIMEOUT_S = 2.0  # a database that takes longer to answer SELECT is not ready
WATCH_INTERVAL_S = 1.0  # how often the database is probed, so service resumes by itself
# How often scheduled resets are looked for: a reset happens at most this late after its
# boundary; the check is a few comparisons per board.
SCHEDULE_CHECK_S = 1.0
# Loop time spent per turn freeing a reset board's old standings (measured: 20,000 records
# at once took 30-40 ms), and how many are freed between looks at the time.
DISCARD_SLICE_S = 0.002
DISCARD_STEP = 256


class BoardListener(Protocol):
    """Told of every committed change; must not block (it runs on the IOLoop).

    Each call hands over the board's standings as they are now, so a listener never has to
    read the board back (and never needs the service).
    """

    def score_accepted(
        self, board_id: str, ranks: Leaderboard, outcome: Outcome, accepted_at: float
    ) -> None: ...

    def board_reset(self, board_id: str, ranks: Leaderboard) -> None: ...

    def player_removed(self, board_id: str, ranks: Leaderboard, removal: Removal) -> None: ...

    def board_deleted(self, board_id: str) -> None: ...


@dataclass(slots=True)
class BoardState:
    """A board's configuration and its in-memory standings."""

    config: BoardConfig
    ranks: Leaderboard
    season: int = 1  # the season in force
    season_started_at: float = 0.0  # unix seconds
    schedule_since: float | None = None  # when reset_schedule was last changed (if ever)
    writes_in_flight: int = 0  # score writes applied here and not yet settled by the store
    # Set when the database refused a write this memory already applied: the board takes no
    # more scores until it has been read back, so no later write can persist the refused one.
    stale: bool = False

    def to_json(self) -> dict[str, Any]:
        """The board as the API answers it (schemas.BOARD_ANSWER)."""
        return schemas.board_answer(
            self.config,
            season=self.season,
            next_reset_at=_iso_or_none(self.next_reset_at()),
            players=len(self.ranks),
            seq=self.ranks.seq,
        )

    def schedule_from(self) -> float:
        """Boundaries after this moment end the season: a schedule set mid-season does not
        end it retroactively."""
        return max(self.season_started_at, self.schedule_since or 0.0)

    def next_reset_at(self) -> float | None:
        """When the board's schedule next ends the season (None for `never`)."""
        return seasons.next_boundary(self.config.reset_schedule, after=self.schedule_from())


@dataclass(frozen=True, slots=True)
class ScoreRequest:
    """A validated score submission."""

    user_id: str
    score: int
    subscore: int
    metadata: dict[str, Any] | None
    account_name: str | None = None  # the stored name of the player, when it was looked up


class UpdateWaiters:
    """Long-poll waiters per board, woken by committed changes (a BoardListener)."""

    def __init__(self) -> None:
        self._waiting: dict[str, set[asyncio.Future[None]]] = {}

    async def wait(self, board_id: str, timeout: float) -> None:
        future = asyncio.get_running_loop().create_future()
        waiters = self._waiting.setdefault(board_id, set())
        waiters.add(future)
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            pass
        finally:
            waiters.discard(future)
            if not waiters:
                self._waiting.pop(board_id, None)

    def _wake(self, board_id: str) -> None:
        for future in self._waiting.get(board_id, ()):
            if not future.done():
                future.set_result(None)

    def score_accepted(
        self, board_id: str, ranks: Leaderboard, outcome: Outcome, accepted_at: float
    ) -> None:
        if outcome.improved:
            self._wake(board_id)

    def board_reset(self, board_id: str, ranks: Leaderboard) -> None:
        self._wake(board_id)

    def player_removed(self, board_id: str, ranks: Leaderboard, removal: Removal) -> None:
        self._wake(board_id)

    def board_deleted(self, board_id: str) -> None:
        self._wake(board_id)


def request_fingerprint(board_id: str, body: dict[str, Any]) -> str:
    """Hash of what an idempotent request asked for: same key + other body is a 422."""
    canonical = orjson.dumps({"board": board_id, "body": body}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


class ScoreboardService:
    """Owns the in-memory boards and every use case over them."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        tokens: TokenCodec,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.tokens = tokens
        self.clock = clock
        self.boards: dict[str, BoardState] = {}
        self.ready = False
        self.updates = UpdateWaiters()
        self._listeners: list[BoardListener] = [self.updates]
        self._score_limiter = KeyedLimiter(settings.score_rate, settings.score_burst)
        self._in_flight: set[tuple[str, str]] = set()  # (actor, idempotency key)
        self._submissions_running = 0
        self._reloads: dict[str, asyncio.Task[None]] = {}
        self._schedule_handle: asyncio.TimerHandle | None = None
        self._schedule_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()  # old standings being freed
        self.accepting = True  # False once shutdown began: new submissions get a 503
        self._watch: asyncio.TimerHandle | None = None  # the next database probe
        self._watching: asyncio.Task[None] | None = None  # the probe running, if any

    # -- lifecycle -------------------------------------------------------------------------

    def add_listener(self, listener: BoardListener) -> None:
        self._listeners.append(listener)

    async def load(self) -> None:
        """Load every board from the database, then mark the service ready.

        Reading and ranking run on a thread: a million records take seconds to sort, and the
        loop keeps answering /healthz and /readyz meanwhile. A database that is not up yet is
        retried; /readyz stays 503 until it answers.
        """
        states = await read_retrying("loading the boards", self._read_boards)
        self.boards.update((state.config.id, state) for state in states)
        self._boards_loaded()
        # The boards are long-lived: move them out of the collector's view, or each full
        # collection walks millions of records (about 170 ms at 1M players) and stalls the loop.
        gc.collect()
        gc.freeze()
        # A boundary passed while the server was down: that reset happens now, once, before
        # any score can land in a season that is over.
        await self.run_due_resets()
        self._schedule_next()
        self.ready = True
        self._start_watching_the_database()
        log.info(
            "loaded %d boards with %d players",
            len(self.boards),
            sum(len(b.ranks) for b in self.boards.values()),
        )

    def _boards_loaded(self) -> None:
        """Called once the boards are read at start-up, before anything else uses them.

        Nothing to do for one process; cluster mode (cluster/replication.py) applies the
        changes other processes published while the load ran.
        """

    def _read_boards(self) -> list[BoardState]:
        return [_board_state(item) for item in self.store.load_boards()]

    def _read_board(self, board_id: str) -> BoardState | None:
        item = self.store.load_board(board_id)
        return _board_state(item) if item is not None else None

    async def _store_applied(
        self, board_id: str, state: BoardState, what: str, write: Awaitable[T]
    ) -> T:
        """Store a change memory already holds (a score, a reset, a removal).

        If the database refuses it, memory no longer matches the database: the board takes no
        more changes until it has been read back (once its other writes settle), so nothing
        later builds on what was refused.
        """
        state.writes_in_flight += 1
        try:
            return await write
        except Exception as exc:
            log.warning("%s on %s failed (%s); reloading the board", what, board_id, exc)
            self._reload_later(board_id, state)
            if isinstance(exc, ScoreboardError):
                raise
            raise Internal(f"the {what} could not be stored") from exc
        finally:
            state.writes_in_flight -= 1

    def _reload_later(self, board_id: str, state: BoardState) -> None:
        """Mark a board stale and read it back from the database in the background."""
        state.stale = True
        if board_id not in self._reloads:
            task = asyncio.get_running_loop().create_task(self._reload(board_id, state))
            self._reloads[board_id] = task
            task.add_done_callback(lambda _: self._reloads.pop(board_id, None))

    async def _reload(self, board_id: str, state: BoardState) -> None:
        # Writes applied before the board went stale settle first, so the read holds them.
        while state.writes_in_flight:
            await asyncio.sleep(RELOAD_POLL_S)
        fresh = await read_retrying(
            f"reading board {board_id!r} back", lambda: self._read_board(board_id)
        )
        if self.boards.get(board_id) is not state:
            return  # deleted (or replaced) meanwhile
        if fresh is None:
            self._forget_board(board_id)
            return
        self.boards[board_id] = fresh
        for listener in self._listeners:
            listener.board_reset(board_id, fresh.ranks)

    async def check_ready(self) -> None:
        """Raise unless the boards are loaded and the database answers."""
        self.require_ready()
        await self._ping()
        self.require_ready()

    def require_ready(self) -> None:
        """NotReady (503, Retry-After) while the boards load or the database is unavailable.

        Guards every board route and every write: before the boards are loaded an existing
        board would look absent (404), and with the database gone, replaced, damaged or
        unreachable a write would not be kept and a read may show what was never stored.
        """
        if not self.ready:
            raise NotReady("leaderboards are still loading", retry_after=LOADING_RETRY_AFTER_S)
        problem = self.store.unavailable()
        if problem is not None:
            raise NotReady(problem, retry_after=UNAVAILABLE_RETRY_AFTER_S)

    def ready_board(self, board_id: str) -> BoardState:
        """`board()` behind `require_ready()`: what a board route reads or writes."""
        self.require_ready()
        return self.board(board_id)

    async def _ping(self) -> None:
        try:
            await asyncio.wait_for(self.store.ping(), timeout=PING_TIMEOUT_S)
        except NotReady:
            raise
        except Exception as exc:  # any database failure means not ready
            raise NotReady(
                "the database does not answer", retry_after=UNAVAILABLE_RETRY_AFTER_S
            ) from exc

    def _start_watching_the_database(self) -> None:
        """Ping the database every second, so service resumes once it is back by itself."""
        loop = asyncio.get_running_loop()

        def tick() -> None:
            if self._watch is None:
                return
            if self._watching is None or self._watching.done():
                self._watching = loop.create_task(self._probe())
            self._watch = loop.call_later(WATCH_INTERVAL_S, tick)

        self._watch = loop.call_later(WATCH_INTERVAL_S, tick)

    async def _probe(self) -> None:
        with contextlib.suppress(NotReady):
            await self._ping()

    def stop_watching(self) -> None:
        """Cancel the database watch (at shutdown)."""
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        if self._watching is not None:
            self._watching.cancel()

    # -- boards ----------------------------------------------------------------------------

    def board(self, board_id: str) -> BoardState:
        state = self.boards.get(board_id)
        if state is None:
            raise NotFound(f"no board {board_id!r}")
        return state

    def list_boards(self) -> list[dict[str, Any]]:
        self.require_ready()
        return [state.to_json() for state in self.boards.values()]

    async def create_board(self, body: dict[str, Any]) -> dict[str, Any]:
        self.require_ready()
        config = schemas.new_board(body, created_at=self.clock())
        _check_bounds(config)
        if config.id in self.boards:
            raise Conflict(f"board {config.id!r} exists")
        await self.store.create_board(config)
        state = _board_state(LoadedBoard(config=config, seq=0, records=[]))
        self.boards[config.id] = state
        return state.to_json()

    async def update_board(self, board_id: str, body: dict[str, Any]) -> dict[str, Any]:
        state = self.ready_board(board_id)
        changes = schemas.BOARD_PATCH.check(body)
        config = replace(state.config, **changes)
        schedule_since = (
            self.clock() if config.reset_schedule != state.config.reset_schedule else None
        )
        _check_bounds(config)
        await self.store.update_board(config, schedule_since=schedule_since)
        state = self.board(board_id)  # it may have been deleted while we waited
        state.config = config
        if schedule_since is not None:
            state.schedule_since = schedule_since
        return state.to_json()

    async def delete_board(self, board_id: str) -> None:
        self.ready_board(board_id)
        await self.store.delete_board(board_id)
        self._forget_board(board_id)

    # -- seasons ---------------------------------------------------------------------------

    async def reset_board(self, board_id: str) -> dict[str, Any]:
        """Reset by hand (POST /reset): `{board, season: archived, current: begun}`."""
        self.ready_board(board_id)
        return await self._reset(board_id, reason=seasons.REASON_MANUAL, ended_at=None)

    async def _reset(self, board_id: str, *, reason: str, ended_at: float | None) -> dict[str, Any]:
        """Archive the standings as the season in force and start the next one, empty.

        On the loop, in one step: the board's standings are swapped for an empty board one
        seq further on, and the archive is queued behind every write already applied. So a
        submission applied before the swap is committed, archived and in the old season only;
        one after it is in the new season only. The archive itself is SQL on the writer
        thread, and the old standings are freed a slice per loop turn: a million players
        never hold the loop.
        """
        state = self.board(board_id)
        if state.stale:
            raise NotReady(f"board {board_id!r} is being read back after a database error")
        end_at = self.clock() if ended_at is None else ended_at
        old = state.ranks
        fresh = Leaderboard(old.order, old.operator, seq=old.seq + 1)
        new_state = BoardState(
            state.config, fresh, state.season + 1, end_at, schedule_since=state.schedule_since
        )
        end = SeasonEnd(
            board_id=board_id,
            order=state.config.order,
            season=state.season,
            started_at=state.season_started_at,
            ended_at=end_at,
            reason=reason,
            seq=fresh.seq,
        )
        self.boards[board_id] = new_state
        players = await self._store_applied(
            board_id, new_state, "reset", self.store.reset_board(end)
        )
        log.info(
            "board %s: season %d archived (%d players, %s)", board_id, end.season, players, reason
        )
        if self.boards.get(board_id) is new_state:
            metrics.BOARD_PLAYERS.labels(board_id).set(len(fresh))
            for listener in self._listeners:
                listener.board_reset(board_id, fresh)
        task = asyncio.get_running_loop().create_task(discard_standings(old))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return {"board": board_id, "season": end.season, "current": new_state.season}

    async def run_due_resets(self) -> None:
        """Reset every board whose schedule passed a boundary, once, ending at that boundary."""
        now = self.clock()
        for board_id, state in list(self.boards.items()):
            due = seasons.due_boundary(
                state.config.reset_schedule, season_started_at=state.schedule_from(), now=now
            )
            if due is None or state.stale or self.boards.get(board_id) is not state:
                continue
            try:
                await self._reset(board_id, reason=seasons.REASON_SCHEDULED, ended_at=due)
            except ScoreboardError as exc:  # deleted meanwhile, or the database is away
                log.warning("scheduled reset of %s failed: %s", board_id, exc.detail)

    def _schedule_next(self) -> None:
        loop = asyncio.get_running_loop()
        self._schedule_handle = loop.call_later(SCHEDULE_CHECK_S, self._schedule_due)

    def _schedule_due(self) -> None:
        self._schedule_handle = None
        if not self.accepting:
            return
        task = asyncio.get_running_loop().create_task(self.run_due_resets())
        self._schedule_task = task

        def done(_: asyncio.Task[None]) -> None:
            self._schedule_task = None
            if self.accepting:
                self._schedule_next()

        task.add_done_callback(done)

    def stop_schedules(self) -> None:
        """Stop looking for scheduled resets (shutdown); a running reset finishes."""
        if self._schedule_handle is not None:
            self._schedule_handle.cancel()
            self._schedule_handle = None

    async def seasons(self, board_id: str) -> dict[str, Any]:
        """`{board, current, seasons}`: the archived seasons, oldest first."""
        state = self.ready_board(board_id)
        rows = await self.store.list_seasons(board_id)
        return {
            "board": board_id,
            "current": state.season,
            "seasons": [_season_json(row) for row in rows],
        }

    async def season_leaderboard(
        self, board_id: str, season: int, *, limit: int, offset: int
    ) -> dict[str, Any]:
        """A page of an archived season's final standings."""
        self.ready_board(board_id)
        found = await self.store.season_page(board_id, season, offset=offset, limit=limit)
        if found is None:
            raise NotFound(f"board {board_id!r} has no archived season {season}")
        row, entries = found
        return {
            "board": board_id,
            "season": season,
            "total": row.players,
            **_season_json(row),
            "entries": [e.to_json() for e in entries],
        }

    async def remove_player(self, board_id: str, user_id: str) -> None:
        """Remove a player's entry (not their account) as a change every subscriber sees."""
        state = self.ready_board(board_id)
        if state.stale:
            raise NotReady(f"board {board_id!r} is being read back after a database error")
        ranks = state.ranks
        removal = ranks.withdraw(user_id)
        if removal is None:
            raise NotFound(f"player {user_id!r} has no score on board {board_id!r}")
        await self._store_applied(
            board_id, state, "removal", self.store.remove_player(board_id, user_id, removal.seq)
        )
        if self.boards.get(board_id) is state:
            metrics.BOARD_PLAYERS.labels(board_id).set(len(ranks))
            for listener in self._listeners:
                listener.player_removed(board_id, ranks, removal)

    def export_season(self, board_id: str, season: int | None) -> int | None:
        """Which stored standings an export of `season` reads: None for the season in force,
        else the archived season's number; NotFound for any other number."""
        state = self.ready_board(board_id)
        if season is None or season == state.season:
            return None
        if not 1 <= season < state.season:
            raise NotFound(f"board {board_id!r} has no season {season}")
        return season

    def _forget_board(self, board_id: str) -> None:
        if self.boards.pop(board_id, None) is not None:
            metrics.forget_board(board_id)
            for listener in self._listeners:
                listener.board_deleted(board_id)

    # -- reads -----------------------------------------------------------------------------

    def leaderboard(self, board_id: str, *, limit: int, offset: int) -> dict[str, Any]:
        state = self.ready_board(board_id)
        return {
            "board": board_id,
            "seq": state.ranks.seq,
            "total": len(state.ranks),
            "entries": [e.to_json() for e in state.ranks.page(offset, limit)],
        }

    def player(self, board_id: str, user_id: str) -> dict[str, Any]:
        entry = self.ready_board(board_id).ranks.entry(user_id)
        if entry is None:
            raise NotFound(f"player {user_id!r} has no score on board {board_id!r}")
        return entry.to_json()

    def around(self, board_id: str, user_id: str, *, radius: int) -> dict[str, Any]:
        state = self.ready_board(board_id)
        if user_id not in state.ranks:
            raise NotFound(f"player {user_id!r} has no score on board {board_id!r}")
        return {
            "board": board_id,
            "seq": state.ranks.seq,
            "entries": [e.to_json() for e in state.ranks.around(user_id, radius)],
        }

    def board_view(self, board_id: str, identity: Identity | None) -> dict[str, Any]:
        """`{board, seq, top_10, you}`: the state a long-poll (or a snapshot) carries."""
        ranks = self.board(board_id).ranks
        return frames.board_view(
            board_id, ranks, ranks.entry(identity.sub) if identity is not None else None
        )

    async def wait_for_update(
        self, board_id: str, *, since: int, timeout: float, identity: Identity | None
    ) -> dict[str, Any]:
        """Answer as soon as the board's seq passes `since`, or after `timeout` seconds."""
        self.ready_board(board_id)
        deadline = time.monotonic() + timeout
        while self.board(board_id).ranks.seq <= since:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            await self.updates.wait(board_id, remaining)
        return self.board_view(board_id, identity)

    def me(self, identity: Identity) -> dict[str, Any]:
        boards = []
        name = identity.name
        for board_id, state in self.boards.items():
            entry = state.ranks.entry(identity.sub)
            if entry is not None:
                boards.append({"board": board_id, "rank": entry.rank, "score": entry.score})
                name = name or entry.name
        return {
            "user_id": identity.sub,
            "name": name or identity.sub,
            "role": identity.role.value,
            "boards": boards,
        }

    # -- scores ----------------------------------------------------------------------------

    def parse_score(
        self, identity: Identity, state: BoardState, body: dict[str, Any]
    ) -> ScoreRequest:
        """Value and permission checks of a submission (422, then 403)."""
        clean = schemas.SCORE_POST.check(body)
        user_id = clean.get("user_id", identity.sub)
        if user_id != identity.sub and identity.role not in (Role.SERVER, Role.ADMIN):
            raise Forbidden("only server and admin tokens may submit for another user_id")
        if identity.role is Role.PLAYER and not state.config.player_submissions:
            raise Forbidden(f"board {state.config.id!r} does not take scores from players")
        return ScoreRequest(
            user_id=user_id,
            score=clean["score"],
            subscore=clean["subscore"],
            metadata=clean.get("metadata"),
        )

    def _check_rate(self, identity: Identity) -> None:
        # Server and admin tokens are trusted integrations and are not limited.
        if identity.role is not Role.PLAYER:
            return
        wait = self._score_limiter.take(identity.sub, time.monotonic())
        if wait > 0:
            metrics.SUBMISSIONS_BY_RESULT["rate_limited"].inc()
            raise RateLimited(f"over {self.settings.score_rate:g} scores/s", retry_after=wait)

    async def submit_score(
        self,
        identity: Identity,
        board_id: str,
        body: dict[str, Any],
        *,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Validate, apply, commit and publish one score; returns the Result once durable."""
        self._submissions_running += 1
        try:
            return await self._submit_score(identity, board_id, body, idempotency_key)
        except RateLimited:
            raise
        except ScoreboardError:
            metrics.SUBMISSIONS_BY_RESULT["rejected"].inc()
            raise
        finally:
            self._submissions_running -= 1

    async def drain(self, timeout: float) -> None:
        """Refuse new submissions, then wait (up to `timeout` s) for the running ones to answer."""
        self.accepting = False
        self.stop_watching()
        self.stop_schedules()
        deadline = time.monotonic() + timeout
        while self._submissions_running and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    async def _submit_score(
        self, identity: Identity, board_id: str, body: dict[str, Any], key: str | None
    ) -> dict[str, Any]:
        if not self.accepting:
            # Refused before anything is applied: the store closes once running ones commit.
            raise NotReady("the server is shutting down")
        state = self.ready_board(board_id)
        request = self.parse_score(identity, state, body)
        fingerprint = None
        if key is not None:
            validation.idempotency_key(key)
            fingerprint = request_fingerprint(board_id, body)
            if (identity.sub, key) in self._in_flight:
                raise Conflict("a request with this Idempotency-Key is still in flight")
            self._in_flight.add((identity.sub, key))
        try:
            if key is not None:
                stored = await self.store.find_answer(identity.sub, key)
                if stored is not None:
                    if stored.request_hash != fingerprint:
                        raise ValidationFailed("Idempotency-Key was used with another request body")
                    if stored.response is not None:
                        metrics.SUBMISSIONS_BY_RESULT["unchanged"].inc()
                        return stored.response
                    # Cluster mode: committed by a process that has not stored its answer;
                    # the cluster's _apply_and_commit waits for it.
            self._check_rate(identity)
            request = await self._with_account_name(identity, board_id, request)
            return await self._apply_and_commit(
                identity, self.board(board_id), request, key, fingerprint
            )
        finally:
            if key is not None:
                self._in_flight.discard((identity.sub, key))

    async def _apply_and_commit(
        self,
        identity: Identity,
        state: BoardState,
        request: ScoreRequest,
        key: str | None,
        fingerprint: str | None,
    ) -> dict[str, Any]:
        board_id = state.config.id
        if state.stale:
            raise NotReady(f"board {board_id!r} is being read back after a database error")
        ranks = state.ranks
        config = state.config
        # One call decides: the engine applies the operator and the board's bounds together,
        # and changes nothing when it refuses.
        outcome = ranks.submit(
            request.user_id,
            self._display_name(identity, state, request),
            request.score,
            request.subscore,
            now=self.clock(),
            min_score=config.min_score,
            max_score=config.max_score,
        )
        result = {
            "board": board_id,
            "user_id": outcome.user_id,
            "score": outcome.score,
            "subscore": outcome.subscore,
            "rank": outcome.rank,
            "previous_rank": outcome.previous_rank,
            "improved": outcome.improved,
            "seq": outcome.seq,
        }
        write = ScoreWrite(
            board_id=board_id,
            user_id=outcome.user_id,
            user_name=outcome.name,
            score=outcome.score,
            subscore=outcome.subscore,
            reached_seq=outcome.record.reached_seq,
            updated_at=outcome.record.updated_at,
            seq=outcome.seq,
            improved=outcome.improved,
            actor=identity.sub,
            idempotency_key=key,
            request_hash=fingerprint,
            response=result,
            submitted_score=request.score,
            submitted_subscore=request.subscore,
            metadata=request.metadata,
        )
        await self._store_applied(board_id, state, "score", self.store.write_score(write))
        if outcome.improved:
            metrics.SUBMISSIONS_BY_RESULT["accepted"].inc()
            # A board deleted (or reset) during the commit has no subscribers of this state.
            if self.boards.get(board_id) is state:
                metrics.BOARD_PLAYERS.labels(board_id).set(len(ranks))
                accepted_at = time.monotonic()
                for listener in self._listeners:
                    listener.score_accepted(board_id, ranks, outcome, accepted_at)
        else:
            metrics.SUBMISSIONS_BY_RESULT["unchanged"].inc()
        return result

    @staticmethod
    def _display_name(identity: Identity, state: BoardState, request: ScoreRequest) -> str:
        user_id = request.user_id
        if user_id == identity.sub and identity.name:
            return identity.name
        record = state.ranks.record(user_id)
        if record is not None:
            return record.name
        return request.account_name or user_id

    async def _with_account_name(
        self, identity: Identity, board_id: str, request: ScoreRequest
    ) -> ScoreRequest:
        """Look up the stored name of a player new to the board whose token names nobody.

        Without it, a `server` token's first score for a registered player would store the
        user id as the name, overwriting the account's display name ("Dave D" -> "dave").
        """
        if request.user_id == identity.sub and identity.name:
            return request
        if request.user_id in self.board(board_id).ranks:
            return request
        user = await self.store.get_user(request.user_id)
        return request if user is None else replace(request, account_name=user.name)


async def read_retrying(what: str, read: Callable[[], T]) -> T:
    """Run a blocking database read on a thread until it succeeds, pausing longer each time."""
    loop = asyncio.get_running_loop()
    delay_s = READ_RETRY_FIRST_S
    while True:
        try:
            return await loop.run_in_executor(None, read)
        except Exception:
            log.exception("%s failed; retrying in %.1f s", what, delay_s)
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, READ_RETRY_MAX_S)


def _board_state(loaded: LoadedBoard) -> BoardState:
    """A board's in-memory state from what the store read (pure CPU; safe on a thread)."""
    config = loaded.config
    ranks = Leaderboard(Order(config.order), Operator(config.operator), seq=loaded.seq)
    ranks.load(loaded.records, seq=loaded.seq)
    metrics.BOARD_PLAYERS.labels(config.id).set(len(ranks))
    started = loaded.season_started_at
    return BoardState(
        config,
        ranks,
        loaded.season,
        config.created_at if started is None else started,
        schedule_since=loaded.schedule_since,
    )


async def discard_standings(ranks: Leaderboard) -> None:
    """Free a board's old standings a slice of loop time per turn (see Leaderboard.take_all)."""
    records, pieces = ranks.take_all()
    while records or pieces:
        deadline = time.perf_counter() + DISCARD_SLICE_S
        while (records or pieces) and time.perf_counter() < deadline:
            if records:
                for _ in range(min(DISCARD_STEP, len(records))):
                    records.popitem()
            else:
                pieces.pop()  # about a thousand keys
        await asyncio.sleep(0)


def _iso_or_none(ts: float | None) -> str | None:
    return None if ts is None else format_timestamp(ts)


def _season_json(row: Any) -> dict[str, Any]:
    return {
        "season": row.season,
        "started_at": format_timestamp(row.started_at),
        "ended_at": format_timestamp(row.ended_at),
        "players": row.players,
        "reason": row.reason,
    }


def _check_bounds(config: BoardConfig) -> None:
    if (
        config.min_score is not None
        and config.max_score is not None
        and config.min_score > config.max_score
    ):
        raise ValidationFailed(
            f"min_score must not exceed max_score, got {config.min_score} > {config.max_score}"
        )
