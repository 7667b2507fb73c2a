"""The WebSocket endpoint `/ws`: the handshake's checks and the socket side of a connection.

Before the upgrade it checks, in order, the browser origin (403), the token (401, or an
anonymous read-only connection under --anonymous-read) and the connection limits (503 / 429),
answering problem+json like the rest of the API. After the upgrade it is a thin adapter: client
messages, pongs and the close go to its `Session` (session.py), and it is the hub's `Sink` through
`LeanWebSocketHandler`, which holds every use of Tornado's private API (tornado_internals.py).
tests/test_live.py drives both write paths, the handshake and the logs.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from .. import metrics
from ..auth import Identity
from ..errors import AuthFailed, Forbidden, NotReady, ScoreboardError
from ..hub import Hub
from ..session import MAX_MESSAGE_BYTES, Session
from .base import Services, bearer_token, log_request_exception, send_problem
from .tornado_internals import LeanWebSocketHandler

log = logging.getLogger(__name__)

SUBPROTOCOL = "scoreboard.v1"
BEARER_PREFIX = "bearer."  # `Sec-WebSocket-Protocol: scoreboard.v1, bearer.<token>`


class LiveSocket(LeanWebSocketHandler):
    """One WebSocket connection; its session and the hub decide everything past the handshake.

    Auth rule: the handshake. Tornado's own `get()` performs the upgrade (not overridden, so
    that no extra coroutine frame lives as long as the connection); `prepare()` runs first and
    answers 401 / 403 / 429 / 503 before any upgrade.
    """

    auth_rule = "handshake"

    def initialize(self, services: Services) -> None:
        # Few attributes on purpose: tens of thousands of these live at once.
        self.services = services
        self._identity: Identity | None = None
        self._session: Session | None = None

    @property
    def hub(self) -> Hub:
        return self.services.hub

    # -- handshake -------------------------------------------------------------------------

    def prepare(self) -> None:
        origin = self.request.headers.get("Origin")
        if origin is not None and not self._origin_allowed(origin):
            self._reject(Forbidden(f"origin {origin[:200]!r} is not allowed"), "origin")
            return
        try:
            identity = self._authenticate()
        except ScoreboardError as exc:
            self._reject(exc, "auth")
            return
        refusal = self.hub.admission(identity)
        if refusal is None and not self.services.service.ready:
            # Right after a restart every client reconnects at once: until the boards are
            # loaded a subscription could only say "no board"; 503 with Retry-After instead.
            refusal = NotReady("the leaderboards are still loading", retry_after=1.0)
        if refusal is not None:
            self._reject(refusal, "limit")
            return
        self._identity = identity

    def _authenticate(self) -> Identity | None:
        header = self.request.headers.get("Authorization")
        token: str | None = None
        if header is not None:
            token = bearer_token(header)
        else:
            for offer in self._offered_subprotocols():
                if offer.startswith(BEARER_PREFIX):
                    token = offer[len(BEARER_PREFIX) :]
                    break
            else:
                token = self.get_query_argument("access_token", None)
        if token is None:
            if self.services.settings.anonymous_read:
                return None
            raise AuthFailed("a token is required")
        return self.services.tokens.decode(token)

    def _offered_subprotocols(self) -> list[str]:
        header = self.request.headers.get("Sec-WebSocket-Protocol", "")
        return [part.strip() for part in header.split(",") if part.strip()]

    def _origin_allowed(self, origin: str) -> bool:
        # The server's own origin is always allowed; others only when listed exactly.
        if urlsplit(origin).netloc.lower() == self.request.headers.get("Host", "").lower():
            return True
        return origin.rstrip("/") in self.services.settings.allowed_origins

    def check_origin(self, origin: str) -> bool:
        return self._origin_allowed(origin)

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        # Only the protocol name: the `bearer.<token>` offer is never echoed back.
        return SUBPROTOCOL if SUBPROTOCOL in subprotocols else None

    def get_compression_options(self) -> dict[str, Any] | None:
        # Off on purpose: one framed byte string must be valid for every peer.
        return None

    @property
    def max_message_size(self) -> int:
        return MAX_MESSAGE_BYTES

    @property
    def ping_interval(self) -> float | None:
        return None  # the hub pings every connection from one timer

    def _reject(self, exc: ScoreboardError, reason: str) -> None:
        metrics.WS_REJECTED_BY_REASON[reason].inc()
        send_problem(self, exc.status, exc.code, exc.title, exc.detail, retry_after=exc.retry_after)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        # Tornado's own lines quote the URI, which may hold the access_token.
        log_request_exception(self, typ, value, tb)

    # -- connection events -----------------------------------------------------------------

    def open(self, *args: str, **kwargs: str) -> None:
        self.attach_stream()
        board = self.get_query_argument("board", None)
        reconnect = self.get_query_argument("reconnect", None) == "1"
        identity, self._identity = self._identity, None
        self.release_handshake()
        self._session = self.services.sessions.open(
            self, identity, board=board, reconnect=reconnect
        )

    def on_message(self, message: str | bytes) -> None:
        session = self._session
        if session is None:
            return
        try:
            session.receive(message)
        except Exception:  # a bug must cost this connection only, with the right close code
            log.exception("handling a WebSocket message failed")
            session.close_on_fault()

    def on_pong(self, data: bytes) -> None:
        if self._session is not None:
            self._session.pong()

    def on_close(self) -> None:
        if self._session is not None:
            self._session.closed(self.close_code)

    def on_drained(self) -> None:
        if self._session is not None:
            self._session.drained()
