"""scoreboard.formatting: the shared table of display cases, and which formats are accepted.

tests/score_format_cases.json is the one table both rule sets answer to: this file checks the
Python one, tests/js/format.test.mjs the JavaScript one (static/js/format.js).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from scoreboard.errors import ValidationFailed
from scoreboard.formatting import (
    DEFAULT_SCORE_FORMAT,
    SCORE_FORMAT_PATTERN,
    SCORE_FORMATS,
    format_score,
    parse_score_format,
    parse_score_input,
)

CASES_PATH = Path(__file__).resolve().parent / "score_format_cases.json"
CASES: list[dict[str, Any]] = json.loads(CASES_PATH.read_text(encoding="utf-8"))
MAX_SAFE = 2**53 - 1

ACCEPTED = ["integer", "duration_ms", *(f"decimal:{n}" for n in range(1, 7))]
REJECTED: list[Any] = [
    "decimal:0",
    "decimal:7",
    "decimal:01",
    "decimal:",
    "decimal",
    "decimal:1.0",
    "decimal: 1",
    "decimal:-1",
    "decimal:\uff11",  # a full-width digit one
    " integer",
    "integer ",
    "integer\n",
    "Integer",
    "INTEGER",
    "int",
    "duration",
    "duration_s",
    "Duration_ms",
    "",
    None,
    5,
    0,
    True,
    2.0,
    ["integer"],
    {"integer": 1},
    b"integer",
]


def _case_id(case: dict[str, Any]) -> str:
    return f"{case['format']}:{case['score']}"


def test_the_table_is_well_formed_and_covers_every_format() -> None:
    assert len(CASES) >= 40
    for case in CASES:
        assert set(case) == {"score", "format", "display"}, case
        assert type(case["score"]) is int and -MAX_SAFE <= case["score"] <= MAX_SAFE, case
        assert case["format"] in SCORE_FORMATS, case
        assert isinstance(case["display"], str), case
    covered = {(c["format"], c["score"]) for c in CASES}
    assert len(covered) == len(CASES), "a case is listed twice"
    for fmt in SCORE_FORMATS:
        # Every format meets both extremes and zero or a sign change.
        assert (fmt, MAX_SAFE) in covered and (fmt, -MAX_SAFE) in covered, fmt
        assert any(c["format"] == fmt and c["score"] < 0 for c in CASES), fmt


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_format_score_matches_the_shared_table(case: dict[str, Any]) -> None:
    assert format_score(case["score"], case["format"]) == case["display"]


def test_the_grouping_and_duration_boundaries() -> None:
    # Spelled out here too, so that a wrong edit of the table cannot hide them.
    assert format_score(999, "integer") == "999"
    assert format_score(1000, "integer") == "1,000"
    assert format_score(59_999, "duration_ms") == "0:59.999"
    assert format_score(60_000, "duration_ms") == "1:00.000"
    assert format_score(3_599_999, "duration_ms") == "59:59.999"
    assert format_score(3_600_000, "duration_ms") == "1:00:00.000"


@pytest.mark.parametrize("score", [0, 1, -1, 1240, -62345, 3_600_000, MAX_SAFE, -MAX_SAFE])
@pytest.mark.parametrize("fmt", list(SCORE_FORMATS))
def test_a_negative_score_is_its_absolute_value_with_a_minus(score: int, fmt: str) -> None:
    if score < 0:
        assert format_score(score, fmt) == "-" + format_score(-score, fmt)
    else:
        assert not format_score(score, fmt).startswith("-")


@pytest.mark.parametrize("n", range(1, 7))
def test_decimal_digits_read_back_as_the_exact_integer(n: int) -> None:
    for score in (0, 7, -7, 10**n, -(10**n) + 1, 123_456_789, MAX_SAFE, -MAX_SAFE):
        shown = format_score(score, f"decimal:{n}")
        assert len(shown.rpartition(".")[2]) == n
        assert int(shown.replace(",", "").replace(".", "")) == score


@pytest.mark.parametrize("value", ACCEPTED)
def test_parse_score_format_accepts_the_canonical_spellings(value: str) -> None:
    assert parse_score_format(value) == value


@pytest.mark.parametrize("value", REJECTED, ids=repr)
def test_parse_score_format_rejects_and_names_the_value(value: Any) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_score_format(value)
    assert caught.value.status == 422 and caught.value.code == "validation_failed"
    assert caught.value.detail.startswith("score_format must be ")
    assert caught.value.detail.endswith(f"got {value!r}")


def test_parse_score_format_names_the_field_it_is_given() -> None:
    with pytest.raises(ValidationFailed, match=r"^--score-format must be .*got 'decimal:7'$"):
        parse_score_format("decimal:7", "--score-format")


def test_formats_pattern_and_default_agree() -> None:
    assert sorted(SCORE_FORMATS) == sorted(ACCEPTED)
    assert DEFAULT_SCORE_FORMAT == "integer"
    # The OpenAPI pattern describes exactly the accepted set.
    pattern = re.compile(SCORE_FORMAT_PATTERN.removeprefix("^").removesuffix("$"))
    for value in ACCEPTED:
        assert pattern.fullmatch(value), value
    for value in REJECTED:
        assert not (isinstance(value, str) and pattern.fullmatch(value)), value
    assert all(isinstance(text, str) and text for text in SCORE_FORMATS.values())


@pytest.mark.parametrize("fmt", ["", "Integer", "decimal:0", "decimal:7", "decimal:01", "x"])
def test_format_score_refuses_an_unknown_format(fmt: str) -> None:
    with pytest.raises(ValueError, match="unknown score_format"):
        format_score(1, fmt)


@pytest.mark.parametrize("score", [True, 1.0, "1", None])
def test_format_score_refuses_what_is_not_an_int(score: Any) -> None:
    with pytest.raises(TypeError):
        format_score(score, "integer")


# -- reading typed scores back ------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['format']}:{c['score']}")
def test_what_a_board_shows_reads_back_to_the_same_score(case):
    assert parse_score_input(case["display"], case["format"]) == case["score"]


@pytest.mark.parametrize(
    ("typed", "score_format", "expected"),
    [
        ("1240", "integer", 1240),
        (" 1,240 ", "integer", 1240),
        ("12.3", "decimal:2", 1230),
        ("12", "decimal:2", 1200),
        ("1:02.3", "duration_ms", 62300),
        ("59.999", "duration_ms", 59999),
        ("62345", "duration_ms", 62345),
    ],
)
def test_typed_scores_in_the_boards_notation(typed, score_format, expected):
    assert parse_score_input(typed, score_format) == expected


@pytest.mark.parametrize(
    ("typed", "score_format", "message"),
    [
        ("", "integer", "Enter a score."),
        ("12.5", "integer", "A score is a whole number."),
        ("1.234", "decimal:2", "At most 2 decimals."),
        ("lots", "integer", "A score is a number, got 'lots'."),
        ("1:75.000", "duration_ms", "A time looks like 1:02.345, got '1:75.000'."),
        ("1:60:00", "duration_ms", "A time looks like 1:02.345, got '1:60:00'."),
        ("--1:00", "duration_ms", "A time looks like 1:02.345, got '--1:00'."),
        ("9007199254740992", "integer", "That number is too large."),
    ],
)
def test_typed_scores_that_are_refused_say_why(typed, score_format, message):
    with pytest.raises(ValueError) as caught:
        parse_score_input(typed, score_format)
    assert str(caught.value) == message
