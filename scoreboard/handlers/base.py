"""What every HTTP handler shares: JSON in and out, problem+json errors, auth rules, CORS, metrics.

Every handler method states who may call it with one of the decorators `public`, `reader`,
`authenticated` or `admin`; a test walks the route table and fails on a method without one, so
a missing check shows in review instead of in production.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http.client import responses
from typing import Any, TypeVar, cast

import orjson
import redis.asyncio
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
from ..logs import redacted_uri
from ..service import ScoreboardService
from ..session import Sessions
from ..store import Store

log = logging.getLogger(__name__)
app_log = logging.getLogger("tornado.application")
gen_log = logging.getLogger("tornado.general")

MAX_BODY_BYTES = 16 * 1024  # larger bodies are a 413 (docs/api.md#conventions)
# A chunked body past MAX_BODY_BYTES is read to its end and dropped, so that its sender can
# read the 413 (answering mid-upload resets the connection under the sender). Beyond this
# much, the connection is dropped instead; --idle-timeout bounds how long a drain may stall.
MAX_DRAIN_BYTES = 64 * 1024 * 1024
PROBLEM_TYPE = "https://scoreboard.dev/problems/"
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
    #: The process's one Redis client in cluster mode (None with one process): the change
    #: bus publishes on it, and anything else that shares state across processes takes it.
    redis: redis.asyncio.Redis | None = None


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


def log_request_exception(
    handler: tornado.web.RequestHandler, typ: Any, value: Any, tb: Any
) -> None:
    """Tornado's `log_exception` without the raw URI and `repr(request)`: tokens may arrive
    in the query string (WebSocket last resort), so only the redacted URI is named."""
    request = handler.request
    summary = f"{request.method} {redacted_uri(request.uri or '')} ({request.remote_ip})"
    if isinstance(value, tornado.web.HTTPError):
        if value.log_message:
            gen_log.warning("%d %s: %s", value.status_code, summary, value.get_message())
    else:
        app_log.error("Uncaught exception %s", summary, exc_info=(typ, value, tb))


def is_expected_refusal(value: Any) -> bool:
    """A ScoreboardError that is an answer, not a fault: any but a 5xx other than 503.

    Client mistakes (4xx) and "not ready / overloaded" (503) are states the client is told
    about; logging them with a traceback at ERROR would bury real faults.
    """
    return isinstance(value, ScoreboardError) and (value.status < 500 or value.status == 503)


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


def allowed_methods(handler_class: type[tornado.web.RequestHandler]) -> list[str]:
    """The methods a handler class implements, for `Allow` and CORS preflights."""
    base = tornado.web.RequestHandler
    return [
        method
        for method in handler_class.SUPPORTED_METHODS
        if getattr(handler_class, method.lower()) is not getattr(base, method.lower())
    ]


class RouteMethods(tornado.web.RequestHandler):
    """What every route answers whatever its methods: HEAD wherever GET works, OPTIONS, and
    405 with an `Allow` header (docs/api.md; uptime monitors probe with HEAD)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "get" in cls.__dict__ and "head" not in cls.__dict__:
            # Same code, same auth rule; Tornado sends the headers of a GET without its body.
            cls.head = cls.get

    @public
    def options(self, *args: Any, **kwargs: Any) -> None:
        """Preflight: 204; the CORS headers are added by subclasses that allow other origins."""
        self.set_status(204)
        self.finish()

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if is_expected_refusal(value):
            return
        log_request_exception(self, typ, value, tb)

    def set_allow_header(self, status_code: int) -> None:
        """A 405 names what the route does take."""
        if status_code == 405:
            self.set_header("Allow", ", ".join(allowed_methods(type(self))))


@tornado.web.stream_request_body
class BaseHandler(RouteMethods):
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
        if self.request.method in ("POST", "PUT", "PATCH"):
            # The server-wide cap (cli.MAX_REQUEST_BYTES) would answer a bare 400 at 1 MiB.
            self.request.connection.set_max_body_size(MAX_DRAIN_BYTES)  # type: ignore[union-attr]

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
    def options(self, *args: Any, **kwargs: Any) -> None:
        """CORS preflight; only allowed origins get the allow headers."""
        if self._allowed_origin() is not None:
            self.set_header("Access-Control-Allow-Methods", ", ".join(allowed_methods(type(self))))
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
        self.set_allow_header(status_code)
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

    def on_finish(self) -> None:
        metrics.observe_request(
            type(self).__name__, self.request.method, self.get_status(), self.work_seconds()
        )

    def work_seconds(self) -> float:
        """The request's time as the HTTP histogram counts it (the long-poll drops its wait)."""
        return self.request.request_time()


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
