"""Accounts end to end (docs/api.md#accounts): registration rules, log-in, password hashes."""

from __future__ import annotations

import base64
import hashlib
import sqlite3
from pathlib import Path

import pytest

from scoreboard import auth
from scoreboard.tables import UserRow

pytestmark = pytest.mark.gen_test(timeout=30)


def scrypt_hash(password: str, n: int) -> str:
    salt = b"0123456789abcdef"
    key = hashlib.scrypt(password.encode(), salt=salt, n=n, r=8, p=1, dklen=32, maxmem=2**30)
    return f"scrypt${n}$8$1${base64.b64encode(salt).decode()}${base64.b64encode(key).decode()}"


def stored_hash(api, user_id: str) -> str:
    path = Path(api.services.settings.database_url.removeprefix("sqlite:///"))
    with sqlite3.connect(path) as db:
        return db.execute("SELECT password_hash FROM users WHERE id = ?", (user_id,)).fetchone()[0]


@pytest.mark.parametrize("n", [2**17, 2**12])
async def test_a_hash_of_another_cost_logs_in_and_is_rehashed_at_todays(api, n):
    old = scrypt_hash("correct horse", n)
    api.services.store.create_user_sync(UserRow("erin", "Erin", "player", old))
    login = await api.post("/api/auth/login", {"username": "erin", "password": "correct horse"})
    assert login.status == 200, login.body
    new = stored_hash(api, "erin")
    assert new != old and not auth.needs_rehash(new)
    assert auth.verify_password("correct horse", new)
    again = await api.post("/api/auth/login", {"username": "erin", "password": "correct horse"})
    assert again.status == 200
    assert stored_hash(api, "erin") == new  # today's cost: not re-hashed again
    wrong = await api.post("/api/auth/login", {"username": "erin", "password": "wrong horse"})
    assert wrong.status == 401


async def register(api, username: str, **extra) -> int:
    body = {"username": username, "password": "correct horse", **extra}
    return (await api.post("/api/auth/register", body)).status


async def test_closed_registration_is_forbidden(make_api):
    api = await make_api(registration="closed")
    response = await api.post("/api/auth/register", {"username": "a", "password": "12345678"})
    assert response.status == 403
    assert response.json["code"] == "forbidden"
    # Accounts made by `user create` (and outside tokens) still work: only sign-up is shut.
    api.services.store.create_user_sync(
        UserRow("boss", "Boss", "admin", auth.hash_password("pw-pw-pw-pw"))
    )
    login = await api.post("/api/auth/login", {"username": "boss", "password": "pw-pw-pw-pw"})
    assert login.status == 200


async def test_registrations_are_limited_per_address(make_api):
    api = await make_api(registration_rate=0.01, registration_burst=3)
    assert [await register(api, f"p{i}") for i in range(3)] == [201, 201, 201]
    limited = await api.post("/api/auth/register", {"username": "p9", "password": "12345678"})
    assert limited.status == 429
    assert limited.json["code"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) >= 1


async def test_usernames_are_unique_whatever_their_case_and_keep_their_display_form(api):
    assert await register(api, "alice") == 201
    assert await register(api, "Alice") == 409
    assert await register(api, "ALICE") == 409
    assert await register(api, "Bob") == 201
    assert await register(api, "bob") == 409
    # The account keeps the form it registered with; log-in takes any case of it.
    login = await api.post("/api/auth/login", {"username": "BOB", "password": "correct horse"})
    assert login.status == 200, login.body
    assert login.json["user"]["user_id"] == "Bob"


async def test_a_user_id_already_on_a_board_cannot_be_registered(api):
    await api.make_board("b")
    feeder = api.token("feeder", role="server")
    for user_id in ("admin", "Carol"):  # players known only from outside tokens
        posted = await api.post(
            "/api/boards/b/scores", {"score": 1, "user_id": user_id}, token=feeder
        )
        assert posted.status == 200
    for taken in ("admin", "ADMIN", "carol", "Carol"):
        response = await api.post(
            "/api/auth/register", {"username": taken, "password": "correct horse"}
        )
        assert response.status == 409, taken
        assert response.json["code"] == "conflict"
    assert await register(api, "dave") == 201


async def test_a_server_score_keeps_the_accounts_display_name(api):
    await api.make_board("b")
    assert await register(api, "dave", display_name="Dave D") == 201
    feeder = api.token("feeder", role="server")
    # No entry of dave's on this board yet, and the server token names nobody.
    posted = await api.post("/api/boards/b/scores", {"score": 5, "user_id": "dave"}, token=feeder)
    assert posted.status == 200
    board = await api.get("/api/boards/b/leaderboard", token=feeder)
    assert [e["name"] for e in board.json["entries"]] == ["Dave D"]
    login = await api.post("/api/auth/login", {"username": "dave", "password": "correct horse"})
    assert login.json["user"]["name"] == "Dave D"
