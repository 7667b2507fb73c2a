"""Every wire shape of the WebSocket protocol (docs/protocol.md), built in one place.

Each server message has one builder here that returns the whole framed bytes (an unmasked,
unfragmented, uncompressed text frame holding the JSON envelope `{"type", "data"}`), so a
shape is defined once whoever sends it. `board_view` is also the long-poll answer of the HTTP
API: a `snapshot` is that view plus the player count. Pure: no I/O, no clock.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import Any

import orjson

from .auth import Identity
from .ranking import TOP_N, Entry, Leaderboard, Outcome, Removal

# What browsers are told to use for their `ping` messages: under the 30 s idle timeout of
# common proxies and load balancers, with room for one late ping.
HEARTBEAT_INTERVAL_S = 25
PING_FRAME = b"\x89\x00"  # an unmasked protocol ping with no payload


class CloseCode(IntEnum):
    """WebSocket close codes (docs/protocol.md#close-codes)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    POLICY = 1008
    TOO_BIG = 1009
    INTERNAL = 1011
    TRY_AGAIN_LATER = 1013
    AUTH = 4401
    FORBIDDEN = 4403


def encode_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """An unmasked, unfragmented, uncompressed server frame (RFC 6455 section 5.2)."""
    length = len(payload)
    first = 0x80 | opcode
    if length < 126:
        return bytes((first, length)) + payload
    if length <= 0xFFFF:
        return struct.pack("!BBH", first, 126, length) + payload
    return struct.pack("!BBQ", first, 127, length) + payload


def message(kind: str, data: dict[str, Any]) -> bytes:
    """The framed JSON envelope `{"type", "data"}`."""
    return encode_frame(orjson.dumps({"type": kind, "data": data}))


# -- board state -----------------------------------------------------------------------------


def top_10(ranks: Leaderboard) -> list[dict[str, Any]]:
    """The `top_10` of every state message: the first TOP_N entries."""
    return [e.to_json() for e in ranks.top(TOP_N)]


def board_view(board_id: str, ranks: Leaderboard, you: Entry | None) -> dict[str, Any]:
    """`{board, seq, top_10, you}`: the state a snapshot (and a long-poll answer) carries."""
    return {
        "board": board_id,
        "seq": ranks.seq,
        "top_10": top_10(ranks),
        "you": you.to_json() if you is not None else None,
    }


def snapshot(board_id: str, ranks: Leaderboard, you: Entry | None) -> bytes:
    """`snapshot`: the board view and its player count."""
    return message("snapshot", {**board_view(board_id, ranks, you), "total_players": len(ranks)})


def updated_user(outcome: Outcome) -> dict[str, Any]:
    """The `updated_user` of a score_update: who moved, and where to."""
    return {
        "user_id": outcome.user_id,
        "name": outcome.name,
        "score": outcome.score,
        "rank": outcome.rank,
        "previous_rank": outcome.previous_rank,
    }


def removed_user(removal: Removal) -> dict[str, Any]:
    """The `updated_user` of a score_update for a removed entry: it has no rank any more."""
    return {
        "user_id": removal.user_id,
        "name": removal.name,
        "score": None,
        "rank": None,
        "previous_rank": removal.previous_rank,
    }


def score_update(board_id: str, ranks: Leaderboard, updated_user: dict[str, Any] | None) -> bytes:
    """`score_update`: the board's new top 10 and the newest change that touched it."""
    return message(
        "score_update",
        {
            "board": board_id,
            "seq": ranks.seq,
            "top_10": top_10(ranks),
            "updated_user": updated_user,
        },
    )


def rank_update(
    board_id: str, *, seq: int, rank: int | None, previous_rank: int | None, score: int | None
) -> bytes:
    """`rank_update`: this connection's own user moved on a subscribed board (rank and score
    None: their entry was removed)."""
    return message(
        "rank_update",
        {
            "board": board_id,
            "seq": seq,
            "rank": rank,
            "previous_rank": previous_rank,
            "score": score,
        },
    )


# -- replies ---------------------------------------------------------------------------------


def ack(request_id: str, result: dict[str, Any]) -> bytes:
    """`ack`: a submit_score became durable; `result` is the HTTP API's Result."""
    return message("ack", {"request_id": request_id, **result})


def error(
    code: str, text: str, *, request_id: Any = None, retry_after: float | None = None
) -> bytes:
    """`error`: a message failed, or the connection is about to close."""
    data: dict[str, Any] = {"code": code, "message": text}
    if request_id is not None:
        data["request_id"] = request_id
    if retry_after is not None:
        data["retry_after"] = round(retry_after, 3)  # seconds, to the millisecond
    return message("error", data)


def pong(t: Any, server_time: str) -> bytes:
    """`pong`: the answer to a client `ping`, echoing its `t`."""
    return message("pong", {"t": t, "server_time": server_time})


def connection_status(
    *, connection_id: str, user_count: int, identity: Identity | None, server_time: str
) -> bytes:
    """`connection_status`: sent on open, then while `user_count` changes."""
    user = (
        {
            "user_id": identity.sub,
            "name": identity.name or identity.sub,
            "role": identity.role.value,
        }
        if identity is not None
        else None
    )
    return message(
        "connection_status",
        {
            "status": "connected",
            "user_count": user_count,
            "connection_id": connection_id,
            "user": user,
            "heartbeat_interval": HEARTBEAT_INTERVAL_S,
            "server_time": server_time,
        },
    )
