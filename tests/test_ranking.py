"""Tests of scoreboard.ranking: operators, orders, ties, seq, pages, around-me.

The property tests run random operation sequences against a Leaderboard and against a plain
model kept here (a dict of records sorted with `sorted()` on every check), and compare every
rank, `top()`, `page()` and `around()`.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scoreboard.errors import ValidationFailed
from scoreboard.ranking import (
    TOP_N,
    Entry,
    Leaderboard,
    Operator,
    Order,
    Record,
    _RankedList,
    apply_operator,
    format_timestamp,
)

NOW = 1_764_104_400.0  # 2025-11-25T21:00:00Z


def board_with(order: Order, operator: Operator, *scores: tuple[str, int]) -> Leaderboard:
    """A board where each (user_id, score) was submitted in turn, one second apart."""
    board = Leaderboard(order, operator)
    for i, (user_id, score) in enumerate(scores):
        board.submit(user_id, user_id.upper(), score, 0, now=NOW + i)
    return board


def ranking(board: Leaderboard) -> list[str]:
    return [e.user_id for e in board.page(0, len(board))]


# --- apply_operator ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operator", "order", "old", "new", "expected"),
    [
        (Operator.BEST, Order.DESC, None, (5, 0), (5, 0)),
        (Operator.BEST, Order.DESC, (5, 0), (6, 0), (6, 0)),
        (Operator.BEST, Order.DESC, (5, 0), (4, 9), (5, 0)),
        (Operator.BEST, Order.DESC, (5, 1), (5, 2), (5, 2)),
        (Operator.BEST, Order.DESC, (5, 2), (5, 1), (5, 2)),
        (Operator.BEST, Order.ASC, None, (5, 0), (5, 0)),
        (Operator.BEST, Order.ASC, (5, 0), (4, 9), (4, 9)),
        (Operator.BEST, Order.ASC, (5, 0), (6, -9), (5, 0)),
        (Operator.BEST, Order.ASC, (5, 2), (5, 1), (5, 1)),
        (Operator.BEST, Order.ASC, (5, 2), (5, 2), (5, 2)),
        (Operator.BEST, Order.DESC, (5, 2), (5, 2), (5, 2)),
        (Operator.SET, Order.DESC, (5, 0), (1, 1), (1, 1)),
        (Operator.SET, Order.ASC, (1, 1), (5, 0), (5, 0)),
        (Operator.SET, Order.DESC, None, (-3, 0), (-3, 0)),
        (Operator.INCR, Order.DESC, None, (3, 1), (3, 1)),
        (Operator.INCR, Order.DESC, (5, 2), (3, -4), (8, -2)),
        (Operator.INCR, Order.ASC, (5, 2), (-7, 1), (-2, 3)),
        (Operator.INCR, Order.ASC, (5, 2), (0, 0), (5, 2)),
    ],
)
def test_apply_operator(operator, order, old, new, expected):
    assert apply_operator(operator, order, old, new) == expected


def test_apply_operator_takes_plain_strings():
    assert apply_operator("best", "asc", (5, 0), (3, 0)) == (3, 0)
    assert apply_operator("incr", "desc", (5, 0), (3, 1)) == (8, 1)


def test_apply_operator_rejects_unknown_values():
    with pytest.raises(ValueError, match="'max'"):
        apply_operator("max", Order.DESC, (1, 0), (2, 0))
    with pytest.raises(ValueError, match="'up'"):
        apply_operator(Operator.BEST, "up", (1, 0), (2, 0))


# --- construction -----------------------------------------------------------------------------


def test_order_and_operator_from_strings():
    board = Leaderboard("asc", "incr", seq=7)
    assert board.order is Order.ASC
    assert board.operator is Operator.INCR
    assert board.seq == 7
    assert len(board) == 0


def test_bad_construction_values():
    with pytest.raises(ValueError):
        Leaderboard("up", Operator.BEST)
    with pytest.raises(ValueError):
        Leaderboard(Order.DESC, "max")
    with pytest.raises(ValueError, match="-1"):
        Leaderboard(Order.DESC, Operator.BEST, seq=-1)


# --- submit -----------------------------------------------------------------------------------


def test_first_score():
    board = Leaderboard(Order.DESC, Operator.BEST)
    out = board.submit("alice", "Alice", 120, 3, now=NOW)
    assert (out.user_id, out.name, out.score, out.subscore) == ("alice", "Alice", 120, 3)
    assert out.rank == 1
    assert out.previous_rank is None
    assert out.previous_score is None
    assert out.improved is True
    assert out.seq == 1 == board.seq
    assert out.record == Record("alice", "Alice", 120, 3, 1, NOW)
    assert out.top_changed is True
    assert "alice" in board
    assert board.record("alice") is out.record


@pytest.mark.parametrize("operator", list(Operator))
def test_first_score_is_stored_as_submitted(operator):
    board = Leaderboard(Order.ASC, operator)
    out = board.submit("u", "U", -4, 2, now=NOW)
    assert (out.score, out.subscore, out.improved) == (-4, 2, True)


def test_best_desc():
    board = board_with(Order.DESC, Operator.BEST, ("a", 10), ("b", 20))
    out = board.submit("a", "A", 5, 0, now=NOW + 10)
    assert (out.score, out.improved, out.seq, out.rank, out.previous_rank) == (10, False, 2, 2, 2)
    assert out.previous_score == 10
    assert board.record("a").updated_at == NOW  # a rejected submission changes nothing
    out = board.submit("a", "A", 25, 0, now=NOW + 11)
    assert (out.score, out.improved, out.seq, out.rank, out.previous_rank) == (25, True, 3, 1, 2)
    assert out.previous_score == 10
    assert board.record("a").updated_at == NOW + 11
    assert ranking(board) == ["a", "b"]


def test_best_asc():
    board = board_with(Order.ASC, Operator.BEST, ("a", 60), ("b", 50))
    assert ranking(board) == ["b", "a"]
    out = board.submit("a", "A", 70, 0, now=NOW)
    assert (out.score, out.improved, out.rank) == (60, False, 2)
    out = board.submit("a", "A", 40, 0, now=NOW)
    assert (out.score, out.improved, out.rank, out.previous_rank) == (40, True, 1, 2)
    assert ranking(board) == ["a", "b"]


@pytest.mark.parametrize(
    ("order", "better", "worse"),
    [(Order.DESC, (10, 6), (9, 99)), (Order.ASC, (10, 4), (11, -99))],
)
def test_best_compares_the_pair_as_one(order, better, worse):
    board = Leaderboard(order, Operator.BEST)
    board.submit("a", "A", 10, 5, now=NOW)
    assert board.submit("a", "A", *worse, now=NOW).improved is False
    out = board.submit("a", "A", *better, now=NOW)
    assert (out.score, out.subscore, out.improved) == (*better, True)


def test_best_equal_pair_keeps_the_tie_place():
    board = board_with(Order.DESC, Operator.BEST, ("b", 10), ("a", 10))
    assert ranking(board) == ["b", "a"]
    out = board.submit("b", "B", 10, 0, now=NOW + 5)
    assert (out.improved, out.rank, out.seq) == (False, 1, 2)
    assert board.record("b").reached_seq == 1
    assert ranking(board) == ["b", "a"]


def test_set_replaces_even_with_a_worse_pair():
    board = board_with(Order.DESC, Operator.SET, ("a", 10), ("b", 5))
    out = board.submit("a", "A", 1, 0, now=NOW)
    assert (out.score, out.improved, out.rank, out.previous_rank, out.seq) == (1, True, 2, 1, 3)
    assert ranking(board) == ["b", "a"]


def test_set_with_the_identical_pair_is_no_change():
    board = board_with(Order.DESC, Operator.SET, ("a", 10), ("b", 10))
    out = board.submit("a", "A", 10, 0, now=NOW + 9)
    assert (out.improved, out.seq, out.rank, out.previous_rank) == (False, 2, 1, 1)
    assert board.record("a").reached_seq == 1
    assert board.record("a").updated_at == NOW


def test_set_away_and_back_loses_the_tie_place():
    board = board_with(Order.DESC, Operator.SET, ("a", 10), ("b", 10))
    board.submit("a", "A", 9, 0, now=NOW)
    out = board.submit("a", "A", 10, 0, now=NOW)
    assert (out.improved, out.rank) == (True, 2)
    assert ranking(board) == ["b", "a"]


def test_incr_adds_both_components():
    board = Leaderboard(Order.DESC, Operator.INCR)
    board.submit("a", "A", 5, 1, now=NOW)
    out = board.submit("a", "A", 3, 2, now=NOW)
    assert (out.score, out.subscore, out.improved, out.previous_score) == (8, 3, True, 5)
    out = board.submit("a", "A", -10, -1, now=NOW)
    assert (out.score, out.subscore, out.improved) == (-2, 2, True)


def test_incr_by_zero_is_no_change():
    board = Leaderboard(Order.ASC, Operator.INCR)
    board.submit("a", "A", 5, 1, now=NOW)
    out = board.submit("a", "A", 0, 0, now=NOW + 1)
    assert (out.score, out.subscore, out.improved, out.seq) == (5, 1, False, 1)
    assert board.record("a").updated_at == NOW


def test_name_changes_without_a_pair_change():
    board = board_with(Order.DESC, Operator.BEST, ("a", 10))
    before = board.record("a")
    out = board.submit("a", "Alice", 3, 0, now=NOW + 7)
    assert (out.improved, out.name, out.seq, out.top_changed) == (False, "Alice", 1, False)
    assert out.record.name == "Alice"
    assert board.entry("a").name == "Alice"
    assert board.record("a").reached_seq == before.reached_seq
    assert board.record("a").updated_at == before.updated_at
    assert before.name == "A"  # records handed out are never mutated


def test_outcome_record_is_not_mutated_by_later_submissions():
    board = Leaderboard(Order.DESC, Operator.SET)
    first = board.submit("a", "A", 1, 0, now=NOW).record
    board.submit("a", "A", 2, 0, now=NOW + 1)
    assert first == Record("a", "A", 1, 0, 1, NOW)


# --- ordering and ties ------------------------------------------------------------------------


@pytest.mark.parametrize("order", list(Order))
def test_tie_goes_to_the_first_to_reach_the_pair(order):
    board = board_with(order, Operator.SET, ("z", 7), ("m", 7), ("a", 7))
    assert ranking(board) == ["z", "m", "a"]
    assert [board.rank_of(u) for u in ("z", "m", "a")] == [1, 2, 3]


@pytest.mark.parametrize("order", list(Order))
def test_tie_on_reached_seq_goes_to_the_smaller_user_id(order):
    board = Leaderboard(order, Operator.BEST)
    for user_id in ("c", "a", "b"):
        board.put(Record(user_id, user_id, 7, 1, 4, NOW), seq=4)
    board.put(Record("d", "d", 7, 1, 3, NOW), seq=4)
    assert ranking(board) == ["d", "a", "b", "c"]


def test_subscore_breaks_score_ties():
    desc = Leaderboard(Order.DESC, Operator.SET)
    asc = Leaderboard(Order.ASC, Operator.SET)
    for board in (desc, asc):
        board.submit("lo", "lo", 5, 1, now=NOW)
        board.submit("hi", "hi", 5, 2, now=NOW)
        board.submit("top", "top", 6, -5, now=NOW)
    assert ranking(desc) == ["top", "hi", "lo"]
    assert ranking(asc) == ["lo", "hi", "top"]


def test_ranks_are_ordinal():
    board = board_with(Order.DESC, Operator.BEST, ("a", 5), ("b", 5), ("c", 5), ("d", 4))
    assert [e.rank for e in board.top()] == [1, 2, 3, 4]


# --- seq --------------------------------------------------------------------------------------


def test_submit_seq_never_goes_back():
    board = Leaderboard(Order.DESC, Operator.SET, seq=10)
    assert board.submit("a", "A", 1, 0, now=NOW, seq=5).seq == 11
    assert board.submit("a", "A", 2, 0, now=NOW, seq=11).seq == 12
    assert board.submit("a", "A", 3, 0, now=NOW, seq=40).seq == 40
    assert board.record("a").reached_seq == 40
    assert board.submit("a", "A", 4, 0, now=NOW).seq == 41


def test_unchanged_submission_does_not_advance_seq_even_when_given_one():
    board = board_with(Order.DESC, Operator.BEST, ("a", 5))
    out = board.submit("a", "A", 1, 0, now=NOW, seq=99)
    assert (out.seq, board.seq) == (1, 1)


def test_put_clear_load_never_lower_seq():
    board = Leaderboard(Order.DESC, Operator.BEST, seq=10)
    board.put(Record("a", "A", 1, 0, 3, NOW), seq=4)
    assert board.seq == 10
    board.put(Record("a", "A", 2, 0, 12, NOW), seq=12)
    assert board.seq == 12
    board.clear(seq=2)
    assert (board.seq, len(board)) == (12, 0)
    board.clear(seq=20)
    assert board.seq == 20
    board.load([Record("a", "A", 1, 0, 3, NOW)], seq=5)
    assert board.seq == 20
    board.load([Record("a", "A", 1, 0, 3, NOW)], seq=25)
    assert board.seq == 25


def test_seq_covers_every_stored_reached_seq():
    # A later submission must rank behind everyone who reached the same pair before it.
    board = Leaderboard(Order.DESC, Operator.SET)
    board.load([Record("b", "B", 5, 0, 30, NOW)], seq=10)
    assert board.seq == 30
    board.put(Record("c", "C", 5, 0, 35, NOW), seq=31)
    assert board.seq == 35
    out = board.submit("a", "A", 5, 0, now=NOW)
    assert (out.seq, out.rank) == (36, 3)


# --- apply: records decided elsewhere (cluster replicas) --------------------------------------


@pytest.mark.parametrize("operator", list(Operator))
@pytest.mark.parametrize("order", list(Order))
def test_apply_reports_what_submit_reported(order, operator):
    # Twin boards: one decides with submit, the other is handed the decided records.
    rng = random.Random(f"{order}{operator}")
    deciding = Leaderboard(order, operator)
    replica = Leaderboard(order, operator)
    for step in range(400):
        user = f"u{rng.randrange(30)}"
        decided = deciding.submit(user, user.upper(), rng.randrange(-50, 50), 0, now=NOW + step)
        if not decided.improved:
            continue
        applied = replica.apply(decided.record, seq=decided.seq)
        assert applied == decided
        assert replica.seq == deciding.seq
    assert replica.top(len(deciding)) == deciding.top(len(deciding))


def test_apply_never_lowers_seq_and_keeps_the_tie_break():
    board = Leaderboard(Order.DESC, Operator.SET, seq=5)
    first = board.apply(Record("b", "B", 7, 0, 6, NOW), seq=6)
    assert (first.rank, first.previous_rank, first.previous_score, first.top_changed) == (
        1, None, None, True,
    )  # fmt: skip
    out = board.apply(Record("a", "A", 7, 0, 7, NOW), seq=7)
    assert (out.rank, out.seq) == (2, 7)  # b reached 7 first
    board.apply(Record("a", "A", 8, 0, 9, NOW), seq=3)
    assert board.seq == 9  # the record's reached_seq counts too
    assert ranking(board) == ["a", "b"]


def test_placement_of_a_record_stored_or_not():
    board = board_with(Order.DESC, Operator.BEST, ("a", 10), ("b", 5))
    assert board.placement(board.record("b")) == 2
    assert board.placement(Record("c", "C", 7, 0, 9, NOW)) == 2
    assert board.placement(Record("c", "C", 1, 0, 9, NOW)) == 3


def test_withdraw_at_a_given_seq_and_advance():
    board = board_with(Order.DESC, Operator.BEST, ("a", 10), ("b", 5))
    removal = board.withdraw("a", seq=7)
    assert removal is not None
    assert (removal.previous_rank, removal.seq, board.seq) == (1, 7, 7)
    assert board.withdraw("a", seq=8) is None
    assert board.seq == 7  # nothing changed, nothing spent
    removal = board.withdraw("b", seq=1)
    assert removal is not None and removal.seq == 7  # never back
    board.advance(9)
    board.advance(4)
    assert board.seq == 9


# --- put / remove / load / clear --------------------------------------------------------------


def test_put_replaces_the_record_as_given():
    board = board_with(Order.DESC, Operator.BEST, ("a", 10), ("b", 5))
    record = Record("a", "Alice", 1, 0, 9, NOW + 3)
    board.put(record, seq=9)
    assert board.record("a") is record
    assert ranking(board) == ["b", "a"]
    assert len(board) == 2


def test_remove():
    board = board_with(Order.DESC, Operator.BEST, ("a", 10), ("b", 5), ("c", 1))
    board.remove("a")
    board.remove("nobody")
    assert "a" not in board
    assert board.rank_of("a") is None
    assert board.record("a") is None
    assert board.entry("a") is None
    assert ranking(board) == ["b", "c"]
    assert board.rank_of("c") == 2
    assert board.seq == 3  # removal is not a score change


def test_load_replaces_everything():
    board = board_with(Order.DESC, Operator.BEST, ("old", 100))
    records = [
        Record("a", "A", 5, 0, 1, NOW),
        Record("b", "B", 9, 0, 2, NOW),
        Record("a", "A2", 1, 0, 3, NOW),  # a repeated user_id: the last wins
        Record("c", "C", 5, 0, 0, NOW),
    ]
    board.load(records, seq=3)
    assert "old" not in board
    assert len(board) == 3
    assert ranking(board) == ["b", "c", "a"]
    assert board.record("a").name == "A2"
    board.load([], seq=0)
    assert (len(board), board.top(), board.seq) == (0, [], 3)


def test_load_asc():
    board = Leaderboard(Order.ASC, Operator.BEST)
    board.load([Record(str(i), str(i), 100 - i, 0, i, NOW) for i in range(50)], seq=50)
    assert ranking(board) == [str(i) for i in range(49, -1, -1)]
    out = board.submit("0", "0", 1, 0, now=NOW)
    assert (out.rank, out.previous_rank, out.seq) == (1, 50, 51)


def test_clear():
    board = board_with(Order.DESC, Operator.BEST, ("a", 10), ("b", 5))
    board.clear(seq=2)
    assert (len(board), board.top(), board.around("a", 3)) == (0, [], [])
    out = board.submit("b", "B", 1, 0, now=NOW)
    assert (out.previous_rank, out.rank, out.seq) == (None, 1, 3)


def test_preview_changes_nothing():
    board = board_with(Order.DESC, Operator.INCR, ("a", 10))
    assert board.preview("a", 5, 1) == (15, 1)
    assert board.preview("new", 5, 1) == (5, 1)
    assert board.record("a").score == 10
    assert "new" not in board
    assert board.seq == 1


# --- reads ------------------------------------------------------------------------------------


def numbered_board(n: int) -> Leaderboard:
    """Players p00..p(n-1) ranked in that order."""
    return board_with(Order.DESC, Operator.BEST, *((f"p{i:02d}", 1000 - i) for i in range(n)))


def test_entry_and_rank_of():
    board = numbered_board(5)
    assert board.rank_of("p03") == 4
    assert board.entry("p03") == Entry(4, "p03", "P03", 997, 0, NOW + 3)
    assert board.rank_of("nobody") is None
    assert board.entry("nobody") is None


def test_page_bounds():
    board = numbered_board(25)
    assert [e.rank for e in board.page(0, 3)] == [1, 2, 3]
    assert [e.rank for e in board.page(10, 10)] == list(range(11, 21))
    assert [e.rank for e in board.page(20, 10)] == [21, 22, 23, 24, 25]
    assert board.page(25, 10) == []
    assert board.page(1000, 10) == []
    assert board.page(3, 0) == []
    with pytest.raises(ValueError, match="-1"):
        board.page(-1, 10)
    with pytest.raises(ValueError, match="-2"):
        board.page(0, -2)


def test_the_top_is_the_first_ten():
    # The product promises a top 10 (top_10 in frames, pages and the long-poll): pin the size.
    assert TOP_N == 10
    assert len(numbered_board(11).top()) == 10
    # A better subscore moves nobody: the 11th player's change is outside the top, the 10th's in.
    eleventh = numbered_board(11).submit("p10", "P10", 990, 1, now=NOW)
    assert eleventh.improved and eleventh.rank == 11 and not eleventh.top_changed
    tenth = numbered_board(11).submit("p09", "P09", 991, 1, now=NOW)
    assert tenth.improved and tenth.rank == 10 and tenth.top_changed


def test_top():
    board = numbered_board(25)
    assert [e.user_id for e in board.top()] == [f"p{i:02d}" for i in range(TOP_N)]
    assert [e.rank for e in board.top(3)] == [1, 2, 3]
    assert len(numbered_board(4).top()) == 4
    assert Leaderboard(Order.DESC, Operator.BEST).top() == []


def test_around_middle_and_edges():
    board = numbered_board(20)
    assert [e.rank for e in board.around("p10", 2)] == [9, 10, 11, 12, 13]
    assert [e.rank for e in board.around("p00", 2)] == [1, 2, 3]
    assert [e.rank for e in board.around("p01", 2)] == [1, 2, 3, 4]
    assert [e.rank for e in board.around("p19", 2)] == [18, 19, 20]
    assert [e.rank for e in board.around("p18", 3)] == [16, 17, 18, 19, 20]
    assert [e.user_id for e in board.around("p07", 0)] == ["p07"]
    assert [e.rank for e in board.around("p05", 100)] == list(range(1, 21))
    assert board.around("nobody", 3) == []
    with pytest.raises(ValueError, match="-1"):
        board.around("p05", -1)


def test_around_a_single_player():
    board = numbered_board(1)
    assert [e.user_id for e in board.around("p00", 5)] == ["p00"]


def test_top_changed():
    scores = [(f"p{i:02d}", 1000 - 10 * i) for i in range(12)]  # p10 at rank 11, p11 at 12
    board = board_with(Order.DESC, Operator.BEST, *scores)
    out = board.submit("p11", "P11", 895, 0, now=NOW)  # improved, 12 -> 12
    assert (out.improved, out.rank, out.top_changed) == (True, 12, False)
    out = board.submit("p10", "P10", 955, 0, now=NOW)  # 11 -> 6
    assert (out.previous_rank, out.rank, out.top_changed) == (11, 6, True)
    out = board.submit("p00", "P00", 100, 0, now=NOW)  # no change at rank 1
    assert (out.improved, out.rank, out.top_changed) == (False, 1, False)

    board = board_with(Order.DESC, Operator.SET, *scores)
    out = board.submit("p09", "P09", 0, 0, now=NOW)  # 10 -> 12: leaves the top
    assert (out.previous_rank, out.rank, out.top_changed) == (10, 12, True)
    out = board.submit("p11", "P11", 905, 0, now=NOW)  # 11 -> 10: enters the top
    assert (out.previous_rank, out.rank, out.top_changed) == (11, 10, True)
    out = board.submit("new", "New", -5, 0, now=NOW)  # first score, at rank 13
    assert (out.previous_rank, out.rank, out.top_changed) == (None, 13, False)
    out = board.submit("new", "New", 2000, 0, now=NOW)  # 13 -> 1
    assert (out.previous_rank, out.rank, out.top_changed) == (13, 1, True)


# --- Entry.to_json ----------------------------------------------------------------------------


def test_entry_to_json():
    entry = Entry(3, "alice", "Alice", 1200, -4, NOW + 0.1234)
    assert entry.to_json() == {
        "rank": 3,
        "user_id": "alice",
        "name": "Alice",
        "score": 1200,
        "subscore": -4,
        "updated_at": "2025-11-25T21:00:00.123Z",
    }
    assert list(entry.to_json()) == ["rank", "user_id", "name", "score", "subscore", "updated_at"]


@pytest.mark.parametrize(
    ("ts", "text"),
    [
        (0.0, "1970-01-01T00:00:00.000Z"),
        (NOW, "2025-11-25T21:00:00.000Z"),
        (NOW + 0.9996, "2025-11-25T21:00:01.000Z"),
        (1_795_640_400.5, "2026-11-25T21:00:00.500Z"),
    ],
)
def test_format_timestamp(ts, text):
    assert format_timestamp(ts) == text


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False))
def test_format_timestamp_round_trips_to_the_millisecond(ts):
    text = format_timestamp(ts)
    parsed = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert len(text) == 24
    assert abs(parsed.timestamp() - ts) <= 0.0005 + 1e-6


# --- the ranked list --------------------------------------------------------------------------


def check_ranked_list(ops: list[tuple[bool, int]], probes: list[int]) -> None:
    """Run add/remove ops on a _RankedList with tiny sublists and on a plain sorted list."""
    ranked = _RankedList()
    ranked._reset(4)  # a tiny load factor: sublists split and merge all the time
    plain: list[int] = []
    for add, value in ops:
        if add and value not in plain:
            index = ranked.add_ranked(value)
            assert index == bisect.bisect_left(plain, value)
            plain.insert(index, value)
        elif value in plain:
            index = ranked.remove_ranked(value)
            assert index == plain.index(value)
            del plain[index]
        else:
            with pytest.raises(ValueError):
                ranked.remove_ranked(value)
        assert len(ranked) == len(plain)
    ranked._check()
    assert list(ranked) == plain
    for value in probes:
        assert ranked.bisect_left(value) == bisect.bisect_left(plain, value)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.integers(0, 80)), min_size=20, max_size=300),
    st.lists(st.integers(-1, 81), max_size=5),
)
def test_ranked_list_indexes_match_a_plain_list(ops, probes):
    check_ranked_list(ops, probes)


def test_ranked_list_with_many_sublists():
    rng = random.Random(7)
    # Mostly adds first (the list grows to ~100 sublists), then mostly removes (they merge).
    ops = [(rng.random() < 0.8, rng.randrange(1000)) for _ in range(3000)]
    ops += [(rng.random() < 0.2, rng.randrange(1000)) for _ in range(6000)]
    check_ranked_list(ops, list(range(-1, 1001, 37)))


def test_many_players_match_a_sorted_model():
    # 300 players over many small sublists, so that ranks cross sublist boundaries.
    rng = random.Random(3)
    for order, operator in [(Order.DESC, Operator.BEST), (Order.ASC, Operator.INCR)]:
        board = Leaderboard(order, operator)
        board._sorted._reset(8)
        model = Model(order, operator)
        for step in range(1500):
            user_id = f"u{rng.randrange(300):03d}"
            pair = (rng.randrange(-20, 20), rng.randrange(3))
            old = model.rows.get(user_id)
            before = [user for user, _ in model.standings()]
            stored = model.stored_pair(old, pair)
            if old is None or stored != (old.score, old.subscore):
                model.seq += 1
                model.rows[user_id] = Row(user_id, *stored, model.seq, NOW + step)
            out = board.submit(user_id, user_id, *pair, now=NOW + step)
            after = [user for user, _ in model.standings()]
            assert out.rank == after.index(user_id) + 1
            assert out.previous_rank == (before.index(user_id) + 1 if old else None)
        board._sorted._check()
        assert board.page(0, 1000) == model.entries()


# --- model check ------------------------------------------------------------------------------

USERS = ("a", "b", "c", "d", "e")
# Small ranges so that equal pairs, equal reached_seq values and no-op submissions are common.
pairs = st.tuples(st.integers(-3, 3), st.integers(-1, 1))
seqs = st.integers(0, 60)
users = st.sampled_from(USERS)
submit_ops = st.tuples(
    st.just("submit"), users, st.sampled_from(("N1", "N2")), pairs, st.none() | seqs
)
put_ops = st.tuples(st.just("put"), users, st.just("P"), pairs, seqs, seqs)
remove_ops = st.tuples(st.just("remove"), users)
clear_ops = st.tuples(st.just("clear"), seqs)
load_ops = st.tuples(st.just("load"), st.lists(st.tuples(users, pairs, seqs), max_size=6), seqs)
operations = st.lists(
    st.one_of(submit_ops, submit_ops, submit_ops, put_ops, remove_ops, clear_ops, load_ops),
    max_size=30,
)


@dataclass
class Row:
    name: str
    score: int
    subscore: int
    reached_seq: int
    updated_at: float


class Model:
    """The leaderboard rules written out plainly, independent of ranking.py."""

    def __init__(self, order: Order, operator: Operator) -> None:
        self.order = order
        self.operator = operator
        self.rows: dict[str, Row] = {}
        self.seq = 0

    def stored_pair(self, old: Row | None, new: tuple[int, int]) -> tuple[int, int]:
        if old is None or self.operator == "set":
            return new
        pair = (old.score, old.subscore)
        if self.operator == "incr":
            return (pair[0] + new[0], pair[1] + new[1])
        strictly_better = new > pair if self.order == "desc" else new < pair
        return new if strictly_better else pair

    def standings(self) -> list[tuple[str, Row]]:
        # Python's sort is stable, also with reverse=True: sort by the tie-breaks first.
        rows = sorted(self.rows.items(), key=lambda item: (item[1].reached_seq, item[0]))
        rows.sort(key=lambda item: (item[1].score, item[1].subscore), reverse=self.order == "desc")
        return rows

    def entries(self) -> list[Entry]:
        return [
            Entry(rank, user_id, r.name, r.score, r.subscore, r.updated_at)
            for rank, (user_id, r) in enumerate(self.standings(), 1)
        ]


def check_reads(board: Leaderboard, model: Model) -> None:
    expected = model.entries()
    ranks = {e.user_id: e.rank for e in expected}
    assert len(board) == len(expected)
    assert board.seq == model.seq
    for user_id in USERS:
        assert (user_id in board) == (user_id in ranks)
        assert board.rank_of(user_id) == ranks.get(user_id)
        entry = board.entry(user_id)
        assert entry == (expected[ranks[user_id] - 1] if user_id in ranks else None)
        for radius in range(4):
            if user_id in ranks:
                i = ranks[user_id] - 1
                want = expected[max(0, i - radius) : i + radius + 1]
            else:
                want = []
            assert board.around(user_id, radius) == want
    assert board.top() == expected[:TOP_N]
    assert board.top(2) == expected[:2]
    for offset in range(len(expected) + 2):
        for limit in range(4):
            assert board.page(offset, limit) == expected[offset : offset + limit]


@pytest.mark.parametrize("operator", list(Operator))
@pytest.mark.parametrize("order", list(Order))
@settings(max_examples=200, deadline=None)
@given(ops=operations)
def test_matches_a_sorted_model(order, operator, ops):
    board = Leaderboard(order, operator)
    model = Model(order, operator)
    for step, op in enumerate(ops):
        now = NOW + step
        seq_before = board.seq
        kind = op[0]
        if kind == "submit":
            _, user_id, name, pair, seq = op
            old = model.rows.get(user_id)
            stored = model.stored_pair(old, pair)
            changed = old is None or stored != (old.score, old.subscore)
            previous_rank = board.rank_of(user_id)
            assert board.preview(user_id, *pair) == stored
            if changed:
                model.seq = seq if seq is not None and seq > model.seq else model.seq + 1
                model.rows[user_id] = Row(name, *stored, model.seq, now)
            else:
                old.name = name
            out = board.submit(user_id, name, *pair, now=now, seq=seq)
            rank = next(e.rank for e in model.entries() if e.user_id == user_id)
            assert (out.user_id, out.name, (out.score, out.subscore)) == (user_id, name, stored)
            assert (out.rank, out.previous_rank) == (rank, previous_rank)
            assert out.previous_score == (old.score if old else None)
            assert (out.improved, out.seq) == (changed, model.seq)
            assert out.record == board.record(user_id)
            in_top = rank <= TOP_N or (previous_rank is not None and previous_rank <= TOP_N)
            assert out.top_changed == (changed and in_top)
        elif kind == "put":
            _, user_id, name, pair, reached_seq, seq = op
            board.put(Record(user_id, name, *pair, reached_seq, now), seq=seq)
            model.rows[user_id] = Row(name, *pair, reached_seq, now)
            model.seq = max(model.seq, seq, reached_seq)
        elif kind == "remove":
            board.remove(op[1])
            model.rows.pop(op[1], None)
        elif kind == "clear":
            board.clear(seq=op[1])
            model.rows.clear()
            model.seq = max(model.seq, op[1])
        else:
            _, rows, seq = op
            board.load([Record(u, u, *pair, rs, now) for u, pair, rs in rows], seq=seq)
            model.rows = {u: Row(u, *pair, rs, now) for u, pair, rs in rows}
            model.seq = max(model.seq, seq, *(r.reached_seq for r in model.rows.values()))
        assert board.seq >= seq_before
        check_reads(board, model)


@pytest.mark.parametrize(
    ("operator", "first", "submitted", "refused"),
    [
        (Operator.BEST, 50, 150, "at most 100"),  # best/set: the submitted score is bounded
        (Operator.SET, 50, -1, "at least 0"),
        (Operator.INCR, 60, 60, "at most 100"),  # incr: the sum is bounded, not the step
    ],
)
def test_submit_applies_the_board_bounds_and_changes_nothing_when_it_refuses(
    operator, first, submitted, refused
):
    board = Leaderboard(Order.DESC, operator)
    board.submit("a", "A", first, 0, now=1.0, min_score=0, max_score=100)
    seq = board.seq
    with pytest.raises(ValidationFailed, match=refused):
        board.submit("a", "A", submitted, 0, now=2.0, min_score=0, max_score=100)
    assert (board.record("a").score, board.seq, len(board)) == (first, seq, 1)


def test_submit_refuses_a_stored_pair_beyond_safe_integers():
    board = Leaderboard(Order.DESC, Operator.INCR)
    board.submit("a", "A", 2**53 - 1, 0, now=1.0)
    with pytest.raises(ValidationFailed, match="2\\^53"):
        board.submit("a", "A", 1, 0, now=2.0)
    assert board.record("a").score == 2**53 - 1
