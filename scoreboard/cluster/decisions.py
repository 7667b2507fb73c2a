"""How a run of submissions is decided in cluster mode, from the rows the database holds.

Pure: given the locked boards, the players' stored pairs and the answers already stored for
idempotency keys, `RunDecision` works out, in queue order, what `ranking.Leaderboard.submit`
would decide on a board holding exactly those rows (the same `ranking.apply_operator` and
`ranking.check_bounds`), and the rows that make it durable. scoreboard/cluster/pgwrites.py
reads those inputs inside its transaction, writes the rows and hands the outcomes back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .. import errors, ranking
from ..tables import StoredAnswer
from .changes import ScoreChange

#: A stored pair and when it was reached: (score, subscore, reached_seq, updated_at).
Stored = tuple[int, int, int, float]


@dataclass(frozen=True, slots=True)
class ClusterScore:
    """One validated submission, as the service resolved it."""

    board_id: str
    user_id: str
    name: str  # display name to store
    score: int
    subscore: int
    actor: str  # the token's subject: the scope of the idempotency key
    idempotency_key: str | None
    request_hash: str | None
    metadata: dict[str, Any] | None
    now: float  # unix seconds: updated_at when the pair changes


@dataclass(frozen=True, slots=True)
class ScoreCommitted:
    """What the database decided for one submission, once committed."""

    change: ScoreChange | None  # None: the stored pair did not change (no seq spent)
    record: ranking.Record | None  # the player's record as stored; None on a replay
    seq: int  # the board's seq after this submission (unchanged when change is None)
    submission_id: int | None  # the submissions row written (for store_answer); None on replay
    replay: StoredAnswer | None  # the actor used this key before: its answer; nothing written


@dataclass(slots=True)
class LockedBoard:
    """A locked board row: what deciding needs, and its seq and season as the batch moves on."""

    operator: ranking.Operator
    order: ranking.Order
    min_score: int | None
    max_score: int | None
    seq: int
    season: int
    season_started_at: float


@dataclass(frozen=True, slots=True)
class _Accepted:
    """A submission decided and logged, waiting for the id its log row is written with."""

    record: ranking.Record
    change: ScoreChange | None
    seq: int
    log_index: int  # in RunDecision.log_rows


#: A key's stored answer, by (actor, idempotency key).
Answers = dict[tuple[str, str], StoredAnswer]


class RunDecision:
    """A run of submissions decided in queue order over the stored rows; nothing written.

    Pure: the results, and the rows that make them durable, from the locked boards, the
    stored pairs and the answers already stored for keys.
    """

    def __init__(
        self,
        locked: dict[str, LockedBoard],
        stored: dict[tuple[str, str], Stored],
        answers: Answers,
        scores: Sequence[ClusterScore],
    ) -> None:
        self.seqs = {board_id: board.seq for board_id, board in locked.items()}
        self.names: dict[str, str] = {}  # user_id -> display name, last wins
        self.changed: dict[tuple[str, str], ranking.Record] = {}
        self.log_rows: list[dict[str, Any]] = []
        # Per submission: a refusal, a replay, or accepted.
        self._results: list[errors.ScoreboardError | ScoreCommitted | _Accepted] = []
        current = dict(stored)
        claimed: Answers = {}
        for s in scores:
            self._results.append(self._decide(s, locked, current, answers, claimed))

    def _decide(
        self,
        s: ClusterScore,
        locked: dict[str, LockedBoard],
        current: dict[tuple[str, str], Stored],
        answers: Answers,
        claimed: Answers,
    ) -> errors.ScoreboardError | ScoreCommitted | _Accepted:
        board = locked.get(s.board_id)
        if board is None:
            return errors.NotFound(f"no board {s.board_id!r}")
        seq = self.seqs[s.board_id]
        key = None if s.idempotency_key is None else (s.actor, s.idempotency_key)
        if key is not None:
            # Stored before, or by an earlier submission of this very batch (whose answer is
            # not stored yet): a replay either way.
            replay = answers.get(key) or claimed.get(key)
            if replay is not None:
                return ScoreCommitted(None, None, seq, None, replay)
        where = (s.board_id, s.user_id)
        old = current.get(where)
        pair = ranking.apply_operator(
            board.operator,
            board.order,
            None if old is None else (old[0], old[1]),
            (s.score, s.subscore),
        )
        try:
            ranking.check_bounds(board.operator, s.score, pair, board.min_score, board.max_score)
        except errors.ValidationFailed as exc:
            return exc
        change = None
        if old is not None and pair == (old[0], old[1]):
            record = ranking.Record(s.user_id, s.name, *old)
        else:
            seq += 1
            self.seqs[s.board_id] = seq
            record = ranking.Record(s.user_id, s.name, pair[0], pair[1], seq, s.now)
            self.changed[where] = record
            current[where] = (pair[0], pair[1], seq, s.now)
            change = ScoreChange(s.board_id, seq, s.user_id, s.name, pair[0], pair[1], seq, s.now)
        if key is not None:
            claimed[key] = StoredAnswer(s.request_hash or "", None)
        self.names[s.user_id] = s.name
        self.log_rows.append(
            {
                "board_id": s.board_id,
                "user_id": s.user_id,
                "actor": s.actor,
                "score": s.score,
                "subscore": s.subscore,
                "metadata": s.metadata,
                "idempotency_key": s.idempotency_key,
                "request_hash": s.request_hash,
                "response": None,  # JSON null until store_answer
                "seq": seq,
            }
        )
        return _Accepted(record, change, seq, len(self.log_rows) - 1)

    def outcomes(self, submission_ids: list[int]) -> list[ScoreCommitted | errors.ScoreboardError]:
        """Each submission's outcome, given the ids its log rows were written with."""
        found: list[ScoreCommitted | errors.ScoreboardError] = []
        for result in self._results:
            if isinstance(result, _Accepted):
                submission_id = submission_ids[result.log_index]
                found.append(
                    ScoreCommitted(result.change, result.record, result.seq, submission_id, None)
                )
            else:
                found.append(result)
        return found
