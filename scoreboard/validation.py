"""Checks of client-supplied values shared by HTTP and WebSocket requests.

Each function returns the clean value or raises errors.ValidationFailed naming the field and
the bad value, so that both transports give the same answer for the same mistake.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from .errors import ValidationFailed

MAX_SAFE_INTEGER = 2**53 - 1  # the largest integer a JavaScript client reads exactly
MAX_METADATA_BYTES = 1024
MAX_IDEMPOTENCY_KEY_LENGTH = 255  # SPEC section 3
ID_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def reject_unknown(body: Mapping[str, Any], allowed: frozenset[str], what: str = "body") -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ValidationFailed(f"unknown field(s) in {what}: {', '.join(unknown)}")


def safe_integer(value: Any, field: str) -> int:
    """A JSON integer within ±(2^53-1); booleans, floats and strings are refused."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationFailed(f"{field} must be an integer, got {value!r}")
    if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        raise ValidationFailed(f"{field} must be within ±(2^53-1), got {value!r}")
    return value


def optional_integer(value: Any, field: str) -> int | None:
    return None if value is None else safe_integer(value, field)


def identifier(value: Any, field: str) -> str:
    if not isinstance(value, str) or not ID_RE.fullmatch(value):
        raise ValidationFailed(
            f"{field} must be 1-64 characters of A-Z a-z 0-9 _ . -, got {value!r}"
        )
    if value in (".", ".."):
        # A URL path segment of "." or ".." is resolved away by browsers: unreachable.
        raise ValidationFailed(f"{field} must not be . or .., got {value!r}")
    return value


def text(value: Any, field: str, *, max_length: int, min_length: int = 1) -> str:
    if not isinstance(value, str) or not min_length <= len(value.strip()) <= max_length:
        raise ValidationFailed(
            f"{field} must be a string of {min_length}-{max_length} characters, got {value!r}"
        )
    return value.strip()


def boolean(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationFailed(f"{field} must be true or false, got {value!r}")
    return value


def choice(value: Any, field: str, options: tuple[str, ...]) -> str:
    if value not in options:
        raise ValidationFailed(f"{field} must be one of {', '.join(options)}, got {value!r}")
    return value


def metadata(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValidationFailed(f"metadata must be a JSON object, got {type(value).__name__}")
    size = len(orjson.dumps(value))
    if size > MAX_METADATA_BYTES:
        raise ValidationFailed(f"metadata must be at most 1 KiB serialized, got {size} bytes")
    return value


def idempotency_key(value: str) -> str:
    """An idempotency key (the `Idempotency-Key` header, a WebSocket `request_id`): 1-255 chars.

    One rule for both transports: a key of the wrong length is 422 validation_failed.
    """
    if not 1 <= len(value) <= MAX_IDEMPOTENCY_KEY_LENGTH:
        raise ValidationFailed(
            "the idempotency key (Idempotency-Key, or request_id over WebSocket) must be "
            f"1-{MAX_IDEMPOTENCY_KEY_LENGTH} characters, got {len(value)}"
        )
    return value


def query_int(raw: str | None, field: str, *, default: int, low: int, high: int) -> int:
    """An integer query parameter within [low, high]."""
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationFailed(f"{field} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ValidationFailed(f"{field} must be within {low}-{high}, got {value}")
    return value
