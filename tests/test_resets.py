"""Seasons and resets end to end: schedules with a clock the test controls, restarts over a
boundary, a submission racing a reset, frozen archives, and what subscribers see."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from scoreboard.app import build_services
from scoreboard.auth import Identity, Role
from scoreboard.config import Settings

pytestmark = pytest.mark.gen_test(timeout=60)

SERVER = Identity(sub="game", role=Role.SERVER, name=None, exp=2**40)


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def iso(text: str) -> str:
    return datetime.fromisoformat(text).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class Clock:
    """Wall time the test sets; the service reads it and nothing else."""

    def __init__(self, text: str) -> None:
        self.now = ts(text)

    def set(self, text: str) -> None:
        self.now = ts(text)

    def __call__(self) -> float:
        return self.now


async def post(service, board: str, user: str, score: int, subscore: int = 0) -> dict:
    body = {"user_id": user, "score": score, "subscore": subscore}
    return await service.submit_score(SERVER, board, body)


async def all_entries(service, board: str, season: int | None = None) -> list[dict]:
    if season is None:
        return service.leaderboard(board, limit=1000, offset=0)["entries"]
    answer = await service.season_leaderboard(board, season, limit=1000, offset=0)
    return answer["entries"]


@pytest.mark.parametrize(
    ("schedule", "start", "just_before", "boundary", "following"),
    [
        ("daily", "2026-11-25 10:00", "2026-11-25 23:59:59.999", "2026-11-26", "2026-11-27"),
        ("weekly", "2026-11-25 10:00", "2026-11-29 23:59:59.999", "2026-11-30", "2026-12-07"),
        ("monthly", "2026-11-25 10:00", "2026-11-30 23:59:59.999", "2026-12-01", "2027-01-01"),
    ],
)
async def test_each_schedule_resets_at_its_utc_boundary(
    make_services, schedule, start, just_before, boundary, following
):
    services = await make_services()
    service = services.service
    service.clock = clock = Clock(start)
    board = await service.create_board({"id": "b", "title": "B", "reset_schedule": schedule})
    assert (board["season"], board["next_reset_at"]) == (1, iso(boundary))
    await post(service, "b", "alice", 10)
    await post(service, "b", "bob", 20)

    clock.set(just_before)
    await service.run_due_resets()
    assert service.board("b").to_json()["season"] == 1
    assert len(service.board("b").ranks) == 2

    clock.set(boundary)
    await service.run_due_resets()
    await service.run_due_resets()  # the same boundary never resets twice
    now = service.board("b").to_json()
    assert (now["season"], now["players"], now["next_reset_at"]) == (2, 0, iso(following))
    seasons = await service.seasons("b")
    assert seasons == {
        "board": "b",
        "current": 2,
        "seasons": [
            {
                "season": 1,
                "started_at": iso(start),
                "ended_at": iso(boundary),
                "players": 2,
                "reason": "scheduled",
            }
        ],
    }
    assert [(e["rank"], e["user_id"]) for e in await all_entries(service, "b", 1)] == [
        (1, "bob"),
        (2, "alice"),
    ]


async def test_a_schedule_set_mid_season_does_not_end_it_retroactively(make_services):
    services = await make_services()
    service = services.service
    service.clock = clock = Clock("2026-11-01 10:00")
    await service.create_board({"id": "b", "title": "B"})
    await post(service, "b", "alice", 1)
    clock.set("2026-11-25 10:00")
    changed = await service.update_board("b", {"reset_schedule": "daily"})
    assert changed["next_reset_at"] == iso("2026-11-26")
    await service.run_due_resets()
    assert service.board("b").season == 1
    clock.set("2026-11-26 00:00:01")
    await service.run_due_resets()
    assert service.board("b").season == 2


async def test_a_server_down_over_boundaries_resets_once_when_it_starts(tmp_path, io_loop):
    settings = Settings(database_url=f"sqlite:///{tmp_path}/r.db", jwt_secret="s" * 40)
    clock = Clock("2026-11-20 12:00")

    async def start():
        services = build_services(settings)
        services.store.start(asyncio.get_running_loop())
        services.service.clock = clock
        await services.service.load()
        return services

    first = await start()
    await first.service.create_board({"id": "b", "title": "B", "reset_schedule": "daily"})
    for n, user in enumerate(["alice", "bob", "carol"]):
        await post(first.service, "b", user, 100 - n)
    seq_before = first.service.board("b").ranks.seq
    first.store.close()

    clock.set("2026-11-25 15:00")  # five daily boundaries passed while it was down
    second = await start()
    state = second.service.board("b")
    assert (state.season, len(state.ranks)) == (2, 0)
    assert state.ranks.seq > seq_before
    assert state.to_json()["next_reset_at"] == iso("2026-11-26")
    listed = (await second.service.seasons("b"))["seasons"]
    assert [(s["season"], s["ended_at"], s["players"]) for s in listed] == [
        (1, iso("2026-11-25"), 3)
    ]
    await post(second.service, "b", "dave", 5)
    second.store.close()

    third = await start()  # the same day: nothing more is due
    assert third.service.board("b").season == 2
    assert [e["user_id"] for e in await all_entries(third.service, "b")] == ["dave"]
    assert len((await third.service.seasons("b"))["seasons"]) == 1
    third.store.close()


async def test_a_submission_racing_a_reset_lands_in_exactly_one_season(make_services):
    services = await make_services()
    service = services.service
    await service.create_board({"id": "b", "title": "B"})

    def as_player(user: str, score: int):
        # A player's own token with a name: applied at once, with no database read first.
        me = Identity(sub=user, role=Role.PLAYER, name=user.upper(), exp=2**40)
        return service.submit_score(me, "b", {"score": score})

    for round_ in range(3):
        # Posts in flight on both sides of the reset, and "racers" that first read the
        # player's account name from the database, so they are applied while the reset runs.
        before = [as_player(f"p{round_}-{i}", i) for i in range(10)]
        racers = [post(service, "b", f"r{round_}-{i}", i) for i in range(10)]
        after = [as_player(f"q{round_}-{i}", i) for i in range(10)]
        results = await asyncio.gather(*before, *racers, service.reset_board("b"), *after)
        reset = results[20]
        posts = [r for r in results if "user_id" in r]
        archived = {e["user_id"] for e in await all_entries(service, "b", reset["season"])}
        current = {e["user_id"] for e in await all_entries(service, "b")}
        assert archived.isdisjoint(current)
        assert archived | current == {r["user_id"] for r in posts}
        assert archived >= {f"p{round_}-{i}" for i in range(10)}
        assert current >= {f"q{round_}-{i}" for i in range(10)}
        # Which side a post landed on follows the order the server applied it in: every
        # archived post has a lower seq than every post of the new season.
        old = [r["seq"] for r in posts if r["user_id"] in archived]
        new = [r["seq"] for r in posts if r["user_id"] in current]
        assert max(old) < min(new)
        # The database agrees with memory: a reload reads the same seasons.
        await service.reset_board("b")
    fresh = await asyncio.get_running_loop().run_in_executor(None, service._read_board, "b")
    assert fresh is not None and fresh.season == 7 and len(fresh.ranks) == 0


async def test_archives_keep_exact_final_ranks_ties_and_names(api):
    await api.make_board("laps", order="asc", score_format="duration_ms")
    server = api.token("game", role="server")
    # Ties on (score, subscore) go to who reached the pair first, then the smaller user_id.
    for user, score, sub in [
        ("zed", 61000, 0),
        ("amy", 61000, 0),
        ("bob", 59000, 2),
        ("cat", 59000, 1),
        ("dan", 70000, 0),
    ]:
        body = {"user_id": user, "score": score, "subscore": sub}
        answer = await api.post("/api/boards/laps/scores", body, token=server)
        assert answer.status == 200
    live = (await api.get("/api/boards/laps/leaderboard?limit=100", token=api.admin)).json
    reset = await api.post("/api/boards/laps/reset", {}, token=api.admin)
    assert reset.status == 200
    assert reset.json == {"board": "laps", "season": 1, "current": 2}

    archived = await api.get("/api/boards/laps/seasons/1/leaderboard?limit=100", token=server)
    assert archived.status == 200
    assert archived.json["entries"] == live["entries"]
    assert [e["user_id"] for e in archived.json["entries"]] == ["cat", "bob", "zed", "amy", "dan"]
    assert (archived.json["board"], archived.json["season"], archived.json["total"]) == (
        "laps",
        1,
        5,
    )
    page = await api.get("/api/boards/laps/seasons/1/leaderboard?limit=2&offset=2", token=server)
    assert [e["rank"] for e in page.json["entries"]] == [3, 4]
    now = (await api.get("/api/boards/laps", token=server)).json
    assert (now["season"], now["players"], now["seq"] > live["seq"]) == (2, 0, True)

    missing = await api.get("/api/boards/laps/seasons/2/leaderboard", token=server)
    assert (missing.status, missing.json["code"]) == (404, "not_found")
    bad = await api.get("/api/boards/laps/seasons/zero/leaderboard", token=server)
    assert (bad.status, bad.json["code"]) == (422, "validation_failed")
    refused = await api.post("/api/boards/laps/reset", {}, token=server)
    assert (refused.status, refused.json["code"]) == (403, "forbidden")
    gone = await api.post("/api/boards/nope/reset", {}, token=api.admin)
    assert gone.status == 404


async def test_subscribers_get_a_fresh_snapshot_and_seq_keeps_growing(api):
    await api.make_board("b")
    server = api.token("game", role="server")
    await api.post("/api/boards/b/scores", {"user_id": "alice", "score": 5}, token=server)
    request = HTTPRequest(
        api.ws_url + "?board=b", headers={"Authorization": f"Bearer {api.token('alice')}"}
    )
    conn = await websocket_connect(request)
    try:
        frames = []
        while not frames or frames[-1]["type"] != "snapshot":
            frames.append(json.loads(await asyncio.wait_for(conn.read_message(), 3)))
        first = frames[-1]["data"]
        assert [e["user_id"] for e in first["top_10"]] == ["alice"]
        assert (await api.post("/api/boards/b/reset", {}, token=api.admin)).status == 200
        while True:
            frame = json.loads(await asyncio.wait_for(conn.read_message(), 3))
            if frame["type"] == "snapshot":
                break
        fresh = frame["data"]
        assert fresh["top_10"] == [] and fresh["you"] is None and fresh["total_players"] == 0
        assert fresh["seq"] > first["seq"]
        answer = await api.post(
            "/api/boards/b/scores", {"user_id": "bob", "score": 1}, token=server
        )
        assert answer.json["seq"] > fresh["seq"]
    finally:
        conn.close()


async def test_reset_schedule_values_are_checked(api):
    for schedule in ("never", "daily", "weekly", "monthly"):
        made = await api.make_board(f"b-{schedule}", reset_schedule=schedule)
        assert made["reset_schedule"] == schedule
        assert (made["next_reset_at"] is None) == (schedule == "never")
    bad = await api.post(
        "/api/boards", {"id": "x", "title": "X", "reset_schedule": "hourly"}, token=api.admin
    )
    assert (bad.status, bad.json["code"]) == (422, "validation_failed")
