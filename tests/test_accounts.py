"""Accounts end to end (SPEC sections 1, 2 and 4): registration rules, log-in, password hashes."""

from __future__ import annotations

import base64
import hashlib
import sqlite3
from pathlib import Path

import pytest

from scoreboard import auth
from scoreboard.store import UserRow

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
