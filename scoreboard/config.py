"""Settings: every flag (docs/configuration.md) with its SCOREBOARD_* variable, one frozen object.

This is the only module that reads `os.environ`. A flag on the command line wins over the
variable, which wins over the default. Values are validated here, at start, so that a bad
setting stops the process with one clear line instead of failing later at the first request.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .proxies import parse_networks

ENV_PREFIX = "SCOREBOARD_"
MIN_JWT_SECRET_BYTES = 32  # HS256 keys shorter than the hash output are brute-forceable
MAX_RANK_UPDATE_DELAY_S = 2.0  # overtaken players hear of it within 2 s (docs/protocol.md)
# Cluster figures are at most two presence intervals old and a dead process's entry lasts about
# four: at most 2.5 s keeps both within the 10 s that cluster-wide user_count may lag.
MAX_PRESENCE_INTERVAL_S = 2.5
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
REGISTRATION_MODES = ("open", "closed")


class ConfigError(ValueError):
    """A setting is invalid; the message names the flag and the bad value."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the process is configured with; built once by `parse_settings`."""

    host: str = "127.0.0.1"
    port: int = 8888
    database_url: str = "sqlite:///scoreboard.db"
    jwt_secret: str | None = None
    jwt_public_key_file: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    token_ttl: int = 86400
    allowed_origins: tuple[str, ...] = ()
    anonymous_read: bool = False
    redis_url: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    max_connections: int = 20000
    max_connections_per_user: int = 10
    broadcast_interval_ms: int = 100
    ping_interval: float = 20.0
    log_level: str = "info"
    processes: int = 1
    presence_interval: float = 2.0  # cluster mode: seconds between presence exchanges
    # Tunable limits of the HTTP API (docs/configuration.md).
    score_rate: float = 10.0  # submissions per second per player `sub`
    score_burst: int = 20
    login_rate: float = 0.2  # login attempts per second per client address (12 a minute)
    login_burst: int = 10
    trusted_proxies: tuple[str, ...] = ()  # addresses/CIDRs whose forwarded headers we believe
    registration: str = "open"  # "closed" refuses POST /api/auth/register (403)
    registration_rate: float = 0.2  # registrations per second per client address (12 a minute)
    registration_burst: int = 20
    # Live delivery (docs/protocol.md); defaults are the documented values, tests shrink them.
    status_interval: float = 10.0  # seconds between connection_status rounds
    slow_consumer_timeout: float = 30.0  # seconds without write progress before close 1013
    max_unsent_bytes: int = 1024 * 1024  # unsent bytes per connection before close 1013
    shutdown_spread: float = 5.0  # seconds over which SIGTERM closes WebSockets with 1001
    rank_update_delay: float = 1.0  # seconds before overtaken players get rank_update (<= 2)
    ws_message_rate: float = 20.0  # client messages per second per connection
    ws_message_burst: int = 50
    ws_abuse_close_after: float = 5.0  # seconds over the message rate before close 1008
    # Connections that hold resources without progress (docs/operations.md).
    request_head_timeout: float = 10.0  # seconds a new connection gets to send a whole head
    idle_timeout: float = 60.0  # seconds a keep-alive connection may sit between requests
    log_file: str | None = None  # append the log here instead of stderr; SIGHUP reopens it

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed, validated again (used by tests to shrink timers)."""
        return validate(dataclasses.replace(self, **changes))


@dataclass(frozen=True, slots=True)
class _Flag:
    name: str  # the dataclass field
    kind: type
    help: str

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


FLAGS: tuple[_Flag, ...] = (
    _Flag("host", str, "address to bind"),
    _Flag("port", int, "port to bind"),
    _Flag("database_url", str, "SQLAlchemy URL (sqlite:///… or postgresql+psycopg://…)"),
    _Flag("jwt_secret", str, "HS256 key, at least 32 bytes; generated and stored when absent"),
    _Flag("jwt_public_key_file", str, "PEM public key of an outside token issuer"),
    _Flag("jwt_issuer", str, "required `iss` of tokens"),
    _Flag("jwt_audience", str, "required `aud` of tokens"),
    _Flag("token_ttl", int, "seconds of life of tokens this server issues"),
    _Flag("allowed_origins", str, "comma-separated exact browser origins allowed"),
    _Flag("anonymous_read", bool, "allow reads without a token"),
    _Flag("redis_url", str, "Redis URL; enables cluster mode"),
    _Flag("certfile", str, "TLS certificate (PEM) to serve HTTPS and WSS"),
    _Flag("keyfile", str, "TLS private key (PEM)"),
    _Flag("max_connections", int, "WebSocket connections per process"),
    _Flag("max_connections_per_user", int, "WebSocket connections per user"),
    _Flag("broadcast_interval_ms", int, "coalescing window of score_update frames"),
    _Flag("ping_interval", float, "seconds between protocol pings (and the pong timeout)"),
    _Flag("log_level", str, "debug, info, warning, error or critical"),
    _Flag("processes", int, "processes sharing the port (cluster mode for more than 1)"),
    _Flag("presence_interval", float, "cluster mode: seconds between presence exchanges"),
    _Flag("score_rate", float, "score submissions per second per player"),
    _Flag("score_burst", int, "burst of score submissions per player"),
    _Flag("login_rate", float, "login attempts per second per client address"),
    _Flag("login_burst", int, "burst of login attempts per client address"),
    _Flag("trusted_proxies", str, "comma-separated addresses/CIDRs of trusted reverse proxies"),
    _Flag("registration", str, "open or closed: whether players may register themselves"),
    _Flag("registration_rate", float, "registrations per second per client address"),
    _Flag("registration_burst", int, "burst of registrations per client address"),
    _Flag("status_interval", float, "seconds between connection_status rounds"),
    _Flag("slow_consumer_timeout", float, "seconds a WebSocket may not drain before close 1013"),
    _Flag("max_unsent_bytes", int, "unsent bytes per WebSocket before close 1013"),
    _Flag("shutdown_spread", float, "seconds over which shutdown closes WebSockets"),
    _Flag("rank_update_delay", float, "seconds before overtaken players get rank_update (<= 2)"),
    _Flag("ws_message_rate", float, "WebSocket messages per second per connection"),
    _Flag("ws_message_burst", int, "burst of WebSocket messages per connection"),
    _Flag("ws_abuse_close_after", float, "seconds over the message rate before close 1008"),
    _Flag("request_head_timeout", float, "seconds a new connection gets to send its request head"),
    _Flag("idle_timeout", float, "seconds an idle keep-alive connection is kept"),
    _Flag("log_file", str, "append the log to this file (SIGHUP reopens it) instead of stderr"),
)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def add_flags(
    parser: argparse.ArgumentParser,
    *,
    after_subcommand: bool = False,
    leave_out: tuple[str, ...] = (),
) -> None:
    """Add every settings flag to `parser`; unset flags stay None so the env/default applies.

    `after_subcommand`: the flags of a subcommand's parser, so that `run.py token alice
    --database-url …` works too; absent there, they leave the main parser's value alone.
    `leave_out`: settings whose flag the subcommand spells differently (loadtest's own
    `--processes`); they are still taken before the subcommand.
    """
    group = parser.add_argument_group("server settings")
    defaults = Settings()
    for flag in FLAGS:
        if flag.name in leave_out:
            continue
        default = argparse.SUPPRESS if after_subcommand else None
        text = f"{flag.help} (default: {_shown(getattr(defaults, flag.name))}; env {flag.env})"
        if flag.kind is bool:
            group.add_argument(
                flag.option,
                dest=flag.name,
                action=argparse.BooleanOptionalAction,
                default=default,
                help=text,
            )
        else:
            group.add_argument(flag.option, dest=flag.name, default=default, help=text)


def _shown(default: Any) -> str:
    """A default as --help shows it."""
    if default is None or default == ():
        return "none"
    if isinstance(default, bool):
        return str(default).lower()
    return str(default)


def settings_from(
    namespace: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> Settings:
    """Build validated Settings from parsed flags, falling back to `environ`, then defaults."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for flag in FLAGS:
        raw = getattr(namespace, flag.name, None)
        source = flag.option
        if raw is None and flag.env in environ:
            raw, source = environ[flag.env], flag.env
        if raw is None:
            continue
        values[flag.name] = _convert(flag, raw, source)
    return validate(Settings(**values))


def parse_settings(argv: Sequence[str] = (), environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from a plain list of flags (no subcommand); used by tests and embedders."""
    parser = argparse.ArgumentParser(add_help=False)
    add_flags(parser)
    return settings_from(parser.parse_args(list(argv)), os.environ if environ is None else environ)


def _convert(flag: _Flag, raw: Any, source: str) -> Any:
    if flag.kind is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ConfigError(f"{source}: expected true or false, got {raw!r}")
    if flag.name == "log_level":
        return str(raw).strip().lower()  # case-insensitive (docs/configuration.md)
    if flag.name == "allowed_origins":
        return tuple(part.strip().rstrip("/") for part in str(raw).split(",") if part.strip())
    if flag.name == "trusted_proxies":
        return tuple(part.strip() for part in str(raw).split(",") if part.strip())
    try:
        return flag.kind(raw)
    except ValueError:
        raise ConfigError(f"{source}: expected {flag.kind.__name__}, got {raw!r}") from None


def validate(settings: Settings) -> Settings:
    """Check every value; raises ConfigError naming the first bad setting."""
    s = settings
    if not 0 <= s.port <= 65535:
        raise ConfigError(f"--port: expected 0-65535, got {s.port!r}")
    if s.jwt_secret is not None and len(s.jwt_secret.encode()) < MIN_JWT_SECRET_BYTES:
        raise ConfigError(
            f"--jwt-secret: must be at least {MIN_JWT_SECRET_BYTES} bytes, "
            f"got {len(s.jwt_secret.encode())}"
        )
    if s.jwt_public_key_file is not None and not os.path.isfile(s.jwt_public_key_file):
        raise ConfigError(f"--jwt-public-key-file: no such file {s.jwt_public_key_file!r}")
    if (s.certfile is None) != (s.keyfile is None):
        raise ConfigError("--certfile and --keyfile: give both or neither")
    if not s.database_url.startswith(("sqlite:", "postgresql")):
        raise ConfigError(
            f"--database-url: expected sqlite:///… or postgresql+psycopg://…, "
            f"got {s.database_url!r}"
        )
    for origin in s.allowed_origins:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
            raise ConfigError(f"--allowed-origins: expected scheme://host[:port], got {origin!r}")
    try:
        parse_networks(s.trusted_proxies)
    except ValueError as exc:
        raise ConfigError(f"--trusted-proxies: {exc}") from None
    positive = {
        "token_ttl": s.token_ttl,
        "max_connections": s.max_connections,
        "max_connections_per_user": s.max_connections_per_user,
        "broadcast_interval_ms": s.broadcast_interval_ms,
        "ping_interval": s.ping_interval,
        "processes": s.processes,
        "presence_interval": s.presence_interval,
        "score_rate": s.score_rate,
        "score_burst": s.score_burst,
        "login_rate": s.login_rate,
        "login_burst": s.login_burst,
        "registration_rate": s.registration_rate,
        "registration_burst": s.registration_burst,
        "status_interval": s.status_interval,
        "slow_consumer_timeout": s.slow_consumer_timeout,
        "max_unsent_bytes": s.max_unsent_bytes,
        "rank_update_delay": s.rank_update_delay,
        "ws_message_rate": s.ws_message_rate,
        "ws_message_burst": s.ws_message_burst,
        "ws_abuse_close_after": s.ws_abuse_close_after,
        "request_head_timeout": s.request_head_timeout,
        "idle_timeout": s.idle_timeout,
    }
    for name, value in positive.items():
        if value <= 0:
            raise ConfigError(f"--{name.replace('_', '-')}: must be positive, got {value!r}")
    if s.shutdown_spread < 0:
        raise ConfigError(f"--shutdown-spread: must be 0 or more, got {s.shutdown_spread!r}")
    if s.rank_update_delay > MAX_RANK_UPDATE_DELAY_S:
        raise ConfigError(
            f"--rank-update-delay: must be at most {MAX_RANK_UPDATE_DELAY_S:g} s "
            "(overtaken players hear within 2 s), "
            f"got {s.rank_update_delay!r}"
        )
    if s.presence_interval > MAX_PRESENCE_INTERVAL_S:
        raise ConfigError(
            f"--presence-interval: must be at most {MAX_PRESENCE_INTERVAL_S:g} s "
            f"(cluster figures may lag 10 s at most), got {s.presence_interval!r}"
        )
    if s.log_level not in LOG_LEVELS:
        raise ConfigError(
            f"--log-level: expected one of {', '.join(LOG_LEVELS)}, got {s.log_level!r}"
        )
    if s.registration not in REGISTRATION_MODES:
        raise ConfigError(
            f"--registration: expected one of {', '.join(REGISTRATION_MODES)}, "
            f"got {s.registration!r}"
        )
    if s.redis_url is not None and s.database_url.split(":", 1)[0].split("+")[0] != "postgresql":
        raise ConfigError(
            "--redis-url: cluster mode needs a PostgreSQL --database-url "
            f"(postgresql+psycopg://…), got {s.database_url.split(':', 1)[0]}:…"
        )
    if s.processes > 1 and s.redis_url is None:
        raise ConfigError("--processes: more than 1 needs --redis-url (cluster mode)")
    return s
