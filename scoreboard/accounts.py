"""Accounts: register, log in, and the stored password hashes behind them.

Kept apart from the score use cases in service.py: an account is a name and a password hash in
the users table, a token is what it yields. Hashing runs on an executor (scrypt costs tens of
milliseconds of CPU); the store runs the SQL.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from . import schemas
from .auth import (
    DUMMY_PASSWORD_HASH,
    Role,
    TokenCodec,
    hash_password,
    needs_rehash,
    verify_password,
)
from .config import Settings
from .errors import AuthFailed, Forbidden, RateLimited
from .limits import KeyedLimiter, SharedLimiter
from .store import Store
from .tables import UserRow

log = logging.getLogger(__name__)


class Accounts:
    """Registration and log-in over the users table; answers carry a fresh token."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        tokens: TokenCodec,
        *,
        require_ready: Callable[[], None] = lambda: None,
        monotonic: Callable[[], float] = time.monotonic,
        shared_login_limiter: SharedLimiter | None = None,
        shared_registration_limiter: SharedLimiter | None = None,
    ) -> None:
        self._require_ready = require_ready  # a registration is a write: not while not ready
        self.settings = settings
        self.store = store
        self.tokens = tokens
        self._monotonic = monotonic
        self._login_limiter = KeyedLimiter(settings.login_rate, settings.login_burst)
        self._register_limiter = KeyedLimiter(
            settings.registration_rate, settings.registration_burst
        )
        # Cluster mode: the per-address limits hold across processes.
        self._shared_login_limiter = shared_login_limiter
        self._shared_register_limiter = shared_registration_limiter

    async def register(self, body: dict[str, Any], *, address: str) -> dict[str, Any]:
        """Create a player account (201 body): `{access_token, token_type, expires_in, user}`.

        403 under `--registration closed`; 429 past the per-address rate, counted before the
        password is hashed, which is the cost worth limiting; 409 for a name taken in any case.
        """
        if self.settings.registration == "closed":
            raise Forbidden("registration is closed on this server")
        self._require_ready()
        clean = schemas.REGISTER.check(body)
        username, password = clean["username"], clean["password"]
        display_name = clean.get("display_name") or username
        wait = await self._take(self._register_limiter, self._shared_register_limiter, address)
        if wait > 0:
            raise RateLimited("too many registrations from this address", retry_after=wait)
        loop = asyncio.get_running_loop()
        encoded = await loop.run_in_executor(None, hash_password, password)
        user = UserRow(
            id=username, name=display_name, role=Role.PLAYER.value, password_hash=encoded
        )
        await self.store.create_user(user)
        return self._token_answer(user)

    async def login(self, body: dict[str, Any], *, address: str) -> dict[str, Any]:
        """Check a username and password; 401 alike for a wrong password and an unknown name."""
        clean = schemas.LOGIN.check(body)
        wait = await self._take(self._login_limiter, self._shared_login_limiter, address)
        if wait > 0:
            raise RateLimited("too many login attempts from this address", retry_after=wait)
        username, password = clean["username"], clean["password"]
        if len(password) > schemas.MAX_PASSWORD_LENGTH:
            raise AuthFailed("wrong username or password")
        known = schemas.is_identifier(username)
        user = await self.store.get_account(username) if known else None
        # Verify against a dummy hash when there is no such user, so that the answer takes the
        # same time and says the same thing whether or not the name exists.
        encoded = user.password_hash if user is not None and user.password_hash else None
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(
            None, verify_password, password, encoded or DUMMY_PASSWORD_HASH
        )
        if not ok or encoded is None or user is None:
            raise AuthFailed("wrong username or password")
        if needs_rehash(encoded):
            await self._rehash(user, password, encoded)
        return self._token_answer(user)

    async def _take(self, local: KeyedLimiter, shared: SharedLimiter | None, address: str) -> float:
        """A token from `address`'s bucket: the cluster's when there is one (seconds to wait)."""
        if shared is not None:
            return await shared.take(address)
        return local.take(address, self._monotonic())

    async def _rehash(self, user: UserRow, password: str, old: str) -> None:
        """Store the password again at today's cost; a failure only postpones it."""
        try:
            new = await asyncio.get_running_loop().run_in_executor(None, hash_password, password)
            await self.store.replace_password_hash(user.id, old, new)
        except Exception as exc:  # the log-in itself succeeded; try again at the next one
            log.warning("re-hashing the password of %s failed: %s", user.id, exc)

    async def create_account(self, body: dict[str, Any]) -> dict[str, Any]:
        """An account made by an organiser, with any role (`run.py user create` on a running
        server): `{user_id, name, role}`; 409 for a name taken in any case. Not subject to
        `--registration closed`, which is about strangers signing themselves up."""
        self._require_ready()
        clean = schemas.ACCOUNT.check(body)
        username, password, role = clean["username"], clean["password"], clean["role"]
        name = clean.get("display_name") or username
        encoded = await asyncio.get_running_loop().run_in_executor(None, hash_password, password)
        await self.store.create_user(
            UserRow(id=username, name=name, role=role, password_hash=encoded)
        )
        return {"user_id": username, "name": name, "role": role}

    async def list_users(self, *, limit: int, offset: int) -> dict[str, Any]:
        """`{total, users}`: a page of every user by id, without password hashes."""
        self._require_ready()
        total, rows = await self.store.list_users(offset=offset, limit=limit)
        return {"total": total, "users": rows}

    def _token_answer(self, user: UserRow) -> dict[str, Any]:
        role = Role(user.role)
        token = self.tokens.issue(user.id, role=role, name=user.name)
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": self.settings.token_ttl,
            "user": {"user_id": user.id, "name": user.name, "role": role.value},
        }
