"""The web UI in real browsers: Debian's Chromium through Playwright, and firefox-esr through
puppeteer-core over WebDriver BiDi, against a real `run.py` on a free port.

What a person does is what is checked: pages that see a score within a second, an indicator
that walks through an outage and recovers, a page that falls back to long-polling when
WebSocket is blocked, standings readable with scripts off, log-in and its expiry, an organiser
whose new board appears on everyone's board list, and no serious accessibility violation.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from conftest import missing_service
from playwright.sync_api import expect
from server_process import REPO, SECRET, ServerProcess

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
FIREFOX = "/usr/bin/firefox-esr"
AXE_JS = REPO / "node_modules" / "axe-core" / "axe.min.js"
FIREFOX_SCRIPT = REPO / "tests" / "browser" / "firefox_live.mjs"
# The machine's network is closed: Chromium must not try to reach anything on its own.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LIVE_WITHIN_MS = 1000  # "within a blink": a post must show on every open page within a second
PASSWORD = "correct horse battery"


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        missing_service(f"Chromium is not installed at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def start_server(tmp_path: Path, *args: str) -> ServerProcess:
    return ServerProcess(
        f"sqlite:///{tmp_path / 'ui.db'}",
        tmp_path / "server.log",
        "--shutdown-spread",
        "0.2",
        *args,
    ).start()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    process = start_server(tmp_path)
    yield process
    process.stop()


class Site:
    """A running server with an admin token, a board and helpers to act on it over HTTP."""

    def __init__(self, server: ServerProcess, board: str = "quiz", **fields: Any) -> None:
        self.server = server
        self.admin = server.token("admin", "admin")
        self.poster = server.token("game-server", "server")
        self.board = board
        status, body = server.request(
            "POST", "/api/boards", {"id": board, "title": "Quiz night", **fields}, self.admin
        )
        assert status == 201, body

    def post(self, user_id: str, score: int) -> dict[str, Any]:
        status, body = self.server.request(
            "POST",
            f"/api/boards/{self.board}/scores",
            {"user_id": user_id, "score": score},
            self.poster,
        )
        assert status == 200, body
        return body

    def register(self, username: str) -> None:
        status, body = self.server.request(
            "POST", "/api/auth/register", {"username": username, "password": PASSWORD}
        )
        assert status == 201, body

    @property
    def url(self) -> str:
        return self.server.base_url

    def board_url(self, **query: str) -> str:
        suffix = "?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else ""
        return f"{self.url}/boards/{self.board}{suffix}"


@pytest.fixture
def site(server: ServerProcess) -> Site:
    return Site(server)


def log_in(page: Any, base_url: str, username: str, *, next_path: str = "/") -> None:
    page.goto(f"{base_url}/login?next={next_path}")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("form.stack button[type=submit]")
    page.wait_for_url(re.compile(re.escape(base_url + next_path) + r"$"))


def create_admin(server: ServerProcess, username: str) -> None:
    """An admin account, made the way an operator would: `run.py user create` (which goes
    through the running server, found by the database lock and --port)."""
    subprocess.run(
        server.command("--port", str(server.port), "user", "create", username, "--role", "admin"),
        input=PASSWORD,
        text=True,
        check=True,
        cwd=REPO,
        capture_output=True,
    )


def standings(page: Any) -> list[tuple[str, str, str]]:
    """The visible top 10 as (rank, name, score) in page order."""
    rows = page.locator("#top10 li")
    return [
        (
            rows.nth(i).locator(".rank").inner_text(),
            rows.nth(i).locator(".name").inner_text(),
            rows.nth(i).locator(".score").inner_text(),
        )
        for i in range(rows.count())
    ]


def indicator_state(page: Any) -> str:
    return page.locator("#indicator").get_attribute("data-state") or ""


def wait_state(page: Any, state: str, timeout_ms: int = 15_000) -> None:
    page.wait_for_function(
        "state => document.querySelector('#indicator').dataset.state === state",
        arg=state,
        timeout=timeout_ms,
    )


def wait_row(page: Any, user_id: str, score: int, timeout_ms: int) -> None:
    page.wait_for_function(
        """([user, score]) => {
             const cell = document.querySelector(`#top10 li[data-user="${user}"] .score`);
             return cell && cell.dataset.score === String(score);
           }""",
        arg=[user_id, score],
        timeout=timeout_ms,
    )


# -- live updates -----------------------------------------------------------------------------


def test_two_pages_see_a_post_within_a_second_and_the_animation_ends_in_order(browser, site):
    for i, user in enumerate(["ann", "ben", "cat", "dan"]):
        site.post(user, 100 * (i + 1))
    site.register("viewer")
    pages = []
    for _ in range(2):
        context = browser.new_context()
        page = context.new_page()
        log_in(page, site.url, "viewer", next_path=f"/boards/{site.board}")
        wait_state(page, "live")
        pages.append(page)

    site.post("ann", 1000)  # last place jumps to first
    posted = time.monotonic()
    for page in pages:
        remaining_ms = LIVE_WITHIN_MS - 1000 * (time.monotonic() - posted)
        wait_row(page, "ann", 1000, timeout_ms=max(1, int(remaining_ms)))
    # Once the slide and the score's count-up have finished, every row sits in its place with
    # no transform left over, showing its final figure.
    for page in pages:
        page.wait_for_function(
            "() => ![...document.querySelectorAll('#top10 li')].some(r => "
            "r.classList.contains('moving') || r.style.transform || "
            "r.querySelector('.score').hasAttribute('data-counting'))",
            timeout=5000,
        )
        assert standings(page) == [
            ("1", "ann", "1,000"),
            ("2", "dan", "400"),
            ("3", "cat", "300"),
            ("4", "ben", "200"),
        ]
        boxes = [page.locator("#top10 li").nth(i).bounding_box()["y"] for i in range(4)]
        assert boxes == sorted(boxes)
    for page in pages:
        page.context.close()


def test_indicator_walks_live_reconnecting_live_across_a_restart(browser, tmp_path, site):
    site.post("ann", 10)
    page = browser.new_page()
    page.goto(site.board_url())
    log_in_page = page.url
    assert "/login" in log_in_page  # no token, no anonymous reads: the page leads to log-in
    site.register("viewer")
    log_in(page, site.url, "viewer", next_path=f"/boards/{site.board}")
    wait_state(page, "live")

    site.server.stop()
    page.wait_for_function(
        "() => /^reconnecting in \\d+s$/.test("
        "document.querySelector('#indicator .label').textContent)",
        timeout=10_000,
    )
    assert page.locator("#top10 li").count() == 1  # the last standings stay on screen

    site.server.start()  # same port, same database
    site.post("bob", 20)  # a change made while the page was away
    wait_state(page, "live", timeout_ms=30_000)
    wait_row(page, "bob", 20, timeout_ms=5000)

    fresh = browser.new_page(storage_state=page.context.storage_state())
    fresh.goto(site.board_url())
    assert standings(page) == standings(fresh)
    assert standings(page) == [("1", "bob", "20"), ("2", "ann", "10")]
    page.close()
    fresh.close()


def test_blocked_websocket_falls_back_to_polling_and_returns_to_live(browser, tmp_path):
    server = start_server(tmp_path, "--anonymous-read")
    try:
        site = Site(server)
        context = browser.new_context()
        page = context.new_page()
        blocked = {"on": True}

        def route(ws: Any) -> None:
            if blocked["on"]:
                ws.close()  # the handshake "succeeds" but the socket dies at once
            else:
                ws.connect_to_server()

        page.route_web_socket(re.compile(r".*/ws(\?.*)?$"), route)
        page.goto(site.board_url())
        wait_state(page, "polling", timeout_ms=20_000)

        site.post("ann", 77)
        wait_row(page, "ann", 77, timeout_ms=5000)
        assert indicator_state(page) == "polling"

        blocked["on"] = False
        wait_state(page, "live", timeout_ms=40_000)
        site.post("bob", 88)
        wait_row(page, "bob", 88, timeout_ms=LIVE_WITHIN_MS * 3)
        context.close()
    finally:
        server.stop()


def test_the_board_page_shows_the_standings_with_javascript_off(browser, site):
    site.post("ann", 1500)
    site.post("bob", 900)
    site.register("viewer")
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    log_in(page, site.url, "viewer", next_path=f"/boards/{site.board}")
    assert standings(page) == [("1", "ann", "1,500"), ("2", "bob", "900")]
    # The score form still works as a plain form post.
    page.fill("#score-input", "1200")
    page.click("#score-form button[type=submit]")
    page.wait_for_url(site.board_url())
    assert standings(page) == [("1", "ann", "1,500"), ("2", "viewer", "1,200"), ("3", "bob", "900")]
    context.close()


# -- accounts ---------------------------------------------------------------------------------


def test_register_log_out_and_log_in_again(browser, site):
    page = browser.new_page()
    page.goto(f"{site.url}/register?next=/boards/{site.board}")
    page.fill("#username", "newbie")
    page.fill("#display_name", "New Bie")
    page.fill("#password", PASSWORD)
    page.click("form.stack button[type=submit]")
    page.wait_for_url(site.board_url())
    assert "Signed in as New Bie" in page.locator(".whoami").inner_text()
    wait_state(page, "live")

    # A player posts through the page's own form, over the live connection.
    page.fill("#score-input", "321")
    page.click("#score-form button[type=submit]")
    page.wait_for_selector("#score-ok:has-text('Saved')")
    wait_row(page, "newbie", 321, timeout_ms=LIVE_WITHIN_MS)
    expect(page.locator("#you-line")).to_have_text(re.compile(r"^#1 of 1 · 321"))

    page.click("text=Log out")
    page.wait_for_url(site.url + "/")
    assert page.locator("a", has_text="Log in").count() >= 1
    page.goto(site.board_url())
    assert "/login" in page.url

    page.fill("#username", "newbie")
    page.fill("#password", "wrong password")
    page.click("form.stack button[type=submit]")
    assert "Wrong username or password" in page.locator(".form-error").inner_text()
    page.fill("#password", PASSWORD)
    page.click("form.stack button[type=submit]")
    page.wait_for_url(site.board_url())
    page.close()


def test_an_expired_token_leads_back_to_log_in_and_then_back(browser, site):
    site.register("viewer")
    context = browser.new_context()
    expired = jwt.encode({"sub": "viewer", "exp": int(time.time()) - 3600}, SECRET, "HS256")
    context.add_cookies([{"name": "scoreboard_token", "value": expired, "url": site.url}])
    page = context.new_page()
    page.goto(site.board_url())
    assert "/login" in page.url and "expired=1" in page.url
    assert "session expired" in page.locator(".notice").inner_text()
    page.fill("#username", "viewer")
    page.fill("#password", PASSWORD)
    page.click("form.stack button[type=submit]")
    page.wait_for_url(site.board_url())
    context.close()


def test_a_live_page_whose_token_is_refused_goes_to_log_in(browser, site):
    site.register("viewer")
    page = browser.new_page()
    refusing = {"on": False}

    def route(ws: Any) -> None:
        if refusing["on"]:
            ws.close(code=4401, reason="token expired")  # as the server closes an expired one
        else:
            ws.connect_to_server()

    page.route_web_socket(re.compile(r".*/ws(\?.*)?$"), route)
    log_in(page, site.url, "viewer", next_path=f"/boards/{site.board}")
    wait_state(page, "live")
    refusing["on"] = True
    site.server.stop()  # the page reconnects, and its next handshake is refused with 4401
    site.server.start()
    page.wait_for_url(re.compile(r".*/login\?next=%2Fboards%2Fquiz&expired=1$"), timeout=30_000)
    page.close()


# -- the organiser ----------------------------------------------------------------------------


def test_a_board_made_on_admin_appears_live_on_the_board_list(browser, server):
    create_admin(server, "boss")
    Site(server, board="existing").register("player")
    admin_page = browser.new_context().new_page()
    log_in(admin_page, server.base_url, "boss", next_path="/admin")
    player_page = browser.new_context().new_page()
    log_in(player_page, server.base_url, "player", next_path="/")
    assert player_page.locator(".board-card").count() == 1

    admin_page.fill("#new-id", "speedrun")
    admin_page.fill("#new-title", "Speed run")
    admin_page.select_option("#create-board select[name=order]", "asc")
    admin_page.select_option("#create-board select[name=score_format]", "duration_ms")
    admin_page.click("#create-board button[type=submit]")
    admin_page.wait_for_selector("#boards-table tr[data-board=speedrun]")

    player_page.wait_for_selector(".board-card[data-board=speedrun]", timeout=10_000)
    card = player_page.locator(".board-card[data-board=speedrun]")
    assert "Speed run" in card.inner_text()
    assert "Lowest score wins" in card.inner_text()

    # Edit, then delete, through the page.
    row = admin_page.locator("#boards-table tr[data-board=speedrun]")
    row.get_by_role("button", name="Edit").click()
    form = admin_page.locator(".edit-form")
    form.locator("input[name=title]").fill("Speed run, round 2")
    form.get_by_role("button", name="Save").click()
    admin_page.wait_for_selector("#boards-table a:has-text('Speed run, round 2')")
    status, body = server.request("GET", "/api/boards/speedrun", token=server.token("a", "admin"))
    assert status == 200
    assert (body["title"], body["score_format"]) == ("Speed run, round 2", "duration_ms")

    admin_page.once("dialog", lambda dialog: dialog.accept())
    admin_page.locator("#boards-table tr[data-board=speedrun]").get_by_role(
        "button", name="Delete"
    ).click()
    admin_page.wait_for_selector("#boards-table tr[data-board=speedrun]", state="detached")
    player_page.wait_for_selector(
        ".board-card[data-board=speedrun]", state="detached", timeout=10_000
    )
    admin_page.context.close()
    player_page.context.close()


def test_admin_removes_a_player_and_resets_a_board_while_a_player_watches(browser, server):
    create_admin(server, "boss")
    site = Site(server)
    site.register("viewer")
    for i, user in enumerate(["ann", "ben", "cat"]):
        site.post(user, 100 - i)
    site.post("cheater", 9999)
    viewer = browser.new_context().new_page()
    log_in(viewer, site.url, "viewer", next_path=f"/boards/{site.board}")
    wait_state(viewer, "live")
    assert [name for _, name, _ in standings(viewer)] == ["cheater", "ann", "ben", "cat"]

    admin_page = browser.new_context().new_page()
    log_in(admin_page, site.url, "boss", next_path="/admin")
    row = admin_page.locator(f"#boards-table tr[data-board={site.board}]")
    row.get_by_role("button", name="Manage").click()
    panel = admin_page.locator(".manage-row")
    panel.get_by_role("button", name="Remove cheater's entry").wait_for()
    admin_page.once("dialog", lambda dialog: dialog.accept())
    panel.get_by_role("button", name="Remove cheater's entry").click()
    # The viewer's live top 10 loses the row, without a reload.
    viewer.wait_for_selector("#top10 li[data-user=cheater]", state="detached", timeout=3000)
    assert [name for _, name, _ in standings(viewer)] == ["ann", "ben", "cat"]
    panel.get_by_role("button", name="Remove cheater's entry").wait_for(state="detached")

    admin_page.once("dialog", lambda dialog: dialog.accept())
    panel.get_by_role("button", name="Reset board…").click()
    panel.get_by_role("link", name="Season 1", exact=True).wait_for()
    expect(panel.get_by_role("link", name="Export Quiz night, season 1, as CSV")).to_have_attribute(
        "href", f"/admin/export/{site.board}?format=csv&season=1"
    )
    # The viewer's page empties and links the archive.
    viewer.wait_for_selector("#top10 li", state="detached", timeout=3000)
    expect(viewer.locator("#empty-board")).to_be_visible()
    expect(viewer.locator("#season-links a")).to_have_text(["Season 1"])
    # A fresh load of the board page says the same, and the archive holds the final ranks.
    viewer.goto(site.board_url())
    expect(viewer.locator("#empty-board")).to_be_visible()
    viewer.get_by_role("link", name="Season 1", exact=True).click()
    viewer.wait_for_url(re.compile(r"/seasons/1$"))
    names = viewer.locator("#season-rows .name").all_inner_texts()
    assert names == ["ann", "ben", "cat"]

    # The export link downloads the archived season's CSV with the organiser's cookie.
    with admin_page.expect_download() as download:
        panel.get_by_role("link", name="Export Quiz night, season 1, as CSV").click()
    lines = Path(download.value.path()).read_text().splitlines()
    assert lines[0] == "rank,user_id,name,score,score_display,subscore,updated_at"
    assert [line.split(",")[1] for line in lines[1:]] == ["ann", "ben", "cat"]
    admin_page.context.close()
    viewer.context.close()


def test_admin_page_is_refused_to_a_player(browser, site):
    site.register("player")
    page = browser.new_page()
    log_in(page, site.url, "player", next_path="/")
    response = page.goto(f"{site.url}/admin")
    assert response is not None and response.status == 403
    page.close()


# -- accessibility ----------------------------------------------------------------------------


def axe_violations(page: Any) -> list[dict[str, Any]]:
    page.add_script_tag(path=str(AXE_JS))
    result = page.evaluate("async () => await axe.run(document)")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:3]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def test_no_page_has_a_serious_or_critical_axe_violation(browser, server):
    if not AXE_JS.exists():
        missing_service(f"axe-core is not installed at {AXE_JS} (run npm ci)")
    create_admin(server, "boss")
    site = Site(server, score_format="duration_ms", order="asc")
    for i, user in enumerate(["ann", "ben", "cat", "dan", "eve", "fay", "gus"]):
        site.post(user, 60_000 + 1234 * i)
    past = Site(server, board="past", reset_schedule="weekly")
    for i, user in enumerate(["ann", "ben", "cat"]):
        past.post(user, 10 - i)
    assert server.request("POST", "/api/boards/past/reset", {}, past.admin)[0] == 200
    found = {}
    for scheme in ("light", "dark"):
        # bypass_csp: the pages allow no injected script, and axe is injected by the test.
        context = browser.new_context(
            color_scheme=scheme, viewport={"width": 1280, "height": 900}, bypass_csp=True
        )
        page = context.new_page()
        for path in ("/", "/login", "/register", "/nowhere"):
            page.goto(site.url + path)
            found[f"{scheme} {path}"] = axe_violations(page)
        log_in(page, site.url, "boss", next_path="/")
        site.post("boss", 61_000)
        for path in (
            "/",
            f"/boards/{site.board}",
            f"/boards/{site.board}?kiosk=1",
            "/boards/past",
            "/boards/past/seasons/1",
            "/admin",
        ):
            page.goto(site.url + path)
            page.wait_for_timeout(300)  # let the page's script draw its live parts
            found[f"{scheme} {path} (admin)"] = axe_violations(page)
        page.locator("#boards-table tr[data-board=past]").get_by_role(
            "button", name="Manage"
        ).click()
        page.locator(".manage-row .seasons a").first.wait_for()
        found[f"{scheme} /admin, a board's Manage panel open"] = axe_violations(page)
        context.close()
    assert {key: v for key, v in found.items() if v} == {}


# -- a second engine --------------------------------------------------------------------------


def test_firefox_over_webdriver_bidi_sees_a_live_update(tmp_path):
    if not Path(FIREFOX).exists():
        missing_service(f"firefox-esr is not installed at {FIREFOX}")
    node = shutil.which("node")
    if node is None or not (REPO / "node_modules" / "puppeteer-core").exists():
        missing_service("node and puppeteer-core (npm ci) are needed to drive Firefox")
    server = start_server(tmp_path, "--anonymous-read")
    try:
        site = Site(server)
        site.post("ann", 5)
        out = subprocess.run(
            [node, str(FIREFOX_SCRIPT), site.url, site.board, site.poster, "zoe"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        report = json.loads(out.stdout.strip().splitlines()[-1])
        assert report["ok"] and report["browser"].startswith("firefox/")
    finally:
        server.stop(signal.SIGTERM)


# -- through nginx, in front of a cluster -----------------------------------------------------


def test_a_page_through_nginx_stays_live_when_its_cluster_process_dies(
    browser, tmp_path, postgres_url, private_redis
):
    """docs/deploy/nginx.conf in front of three cluster processes: a person logs in and
    watches a board through nginx; the process holding the page's WebSocket is killed; the
    page reconnects through nginx to another process and shows the next score."""
    from nginx_process import NginxProcess, nginx_binary

    binary = nginx_binary()
    if binary is None:
        missing_service("nginx is not installed (Debian package nginx)")
    servers = [
        ServerProcess(
            postgres_url,
            tmp_path / f"server{i}.log",
            "--redis-url", private_redis.url,
            "--trusted-proxies", "127.0.0.1",
            "--shutdown-spread", "0.2",
        )
        for i in range(3)
    ]  # fmt: skip
    proxy = NginxProcess(binary, tmp_path / "nginx", [f"127.0.0.1:{s.port}" for s in servers])
    page = None
    try:
        for server in servers:
            server.start()
        proxy.start()
        site = Site(servers[0])
        site.register("viewer")
        site.post("ann", 10)
        page = browser.new_page()
        log_in(page, proxy.base_url, "viewer", next_path=f"/boards/{site.board}")
        wait_state(page, "live")
        wait_row(page, "ann", 10, timeout_ms=5000)

        site.post("bob", 20)  # posted to one process, seen through whichever holds the page
        wait_row(page, "bob", 20, timeout_ms=5000)

        holder = next(s for s in servers if _websockets(s) == 1)
        holder.stop(signal.SIGKILL)
        _post_through(proxy.base_url, site, "cat", 30)
        wait_row(page, "cat", 30, timeout_ms=30_000)
        wait_state(page, "live", timeout_ms=30_000)
        assert standings(page) == [("1", "cat", "30"), ("2", "bob", "20"), ("3", "ann", "10")]
    finally:
        if page is not None:
            page.close()
        proxy.stop()
        for server in servers:
            if server.process is not None:
                server.stop(signal.SIGKILL)


def _websockets(server: ServerProcess) -> int:
    """Open WebSocket connections of one process, from its own /metrics."""
    import urllib.request

    with urllib.request.urlopen(server.base_url + "/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("scoreboard_ws_connections "):
                return int(float(line.split()[1]))
    return 0


def _post_through(base_url: str, site: Site, user_id: str, score: int) -> None:
    """A score posted through nginx (with a key, so nginx may replay it on another process)."""
    import urllib.request
    import uuid

    request = urllib.request.Request(
        f"{base_url}/api/boards/{site.board}/scores",
        json.dumps({"user_id": user_id, "score": score}).encode(),
        {
            "Authorization": f"Bearer {site.poster}",
            "Content-Type": "application/json",
            "Idempotency-Key": uuid.uuid4().hex,
        },
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
