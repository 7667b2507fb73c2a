"""Domain errors, each carrying its error code (docs/api.md#error-codes) and HTTP status.

No Tornado import here: the service, the store and the ranking code raise these, and the HTTP
handlers and the WebSocket hub turn them into problem+json bodies or `error` frames.
"""

from __future__ import annotations


class ScoreboardError(Exception):
    """Base of every error a client may see; `detail` is safe to show to the client."""

    code = "internal"
    status = 500
    title = "Internal error"

    def __init__(self, detail: str | None = None, *, retry_after: float | None = None) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.retry_after = retry_after


class BadRequest(ScoreboardError):
    code, status, title = "bad_request", 400, "Bad request"


class AuthFailed(ScoreboardError):
    code, status, title = "auth_failed", 401, "Authentication failed"


class TokenExpired(ScoreboardError):
    code, status, title = "token_expired", 401, "Token expired"


class Forbidden(ScoreboardError):
    code, status, title = "forbidden", 403, "Forbidden"


class NotFound(ScoreboardError):
    code, status, title = "not_found", 404, "Not found"


class Conflict(ScoreboardError):
    code, status, title = "conflict", 409, "Conflict"


class TooLarge(ScoreboardError):
    code, status, title = "too_large", 413, "Payload too large"


class UnsupportedMediaType(ScoreboardError):
    code, status, title = "unsupported_media_type", 415, "Unsupported media type"


class ValidationFailed(ScoreboardError):
    code, status, title = "validation_failed", 422, "Validation failed"


class RateLimited(ScoreboardError):
    code, status, title = "rate_limited", 429, "Too many requests"


class Overloaded(ScoreboardError):
    code, status, title = "overloaded", 503, "Overloaded"


class NotReady(ScoreboardError):
    code, status, title = "not_ready", 503, "Not ready"


class Internal(ScoreboardError):
    code, status, title = "internal", 500, "Internal error"


#: Every error code (docs/api.md#error-codes), for metrics labels and for tests.
ALL_CODES: tuple[str, ...] = (
    "bad_request",
    "auth_failed",
    "token_expired",
    "forbidden",
    "not_found",
    "conflict",
    "validation_failed",
    "too_large",
    "unsupported_media_type",
    "rate_limited",
    "overloaded",
    "not_ready",
    "internal",
)
