"""The web UI's server-rendered pages: every page's HTML already holds the current standings.

Scripts (`static/js/`) then make the pages live; with scripts off they stay readable, and the
log-in, register, log-out and score forms still work as plain form posts.

Where the token lives: an HttpOnly, SameSite=Lax cookie set by the log-in and register forms.
The server reads it to render a page for its viewer (so standings appear in the HTML, scripts
or not); page scripts never see the cookie and ask `GET /auth/session` for the token, which they
keep in memory only and hand to the WebSocket as the `bearer.<token>` subprotocol. So the token
is never in a URL, a log line, `localStorage` or a page's HTML. Form posts are cookie-authenticated
and so carry Tornado's XSRF token; the JSON API ignores the cookie (it reads only the
`Authorization` header, which a browser never adds to a cross-site request by itself).
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import orjson
import tornado.httputil
import tornado.web

from .. import frames, metrics
from ..auth import Identity, Role
from ..errors import AuthFailed, NotFound, NotReady, ScoreboardError
from ..formatting import format_score, parse_score_input
from .base import BoundedBody, RouteMethods, Services, admin, public, reader, send_problem

TOKEN_COOKIE = "scoreboard_token"
AROUND_RADIUS = 2  # the rank card shows two players above and two below the viewer
NOT_READY_REFRESH_S = 2  # a page asked for during start-up reloads itself this often


def json_for_html(value: Any) -> str:
    """JSON to embed in a `<script type="application/json">` block: no `<`, `>` or `&` in it,
    so no value can close the block or open a comment."""
    text = orjson.dumps(value).decode()
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this site, never another site (`//evil`)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def login_url(next_path: str, *, expired: bool = False) -> str:
    query = "?next=" + quote(next_path, safe="/")
    return "/login" + query + ("&expired=1" if expired else "")


def _reading_the_form(post: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a page's `post`: parse the (bounded) form body and check its XSRF token first."""

    @functools.wraps(post)
    async def read_then_post(self: PageHandler, *args: Any, **kwargs: Any) -> None:
        self.read_form()
        result = post(self, *args, **kwargs)
        if inspect.isawaitable(result):
            await result

    return read_then_post


@tornado.web.stream_request_body
class PageHandler(BoundedBody, RouteMethods):
    """HTML pages: the viewer from the token cookie, HTML error pages, strict security headers.

    Auth rules use the same decorators as the API (`public`, `reader`, `admin`); a refusal is
    answered the way a person expects: a missing or expired log-in leads to the log-in page
    and back, a wrong role gets a 403 page.

    Forms stream in under the API's cap (BoundedBody: a 413 page, not a bare 400), so they are
    parsed when `post` runs: every subclass's `post` is wrapped to do that and check XSRF first.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "post" in cls.__dict__:
            cls.post = _reading_the_form(cls.__dict__["post"])

    def initialize(self, services: Services) -> None:
        self.services = services
        self.service = services.service
        self.settings_ = services.settings
        self.token: str | None = None
        self.token_expired = False
        self._identity = self._identity_from_cookie()

    def _identity_from_cookie(self) -> Identity | None:
        token = self.get_cookie(TOKEN_COOKIE)
        if not token:
            return None
        try:
            identity = self.services.tokens.decode(token)
        except ScoreboardError:
            # Expired or no longer valid (e.g. the secret changed): forget it, ask to log in.
            self.token_expired = True
            self.clear_cookie(TOKEN_COOKIE, path="/")
            return None
        self.token = token
        return identity

    @property
    def identity(self) -> Identity | None:
        return self._identity

    @property
    def is_admin(self) -> bool:
        return self._identity is not None and self._identity.role is Role.ADMIN

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")  # pages hold a viewer's own standing
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "same-origin")
        host = self.request.host
        self.set_header(
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"connect-src 'self' ws://{host} wss://{host}; frame-ancestors 'none'; "
            "base-uri 'none'; form-action 'self'; object-src 'none'",
        )

    def prepare(self) -> None:
        self.bound_the_body()

    def read_form(self) -> None:
        """Parse the form body into the request's arguments, then check the XSRF token."""
        request, content_type = self.request, self.request.headers.get("Content-Type", "")
        parse = tornado.httputil.parse_body_arguments
        parse(
            content_type, self.body_bytes(), request.body_arguments, request.files, request.headers
        )
        for name, values in request.body_arguments.items():
            request.arguments.setdefault(name, []).extend(values)
        self.check_xsrf_cookie()

    def get_template_namespace(self) -> dict[str, Any]:
        namespace = super().get_template_namespace()
        namespace.update(
            viewer=self._identity,
            is_admin=self.is_admin,
            anonymous_read=self.settings_.anonymous_read,
            format_score=format_score,
            when=when,
            json_data=json_for_html,
            kiosk=False,
        )
        return namespace

    # -- errors as pages -------------------------------------------------------------------

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, AuthFailed) and not self._finished:
            self.clear()
            self.redirect(login_url(self.request.uri or "/", expired=self.token_expired))
            return
        if isinstance(exc, ScoreboardError):
            status_code = exc.status
        super().send_error(status_code, **kwargs)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_allow_header(status_code)
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, NotReady):
            self.set_header("Retry-After", str(NOT_READY_REFRESH_S))
        detail = exc.detail if isinstance(exc, ScoreboardError) else None
        if isinstance(exc, tornado.web.HTTPError) and status_code < 500:
            detail = exc.log_message
        self.render(
            "error.html",
            status=status_code,
            title=self._error_title(status_code),
            detail=detail,
            refresh_s=NOT_READY_REFRESH_S if isinstance(exc, NotReady) else None,
        )

    @staticmethod
    def _error_title(status: int) -> str:
        return {
            403: "You may not see this page",
            404: "Nothing here",
            413: "Too much to send",
            503: "Starting up",
        }.get(status, "Something went wrong")

    def on_finish(self) -> None:
        metrics.observe_request(
            type(self).__name__, self.request.method, self.get_status(), self.request.request_time()
        )

    # -- shared pieces ---------------------------------------------------------------------

    def ensure_ready(self) -> None:
        if not self.service.ready:
            raise NotReady("the leaderboards are still loading")

    def log_in_as(self, answer: dict[str, Any]) -> None:
        """Keep a token answer (log-in, register) in the HttpOnly cookie."""
        self.set_cookie(
            TOKEN_COOKIE,
            answer["access_token"],
            path="/",
            expires_days=None,
            max_age=int(answer["expires_in"]),
            httponly=True,
            samesite="Lax",
            secure=self.request.protocol == "https",
        )


class NotFoundPage(PageHandler):
    """Every path no route matches: a page for a person, problem+json for the API and for
    clients that do not ask for HTML. Counted under handler `not_found` whatever the path."""

    def prepare(self) -> None:
        raise NotFound(f"no such path {self.request.path!r}")

    def _wants_page(self) -> bool:
        accept = self.request.headers.get("Accept", "")
        return not self.request.path.startswith("/api/") and "text/html" in accept

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        if self._wants_page():
            super().write_error(status_code, **kwargs)
            return
        exc = kwargs.get("exc_info", (None, None, None))[1]
        error = exc if isinstance(exc, ScoreboardError) else NotFound("no such path")
        send_problem(self, status_code, error.code, error.title, error.detail)

    def on_finish(self) -> None:
        metrics.observe_request(
            "not_found", self.request.method, self.get_status(), self.request.request_time()
        )


class IndexPage(PageHandler):
    """`/`: the boards, with their player counts kept live by the page's script."""

    @public
    def get(self) -> None:
        self.ensure_ready()
        may_read = self.identity is not None or self.settings_.anonymous_read
        boards = self.service.list_boards() if may_read else []
        self.render(
            "index.html",
            boards=boards,
            may_read=may_read,
            expired=self.token_expired,
            page_data={"may_read": may_read, "boards": boards},
        )


class BoardPage(PageHandler):
    """`/boards/{id}` (and `?kiosk=1` for a big screen): standings, rank card, score form."""

    @reader
    async def get(self, board_id: str) -> None:
        self.ensure_ready()
        view = board_view(self.services, board_id, self.identity)
        kiosk = self.get_query_argument("kiosk", "") in ("1", "true", "yes")
        self.render(
            "board.html",
            kiosk=kiosk,
            error=None,
            typed_score="",
            rendered_at=_now_iso(),
            archived=(await self.service.seasons(board_id))["seasons"],
            **view,
        )


class BoardSubmitForm(PageHandler):
    """`POST /boards/{id}/submit`: the score form without scripts (scripts use the WebSocket)."""

    @reader
    async def post(self, board_id: str) -> None:
        self.ensure_ready()
        if self.identity is None:
            raise AuthFailed("log in to submit a score")
        typed = self.get_body_argument("score", "").strip()
        score_format = self.service.board(board_id).config.score_format
        error = None
        try:
            score = parse_score_input(typed, score_format)
        except ValueError as exc:
            error = str(exc)
        if error is None:
            try:
                await self.service.submit_score(self.identity, board_id, {"score": score})
            except ScoreboardError as exc:
                if isinstance(exc, NotFound):
                    raise
                error = exc.detail
        if error is None:
            self.redirect(f"/boards/{quote(board_id, safe='')}", status=303)
            return
        self.set_status(422)
        view = board_view(self.services, board_id, self.identity)
        self.render(
            "board.html",
            kiosk=False,
            error=error,
            typed_score=typed,
            rendered_at=_now_iso(),
            archived=(await self.service.seasons(board_id))["seasons"],
            **view,
        )


class AdminPage(PageHandler):
    """`/admin`: boards to create, edit, reset and delete, entries to remove, exports; who is
    online and live server figures."""

    @admin
    def get(self) -> None:
        self.ensure_ready()
        boards = self.service.list_boards()
        stats = self.services.hub.stats()
        online = self.services.hub.online()
        self.render(
            "admin.html", boards=boards, stats=stats, online=online, page_data={"stats": stats}
        )


class LoginPage(PageHandler):
    """`/login`: a plain form; on success the token goes into the HttpOnly cookie."""

    @public
    def get(self) -> None:
        self._form(error=None, status=200, username="")

    @public
    async def post(self) -> None:
        username = self.get_body_argument("username", "")
        body = {"username": username, "password": self.get_body_argument("password", "")}
        try:
            answer = await self.services.accounts.login(body, address=self.request.remote_ip or "")
        except ScoreboardError as exc:
            if isinstance(exc, AuthFailed):
                message = "Wrong username or password."
            elif exc.retry_after is not None:
                message = f"Too many attempts; try again in {math.ceil(exc.retry_after)} s."
            else:
                message = exc.detail
            self._form(error=message, status=exc.status, username=username)
            return
        self.log_in_as(answer)
        self.redirect(safe_next(self.get_body_argument("next", None)), status=303)

    def _form(self, *, error: str | None, status: int, username: str) -> None:
        self.set_status(status)
        self.render(
            "login.html",
            error=error,
            username=username,
            next_path=safe_next(self.get_argument("next", None)),
            expired=self.get_query_argument("expired", "") == "1" or self.token_expired,
        )


class RegisterPage(PageHandler):
    """`/register`: creates a player account and logs it in."""

    @public
    def get(self) -> None:
        self._form(errors={}, status=200, values={})

    @public
    async def post(self) -> None:
        values = {
            "username": self.get_body_argument("username", ""),
            "display_name": self.get_body_argument("display_name", "").strip(),
        }
        body: dict[str, Any] = {
            "username": values["username"],
            "password": self.get_body_argument("password", ""),
        }
        if values["display_name"]:
            body["display_name"] = values["display_name"]
        try:
            answer = await self.services.accounts.register(
                body, address=self.request.remote_ip or ""
            )
        except ScoreboardError as exc:
            self._form(errors={_field_of(exc.detail): exc.detail}, status=exc.status, values=values)
            return
        self.log_in_as(answer)
        self.redirect(safe_next(self.get_body_argument("next", None)), status=303)

    def _form(self, *, errors: dict[str, str], status: int, values: dict[str, str]) -> None:
        self.set_status(status)
        self.render(
            "register.html",
            errors=errors,
            values=values,
            next_path=safe_next(self.get_argument("next", None)),
        )


class LogoutForm(PageHandler):
    """`POST /logout`: forgets the cookie (the token itself stays valid until it expires)."""

    @public
    def post(self) -> None:
        self.clear_cookie(TOKEN_COOKIE, path="/")
        self.redirect("/", status=303)


class SessionToken(PageHandler):
    """`GET /auth/session`: the cookie's token for the page's own script, as JSON.

    Same-origin only: no CORS headers are ever sent here, so another site's script cannot read
    the answer. 401 when there is no valid cookie (the script then leads to log-in).
    """

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Cross-Origin-Resource-Policy", "same-origin")

    @public
    def get(self) -> None:
        if self.identity is None or self.token is None:
            self.set_status(401)
            self.finish(orjson.dumps({"access_token": None, "expired": self.token_expired}))
            return
        identity = self.identity
        self.finish(
            orjson.dumps(
                {
                    "access_token": self.token,
                    "expires_at": identity.exp,
                    "user": {
                        "user_id": identity.sub,
                        "name": identity.name or identity.sub,
                        "role": identity.role.value,
                    },
                }
            )
        )

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.finish(orjson.dumps({"access_token": None, "status": status_code}))


def board_view(services: Services, board_id: str, identity: Identity | None) -> dict[str, Any]:
    """What the board page renders and hands to its script: board, top 10, you, around you."""
    service = services.service
    state = service.board(board_id)
    board = state.to_json()
    ranks = state.ranks
    you = ranks.entry(identity.sub) if identity is not None else None
    around = ranks.around(you.user_id, AROUND_RADIUS) if you is not None else []
    may_submit = identity is not None and (
        identity.role is not Role.PLAYER or board["player_submissions"]
    )
    data = {
        # seq, top_10 and you as a snapshot carries them; the board itself, not only its id.
        **frames.board_view(board_id, ranks, you),
        "board": board,
        "around": [e.to_json() for e in around],
        "total_players": len(ranks),
        "user": (
            {"user_id": identity.sub, "name": identity.name or identity.sub}
            if identity is not None
            else None
        ),
        "may_submit": may_submit,
    }
    return {**data, "page_data": data}


def _field_of(detail: str) -> str:
    """Which register field an error message is about (the service names it first)."""
    for field in ("username", "password", "display_name"):
        if field in detail:
            return field
    return "form"


def when(iso: str | None) -> str:
    """An API timestamp as pages show it: `2026-11-30 00:00 UTC`."""
    return "" if not iso else f"{iso[:10]} {iso[11:16]} UTC"


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
