"""Framing and the wire shapes of frames.py: each server message built in one place."""

from __future__ import annotations

import struct

import orjson
import pytest

from scoreboard import frames
from scoreboard.auth import Identity, Role
from scoreboard.frames import encode_frame
from scoreboard.ranking import Leaderboard, Operator, Order

# -- framing ---------------------------------------------------------------------------------


def parse_frame(frame: bytes) -> tuple[int, int, bytes]:
    """(first byte, mask bit, payload) of one unmasked frame; checks the length field."""
    first, second = frame[0], frame[1]
    length, offset = second & 0x7F, 2
    if length == 126:
        (length,) = struct.unpack("!H", frame[2:4])
        offset = 4
    elif length == 127:
        (length,) = struct.unpack("!Q", frame[2:10])
        offset = 10
    payload = frame[offset:]
    assert len(payload) == length
    return first, second & 0x80, payload


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_encode_frame_uses_the_shortest_length_field(size):
    payload = b"x" * size
    frame = encode_frame(payload)
    first, masked, body = parse_frame(frame)
    assert first == 0x81  # FIN + text
    assert masked == 0  # servers never mask
    assert body == payload
    header = 2 if size < 126 else 4 if size <= 0xFFFF else 10
    assert len(frame) == size + header


def test_message_is_a_framed_json_envelope():
    first, _, payload = parse_frame(frames.message("pong", {"t": 1}))
    assert first == 0x81
    assert orjson.loads(payload) == {"type": "pong", "data": {"t": 1}}


ENTRY_KEYS = {"rank", "user_id", "name", "score", "subscore", "updated_at"}


def payload_of(frame: bytes) -> dict:
    return orjson.loads(parse_frame(frame)[2])


def _board() -> Leaderboard:
    ranks = Leaderboard(Order.DESC, Operator.BEST)
    for n in range(12):
        ranks.submit(f"p{n}", f"P{n}", n, 0, now=1.0)
    return ranks


def test_a_snapshot_is_the_board_view_plus_the_player_count():
    ranks = _board()
    you = ranks.entry("p3")
    view = frames.board_view("b", ranks, you)
    assert set(view) == {"board", "seq", "top_10", "you"}
    assert len(view["top_10"]) == 10 and all(set(e) == ENTRY_KEYS for e in view["top_10"])
    assert view["you"]["rank"] == 9
    message = payload_of(frames.snapshot("b", ranks, you))
    assert message == {"type": "snapshot", "data": {**view, "total_players": 12}}
    assert payload_of(frames.snapshot("b", ranks, None))["data"]["you"] is None


def test_score_update_and_rank_update_shapes():
    ranks = _board()
    outcome = ranks.submit("p0", "P0", 100, 0, now=2.0)
    updated = frames.updated_user(outcome)
    assert updated == {"user_id": "p0", "name": "P0", "score": 100, "rank": 1, "previous_rank": 12}
    update = payload_of(frames.score_update("b", ranks, updated))
    assert update["type"] == "score_update"
    assert set(update["data"]) == {"board", "seq", "top_10", "updated_user"}
    assert update["data"]["seq"] == ranks.seq
    rank = payload_of(frames.rank_update("b", seq=7, rank=2, previous_rank=None, score=5))
    assert rank == {
        "type": "rank_update",
        "data": {"board": "b", "seq": 7, "rank": 2, "previous_rank": None, "score": 5},
    }


def test_replies_carry_only_what_they_were_given():
    assert payload_of(frames.error("bad_request", "no")) == {
        "type": "error",
        "data": {"code": "bad_request", "message": "no"},
    }
    error = payload_of(frames.error("rate_limited", "slow", request_id="r", retry_after=0.12345))
    assert error["data"] == {
        "code": "rate_limited",
        "message": "slow",
        "request_id": "r",
        "retry_after": 0.123,
    }
    ack = payload_of(frames.ack("r1", {"board": "b", "seq": 3}))
    assert ack == {"type": "ack", "data": {"request_id": "r1", "board": "b", "seq": 3}}
    pong = payload_of(frames.pong({"any": 1}, "2026-01-01T00:00:00.000Z"))
    assert pong["data"] == {"t": {"any": 1}, "server_time": "2026-01-01T00:00:00.000Z"}


def test_connection_status_names_the_user_or_null():
    alice = Identity(sub="alice", role=Role.PLAYER, name=None, exp=2**40)
    status = payload_of(
        frames.connection_status(connection_id="c-1", user_count=3, identity=alice, server_time="T")
    )["data"]
    assert status == {
        "status": "connected",
        "user_count": 3,
        "connection_id": "c-1",
        "user": {"user_id": "alice", "name": "alice", "role": "player"},
        "heartbeat_interval": frames.HEARTBEAT_INTERVAL_S,
        "server_time": "T",
    }
    anonymous = frames.connection_status(
        connection_id="c-2", user_count=1, identity=None, server_time="T"
    )
    assert payload_of(anonymous)["data"]["user"] is None


def test_close_codes_are_the_spec_ones():
    assert [int(c) for c in frames.CloseCode] == [1000, 1001, 1008, 1009, 1011, 1013, 4401, 4403]
    assert bytes((0x89, 0)) == frames.PING_FRAME
