"""The HTTP API (docs/api.md), through a real server on a free port (pytest-tornado)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import shutil
import subprocess
import time

import jwt
import pytest
import sqlalchemy as sa
from conftest import missing_service
from helpers import delta

from scoreboard import app as app_module
from scoreboard.auth import Identity, Role
from scoreboard.errors import NotFound
from scoreboard.handlers.base import BaseHandler

pytestmark = pytest.mark.gen_test(timeout=30)

SECRET = "s" * 40  # the test servers' HS256 key


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status == status, response.body
    assert response.headers["Content-Type"] == "application/problem+json"
    body = response.json
    assert body["status"] == status
    assert body["code"] == code
    assert set(body) >= {"type", "title", "status", "detail", "code"}
    assert "Traceback" not in response.text
    return body


# -- health, metadata, routing ------------------------------------------------------------


async def test_health_ready_and_metrics(api):
    assert (await api.get("/healthz")).json == {"status": "ok"}
    assert (await api.get("/readyz")).json == {"status": "ready"}
    metrics = await api.get("/metrics")
    assert metrics.status == 200
    assert "process_resident_memory_bytes" in metrics.text
    assert "scoreboard_http_request_duration_seconds_bucket" in metrics.text


async def test_metrics_pass_promtool(api):
    promtool = shutil.which("promtool")
    if promtool is None:
        missing_service("promtool (Debian package prometheus) is not installed")
    await api.make_board("promtool-board")
    await api.post("/api/boards/promtool-board/scores", {"score": 1}, token=api.token("p1"))
    text = (await api.get("/metrics")).body
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


async def test_readyz_is_503_until_boards_are_loaded(unloaded_api):
    body = assert_problem(await unloaded_api.get("/readyz"), 503, "not_ready")
    assert "loading" in body["detail"]


async def test_readyz_503_during_start_up_is_not_logged_as_an_error(unloaded_api, caplog):
    caplog.set_level(logging.INFO)
    assert (await unloaded_api.get("/readyz")).status == 503
    assert (await unloaded_api.fetch("HEAD", "/readyz")).status == 503
    assert [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []
    access = [r for r in caplog.records if r.name == "scoreboard.access"]
    assert [r.levelname for r in access] == ["INFO", "INFO"]


async def test_unknown_path_is_problem_404(api):
    assert_problem(await api.get("/api/nothing-here", token=api.admin), 404, "not_found")


async def test_openapi_matches_the_route_table(api):
    doc = (await api.get("/api/openapi.json")).json
    assert doc["openapi"].startswith("3.1")
    routed = {}
    for template, handler in app_module.ROUTES:
        if not template.startswith("/api"):
            continue
        methods = {
            m
            for m in ("get", "post", "patch", "delete", "put")
            if getattr(handler, m) is not getattr(BaseHandler, m, None)
            and getattr(getattr(handler, m), "auth_rule", None)
        }
        routed[template] = methods
    documented = {path: set(ops) for path, ops in doc["paths"].items()}
    assert documented == routed


def test_every_handler_method_states_its_auth_rule():
    for _, handler in app_module.ROUTES:
        for name in ("get", "post", "patch", "delete", "put"):
            method = getattr(handler, name)
            if method is getattr(BaseHandler, name, None) or name not in vars(handler):
                continue
            assert getattr(method, "auth_rule", None), f"{handler.__name__}.{name} has no rule"


# -- auth -----------------------------------------------------------------------------------


async def test_token_problems_are_401(api):
    now = int(time.time())
    good = {"sub": "alice", "exp": now + 60}
    cases = {
        "alg none": _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(good) + ".",
        "wrong key": jwt.encode(good, "x" * 40, algorithm="HS256"),
        "expired": jwt.encode({"sub": "alice", "exp": now - 120}, SECRET, algorithm="HS256"),
        "no exp": jwt.encode({"sub": "alice"}, SECRET, algorithm="HS256"),
        "garbage": "not.a.token",
    }
    for label, token in cases.items():
        response = await api.get("/api/me", token=token)
        code = "token_expired" if label == "expired" else "auth_failed"
        assert_problem(response, 401, code)
    assert_problem(await api.get("/api/me"), 401, "auth_failed")
    response = await api.fetch("GET", "/api/me", headers={"Authorization": "Basic abc"})
    assert_problem(response, 401, "auth_failed")


async def test_issuer_and_audience_are_checked_when_configured(make_api):
    api = await make_api(jwt_issuer="https://issuer.example", jwt_audience="scoreboard")
    now = int(time.time())
    base = {"sub": "alice", "exp": now + 60}
    wrong_iss = jwt.encode({**base, "iss": "other", "aud": "scoreboard"}, SECRET)
    wrong_aud = jwt.encode({**base, "iss": "https://issuer.example", "aud": "x"}, SECRET)
    missing = jwt.encode(base, SECRET)
    right = jwt.encode({**base, "iss": "https://issuer.example", "aud": "scoreboard"}, SECRET)
    for token in (wrong_iss, wrong_aud, missing):
        assert_problem(await api.get("/api/me", token=token), 401, "auth_failed")
    assert (await api.get("/api/me", token=right)).status == 200


async def test_register_login_and_me(api):
    created = await api.post(
        "/api/auth/register",
        {"username": "carol", "password": "correct horse", "display_name": "Carol"},
    )
    assert created.status == 201
    assert created.json["token_type"] == "Bearer"
    assert created.json["user"] == {"user_id": "carol", "name": "Carol", "role": "player"}
    assert created.json["expires_in"] == 86400
    taken = await api.post("/api/auth/register", {"username": "carol", "password": "12345678"})
    assert_problem(taken, 409, "conflict")
    short = await api.post("/api/auth/register", {"username": "dave", "password": "short"})
    assert_problem(short, 422, "validation_failed")

    login = await api.post("/api/auth/login", {"username": "carol", "password": "correct horse"})
    assert login.status == 200
    token = login.json["access_token"]
    me = await api.get("/api/me", token=token)
    assert me.json == {"user_id": "carol", "name": "Carol", "role": "player", "boards": []}

    wrong = await api.post("/api/auth/login", {"username": "carol", "password": "wrong pass"})
    nobody = await api.post("/api/auth/login", {"username": "nobody", "password": "wrong pass"})
    assert assert_problem(wrong, 401, "auth_failed") == assert_problem(nobody, 401, "auth_failed")


async def test_login_attempts_are_limited_per_address(make_api):
    api = await make_api(login_rate=0.01, login_burst=3)
    body = {"username": "x", "password": "whatever1"}
    statuses = [(await api.post("/api/auth/login", body)).status for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    limited = await api.post("/api/auth/login", body)
    assert_problem(limited, 429, "rate_limited")
    assert int(limited.headers["Retry-After"]) >= 1


# -- boards ---------------------------------------------------------------------------------


async def test_board_lifecycle_and_admin_rules(api):
    body = {"id": "weekly-quiz", "title": "Weekly quiz"}
    created = await api.post("/api/boards", body, token=api.admin)
    assert created.status == 201
    assert created.json == {
        "id": "weekly-quiz",
        "title": "Weekly quiz",
        "order": "desc",
        "operator": "best",
        "min_score": None,
        "max_score": None,
        "player_submissions": True,
        "reset_schedule": "never",
        "score_format": "integer",
        "season": 1,
        "next_reset_at": None,
        "players": 0,
        "seq": 0,
    }
    assert_problem(await api.post("/api/boards", body, token=api.admin), 409, "conflict")
    assert_problem(await api.post("/api/boards", body, token=api.token("p1")), 403, "forbidden")
    assert_problem(
        await api.post("/api/boards", {"id": "x"}, token=api.admin), 422, "validation_failed"
    )
    listed = await api.get("/api/boards", token=api.token("p1"))
    assert [b["id"] for b in listed.json["boards"]] == ["weekly-quiz"]

    patched = await api.patch(
        "/api/boards/weekly-quiz", {"title": "Quiz", "max_score": 100}, token=api.admin
    )
    assert patched.status == 200
    assert (patched.json["title"], patched.json["max_score"]) == ("Quiz", 100)
    bad_patch = await api.patch("/api/boards/weekly-quiz", {"order": "asc"}, token=api.admin)
    assert_problem(bad_patch, 422, "validation_failed")
    inverted = await api.patch("/api/boards/weekly-quiz", {"min_score": 500}, token=api.admin)
    assert_problem(inverted, 422, "validation_failed")

    deleted = await api.fetch("DELETE", "/api/boards/weekly-quiz", token=api.admin)
    assert deleted.status == 204
    assert_problem(await api.get("/api/boards/weekly-quiz", token=api.admin), 404, "not_found")


async def test_anonymous_read_allows_reads_but_never_writes(make_api):
    closed = await make_api()
    assert_problem(await closed.get("/api/boards"), 401, "auth_failed")
    api = await make_api(anonymous_read=True)
    await api.make_board("open")
    assert (await api.get("/api/boards")).status == 200
    assert (await api.get("/api/boards/open/leaderboard")).status == 200
    assert_problem(await api.post("/api/boards/open/scores", {"score": 1}), 401, "auth_failed")


# -- request bodies -------------------------------------------------------------------------


async def test_body_rules_415_413_400(api):
    await api.make_board("b")
    token = api.token("p1")
    plain = await api.fetch(
        "POST",
        "/api/boards/b/scores",
        body=b'{"score": 1}',
        token=token,
        headers={"Content-Type": "text/plain"},
    )
    assert_problem(plain, 415, "unsupported_media_type")
    huge = {"score": 1, "metadata": {"pad": "x" * 20_000}}
    assert_problem(await api.post("/api/boards/b/scores", huge, token=token), 413, "too_large")
    very_huge = b'{"score": 1, "pad": "' + b"x" * 300_000 + b'"}'
    response = await api.fetch("POST", "/api/boards/b/scores", body=very_huge, token=token)
    assert_problem(response, 413, "too_large")
    malformed = await api.fetch("POST", "/api/boards/b/scores", body=b'{"score": ', token=token)
    assert_problem(malformed, 400, "bad_request")
    not_object = await api.fetch("POST", "/api/boards/b/scores", body=b"[1, 2]", token=token)
    assert_problem(not_object, 400, "bad_request")


@pytest.mark.parametrize(
    "body",
    [
        {"score": 1.5},
        {"score": True},
        {"score": False},
        {"score": "10"},
        {"score": None},
        {"score": 2**53},
        {"score": -(2**53)},
        {"score": 1, "subscore": 0.5},
        {"score": 1, "subscore": 2**53},
        {"score": 1, "color": "red"},
        {"score": 1, "metadata": "x"},
        {"score": 1, "metadata": {"pad": "y" * 1100}},
        {"subscore": 1},
    ],
)
async def test_bad_numbers_and_fields_are_422_and_change_nothing(api, body):
    await api.make_board("b")
    response = await api.post("/api/boards/b/scores", body, token=api.token("p1"))
    assert_problem(response, 422, "validation_failed")
    board = await api.get("/api/boards/b", token=api.admin)
    assert (board.json["players"], board.json["seq"]) == (0, 0)


async def test_largest_safe_integers_are_accepted(api):
    await api.make_board("b", operator="set")
    for value in (2**53 - 1, -(2**53 - 1)):
        response = await api.post(
            "/api/boards/b/scores", {"score": value, "subscore": value}, token=api.token("p1")
        )
        assert response.status == 200
        assert response.json["score"] == value


async def test_board_bounds(api):
    await api.make_board("b", min_score=0, max_score=100)
    token = api.token("p1")
    for score in (-1, 101):
        response = await api.post("/api/boards/b/scores", {"score": score}, token=token)
        assert_problem(response, 422, "validation_failed")
    assert (await api.post("/api/boards/b/scores", {"score": 100}, token=token)).status == 200


async def test_incr_may_not_leave_the_bounds(api):
    await api.make_board("b", operator="incr", max_score=10)
    token = api.token("p1")
    assert (await api.post("/api/boards/b/scores", {"score": 8}, token=token)).json["score"] == 8
    over = await api.post("/api/boards/b/scores", {"score": 3}, token=token)
    assert_problem(over, 422, "validation_failed")
    assert (await api.get("/api/boards/b/players/p1", token=token)).json["score"] == 8


# -- permissions ----------------------------------------------------------------------------


async def test_submission_permissions(api):
    await api.make_board("open")
    await api.make_board("closed", player_submissions=False)
    player = api.token("p1")
    for_other = await api.post(
        "/api/boards/open/scores", {"score": 5, "user_id": "p2"}, token=player
    )
    assert_problem(for_other, 403, "forbidden")
    assert_problem(
        await api.post("/api/boards/closed/scores", {"score": 5}, token=player), 403, "forbidden"
    )
    server = api.token("game-server", role="server")
    on_behalf = await api.post(
        "/api/boards/closed/scores", {"score": 5, "user_id": "p2"}, token=server
    )
    assert on_behalf.status == 200
    assert on_behalf.json["user_id"] == "p2"
    missing = await api.post("/api/boards/nope/scores", {"score": 5}, token=player)
    assert_problem(missing, 404, "not_found")


# -- leaderboard rules ----------------------------------------------------------------------


async def test_best_desc_first_score_improved_and_ties(api):
    await api.make_board("b")
    alice, bob, carol = api.token("alice", name="Alice"), api.token("bob"), api.token("carol")
    first = await api.post("/api/boards/b/scores", {"score": 100}, token=alice)
    assert first.json == {
        "board": "b",
        "user_id": "alice",
        "score": 100,
        "subscore": 0,
        "rank": 1,
        "previous_rank": None,
        "improved": True,
        "seq": 1,
    }
    worse = await api.post("/api/boards/b/scores", {"score": 50}, token=alice)
    assert (worse.json["score"], worse.json["improved"], worse.json["seq"]) == (100, False, 1)
    # bob reaches the same pair later: alice keeps rank 1
    tie = await api.post("/api/boards/b/scores", {"score": 100}, token=bob)
    assert (tie.json["rank"], tie.json["seq"]) == (2, 2)
    better = await api.post("/api/boards/b/scores", {"score": 100, "subscore": 1}, token=carol)
    assert better.json["rank"] == 1
    page = (await api.get("/api/boards/b/leaderboard", token=alice)).json
    assert [e["user_id"] for e in page["entries"]] == ["carol", "alice", "bob"]
    assert [e["rank"] for e in page["entries"]] == [1, 2, 3]
    assert page["total"] == 3 and page["seq"] == 3
    assert page["entries"][1]["name"] == "Alice"
    assert page["entries"][0]["updated_at"].endswith("Z")
    again = await api.post("/api/boards/b/scores", {"score": 200}, token=bob)
    assert (again.json["rank"], again.json["previous_rank"]) == (1, 3)


async def test_asc_set_and_incr(api):
    await api.make_board("laps", order="asc", operator="set")
    token = api.token("p1")
    await api.post("/api/boards/laps/scores", {"score": 90}, token=api.token("p2"))
    set_worse = await api.post("/api/boards/laps/scores", {"score": 100}, token=token)
    assert (set_worse.json["score"], set_worse.json["rank"]) == (100, 2)
    set_better = await api.post("/api/boards/laps/scores", {"score": 80}, token=token)
    assert (set_better.json["rank"], set_better.json["previous_rank"]) == (1, 2)

    await api.make_board("kills", operator="incr")
    for step, total in ((5, 5), (3, 8), (-2, 6)):
        result = await api.post("/api/boards/kills/scores", {"score": step}, token=token)
        assert result.json["score"] == total


async def test_pages_player_and_around(api):
    await api.make_board("b", operator="set")
    server = api.token("srv", role="server")
    for i in range(30):
        await api.post("/api/boards/b/scores", {"score": i, "user_id": f"u{i:02d}"}, token=server)
    page = (await api.get("/api/boards/b/leaderboard?limit=5&offset=10", token=server)).json
    assert [e["rank"] for e in page["entries"]] == [11, 12, 13, 14, 15]
    assert page["entries"][0]["user_id"] == "u19"
    entry = (await api.get("/api/boards/b/players/u29", token=server)).json
    assert (entry["rank"], entry["score"]) == (1, 29)
    around = (await api.get("/api/boards/b/players/u01/around?radius=3", token=server)).json
    assert [e["user_id"] for e in around["entries"]] == ["u04", "u03", "u02", "u01", "u00"]
    missing = await api.get("/api/boards/b/players/nobody", token=server)
    assert_problem(missing, 404, "not_found")
    for query in ("limit=0", "limit=1001", "limit=x", "offset=-1"):
        bad = await api.get(f"/api/boards/b/leaderboard?{query}", token=server)
        assert_problem(bad, 422, "validation_failed")
    me = (await api.get("/api/me", token=api.token("u29"))).json
    assert me["boards"] == [{"board": "b", "rank": 1, "score": 29}]


# -- idempotency and rate limits ------------------------------------------------------------


async def test_idempotency_key_replays_the_first_answer(api):
    await api.make_board("b", operator="incr")
    token = api.token("p1")
    key = {"Idempotency-Key": "abc-1"}
    first = await api.post("/api/boards/b/scores", {"score": 5}, token=token, headers=key)
    again = await api.post("/api/boards/b/scores", {"score": 5}, token=token, headers=key)
    assert first.status == again.status == 200
    assert again.json == first.json
    assert (await api.get("/api/boards/b/players/p1", token=token)).json["score"] == 5
    other = await api.post("/api/boards/b/scores", {"score": 6}, token=token, headers=key)
    assert_problem(other, 422, "validation_failed")
    # the key belongs to the token's sub: another player may use the same key
    p2 = await api.post("/api/boards/b/scores", {"score": 1}, token=api.token("p2"), headers=key)
    assert p2.json["user_id"] == "p2"
    too_long = await api.post(
        "/api/boards/b/scores", {"score": 1}, token=token, headers={"Idempotency-Key": "k" * 256}
    )
    assert_problem(too_long, 422, "validation_failed")


async def test_idempotency_key_in_flight_is_409(api):
    await api.make_board("b", operator="incr")
    token = api.token("p1")
    key = {"Idempotency-Key": "same"}
    responses = await asyncio.gather(
        *(
            api.post("/api/boards/b/scores", {"score": 1}, token=token, headers=key)
            for _ in range(2)
        )
    )
    assert sorted(r.status for r in responses) == [200, 409]
    assert (await api.get("/api/boards/b/players/p1", token=token)).json["score"] == 1


async def test_player_rate_limit_with_retry_after(make_api):
    api = await make_api(score_rate=1, score_burst=3)
    await api.make_board("b")
    token = api.token("p1")
    statuses = [
        (await api.post("/api/boards/b/scores", {"score": i}, token=token)).status for i in range(4)
    ]
    assert statuses == [200, 200, 200, 429]
    limited = await api.post("/api/boards/b/scores", {"score": 9}, token=token)
    assert_problem(limited, 429, "rate_limited")
    assert int(limited.headers["Retry-After"]) >= 1
    server = api.token("srv", role="server")
    for i in range(5):  # trusted tokens are not limited
        response = await api.post(
            "/api/boards/b/scores", {"score": i, "user_id": "x"}, token=server
        )
        assert response.status == 200


# -- long-poll ------------------------------------------------------------------------------


async def test_updates_long_poll(api):
    await api.make_board("b")
    token = api.token("p1")
    quick = await api.get("/api/boards/b/updates?since=0&timeout=0", token=token)
    assert quick.json == {"board": "b", "seq": 0, "top_10": [], "you": None}

    started = time.monotonic()
    waiting = asyncio.ensure_future(
        api.get("/api/boards/b/updates?since=0&timeout=10", token=token)
    )
    await asyncio.sleep(0.3)
    assert not waiting.done()
    await api.post("/api/boards/b/scores", {"score": 7}, token=token)
    answer = (await waiting).json
    assert time.monotonic() - started < 5
    assert answer["seq"] == 1
    assert answer["you"]["score"] == 7
    assert [e["user_id"] for e in answer["top_10"]] == ["p1"]
    assert_problem(
        await api.get("/api/boards/b/updates?timeout=61", token=token), 422, "validation_failed"
    )


def _updates_finished(values: dict[str, float]) -> float:
    return sum(
        value
        for name, value in values.items()
        if name.startswith('scoreboard_http_request_duration_seconds_count{handler="Updates"')
    )


async def test_a_long_poll_whose_client_left_ends_at_once(api):
    await api.make_board("left")
    before = _updates_finished(await api.metric_values())
    port = int(api.base_url.rsplit(":", 1)[1])
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"GET /api/boards/left/updates?since=0&timeout=30 HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {api.token('p1')}\r\n\r\n".encode()
    )
    await writer.drain()
    await asyncio.sleep(0.3)
    assert _updates_finished(await api.metric_values()) == before  # still waiting
    writer.close()
    deadline = time.monotonic() + 2
    while _updates_finished(await api.metric_values()) == before:
        assert time.monotonic() < deadline, "the long-poll outlived its client"
        await asyncio.sleep(0.05)


# -- metrics --------------------------------------------------------------------------------


async def test_submission_metrics_move(api):
    await api.make_board("mb")
    token = api.token("p1")
    before = await api.metric_values()
    await api.post("/api/boards/mb/scores", {"score": 10}, token=token)
    await api.post("/api/boards/mb/scores", {"score": 5}, token=token)
    await api.post("/api/boards/mb/scores", {"score": "x"}, token=token)
    after = await api.metric_values()

    assert delta(before, after, 'scoreboard_score_submissions_total{result="accepted"}') == 1
    assert delta(before, after, 'scoreboard_score_submissions_total{result="unchanged"}') == 1
    assert delta(before, after, 'scoreboard_score_submissions_total{result="rejected"}') == 1
    assert delta(before, after, 'scoreboard_errors_total{code="validation_failed"}') == 1
    assert after['scoreboard_board_players{board="mb"}'] == 1
    assert (
        delta(
            before,
            after,
            'scoreboard_http_request_duration_seconds_count{handler="Scores",method="POST",status="200"}',
        )
        == 2
    )


async def test_cors_only_for_allowed_origins(make_api):
    api = await make_api(allowed_origins=("https://quiz.example",))
    allowed = await api.fetch("OPTIONS", "/api/boards", headers={"Origin": "https://quiz.example"})
    assert allowed.status == 204
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://quiz.example"
    other = await api.fetch("OPTIONS", "/api/boards", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


async def test_board_ids_dot_and_dot_dot_are_refused(api):
    for bad in (".", ".."):
        answer = await api.post("/api/boards", {"id": bad, "title": "x"}, token=api.admin)
        assert_problem(answer, 422, "validation_failed")
    assert (
        await api.post("/api/boards", {"id": "v1.2", "title": "x"}, token=api.admin)
    ).status == 201


async def test_every_route_answers_a_preflight_including_path_parameters(make_api):
    api = await make_api(allowed_origins=("https://quiz.example",))
    await api.make_board("b1")
    origin = {"Origin": "https://quiz.example", "Access-Control-Request-Method": "POST"}
    for template, _ in app_module.ROUTES:
        if template == "/ws":
            continue
        path = template.replace("{board_id}", "b1").replace("{user_id}", "p1")
        answer = await api.fetch("OPTIONS", path, headers=origin)
        assert answer.status == 204, (path, answer.status, answer.text[:300])
        if path.startswith("/api/"):
            assert answer.headers["Access-Control-Allow-Origin"] == "https://quiz.example"
            assert "OPTIONS" in answer.headers["Access-Control-Allow-Methods"]


async def test_a_method_a_route_lacks_is_405_with_allow(api):
    await api.make_board("b1")
    cases = {
        ("PUT", "/api/boards"): {"GET", "HEAD", "POST", "OPTIONS"},
        ("POST", "/api/boards/b1/leaderboard"): {"GET", "HEAD", "OPTIONS"},
        ("GET", "/api/boards/b1/scores"): {"POST", "OPTIONS"},
        ("DELETE", "/healthz"): {"GET", "HEAD", "OPTIONS"},
        ("PATCH", "/login"): {"GET", "HEAD", "POST", "OPTIONS"},
    }
    for (method, path), allowed in cases.items():
        body = b"{}" if method in ("PUT", "POST", "PATCH") else None
        answer = await api.fetch(method, path, body=body, token=api.admin)
        assert answer.status == 405, (method, path, answer.status)
        assert set(answer.headers["Allow"].split(", ")) == allowed, (method, path)
        if path.startswith("/api/"):
            assert_problem(answer, 405, "bad_request")


async def test_head_works_wherever_get_does(api):
    await api.make_board("b1")
    await api.post("/api/boards/b1/scores", {"score": 3}, token=api.token("p1"))
    for path in (
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/openapi.json",
        "/api/boards/b1/leaderboard",
        "/api/boards/b1/players/p1",
        "/",
        "/login",
    ):
        get = await api.get(path, token=api.admin)
        head = await api.fetch("HEAD", path, token=api.admin)
        assert head.status == get.status == 200, (path, head.status, get.status)
        assert head.body == b""
        assert head.headers["Content-Type"] == get.headers["Content-Type"]


@pytest.mark.postgres
async def test_the_same_service_runs_on_postgresql(make_api, postgres_url):
    api = await make_api(database_url=postgres_url)
    await api.make_board("pg", operator="incr")
    server = api.token("srv", role="server")
    key = {"Idempotency-Key": "pg-1"}
    first = await api.post(
        "/api/boards/pg/scores", {"score": 5, "user_id": "a"}, token=server, headers=key
    )
    replay = await api.post(
        "/api/boards/pg/scores", {"score": 5, "user_id": "a"}, token=server, headers=key
    )
    assert first.json == replay.json
    await asyncio.gather(
        *(
            api.post("/api/boards/pg/scores", {"score": 1, "user_id": f"u{i % 7}"}, token=server)
            for i in range(70)
        )
    )
    before = (await api.get("/api/boards/pg/leaderboard?limit=100", token=server)).json
    assert before["total"] == 8
    assert {e["score"] for e in before["entries"] if e["user_id"] != "a"} == {10}

    # A second server over the same database loads exactly the same standings.
    again = await make_api(database_url=postgres_url)
    after = (await again.get("/api/boards/pg/leaderboard?limit=100", token=server)).json
    assert after == before


async def test_a_score_racing_a_board_delete_fails_cleanly(api, caplog):
    await api.make_board("gone")
    service = api.services.service
    # Named, so that the submission goes straight to the board (no look-up of the name).
    player = Identity(sub="p1", role=Role.PLAYER, name="P1", exp=time.time() + 60)
    deleting = asyncio.ensure_future(service.delete_board("gone"))
    await asyncio.sleep(0)  # the delete is queued in the writer first
    # Applied in memory, then refused by the database: the board is read back (it is gone).
    with pytest.raises(NotFound):
        await service.submit_score(player, "gone", {"score": 5})
    await deleting
    assert "reloading the board" in caplog.text
    assert "gone" not in service.boards
    assert_problem(await api.get("/api/boards/gone", token=api.admin), 404, "not_found")


async def test_a_refused_write_is_not_kept_in_memory_or_built_upon(api, make_api):
    """The database refuses one write (a real trigger): memory drops it, later writes work."""
    await api.make_board("kills", operator="incr")
    with api.services.store.engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TRIGGER refuse_666 BEFORE INSERT ON submissions WHEN NEW.score = 666 "
            "BEGIN SELECT RAISE(ABORT, 'refused by the test trigger'); END"
        )
    token = api.token("p1")
    assert (await api.post("/api/boards/kills/scores", {"score": 5}, token=token)).status == 200
    refused = await api.post("/api/boards/kills/scores", {"score": 666}, token=token)
    assert_problem(refused, 500, "internal")
    service = api.services.service
    for _ in range(200):  # the board is read back in the background
        if not service.boards["kills"].stale:
            break
        await asyncio.sleep(0.01)
    assert (await api.get("/api/boards/kills/players/p1", token=token)).json["score"] == 5
    after = await api.post("/api/boards/kills/scores", {"score": 3}, token=token)
    assert after.json["score"] == 8  # not 674: the refused +666 is nowhere
    # A second server over the same database agrees.
    again = await make_api(database_url=api.services.settings.database_url)
    assert (await again.get("/api/boards/kills/players/p1", token=token)).json["score"] == 8


async def test_a_refused_write_never_makes_the_seq_go_back(api, make_api):
    """Memory showed the refused write's seq (to a read, or a broadcast of another change):
    the board read back is a newer state, numbered past it, even across a restart."""
    await api.make_board("kills", operator="incr")
    with api.services.store.engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TRIGGER refuse_666 BEFORE INSERT ON submissions WHEN NEW.score = 666 "
            "BEGIN SELECT RAISE(ABORT, 'refused by the test trigger'); END"
        )
    token = api.token("p1")
    accepted = await api.post("/api/boards/kills/scores", {"score": 5}, token=token)
    assert accepted.json["seq"] == 1
    service = api.services.service
    refused = asyncio.ensure_future(
        api.post("/api/boards/kills/scores", {"score": 666}, token=token)
    )
    # Applied in memory at once, committed later: a read in between shows its seq.
    shown = 0
    for _ in range(5000):
        shown = service.leaderboard("kills", limit=10, offset=0)["seq"]
        if shown == 2:
            break
        await asyncio.sleep(0)
    assert_problem(await refused, 500, "internal")
    assert shown == 2
    for _ in range(200):  # the board is read back in the background
        if not service.boards["kills"].stale:
            break
        await asyncio.sleep(0.01)
    read_back = (await api.get("/api/boards/kills", token=token)).json["seq"]
    assert read_back > shown  # a client that saw seq 2 takes the read-back state
    after = await api.post("/api/boards/kills/scores", {"score": 3}, token=token)
    assert after.json["seq"] > read_back
    # The skipped numbers were stored: a restarted server does not go back either.
    restarted = await make_api(database_url=api.services.settings.database_url)
    assert (await restarted.get("/api/boards/kills", token=token)).json["seq"] == after.json["seq"]


# -- score_format ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "score_format",
    ["integer", "duration_ms", *(f"decimal:{n}" for n in range(1, 7))],
)
async def test_board_score_format_is_created_and_read_back(api, score_format):
    created = await api.make_board("fmt", score_format=score_format)
    assert created["score_format"] == score_format
    keys = list(created)
    assert keys.index("score_format") == keys.index("reset_schedule") + 1  # the documented order
    got = await api.get("/api/boards/fmt", token=api.token("p1"))
    assert got.status == 200 and got.json["score_format"] == score_format
    listed = await api.get("/api/boards", token=api.token("p1"))
    assert [b["score_format"] for b in listed.json["boards"]] == [score_format]


async def test_board_score_format_defaults_to_integer_and_patch_changes_it(api):
    assert (await api.make_board("laps", order="asc"))["score_format"] == "integer"
    await api.post("/api/boards/laps/scores", {"score": 62345}, token=api.token("p1"))
    patched = await api.patch("/api/boards/laps", {"score_format": "duration_ms"}, token=api.admin)
    assert patched.status == 200, patched.body
    assert patched.json["score_format"] == "duration_ms"
    assert (patched.json["players"], patched.json["seq"]) == (1, 1)  # only the format changed
    got = await api.get("/api/boards/laps", token=api.admin)
    assert got.json["score_format"] == "duration_ms"
    # Another field alone leaves it alone; scores stay integers on the wire.
    await api.patch("/api/boards/laps", {"title": "Laps"}, token=api.admin)
    assert (await api.get("/api/boards/laps", token=api.admin)).json["score_format"] == (
        "duration_ms"
    )
    entry = await api.get("/api/boards/laps/players/p1", token=api.admin)
    assert entry.json["score"] == 62345
    assert_problem(
        await api.patch("/api/boards/laps", {"score_format": "x"}, token=api.token("p1")),
        403,
        "forbidden",
    )


@pytest.mark.parametrize(
    "bad",
    ["decimal:7", "decimal:0", "decimal:01", "Integer", " integer", "", 5, None, True, ["integer"]],
)
async def test_a_bad_score_format_is_422_naming_the_value(api, bad):
    created = await api.post(
        "/api/boards", {"id": "bad", "title": "Bad", "score_format": bad}, token=api.admin
    )
    body = assert_problem(created, 422, "validation_failed")
    assert "score_format" in body["detail"] and f"got {bad!r}" in body["detail"]
    assert_problem(await api.get("/api/boards/bad", token=api.admin), 404, "not_found")

    await api.make_board("good", score_format="decimal:2")
    patched = await api.patch("/api/boards/good", {"score_format": bad}, token=api.admin)
    body = assert_problem(patched, 422, "validation_failed")
    assert f"got {bad!r}" in body["detail"]
    assert (await api.get("/api/boards/good", token=api.admin)).json["score_format"] == (
        "decimal:2"
    )


async def test_score_format_survives_a_restart(api, make_api):
    await api.make_board("kept", score_format="decimal:3")
    await api.make_board("changed")
    await api.patch("/api/boards/changed", {"score_format": "duration_ms"}, token=api.admin)
    again = await make_api(database_url=api.services.settings.database_url)
    boards = (await again.get("/api/boards", token=again.admin)).json["boards"]
    assert {b["id"]: b["score_format"] for b in boards} == {
        "kept": "decimal:3",
        "changed": "duration_ms",
    }


async def test_openapi_documents_score_format(api):
    doc = (await api.get("/api/openapi.json")).json
    schemas = doc["components"]["schemas"]
    for name in ("Board", "BoardCreate", "BoardPatch"):
        field = schemas[name]["properties"]["score_format"]
        assert field["type"] == "string", name
        assert field["pattern"] == "^(integer|duration_ms|decimal:[1-6])$", name
        assert field["description"], name
    assert schemas["BoardCreate"]["properties"]["score_format"]["default"] == "integer"


# -- request shapes over HTTP: the details name the field and the value ----------------------


async def test_a_refusal_detail_names_the_field_and_the_bad_value(api):
    await api.make_board("b")
    token = api.token("p1")
    refused = await api.post("/api/boards/b/scores", {"score": 1.5}, token=token)
    body = assert_problem(refused, 422, "validation_failed")
    assert body["detail"] == "score must be an integer within ±(2^53-1), got 1.5"
    padded = {"id": "c", "title": " " + "t" * 200}
    body = assert_problem(
        await api.post("/api/boards", padded, token=api.admin), 422, "validation_failed"
    )
    assert body["detail"].startswith("title must be 1-200 characters, not only blanks, got ' ttt")
    over = await api.get("/api/boards/b/leaderboard?offset=9007199254740992", token=token)
    body = assert_problem(over, 422, "validation_failed")
    assert body["detail"] == (
        "offset must be an integer within 0-9007199254740991, got 9007199254740992"
    )


async def test_values_exactly_at_their_limits_are_accepted(api):
    made = await api.make_board("b", title="t" * 200, operator="set")
    assert made["title"] == "t" * 200
    token = api.token("p1")
    page = await api.get(
        "/api/boards/b/leaderboard?limit=1000&offset=9007199254740991", token=token
    )
    assert page.status == 200 and page.json["entries"] == []
    whole = await api.post("/api/boards/b/scores", {"score": 242.0}, token=token)
    assert whole.status == 200 and whole.json["score"] == 242


async def test_metadata_of_1024_bytes_is_stored_with_the_submission(api):
    await api.make_board("b")
    metadata = {"p": "x" * (1024 - len('{"p":""}'))}
    response = await api.post(
        "/api/boards/b/scores", {"score": 5, "metadata": metadata}, token=api.token("p1")
    )
    assert response.status == 200, response.body
    with api.services.store.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT metadata FROM submissions")).scalar_one()
    assert json.loads(stored) == metadata


async def test_register_and_login_have_their_own_shapes(api):
    empty = await api.post("/api/auth/register", {"username": "", "password": "long-enough"})
    body = assert_problem(empty, 422, "validation_failed")
    assert body["detail"] == (
        "username must be 1-64 characters of A-Z a-z 0-9 _ . -, not . or .., got ''"
    )
    extra = {"username": "ann", "password": "long-enough", "display_name": "Ann"}
    body = assert_problem(await api.post("/api/auth/login", extra), 422, "validation_failed")
    assert body["detail"] == "unknown field(s) in body: display_name"
    # Any strings are credentials to log in with: a name that cannot exist is just wrong.
    assert_problem(
        await api.post("/api/auth/login", {"username": "", "password": ""}), 401, "auth_failed"
    )
