"""How a board shows its scores: the `score_format` values and the one rule set that formats them.

Scores stay integers on the wire and in the database; this module owns turning one into the
text people read (docs/api.md, `score_format`), for the export and the server-rendered
pages. static/js/format.js implements the same rules for the browser, and both are checked
against the one table of cases in tests/score_format_cases.json.

Pure: no I/O, no Tornado. Exact integer arithmetic only (never floats), so every score within
±(2^53-1) — and any larger Python int — formats exactly.
"""

from __future__ import annotations

import re

from .errors import ValidationFailed

#: Every accepted `score_format`, with what it shows. The keys are the canonical spellings:
#: parse_score_format accepts exactly these strings and nothing else.
SCORE_FORMATS: dict[str, str] = {
    "integer": "the integer, digits grouped in threes with a comma: 1240 -> 1,240",
    **{
        f"decimal:{n}": (
            f"the integer divided by 10^{n}, the integer part grouped, then exactly {n} "
            f"decimal digit{'s' if n > 1 else ''}"
        )
        for n in range(1, 7)
    },
    "duration_ms": (
        "milliseconds as m:ss.mmm, or h:mm:ss.mmm from an hour on (hours keep growing); "
        "a negative value gets a leading '-'"
    ),
}

DEFAULT_SCORE_FORMAT = "integer"

#: The same set as a regular expression (ECMA-262 flavour, for the OpenAPI document).
SCORE_FORMAT_PATTERN = "^(integer|duration_ms|decimal:[1-6])$"

_MS_PER_SECOND = 1000
_SECONDS_PER_MINUTE = 60
_SECONDS_PER_HOUR = 3600


def parse_score_format(value: object, field: str = "score_format") -> str:
    """The canonical `score_format` for `value`, or ValidationFailed naming the bad value.

    Accepts exactly "integer", "duration_ms" and "decimal:1" to "decimal:6": no other case,
    no surrounding spaces, no leading zeros, no non-strings.
    """
    if isinstance(value, str) and value in SCORE_FORMATS:
        return value
    raise ValidationFailed(
        f"{field} must be integer, duration_ms or decimal:N with N 1-6, got {value!r}"
    )


def format_score(score: int, score_format: str) -> str:
    """`score` as a board with `score_format` shows it; ValueError for an unknown format."""
    if isinstance(score, bool) or not isinstance(score, int):
        raise TypeError(f"score must be an int, got {score!r}")
    sign = "-" if score < 0 else ""
    magnitude = -score if score < 0 else score
    if score_format == "integer":
        return f"{sign}{magnitude:,}"
    if score_format == "duration_ms":
        return sign + _duration(magnitude)
    if score_format in SCORE_FORMATS and score_format.startswith("decimal:"):
        digits = int(score_format.removeprefix("decimal:"))
        whole, fraction = divmod(magnitude, 10**digits)
        return f"{sign}{whole:,}.{fraction:0{digits}d}"
    raise ValueError(f"unknown score_format, got {score_format!r}")


def _duration(ms: int) -> str:
    """A non-negative number of milliseconds as m:ss.mmm, or h:mm:ss.mmm from an hour on."""
    seconds, millis = divmod(ms, _MS_PER_SECOND)
    hours, rest = divmod(seconds, _SECONDS_PER_HOUR)
    minutes, secs = divmod(rest, _SECONDS_PER_MINUTE)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}.{millis:03d}"
    return f"{minutes}:{secs:02d}.{millis:03d}"


_NUMBER_RE = re.compile(r"(-?)(\d+)(?:\.(\d*))?")
_TIME_RE = re.compile(r"(?:(?:(\d+):)?(\d{1,2}):)?(\d{1,2})(?:\.(\d{1,3}))?")
MAX_SAFE_INTEGER = 2**53 - 1


def parse_score_input(text: str, score_format: str) -> int:
    """Read a score typed by a person in the board's own notation (`1:02.345` on a time board,
    `12.34` on a two-decimal board, plain milliseconds or integers too) into the stored integer.

    The score form posts without scripts through this; static/js/score-input.js is the same
    reader in the browser. Raises ValueError with a message fit to show next to the field.
    """
    typed = re.sub(r"[,_\s]", "", text)
    if not typed:
        raise ValueError("Enter a score.")
    if score_format == "duration_ms":
        value = _parse_duration(typed)
    else:
        decimals = int(score_format.removeprefix("decimal:")) if ":" in score_format else 0
        match = _NUMBER_RE.fullmatch(typed)
        if match is None:
            raise ValueError(f"A score is a number, got {text.strip()!r}.")
        sign, whole, fraction = match.group(1), match.group(2), match.group(3) or ""
        if len(fraction) > decimals:
            raise ValueError(
                f"At most {decimals} decimals." if decimals else "A score is a whole number."
            )
        value = int(sign + whole + fraction.ljust(decimals, "0"))
    if abs(value) > MAX_SAFE_INTEGER:
        raise ValueError("That number is too large.")
    return value


def _parse_duration(typed: str) -> int:
    if typed.startswith("-") and not typed.startswith("--"):
        return -_parse_duration(typed[1:])
    if typed.isdigit():
        return int(typed)
    match = _TIME_RE.fullmatch(typed)
    bad = ValueError(f"A time looks like 1:02.345, got {typed!r}.")
    if match is None:
        raise bad
    hours, minutes, seconds, millis = match.groups()
    if int(seconds) > 59 or (hours is not None and int(minutes) > 59):
        raise bad
    total_s = (int(hours or 0) * 60 + int(minutes or 0)) * 60 + int(seconds)
    return total_s * 1000 + int((millis or "").ljust(3, "0"))
