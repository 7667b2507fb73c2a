"""Regenerates the screenshots in docs/screenshots/: every page at a phone's and a TV's width.

    .venv/bin/python docs/screenshots.py

Starts its own server on a free port over a throw-away SQLite file, fills a quiz board and a
speed-run board with players, and photographs the pages in Debian's Chromium (headless).
Needs the dev requirements (`make test` installs them) and /usr/bin/chromium.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from playwright.sync_api import sync_playwright  # noqa: E402
from server_process import ServerProcess  # noqa: E402

OUT = REPO / "docs" / "screenshots"
PASSWORD = "correct horse battery"
SIZES = {"phone": (360, 780), "tv": (1920, 1080)}
PLAYERS = [
    ("olivia", "Olivia Park", 1881, 61_204),
    ("niaj", "Niaj", 1744, 63_117),
    ("mallory", "Mallory", 1607, 58_930),
    ("judy", "Judy Hopps", 1470, 66_234),
    ("ivan", "Ivan", 1333, 69_351),
    ("heidi", "Heidi", 1196, 72_468),
    ("grace", "Grace Hopper", 1059, 75_585),
    ("frank", "Frank", 922, 78_702),
    ("eve", "Eve", 785, 81_819),
    ("dmitri", "Dmitri Kuznetsov-Lebedev", 648, 84_936),
    ("carol", "Carol", 511, 88_053),
    ("bob", "Bob", 374, 91_170),
]
VIEWER = "heidi"
# A function, not an expression: Playwright evals expressions in the page, which its CSP forbids.
LIVE = "() => document.querySelector('#indicator').dataset.state === 'live'"


def seed(server: ServerProcess) -> None:
    admin = server.token("admin", "admin")
    for board in (
        {"id": "quiz", "title": "Friday quiz night", "reset_schedule": "weekly"},
        {"id": "speedrun", "title": "Speed run, level 1", "order": "asc"},
    ):
        if board["id"] == "speedrun":
            board["score_format"] = "duration_ms"
        assert server.request("POST", "/api/boards", board, admin)[0] == 201
    tokens = []
    for user_id, name, _, _ in PLAYERS:
        body = {"username": user_id, "password": PASSWORD, "display_name": name}
        status, answer = server.request("POST", "/api/auth/register", body)
        assert status == 201, answer
        tokens.append(answer["access_token"])
    # Last week's round, archived as season 1, then tonight's.
    for round_ in (1, 2):
        for token, (_, _, points, millis) in zip(tokens, PLAYERS, strict=True):
            if round_ == 1:
                points, millis = (points * 7) % 1900, millis + (points * 13) % 9000
            for board, score in (("quiz", points), ("speedrun", millis)):
                path = f"/api/boards/{board}/scores"
                assert server.request("POST", path, {"score": score}, token)[0] == 200
        if round_ == 1:
            for board in ("quiz", "speedrun"):
                assert server.request("POST", f"/api/boards/{board}/reset", {}, admin)[0] == 200
    subprocess.run(
        # Through the running server: run.py finds it by the database lock and its --port.
        server.command(
            "--port",
            str(server.port),
            "user",
            "create",
            "boss",
            "--role",
            "admin",
            "--name",
            "Organiser",
        ),
        input=PASSWORD,
        text=True,
        check=True,
        cwd=REPO,
        capture_output=True,
    )


def log_in(page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("form.stack button[type=submit]")
    page.wait_for_url(f"{base_url}/")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(f"sqlite:///{tmp}/shots.db", Path(tmp) / "server.log").start()
        try:
            seed(server)
            shoot(server.base_url)
        finally:
            server.stop()


def shoot(base_url: str) -> None:
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        for size, (width, height) in SIZES.items():
            context = browser.new_context(viewport={"width": width, "height": height})
            page = context.new_page()
            page.goto(f"{base_url}/login")
            page.screenshot(path=OUT / f"login-{size}.png")
            log_in(page, base_url, VIEWER)
            page.screenshot(path=OUT / f"index-{size}.png", full_page=True)
            page.goto(f"{base_url}/boards/quiz")
            page.wait_for_function(LIVE)
            page.wait_for_timeout(800)  # the rank card's neighbours arrive after the snapshot
            page.screenshot(path=OUT / f"board-{size}.png", full_page=True)
            page.goto(f"{base_url}/boards/speedrun?kiosk=1")
            page.wait_for_function(LIVE)
            page.screenshot(path=OUT / f"kiosk-{size}.png")
            page.goto(f"{base_url}/boards/speedrun/seasons/1")
            page.screenshot(path=OUT / f"season-{size}.png", full_page=True)
            context.close()

            context = browser.new_context(viewport={"width": width, "height": height})
            page = context.new_page()
            log_in(page, base_url, "boss")
            page.goto(f"{base_url}/admin")
            page.wait_for_timeout(4500)  # a few samples of the live figures
            page.screenshot(path=OUT / f"admin-{size}.png", full_page=True)
            page.click("tr[data-board=speedrun] button.manage")
            page.wait_for_selector(".manage-row .player-list li")
            page.screenshot(path=OUT / f"admin-manage-{size}.png", full_page=True)
            context.close()
        browser.close()
    print(f"screenshots written to {OUT}")


if __name__ == "__main__":
    main()
