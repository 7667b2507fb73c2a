"""The checking mechanism (scoreboard/validation.py): rules in words, details, Body and Query."""

from __future__ import annotations

import pytest
from helpers import refusal

from scoreboard.validation import (
    MAX_SAFE_INTEGER,
    MAX_SHOWN_VALUE,
    Body,
    Query,
    idempotency_key,
    rule,
    shown,
)


@pytest.mark.parametrize(
    ("schema", "words"),
    [
        (
            {"type": "integer", "minimum": -MAX_SAFE_INTEGER, "maximum": MAX_SAFE_INTEGER},
            "an integer within ±(2^53-1)",
        ),
        ({"type": "integer", "minimum": 1, "maximum": 1000}, "an integer within 1-1000"),
        ({"type": "integer"}, "an integer"),
        (
            {"type": ["integer", "null"], "minimum": 0, "maximum": 5},
            "an integer within 0-5 or null",
        ),
        ({"type": "boolean"}, "true or false"),
        ({"type": "string", "enum": ["desc", "asc"]}, "one of desc, asc"),
        ({"type": "string", "minLength": 8, "maxLength": 1024}, "a string of 8-1024 characters"),
        ({"type": "string"}, "a string"),
        ({"type": "object"}, "a JSON object"),
        ({"type": "object", "x-max-bytes": 9}, "a JSON object of at most 9 bytes serialized"),
        ({"type": "string", "description": "a colour"}, "a colour"),
    ],
)
def test_rule_says_in_words_what_a_schema_asks(schema, words):
    assert rule(schema) == words


def test_shown_names_a_value_and_cuts_a_long_one():
    assert shown("x") == "'x'"
    assert shown(1.5) == "1.5"
    long = shown("y" * 500)
    assert len(long) == MAX_SHOWN_VALUE and long.endswith("...") and long.startswith("'yyy")


PAIR = Body(
    "Pair",
    {
        "type": "object",
        "required": ["a", "b"],
        "additionalProperties": False,
        "properties": {
            "a": {"type": "integer", "minimum": 0, "maximum": 9},
            "b": {"type": "string", "maxLength": 3, "x-strip": True},
            "c": {"type": "integer", "minimum": 0, "maximum": 9, "default": 4},
            "d": {"type": ["object", "null"], "x-max-bytes": 10},
            "p": {"type": "string", "minLength": 2, "maxLength": 4, "writeOnly": True},
        },
    },
)


def test_body_check_returns_a_clean_copy_and_leaves_the_callers_dict_alone():
    given = {"a": 3.0, "b": " x "}
    clean = PAIR.check(given)
    assert clean == {"a": 3, "b": "x", "c": 4}
    assert type(clean["a"]) is int  # 3.0 is JSON's 3: taken, and made an int
    assert given == {"a": 3.0, "b": " x "}


def test_body_details_name_the_field_the_rule_and_the_value():
    assert refusal(PAIR.check, {"a": 10, "b": ""}) == "a must be an integer within 0-9, got 10"
    assert refusal(PAIR.check, {"a": 1.5, "b": ""}) == "a must be an integer within 0-9, got 1.5"
    assert refusal(PAIR.check, {"a": True, "b": ""}) == "a must be an integer within 0-9, got True"
    assert refusal(PAIR.check, {"a": 1, "b": "abcd"}) == (
        "b must be a string of 0-3 characters, got 'abcd'"
    )
    assert refusal(PAIR.check, {"a": 1}) == "b is required"
    assert refusal(PAIR.check, {}) == "a and b are required"
    assert refusal(PAIR.check, {"a": 1, "b": "", "z": 1, "y": 2}) == (
        "unknown field(s) in body: y, z"
    )


def test_a_secret_is_never_echoed_only_its_length():
    detail = refusal(PAIR.check, {"a": 1, "b": "", "p": "hunter2-is-long"})
    assert detail == "p must be a string of 2-4 characters, got 15 characters"
    assert refusal(PAIR.check, {"a": 1, "b": "", "p": 5}).endswith("got int")


def test_an_object_is_measured_serialized_up_to_its_byte_limit():
    assert PAIR.check({"a": 1, "b": "", "d": {"k": "12"}})["d"] == {"k": "12"}  # 10 bytes
    assert PAIR.check({"a": 1, "b": "", "d": None})["d"] is None
    assert refusal(PAIR.check, {"a": 1, "b": "", "d": {"k": "123"}}) == (
        "d must be at most 10 bytes serialized, got 11 bytes"
    )
    assert refusal(PAIR.check, {"a": 1, "b": "", "d": []}) == (
        "d must be a JSON object of at most 10 bytes serialized or null, got []"
    )


LIMITS = Query(
    {
        "limit": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 10},
        "offset": {"type": "integer", "minimum": 0, "maximum": MAX_SAFE_INTEGER, "default": 0},
    }
)


def test_query_fills_defaults_and_takes_values_at_their_bounds():
    assert LIMITS.parse({}.get) == {"limit": 10, "offset": 0}
    assert LIMITS.parse({"limit": "1", "offset": "0"}.get) == {"limit": 1, "offset": 0}
    top = {"limit": "1000", "offset": str(MAX_SAFE_INTEGER)}
    assert LIMITS.parse(top.get) == {"limit": 1000, "offset": MAX_SAFE_INTEGER}


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        ({"limit": "0"}, "limit must be an integer within 1-1000, got 0"),
        ({"limit": "1001"}, "limit must be an integer within 1-1000, got 1001"),
        ({"limit": "abc"}, "limit must be an integer within 1-1000, got 'abc'"),
        ({"limit": "1.5"}, "limit must be an integer within 1-1000, got '1.5'"),
        ({"limit": "+5"}, "limit must be an integer within 1-1000, got '+5'"),
        ({"limit": " 5"}, "limit must be an integer within 1-1000, got ' 5'"),
        ({"limit": "5_0"}, "limit must be an integer within 1-1000, got '5_0'"),
        ({"limit": ""}, "limit must be an integer within 1-1000, got ''"),
        (
            {"offset": str(MAX_SAFE_INTEGER + 1)},
            f"offset must be an integer within 0-{MAX_SAFE_INTEGER}, got {MAX_SAFE_INTEGER + 1}",
        ),
        ({"offset": "-1"}, f"offset must be an integer within 0-{MAX_SAFE_INTEGER}, got -1"),
    ],
)
def test_query_refuses_what_its_schema_does_not_allow(raw, detail):
    assert refusal(LIMITS.parse, raw.get) == detail


def test_idempotency_key_is_one_to_255_characters():
    assert idempotency_key("k") == "k"
    assert idempotency_key("k" * 255) == "k" * 255
    for bad in ("", "k" * 256):
        assert refusal(idempotency_key, bad) == (
            "the idempotency key (Idempotency-Key, or request_id over WebSocket) must be "
            f"1-255 characters, got {len(bad)}"
        )
