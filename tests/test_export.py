"""Removing a player, exporting a board (CSV and JSON, current and archived seasons), and the
organiser's admin reads: who is online, the accounts."""

from __future__ import annotations

import asyncio
import csv
import io
import json

import pytest
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from scoreboard import export

pytestmark = pytest.mark.gen_test(timeout=60)


async def fill(api, board: str, scores: dict[str, int]) -> None:
    server = api.token("game", role="server")
    for user, score in scores.items():
        body = {"user_id": user, "score": score}
        answer = await api.post(f"/api/boards/{board}/scores", body, token=server)
        assert answer.status == 200, answer.body


async def live(api, token: str, board: str):
    request = HTTPRequest(
        f"{api.ws_url}?board={board}", headers={"Authorization": f"Bearer {token}"}
    )
    return await websocket_connect(request)


async def next_of(conn, kind: str, timeout: float = 3.0) -> dict:
    while True:
        frame = json.loads(await asyncio.wait_for(conn.read_message(), timeout))
        if frame["type"] == kind:
            return frame["data"]


# -- removing a player ---------------------------------------------------------------------


async def test_removing_a_player_is_durable_and_broadcast(make_api):
    api = await make_api(rank_update_delay=0.05)
    await api.make_board("b")
    await fill(api, "b", {"cheater": 999, "alice": 50, "bob": 40})
    cheater = await live(api, api.token("cheater"), "b")
    bob = await live(api, api.token("bob"), "b")
    watcher = await live(api, api.token("watcher"), "b")
    try:
        for conn in (cheater, bob, watcher):
            await next_of(conn, "snapshot")
        before = (await api.get("/api/boards/b", token=api.admin)).json["seq"]
        gone = await api.fetch("DELETE", "/api/boards/b/players/cheater", token=api.admin)
        assert gone.status == 204
        update = await next_of(watcher, "score_update")
        assert [e["user_id"] for e in update["top_10"]] == ["alice", "bob"]
        assert update["updated_user"]["user_id"] == "cheater"
        assert update["updated_user"]["rank"] is None
        assert update["seq"] > before
        told = await next_of(cheater, "rank_update")
        assert (told["rank"], told["previous_rank"], told["score"]) == (None, 1, None)
        moved = await next_of(bob, "rank_update")  # bob moved up from 3 to 2
        assert (moved["rank"], moved["previous_rank"]) == (2, 3)
    finally:
        for conn in (cheater, bob, watcher):
            conn.close()
    missing = await api.get("/api/boards/b/players/cheater", token=api.admin)
    assert missing.status == 404
    again = await api.fetch("DELETE", "/api/boards/b/players/cheater", token=api.admin)
    assert (again.status, again.json["code"]) == (404, "not_found")
    player = await api.fetch("DELETE", "/api/boards/b/players/alice", token=api.token("alice"))
    assert player.status == 403
    # Durable: the database no longer has the entry.
    fresh = await asyncio.get_running_loop().run_in_executor(
        None, api.services.service._read_board, "b"
    )
    assert fresh is not None and "cheater" not in fresh.ranks and len(fresh.ranks) == 2


async def test_a_removed_player_may_score_again(api):
    await api.make_board("b")
    await fill(api, "b", {"alice": 10, "bob": 20})
    assert (await api.fetch("DELETE", "/api/boards/b/players/bob", token=api.admin)).status == 204
    await fill(api, "b", {"bob": 5})
    board = (await api.get("/api/boards/b/leaderboard", token=api.admin)).json
    assert [(e["user_id"], e["score"]) for e in board["entries"]] == [("alice", 10), ("bob", 5)]


# -- export ----------------------------------------------------------------------------------


async def test_csv_export_parsed_back_equals_the_leaderboard(api):
    await api.make_board("laps", order="asc", score_format="duration_ms")
    scores = {f"p{i:03d}": 60_000 + (i * 7919) % 5000 for i in range(250)}
    await fill(api, "laps", scores)
    quoter = api.token("quoter", name='Quote "and", comma')
    answer = await api.post("/api/boards/laps/scores", {"score": 61_000}, token=quoter)
    assert answer.status == 200
    board = (await api.get("/api/boards/laps/leaderboard?limit=1000", token=api.admin)).json
    answer = await api.get("/api/boards/laps/export?format=csv", token=api.admin)
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("text/csv")
    assert 'filename="laps-season-1.csv"' in answer.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert list(rows[0]) == list(export.COLUMNS)
    assert len(rows) == board["total"] == 251
    for row, entry in zip(rows, board["entries"], strict=True):
        assert {
            "rank": int(row["rank"]),
            "user_id": row["user_id"],
            "name": row["name"],
            "score": int(row["score"]),
            "subscore": int(row["subscore"]),
            "updated_at": row["updated_at"],
        } == entry
    first = rows[0]
    assert first["score_display"] == "1:00.000" and first["score"] == "60000"


async def test_json_export_of_the_current_and_an_archived_season(api):
    await api.make_board("quiz", score_format="decimal:2")
    await fill(api, "quiz", {"alice": 1234, "bob": 99})
    live_entries = (await api.get("/api/boards/quiz/leaderboard", token=api.admin)).json["entries"]
    assert (await api.post("/api/boards/quiz/reset", {}, token=api.admin)).status == 200
    await fill(api, "quiz", {"carol": 5})

    archived = await api.get("/api/boards/quiz/export?format=json&season=1", token=api.admin)
    assert archived.status == 200
    body = archived.json
    assert (body["board"], body["season"], body["archived"]) == ("quiz", 1, True)
    assert [e["score_display"] for e in body["entries"]] == ["12.34", "0.99"]
    assert [{k: e[k] for k in live_entries[0]} for e in body["entries"]] == live_entries

    current = (await api.get("/api/boards/quiz/export?format=json", token=api.admin)).json
    assert (current["season"], current["archived"]) == (2, False)
    assert [e["user_id"] for e in current["entries"]] == ["carol"]
    named = (await api.get("/api/boards/quiz/export?format=json&season=2", token=api.admin)).json
    assert named == current
    empty = await api.get("/api/boards/nope/export", token=api.admin)
    assert empty.status == 404


async def test_export_refusals(api):
    await api.make_board("b")
    for query, status in [("format=xml", 422), ("season=0", 422), ("season=7", 404)]:
        answer = await api.get(f"/api/boards/b/export?{query}", token=api.admin)
        assert answer.status == status, query
        assert answer.headers["Content-Type"] == "application/problem+json"
    player = await api.get("/api/boards/b/export", token=api.token("p"))
    assert player.status == 403
    csv_empty = await api.get("/api/boards/b/export", token=api.admin)
    assert csv_empty.text.splitlines() == [",".join(export.COLUMNS)]
    assert (await api.get("/api/boards/b/export?format=json", token=api.admin)).json[
        "entries"
    ] == []


def test_export_chunks_render_each_row_alone():
    rows = [(1, "a", "A, the first", 62345, 0, 0.0), (2, "b", "B", -5, 1, 1.5)]
    assert export.csv_chunk(rows, "duration_ms") == (
        b'1,a,"A, the first",62345,1:02.345,0,1970-01-01T00:00:00.000Z\r\n'
        b"2,b,B,-5,-0:00.005,1,1970-01-01T00:00:01.500Z\r\n"
    )
    head = export.json_head("b", 3, "integer", archived=True)
    body = head + export.json_chunk(rows[:1], "integer", first=True)
    body += export.json_chunk(rows[1:], "integer", first=False) + export.JSON_TAIL
    parsed = json.loads(body)
    assert [e["score_display"] for e in parsed["entries"]] == ["62,345", "-5"]
    assert export.json_chunk([], "integer", first=False) == b""


# -- admin reads -----------------------------------------------------------------------------


async def test_who_is_online(api):
    await api.make_board("b")
    await api.make_board("c")
    one = await live(api, api.token("alice", name="Alice"), "b")
    two = await live(api, api.token("alice", name="Alice"), "c")
    three = await live(api, api.token("bob"), "b")
    try:
        for conn in (one, two, three):
            await next_of(conn, "snapshot")
        answer = await api.get("/api/admin/online", token=api.admin)
        assert answer.status == 200
        assert answer.json == {
            "users": [
                {"user_id": "alice", "name": "Alice", "connections": 2, "boards": ["b", "c"]},
                {"user_id": "bob", "name": "bob", "connections": 1, "boards": ["b"]},
            ],
            "anonymous": 0,
        }
        assert (await api.get("/api/admin/online", token=api.token("bob"))).status == 403
    finally:
        for conn in (one, two, three):
            conn.close()


async def test_admin_creates_and_lists_accounts(api):
    body = {"username": "judge", "password": "a long password", "role": "admin"}
    made = await api.post("/api/admin/users", body, token=api.admin)
    assert made.status == 201
    assert made.json == {"user_id": "judge", "name": "judge", "role": "admin"}
    again = await api.post("/api/admin/users", body, token=api.admin)
    assert again.status == 409
    short = await api.post("/api/admin/users", {**body, "password": "x"}, token=api.admin)
    assert short.status == 422
    login = await api.post("/api/auth/login", {"username": "judge", "password": body["password"]})
    assert login.json["user"]["role"] == "admin"
    listed = (await api.get("/api/admin/users", token=api.admin)).json
    assert listed["total"] == 1
    assert [(u["user_id"], u["role"], u["has_password"]) for u in listed["users"]] == [
        ("judge", "admin", True)
    ]
    assert (await api.get("/api/admin/users", token=api.token("p"))).status == 403
