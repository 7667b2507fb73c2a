"""One WebSocket connection's protocol (docs/protocol.md): receive, rate limit, parse, dispatch.

handlers/live.py hands each client message to its `Session`; the session checks the message
rate, parses the envelope, calls the service (`submit_score`, token checks, board look-ups) and
answers through the hub (`ack`, `error`, `pong`, subscriptions). The hub never calls back here
and never sees the service: a WebSocket `submit_score` goes handler -> session -> service ->
(store, ranking) -> hub, like an HTTP post.

`Sessions` is what the sessions of a process share, and owns the one kind of task they start:
a running submission, so that shutdown can let acks go out before the sockets close.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson

from . import frames, metrics
from .auth import Identity
from .config import Settings
from .connections import Connection, Sink
from .errors import AuthFailed, BadRequest, Forbidden, NotFound, Overloaded, ScoreboardError
from .frames import CloseCode
from .hub import Hub
from .limits import TokenBucket
from .pacing import abuse_streak_start
from .ranking import format_timestamp
from .service import ScoreboardService

log = logging.getLogger(__name__)

MAX_SUBSCRIPTIONS = 20  # boards per connection (docs/protocol.md#limits)
MAX_MESSAGE_BYTES = 4 * 1024  # larger client messages close with 1009
# A rate-limit streak ends after this long without a refused message: a client that slows down
# is forgiven, one that stays over the limit for `ws_abuse_close_after` s is closed with 1008.
ABUSE_QUIET_S = 1.0
ACK_GRACE_S = 1.0  # at shutdown, how long running submissions get to answer before closes
SHUTDOWN_STEP_S = 0.01


class MessageLimiter(TokenBucket):
    """A connection's message rate bucket and its current streak of refusals."""

    __slots__ = ("last_refused_at", "streak_start")

    def __init__(self, rate: float, burst: float) -> None:
        super().__init__(rate, burst)
        self.streak_start: float | None = None
        self.last_refused_at: float | None = None


class Sessions:
    """The sessions of one process: what they share, and the submissions still running."""

    def __init__(
        self,
        settings: Settings,
        service: ScoreboardService,
        hub: Hub,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.service = service
        self.hub = hub
        self.clock = clock
        self.wall_clock = wall_clock
        self.accepting = True  # False once shutdown began: submit_score gets `overloaded`
        self._tasks: set[asyncio.Task[Any]] = set()

    def open(
        self, sink: Sink, identity: Identity | None, *, board: str | None, reconnect: bool
    ) -> Session:
        """Register an upgraded connection: connection_status now, a snapshot if `board`."""
        session = Session(self, self.hub.open(sink, identity, reconnect=reconnect))
        if board is not None:
            try:
                session.subscribe(board)
            except ScoreboardError as exc:
                self.hub.send_error(session.conn, exc.code, exc.detail)
        return session

    def start_submission(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close_all(self) -> None:
        """Graceful drain: refuse new work, let running acks go out, then close every socket."""
        self.accepting = False
        self.hub.accepting = False
        deadline = self.clock() + ACK_GRACE_S
        while self._tasks and self.clock() < deadline:
            await asyncio.sleep(SHUTDOWN_STEP_S)
        await self.hub.close_all()
        self.stop()

    def stop(self) -> None:
        """Cancel the submissions still running (their sockets are gone or going)."""
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()


class Session:
    """The protocol of one connection; the handler calls it, it calls the service and hub."""

    __slots__ = ("conn", "limiter", "sessions")

    def __init__(self, sessions: Sessions, conn: Connection) -> None:
        self.sessions = sessions
        self.conn = conn
        self.limiter: MessageLimiter | None = None  # made at the first message

    # -- events from the handler -----------------------------------------------------------

    def receive(self, raw: str | bytes) -> None:
        """One client message: rate limit, parse, dispatch; bad ones get `bad_request`."""
        conn = self.conn
        if not conn.live:
            return
        hub = self.sessions.hub
        hub.count_received()
        now = self.sessions.clock()
        limiter = self.limiter
        if limiter is None:
            s = self.sessions.settings
            limiter = self.limiter = MessageLimiter(s.ws_message_rate, s.ws_message_burst)
        wait = limiter.take(now)
        if wait > 0:
            self._refuse(limiter, now, wait)
            return
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            metrics.WS_RECEIVED_BY_TYPE["invalid"].inc()
            hub.send_error(conn, "bad_request", "the message is not JSON")
            return
        kind = body.get("type") if isinstance(body, dict) else None
        handler = _HANDLERS.get(kind) if isinstance(kind, str) else None
        data = body.get("data", {}) if isinstance(body, dict) else None
        if handler is None or not isinstance(kind, str) or not isinstance(data, dict):
            metrics.WS_RECEIVED_BY_TYPE["invalid"].inc()
            request_id = data.get("request_id") if isinstance(data, dict) else None
            hub.send_error(
                conn,
                "bad_request",
                f'expected {{"type": <known type>, "data": {{...}}}}, got type {str(kind)[:40]!r}',
                request_id=request_id,
            )
            return
        metrics.WS_RECEIVED_BY_TYPE[kind].inc()
        try:
            handler(self, data)
        except ScoreboardError as exc:
            hub.send_error(conn, exc.code, exc.detail, request_id=data.get("request_id"))

    def pong(self) -> None:
        """A protocol pong arrived."""
        self.sessions.hub.pong(self.conn)

    def drained(self) -> None:
        """Bytes that waited in the socket's stream have all been written."""
        self.sessions.hub.drained(self.conn)

    def closed(self, client_code: int | None) -> None:
        """The socket is gone (the handler's on_close)."""
        self.sessions.hub.closed(self.conn, client_code=client_code)

    def close_on_fault(self) -> None:
        """A bug in handling a message: this connection only pays, with 1011."""
        self.sessions.hub.close(self.conn, CloseCode.INTERNAL, "error", "internal error")

    # -- client messages -------------------------------------------------------------------

    def _refuse(self, limiter: MessageLimiter, now: float, wait: float) -> None:
        limiter.streak_start = abuse_streak_start(
            streak_start=limiter.streak_start,
            last_refused_at=limiter.last_refused_at,
            now=now,
            quiet=ABUSE_QUIET_S,
        )
        limiter.last_refused_at = now
        settings, hub = self.sessions.settings, self.sessions.hub
        if now - limiter.streak_start >= settings.ws_abuse_close_after:
            hub.close(self.conn, CloseCode.POLICY, "policy", "message rate limit exceeded")
            return
        hub.send_error(
            self.conn,
            "rate_limited",
            f"over {settings.ws_message_rate:g} messages/s",
            retry_after=wait,
        )

    def subscribe(self, board_id: Any) -> None:
        """Join a board's room; answered by a snapshot."""
        if not isinstance(board_id, str):
            # The message's shape is wrong (no `data`, no `board`): not an unknown board.
            raise BadRequest(f"board must be a string, got {board_id!r}"[:200])
        state = self.sessions.service.boards.get(board_id)
        if state is None:
            raise NotFound(f"no board {board_id!r}")
        boards = self.conn.boards
        if board_id not in boards and len(boards) >= MAX_SUBSCRIPTIONS:
            raise BadRequest(f"at most {MAX_SUBSCRIPTIONS} boards per connection")
        self.sessions.hub.subscribe(self.conn, board_id, state.ranks)

    def _on_subscribe(self, data: dict[str, Any]) -> None:
        self.subscribe(data.get("board"))

    def _on_unsubscribe(self, data: dict[str, Any]) -> None:
        board_id = data.get("board")
        if not isinstance(board_id, str):
            raise BadRequest(f"board must be a string, got {board_id!r}")
        self.sessions.hub.unsubscribe(self.conn, board_id)

    def _on_ping(self, data: dict[str, Any]) -> None:
        server_time = format_timestamp(self.sessions.wall_clock())
        self.sessions.hub.send_reply(self.conn, frames.pong(data.get("t"), server_time), "pong")

    def _on_auth(self, data: dict[str, Any]) -> None:
        conn, hub = self.conn, self.sessions.hub
        if conn.identity is None:
            raise Forbidden("an anonymous connection cannot take a token; reconnect with one")
        token = data.get("token")
        try:
            if not isinstance(token, str):
                raise AuthFailed("token must be a string")
            identity = self.sessions.service.tokens.decode(token)
            if identity.sub != conn.identity.sub:
                raise AuthFailed("the token is for another user")
        except ScoreboardError:
            hub.send_error(conn, "auth_failed", "Authentication failed")
            hub.close(conn, CloseCode.AUTH, "auth", "authentication failed")
            return
        hub.refresh_identity(conn, identity)

    def _on_submit(self, data: dict[str, Any]) -> None:
        identity = self.conn.identity
        if identity is None:
            raise AuthFailed("submitting a score needs a token")
        # Presence and type are the message's shape (bad_request); the key's length is a value
        # rule checked by the service for both transports (validation_failed).
        request_id = data.get("request_id")
        if not isinstance(request_id, str):
            raise BadRequest(f"request_id must be a string, got {request_id!r}"[:200])
        board_id = data.get("board")
        if not isinstance(board_id, str):
            raise BadRequest(f"board must be a string, got {board_id!r}"[:200])
        if not self.sessions.accepting:
            raise Overloaded("the server is shutting down")
        body = {k: v for k, v in data.items() if k not in ("board", "request_id")}
        self.sessions.start_submission(self._submit(identity, board_id, body, request_id))

    async def _submit(
        self, identity: Identity, board_id: str, body: dict[str, Any], request_id: str
    ) -> None:
        conn, hub = self.conn, self.sessions.hub
        try:
            result = await self.sessions.service.submit_score(
                identity, board_id, body, idempotency_key=request_id
            )
        except ScoreboardError as exc:
            hub.send_error(
                conn, exc.code, exc.detail, request_id=request_id, retry_after=exc.retry_after
            )
            return
        except Exception:
            log.exception("submit_score over WebSocket failed")
            hub.send_error(conn, "internal", "Internal error", request_id=request_id)
            return
        hub.send_reply(conn, frames.ack(request_id, result), "ack")


_HANDLERS: dict[str, Callable[[Session, dict[str, Any]], None]] = {
    "subscribe": Session._on_subscribe,
    "unsubscribe": Session._on_unsubscribe,
    "submit_score": Session._on_submit,
    "ping": Session._on_ping,
    "auth": Session._on_auth,
}
