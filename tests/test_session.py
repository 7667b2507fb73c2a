"""A connection's protocol (session.py) over a fake sink: rate limits, parsing, dispatch."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from helpers import FakeSink, split_frames

from scoreboard.auth import Identity, Role
from scoreboard.connections import ConnState
from scoreboard.session import MAX_SUBSCRIPTIONS

PLAYER = Identity(sub="alice", role=Role.PLAYER, name=None, exp=2**40)


def sent(sink: FakeSink) -> list[dict]:
    """Every message the sink was handed, delivered or queued."""
    return [m for blob in sink.delivered + sink.queue for m in split_frames(blob)]


def raw(kind: str, **data) -> bytes:
    return orjson.dumps({"type": kind, "data": data})


@pytest.mark.gen_test(timeout=10)
async def test_unsent_bytes_over_the_bound_close_with_1013(make_services):
    services = await make_services(max_unsent_bytes=1000)
    sink = FakeSink(room=0)
    session = services.sessions.open(sink, None, board=None, reconnect=False)
    assert session.conn.state is ConnState.BACKLOGGED
    for t in range(40):  # pongs are not state: they queue until the bound
        session.receive(raw("ping", t=t))
    assert sink.closed_with == 1013
    assert session.conn.state is ConnState.CLOSING
    assert services.hub.connection_count == 0


@pytest.mark.gen_test(timeout=10)
async def test_over_the_message_rate_is_refused_then_a_long_streak_closes_1008(make_services):
    services = await make_services(ws_message_rate=1, ws_message_burst=2, ws_abuse_close_after=5)
    now = [100.0]
    services.sessions.clock = lambda: now[0]
    sink = FakeSink()
    session = services.sessions.open(sink, PLAYER, board=None, reconnect=False)
    for t in range(3):
        session.receive(raw("ping", t=t))
    kinds = [m["type"] for m in sent(sink)[1:]]
    assert kinds == ["pong", "pong", "error"]
    refused = sent(sink)[-1]["data"]
    assert refused["code"] == "rate_limited" and refused["retry_after"] == pytest.approx(1.0)
    # Refusals less than a second apart are one streak; past ws_abuse_close_after it closes.
    for _ in range(12):
        now[0] += 0.5
        session.receive(raw("ping", t=0))
        session.receive(raw("ping", t=0))
    assert sink.closed_with == 1008


@pytest.mark.gen_test(timeout=10)
async def test_bad_messages_get_bad_request_and_the_connection_stays(make_services):
    services = await make_services()
    sink = FakeSink()
    session = services.sessions.open(sink, PLAYER, board=None, reconnect=False)
    for message in (b"not json", b"[1]", b'{"type": "dance"}', b'{"type": "ping", "data": 3}'):
        session.receive(message)
    session.receive(raw("unsubscribe", board=5))
    session.receive(raw("submit_score", board="b", score=1))  # no request_id
    codes = [m["data"]["code"] for m in sent(sink) if m["type"] == "error"]
    assert codes == ["bad_request"] * 6
    assert session.conn.state is ConnState.OPEN


@pytest.mark.gen_test(timeout=10)
async def test_subscriptions_answer_snapshots_within_the_limit(make_services):
    services = await make_services()
    for n in range(MAX_SUBSCRIPTIONS + 1):
        await services.service.create_board({"id": f"b{n}", "title": "B"})
    sink = FakeSink()
    session = services.sessions.open(sink, PLAYER, board="b0", reconnect=False)
    for n in range(MAX_SUBSCRIPTIONS + 1):
        session.receive(raw("subscribe", board=f"b{n}", request_id=f"s{n}"))
    session.receive(raw("subscribe", board="nope"))
    messages = sent(sink)
    assert sum(m["type"] == "snapshot" for m in messages) == MAX_SUBSCRIPTIONS + 1  # b0 twice
    errors = [m["data"] for m in messages if m["type"] == "error"]
    assert errors[0]["code"] == "bad_request" and errors[0]["request_id"] == "s20"
    assert errors[1] == {"code": "not_found", "message": "no board 'nope'"}


@pytest.mark.gen_test(timeout=10)
async def test_request_id_rules_match_the_idempotency_key_over_http(make_services):
    services = await make_services()
    await services.service.create_board({"id": "b", "title": "B"})
    sink = FakeSink()
    session = services.sessions.open(sink, PLAYER, board=None, reconnect=False)
    session.receive(raw("submit_score", board="b", score=1, request_id=7))
    session.receive(raw("submit_score", board="b", score=1, request_id="k" * 256))
    session.receive(raw("submit_score", board="b", score=1, request_id="ok"))
    await services.sessions.close_all()
    answers = [m for m in sent(sink) if m["type"] in ("ack", "error")]
    assert answers[0]["data"]["code"] == "bad_request"  # not a string: the message's shape
    assert answers[1]["data"]["code"] == "validation_failed"  # 256 characters: as over HTTP
    assert answers[2]["type"] == "ack" and answers[2]["data"]["request_id"] == "ok"


@pytest.mark.gen_test(timeout=10)
async def test_anonymous_connections_cannot_submit_or_take_a_token(make_services):
    services = await make_services(anonymous_read=True)
    sink = FakeSink()
    session = services.sessions.open(sink, None, board=None, reconnect=False)
    session.receive(raw("submit_score", board="b", score=1, request_id="r"))
    session.receive(raw("auth", token="x"))
    await asyncio.sleep(0)
    errors = [m["data"] for m in sent(sink) if m["type"] == "error"]
    assert [(e["code"], e.get("request_id")) for e in errors] == [
        ("auth_failed", "r"),
        ("forbidden", None),
    ]
    assert session.conn.state is ConnState.OPEN


@pytest.mark.gen_test(timeout=10)
async def test_subscribe_while_the_boards_load_answers_not_ready_not_not_found(make_services):
    services = await make_services()
    await services.service.create_board({"id": "b", "title": "B"})
    sink = FakeSink()
    session = services.sessions.open(sink, PLAYER, board=None, reconnect=False)
    services.service.ready = False  # as between start-up and the end of loading
    session.receive(raw("subscribe", board="b"))
    services.service.ready = True
    session.receive(raw("subscribe", board="nope"))
    errors = [m["data"] for m in sent(sink) if m["type"] == "error"]
    assert [e["code"] for e in errors] == ["not_ready", "not_found"]
    assert errors[0]["retry_after"] > 0
