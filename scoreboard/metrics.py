"""Every Prometheus metric of the process, defined once (docs/operations.md#metrics).

Module-level constants on the default registry, which also carries the process collector's
`process_resident_memory_bytes`. Label values come from fixed sets: handler class names,
result and error codes, admin-made board ids; never a user id or a URL.
"""

from __future__ import annotations

import contextlib

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

# `_created` series double the samples of every counter and histogram and carry no figure an
# alert needs (process start time is exported anyway).
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus_client

HTTP_REQUEST_DURATION = Histogram(
    "scoreboard_http_request_duration_seconds",
    "Time from request start to the answer being written, by handler class (the long-poll "
    "without its wait for a change).",
    ["handler", "method", "status"],
)
# docs/operations.md#metrics: any other request method, however long, is counted as `other`.
HTTP_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))

SCORE_SUBMISSIONS = Counter(
    "scoreboard_score_submissions",
    "Score submissions by result: accepted (record changed), unchanged, rejected, rate_limited.",
    ["result"],
)
SUBMISSION_RESULTS = ("accepted", "unchanged", "rejected", "rate_limited")

ERRORS = Counter(
    "scoreboard_errors",
    "Errors answered to clients (problem+json or error frames), by error code.",
    ["code"],
)

BOARD_PLAYERS = Gauge("scoreboard_board_players", "Players with a score on the board.", ["board"])

BOARD_SUBSCRIBERS = Gauge(
    "scoreboard_board_subscribers", "Live connections subscribed to the board.", ["board"]
)

# -- live delivery (WebSocket) ---------------------------------------------------------------

WS_CONNECTIONS = Gauge("scoreboard_ws_connections", "Open WebSocket connections.")
WS_CONNECTIONS_OPENED = Counter(
    "scoreboard_ws_connections_opened", "WebSocket connections accepted (after the handshake)."
)
WS_CONNECTIONS_CLOSED = Counter(
    "scoreboard_ws_connections_closed", "WebSocket connections closed, by reason.", ["reason"]
)
WS_CLOSE_REASONS = (
    "normal",
    "client_gone",
    "ping_timeout",
    "slow_consumer",
    "auth",
    "policy",
    "shutdown",
    "error",
)
WS_HANDSHAKE_REJECTIONS = Counter(
    "scoreboard_ws_handshake_rejections",
    "WebSocket handshakes refused before the upgrade, by reason.",
    ["reason"],
)
WS_REJECTION_REASONS = ("auth", "origin", "limit")
WS_MESSAGES_SENT = Counter(
    "scoreboard_ws_messages_sent", "WebSocket frames handed to sockets, by type.", ["type"]
)
WS_SENT_TYPES = (
    "connection_status",
    "snapshot",
    "score_update",
    "rank_update",
    "ack",
    "pong",
    "error",
)
WS_MESSAGES_RECEIVED = Counter(
    "scoreboard_ws_messages_received",
    "WebSocket messages received, by type (`invalid`: not JSON or no known type).",
    ["type"],
)
WS_RECEIVED_TYPES = ("subscribe", "unsubscribe", "submit_score", "ping", "auth", "invalid")
WS_RECONNECTS = Counter("scoreboard_ws_reconnects", "WebSocket connections that said ?reconnect=1.")
BROADCAST_LATENCY = Histogram(
    "scoreboard_broadcast_latency_seconds",
    "From a score's commit to its score_update frame handed to every subscriber's socket.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5),
)
EVENT_LOOP_LAG = Histogram(
    "scoreboard_event_loop_lag_seconds",
    "How late a periodic probe callback ran: time the IOLoop was busy with other work.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0),
)

# Pre-labelled children: `.labels()` costs about 1 µs per call, `inc()` on a child 0.3 µs.
SUBMISSIONS_BY_RESULT = {result: SCORE_SUBMISSIONS.labels(result) for result in SUBMISSION_RESULTS}
WS_CLOSED_BY_REASON = {reason: WS_CONNECTIONS_CLOSED.labels(reason) for reason in WS_CLOSE_REASONS}
WS_REJECTED_BY_REASON = {
    reason: WS_HANDSHAKE_REJECTIONS.labels(reason) for reason in WS_REJECTION_REASONS
}
WS_SENT_BY_TYPE = {kind: WS_MESSAGES_SENT.labels(kind) for kind in WS_SENT_TYPES}
WS_RECEIVED_BY_TYPE = {kind: WS_MESSAGES_RECEIVED.labels(kind) for kind in WS_RECEIVED_TYPES}


def observe_request(handler: str, method: str | None, status: int, seconds: float) -> None:
    """Count one answered HTTP request; `method` is folded into the fixed set."""
    label = method if method in HTTP_METHODS else "other"
    HTTP_REQUEST_DURATION.labels(handler, label, str(status)).observe(seconds)


def forget_board(board_id: str) -> None:
    """Drop a deleted board's series so that /metrics does not report it forever."""
    for gauge in (BOARD_PLAYERS, BOARD_SUBSCRIBERS):
        with contextlib.suppress(KeyError):
            gauge.remove(board_id)
