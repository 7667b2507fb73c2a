"""The JSON API (docs/api.md): each method parses, calls one service function, answers."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.exposition import choose_encoder
from tornado.iostream import StreamClosedError

from .. import export, schemas
from ..errors import ValidationFailed
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


def _season_number(text: str | None) -> int | None:
    """A season number, 1 or more (schemas.SEASON), from the path or the query; None if absent."""
    return schemas.SEASON.parse(lambda _: text).get("season")


class Player(BaseHandler):
    @reader
    def get(self, board_id: str, user_id: str) -> None:
        self.write_json(self.service.player(board_id, user_id))

    @admin
    async def delete(self, board_id: str, user_id: str) -> None:
        await self.service.remove_player(board_id, user_id)
        self.set_status(204)
        self.finish()


class Reset(BaseHandler):
    """Archive the standings as a season and start the next one empty."""

    @admin
    async def post(self, board_id: str) -> None:
        self.write_json(await self.service.reset_board(board_id))


class Seasons(BaseHandler):
    @reader
    async def get(self, board_id: str) -> None:
        self.write_json(await self.service.seasons(board_id))


class SeasonLeaderboard(BaseHandler):
    @reader
    async def get(self, board_id: str, season: str) -> None:
        number = _season_number(season)
        assert number is not None
        page = schemas.PAGE.parse(self.query_argument)
        answer = await self.service.season_leaderboard(
            board_id, number, limit=page["limit"], offset=page["offset"]
        )
        self.write_json(answer)


class Export(BaseHandler):
    """Every entry of the board or of an archived season, streamed as CSV or JSON."""

    @admin
    async def get(self, board_id: str) -> None:
        fmt, season = export_params(self)
        await stream_export(self, board_id, fmt, season)


def export_params(handler: Any) -> tuple[str, int | None]:
    """`format` (csv, the default, or json) and `season` of an export."""
    fmt = handler.get_query_argument("format", "csv")
    if fmt not in schemas.EXPORT_FORMATS:
        raise ValidationFailed(f"format must be csv or json, got {fmt!r}")
    return fmt, _season_number(handler.get_query_argument("season", None))


async def stream_export(handler: Any, board_id: str, fmt: str, season: int | None) -> None:
    """Write an export to `handler` a chunk at a time, flushing each (also used by /admin)."""
    service = handler.services.service
    archived = service.export_season(board_id, season)  # NotFound before any byte is sent
    state = service.board(board_id)
    number = state.season if archived is None else archived
    score_format = state.config.score_format
    handler.set_header("Content-Type", export.CONTENT_TYPES[fmt])
    handler.set_header(
        "Content-Disposition",
        f'attachment; filename="{export.filename(board_id, number, fmt)}"',
    )
    chunks = handler.services.store.entry_chunks(
        board_id, state.config.order, season=archived, chunk=export.CHUNK_ROWS
    )
    first = True
    try:
        async with contextlib.aclosing(chunks):
            if fmt == "csv":
                handler.write(export.csv_head())
            else:
                handler.write(
                    export.json_head(board_id, number, score_format, archived=archived is not None)
                )
            async for rows in chunks:
                if fmt == "csv":
                    handler.write(export.csv_chunk(rows, score_format))
                else:
                    handler.write(export.json_chunk(rows, score_format, first=first))
                first = False
                await handler.flush()
            if fmt == "json":
                handler.write(export.JSON_TAIL)
        handler.finish()
    except StreamClosedError:
        pass  # the client left: the read was closed above, nothing more to send


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


class AdminOnline(BaseHandler):
    """Who is connected to this process, with their connection count and boards."""

    @admin
    def get(self) -> None:
        self.write_json(self.services.hub.online())


class AdminUsers(BaseHandler):
    """Accounts, listed and created by an organiser (`run.py user list|create`)."""

    @admin
    async def get(self) -> None:
        page = schemas.USERS_PAGE.parse(self.query_argument)
        answer = await self.services.accounts.list_users(limit=page["limit"], offset=page["offset"])
        self.write_json(answer)

    @admin
    async def post(self) -> None:
        self.write_json(await self.services.accounts.create_account(self.json_body()), 201)


class AdminStats(BaseHandler):
    """Live figures of the WebSocket side (docs/api.md)."""

    @admin
    def get(self) -> None:
        self.write_json(self.services.hub.stats())
