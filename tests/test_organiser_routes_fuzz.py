"""Random requests against the organiser's routes (reset, seasons, removal, export, online,
accounts), in the spirit of a schema fuzzer: whatever the path segment, query or body, the
answer is never a 5xx, and every error is problem+json whose `status` equals the HTTP one."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.gen_test(timeout=120)

SEGMENT = st.one_of(
    st.sampled_from(["b", "nope", "0", "-1", "1", "2", "999999999999999999999", "%20", "..", ""]),
    st.text(min_size=1, max_size=12),
)
QUERY_VALUE = st.one_of(
    st.sampled_from(["csv", "json", "xml", "", "0", "1", "2", "-3", "1e3", "9" * 30, "true"]),
    st.text(max_size=8),
)
BODY = st.one_of(
    st.none(),
    st.dictionaries(
        st.sampled_from(["username", "password", "role", "display_name", "extra"]),
        st.one_of(st.text(max_size=20), st.integers(), st.booleans(), st.none()),
        max_size=5,
    ),
)


def request_strategy():
    def build(kind, board, user, season, fmt, limit, body):
        b, u, n = (quote(x, safe="") or "x" for x in (board, user, season))
        if kind == "reset":
            return "POST", f"/api/boards/{b}/reset", {}
        if kind == "seasons":
            return "GET", f"/api/boards/{b}/seasons", None
        if kind == "season":
            return "GET", f"/api/boards/{b}/seasons/{n}/leaderboard?limit={quote(limit)}", None
        if kind == "remove":
            return "DELETE", f"/api/boards/{b}/players/{u}", None
        if kind == "export":
            return "GET", f"/api/boards/{b}/export?format={quote(fmt)}&season={quote(limit)}", None
        if kind == "online":
            return "GET", "/api/admin/online", None
        if kind == "users":
            return "GET", f"/api/admin/users?limit={quote(limit)}&offset={quote(fmt)}", None
        return "POST", "/api/admin/users", body

    return st.builds(
        build,
        st.sampled_from(
            ["reset", "seasons", "season", "remove", "export", "online", "users", "new"]
        ),
        SEGMENT,
        SEGMENT,
        SEGMENT,
        QUERY_VALUE,
        QUERY_VALUE,
        BODY,
    )


async def test_random_requests_never_fail_the_server(api):
    await api.make_board("b")
    server = api.token("game", role="server")
    for user in ("amy", "bob"):
        body = {"user_id": user, "score": 5}
        assert (await api.post("/api/boards/b/scores", body, token=server)).status == 200
    assert (await api.post("/api/boards/b/reset", {}, token=api.admin)).status == 200
    cases: list = []

    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(request_strategy(), st.sampled_from(["admin", "player", "none"]))
    def case(request, who):
        # Hypothesis draws the requests; they are sent below, on the test's own loop.
        cases.append((request, who))

    case()
    for (method, path, body), who in cases:
        token = {"admin": api.admin, "player": api.token("p"), "none": None}[who]
        payload = None if body is None else json.dumps(body).encode()
        answer = await api.fetch(method, path, body=payload, token=token)
        assert answer.status < 500, (method, path, who, answer.body)
        if answer.status >= 400:
            assert answer.headers["Content-Type"] == "application/problem+json", path
            assert answer.json["status"] == answer.status
    assert len(cases) >= 100
