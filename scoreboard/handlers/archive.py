"""The pages of past seasons and of exports: an archived season's final standings, and the
export download behind the organiser's links (`/admin/export/{id}`).

Server-rendered only: an archive never changes, so these pages have no script of their own.
"""

from __future__ import annotations

from ..errors import NotFound
from .base import admin, reader
from .pages import PageHandler

SEASON_PAGE_ROWS = 100  # rows of an archived season per page


class SeasonPage(PageHandler):
    """`/boards/{id}/seasons/{n}`: an archived season's final standings, a page at a time."""

    @reader
    async def get(self, board_id: str, season: str) -> None:
        self.ensure_ready()
        if not season.isdigit() or int(season) < 1:
            raise NotFound(f"no season {season!r}")
        offset = self.get_query_argument("offset", "0")
        start = int(offset) if offset.isdigit() else 0
        answer = await self.service.season_leaderboard(
            board_id, int(season), limit=SEASON_PAGE_ROWS, offset=start
        )
        board = self.service.board(board_id).to_json()
        archived = (await self.service.seasons(board_id))["seasons"]
        user = {"user_id": self.identity.sub} if self.identity is not None else None
        self.render(
            "season.html",
            board=board,
            season=answer,
            entries=answer["entries"],
            archived=archived,
            user=user,
            offset=start,
            page_rows=SEASON_PAGE_ROWS,
        )


class AdminExport(PageHandler):
    """`/admin/export/{id}?format=csv|json&season=N`: the API's export as a download link.

    The JSON API takes only a bearer token, which a plain link cannot carry; this page route
    takes the log-in cookie (admin) and streams the very same export."""

    @admin
    async def get(self, board_id: str) -> None:
        from .api import export_params, stream_export

        self.ensure_ready()
        fmt, season = export_params(self)
        await stream_export(self, board_id, fmt, season)
