"""`run.py board create|list|reset|delete` and `user create|list`: on the running server when
there is one, else on the database directly; the output says which.

Which one is decided by the database lock (dblock.py), not by a port that happens to answer:
a server on this database holds the lock, so the command signs an admin token with the
stored secret and calls that server's HTTP API at --host/--port, and the server's memory and
its clients see the change at once. With the lock free no server runs on this database, and
the command takes the lock itself (so none can start meanwhile) and writes the database.
"""

from __future__ import annotations

import argparse
import getpass
import json
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from . import schemas, seasons
from .app import resolve_jwt_secret
from .auth import Role, TokenCodec, hash_password
from .config import Settings
from .dblock import DatabaseLock, LockHeld
from .errors import ScoreboardError, ValidationFailed
from .formatting import SCORE_FORMATS, format_score, parse_score_format
from .ranking import format_timestamp
from .schemas import BOARD_SETTINGS, MIN_PASSWORD_LENGTH, is_identifier, new_board
from .store import Store
from .tables import UserRow

HTTP_TIMEOUT_S = 30  # a reset of a million players takes seconds; more is a server in trouble
ADMIN_TOKEN_TTL_S = 300
ADMIN_SUB = "run.py"  # who the audit trail says acted
PAGE = 1000  # users read per request when listing


def add_commands(commands: Any) -> list[argparse.ArgumentParser]:
    """The `board` and `user` subcommands, on run.py's subparsers; returns their leaves."""
    user = commands.add_parser("user", help="manage accounts").add_subparsers(
        dest="user_command", required=True
    )
    create_user = user.add_parser("create", help="create an account (password from stdin)")
    create_user.add_argument("username")
    create_user.add_argument("--role", choices=[r.value for r in Role], default=Role.PLAYER.value)
    create_user.add_argument("--name", help="display name (default: the username)")
    list_users = user.add_parser("list", help="list the users")

    board = commands.add_parser("board", help="manage boards").add_subparsers(
        dest="board_command", required=True
    )
    create_board = board.add_parser("create", help="create a board")
    create_board.add_argument("id")
    create_board.add_argument("--title", required=True)
    # Choices and defaults come from the board's settings: the API's create body, as flags.
    for name in ("order", "operator", "reset_schedule"):
        setting = BOARD_SETTINGS[name]
        create_board.add_argument(
            f"--{name.replace('_', '-')}", choices=setting.schema["enum"], default=setting.default
        )
    create_board.add_argument(
        "--score-format",
        default=BOARD_SETTINGS["score_format"].default,
        metavar="FORMAT",
        help="how scores are shown: " + ", ".join(SCORE_FORMATS),
    )
    list_boards = board.add_parser("list", help="list the boards")
    reset = board.add_parser("reset", help="archive the standings as a season, start anew")
    reset.add_argument("id")
    delete = board.add_parser("delete", help="delete a board, its scores and its seasons")
    delete.add_argument("id")
    return [create_user, list_users, create_board, list_boards, reset, delete]


def main(settings: Settings, args: argparse.Namespace) -> int:
    """Run one management command; the exit status."""
    if args.command == "board" and args.board_command == "create":
        try:
            args.score_format = parse_score_format(args.score_format, "--score-format")
        except ValidationFailed as exc:  # a usage mistake, like a bad flag value: exit 2
            print(f"scoreboard: {exc.detail}", file=sys.stderr)
            return 2
    if args.command == "user" and args.user_command == "create":
        if not is_identifier(args.username):
            raise ValidationFailed(
                f"username must be {schemas.IDENTIFIER['description']}, got {args.username!r}"
            )
        args.password = _read_password(args.username)
        if args.password is None:
            return 1
    lock = DatabaseLock(settings.database_url)
    try:
        lock.acquire()
    except LockHeld as held:
        return _run(Remote(settings, str(held)), args)
    try:
        return _run(Direct(settings), args)
    finally:
        lock.release()


def _read_password(username: str) -> str | None:
    if sys.stdin.isatty():
        password = getpass.getpass(f"password for {username}: ")
    else:
        password = sys.stdin.readline().rstrip("\n")
    if len(password) < MIN_PASSWORD_LENGTH:
        print(
            f"scoreboard: the password needs at least {MIN_PASSWORD_LENGTH} characters",
            file=sys.stderr,
        )
        return None
    return password


def _run(target: Remote | Direct, args: argparse.Namespace) -> int:
    try:
        action = args.board_command if args.command == "board" else args.user_command
        command: Callable[[argparse.Namespace], list[str]] = getattr(
            target, f"{args.command}_{action}"
        )
        lines = command(args)
    finally:
        target.close()
    for line in lines:
        print(line)
    print(f"({target.where})")
    return 0


# -- the two ways ------------------------------------------------------------------------------


class Remote:
    """Through the running server's HTTP API, with a short-lived admin token."""

    def __init__(self, settings: Settings, lock: str) -> None:
        host = settings.host
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
        if ":" in host:
            host = f"[{host}]"
        scheme = "https" if settings.certfile else "http"
        self.base_url = f"{scheme}://{host}:{settings.port}"
        self.lock = lock
        self.where = f"through the running server at {self.base_url}"
        self._tls: ssl.SSLContext | None = None
        if settings.certfile:
            self._tls = ssl.create_default_context(cafile=settings.certfile)
            self._tls.check_hostname = False  # our own server, by the address we were given
        store = Store(settings.database_url)
        try:
            codec = TokenCodec(
                secret=resolve_jwt_secret(settings, store),
                issuer=settings.jwt_issuer,
                audience=settings.jwt_audience,
                ttl=ADMIN_TOKEN_TTL_S,
            )
        finally:
            store.close()
        self._token = codec.issue(ADMIN_SUB, role=Role.ADMIN, name="run.py")

    def close(self) -> None:
        pass

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base_url + path,
            data,
            {"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"},
            method=method,
        )
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S, context=self._tls) as r:
                raw = r.read()
        except urllib.error.HTTPError as err:
            with err:
                try:
                    detail = json.loads(err.read()).get("detail") or err.reason
                except ValueError:
                    detail = err.reason
            hint = ""
            if err.code == 401:
                hint = " (give run.py the server's --jwt-secret: it signs with the stored one)"
            raise ScoreboardError(
                f"the server at {self.base_url} said {err.code}: {detail}{hint}"
            ) from None
        except OSError as exc:
            raise ScoreboardError(
                f"a server holds the database ({self.lock}) but none answers at "
                f"{self.base_url} ({getattr(exc, 'reason', exc)}); give its --host and --port"
            ) from None
        return json.loads(raw) if raw else None

    def board_create(self, args: argparse.Namespace) -> list[str]:
        made = self._call("POST", "/api/boards", _create_body(args))
        return [f"created board {made['id']}"]

    def board_list(self, args: argparse.Namespace) -> list[str]:
        rows = []
        for board in self._call("GET", "/api/boards")["boards"]:
            quoted = urllib.parse.quote(board["id"], safe="")
            top = self._call("GET", f"/api/boards/{quoted}/leaderboard?limit=1")["entries"]
            leader = (top[0]["name"], top[0]["score"]) if top else None
            rows.append((board, leader))
        return _board_table(rows)

    def board_reset(self, args: argparse.Namespace) -> list[str]:
        quoted = urllib.parse.quote(args.id, safe="")
        done = self._call("POST", f"/api/boards/{quoted}/reset", {})
        archived, current = done["season"], done["current"]
        return [f"reset board {args.id}: season {archived} archived, season {current} begins"]

    def board_delete(self, args: argparse.Namespace) -> list[str]:
        self._call("DELETE", f"/api/boards/{urllib.parse.quote(args.id, safe='')}")
        return [f"deleted board {args.id}"]

    def user_create(self, args: argparse.Namespace) -> list[str]:
        body = {"username": args.username, "password": args.password, "role": args.role}
        if args.name:
            body["display_name"] = args.name
        made = self._call("POST", "/api/admin/users", body)
        return [f"created user {made['user_id']} with role {made['role']}"]

    def user_list(self, args: argparse.Namespace) -> list[str]:
        users: list[dict[str, Any]] = []
        while True:
            page = self._call("GET", f"/api/admin/users?limit={PAGE}&offset={len(users)}")
            users += page["users"]
            if not page["users"] or len(users) >= page["total"]:
                return _user_table(users)


class Direct:
    """On the database itself, while this process holds the lock (no server runs on it)."""

    where = "written to the database directly: no server is running on it"

    def __init__(self, settings: Settings) -> None:
        self.store = Store(settings.database_url)
        self.store.migrate()

    def close(self) -> None:
        self.store.close()

    def board_create(self, args: argparse.Namespace) -> list[str]:
        # The API's create body: the same schema checks it, and fills in the other settings.
        config = new_board(_create_body(args), created_at=time.time())
        self.store.create_board_sync(config)
        return [f"created board {config.id}"]

    def board_list(self, args: argparse.Namespace) -> list[str]:
        rows = []
        for config, players, season, started, schedule_since in self.store.list_boards_sync():
            since = max(started or config.created_at, schedule_since or 0.0)
            upcoming = seasons.next_boundary(config.reset_schedule, after=since)
            board = {
                "id": config.id,
                "title": config.title,
                "order": config.order,
                "operator": config.operator,
                "score_format": config.score_format,
                "reset_schedule": config.reset_schedule,
                "players": players,
                "season": season,
                "next_reset_at": None if upcoming is None else format_timestamp(upcoming),
            }
            top = self.store.leader_sync(config.id, config.order)
            rows.append((board, None if top is None else (top[2], top[3])))
        return _board_table(rows)

    def board_reset(self, args: argparse.Namespace) -> list[str]:
        season, players = self.store.reset_board_sync(
            args.id, now=time.time(), reason=seasons.REASON_MANUAL
        )
        return [
            f"reset board {args.id}: season {season} archived ({players} players), "
            f"season {season + 1} begins"
        ]

    def board_delete(self, args: argparse.Namespace) -> list[str]:
        self.store.delete_board_sync(args.id)
        return [f"deleted board {args.id}"]

    def user_create(self, args: argparse.Namespace) -> list[str]:
        self.store.create_user_sync(
            UserRow(
                id=args.username,
                name=args.name or args.username,
                role=args.role,
                password_hash=hash_password(args.password),
            )
        )
        return [f"created user {args.username} with role {args.role}"]

    def user_list(self, args: argparse.Namespace) -> list[str]:
        users: list[dict[str, Any]] = []
        while True:
            total, page = self.store.list_users_sync(offset=len(users), limit=PAGE)
            users += page
            if not page or len(users) >= total:
                return _user_table(users)


# -- output ------------------------------------------------------------------------------------


def _create_body(args: argparse.Namespace) -> dict[str, Any]:
    """`board create`'s flags as the API's create body, whichever way the command goes."""
    return {
        "id": args.id,
        "title": args.title,
        "order": args.order,
        "operator": args.operator,
        "score_format": args.score_format,
        "reset_schedule": args.reset_schedule,
    }


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    return [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]


def _board_table(rows: list[tuple[dict[str, Any], tuple[str, int] | None]]) -> list[str]:
    if not rows:
        return ["no boards"]
    header = (
        "ID",
        "TITLE",
        "ORDER",
        "OPERATOR",
        "FORMAT",
        "PLAYERS",
        "LEADER",
        "SEASON",
        "NEXT RESET",
    )
    return _table(
        header,
        [
            (
                b["id"],
                b["title"],
                b["order"],
                b["operator"],
                b["score_format"],
                f"{b['players']:,}",
                "-"
                if leader is None
                else f"{leader[0]} {format_score(leader[1], b['score_format'])}",
                str(b["season"]),
                b["next_reset_at"] or f"{b['reset_schedule']}",
            )
            for b, leader in rows
        ],
    )


def _user_table(users: list[dict[str, Any]]) -> list[str]:
    if not users:
        return ["no users"]
    return _table(
        ("USER", "NAME", "ROLE", "LOG-IN", "CREATED"),
        [
            (
                u["user_id"],
                u["name"],
                u["role"],
                "password" if u["has_password"] else "token only",
                u["created_at"],
            )
            for u in users
        ],
    )
