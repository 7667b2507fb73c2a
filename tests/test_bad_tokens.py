"""Every bad token (docs/api.md#tokens-and-roles), over HTTP and at the WebSocket handshake.

A real server (issuer and audience configured) on a free port. Each bad token is refused with
401 on an API route and at the handshake, in all three ways a token can travel there; the
handshake refusals show in `scoreboard_ws_handshake_rejections_total{reason="auth"}` and never
in `scoreboard_ws_connections`.
"""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

pytestmark = pytest.mark.gen_test(timeout=60)

SECRET = "s" * 40  # the test servers' HS256 key (tests/conftest.py)
ISSUER, AUDIENCE = "https://issuer.example", "scoreboard"
REJECTIONS = 'scoreboard_ws_handshake_rejections_total{reason="auth"}'


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(**changes) -> dict:
    now = int(time.time())
    claims = {"sub": "mallory", "exp": now + 600, "iat": now, "iss": ISSUER, "aud": AUDIENCE}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _signed(claims: dict, key: str = SECRET) -> str:
    return jwt.encode(claims, key, algorithm="HS256")


BAD_TOKENS = {
    "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims())}.",
    "wrong key": _signed(_claims(), "k" * 40),
    "expired beyond leeway": _signed(_claims(exp=int(time.time()) - 31)),
    "future nbf": _signed(_claims(nbf=int(time.time()) + 120)),
    "wrong issuer": _signed(_claims(iss="https://evil.example")),
    "no issuer": _signed(_claims(iss=None)),
    "wrong audience": _signed(_claims(aud="someone-else")),
    "malformed": "not.a.token",
    "missing exp": _signed(_claims(exp=None)),
    "HS512 (not on the allow-list)": jwt.encode(_claims(), SECRET * 2, algorithm="HS512"),
}


async def _handshake(api, token: str, via: str) -> int:
    url, headers, subprotocols = api.ws_url, {}, None
    if via == "header":
        headers["Authorization"] = f"Bearer {token}"
    elif via == "subprotocol":
        subprotocols = ["scoreboard.v1", f"bearer.{token}"]
    else:
        url += f"?access_token={token}"
    with pytest.raises(HTTPClientError) as refused:
        await websocket_connect(
            HTTPRequest(url, headers=headers, request_timeout=5), subprotocols=subprotocols
        )
    return refused.value.code


async def test_every_bad_token_is_refused_over_http_and_at_the_handshake(make_api):
    api = await make_api(jwt_issuer=ISSUER, jwt_audience=AUDIENCE)
    await api.make_board("b")
    good = _signed(_claims())
    assert (await api.get("/api/boards/b/leaderboard", token=good)).status == 200
    before = await api.metric_values()

    for name, token in BAD_TOKENS.items():
        response = await api.get("/api/boards/b/leaderboard", token=token)
        assert response.status == 401, name
        expected = "token_expired" if name.startswith("expired") else "auth_failed"
        assert response.json["code"] == expected, name
        posted = await api.post("/api/boards/b/scores", {"score": 1}, token=token)
        assert posted.status == 401, name
        for via in ("header", "subprotocol", "query"):
            assert await _handshake(api, token, via) == 401, (name, via)

    after = await api.metric_values()
    assert after[REJECTIONS] - before.get(REJECTIONS, 0) == 3 * len(BAD_TOKENS)
    assert after["scoreboard_ws_connections"] == before["scoreboard_ws_connections"]
    assert (
        after["scoreboard_ws_connections_opened_total"]
        == before["scoreboard_ws_connections_opened_total"]
    )
    # Nothing was stored for the forger.
    board = await api.get("/api/boards/b/leaderboard", token=good)
    assert board.json["total"] == 0
