"""The server-rendered pages over plain HTTP: what they show, who may see them, how the log-in
cookie and the form posts behave, and that no token ever lands in a page or a URL."""

from __future__ import annotations

import json
import re
import time
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlencode

import jwt
import pytest
from conftest import TEST_JWT_SECRET, ApiClient, Response

from scoreboard.handlers.pages import TOKEN_COOKIE, json_for_html, safe_next

PASSWORD = "correct horse battery"


class Browser:
    """A cookie jar over one test server, following no redirects, as a browser sees answers."""

    def __init__(self, api: ApiClient) -> None:
        self.api = api
        self.cookies: dict[str, str] = {}

    async def fetch(self, method: str, path: str, **kwargs: Any) -> Response:
        headers = dict(kwargs.pop("headers", {}))
        headers.setdefault("Accept", "text/html")
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        response = await self.api.client.fetch(
            self.api.base_url + path,
            method=method,
            headers=headers,
            follow_redirects=False,
            raise_error=False,
            allow_nonstandard_methods=True,
            **kwargs,
        )
        for header in response.headers.get_list("Set-Cookie"):
            for name, morsel in SimpleCookie(header).items():
                if not morsel.value:  # how Tornado clears a cookie
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        return Response(response.code, response.headers, response.body or b"")

    async def form_post(self, path: str, fields: dict[str, str], *, form_page: str) -> Response:
        """Post a form the way a browser does: with the XSRF value the form page carried."""
        page = await self.fetch("GET", form_page)
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
        assert xsrf, page.text
        body = urlencode({"_xsrf": xsrf.group(1), **fields})
        return await self.fetch(
            "POST",
            path,
            body=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )

    async def log_in(self, username: str, password: str = PASSWORD) -> Response:
        return await self.form_post(
            "/login", {"username": username, "password": password}, form_page="/login"
        )


async def register(api: ApiClient, username: str, **extra: Any) -> dict[str, Any]:
    response = await api.post(
        "/api/auth/register", {"username": username, "password": PASSWORD, **extra}
    )
    assert response.status == 201, response.body
    return response.json


async def post_score(api: ApiClient, board: str, user_id: str, score: int) -> None:
    response = await api.post(
        f"/api/boards/{board}/scores", {"user_id": user_id, "score": score}, token=api.admin
    )
    assert response.status == 200, response.body


def page_data(html: str) -> dict[str, Any]:
    match = re.search(r'<script type="application/json" id="page-data">(.*?)</script>', html, re.S)
    assert match, html
    return json.loads(match.group(1))


# -- pure helpers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/boards/quiz", "/boards/quiz"),
        ("/boards/quiz?kiosk=1", "/boards/quiz?kiosk=1"),
        ("//evil.example/", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("", "/"),
        (None, "/"),
    ],
)
def test_after_log_in_only_a_path_on_this_site_is_followed(target, expected):
    assert safe_next(target) == expected


def test_embedded_json_cannot_close_its_script_block():
    text = json_for_html({"title": "</script><script>alert(1)</script> & <!--"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"title": "</script><script>alert(1)</script> & <!--"}


# -- who sees what ------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_the_home_page_asks_a_stranger_to_log_in(api):
    await api.make_board("quiz", title="Quiz night")
    response = await Browser(api).fetch("GET", "/")
    assert response.status == 200
    assert "text/html" in response.headers["Content-Type"]
    assert "Log in or create an account" in response.text
    assert "Quiz night" not in response.text


@pytest.mark.gen_test(timeout=30)
async def test_under_anonymous_read_strangers_see_boards_and_standings(make_api):
    api = await make_api(anonymous_read=True)
    await api.make_board("quiz", title="Quiz night")
    await post_score(api, "quiz", "ann", 1234)
    browser = Browser(api)
    assert "Quiz night" in (await browser.fetch("GET", "/")).text
    board = await browser.fetch("GET", "/boards/quiz")
    assert board.status == 200
    assert 'data-user="ann"' in board.text and "1,234" in board.text
    assert "Log in</a> to post your score" in board.text


@pytest.mark.gen_test(timeout=30)
async def test_a_board_page_without_a_log_in_leads_to_log_in_and_back(api):
    await api.make_board("quiz")
    response = await Browser(api).fetch("GET", "/boards/quiz?kiosk=1")
    assert response.status == 302
    assert response.headers["Location"] == "/login?next=/boards/quiz%3Fkiosk%3D1"


@pytest.mark.gen_test(timeout=30)
async def test_the_board_page_holds_the_standings_formatted_and_the_viewer_card(api):
    await api.make_board("run", title="Speed run", order="asc", score_format="duration_ms")
    await register(api, "viewer")
    for user, score in [("ann", 62_345), ("viewer", 3_600_000), ("bob", 59_999)]:
        await post_score(api, "run", user, score)
    browser = Browser(api)
    assert (await browser.log_in("viewer")).status == 303
    response = await browser.fetch("GET", "/boards/run")
    assert response.status == 200
    html = response.text
    row = r'data-user="(\w+)".*?class="score num" data-score="(\d+)">([^<]+)<'
    rows = re.findall(row, html, re.S)
    assert rows[:3] == [
        ("bob", "59999", "0:59.999"),
        ("ann", "62345", "1:02.345"),
        ("viewer", "3600000", "1:00:00.000"),
    ]
    assert 'class="row podium-3 me" data-user="viewer"' in html
    assert "#3</strong> of <span" in html
    data = page_data(html)
    assert data["board"]["score_format"] == "duration_ms"
    assert [e["user_id"] for e in data["around"]] == ["bob", "ann", "viewer"]
    assert data["user"] == {"user_id": "viewer", "name": "viewer"}


@pytest.mark.gen_test(timeout=30)
async def test_the_kiosk_view_has_the_standings_and_no_controls(api):
    await api.make_board("quiz")
    await post_score(api, "quiz", "ann", 5)
    browser = Browser(api)
    await register(api, "viewer")
    await browser.log_in("viewer")
    html = (await browser.fetch("GET", "/boards/quiz?kiosk=1")).text
    assert '<body class="kiosk">' in html
    assert 'data-user="ann"' in html
    assert "score-form" not in html and "site-header" not in html and "Log out" not in html


@pytest.mark.gen_test(timeout=30)
async def test_a_title_with_markup_is_shown_as_text(api):
    await api.make_board("quiz", title='<img src=x onerror="alert(1)"></script>')
    browser = Browser(api)
    await register(api, "viewer")
    await browser.log_in("viewer")
    html = (await browser.fetch("GET", "/boards/quiz")).text
    assert "<img src=x" not in html
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&lt;/script&gt;" in html
    assert page_data(html)["board"]["title"] == '<img src=x onerror="alert(1)"></script>'


@pytest.mark.gen_test(timeout=30)
async def test_the_admin_page_is_for_admins(api):
    await register(api, "player")
    player = Browser(api)
    await player.log_in("player")
    refused = await player.fetch("GET", "/admin")
    assert refused.status == 403
    assert "You may not see this page" in refused.text

    admin = Browser(api)
    admin.cookies[TOKEN_COOKIE] = api.admin
    await api.make_board("quiz", title="Quiz night")
    response = await admin.fetch("GET", "/admin")
    assert response.status == 200
    assert "Quiz night" in response.text and 'id="create-board"' in response.text


# -- the log-in cookie and the token ------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_behind_a_proxy_that_ends_tls_the_log_in_cookie_is_secure(make_api):
    """nginx ends TLS and says so in X-Forwarded-Proto: the cookie must still be Secure."""
    for trusted, secure in (("127.0.0.1",), True), ((), False):
        api = await make_api(trusted_proxies=trusted)
        await register(api, "viewer")
        browser = Browser(api)
        headers = {"X-Forwarded-Proto": "https"}
        page = await browser.fetch("GET", "/login", headers=headers)
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
        assert xsrf, page.text
        response = await browser.fetch(
            "POST",
            "/login",
            body=urlencode({"_xsrf": xsrf.group(1), "username": "viewer", "password": PASSWORD}),
            headers={**headers, "Content-Type": "application/x-www-form-urlencoded"},
        )
        assert response.status == 303
        cookie = next(c for c in response.headers.get_list("Set-Cookie") if TOKEN_COOKIE in c)
        assert ("Secure" in cookie) is secure, cookie


@pytest.mark.gen_test(timeout=30)
async def test_logging_in_sets_an_http_only_cookie_and_never_puts_the_token_in_a_page(api):
    await api.make_board("quiz")
    await register(api, "viewer")
    browser = Browser(api)
    response = await browser.form_post(
        "/login",
        {"username": "viewer", "password": PASSWORD, "next": "/boards/quiz"},
        form_page="/login?next=/boards/quiz",
    )
    assert response.status == 303
    assert response.headers["Location"] == "/boards/quiz"
    cookie = next(c for c in response.headers.get_list("Set-Cookie") if TOKEN_COOKIE in c)
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    token = browser.cookies[TOKEN_COOKIE]
    assert api.services.tokens.decode(token).sub == "viewer"

    page = await browser.fetch("GET", "/boards/quiz")
    assert token not in page.text and token not in page.headers.get("Location", "")

    session = await browser.fetch("GET", "/auth/session", headers={"Origin": api.base_url})
    assert session.status == 200
    assert session.json["access_token"] == token
    assert session.json["user"] == {"user_id": "viewer", "name": "viewer", "role": "player"}
    assert "Access-Control-Allow-Origin" not in session.headers
    assert session.headers["Cache-Control"] == "no-store"


@pytest.mark.gen_test(timeout=30)
async def test_the_session_token_needs_the_cookie(api):
    response = await Browser(api).fetch("GET", "/auth/session")
    assert response.status == 401
    assert response.json == {"access_token": None, "expired": False}


@pytest.mark.gen_test(timeout=30)
async def test_an_expired_cookie_leads_to_log_in_and_is_forgotten(api):
    await api.make_board("quiz")
    browser = Browser(api)
    browser.cookies[TOKEN_COOKIE] = jwt.encode(
        {"sub": "viewer", "exp": int(time.time()) - 3600}, TEST_JWT_SECRET, "HS256"
    )
    response = await browser.fetch("GET", "/boards/quiz")
    assert response.status == 302
    assert response.headers["Location"] == "/login?next=/boards/quiz&expired=1"
    assert TOKEN_COOKIE not in browser.cookies
    login = await browser.fetch("GET", response.headers["Location"])
    assert "Your session expired" in login.text


@pytest.mark.gen_test(timeout=30)
async def test_wrong_credentials_keep_the_form_and_say_so(api):
    await register(api, "viewer")
    response = await Browser(api).log_in("viewer", "not the password")
    assert response.status == 401
    assert "Wrong username or password." in response.text
    assert 'value="viewer"' in response.text


@pytest.mark.gen_test(timeout=30)
async def test_a_form_post_without_the_xsrf_value_is_refused(api):
    await register(api, "viewer")
    response = await Browser(api).fetch(
        "POST",
        "/login",
        body=urlencode({"username": "viewer", "password": PASSWORD}),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status == 403
    assert TOKEN_COOKIE not in (response.headers.get("Set-Cookie") or "")


@pytest.mark.gen_test(timeout=30)
async def test_a_log_in_never_redirects_to_another_site(api):
    await register(api, "viewer")
    response = await Browser(api).form_post(
        "/login",
        {"username": "viewer", "password": PASSWORD, "next": "//evil.example/"},
        form_page="/login",
    )
    assert (response.status, response.headers["Location"]) == (303, "/")


@pytest.mark.gen_test(timeout=30)
async def test_register_and_log_out_through_the_forms(api):
    browser = Browser(api)
    response = await browser.form_post(
        "/register",
        {"username": "newbie", "password": PASSWORD, "display_name": "New Bie", "next": "/"},
        form_page="/register",
    )
    assert response.status == 303
    assert "Signed in as <strong>New Bie</strong>" in (await browser.fetch("GET", "/")).text

    taken = await Browser(api).form_post(
        "/register", {"username": "newbie", "password": PASSWORD}, form_page="/register"
    )
    assert taken.status == 409
    short = await Browser(api).form_post(
        "/register", {"username": "other", "password": "short"}, form_page="/register"
    )
    assert short.status == 422
    assert 'id="password-error"' in short.text and 'value="other"' in short.text

    out = await browser.form_post("/logout", {}, form_page="/")
    assert (out.status, out.headers["Location"]) == (303, "/")
    assert TOKEN_COOKIE not in browser.cookies
    assert "Log in or create an account" in (await browser.fetch("GET", "/")).text


# -- the score form without scripts -------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_the_score_form_posts_without_scripts_and_keeps_a_refused_value(api):
    await api.make_board("quiz", max_score=1000)
    await register(api, "viewer")
    browser = Browser(api)
    await browser.log_in("viewer")
    ok = await browser.form_post("/boards/quiz/submit", {"score": "700"}, form_page="/boards/quiz")
    assert (ok.status, ok.headers["Location"]) == (303, "/boards/quiz")
    assert (await api.get("/api/boards/quiz/players/viewer", token=api.admin)).json["score"] == 700

    too_big = await browser.form_post(
        "/boards/quiz/submit", {"score": "5000"}, form_page="/boards/quiz"
    )
    assert too_big.status == 422
    assert "score must be at most 1000, got 5000" in too_big.text
    assert 'value="5000"' in too_big.text
    not_a_number = await browser.form_post(
        "/boards/quiz/submit", {"score": "lots"}, form_page="/boards/quiz"
    )
    assert not_a_number.status == 422
    assert "A score is a number, got &#x27;lots&#x27;." in not_a_number.text


# -- errors, headers, start-up -----------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_pages_send_a_strict_content_security_policy(api):
    response = await Browser(api).fetch("GET", "/login")
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.gen_test(timeout=30)
async def test_an_unknown_path_is_a_page_for_browsers_and_a_problem_for_programs(api):
    before = await api.metric_values()
    page = await Browser(api).fetch("GET", "/no/such/page")
    assert page.status == 404 and "text/html" in page.headers["Content-Type"]
    assert "Nothing here" in page.text
    program = await api.get("/no/such/page")
    assert program.status == 404 and program.json["code"] == "not_found"
    api_path = await Browser(api).fetch("GET", "/api/nothing")
    assert api_path.headers["Content-Type"] == "application/problem+json"
    after = await api.metric_values()
    key = (
        'scoreboard_http_request_duration_seconds_count{handler="not_found",method="GET",'
        'status="404"}'
    )
    assert after[key] - before.get(key, 0) == 3


@pytest.mark.gen_test(timeout=30)
async def test_pages_during_start_up_are_503_and_reload_themselves(unloaded_api):
    browser = Browser(unloaded_api)
    browser.cookies[TOKEN_COOKIE] = unloaded_api.admin
    for path in ("/", "/boards/quiz", "/admin"):
        response = await browser.fetch("GET", path)
        assert response.status == 503, path
        assert response.headers["Retry-After"] == "2"
        assert '<meta http-equiv="refresh" content="2">' in response.text


@pytest.mark.gen_test(timeout=30)
async def test_static_files_are_served_with_revalidation_unless_versioned(api):
    plain = await Browser(api).fetch("GET", "/static/js/format.js")
    assert plain.status == 200
    assert plain.headers["Cache-Control"] == "no-cache"
    assert "javascript" in plain.headers["Content-Type"]
    login = (await Browser(api).fetch("GET", "/login")).text
    versioned = re.search(r'href="(/static/css/app\.css\?v=\w+)"', login)
    assert versioned
    cached = await Browser(api).fetch("GET", versioned.group(1))
    assert "max-age" in cached.headers["Cache-Control"]


# -- seasons ---------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_an_archived_season_page_shows_the_final_standings(api):
    await api.make_board("laps", order="asc", score_format="duration_ms", reset_schedule="weekly")
    await register(api, "amy")
    for user, score in [("amy", 62345), ("bob", 61000), ("cy", 70000)]:
        await post_score(api, "laps", user, score)
    browser = Browser(api)
    await browser.log_in("amy")
    board = await browser.fetch("GET", "/boards/laps")
    assert "Season 1 · next reset" in board.text
    assert 'id="seasons-nav" hidden' in board.text  # nothing archived yet

    assert (await api.post("/api/boards/laps/reset", {}, token=api.admin)).status == 200
    await post_score(api, "laps", "new", 1)
    board = await browser.fetch("GET", "/boards/laps")
    assert "Season 2 · next reset" in board.text
    assert 'href="/boards/laps/seasons/1"' in board.text

    page = await browser.fetch("GET", "/boards/laps/seasons/1")
    assert page.status == 200
    rows = re.findall(
        r'<li class="row[^"]*" data-user="([^"]+)">\s*<span class="rank num">(\d+)</span>\s*'
        r'<span class="name">([^<]+)</span>\s*<span class="score num" data-score="(\d+)">([^<]+)<',
        page.text,
    )
    assert rows == [
        ("bob", "1", "bob", "61000", "1:01.000"),
        ("amy", "2", "amy", "62345", "1:02.345"),
        ("cy", "3", "cy", "70000", "1:10.000"),
    ]
    assert 'class="row podium-2 me"' in page.text  # the viewer's own row, as on the board
    assert "3 players" in page.text and "reset by an organiser" in page.text
    assert 'aria-current="page"' in page.text

    assert (await browser.fetch("GET", "/boards/laps/seasons/2")).status == 404
    assert (await browser.fetch("GET", "/boards/laps/seasons/x")).status == 404
    assert (await browser.fetch("GET", "/boards/none/seasons/1")).status == 404
    logged_out = await Browser(api).fetch("GET", "/boards/laps/seasons/1")
    assert logged_out.status == 302 and "/login" in logged_out.headers["Location"]


@pytest.mark.gen_test(timeout=30)
async def test_a_long_season_page_pages_by_a_hundred(api):
    await api.make_board("big")
    for i in range(130):
        await post_score(api, "big", f"p{i:03d}", 1000 - i)
    assert (await api.post("/api/boards/big/reset", {}, token=api.admin)).status == 200
    await register(api, "viewer")
    browser = Browser(api)
    await browser.log_in("viewer")
    first = await browser.fetch("GET", "/boards/big/seasons/1")
    assert first.text.count('<li class="row') == 100 and 'href="?offset=100"' in first.text
    second = await browser.fetch("GET", "/boards/big/seasons/1?offset=100")
    assert second.text.count('<li class="row') == 30
    assert ">101</span>" in second.text and 'href="?offset=0"' in second.text


@pytest.mark.gen_test(timeout=30)
async def test_the_admin_export_link_streams_with_the_log_in_cookie(api):
    await api.make_board("b", score_format="decimal:2")
    await post_score(api, "b", "amy", 1234)
    await api.post(
        "/api/admin/users",
        {"username": "boss", "password": PASSWORD, "role": "admin"},
        token=api.admin,
    )
    browser = Browser(api)
    await browser.log_in("boss")
    answer = await browser.fetch("GET", "/admin/export/b?format=csv")
    assert answer.status == 200 and answer.headers["Content-Type"].startswith("text/csv")
    assert answer.text.splitlines()[1].startswith("1,amy,amy,1234,12.34,0,")
    await register(api, "player")
    player = Browser(api)
    await player.log_in("player")
    assert (await player.fetch("GET", "/admin/export/b")).status == 403
