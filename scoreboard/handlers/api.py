"""The JSON API (docs/api.md): each method parses, calls one service function, answers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.exposition import choose_encoder

from .. import schemas
from .base import BaseHandler, admin, authenticated, public, reader


class Metrics(BaseHandler):
    """The default registry in Prometheus text format, or OpenMetrics when the scraper asks."""

    @public
    def get(self) -> None:
        encode, content_type = choose_encoder(self.request.headers.get("Accept", ""))
        self.set_header("Content-Type", content_type)
        self.finish(encode(REGISTRY))


class Register(BaseHandler):
    @public
    async def post(self) -> None:
        answer = await self.services.accounts.register(
            self.json_body(), address=self.request.remote_ip or ""
        )
        self.write_json(answer, 201)


class Login(BaseHandler):
    @public
    async def post(self) -> None:
        answer = await self.services.accounts.login(
            self.json_body(), address=self.request.remote_ip or ""
        )
        self.write_json(answer)


class Me(BaseHandler):
    @authenticated
    def get(self) -> None:
        assert self.identity is not None
        self.write_json(self.service.me(self.identity))


class Boards(BaseHandler):
    @reader
    def get(self) -> None:
        self.write_json({"boards": self.service.list_boards()})

    @admin
    async def post(self) -> None:
        self.write_json(await self.service.create_board(self.json_body()), 201)


class Board(BaseHandler):
    @reader
    def get(self, board_id: str) -> None:
        self.write_json(self.service.ready_board(board_id).to_json())

    @admin
    async def patch(self, board_id: str) -> None:
        self.write_json(await self.service.update_board(board_id, self.json_body()))

    @admin
    async def delete(self, board_id: str) -> None:
        await self.service.delete_board(board_id)
        self.set_status(204)
        self.finish()


class Leaderboard(BaseHandler):
    @reader
    def get(self, board_id: str) -> None:
        query = schemas.PAGE.parse(self.query_argument)
        self.write_json(
            self.service.leaderboard(board_id, limit=query["limit"], offset=query["offset"])
        )


class Player(BaseHandler):
    @reader
    def get(self, board_id: str, user_id: str) -> None:
        self.write_json(self.service.player(board_id, user_id))


class Around(BaseHandler):
    @reader
    def get(self, board_id: str, user_id: str) -> None:
        query = schemas.AROUND.parse(self.query_argument)
        self.write_json(self.service.around(board_id, user_id, radius=query["radius"]))


class Scores(BaseHandler):
    @authenticated
    async def post(self, board_id: str) -> None:
        assert self.identity is not None
        result = await self.service.submit_score(
            self.identity,
            board_id,
            self.json_body(),
            idempotency_key=self.request.headers.get("Idempotency-Key"),
        )
        self.write_json(result)


class Updates(BaseHandler):
    """Long-poll for browsers without WebSocket: answers when `seq` passes `since`.

    The wait ends at once when the client goes away, and is left out of the HTTP histogram:
    a 25 s poll is not a 25 s answer, and would fill its `+Inf` bucket.
    """

    _waiting: asyncio.Task[Any] | None = None
    _waited_s = 0.0

    @reader
    async def get(self, board_id: str) -> None:
        query = schemas.UPDATES.parse(self.query_argument)
        started = time.monotonic()
        self._waiting = asyncio.ensure_future(
            self.service.wait_for_update(
                board_id, since=query["since"], timeout=query["timeout"], identity=self.identity
            )
        )
        try:
            answer = await self._waiting
        except asyncio.CancelledError:
            return  # on_connection_close: nobody is left to answer
        finally:
            self._waited_s = time.monotonic() - started
            self._waiting = None
        self.write_json(answer)

    def on_connection_close(self) -> None:
        if self._waiting is not None:
            self._waiting.cancel()

    def work_seconds(self) -> float:
        return max(0.0, self.request.request_time() - self._waited_s)


class AdminStats(BaseHandler):
    """Live figures of the WebSocket side (docs/api.md)."""

    @admin
    def get(self) -> None:
        self.write_json(self.services.hub.stats())
