"""Live delivery end to end (docs/protocol.md): a real server, real WebSocket clients.

Timers are shrunk through settings. Clients are Tornado's `websocket_connect`, plus a raw
socket client that completes the handshake by hand where a test needs a peer that misbehaves
(never reads, never answers pings).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import signal
import socket
import struct
import time
from typing import Any

import jwt
import pytest
from helpers import delta
from server_process import SECRET as PROCESS_SECRET
from server_process import ServerProcess
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, WebSocketClosedError, websocket_connect

from scoreboard.auth import Identity, Role

pytestmark = pytest.mark.gen_test(timeout=30)

SECRET = "s" * 40  # the test servers' HS256 key (tests/conftest.py)
ENTRY_KEYS = {"rank", "user_id", "name", "score", "subscore", "updated_at"}
SERVER = Identity(sub="game", role=Role.SERVER, name=None, exp=2**40)


# -- helpers ---------------------------------------------------------------------------------


async def connect(
    api, token: str | None = None, *, via: str = "header", query: str = "", **kwargs: Any
) -> WebSocketClientConnection:
    """A WebSocket client with `token` sent as a header, a subprotocol offer or a query."""
    url = api.ws_url + (f"?{query}" if query else "")
    headers: dict[str, str] = {}
    subprotocols = None
    if token is not None and via == "header":
        headers["Authorization"] = f"Bearer {token}"
    elif token is not None and via == "subprotocol":
        subprotocols = ["scoreboard.v1", f"bearer.{token}"]
    elif token is not None and via == "query":
        url += ("&" if query else "?") + f"access_token={token}"
    request = HTTPRequest(url, headers=headers, request_timeout=5)
    return await websocket_connect(request, subprotocols=subprotocols, **kwargs)


async def read(conn: WebSocketClientConnection, timeout: float = 3.0) -> dict | None:
    """The next message as JSON, or None once the connection is closed."""
    raw = await asyncio.wait_for(conn.read_message(), timeout)
    return None if raw is None else json.loads(raw)


async def read_type(conn: WebSocketClientConnection, kind: str, timeout: float = 3.0) -> dict:
    """Skip messages until one of `kind` arrives."""
    deadline = time.monotonic() + timeout
    while True:
        message = await read(conn, max(0.01, deadline - time.monotonic()))
        assert message is not None, f"closed while waiting for {kind}"
        if message["type"] == kind:
            return message


async def send(conn: WebSocketClientConnection, kind: str, **data: Any) -> None:
    await conn.write_message(json.dumps({"type": kind, "data": data}))


async def until_closed(conn: WebSocketClientConnection, timeout: float = 5.0) -> list[dict]:
    """Every message until the server closes; returns them (close code on conn.close_code)."""
    messages = []
    while (message := await read(conn, timeout)) is not None:
        messages.append(message)
    conn.close()  # the client side too, or Tornado warns about an unclosed connection
    return messages


async def eventually(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def close_all(api, *conns: WebSocketClientConnection) -> None:
    """Close clients and wait until the server has seen every socket go."""
    for conn in conns:
        conn.close()
    await eventually(lambda: api.services.hub.connection_count == 0)


async def post_score(api, board: str, user: str, score: int) -> dict:
    response = await api.post(
        f"/api/boards/{board}/scores", {"score": score, "user_id": user}, token=api.server
    )
    assert response.status == 200, response.body
    return response.json


@pytest.fixture
def live(io_loop, make_api):
    """Factory of a server with a `server` token handy."""

    async def make(**settings: Any):
        api = await make_api(**settings)
        api.server = api.token("game", role="server")
        return api

    return make


# -- a raw client for peers that misbehave ------------------------------------------------


class RawClient:
    """A WebSocket client on a bare socket: the test decides when (and whether) to read."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self.buffer = bytearray()
        self.parsed: list[tuple[int, bytes]] = []
        self.parsed_to = 0

    @classmethod
    async def connect(
        cls, api, token: str, *, query: str = "", rcvbuf: int | None = None
    ) -> RawClient:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # before connect, so the advertised window stays small
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        port = int(api.base_url.rsplit(":", 1)[1])
        client = cls(sock)
        await client.loop.sock_connect(sock, ("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET /ws{'?' + query if query else ''} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
        )
        await client.loop.sock_sendall(sock, request.encode())
        while b"\r\n\r\n" not in client.buffer:
            chunk = await client.loop.sock_recv(sock, 4096)
            assert chunk, "closed during the handshake"
            client.buffer += chunk
        head, _, rest = bytes(client.buffer).partition(b"\r\n\r\n")
        client.buffer = bytearray(rest)
        assert head.startswith(b"HTTP/1.1 101"), head
        return client

    async def send(self, kind: str, **data: Any) -> None:
        payload = json.dumps({"type": kind, "data": data}).encode()
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        assert len(payload) < 126
        frame = bytes((0x81, 0x80 | len(payload))) + mask + masked
        await self.loop.sock_sendall(self.sock, frame)

    async def read_all(self, timeout: float = 10.0) -> list[tuple[int, bytes]]:
        """Read until a close frame or the end of the stream; every frame received."""
        deadline = time.monotonic() + timeout
        while close_code(self.frames()) is None:
            remaining = deadline - time.monotonic()
            assert remaining > 0, "the server did not close the connection"
            try:
                chunk = await asyncio.wait_for(self.loop.sock_recv(self.sock, 65536), remaining)
            except ConnectionResetError:
                break
            if not chunk:
                break
            self.buffer += chunk
        return self.frames()

    def frames(self) -> list[tuple[int, bytes]]:
        """Every whole frame received so far as (opcode, payload)."""
        data, pos = self.buffer, self.parsed_to
        while len(data) - pos >= 2:
            length, offset = data[pos + 1] & 0x7F, pos + 2
            if length == 126:
                (length,) = struct.unpack("!H", data[pos + 2 : pos + 4])
                offset = pos + 4
            elif length == 127:
                (length,) = struct.unpack("!Q", data[pos + 2 : pos + 10])
                offset = pos + 10
            if len(data) < offset + length:
                break
            self.parsed.append((data[pos] & 0x0F, bytes(data[offset : offset + length])))
            pos = offset + length
        self.parsed_to = pos
        return self.parsed

    def close(self) -> None:
        self.sock.close()


def close_code(frames: list[tuple[int, bytes]]) -> int | None:
    for opcode, payload in frames:
        if opcode == 0x8 and len(payload) >= 2:
            return struct.unpack("!H", payload[:2])[0]
    return None


# -- handshake -------------------------------------------------------------------------------


async def test_each_handshake_path_authenticates_and_never_echoes_the_token(live, caplog):
    caplog.set_level(logging.DEBUG)
    api = await live()
    await api.make_board("b")
    token = api.token("alice", name="Alice")
    header = await connect(api, token, via="header")
    status = await read(header)
    assert status["type"] == "connection_status"
    assert status["data"]["user"] == {"user_id": "alice", "name": "Alice", "role": "player"}

    offered = await connect(api, token, via="subprotocol")
    assert offered.selected_subprotocol == "scoreboard.v1"
    assert offered.headers["Sec-WebSocket-Protocol"] == "scoreboard.v1"
    assert (await read(offered))["data"]["user"]["user_id"] == "alice"

    queried = await connect(api, token, via="query", query="board=b")
    assert (await read(queried))["type"] == "connection_status"
    snapshot = await read(queried)
    assert snapshot["type"] == "snapshot" and snapshot["data"]["board"] == "b"
    await close_all(api, header, offered, queried)
    assert token not in caplog.text
    assert "access_token=[redacted]" in caplog.text


async def test_rejected_handshakes_answer_problem_json_and_do_not_count_as_connections(live):
    api = await live(allowed_origins=("https://game.example",), max_connections_per_user=1)
    before = await api.metric_values()

    async def refused(token, **kwargs) -> int:
        with pytest.raises(HTTPClientError) as caught:
            await connect(api, token, **kwargs)
        return caught.value.code

    assert await refused(None) == 401
    assert await refused("not.a.token") == 401
    expired = jwt.encode({"sub": "x", "exp": int(time.time()) - 100}, SECRET)
    assert await refused(expired) == 401
    request = HTTPRequest(
        api.ws_url,
        headers={"Authorization": f"Bearer {api.token('a')}", "Origin": "https://evil.example"},
    )
    with pytest.raises(HTTPClientError) as caught:
        await websocket_connect(request)
    assert caught.value.code == 403
    allowed = HTTPRequest(
        api.ws_url,
        headers={"Authorization": f"Bearer {api.token('a')}", "Origin": "https://game.example"},
    )
    first = await websocket_connect(allowed)
    assert await refused(api.token("a")) == 429
    # A plain GET shows the body: problem+json, like the rest of the API.
    plain = await api.get("/ws")
    assert plain.status == 401
    assert plain.headers["Content-Type"] == "application/problem+json"
    assert plain.json["code"] == "auth_failed"

    after = await api.metric_values()
    rejections = "scoreboard_ws_handshake_rejections_total"
    assert delta(before, after, f'{rejections}{{reason="auth"}}') == 4
    assert delta(before, after, f'{rejections}{{reason="origin"}}') == 1
    assert delta(before, after, f'{rejections}{{reason="limit"}}') == 1
    # Only the one accepted connection moved the gauge.
    assert after["scoreboard_ws_connections"] - before["scoreboard_ws_connections"] == 1
    await close_all(api, first)


async def test_handshakes_before_the_boards_are_loaded_are_503_not_ready(live):
    api = await live(load=False)
    with pytest.raises(HTTPClientError) as refused:
        await connect(api, api.token("early"), query="board=b")
    assert refused.value.code == 503
    body = json.loads(refused.value.response.body)
    assert body["code"] == "not_ready"
    assert refused.value.response.headers["Retry-After"] == "1"
    await api.services.service.load()
    conn = await connect(api, api.token("early"))
    await read_type(conn, "connection_status")
    await close_all(api, conn)


async def test_process_connection_limit_is_503(live):
    api = await live(max_connections=2)
    conns = [await connect(api, api.token(f"u{i}")) for i in range(2)]
    with pytest.raises(HTTPClientError) as caught:
        await connect(api, api.token("u3"))
    assert caught.value.code == 503
    await close_all(api, *conns)


async def test_anonymous_read_admits_read_only_connections(live):
    closed = await live()
    with pytest.raises(HTTPClientError):
        await connect(closed)
    api = await live(anonymous_read=True)
    await api.make_board("b")
    conn = await connect(api, query="board=b")
    status = await read(conn)
    assert status["data"]["user"] is None
    assert (await read(conn))["type"] == "snapshot"
    await send(conn, "submit_score", board="b", score=5, request_id="r1")
    error = await read_type(conn, "error")
    assert error["data"]["code"] == "auth_failed"
    assert error["data"]["request_id"] == "r1"
    await close_all(api, conn)


# -- frames ----------------------------------------------------------------------------------


async def test_connection_status_then_snapshot_on_subscribe(live):
    api = await live()
    await api.make_board("b")
    alice = await connect(api, api.token("alice", name="Alice"))
    status = await read(alice)
    assert set(status["data"]) == {
        "status",
        "user_count",
        "connection_id",
        "user",
        "heartbeat_interval",
        "server_time",
    }
    assert status["data"]["status"] == "connected"
    assert status["data"]["server_time"].endswith("Z")
    await send(alice, "subscribe", board="b")
    snapshot = await read_type(alice, "snapshot")
    assert snapshot["data"] == {
        "board": "b",
        "seq": 0,
        "top_10": [],
        "you": None,
        "total_players": 0,
    }
    await close_all(api, alice)


async def subscribed(api, user: str, **kwargs: Any) -> WebSocketClientConnection:
    """A client of `user` that has its snapshot of board `b`."""
    conn = await connect(api, api.token(user), query="board=b", **kwargs)
    await read_type(conn, "snapshot")
    return conn


async def test_a_websocket_submission_gets_its_frames_in_seq_order_then_the_ack(live):
    api = await live(broadcast_interval_ms=20)
    await api.make_board("b")
    alice = await subscribed(api, "alice")
    await post_score(api, "b", "bob", 50)
    await send(alice, "submit_score", board="b", score=100, request_id="a-1")
    seen: dict[str, dict] = {}
    seqs: list[int] = [0]
    while not {"ack", "rank_update", "score_update"} <= set(seen):
        message = await read(alice)
        seen[message["type"]] = message["data"]
        if message["type"] in ("snapshot", "score_update"):
            assert message["data"]["seq"] > seqs[-1]
            seqs.append(message["data"]["seq"])
    ack = seen["ack"]
    assert ack == {
        "request_id": "a-1",
        "board": "b",
        "user_id": "alice",
        "score": 100,
        "rank": 1,
        "previous_rank": None,
        "improved": True,
        "seq": ack["seq"],
        "subscore": 0,
    }
    update = seen["score_update"]
    assert set(update) == {"board", "seq", "top_10", "updated_user"}
    assert all(set(entry) == ENTRY_KEYS for entry in update["top_10"])
    assert set(update["updated_user"]) == {"user_id", "name", "score", "rank", "previous_rank"}
    assert seen["rank_update"] == {
        "board": "b",
        "seq": ack["seq"],
        "rank": 1,
        "previous_rank": None,
        "score": 100,
    }
    await close_all(api, alice)


async def test_an_overtaken_player_hears_within_the_rank_update_delay(live):
    api = await live(broadcast_interval_ms=20, rank_update_delay=0.1)
    await api.make_board("b")
    bob = await subscribed(api, "bob", via="subprotocol")
    await post_score(api, "b", "bob", 50)
    own = await read_type(bob, "rank_update")  # his own score: at once
    assert (own["data"]["rank"], own["data"]["previous_rank"]) == (1, None)
    await post_score(api, "b", "alice", 100)
    overtaken = await read_type(bob, "rank_update", timeout=1.0)
    assert (overtaken["data"]["rank"], overtaken["data"]["previous_rank"]) == (2, 1)
    await close_all(api, bob)


async def test_ping_is_answered_by_a_pong_echoing_t(live):
    api = await live()
    alice = await connect(api, api.token("alice"))
    await send(alice, "ping", t={"any": "thing"})
    pong = await read_type(alice, "pong")
    assert pong["data"]["t"] == {"any": "thing"} and pong["data"]["server_time"]
    await close_all(api, alice)


async def test_request_id_is_the_idempotency_key(live):
    api = await live()
    await api.make_board("b")
    alice = await connect(api, api.token("alice"))
    await send(alice, "submit_score", board="b", score=100, request_id="a-1")
    ack = (await read_type(alice, "ack"))["data"]
    # The same request_id answers the first ack; another body with it is refused.
    await send(alice, "submit_score", board="b", score=100, request_id="a-1")
    assert (await read_type(alice, "ack"))["data"] == ack
    await send(alice, "submit_score", board="b", score=7, request_id="a-1")
    error = await read_type(alice, "error")
    assert error["data"]["code"] == "validation_failed"
    assert error["data"]["request_id"] == "a-1"
    await send(alice, "submit_score", board="b", score=7, request_id="k" * 256)
    error = await read_type(alice, "error")
    assert error["data"]["code"] == "validation_failed"  # as a long Idempotency-Key over HTTP
    await close_all(api, alice)


async def test_live_metrics_count_connections_frames_and_messages(live):
    api = await live(broadcast_interval_ms=20)
    await api.make_board("b")
    before = await api.metric_values()
    alice = await connect(api, api.token("alice"), query="reconnect=1&board=b")
    bob = await subscribed(api, "bob")
    await read_type(alice, "snapshot")
    for n in range(2):
        await send(alice, "submit_score", board="b", score=100 + n, request_id=f"a-{n}")
        await read_type(alice, "ack")
    await send(alice, "ping", t=1)
    await read_type(alice, "pong")
    values = await api.metric_values()
    assert delta(before, values, "scoreboard_ws_reconnects_total") == 1
    assert delta(before, values, "scoreboard_ws_connections_opened_total") == 2
    assert delta(before, values, 'scoreboard_ws_messages_sent_total{type="score_update"}') >= 2
    assert delta(before, values, 'scoreboard_ws_messages_sent_total{type="ack"}') == 2
    received = "scoreboard_ws_messages_received_total"
    assert delta(before, values, f'{received}{{type="submit_score"}}') == 2
    assert delta(before, values, f'{received}{{type="ping"}}') == 1
    assert delta(before, values, "scoreboard_broadcast_latency_seconds_count") >= 1
    assert values['scoreboard_board_subscribers{board="b"}'] == 2
    await close_all(api, alice, bob)


async def test_the_event_loop_lag_probe_runs_whatever_else_happens(live):
    api = await live()
    lag = "scoreboard_event_loop_lag_seconds_count"
    probed = (await api.metric_values()).get(lag, 0.0)
    deadline = time.monotonic() + 3  # it runs twice a second
    while (await api.metric_values()).get(lag, 0.0) <= probed:
        assert time.monotonic() < deadline, "the event-loop lag probe never ran"
        await asyncio.sleep(0.1)


async def test_a_burst_is_coalesced_and_the_last_frame_equals_a_fresh_snapshot(live):
    interval_ms = 100
    api = await live(broadcast_interval_ms=interval_ms)
    await api.make_board("b")
    viewers = [await connect(api, api.token(f"v{i}"), query="board=b") for i in range(3)]
    for viewer in viewers:
        await read_type(viewer, "snapshot")
    service = api.services.service
    started = time.monotonic()
    # 200 changes of the top 10 within about a second.
    for i in range(200):
        await service.submit_score(SERVER, "b", {"score": i, "user_id": f"p{i % 30}"})
        if i % 20 == 19:
            await asyncio.sleep(0.1)
    elapsed = time.monotonic() - started
    await asyncio.sleep(2 * interval_ms / 1000)
    fresh = service.board_view("b", None)
    allowed = elapsed / (interval_ms / 1000) + 2
    for viewer in viewers:
        updates = []
        while True:
            try:
                message = await read(viewer, timeout=0.3)
            except TimeoutError:
                break
            updates.append(message)
        assert all(m["type"] == "score_update" for m in updates)
        assert 2 <= len(updates) <= allowed, (len(updates), allowed)
        seqs = [m["data"]["seq"] for m in updates]
        assert seqs == sorted(set(seqs))
        assert updates[-1]["data"]["seq"] == fresh["seq"]
        assert updates[-1]["data"]["top_10"] == fresh["top_10"]
    await close_all(api, *viewers)


async def test_a_change_below_the_top_10_only_tells_its_owner(live):
    api = await live(broadcast_interval_ms=10)
    await api.make_board("b")
    for i in range(10):
        await post_score(api, "b", f"top{i}", 1000 + i)
    other = await connect(api, api.token("other"), query="board=b")
    owner = await connect(api, api.token("low"), query="board=b")
    await read_type(other, "snapshot")
    await read_type(owner, "snapshot")
    result = await post_score(api, "b", "low", 5)
    update = await read_type(owner, "rank_update")
    assert update["data"] == {
        "board": "b",
        "seq": result["seq"],
        "rank": 11,
        "previous_rank": None,
        "score": 5,
    }
    with pytest.raises(TimeoutError):
        await read(other, timeout=0.3)
    await close_all(api, other, owner)


async def test_subscription_limits_and_bad_frames_keep_the_connection(live):
    api = await live()
    for i in range(21):
        await api.make_board(f"b{i}")
    conn = await connect(api, api.token("alice"))
    await read(conn)
    for i in range(20):
        await send(conn, "subscribe", board=f"b{i}")
        await read_type(conn, "snapshot")
    await send(conn, "subscribe", board="b20", request_id="s21")
    error = await read_type(conn, "error")
    assert error["data"]["code"] == "bad_request" and "20" in error["data"]["message"]
    await send(conn, "subscribe", board="nope")
    assert (await read_type(conn, "error"))["data"]["code"] == "not_found"
    await send(conn, "unsubscribe", board="b0")
    for raw in ("not json", "[1]", '{"type": "dance"}', '{"type": "ping", "data": 3}'):
        await conn.write_message(raw)
        assert (await read_type(conn, "error"))["data"]["code"] == "bad_request"
    await send(conn, "submit_score", board="b1", score=1)  # no request_id
    assert (await read_type(conn, "error"))["data"]["code"] == "bad_request"
    await conn.write_message('{"type": "subscribe"}')  # no data at all
    error = (await read_type(conn, "error"))["data"]
    assert error["code"] == "bad_request" and "no board" not in error["message"]
    await send(conn, "ping", t=1)
    assert (await read_type(conn, "pong"))["data"]["t"] == 1
    stats = await api.get("/api/admin/stats", token=api.admin)
    boards = {b["id"]: b["subscribers"] for b in stats.json["boards"]}
    assert boards["b0"] == 0 and boards["b1"] == 1 and boards["b20"] == 0
    await close_all(api, conn)


async def test_admin_stats_shows_who_is_connected(live):
    api = await live()
    await api.make_board("b")
    conns = [await connect(api, api.token("alice"), query="board=b") for _ in range(3)]
    conns.append(await connect(api, api.token("bob")))
    for conn in conns:
        await read(conn)
    assert (await api.get("/api/admin/stats", token=api.token("alice"))).status == 403
    stats = (await api.get("/api/admin/stats", token=api.admin)).json
    assert stats["connections"] == 4
    assert stats["users_online"] == 2
    assert stats["boards"] == [{"id": "b", "players": 0, "subscribers": 3}]
    assert stats["top_users_by_connections"] == [
        {"user_id": "alice", "connections": 3},
        {"user_id": "bob", "connections": 1},
    ]
    assert {"messages_sent_per_s", "messages_received_per_s"} <= set(stats)
    await close_all(api, *conns)


async def test_user_count_changes_are_announced_and_deleted_boards_unsubscribe(live):
    api = await live(status_interval=0.2)
    await api.make_board("b")
    first = await connect(api, api.token("alice"), query="board=b")
    assert (await read(first))["data"]["user_count"] == 1
    await read_type(first, "snapshot")
    second = await connect(api, api.token("bob"))
    assert (await read(second))["data"]["user_count"] == 2
    status = await read_type(first, "connection_status", timeout=2)
    assert status["data"]["user_count"] == 2
    with pytest.raises(TimeoutError):  # no change, no new round
        await read(first, timeout=0.5)
    deleted = await api.fetch("DELETE", "/api/boards/b", token=api.admin)
    assert deleted.status == 204
    error = await read_type(first, "error")
    assert error["data"]["code"] == "not_found"
    stats = (await api.get("/api/admin/stats", token=api.admin)).json
    assert stats["boards"] == []
    await close_all(api, first, second)


# -- health of connections -------------------------------------------------------------------


async def test_a_peer_that_never_answers_pings_is_closed(live):
    api = await live(ping_interval=0.3)
    before = await api.metric_values()
    raw = await RawClient.connect(api, api.token("silent"))
    started = time.monotonic()
    frames = await raw.read_all(timeout=10)
    elapsed = time.monotonic() - started
    assert any(opcode == 0x9 for opcode, _ in frames)  # it was pinged
    assert elapsed < 0.3 * 2 + 0.5  # interval + timeout, + a sweep period and slack
    raw.close()
    after = await api.metric_values()
    key = 'scoreboard_ws_connections_closed_total{reason="ping_timeout"}'
    assert delta(before, after, key) == 1


async def test_a_client_that_answers_pings_stays_connected(live):
    api = await live(ping_interval=0.2)
    conn = await connect(api, api.token("alive"))
    await read(conn)
    await asyncio.sleep(1.0)  # five ping rounds; Tornado's client answers each
    await send(conn, "ping", t=1)
    assert (await read_type(conn, "pong"))["data"]["t"] == 1
    await close_all(api, conn)


async def test_token_expiry_closes_4401_unless_refreshed(live):
    api = await live(ping_interval=0.4)
    expiring = await connect(api, api.token("alice", ttl=1))
    refreshed = await connect(api, api.token("bob", ttl=1))
    await read(expiring)
    await read(refreshed)
    await send(refreshed, "auth", token=api.token("bob", ttl=600))
    messages = await until_closed(expiring)
    assert messages[-1]["type"] == "error"
    assert messages[-1]["data"]["code"] == "token_expired"
    assert expiring.close_code == 4401
    await send(refreshed, "ping", t=2)
    assert (await read_type(refreshed, "pong"))["data"]["t"] == 2
    # A token for another user is refused and closes the connection.
    await send(refreshed, "auth", token=api.token("mallory", ttl=600))
    messages = await until_closed(refreshed)
    assert messages[-1]["data"] == {"code": "auth_failed", "message": "Authentication failed"}
    assert refreshed.close_code == 4401
    await close_all(api)


async def test_oversize_message_closes_1009(live):
    api = await live()
    conn = await connect(api, api.token("alice"))
    await read(conn)
    await conn.write_message(json.dumps({"type": "ping", "data": {"t": "x" * 5000}}))
    await until_closed(conn)
    assert conn.close_code == 1009
    await close_all(api)


async def test_a_text_frame_that_is_not_utf8_closes_1007(live):
    api = await live()
    raw = await RawClient.connect(api, api.token("alice"))
    payload = b'{"type": "ping", "data": {"t": "\xff\xfe"}}'
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    await raw.loop.sock_sendall(raw.sock, bytes((0x81, 0x80 | len(payload))) + mask + masked)
    assert close_code(await raw.read_all(timeout=5)) == 1007
    raw.close()
    await eventually(lambda: api.services.hub.connection_count == 0)


async def test_message_rate_limit_then_policy_close(live):
    api = await live(ws_message_rate=5, ws_message_burst=5, ws_abuse_close_after=0.5)
    conn = await connect(api, api.token("chatty"))
    await read(conn)
    for t in range(8):
        await send(conn, "ping", t=t)
    kinds = [(await read(conn))["type"] for _ in range(8)]
    assert kinds == ["pong"] * 5 + ["error"] * 3
    # Staying over the limit past the abuse window closes with 1008. (Tornado's client only
    # sees the close once its queued messages are read, so a reader runs meanwhile.)
    reader = asyncio.ensure_future(until_closed(conn))
    deadline = time.monotonic() + 3
    while not reader.done() and time.monotonic() < deadline:
        with contextlib.suppress(WebSocketClosedError):
            await send(conn, "ping", t=0)
        await asyncio.sleep(0.02)
    messages = await reader
    errors = [m for m in messages if m["type"] == "error"]
    assert errors and errors[0]["data"]["code"] == "rate_limited"
    assert errors[0]["data"]["retry_after"] > 0
    assert conn.close_code == 1008
    await close_all(api)


async def test_a_client_that_never_reads_is_closed_and_memory_stays_bounded(live):
    bound = 256 * 1024
    api = await live(broadcast_interval_ms=1, slow_consumer_timeout=1.0, max_unsent_bytes=bound)
    hub, service = api.services.hub, api.services.service
    await api.make_board("b")
    before = await api.metric_values()
    stuck = await RawClient.connect(api, api.token("stuck"), query="board=b", rcvbuf=4096)
    healthy = await connect(api, api.token("healthy"), query="board=b")
    await read_type(healthy, "snapshot")
    stuck_id = next(c.id for c in hub._conns if c.identity and c.identity.sub == "stuck")
    peak_unsent = 0
    last_seen = time.monotonic()
    worst_gap = 0.0
    received = 0
    started = time.monotonic()
    score = 0
    # Thousands of top-10 changes of long user ids (2 KB frames) until it is dropped.
    while stuck_id in hub.unsent_bytes() and time.monotonic() - started < 15:
        batch = []
        for _ in range(5):
            score += 1
            body = {"score": score, "user_id": f"{'p' * 60}{score % 12:04d}"}
            batch.append(service.submit_score(SERVER, "b", body))
        await asyncio.gather(*batch)
        peak_unsent = max(peak_unsent, hub.unsent_bytes().get(stuck_id, 0))
        # The healthy client keeps up the whole time.
        while True:
            try:
                await asyncio.wait_for(healthy.read_message(), 0.001)
            except TimeoutError:
                break
            received += 1
            now = time.monotonic()
            worst_gap = max(worst_gap, now - last_seen)
            last_seen = now
    assert stuck_id not in hub.unsent_bytes(), "the stuck client was never dropped"
    assert score >= 200  # (the kernel-queue check drops it sooner than the stream alone did)
    assert peak_unsent <= bound
    assert received > 100
    assert worst_gap < 1.0
    after = await api.metric_values()
    key = 'scoreboard_ws_connections_closed_total{reason="slow_consumer"}'
    assert delta(before, after, key) == 1
    growth = after["process_resident_memory_bytes"] - before["process_resident_memory_bytes"]
    assert growth < 64 * 1024 * 1024
    # Once it reads, it finds its last state frames and then the 1013 close.
    frames = await stuck.read_all(timeout=10)
    assert close_code(frames) == 1013
    stuck.close()
    await service.submit_score(SERVER, "b", {"score": score + 1, "user_id": "last"})
    await read_type(healthy, "score_update")  # still live after the other was dropped
    await close_all(api, healthy)


async def test_a_reader_that_stops_is_closed_though_the_kernel_holds_its_backlog(live):
    # Everything sent fits in the kernel's socket buffers (the stream's own buffer stays
    # empty), so only the kernel's unsent-byte count (SIOCOUTQ) shows that the peer stopped.
    api = await live(broadcast_interval_ms=1, slow_consumer_timeout=1.5, ping_interval=300)
    hub, service = api.services.hub, api.services.service
    await api.make_board("b")
    before = await api.metric_values()
    stopped = await RawClient.connect(api, api.token("stopped"), query="board=b")
    for score in range(1, 401):  # about 0.5 MB of score_update frames, then nothing more
        body = {"score": score, "user_id": f"{'p' * 60}{score % 12:04d}"}
        await service.submit_score(SERVER, "b", body)
        await asyncio.sleep(0)
    (conn,) = hub._conns
    assert conn.sink.unsent_bytes() == 0  # nothing waits in user space: the kernel took it
    started = time.monotonic()
    await eventually(lambda: hub.connection_count == 0, timeout=8)
    waited = time.monotonic() - started
    after = await api.metric_values()
    key = 'scoreboard_ws_connections_closed_total{reason="slow_consumer"}'
    assert delta(before, after, key) == 1
    assert waited < 1.5 + 3  # the timeout, plus sweeps
    print(f"stopped reader closed 1013 {waited:.2f} s after the last post (timeout 1.5 s)")
    frames = await stopped.read_all(timeout=10)  # once it reads: its frames, then 1013
    assert close_code(frames) == 1013
    stopped.close()


async def test_a_stream_closed_before_on_close_breaks_neither_the_sweep_nor_a_reply(live, caplog):
    # IOStream.close() (a send error, a reset peer, an abort) runs on_close only on a later
    # loop turn; in that window the hub still holds the connection as backlogged.
    api = await live(max_unsent_bytes=64 * 2**20)
    hub = api.services.hub
    raw = await RawClient.connect(api, api.token("gone"), rcvbuf=4096)
    (conn,) = hub._conns
    big = {"type": "pong", "data": {"t": "x" * (8 * 2**20)}}
    hub.send_reply(conn, _frame(json.dumps(big).encode()), "pong")  # more than the kernel takes
    assert conn.state.value == "backlogged"
    conn.sink.abort()  # the stream is closed now; on_close follows on a later loop turn
    hub._sweep_handle.cancel()
    hub._sweep()  # the whole sweep: stalls, expiry, pings, status
    hub.send_error(conn, "internal", "an answer in the window")  # e.g. a late ack
    assert "hub sweep failed" not in caplog.text
    raw.close()
    await eventually(lambda: hub.connection_count == 0)


def _frame(payload: bytes) -> bytes:
    """An unmasked server text frame with a 64-bit length field."""
    return bytes((0x81, 127)) + struct.pack("!Q", len(payload)) + payload


# -- shutdown --------------------------------------------------------------------------------


async def test_sigterm_closes_every_client_with_1001_spread_in_time(tmp_path):
    spread = 1.0
    server = ServerProcess(
        f"sqlite:///{tmp_path / 'sb.db'}",
        tmp_path / "server.log",
        "--shutdown-spread",
        str(spread),
        "--log-level",
        "warning",
    )
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, server.start)
    process = server.process
    assert process is not None
    try:
        clients = []
        for i in range(10):
            token = jwt.encode({"sub": f"u{i}", "exp": int(time.time()) + 600}, PROCESS_SECRET)
            request = HTTPRequest(
                f"ws://127.0.0.1:{server.port}/ws", headers={"Authorization": f"Bearer {token}"}
            )
            clients.append(await websocket_connect(request))
        for client in clients:
            assert (await read(client))["type"] == "connection_status"
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)

        async def closed_at(client: WebSocketClientConnection) -> float:
            await until_closed(client, timeout=10)
            return time.monotonic() - signalled

        times = await asyncio.gather(*(closed_at(c) for c in clients))
        assert [c.close_code for c in clients] == [1001] * len(clients)
        assert max(times) <= spread + 1.0
        assert max(times) - min(times) >= spread / 2  # spread, not all at once
        exit_code = await loop.run_in_executor(None, lambda: process.wait(timeout=15))
        assert exit_code == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
