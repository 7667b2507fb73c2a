"""Every Prometheus metric of the process, defined once (SPEC section 8).

Module-level constants on the default registry, which also carries the process collector's
`process_resident_memory_bytes`. Label values come from fixed sets: handler class names,
result and error codes, admin-made board ids; never a user id or a URL.
"""

from __future__ import annotations

import contextlib

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUEST_DURATION = Histogram(
    "scoreboard_http_request_duration_seconds",
    "Time from request start to the answer being written, by handler class.",
    ["handler", "method", "status"],
)

SCORE_SUBMISSIONS = Counter(
    "scoreboard_score_submissions",
    "Score submissions by result: accepted (record changed), unchanged, rejected, rate_limited.",
    ["result"],
)
SUBMISSION_RESULTS = ("accepted", "unchanged", "rejected", "rate_limited")

ERRORS = Counter(
    "scoreboard_errors",
    "Errors answered to clients (problem+json or error frames), by SPEC section 6 code.",
    ["code"],
)

BOARD_PLAYERS = Gauge("scoreboard_board_players", "Players with a score on the board.", ["board"])

BOARD_SUBSCRIBERS = Gauge(
    "scoreboard_board_subscribers", "Live connections subscribed to the board.", ["board"]
)

# Pre-labelled children: `.labels()` costs about 1 µs per call, `inc()` on a child 0.3 µs.
SUBMISSIONS_BY_RESULT = {result: SCORE_SUBMISSIONS.labels(result) for result in SUBMISSION_RESULTS}


def forget_board(board_id: str) -> None:
    """Drop a deleted board's series so that /metrics does not report it forever."""
    for gauge in (BOARD_PLAYERS, BOARD_SUBSCRIBERS):
        with contextlib.suppress(KeyError):
            gauge.remove(board_id)
