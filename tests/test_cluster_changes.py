"""The wire form of cluster change records: round trips, and junk refused with ValueError."""

from __future__ import annotations

import pytest

from scoreboard.cluster import changes
from scoreboard.cluster.changes import (
    BoardChanged,
    BoardDeleted,
    RemovalChange,
    ResetChange,
    ScoreChange,
)

RECORDS = [
    ScoreChange("b", 7, "ann", "Ann", 120, -3, 7, 1764190000.125),
    ResetChange("b", 8, 2, 1764190001.5),
    RemovalChange("b", 9, "ann"),
    BoardChanged("b"),
    BoardDeleted("b"),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_every_record_survives_the_wire(record: changes.Change) -> None:
    assert changes.decode(changes.encode(record)) == record


@pytest.mark.parametrize(
    "junk",
    [
        b"",
        b"[]",
        b'{"kind": "score"}',
        b'{"v": 1, "kind": "nonsense", "board_id": "b"}',
        b'{"v": 99, "kind": "board", "board_id": "b"}',
        b'{"v": 1, "kind": "score", "board_id": "b"}',
        b'{"v": 1, "kind": "board", "board_id": "b", "extra": 1}',
    ],
)
def test_junk_is_refused_with_value_error(junk: bytes) -> None:
    with pytest.raises(ValueError):
        changes.decode(junk)
