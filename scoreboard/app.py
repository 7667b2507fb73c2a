"""Builds the services and the Tornado application: the route table lives here."""

from __future__ import annotations

import logging
import re
import secrets
from pathlib import Path
from types import MappingProxyType
from typing import Any

import tornado.web
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from tornado.httputil import HTTPServerRequest

from .accounts import Accounts
from .auth import TokenCodec
from .cluster.limits import RedisLimiter
from .cluster.presence import Presence
from .cluster.replication import ClusterService
from .config import Settings
from .handlers import api, archive, pages
from .handlers.base import (
    BaseHandler,
    Health,
    Ready,
    Services,
    public,
)
from .handlers.live import LiveSocket
from .hub import Hub
from .logs import redacted_uri
from .openapi import document
from .proxies import Network, client_address, forwarded_protocol, parse_networks
from .resources import data_dir
from .service import ScoreboardService
from .session import Sessions
from .store import Store

log = logging.getLogger(__name__)
access_log = logging.getLogger("scoreboard.access")

JWT_SECRET_SETTING = "jwt_secret"
# Redis is answered within these or counted as away: a request never hangs on it, and a
# failed command is tried once more (a pooled connection may be stale), never with backoff.
REDIS_CONNECT_TIMEOUT_S = 1.0
REDIS_COMMAND_TIMEOUT_S = 2.0
REDIS_HEALTH_CHECK_S = 5  # an idle subscription pings this often, to notice a silent loss


class OpenAPI(BaseHandler):
    @public
    def get(self) -> None:
        self.write_json(document())


#: (path template, handler). `{name}` segments become named groups passed to the handler.
ROUTES: list[tuple[str, type[tornado.web.RequestHandler]]] = [
    ("/healthz", Health),
    ("/readyz", Ready),
    ("/metrics", api.Metrics),
    ("/api/openapi.json", OpenAPI),
    ("/api/auth/register", api.Register),
    ("/api/auth/login", api.Login),
    ("/api/me", api.Me),
    ("/api/boards", api.Boards),
    ("/api/boards/{board_id}", api.Board),
    ("/api/boards/{board_id}/leaderboard", api.Leaderboard),
    ("/api/boards/{board_id}/players/{user_id}", api.Player),
    ("/api/boards/{board_id}/players/{user_id}/around", api.Around),
    ("/api/boards/{board_id}/scores", api.Scores),
    ("/api/boards/{board_id}/updates", api.Updates),
    ("/api/boards/{board_id}/reset", api.Reset),
    ("/api/boards/{board_id}/seasons", api.Seasons),
    ("/api/boards/{board_id}/seasons/{season}/leaderboard", api.SeasonLeaderboard),
    ("/api/boards/{board_id}/export", api.Export),
    ("/api/admin/stats", api.AdminStats),
    ("/api/admin/online", api.AdminOnline),
    ("/api/admin/users", api.AdminUsers),
    ("/ws", LiveSocket),
    # The web UI (templates/ and static/).
    ("/", pages.IndexPage),
    ("/boards/{board_id}", pages.BoardPage),
    ("/boards/{board_id}/submit", pages.BoardSubmitForm),
    ("/boards/{board_id}/seasons/{season}", archive.SeasonPage),
    ("/admin", pages.AdminPage),
    ("/admin/export/{board_id}", archive.AdminExport),
    ("/login", pages.LoginPage),
    ("/register", pages.RegisterPage),
    ("/logout", pages.LogoutForm),
    ("/auth/session", pages.SessionToken),
]

TEMPLATE_PATH = data_dir("templates")
STATIC_PATH = data_dir("static")


class StaticFiles(tornado.web.StaticFileHandler):
    """`/static/`: versioned URLs (`?v=hash`) are cached for good, others revalidated.

    Pages link their entry scripts and CSS with `static_url` (versioned); the ES modules those
    scripts import are plain URLs, so without `no-cache` a browser could keep an old module
    next to a new page for hours by heuristic caching.
    """

    def set_extra_headers(self, path: str) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        if not self.get_argument("v", None):
            self.set_header("Cache-Control", "no-cache")


class Application(tornado.web.Application):
    """Tornado's application, with the client address settled before any handler runs.

    Behind `--trusted-proxies`, `request.remote_ip` becomes the forwarded client address, so
    that rate limits, logs and every handler see the player rather than the proxy, and
    `request.protocol` the scheme the player used (a proxy that ends TLS talks HTTP to us).
    """

    def __init__(self, *args: Any, trusted_proxies: tuple[Network, ...] = (), **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.trusted_proxies = trusted_proxies

    def find_handler(self, request: HTTPServerRequest, **kwargs: Any) -> Any:
        if self.trusted_proxies and request.remote_ip:
            peer = request.remote_ip
            request.remote_ip = client_address(peer, request.headers, self.trusted_proxies)
            request.protocol = forwarded_protocol(
                peer, request.headers, self.trusted_proxies, request.protocol
            )
        return super().find_handler(request, **kwargs)


def route_pattern(template: str) -> str:
    """`/api/boards/{board_id}` -> `/api/boards/(?P<board_id>[^/]+)$`."""
    return re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$"


def access_log_level(handler: tornado.web.RequestHandler) -> int:
    """INFO for answers, WARNING for refusals, ERROR only for faults of the server.

    A 503 says "not ready" or "overloaded": a state, not a fault; from the readiness probe it
    is the probe doing its job during start-up, so it stays at INFO.
    """
    status = handler.get_status()
    if status < 400:
        return logging.INFO
    if status == 503:
        return logging.INFO if isinstance(handler, Ready) else logging.WARNING
    return logging.WARNING if status < 500 else logging.ERROR


def log_request(handler: tornado.web.RequestHandler) -> None:
    """Access log without secrets: secret query parameters are redacted, whatever spelling."""
    status = handler.get_status()
    level = access_log_level(handler)
    if access_log.isEnabledFor(level):
        request = handler.request
        access_log.log(
            level,
            "%d %s %s (%s) %.2fms",
            status,
            request.method,
            redacted_uri(request.uri or ""),
            request.remote_ip,
            1000.0 * request.request_time(),
        )


def resolve_jwt_secret(settings: Settings, store: Store) -> bytes:
    """The configured secret, else the one stored in the database, else a new stored one."""
    if settings.jwt_secret is not None:
        return settings.jwt_secret.encode()
    stored = store.get_setting_sync(JWT_SECRET_SETTING)
    if stored is None:
        store.set_setting_sync(JWT_SECRET_SETTING, secrets.token_urlsafe(48))
        # Read back: another process may have stored its own secret first, and that one wins.
        stored = store.get_setting_sync(JWT_SECRET_SETTING)
        log.warning(
            "no --jwt-secret given: generated one and stored it in the database, "
            "so tokens survive restarts"
        )
    assert stored is not None
    return stored.encode()


def build_services(settings: Settings, *, migrate: bool = True) -> Services:
    """Open and migrate the database, settle the token keys, build the service.

    `migrate=False`: a process of `--processes N`, whose parent migrated for all of them.
    """
    store = Store(settings.database_url)
    if migrate:
        store.migrate()
    elif store.file is not None:
        store.file.adopt()  # as migrate() does last: from here on, this file is the database
    public_key = (
        Path(settings.jwt_public_key_file).read_bytes() if settings.jwt_public_key_file else None
    )
    tokens = TokenCodec(
        secret=resolve_jwt_secret(settings, store),
        public_key_pem=public_key,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl=settings.token_ttl,
    )
    redis = None
    service: ScoreboardService
    if settings.redis_url is None:
        service = ScoreboardService(settings, store, tokens)
    else:
        redis = redis_client(settings.redis_url)
        service = ClusterService(
            settings,
            store,
            tokens,
            redis_client=redis,
            shared_score_limiter=_shared_limiter(
                redis, "score", settings.score_rate, settings.score_burst
            ),
        )
    hub = Hub(settings, MappingProxyType(service.boards))
    service.add_listener(hub)
    presence = _presence(settings, redis, hub)
    sessions = Sessions(settings, service, hub)
    accounts = Accounts(
        settings,
        store,
        tokens,
        require_ready=service.require_ready,
        shared_login_limiter=_shared_limiter(
            redis, "login", settings.login_rate, settings.login_burst
        ),
        shared_registration_limiter=_shared_limiter(
            redis, "registration", settings.registration_rate, settings.registration_burst
        ),
    )
    return Services(
        settings=settings,
        store=store,
        tokens=tokens,
        service=service,
        hub=hub,
        sessions=sessions,
        accounts=accounts,
        redis=redis,
        presence=presence,
    )


def redis_client(url: str) -> Redis:
    """The process's one Redis client (connections are made lazily, on the running loop)."""
    return Redis.from_url(
        url,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S,
        socket_timeout=REDIS_COMMAND_TIMEOUT_S,
        health_check_interval=REDIS_HEALTH_CHECK_S,
        retry=Retry(NoBackoff(), 1),
    )


# -- cluster mode: what holds across processes (rate limits, who is online) -----------------
# Both take the process's one Redis client; without --redis-url they are None and the process
# keeps its own limits and figures.


def _shared_limiter(
    redis: Redis | None, name: str, rate: float, burst: float
) -> RedisLimiter | None:
    return RedisLimiter(redis, name, rate, burst) if redis is not None else None


def _presence(settings: Settings, redis: Redis | None, hub: Hub) -> Presence | None:
    """The presence exchange, and the hub told of it (started and closed by the server)."""
    if redis is None:
        return None
    presence = Presence(redis, hub, interval=settings.presence_interval)
    hub.cluster = presence
    return presence


def make_app(services: Services, **extra: Any) -> tornado.web.Application:
    """The Tornado application over already-built services."""
    args = {"services": services}
    handlers = [(route_pattern(path), handler, args) for path, handler in ROUTES]
    return Application(
        handlers,
        trusted_proxies=parse_networks(services.settings.trusted_proxies),
        default_handler_class=pages.NotFoundPage,
        default_handler_args=args,
        log_function=log_request,
        compress_response=False,  # frames are small; gzip costs more CPU than it saves here
        allowed_origins=services.settings.allowed_origins,
        template_path=str(TEMPLATE_PATH),
        static_path=str(STATIC_PATH),
        static_handler_class=StaticFiles,
        # The XSRF cookie only guards the pages' form posts; scripts never need to read it.
        xsrf_cookie_kwargs={"httponly": True, "samesite": "Lax"},
        **extra,
    )
