"""The request shapes (scoreboard/schemas.py), at their limits, and the places that follow them."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import orjson
import pytest
from helpers import refusal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from scoreboard import openapi, schemas
from scoreboard.errors import ValidationFailed
from scoreboard.schemas import (
    BOARD_CREATE,
    BOARD_PATCH,
    BOARD_SETTINGS,
    LOGIN,
    MAX_METADATA_BYTES,
    REGISTER,
    SCORE_POST,
    BoardConfig,
)
from scoreboard.tables import boards as boards_table
from scoreboard.validation import MAX_SAFE_INTEGER, shown

BOARD = {"id": "b", "title": "Board"}


def metadata_of(size: int) -> dict[str, str]:
    """A metadata object of exactly `size` bytes serialized."""
    padding = size - len(orjson.dumps({"p": ""}))
    value = {"p": "x" * padding}
    assert len(orjson.dumps(value)) == size
    return value


# -- score posts -------------------------------------------------------------------------------


def test_a_score_takes_every_safe_integer_and_fills_the_subscore():
    for score in (0, MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER):
        assert SCORE_POST.check({"score": score}) == {"score": score, "subscore": 0}
    clean = SCORE_POST.check({"score": 242.0, "subscore": -3.0})
    assert clean == {"score": 242, "subscore": -3}
    assert type(clean["score"]) is int and type(clean["subscore"]) is int


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("score", MAX_SAFE_INTEGER + 1),
        ("score", -MAX_SAFE_INTEGER - 1),
        ("score", 1.5),
        ("score", True),
        ("score", "12"),
        ("score", None),
        ("subscore", MAX_SAFE_INTEGER + 1),
        ("subscore", False),
    ],
)
def test_a_score_outside_the_safe_integers_is_refused_by_name_and_value(field, bad):
    body = {"score": 1, field: bad}
    assert refusal(SCORE_POST.check, body) == (
        f"{field} must be an integer within ±(2^53-1), got {bad!r}"
    )


def test_a_score_post_names_its_missing_and_unknown_fields():
    assert refusal(SCORE_POST.check, {"subscore": 1}) == "score is required"
    assert refusal(SCORE_POST.check, {"score": 1, "rank": 1, "board": "b"}) == (
        "unknown field(s) in body: board, rank"
    )


def test_user_id_is_an_identifier_up_to_64_characters():
    assert SCORE_POST.check({"score": 1, "user_id": "a" * 64})["user_id"] == "a" * 64
    assert SCORE_POST.check({"score": 1, "user_id": "A-z_0.9"})["user_id"] == "A-z_0.9"
    rule = "1-64 characters of A-Z a-z 0-9 _ . -, not . or .. (server and admin tokens only)"
    for bad in ("", "a" * 65, "a b", "abc\n", "é", 7):
        body = {"score": 1, "user_id": bad}
        assert refusal(SCORE_POST.check, body) == f"user_id must be {rule}, got {bad!r}"


def test_metadata_is_kept_up_to_exactly_1024_bytes():
    kept = metadata_of(1024)
    assert SCORE_POST.check({"score": 1, "metadata": kept})["metadata"] == kept
    assert SCORE_POST.check({"score": 1, "metadata": None})["metadata"] is None
    assert "metadata" not in SCORE_POST.check({"score": 1})
    assert refusal(SCORE_POST.check, {"score": 1, "metadata": metadata_of(1025)}) == (
        "metadata must be at most 1024 bytes serialized, got 1025 bytes"
    )
    assert refusal(SCORE_POST.check, {"score": 1, "metadata": "x"}) == (
        "metadata must be a JSON object of at most 1024 bytes serialized or null, got 'x'"
    )


# -- boards ------------------------------------------------------------------------------------


def test_a_new_board_gets_every_default_setting():
    config = schemas.new_board(dict(BOARD), created_at=12.5)
    assert config == BoardConfig(
        id="b",
        title="Board",
        order="desc",
        operator="best",
        min_score=None,
        max_score=None,
        player_submissions=True,
        reset_schedule="never",
        score_format="integer",
        created_at=12.5,
    )


def test_a_title_is_one_to_200_characters_not_only_blanks_and_is_stored_stripped():
    assert BOARD_CREATE.check({**BOARD, "title": "t" * 200})["title"] == "t" * 200
    assert BOARD_CREATE.check({**BOARD, "title": " \tQuiz night\r\n"})["title"] == "Quiz night"
    assert BOARD_PATCH.check({"title": "  x "}) == {"title": "x"}
    # Only the blanks JSON Schema patterns and Python agree on are stripped, not every space.
    assert BOARD_PATCH.check({"title": "\u00a0x\x1c"}) == {"title": "\u00a0x\x1c"}
    rule = "1-200 characters, not only blanks"
    # Blanks count: 200 characters and a space is over the limit, as the document says.
    for bad in ("t" * 201, " " + "t" * 200, "", "   ", "\t\n", 5, None):
        assert refusal(BOARD_CREATE.check, {**BOARD, "title": bad}) == (
            f"title must be {rule}, got {shown(bad)}"
        )


@pytest.mark.parametrize(
    ("field", "bad", "words"),
    [
        ("id", "", "1-64 characters of A-Z a-z 0-9 _ . -, not . or .."),
        ("id", "a" * 65, "1-64 characters of A-Z a-z 0-9 _ . -, not . or .."),
        ("id", "a/b", "1-64 characters of A-Z a-z 0-9 _ . -, not . or .."),
        ("order", "up", "one of desc, asc"),
        ("operator", "max", "one of best, set, incr"),
        ("min_score", "1", "an integer within ±(2^53-1) or null"),
        ("max_score", MAX_SAFE_INTEGER + 1, "an integer within ±(2^53-1) or null"),
        ("player_submissions", 1, "true or false"),
        ("player_submissions", "true", "true or false"),
        ("reset_schedule", "hourly", "one of never, daily, weekly, monthly"),
        ("score_format", "decimal:7", "integer, duration_ms or decimal:N with N 1-6"),
    ],
)
def test_each_board_setting_refuses_a_bad_value_by_name(field, bad, words):
    assert refusal(BOARD_CREATE.check, {**BOARD, field: bad}) == (
        f"{field} must be {words}, got {bad!r}"
    )


def test_each_board_setting_takes_its_good_values():
    body = {
        **BOARD,
        "id": "a" * 64,
        "order": "asc",
        "operator": "incr",
        "min_score": -MAX_SAFE_INTEGER,
        "max_score": MAX_SAFE_INTEGER,
        "player_submissions": False,
        "score_format": "duration_ms",
    }
    assert BOARD_CREATE.check(body) == {**body, "reset_schedule": "never"}


def test_id_and_title_are_required_and_order_operator_id_cannot_be_patched():
    assert refusal(BOARD_CREATE.check, {}) == "id and title are required"
    assert refusal(BOARD_CREATE.check, {"id": "b"}) == "title is required"
    for fixed in ("id", "order", "operator"):
        assert refusal(BOARD_PATCH.check, {fixed: "x"}) == f"unknown field(s) in body: {fixed}"
    assert BOARD_PATCH.check({}) == {}  # a patch fills in no defaults
    assert BOARD_PATCH.check({"min_score": None}) == {"min_score": None}


def test_board_settings_config_columns_and_answer_name_the_same_fields():
    settings = list(BOARD_SETTINGS)
    assert [f.name for f in fields(BoardConfig)] == [*settings, "created_at"]
    season_columns = {"season", "season_started_at", "schedule_since"}  # not settings
    assert set(boards_table.c.keys()) == {*settings, "created_at", "seq", *season_columns}
    config = schemas.new_board(dict(BOARD), created_at=0.0)
    answer = schemas.board_answer(config, players=3, seq=9)
    assert list(answer) == [*settings, "season", "next_reset_at", "players", "seq"]
    assert answer["players"] == 3 and answer["seq"] == 9 and answer["title"] == "Board"
    assert list(answer) == schemas.BOARD_ANSWER["required"]


# -- query parameters ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "name", "low", "high", "default"),
    [
        (schemas.PAGE, "limit", 1, 1000, 10),
        (schemas.PAGE, "offset", 0, MAX_SAFE_INTEGER, 0),
        (schemas.AROUND, "radius", 0, 100, 5),
        (schemas.UPDATES, "since", 0, MAX_SAFE_INTEGER, 0),
        (schemas.UPDATES, "timeout", 0, 60, 25),
    ],
)
def test_each_query_parameter_takes_its_bounds_and_refuses_past_them(
    query, name, low, high, default
):
    assert query.parse({}.get)[name] == default
    assert query.parse({name: str(low)}.get)[name] == low
    assert query.parse({name: str(high)}.get)[name] == high
    for bad in (low - 1, high + 1):
        assert refusal(query.parse, {name: str(bad)}.get) == (
            f"{name} must be an integer within {low}-{high}, got {bad}"
        )


def test_is_identifier_is_the_id_rule():
    assert schemas.is_identifier("a") and schemas.is_identifier("A-z_0.9" + "x" * 57)
    for bad in ("", "x" * 65, "a b", "abc\n", "é"):
        assert not schemas.is_identifier(bad), bad


# -- accounts ----------------------------------------------------------------------------------


def test_register_takes_values_at_their_limits():
    body = {"username": "u" * 64, "password": "p" * 8, "display_name": "n" * 64}
    assert REGISTER.check(body) == body
    assert REGISTER.check({"username": "u", "password": "p" * 1024, "display_name": None})
    assert REGISTER.check({"username": "u", "password": "p" * 8, "display_name": " Ann "}) == {
        "username": "u",
        "password": "p" * 8,
        "display_name": "Ann",
    }


def test_register_refusals_name_the_field_and_never_the_password():
    good = {"username": "ann", "password": "secret-pass"}
    assert refusal(REGISTER.check, {**good, "username": ""}) == (
        "username must be 1-64 characters of A-Z a-z 0-9 _ . -, not . or .., got ''"
    )
    for bad in ("seven77", "p" * 1025):
        detail = refusal(REGISTER.check, {**good, "password": bad})
        assert (
            detail == f"password must be a string of 8-1024 characters, got {len(bad)} characters"
        )
    assert refusal(REGISTER.check, {**good, "display_name": "n" * 65}).startswith(
        "display_name must be 1-64 characters, not only blanks"
    )
    assert refusal(REGISTER.check, {"password": "secret-pass"}) == "username is required"


def test_login_takes_any_strings_and_nothing_else():
    assert LOGIN.check({"username": "", "password": ""}) == {"username": "", "password": ""}
    assert refusal(LOGIN.check, {"username": 1, "password": "x"}) == (
        "username must be a string, got 1"
    )
    assert refusal(LOGIN.check, {"username": "a", "password": "x", "display_name": "n"}) == (
        "unknown field(s) in body: display_name"
    )


# -- the document is the validator's schema ----------------------------------------------------


def test_the_openapi_document_publishes_the_schemas_that_check_requests():
    document = openapi.document()
    components = document["components"]["schemas"]
    for body in schemas.BODIES:
        assert components[body.name] is body.schema
    assert components["Board"] is schemas.BOARD_ANSWER
    operations = [op for path in document["paths"].values() for op in path.values()]
    named = {
        op["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        for op in operations
        if "requestBody" in op
    }
    assert named == {body.name for body in schemas.BODIES}
    paths = document["paths"]
    for path, query in [
        ("/api/boards/{board_id}/leaderboard", schemas.PAGE),
        ("/api/boards/{board_id}/players/{user_id}/around", schemas.AROUND),
        ("/api/boards/{board_id}/updates", schemas.UPDATES),
    ]:
        listed = {p["name"]: p["schema"] for p in paths[path]["get"]["parameters"]}
        for name, schema in query.parameters.items():
            assert listed[name] is schema


def _likely(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values of the kind `schema` asks for, most of them within its limits."""
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "integer" in kinds:
        low, high = schema.get("minimum", -(2**60)), schema.get("maximum", 2**60)
        return st.integers(low - 2, high + 2) | st.integers(low, high).map(float)
    if "boolean" in kinds:
        return st.booleans()
    if "object" in kinds:
        return st.dictionaries(st.text(max_size=3), st.text(max_size=400), max_size=4)
    if "pattern" in schema and "maxLength" not in schema:
        return st.from_regex(schema["pattern"], fullmatch=True)
    return st.text(
        alphabet="aZ9_.- \t\n\r:é/",
        min_size=max(schema.get("minLength", 0) - 2, 0),
        max_size=schema.get("maxLength", 70) + 2,
    )


def _values(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values near and across the edges of `schema`, and values of every other JSON type."""
    edges: list[Any] = [None, True, False, "", " ", "x", "a b", 1.5, 242.0, [], {}]
    for key in ("minimum", "maximum"):
        if key in schema:
            edges += [schema[key] - 1, schema[key], schema[key] + 1, float(schema[key])]
    for key in ("minLength", "maxLength"):
        if key in schema:
            edges += ["s" * max(schema[key] - 1, 0), "s" * schema[key], "s" * (schema[key] + 1)]
            edges += [" " + "s" * schema[key], " " * schema[key]]
    return _likely(schema) | _likely(schema) | st.sampled_from(edges)


@st.composite
def _bodies(draw: st.DrawFn, schema: dict[str, Any]) -> dict[str, Any]:
    properties = schema["properties"]
    required = set(schema.get("required", ()))
    names = [n for n in properties if draw(st.integers(0, 9)) < (9 if n in required else 5)]
    if draw(st.integers(0, 19)) == 0:
        names.append("unknown")
    return {name: draw(_values(properties.get(name, {}))) for name in names}


@pytest.mark.parametrize("body", schemas.BODIES, ids=lambda body: body.name)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_server_accepts_exactly_what_the_document_allows(body, data):
    """An independent JSON Schema implementation reads the published schema as the server does.

    Only `x-max-bytes`, an extension the document states but JSON Schema cannot, is left out.
    """
    value = data.draw(_bodies(body.schema))
    allowed = Draft202012Validator(body.schema).is_valid(value)
    try:
        body.check(value)
        accepted = True
    except ValidationFailed:
        accepted = False
    if "x-max-bytes" in str(body.schema) and isinstance(value.get("metadata"), dict):
        allowed = allowed and len(orjson.dumps(value["metadata"])) <= MAX_METADATA_BYTES
    assert accepted == allowed, value
