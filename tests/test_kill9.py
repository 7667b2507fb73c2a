"""No acknowledged score is lost: 20 rounds of `kill -9` during concurrent posts.

One SQLite file, 20 `run.py` processes in turn. In each round, HTTP threads (POST with an
`Idempotency-Key`) and WebSocket threads (`submit_score` with a `request_id`) post unique scores
for unique players until the process is killed with SIGKILL at a random moment. After each
restart every submission that got no answer is sent again with the same key, and a sample of
answered ones is replayed. At the end the database file is read directly:

- every acknowledged submission is stored exactly once, with the answer it was given;
- every submission left unanswered by a kill was, once retried, stored exactly once;
- the leaderboard the server holds in memory equals one rebuilt from the database.
"""

from __future__ import annotations

import itertools
import json
import random
import signal
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import jwt
import pytest
import websocket
from server_process import SECRET, ServerProcess

ROUNDS = 20
HTTP_THREADS = 3
WS_THREADS = 2
KILL_AFTER_S = (0.2, 0.6)  # a random moment in this range, while posts are in flight
FEEDER = "feeder"  # one server-role token: keys are scoped to it, and it is not rate limited


def _token(sub: str, role: str) -> str:
    claims = {"sub": sub, "role": role, "exp": int(time.time()) + 3600}
    return jwt.encode(claims, SECRET, algorithm="HS256")


@dataclass
class Ledger:
    """What was sent, and what was answered (key -> Result), shared by the poster threads."""

    sent: dict[str, dict] = field(default_factory=dict)  # key -> body (with transport)
    answered: dict[str, dict] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    counter: itertools.count = field(default_factory=lambda: itertools.count(1))

    def new(self, transport: str) -> tuple[str, dict]:
        with self.lock:
            n = next(self.counter)
            key = f"{transport}-{n}"
            body = {"user_id": f"p{n}", "score": n * 7 + 3, "transport": transport}
            self.sent[key] = body
        return key, body

    def answer(self, key: str, result: dict) -> None:
        with self.lock:
            first = self.answered.setdefault(key, result)
        # A replay of a stored answer is the same answer.
        assert first == result, (key, first, result)

    @property
    def unanswered(self) -> list[str]:
        with self.lock:
            return [key for key in self.sent if key not in self.answered]


def _post_http(server: ServerProcess, token: str, key: str, body: dict) -> dict | None:
    status, result, _ = server.request_with_headers(
        "POST",
        "/api/boards/b/scores",
        {"score": body["score"], "user_id": body["user_id"]},
        token,
        headers={"Idempotency-Key": key},
    )
    if status == 503:
        return None  # not ready or shutting down: not acknowledged, retry later
    assert status == 200, (status, result)
    return result


class WsPoster:
    """One WebSocket connection sending submit_score and waiting for its ack."""

    def __init__(self, server: ServerProcess, token: str) -> None:
        url = f"ws://127.0.0.1:{server.port}/ws"
        self.ws = websocket.create_connection(
            url, header=[f"Authorization: Bearer {token}"], timeout=5
        )

    def submit(self, key: str, body: dict) -> dict | None:
        data = {"board": "b", "score": body["score"], "user_id": body["user_id"]}
        self.ws.send(json.dumps({"type": "submit_score", "data": {**data, "request_id": key}}))
        while True:
            frame = json.loads(self.ws.recv())
            if frame["data"].get("request_id") != key:
                continue  # connection_status, snapshots of others
            if frame["type"] == "ack":
                result = dict(frame["data"])
                del result["request_id"]
                return result
            assert frame["data"]["code"] in ("not_ready", "overloaded"), frame
            return None

    def close(self) -> None:
        self.ws.close()


def _send(server: ServerProcess, token: str, ledger: Ledger, key: str, ws: WsPoster | None):
    body = ledger.sent[key]
    result = ws.submit(key, body) if ws is not None else _post_http(server, token, key, body)
    if result is not None:
        ledger.answer(key, result)


def _poster(server, token, ledger: Ledger, transport: str, stop: threading.Event) -> None:
    try:
        ws = WsPoster(server, token) if transport == "ws" else None
    except (OSError, websocket.WebSocketException):
        return
    try:
        while not stop.is_set():
            key, _ = ledger.new(transport)
            _send(server, token, ledger, key, ws)
    except (OSError, websocket.WebSocketException):
        return  # killed under us: whatever was in flight is unanswered, retried later
    finally:
        if ws is not None:
            ws.close()


def _retry(server: ServerProcess, token: str, ledger: Ledger, keys: list[str]) -> None:
    """Send each key again with the same content over its own transport, until answered."""
    ws = WsPoster(server, token)
    try:
        for key in keys:
            deadline = time.monotonic() + 10
            uses_ws = ledger.sent[key]["transport"] == "ws"
            _send(server, token, ledger, key, ws if uses_ws else None)
            while key not in ledger.answered:
                assert time.monotonic() < deadline, f"{key} never answered"
                time.sleep(0.05)
                _send(server, token, ledger, key, ws if uses_ws else None)
    finally:
        ws.close()


def _stored_keys(db: Path) -> set[str]:
    if not db.exists():
        return set()
    with sqlite3.connect(db) as conn:
        return {row[0] for row in conn.execute("SELECT idempotency_key FROM submissions")}


def _rebuilt_from_database(db: Path) -> tuple[int, list[tuple]]:
    """The board's seq and standings computed from the file alone (docs/rules.md)."""
    with sqlite3.connect(db) as conn:
        seq = conn.execute("SELECT seq FROM boards WHERE id = 'b'").fetchone()[0]
        rows = conn.execute(
            "SELECT r.user_id, u.name, r.score, r.subscore FROM player_records r "
            "JOIN users u ON u.id = r.user_id WHERE r.board_id = 'b' "
            "ORDER BY r.score DESC, r.subscore DESC, r.reached_seq, r.user_id"
        ).fetchall()
    return seq, rows


def _held_in_memory(server: ServerProcess, token: str) -> tuple[int, list[tuple]]:
    entries: list[tuple] = []
    seq = None
    while True:
        status, page = server.request(
            "GET", f"/api/boards/b/leaderboard?limit=1000&offset={len(entries)}", token=token
        )
        assert status == 200
        seq = page["seq"] if seq is None else seq
        assert page["seq"] == seq  # nothing moved while paging
        entries += [(e["user_id"], e["name"], e["score"], e["subscore"]) for e in page["entries"]]
        if len(entries) >= page["total"]:
            return seq, entries


@pytest.mark.timeout(240)
def test_no_acknowledged_score_is_lost_over_20_kill_9_rounds(tmp_path):
    db = tmp_path / "kill9.db"
    url = f"sqlite:///{db}"
    token = _token(FEEDER, "server")
    admin = _token("admin", "admin")
    ledger = Ledger()
    rng = random.Random(8)
    flags = ("--ws-message-rate", "10000", "--ws-message-burst", "10000", "--log-level", "warning")
    figures = {"rounds": 0, "in_flight_at_kill": 0, "committed_unanswered": 0, "replayed": 0}
    started = time.monotonic()

    for round_no in range(ROUNDS):
        server = ServerProcess(url, tmp_path / "server.log", *flags).start()
        if round_no == 0:
            assert server.request("POST", "/api/boards", {"id": "b", "title": "B"}, admin)[0] == 201
        # After the restart: what the kill left unanswered, then a sample of answered keys.
        pending = ledger.unanswered
        figures["in_flight_at_kill"] += len(pending)
        figures["committed_unanswered"] += len(set(pending) & _stored_keys(db))
        sample = rng.sample(sorted(ledger.answered), min(10, len(ledger.answered)))
        _retry(server, token, ledger, pending)
        for key in sample:
            before = ledger.answered[key]
            uses_ws = ledger.sent[key]["transport"] == "ws"
            ws = WsPoster(server, token) if uses_ws else None
            result = (
                ws.submit(key, ledger.sent[key])
                if ws is not None
                else _post_http(server, token, key, ledger.sent[key])
            )
            if ws is not None:
                ws.close()
            assert result == before, key  # the stored answer, not a second application
            figures["replayed"] += 1

        stop = threading.Event()
        threads = [
            threading.Thread(target=_poster, args=(server, token, ledger, transport, stop))
            for transport in ["http"] * HTTP_THREADS + ["ws"] * WS_THREADS
        ]
        for thread in threads:
            thread.start()
        time.sleep(rng.uniform(*KILL_AFTER_S))
        server.stop(signal.SIGKILL)
        stop.set()
        for thread in threads:
            thread.join(15)
        figures["rounds"] += 1

    final = ServerProcess(url, tmp_path / "server.log", *flags).start()
    try:
        figures["in_flight_at_kill"] += len(ledger.unanswered)
        figures["committed_unanswered"] += len(set(ledger.unanswered) & _stored_keys(db))
        _retry(final, token, ledger, ledger.unanswered)
        in_memory = _held_in_memory(final, token)
    finally:
        assert final.stop() == 0

    with sqlite3.connect(db) as conn:
        stored = conn.execute(
            "SELECT idempotency_key, user_id, score, response FROM submissions WHERE actor = ?",
            (FEEDER,),
        ).fetchall()
    keys = [row[0] for row in stored]
    assert len(keys) == len(set(keys)), "a submission was stored twice"
    by_key = {key: (user, score, json.loads(response)) for key, user, score, response in stored}
    assert set(by_key) == set(ledger.sent) == set(ledger.answered)
    for key, body in ledger.sent.items():
        assert by_key[key] == (body["user_id"], body["score"], ledger.answered[key]), key
    assert in_memory == _rebuilt_from_database(db)
    assert len(in_memory[1]) == len(ledger.sent)

    figures.update(
        submissions=len(ledger.sent),
        over_http=sum(1 for b in ledger.sent.values() if b["transport"] == "http"),
        over_ws=sum(1 for b in ledger.sent.values() if b["transport"] == "ws"),
        stored_once=len(by_key),
        seconds=round(time.monotonic() - started, 1),
    )
    print(f"\nkill -9 figures: {figures}")
