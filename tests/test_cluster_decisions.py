"""scoreboard.cluster.decisions: a run decided over stored rows equals one process's engine."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from scoreboard import errors, ranking
from scoreboard.cluster.decisions import ClusterScore, LockedBoard, RunDecision, ScoreCommitted
from scoreboard.tables import StoredAnswer


def locked(operator: str = "best", order: str = "desc", **bounds: int | None) -> LockedBoard:
    return LockedBoard(
        ranking.Operator(operator),
        ranking.Order(order),
        bounds.get("min_score"),
        bounds.get("max_score"),
        seq=0,
        season=1,
        season_started_at=0.0,
    )


def score(user_id: str, value: int, *, key: str | None = None, now: float = 1.0) -> ClusterScore:
    return ClusterScore(
        board_id="b", user_id=user_id, name=user_id.upper(), score=value, subscore=0,
        actor="server", idempotency_key=key, request_hash=key and f"h-{value}", metadata=None,
        now=now,
    )  # fmt: skip


@pytest.mark.parametrize("operator", ["best", "set", "incr"])
@pytest.mark.parametrize("order", ["desc", "asc"])
def test_a_run_decides_as_the_engine_does_in_queue_order(operator: str, order: str) -> None:
    rng = random.Random(f"{operator}{order}")
    bounds = {"min_score": -100, "max_score": 100}
    scores = [score(f"u{rng.randrange(5)}", rng.randrange(-120, 120), now=n) for n in range(300)]
    decision = RunDecision({"b": locked(operator, order, **bounds)}, {}, {}, scores)
    outcomes = decision.outcomes(list(range(1000, 1000 + len(decision.log_rows))))
    engine = ranking.Leaderboard(ranking.Order(order), ranking.Operator(operator))
    for s, outcome in zip(scores, outcomes, strict=True):
        try:
            expected = engine.submit(s.user_id, s.name, s.score, 0, now=s.now, **bounds)
        except errors.ValidationFailed as exc:
            assert isinstance(outcome, errors.ValidationFailed)
            assert outcome.detail == exc.detail
            continue
        assert isinstance(outcome, ScoreCommitted)
        assert (outcome.record, outcome.seq) == (expected.record, expected.seq)
        assert (outcome.change is not None) is expected.improved
    assert decision.seqs["b"] == engine.seq
    assert {r.user_id: r for r in decision.changed.values()} == {
        u: engine.record(u) for u in {r.user_id for r in decision.changed.values()}
    }


def test_stored_rows_are_the_starting_point() -> None:
    board = locked("incr")
    board.seq = 40
    decision = RunDecision({"b": board}, {("b", "u"): (7, 0, 12, 0.5)}, {}, [score("u", 3)])
    [outcome] = decision.outcomes([1])
    assert isinstance(outcome, ScoreCommitted) and outcome.change is not None
    assert (outcome.change.score, outcome.change.seq) == (10, 41)


def test_keys_replay_what_is_stored_and_what_this_run_claimed() -> None:
    stored = {("server", "old"): StoredAnswer("h-1", {"rank": 1})}
    decision = RunDecision(
        {"b": locked()},
        {},
        stored,
        [score("u", 5, key="old"), score("u", 6, key="new"), score("u", 7, key="new")],
    )
    old, new, again = decision.outcomes([1])
    assert isinstance(old, ScoreCommitted) and old.replay == stored[("server", "old")]
    assert isinstance(new, ScoreCommitted) and new.submission_id == 1 and new.replay is None
    assert isinstance(again, ScoreCommitted) and again.replay == StoredAnswer("h-6", None)
    assert [row["idempotency_key"] for row in decision.log_rows] == ["new"]


def test_a_refused_key_is_not_claimed_and_a_missing_board_is_not_found() -> None:
    decision = RunDecision(
        {"b": locked(max_score=10)},
        {},
        {},
        [score("u", 11, key="k"), score("u", 9, key="k"), replace(score("u", 1), board_id="gone")],
    )
    refused, accepted, missing = decision.outcomes([1])
    assert isinstance(refused, errors.ValidationFailed)
    assert isinstance(accepted, ScoreCommitted) and accepted.replay is None
    assert isinstance(missing, errors.NotFound)
