"""The command line of run.py (installed: `scoreboard`).

Subcommands: serve (default), migrate, token, and the management commands (board
create|list|reset|delete, user create|list: manage.py).
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import logging
import signal
import ssl
import sys
from collections.abc import Sequence

from . import config, manage
from .app import build_services, make_app, resolve_jwt_secret
from .auth import Role, TokenCodec
from .dbfile import NotADatabase
from .dblock import DatabaseLock, LockHeld
from .errors import ScoreboardError
from .handlers.base import Services
from .store import Store

log = logging.getLogger("scoreboard")

MAX_REQUEST_BYTES = 1024 * 1024  # anything above the API's 16 KiB is refused by the handlers
SHUTDOWN_GRACE_S = 10.0  # in-flight submissions get this long to commit and be answered


def build_parser() -> argparse.ArgumentParser:
    # No fixed prog: usage lines name what was run, `run.py` or the installed `scoreboard`.
    parser = argparse.ArgumentParser(description="Scoreboard leaderboard server")
    config.add_flags(parser)
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("migrate", help="upgrade the database to the newest schema and exit")

    token = commands.add_parser("token", help="print a signed token")
    token.add_argument("sub")
    token.add_argument("--role", choices=[r.value for r in Role], default=Role.PLAYER.value)
    token.add_argument("--name")
    token.add_argument("--ttl", type=int)

    manage.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = config.settings_from(args)
    except config.ConfigError as exc:
        print(f"scoreboard: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Alembic narrates every plugin it loads at INFO; its upgrades still show as warnings+.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.root.level))
    try:
        if args.command is None:
            return serve(settings)
        if args.command == "migrate":
            Store(settings.database_url).migrate()
            print("database is at the newest schema")
            return 0
        if args.command == "token":
            print(_token(settings, args))
            return 0
        return manage.main(settings, args)
    except ScoreboardError as exc:
        print(f"scoreboard: {exc.detail}", file=sys.stderr)
        return 1
    except NotADatabase as exc:  # left untouched; a start-up failure, not a crash
        print(f"scoreboard: --database-url: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # a bad subject, role or TTL for `token`
        print(f"scoreboard: {exc}", file=sys.stderr)
        return 1


def _migrated_store(settings: config.Settings) -> Store:
    store = Store(settings.database_url)
    store.migrate()
    return store


def _token(settings: config.Settings, args: argparse.Namespace) -> str:
    store = _migrated_store(settings)
    try:
        codec = TokenCodec(
            secret=resolve_jwt_secret(settings, store),
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            ttl=settings.token_ttl,
        )
    finally:
        store.close()
    return codec.issue(args.sub, role=Role(args.role), name=args.name, ttl=args.ttl)


def serve(settings: config.Settings) -> int:
    if settings.redis_url is not None or settings.processes > 1:
        print(
            "scoreboard: cluster mode (--redis-url, --processes) is not available yet",
            file=sys.stderr,
        )
        return 2
    # One database, one single-process server: held until this process ends.
    lock = DatabaseLock(settings.database_url)
    try:
        lock.acquire()
    except LockHeld as held:
        print(
            f"scoreboard: another server is running on this database ({held} is held)",
            file=sys.stderr,
        )
        return 2
    # SQLite maps its -shm file into memory: if that file is truncated or its disk fills, the
    # kernel kills the process with SIGBUS. That cannot be caught, but it can be told: the
    # fault handler writes which signal it was and every thread's stack to standard error.
    faulthandler.enable()
    try:
        services = build_services(settings)
        asyncio.run(_serve(services))
    finally:
        lock.release()  # after the store's last commit
    return 0


def _ssl_context(settings: config.Settings) -> ssl.SSLContext | None:
    if settings.certfile is None or settings.keyfile is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.certfile, settings.keyfile)
    return context


async def _serve(services: Services) -> None:
    settings = services.settings
    loop = asyncio.get_running_loop()
    services.store.start(loop)
    services.hub.start()
    app = make_app(services)
    server = app.listen(
        settings.port,
        settings.host,
        max_body_size=MAX_REQUEST_BYTES,
        ssl_options=_ssl_context(settings),
    )
    scheme = "https" if settings.certfile else "http"
    log.info("serving on %s://%s:%d", scheme, settings.host, settings.port)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loading = asyncio.create_task(services.service.load())
    await stop.wait()
    log.info("shutting down: no new connections; finishing in-flight submissions")
    server.stop()
    await shutdown(services)
    if not loading.done():
        loading.cancel()
    log.info("stopped")


async def shutdown(services: Services) -> None:
    """Let running submissions commit and answer, then drain and close the store."""
    await services.sessions.close_all()
    await services.service.drain(SHUTDOWN_GRACE_S)
    await asyncio.get_running_loop().run_in_executor(None, services.store.close)
