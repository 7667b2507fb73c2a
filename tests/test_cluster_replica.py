"""The apply order of change records (scoreboard.cluster.replica): each seq once, in order."""

from __future__ import annotations

import random

from scoreboard.cluster.changes import RemovalChange, ResetChange, ScoreChange
from scoreboard.cluster.replica import Replica


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def score(seq: int, board: str = "b") -> ScoreChange:
    return ScoreChange(board, seq, f"u{seq}", "U", seq, 0, seq, 1.0)


def seqs(changes) -> list[int]:
    return [c.seq for c in changes]


def loaded_replica(seq: int = 0, board: str = "b") -> tuple[Replica, Clock]:
    clock = Clock()
    replica = Replica(clock=clock, gap_wait_s=0.5)
    assert replica.loaded(board, seq) == []
    return replica, clock


def test_the_next_seq_applies_at_once_and_duplicates_are_dropped():
    replica, _ = loaded_replica(3)
    assert seqs(replica.offer(score(4))) == [4]
    assert replica.offer(score(4)) == []  # duplicate / own echo
    assert replica.offer(score(2)) == []  # older than the replica
    assert replica.applied("b") == 4
    assert replica.overdue() == []


def test_a_record_ahead_waits_for_its_predecessor_then_both_apply_in_order():
    replica, clock = loaded_replica(0)
    assert replica.offer(score(2)) == []
    assert replica.offer(score(3)) == []
    clock.now += 0.3
    assert replica.overdue() == []
    reset = ResetChange("b", 1, 2, 5.0)
    assert replica.offer(reset) == [reset, score(2), score(3)]
    clock.now += 10
    assert replica.overdue() == []  # the gap closed


def test_a_gap_that_stays_open_names_the_board_once_and_the_read_back_releases_the_rest():
    replica, clock = loaded_replica(0)
    replica.offer(score(1))
    assert replica.offer(score(3)) == []
    clock.now += 0.49
    assert replica.overdue() == []
    clock.now += 0.02
    assert replica.overdue() == ["b"]
    assert replica.overdue() == []  # being read back: asked for once
    assert replica.offer(score(4)) == []  # held while the read runs
    removal = RemovalChange("b", 5, "u1")
    replica.offer(removal)
    # The read saw seq 3: 3 is dropped, 4 and 5 follow.
    assert replica.loaded("b", 3) == [score(4), removal]
    assert replica.applied("b") == 5


def test_progress_restarts_the_gap_wait():
    replica, clock = loaded_replica(0)
    replica.offer(score(2))
    replica.offer(score(4))
    clock.now += 0.4
    assert seqs(replica.offer(score(1))) == [1, 2]  # progress; 3 is still missing
    clock.now += 0.4
    assert replica.overdue() == []
    clock.now += 0.2
    assert replica.overdue() == ["b"]


def test_hold_all_keeps_everything_until_each_board_is_loaded():
    clock = Clock()
    replica = Replica(clock=clock)
    replica.hold_all()
    replica.offer(score(1, "a"))
    replica.offer(score(7, "a"))
    replica.offer(score(2, "b"))
    replica.offer(score(1, "c"))  # a board the load will not find
    clock.now += 5
    assert replica.overdue() == []  # nothing is late while holding
    assert replica.loaded("a", 0) == [score(1, "a")]
    assert seqs(replica.loaded("b", 1)) == [2]
    assert seqs(replica.offer(score(3, "b"))) == [3]
    replica.release_all()
    clock.now += 1
    assert sorted(replica.overdue()) == ["a", "c"]  # a: 7 is ahead of a gap; c: unknown


def test_a_reload_never_takes_the_seq_back():
    replica, _ = loaded_replica(10)
    replica.reading("b")
    assert replica.loaded("b", 8) == []
    assert replica.applied("b") == 10


def test_forget_drops_the_board():
    replica, clock = loaded_replica(0)
    replica.offer(score(5))
    replica.forget("b")
    clock.now += 5
    assert replica.overdue() == []
    assert replica.applied("b") is None


def test_any_arrival_order_applies_each_seq_once_in_order():
    rng = random.Random(11)
    for _ in range(200):
        replica, clock = loaded_replica(0)
        arrivals = [score(s) for s in range(1, 30)] * 2  # every record twice (echoes)
        rng.shuffle(arrivals)
        applied = []
        for change in arrivals:
            applied += seqs(replica.offer(change))
            clock.now += 0.01
        assert applied == list(range(1, 30))
        assert replica.overdue() == []
