"""What one committed change did to a board, as every process of a cluster applies it.

Each record carries the result the database decided (a player's stored pair, not the score
that was submitted) and the board's seq after the change, which is the board's version: a
replica applies a board's changes in seq order, ignores one it already holds, and reads the
board back from the database when one goes missing. Applying a record twice, or one older
than the replica, therefore changes nothing.

Pure data and its wire form (orjson); no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

#: Bumped when a record's wire form changes incompatibly: a process drops what it cannot read
#: (and reads the board back) rather than misapplying it.
WIRE_VERSION = 1


@dataclass(frozen=True, slots=True)
class ScoreChange:
    """A player's stored pair after an accepted submission that changed it."""

    board_id: str
    seq: int  # the board's seq after this change
    user_id: str
    name: str
    score: int
    subscore: int
    reached_seq: int  # tie-break: the board seq at which this pair was reached
    updated_at: float  # unix seconds


@dataclass(frozen=True, slots=True)
class ResetChange:
    """A season ended: the board is empty from this seq on, in season `season`."""

    board_id: str
    seq: int
    season: int  # the season now in force
    started_at: float  # unix seconds


@dataclass(frozen=True, slots=True)
class RemovalChange:
    """A player's entry was removed from the board."""

    board_id: str
    seq: int
    user_id: str


@dataclass(frozen=True, slots=True)
class BoardChanged:
    """A board was created or its settings edited: read its settings back."""

    board_id: str


@dataclass(frozen=True, slots=True)
class BoardDeleted:
    """A board and its standings are gone."""

    board_id: str


Change = ScoreChange | ResetChange | RemovalChange | BoardChanged | BoardDeleted

_KINDS: dict[str, type[Any]] = {
    "score": ScoreChange,
    "reset": ResetChange,
    "removal": RemovalChange,
    "board": BoardChanged,
    "deleted": BoardDeleted,
}
_KIND_OF = {cls: kind for kind, cls in _KINDS.items()}


def encode(change: Change) -> bytes:
    """The record as published on Redis."""
    fields = {name: getattr(change, name) for name in change.__slots__}
    return orjson.dumps({"v": WIRE_VERSION, "kind": _KIND_OF[type(change)], **fields})


def decode(data: bytes | str) -> Change:
    """The record a message carries; ValueError for anything this version cannot apply."""
    try:
        message = orjson.loads(data)
        kind = message.pop("kind")
        version = message.pop("v")
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError) as exc:
        raise ValueError(f"not a change record: {data[:80]!r}") from exc
    cls = _KINDS.get(kind)
    if version != WIRE_VERSION or cls is None:
        raise ValueError(f"unknown change record (v={version!r}, kind={kind!r})")
    try:
        change: Change = cls(**message)
    except TypeError as exc:
        raise ValueError(f"malformed {kind} record: {exc}") from exc
    return change
