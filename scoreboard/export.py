"""Exports of a board's standings as CSV or JSON, rendered a chunk of rows at a time.

The rows come from `Store.entry_chunks` (the standings in force, or an archived season) and
each chunk becomes one bytes object the handler writes and flushes before asking for the next,
so a million entries are never one string in memory. `score_display` is the score as the
board shows it (formatting.py), next to the raw integer.

Pure: no I/O, no Tornado.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

import orjson

from .formatting import format_score
from .ranking import format_timestamp

FORMATS = ("csv", "json")
#: The CSV header and the keys of a JSON entry, in this order.
COLUMNS = ("rank", "user_id", "name", "score", "score_display", "subscore", "updated_at")
#: Rows read and rendered per chunk: about 100-300 KiB of output, a few ms of the loop.
CHUNK_ROWS = 2000

CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "json": "application/json"}


def filename(board_id: str, season: int, fmt: str) -> str:
    """`speedrun-season-3.csv`: board ids are [A-Za-z0-9_.-], safe in a header as they are."""
    return f"{board_id}-season-{season}.{fmt}"


def _cells(row: tuple[Any, ...], score_format: str) -> tuple[Any, ...]:
    rank, user_id, name, score, subscore, updated_at = row
    return (
        rank,
        user_id,
        name,
        score,
        format_score(score, score_format),
        subscore,
        format_timestamp(updated_at),
    )


def csv_head() -> bytes:
    return _csv([COLUMNS])


def csv_chunk(rows: Iterable[tuple[Any, ...]], score_format: str) -> bytes:
    """CSV lines (RFC 4180: CRLF, quoted where needed) of (rank, user_id, name, score,
    subscore, updated_at) rows."""
    return _csv(_cells(row, score_format) for row in rows)


def _csv(lines: Iterable[Iterable[Any]]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows(lines)
    return out.getvalue().encode()


def json_head(board_id: str, season: int, score_format: str, *, archived: bool) -> bytes:
    """The document's opening up to the `[` of its entries."""
    head = orjson.dumps(
        {"board": board_id, "season": season, "archived": archived, "score_format": score_format}
    )
    return head[:-1] + b',"entries":['


def json_chunk(rows: Iterable[tuple[Any, ...]], score_format: str, *, first: bool) -> bytes:
    """Entries separated by commas; `first` when no entry was written before this chunk."""
    parts = [
        orjson.dumps(dict(zip(COLUMNS, _cells(row, score_format), strict=True))) for row in rows
    ]
    body = b",".join(parts)
    return body if first or not body else b"," + body


JSON_TAIL = b"]}"
