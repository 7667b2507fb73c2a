"""The checking of client values against the JSON Schemas of scoreboard/schemas.py.

One mechanism for every request shape of both transports: a body (`Body`), the query
parameters of a route (`Query`) and the idempotency key. A shape's JSON Schema is compiled
once, at import, into plain Python by fastjsonschema, and that same schema is what
scoreboard/openapi.py publishes: the document cannot allow what the server refuses, or forbid
what it accepts. Two rules that JSON Schema cannot say are kept next to it and published as
extensions: `x-max-bytes` (an object's size once serialized) and `x-strip` (surrounding blanks
are removed from a string once it has passed).

Every refusal is an errors.ValidationFailed (422 `validation_failed`) whose detail names the
field, the rule and the bad value: `title must be 1-200 characters, not only blanks, got ''`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import fastjsonschema
import orjson

from .errors import ValidationFailed

Schema = dict[str, Any]

MAX_SAFE_INTEGER = 2**53 - 1  # the largest integer a JavaScript client reads exactly
MAX_IDEMPOTENCY_KEY_LENGTH = 255  # docs/api.md#idempotency
#: The characters `x-strip` removes, and the only ones a not-blank pattern treats as blank:
#: an explicit set, because Python's and ECMA-262's ideas of "whitespace" differ.
BLANKS = " \t\n\r"
#: A repr longer than this is cut in error details: the value is named, not echoed in full.
MAX_SHOWN_VALUE = 120
_INTEGER_TEXT = re.compile(r"-?[0-9]{1,20}")


def shown(value: Any) -> str:
    """`repr(value)`, cut to MAX_SHOWN_VALUE characters."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN_VALUE else text[: MAX_SHOWN_VALUE - 3] + "..."


def rule(schema: Schema) -> str:
    """What a value must be, in words, from its schema (its `description` when it has one)."""
    if "description" in schema:
        return str(schema["description"])
    if "enum" in schema:
        return "one of " + ", ".join(str(option) for option in schema["enum"])
    kinds = _kinds(schema)
    words = [_kind_rule(kind, schema) for kind in kinds if kind != "null"]
    if "null" in kinds:
        words.append("null")
    return " or ".join(words)


def _kinds(schema: Schema) -> list[str]:
    """The JSON types a schema names (`type` may be one name or a list)."""
    types = schema.get("type")
    if isinstance(types, list):
        return [str(kind) for kind in types]
    return [types] if isinstance(types, str) else []


def _kind_rule(kind: str, schema: Schema) -> str:
    if kind == "integer":
        low, high = schema.get("minimum"), schema.get("maximum")
        if low == -MAX_SAFE_INTEGER and high == MAX_SAFE_INTEGER:
            return "an integer within ±(2^53-1)"
        if low is not None and high is not None:
            return f"an integer within {low}-{high}"
        return "an integer"
    if kind == "boolean":
        return "true or false"
    if kind == "object":
        limit = schema.get("x-max-bytes")
        return "a JSON object" + (f" of at most {limit} bytes serialized" if limit else "")
    if kind == "string" and "maxLength" in schema:
        return f"a string of {schema.get('minLength', 0)}-{schema['maxLength']} characters"
    return f"a {kind}" if kind == "string" else str(kind)


def _detail(exc: fastjsonschema.JsonSchemaValueException, what: str) -> str:
    """The client-facing detail of a refusal: the field, its rule, the bad value."""
    definition: Schema = exc.definition or {}
    if exc.rule == "additionalProperties":
        unknown = sorted(set(exc.value) - set(definition.get("properties", {})))
        return f"unknown field(s) in {what}: {', '.join(unknown)}"
    if exc.rule == "required":
        missing = sorted(set(definition["required"]) - set(exc.value))
        return f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required"
    field = (exc.name or "").removeprefix("data").removeprefix(".") or what
    return f"{field} must be {rule(definition)}, got {_shown_as(definition, exc.value)}"


def _shown_as(definition: Schema, value: Any) -> str:
    # A secret (a password: `writeOnly`) is never echoed, not even in part; its size is.
    if definition.get("writeOnly"):
        return f"{len(value)} characters" if isinstance(value, str) else type(value).__name__
    return shown(value)


class Body:
    """A JSON object shape: `check(body)` returns a clean copy or raises ValidationFailed.

    The copy has the schema's defaults filled in, integers given as `242.0` made `242`,
    `x-strip` strings stripped; the caller's dict is never changed.
    """

    def __init__(self, name: str, schema: Schema, *, what: str = "body") -> None:
        self.name = name  # its name among the OpenAPI document's components
        self.schema = schema
        self.what = what
        self._validate: Callable[[Any], Any] = fastjsonschema.compile(schema)
        self._after: dict[str, Callable[[str, Any], Any]] = {}
        for field, spec in schema.get("properties", {}).items():
            after = _after_check(spec)
            if after is not None:
                self._after[field] = after

    def check(self, body: Mapping[str, Any]) -> dict[str, Any]:
        clean = dict(body)
        try:
            self._validate(clean)
        except fastjsonschema.JsonSchemaValueException as exc:
            raise ValidationFailed(_detail(exc, self.what)) from None
        for field, after in self._after.items():
            value = clean.get(field)
            if value is not None:
                clean[field] = after(field, value)
        return clean


def _after_check(spec: Schema) -> Callable[[str, Any], Any] | None:
    """What a field needs once the schema passed it: normalising, or a size limit."""
    if "integer" in _kinds(spec):
        return _whole
    if spec.get("x-strip"):
        return _strip
    if "x-max-bytes" in spec:
        limit = int(spec["x-max-bytes"])

        def max_bytes(field: str, value: Any) -> Any:
            size = len(orjson.dumps(value))
            if size > limit:
                raise ValidationFailed(
                    f"{field} must be at most {limit} bytes serialized, got {size} bytes"
                )
            return value

        return max_bytes
    return None


def _whole(field: str, value: Any) -> Any:
    # JSON does not tell 242 from 242.0 and neither does JSON Schema's "integer": take both.
    return int(value) if isinstance(value, float) else value


def _strip(field: str, value: Any) -> Any:
    return value.strip(BLANKS)


class Query:
    """The integer query parameters of one route, each with its bounds and default."""

    def __init__(self, parameters: dict[str, Schema]) -> None:
        self.parameters = parameters
        self._body = Body("", {"type": "object", "properties": parameters}, what="query")

    def parse(self, raw: Callable[[str], str | None]) -> dict[str, int]:
        """Read each parameter through `raw(name)` (None when absent) and check it."""
        values: dict[str, Any] = {}
        for name in self.parameters:
            text = raw(name)
            if text is None:
                continue
            if not _INTEGER_TEXT.fullmatch(text):
                raise ValidationFailed(
                    f"{name} must be {rule(self.parameters[name])}, got {shown(text)}"
                )
            values[name] = int(text)
        return self._body.check(values)


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
