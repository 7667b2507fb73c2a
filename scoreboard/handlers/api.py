"""The JSON API (docs/api.md): each method parses, calls one service function, answers."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from tornado.http1connection import HTTP1Connection

from .. import schemas
from .base import BaseHandler, admin, authenticated, public, reader


class Metrics(BaseHandler):
    """Prometheus text format of the default registry."""

    @public
    def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(generate_latest(REGISTRY))


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
    """Long-poll for browsers without WebSocket: answers when `seq` passes `since`."""

    @reader
    async def get(self, board_id: str) -> None:
        query = schemas.UPDATES.parse(self.query_argument)
        answer = await self.service.wait_for_update(
            board_id, since=query["since"], timeout=query["timeout"], identity=self.identity
        )
        connection = self.request.connection
        if isinstance(connection, HTTP1Connection) and connection.stream.closed():
            return  # the client left while it waited: nobody to answer
        self.write_json(answer)


class AdminStats(BaseHandler):
    """Live figures of the WebSocket side (docs/api.md)."""

    @admin
    def get(self) -> None:
        self.write_json(self.services.hub.stats())
