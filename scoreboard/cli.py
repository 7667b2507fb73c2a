"""The command line of run.py (installed: `scoreboard`).

Subcommands: serve (default), migrate, token, user create, board create, loadtest.

About 520 lines: serving (one process, or N under the supervisor) and every subcommand's
parser. The loadtest parser (about 70 lines) is the next piece that could join loadtest.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import faulthandler
import functools
import logging
import os
import signal
import socket
import ssl
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tornado.netutil import bind_sockets

from . import __version__, config, logs, manage
from .app import build_services, make_app, resolve_jwt_secret
from .auth import Role, TokenCodec
from .dbfile import NotADatabase
from .dblock import DatabaseLock, LockHeld
from .errors import ScoreboardError
from .handlers.base import Services
from .handlers.http_server import ScoreboardHTTPServer
from .store import Store
from .supervisor import Supervisor

log = logging.getLogger("scoreboard")

MAX_REQUEST_BYTES = 1024 * 1024  # anything above the API's 16 KiB is refused by the handlers
SHUTDOWN_GRACE_S = 10.0  # in-flight submissions get this long to commit and be answered


def build_parser() -> argparse.ArgumentParser:
    # No fixed prog: usage lines name what was run, `run.py` or the installed `scoreboard`.
    parser = argparse.ArgumentParser(description="Scoreboard leaderboard server")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    config.add_flags(parser)
    commands = parser.add_subparsers(dest="command")
    migrate = commands.add_parser(
        "migrate", help="upgrade the database to the newest schema and exit"
    )

    token = commands.add_parser("token", help="print a signed token")
    token.add_argument("sub")
    token.add_argument("--role", choices=[r.value for r in Role], default=Role.PLAYER.value)
    token.add_argument("--name")
    token.add_argument("--ttl", type=int)

    leaves = manage.add_commands(commands)
    # `run.py token alice --database-url …`: the server flags work after a subcommand too.
    for leaf in (migrate, token, *leaves):
        config.add_flags(leaf, after_subcommand=True)
    # `run.py loadtest … --jwt-secret …` too; its --processes is its own (child processes).
    config.add_flags(
        _add_loadtest_parser(commands), after_subcommand=True, leave_out=("processes",)
    )
    return parser


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
        return value

    return parse


def _add_loadtest_parser(commands: Any) -> argparse.ArgumentParser:
    loadtest: argparse.ArgumentParser = commands.add_parser(
        "loadtest",
        help="load generator: N WebSocket subscribers, scores posted at a rate, latency figures",
        description="Opens N authenticated subscribers of a board, posts scores at a fixed "
        "rate for a fixed time, and prints a JSON summary (progress on stderr). Tokens are "
        "signed with the server's secret (--jwt-secret, else the one stored in --database-url) "
        "unless --tokens-file gives them.",
    )
    loadtest.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:8888")
    loadtest.add_argument("--clients", type=_positive(int), required=True, help="subscribers")
    loadtest.add_argument("--rate", type=_positive(float), required=True, help="posts per second")
    loadtest.add_argument(
        "--duration", type=_positive(float), required=True, help="seconds of posting"
    )
    loadtest.add_argument("--board", default="loadtest", help="board to watch and post to")
    loadtest.add_argument(
        "--via", choices=["http", "ws"], default="http", help="post over HTTP or submit_score"
    )
    loadtest.add_argument(
        "--processes",
        dest="loadtest_processes",  # not the server's --processes, which is a setting
        type=_positive(int),
        default=1,
        help="spread the subscribers over K child processes",
    )
    loadtest.add_argument(
        "--drain",
        type=float,
        default=2.0,
        help="seconds to wait after the last post for its frames (default 2)",
    )
    loadtest.add_argument(
        "--tokens-file", help="subscriber tokens, one per line (used in turn), instead of minting"
    )
    loadtest.add_argument(
        "--poster-token-file", help="a server-role token for the poster, instead of minting one"
    )
    loadtest.add_argument(
        "--create-board",
        action="store_true",
        help="create the board (operator set) with an admin token when it does not exist",
    )
    loadtest.add_argument(
        "--kernel-timestamps",
        action="store_true",
        help="time frames by the kernel's receive timestamp (SO_TIMESTAMPNS), not at read",
    )
    return loadtest


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = config.settings_from(args)
    except config.ConfigError as exc:
        print(f"scoreboard: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.log_file if args.command is None else None)
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
        if args.command == "loadtest":
            return _loadtest(settings, args)
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


def _loadtest(settings: config.Settings, args: argparse.Namespace) -> int:
    import json

    from . import loadclient, loadtest

    if args.drain < 0:
        print(f"scoreboard: --drain: must be 0 or more, got {args.drain!r}", file=sys.stderr)
        return 2
    try:
        target = loadclient.Target.from_url(args.url)
    except loadclient.LoadtestError as exc:
        print(f"scoreboard: {exc}", file=sys.stderr)
        return 2
    codec: TokenCodec | None = None
    if args.tokens_file is None or args.poster_token_file is None or args.create_board:
        secret = settings.jwt_secret.encode() if settings.jwt_secret else _stored_secret(settings)
        if secret is None:
            print(
                "scoreboard: no secret to sign tokens with: pass the server's --jwt-secret, "
                f"or --database-url of its database (none stored in {settings.database_url!r}), "
                "or --tokens-file and --poster-token-file",
                file=sys.stderr,
            )
            return 2
        codec = TokenCodec(
            secret=secret,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            ttl=loadtest.TOKEN_TTL_S,
        )
    try:
        subscribers = (
            _read_tokens(args.tokens_file)
            if args.tokens_file is not None
            else [codec.issue(f"loadtest-sub{i}") for i in range(args.clients)]  # type: ignore[union-attr]
        )
        poster = (
            _read_tokens(args.poster_token_file)[0]
            if args.poster_token_file is not None
            else codec.issue(loadtest.POSTER_SUB, role=Role.SERVER)  # type: ignore[union-attr]
        )
    except (OSError, ValueError) as exc:
        print(f"scoreboard: {exc}", file=sys.stderr)
        return 2
    options = loadtest.Options(
        url=f"http://{target.host_header}",
        clients=args.clients,
        rate=args.rate,
        duration=args.duration,
        board=args.board,
        via=args.via,
        processes=args.loadtest_processes,
        drain=args.drain,
        subscriber_tokens=subscribers,
        poster_token=poster,
        admin_token=(
            codec.issue(loadtest.ADMIN_SUB, role=Role.ADMIN)
            if codec is not None and args.create_board
            else None
        ),
        create_board=args.create_board,
        kernel_timestamps=args.kernel_timestamps,
        progress=sys.stderr,
    )
    try:
        summary = asyncio.run(loadtest.run(options))
    except loadclient.LoadtestError as exc:
        print(f"scoreboard: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print(json.dumps(summary, indent=2))
    return 0 if summary["connect"]["connected"] else 1


def _stored_secret(settings: config.Settings) -> bytes | None:
    """The secret a server keeps in its database; never generates one (that is the server's)."""
    from .app import JWT_SECRET_SETTING

    url = settings.database_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        return None  # a missing file would be created empty: there is nothing to read
    store = Store(url)
    try:
        value = store.get_setting_sync(JWT_SECRET_SETTING)
    except Exception:  # no settings table: not a migrated database
        return None
    finally:
        store.close()
    return value.encode() if value else None


def _read_tokens(path: str) -> list[str]:
    with open(path, encoding="utf-8") as file:
        tokens = [line.strip() for line in file if line.strip()]
    if not tokens:
        raise ValueError(f"no tokens in {path!r}")
    return tokens


class StartupFailed(Exception):
    """The server cannot start; the message is the one line the operator sees."""


def serve(settings: config.Settings) -> int:
    # SQLite maps its -shm file into memory: if that file is truncated or its disk fills, the
    # kernel kills the process with SIGBUS. That cannot be caught, but it can be told: the
    # fault handler writes which signal it was and every thread's stack to standard error.
    faulthandler.enable()
    # Until the loop's own handler is installed, a SIGHUP (log rotation) must not kill us.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if settings.processes > 1:
        return _serve_processes(settings)
    try:
        # Cheap checks first: a server that cannot listen must not create or migrate a database.
        context = _ssl_context(settings)
        sockets = _bind(settings)
        # One database, one single-process server: held until this process ends. A cluster's
        # processes share their database by design (PostgreSQL decides every change), so
        # they hold it shared (dblock.py).
        lock = _lock_database(settings)
    except LockHeld as held:
        return _lock_held(settings, held)
    except StartupFailed as exc:
        return _startup_failed(exc)
    try:
        try:
            services = _open_services(settings)
        except StartupFailed as exc:
            return _startup_failed(exc)
        asyncio.run(_serve(services, sockets, context))
    finally:
        lock.release()  # after the store's last commit
    return 0


def _lock_held(settings: config.Settings, held: LockHeld) -> int:
    if settings.redis_url is None:
        what = "another server is running on this database"
    else:
        what = "a single-process server (no --redis-url) is running on this database"
    print(f"scoreboard: {what} ({held} is held)", file=sys.stderr)
    return 2


def _serve_processes(settings: config.Settings) -> int:
    """`--processes N`: listen and migrate once here, then fork N servers on those sockets.

    Cluster mode only (config.py requires --redis-url): the processes share the database and
    keep each other's replicas current; each holds the database lock shared (dblock.py). The
    sockets, the lock check and the migration come first so that their failures stay one line
    from one process; the children are started by the supervisor, which restarts one that dies.
    """
    logs.label_process(f"supervisor pid {os.getpid()}")
    try:
        context = _ssl_context(settings)
        sockets = _bind(settings)
        # Only a look: a lock held across the fork would be one session shared by N children.
        _lock_database(settings).release()
        with _database_failures(settings):
            _prepare_database(settings)
    except LockHeld as held:
        return _lock_held(settings, held)
    except StartupFailed as exc:
        return _startup_failed(exc)
    scheme = "https" if context is not None else "http"
    log.info(
        "serving on %s://%s:%d with %d processes",
        scheme,
        settings.host,
        settings.port,
        settings.processes,
    )
    processes = Supervisor(
        settings.processes, functools.partial(_serve_one_of_many, settings, sockets, context)
    )
    status = processes.run()
    if processes.failure is not None:
        print(f"scoreboard: {processes.failure}", file=sys.stderr)
    return status


def _prepare_database(settings: config.Settings) -> None:
    """Migrate, and settle the token secret, once for every process (a generated one is made
    and logged here, not by N children racing to store theirs)."""
    store = Store(settings.database_url)
    try:
        store.migrate()
        resolve_jwt_secret(settings, store)
    finally:
        # Before the fork: no child may inherit this engine's pooled connections.
        store.close()


def _serve_one_of_many(
    settings: config.Settings,
    sockets: list[socket.socket],
    context: ssl.SSLContext | None,
    index: int,
) -> int:
    """One forked process of `--processes N`: its own services and loop on the shared sockets."""
    logs.label_process(f"process {index} pid {os.getpid()}")
    try:
        lock = _lock_database(settings)  # shared with the other processes (dblock.py)
    except LockHeld as held:
        return _lock_held(settings, held)
    except StartupFailed as exc:
        print(f"scoreboard: process {index}: {exc}", file=sys.stderr)
        return 1
    try:
        try:
            services = _open_services(settings, migrate=False)
        except StartupFailed as exc:
            print(f"scoreboard: process {index}: {exc}", file=sys.stderr)
            return 1
        asyncio.run(_serve(services, sockets, context))
    finally:
        lock.release()
    return 0


def _startup_failed(exc: StartupFailed) -> int:
    log.debug("start-up failed", exc_info=True)
    print(f"scoreboard: {exc}", file=sys.stderr)
    return 1


def _ssl_context(settings: config.Settings) -> ssl.SSLContext | None:
    if settings.certfile is None or settings.keyfile is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(settings.certfile, settings.keyfile)
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise StartupFailed(
            f"cannot load the TLS certificate {settings.certfile!r} with key "
            f"{settings.keyfile!r}: {reason}"
        ) from None
    return context


def _open_services(settings: config.Settings, *, migrate: bool = True) -> Services:
    """Open (and migrate) the database; its failures become one line naming the database."""
    with _database_failures(settings):
        return build_services(settings, migrate=migrate)


def _lock_database(settings: config.Settings) -> DatabaseLock:
    """Take the one-server lock of the database (LockHeld when another server has it)."""
    lock = DatabaseLock(settings.database_url, shared=settings.redis_url is not None)
    with _database_failures(settings):
        lock.acquire()
    return lock


@contextlib.contextmanager
def _database_failures(settings: config.Settings) -> Iterator[None]:
    """Turn a database that cannot be reached or used into StartupFailed: one line, its URL."""
    import sqlalchemy.exc
    from alembic.util.exc import CommandError

    where = _safe_url(settings.database_url)
    try:
        yield
    except sqlalchemy.exc.DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise StartupFailed(f"cannot open the database {where}: {reason}") from None
    except CommandError as exc:
        # An unknown revision: the schema was made by a newer version of the code.
        raise StartupFailed(
            f"cannot use the database {where}: {exc} (is it from a newer Scoreboard?)"
        ) from None
    except OSError as exc:  # e.g. a public key file or a lock file that cannot be opened
        raise StartupFailed(f"cannot start: {exc.strerror}: {exc.filename!r}") from None


def _safe_url(url: str) -> str:
    """The database URL as a log line may show it: no password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "the configured database"


def _bind(settings: config.Settings) -> list[socket.socket]:
    try:
        return bind_sockets(settings.port, settings.host)
    except OSError as exc:
        reason = "the address is in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise StartupFailed(f"cannot listen on {settings.host}:{settings.port}: {reason}") from None


async def _serve(
    services: Services, sockets: list[socket.socket], context: ssl.SSLContext | None
) -> None:
    settings = services.settings
    loop = asyncio.get_running_loop()
    services.store.start(loop)
    services.hub.start()
    if services.presence is not None:
        services.presence.start()
    server = ScoreboardHTTPServer(
        make_app(services),
        request_head_timeout=settings.request_head_timeout,
        idle_timeout=settings.idle_timeout,
        max_body_size=MAX_REQUEST_BYTES,
        ssl_options=context,
    )
    server.add_sockets(sockets)
    scheme = "https" if context is not None else "http"
    log.info("serving on %s://%s:%d", scheme, settings.host, settings.port)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, logs.reopen)
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
    if services.presence is not None:
        await services.presence.close()  # this process leaves the cluster's figures at once
    if services.redis is not None:
        await services.redis.aclose()
    await asyncio.get_running_loop().run_in_executor(None, services.store.close)
