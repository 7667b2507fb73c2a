"""What every HTTP handler shares: JSON in and out, problem+json errors, auth rules, CORS, metrics.

Every handler method states who may call it with one of the decorators `public`, `reader`,
`authenticated` or `admin`; a test walks the route table and fails on a method without one, so
a missing check shows in review instead of in production.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http.client import responses
from typing import Any, TypeVar, cast

import orjson
import tornado.web

from .. import metrics
from ..accounts import Accounts
from ..auth import Identity, Role, TokenCodec
from ..config import Settings
from ..errors import (
    AuthFailed,
    BadRequest,
    Forbidden,
    ScoreboardError,
    TooLarge,
    UnsupportedMediaType,
)
from ..hub import Hub
from ..service import ScoreboardService
from ..session import Sessions
from ..store import Store

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024  # larger bodies are a 413 (docs/api.md#conventions)
PROBLEM_TYPE = "https://scoreboard.dev/problems/"
# Tokens may arrive in the query string (WebSocket last resort); they never reach a log line.
_SECRET_QUERY = re.compile(r"(access_token=)[^&]*")
# Codes for statuses Tornado itself raises (unknown route, wrong method, bad request line).
_CODE_BY_STATUS = {
    400: "bad_request",
    401: "auth_failed",
    403: "forbidden",
    404: "not_found",
    405: "bad_request",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "rate_limited",
    503: "overloaded",
}


@dataclass(slots=True)
class Services:
    """What the handlers are given: built once by `app.build_services`."""

    settings: Settings
    store: Store
    tokens: TokenCodec
    service: ScoreboardService
    hub: Hub
    sessions: Sessions
    accounts: Accounts


def bearer_token(header: str) -> str:
    """The token of an `Authorization: Bearer <token>` header; AuthFailed for any other form."""
    scheme, _, value = header.partition(" ")
    token = value.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthFailed("expected Authorization: Bearer <token>")
    return token


def retry_after_header(seconds: float) -> str:
    """Whole seconds for `Retry-After`, rounded up: waiting that long must be enough."""
    return str(max(1, math.ceil(seconds)))


def send_problem(
    handler: tornado.web.RequestHandler,
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    retry_after: float | None = None,
) -> None:
    """Finish `handler` with an RFC 9457 problem document carrying its error `code`.

    The one builder of error answers: API errors and refused WebSocket handshakes alike.
    """
    metrics.ERRORS.labels(code).inc()
    handler.set_status(status)
    handler.set_header("Content-Type", "application/problem+json")
    handler.set_header("Cache-Control", "no-store")
    if retry_after is not None:
        handler.set_header("Retry-After", retry_after_header(retry_after))
    problem = {
        "type": PROBLEM_TYPE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    handler.finish(orjson.dumps(problem))


def redacted_uri(uri: str) -> str:
    """The URI as logs may show it: the query's access_token replaced."""
    return _SECRET_QUERY.sub(r"\1[redacted]", uri)


Method = TypeVar("Method", bound=Callable[..., Awaitable[Any] | None])


def _rule(name: str, check: Callable[[BaseHandler], None]) -> Callable[[Method], Method]:
    def decorate(method: Method) -> Method:
        @functools.wraps(method)
        def wrapper(self: BaseHandler, *args: Any, **kwargs: Any) -> Any:
            check(self)
            return method(self, *args, **kwargs)

        wrapper.__dict__["auth_rule"] = name  # read by the test that walks the route table
        return cast(Method, wrapper)  # same signature: functools.wraps copied the rest

    return decorate


def _no_check(handler: BaseHandler) -> None:
    return None


def _require_reader(handler: BaseHandler) -> None:
    if handler.identity is None and not handler.settings_.anonymous_read:
        raise AuthFailed("a token is required")


def _require_token(handler: BaseHandler) -> None:
    if handler.identity is None:
        raise AuthFailed("a token is required")


def _require_admin(handler: BaseHandler) -> None:
    _require_token(handler)
    assert handler.identity is not None
    if handler.identity.role is not Role.ADMIN:
        raise Forbidden("admin role required")


public = _rule("public", _no_check)
reader = _rule("reader", _require_reader)  # a token, or nothing under --anonymous-read
authenticated = _rule("authenticated", _require_token)
admin = _rule("admin", _require_admin)


@tornado.web.stream_request_body
class BaseHandler(tornado.web.RequestHandler):
    """JSON API handler: problem+json errors, bearer tokens, a 16 KiB body cap."""

    def initialize(self, services: Services) -> None:
        self.services = services
        self.service = services.service
        self.settings_ = services.settings
        self._body = bytearray()
        self._body_too_large = False
        self._identity: Identity | None = None
        self._identity_checked = False

    # -- request body ----------------------------------------------------------------------

    def prepare(self) -> None:
        declared = self.request.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise TooLarge(f"the body must be at most {MAX_BODY_BYTES} bytes, got {declared}")

    def data_received(self, chunk: bytes) -> None:
        # Keep reading (so the answer can be sent on a healthy connection) but stop storing.
        if len(self._body) + len(chunk) > MAX_BODY_BYTES:
            self._body_too_large = True
            return
        self._body += chunk

    def json_body(self) -> dict[str, Any]:
        """The request's JSON object, or 415 / 413 / 400."""
        content_type = self.request.headers.get("Content-Type", "")
        if content_type.split(";")[0].strip().lower() != "application/json":
            raise UnsupportedMediaType(
                f"expected Content-Type application/json, got {content_type!r}"
            )
        if self._body_too_large:
            raise TooLarge(f"the body must be at most {MAX_BODY_BYTES} bytes")
        try:
            body = orjson.loads(self._body)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"malformed JSON: {exc}") from None
        if not isinstance(body, dict):
            raise BadRequest(f"the body must be a JSON object, got {type(body).__name__}")
        return body

    def query_argument(self, name: str) -> str | None:
        """The query parameter `name`, or None when absent (for schemas.Query.parse)."""
        return self.get_query_argument(name, None)

    # -- identity --------------------------------------------------------------------------

    @property
    def identity(self) -> Identity | None:
        """The caller from `Authorization: Bearer …`; None without one; 401 for a bad one."""
        if not self._identity_checked:
            header = self.request.headers.get("Authorization")
            if header is not None:
                self._identity = self.services.tokens.decode(bearer_token(header))
            # Only once a header was absent or good: a bad one raises on every access.
            self._identity_checked = True
        return self._identity

    # -- answers ---------------------------------------------------------------------------

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        origin = self._allowed_origin()
        if origin is not None:
            self.set_header("Access-Control-Allow-Origin", origin)
            self.set_header("Access-Control-Allow-Credentials", "true")
            self.set_header("Access-Control-Expose-Headers", "Retry-After")
        self.add_header("Vary", "Origin")

    def _allowed_origin(self) -> str | None:
        """The request's Origin when CORS allows it, else None."""
        # Runs before initialize(), so the origins come from the application's settings.
        origin = self.request.headers.get("Origin")
        allowed = self.application.settings["allowed_origins"]
        return origin if origin is not None and origin.rstrip("/") in allowed else None

    @public
    def options(self, *args: Any) -> None:
        """CORS preflight; only allowed origins get the allow headers."""
        if self._allowed_origin() is not None:
            self.set_header("Access-Control-Allow-Methods", "GET, POST, PATCH, DELETE, OPTIONS")
            self.set_header(
                "Access-Control-Allow-Headers", "Authorization, Content-Type, Idempotency-Key"
            )
            self.set_header("Access-Control-Max-Age", "600")
        self.set_status(204)
        self.finish()

    def write_json(self, body: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(orjson.dumps(body))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ScoreboardError):
            send_problem(
                self, status_code, exc.code, exc.title, exc.detail, retry_after=exc.retry_after
            )
            return
        code = _CODE_BY_STATUS.get(status_code, "internal")
        title = getattr(exc, "reason", None) or responses.get(status_code, "Unknown")
        detail = title if status_code >= 500 else getattr(exc, "log_message", None) or title
        send_problem(self, status_code, code, title, detail)

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ScoreboardError):
            status_code = exc.status
        super().send_error(status_code, **kwargs)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        # Client errors are answers, not faults: keep them out of the error log.
        if isinstance(value, ScoreboardError) and value.status < 500:
            return
        super().log_exception(typ, value, tb)

    def on_finish(self) -> None:
        metrics.HTTP_REQUEST_DURATION.labels(
            type(self).__name__, self.request.method, str(self.get_status())
        ).observe(self.request.request_time())


class Health(BaseHandler):
    """Liveness: 200 while the process runs."""

    @public
    def get(self) -> None:
        self.write_json({"status": "ok"})


class Ready(BaseHandler):
    """Readiness: 200 once leaderboards are loaded and the database answers, else 503."""

    @public
    async def get(self) -> None:
        await self.service.check_ready()
        self.write_json({"status": "ready"})
