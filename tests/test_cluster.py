"""Cluster mode end to end: three `run.py` processes on one PostgreSQL and one Redis.

Every test starts its own processes on free ports, a fresh database (`postgres_url`) and a
redis-server of its own (`private_redis`), which a test may stop and start. What is checked is
what users see: each process's answers, its WebSocket frames and `/readyz`, against the rows
PostgreSQL holds.
"""

from __future__ import annotations

import http.client
import json
import random
import signal
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jwt
import psycopg
import pytest
import websocket
from server_process import REPO, SECRET, ServerProcess

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

CONVERGE_S = 30  # generous: three servers and the test share two loaded cores
ADMIN = "admin-1"
FEEDER = "feeder"  # a server-role token: submits for any player, not rate limited


def token(sub: str, role: str = "player") -> str:
    claims = {"sub": sub, "role": role, "exp": int(time.time()) + 3600}
    return jwt.encode(claims, SECRET, algorithm="HS256")


ADMIN_TOKEN = token(ADMIN, "admin")
FEEDER_TOKEN = token(FEEDER, "server")


def wait_for(what: str, condition: Callable[[], Any], timeout: float = CONVERGE_S) -> Any:
    """Poll until `condition()` is truthy; its value. AssertionError naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Cluster:
    """Three processes on one database and one Redis."""

    def __init__(self, database_url: str, redis_url: str, workdir: Path, size: int = 3) -> None:
        self.database_url = database_url
        self.servers = [
            ServerProcess(database_url, workdir / f"server{i}.log", "--redis-url", redis_url)
            for i in range(size)
        ]

    def start(self) -> None:
        self.servers[0].start()  # migrates the database; the others then start together
        for server in self.servers[1:]:
            server.launch()
        for server in self.servers[1:]:
            server.wait_ready()

    def stop(self) -> list[int]:
        """SIGTERM each running process; their exit statuses."""
        return [
            server.stop()
            for server in self.servers
            if server.process is not None and server.process.poll() is None
        ]

    def make_board(self, board_id: str, operator: str = "best", **fields: Any) -> None:
        body = {"id": board_id, "title": board_id, "operator": operator, **fields}
        status, answer = self.servers[0].request("POST", "/api/boards", body, ADMIN_TOKEN)
        assert status == 201, answer
        for server in self.servers:
            wait_for(f"{board_id} on {server.port}", lambda s=server: board_of(s, board_id))


def board_of(server: ServerProcess, board_id: str) -> dict | None:
    status, answer = server.request("GET", f"/api/boards/{board_id}", token=ADMIN_TOKEN)
    return answer if status == 200 else None


def standings(server: ServerProcess, board_id: str) -> tuple[int, list[tuple]] | None:
    """(seq, [(user_id, score, subscore), …] in rank order) as the process holds them."""
    rows: list[tuple] = []
    seq = None
    while True:
        path = f"/api/boards/{board_id}/leaderboard?limit=1000&offset={len(rows)}"
        status, page = server.request("GET", path, token=ADMIN_TOKEN)
        if status != 200:
            return None
        if seq is None:
            seq = page["seq"]
        elif page["seq"] != seq:
            return None  # it moved between pages: not settled
        rows += [(e["user_id"], e["score"], e["subscore"]) for e in page["entries"]]
        if len(rows) >= page["total"]:
            return seq, rows


def stored_standings(database_url: str, board_id: str) -> tuple[int, list[tuple]]:
    """The same, rebuilt from PostgreSQL's rows with the documented order and tie-breaks."""
    with psycopg.connect(database_url.replace("postgresql+psycopg", "postgresql")) as conn:
        seq, order = conn.execute(
            'SELECT seq, "order" FROM boards WHERE id = %s', (board_id,)
        ).fetchone()
        rows = conn.execute(
            "SELECT user_id, score, subscore, reached_seq FROM player_records WHERE board_id = %s",
            (board_id,),
        ).fetchall()
    sign = -1 if order == "desc" else 1
    rows.sort(key=lambda r: (sign * r[1], sign * r[2], r[3], r[0]))
    return seq, [(r[0], r[1], r[2]) for r in rows]


def converged(cluster: Cluster, board_id: str) -> tuple[int, list[tuple]] | None:
    """The standings when every process holds exactly what the database holds, else None."""
    expected = stored_standings(cluster.database_url, board_id)
    for server in cluster.servers:
        if standings(server, board_id) != expected:
            return None
    return expected


@pytest.fixture
def cluster(postgres_url: str, private_redis, tmp_path: Path) -> Iterator[Cluster]:
    group = Cluster(postgres_url, private_redis.url, tmp_path)
    try:
        group.start()
        yield group
    finally:
        group.stop()


class GeneratedSecretServer(ServerProcess):
    """A server started without --jwt-secret: it uses (or generates) the stored one."""

    def command(self, *args: str) -> list[str]:
        command = super().command(*args)
        at = command.index("--jwt-secret")
        return command[:at] + command[at + 2 :]


class Poster:
    """One keep-alive HTTP connection per process; posts scores with the feeder token."""

    def __init__(self, servers: list[ServerProcess]) -> None:
        self.connections = {
            s.port: http.client.HTTPConnection("127.0.0.1", s.port, timeout=30) for s in servers
        }

    def post(
        self, server: ServerProcess, board_id: str, body: dict, key: str | None = None
    ) -> tuple[int, dict]:
        headers = {"Authorization": f"Bearer {FEEDER_TOKEN}", "Content-Type": "application/json"}
        if key is not None:
            headers["Idempotency-Key"] = key
        conn = self.connections[server.port]
        try:
            conn.request("POST", f"/api/boards/{board_id}/scores", json.dumps(body), headers)
            response = conn.getresponse()
            return response.status, json.loads(response.read())
        except (OSError, http.client.HTTPException):
            conn.close()  # reconnects on the next request
            raise

    def close(self) -> None:
        for conn in self.connections.values():
            conn.close()


class Subscriber:
    """A WebSocket client subscribed to one board, collecting frames on a thread."""

    def __init__(self, server: ServerProcess, board_id: str) -> None:
        self.ws = websocket.create_connection(
            f"ws://127.0.0.1:{server.port}/ws?board={board_id}",
            header=[f"Authorization: Bearer {token('watcher')}"],
            timeout=30,
        )
        self.frames: list[tuple[float, dict]] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        wait_for("the first snapshot", lambda: self.find("snapshot"))

    def _read(self) -> None:
        while True:
            try:
                frame = json.loads(self.ws.recv())
            except (websocket.WebSocketException, OSError, ValueError):
                return
            with self.lock:
                self.frames.append((time.monotonic(), frame))

    def find(self, kind: str, since: float = 0.0, **data: Any) -> tuple[float, dict] | None:
        with self.lock:
            for at, frame in self.frames:
                if (
                    frame["type"] == kind
                    and at >= since
                    and all(frame["data"].get(k) == v for k, v in data.items())
                ):
                    return at, frame
        return None

    def close(self) -> None:
        self.ws.close()


def test_a_subscriber_on_one_process_sees_a_score_posted_to_another(cluster: Cluster):
    a, b, _ = cluster.servers
    cluster.make_board("live")
    # One watcher on the process that takes the posts, one on another: the difference between
    # their delays is what the Redis hop costs.
    watchers = {"same process": Subscriber(b, "live"), "other process": Subscriber(a, "live")}
    poster = Poster([b])
    delays: dict[str, list[float]] = {where: [] for where in watchers}

    def frame_for(watcher: Subscriber, seq: int, since: float) -> tuple[float, dict] | None:
        with watcher.lock:
            return next(
                (
                    (at, f)
                    for at, f in watcher.frames
                    if at >= since and f["type"] == "score_update" and f["data"]["seq"] >= seq
                ),
                None,
            )

    try:
        for n in range(1, 31):
            sent_at = time.monotonic()
            status, result = poster.post(b, "live", {"user_id": f"p{n}", "score": 1000 + n})
            assert status == 200, result
            assert (result["rank"], result["previous_rank"], result["improved"]) == (1, None, True)
            for where, watcher in watchers.items():
                at, frame = wait_for(
                    f"score_update seq {result['seq']} on the {where}",
                    lambda w=watcher, s=result["seq"], t=sent_at: frame_for(w, s, t),
                )
                assert frame["data"]["top_10"][0]["user_id"] == f"p{n}"
                delays[where].append(at - sent_at)
            time.sleep(0.12)  # past the coalescing window, so each post has a frame of its own
    finally:
        for watcher in watchers.values():
            watcher.close()
        poster.close()
    print()
    for where, seen in delays.items():
        print(
            f"post -> score_update, subscriber on the {where}: median "
            f"{statistics.median(seen) * 1000:.1f} ms, max {max(seen) * 1000:.1f} ms "
            f"over {len(seen)} posts (HTTP post included)"
        )


def test_concurrent_submissions_on_three_processes_converge_on_the_database(cluster: Cluster):
    operators = {"top": "best", "latest": "set", "total": "incr"}
    for board_id, operator in operators.items():
        cluster.make_board(board_id, operator)
    rng = random.Random(7)
    jobs = [
        (
            rng.choice(cluster.servers),
            rng.choice(list(operators)),
            {"user_id": f"p{rng.randrange(60)}", "score": rng.randrange(-20, 100)},
        )
        for _ in range(3000)
    ]
    local = threading.local()
    posters: list[Poster] = []

    def send(job: tuple[ServerProcess, str, dict]) -> int:
        if not hasattr(local, "poster"):
            local.poster = Poster(cluster.servers)
            posters.append(local.poster)
        server, board_id, body = job
        status, answer = local.poster.post(server, board_id, body)
        assert status == 200, answer
        return status

    started = time.monotonic()
    with ThreadPoolExecutor(24) as pool:
        assert all(status == 200 for status in pool.map(send, jobs))
    elapsed = time.monotonic() - started
    for poster in posters:
        poster.close()
    print(f"\n{len(jobs)} submissions over 3 processes in {elapsed:.1f} s")
    totals: dict[str, int] = {}
    for _, board_id, body in jobs:
        if board_id == "total":
            totals[body["user_id"]] = totals.get(body["user_id"], 0) + body["score"]
    for board_id in operators:
        seq, rows = wait_for(f"{board_id} converged", lambda b=board_id: converged(cluster, b))
        assert rows and seq > 0
    # incr: the database added every submission exactly once, whatever process took it.
    assert {u: s for u, s, _ in stored_standings(cluster.database_url, "total")[1]} == totals


def test_redis_stopped_and_restarted_mid_run_loses_nothing(cluster: Cluster, private_redis):
    a, b, c = cluster.servers
    cluster.make_board("steady")
    watcher = Subscriber(c, "steady")
    acknowledged: dict[str, int] = {}
    failures: list[str] = []
    stop = threading.Event()

    def post_until_stopped(server: ServerProcess, prefix: str) -> None:
        poster = Poster([server])
        n = 0
        while not stop.is_set():
            n += 1
            user = f"{prefix}{n}"
            try:
                status, answer = poster.post(server, "steady", {"user_id": user, "score": n})
            except (OSError, http.client.HTTPException) as exc:
                failures.append(f"{user}: {exc}")
                continue
            if status == 200:
                acknowledged[user] = n
            else:
                failures.append(f"{user}: {status} {answer}")
            time.sleep(0.01)
        poster.close()

    threads = [
        threading.Thread(target=post_until_stopped, args=(server, f"{i}-"))
        for i, server in enumerate((a, b))
    ]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1)
        private_redis.stop()
        for server in cluster.servers:
            wait_for("/readyz 503", lambda s=server: s.request("GET", "/readyz")[0] == 503)
        status, problem = a.request("GET", "/readyz")
        assert status == 503 and "Redis" in json.dumps(problem)
        during = len(acknowledged)
        time.sleep(1.5)
        assert len(acknowledged) > during, "writes stopped while Redis was away"
        back_at = time.monotonic()
        private_redis.start()
        for server in cluster.servers:
            wait_for("/readyz 200", lambda s=server: s.request("GET", "/readyz")[0] == 200)
        time.sleep(1)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    try:
        assert not failures, failures[:5]
        _, rows = wait_for("replicas converged", lambda: converged(cluster, "steady"))
        held = {user: score for user, score, _ in rows}
        assert all(held.get(user) == score for user, score in acknowledged.items())
        # The client on c was resynchronized: a fresh snapshot after Redis came back.
        wait_for("a fresh snapshot", lambda: watcher.find("snapshot", since=back_at))
    finally:
        watcher.close()


def test_while_redis_is_away_other_processes_changes_still_arrive(cluster: Cluster, private_redis):
    """No record crosses without Redis: each process compares the boards' seqs with the
    database's every 2 s and reads back the ones another process moved on (or made)."""
    a, b, _ = cluster.servers
    cluster.make_board("quiet")
    private_redis.stop()
    for server in cluster.servers:
        wait_for("/readyz 503", lambda s=server: s.request("GET", "/readyz")[0] == 503)
    poster = Poster([b])
    try:
        status, answer = poster.post(b, "quiet", {"user_id": "far", "score": 7})
        assert status == 200, answer
    finally:
        poster.close()
    # a made no change of its own to that board, so no gap of its own could show it the score.
    wait_for("a holds b's score", lambda: standings(a, "quiet") == (1, [("far", 7, 0)]), 15)
    body = {"id": "made-on-b", "title": "made on b"}
    status, answer = b.request("POST", "/api/boards", body, ADMIN_TOKEN)
    assert status == 201, answer
    wait_for("a has b's new board", lambda: board_of(a, "made-on-b"), 15)
    assert b.request("DELETE", "/api/boards/quiet", token=ADMIN_TOKEN)[0] == 204
    wait_for("a forgot the deleted board", lambda: board_of(a, "quiet") is None, 15)


def test_a_process_killed_with_sigkill_catches_up_when_restarted(cluster: Cluster):
    a, b, c = cluster.servers
    cluster.make_board("race", order="asc")
    poster = Poster(cluster.servers)
    try:
        for n in range(50):
            assert poster.post(a, "race", {"user_id": f"p{n}", "score": 500 - n})[0] == 200
        c.stop(signal.SIGKILL)
        for n in range(50, 150):
            server = a if n % 2 else b
            assert poster.post(server, "race", {"user_id": f"p{n}", "score": 500 - n})[0] == 200
        assert a.request("DELETE", "/api/boards/race/players/p3", token=ADMIN_TOKEN)[0] == 204
        c.start()
        for n in range(150, 160):
            assert poster.post(c, "race", {"user_id": f"p{n}", "score": 500 - n})[0] == 200
    finally:
        poster.close()
    _, rows = wait_for("the restarted process caught up", lambda: converged(cluster, "race"))
    assert len(rows) == 159 and rows[0][0] == "p159"


def test_processes_stop_cleanly_on_sigterm(cluster: Cluster):
    cluster.make_board("bye")
    poster = Poster(cluster.servers)
    try:
        for server in cluster.servers:
            assert poster.post(server, "bye", {"user_id": f"u{server.port}", "score": 1})[0] == 200
    finally:
        poster.close()
    assert cluster.stop() == [0, 0, 0]
    for server in cluster.servers:
        assert "Traceback" not in server.log_path.read_text()


def test_an_idempotency_key_reused_on_another_process_gets_the_first_answer(cluster: Cluster):
    a, b, c = cluster.servers
    cluster.make_board("quiz")
    poster = Poster(cluster.servers)
    try:
        body = {"user_id": "ann", "score": 40}
        status, first = poster.post(a, "quiz", body, key="round-1")
        assert status == 200 and first["improved"] is True
        assert poster.post(b, "quiz", {"user_id": "bob", "score": 90})[0] == 200
        # The same request again, elsewhere: the first answer, and nothing stored twice.
        assert poster.post(b, "quiz", body, key="round-1") == (200, first)
        assert poster.post(c, "quiz", body, key="round-1") == (200, first)
        status, problem = poster.post(c, "quiz", {"user_id": "ann", "score": 41}, key="round-1")
        assert status == 422, problem
    finally:
        poster.close()
    _, rows = wait_for("converged", lambda: converged(cluster, "quiz"))
    assert rows == [("bob", 90, 0), ("ann", 40, 0)]
    with psycopg.connect(cluster.database_url.replace("postgresql+psycopg", "postgresql")) as db:
        (count,) = db.execute(
            "SELECT count(*) FROM submissions WHERE idempotency_key = 'round-1'"
        ).fetchone()
    assert count == 1


def test_one_key_sent_to_every_process_at_once_is_stored_once_with_one_answer(cluster: Cluster):
    cluster.make_board("rush", "incr")
    body = {"user_id": "cat", "score": 5}

    def send(server: ServerProcess) -> tuple[int, dict]:
        poster = Poster([server])
        try:
            return poster.post(server, "rush", body, key="once")
        finally:
            poster.close()

    for _ in range(3):
        with ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(send, cluster.servers))
        assert all(status == 200 for status, _ in answers), answers
        assert answers[0][1] == answers[1][1] == answers[2][1]
    _, rows = wait_for("converged", lambda: converged(cluster, "rush"))
    assert rows == [("cat", 5, 0)]  # incr: added once


def test_a_key_whose_first_answer_was_lost_gets_the_standing_after_a_wait(cluster: Cluster):
    a, b, _ = cluster.servers
    cluster.make_board("lost")
    poster = Poster(cluster.servers)
    try:
        status, first = poster.post(a, "lost", {"user_id": "dan", "score": 70}, key="k1")
        assert status == 200
        # As if a's process had died between its commit and storing its answer.
        with psycopg.connect(
            cluster.database_url.replace("postgresql+psycopg", "postgresql")
        ) as db:
            db.execute("UPDATE submissions SET response = 'null' WHERE idempotency_key = 'k1'")
        status, again = poster.post(b, "lost", {"user_id": "dan", "score": 70}, key="k1")
    finally:
        poster.close()
    assert status == 200
    assert again == {**first, "previous_rank": 1, "improved": False}


def test_admin_changes_on_one_process_reach_the_others(cluster: Cluster):
    a, b, c = cluster.servers
    cluster.make_board("cup")  # created on a, seen by all
    watcher = Subscriber(c, "cup")
    poster = Poster(cluster.servers)
    try:
        status, _ = b.request("PATCH", "/api/boards/cup", {"title": "The Cup"}, ADMIN_TOKEN)
        assert status == 200
        for server in cluster.servers:
            wait_for("the new title", lambda s=server: board_of(s, "cup")["title"] == "The Cup")
        for n, server in enumerate((a, b, c, a)):
            assert poster.post(server, "cup", {"user_id": f"p{n}", "score": 10 * n})[0] == 200
        wait_for("scores everywhere", lambda: converged(cluster, "cup"))

        assert a.request("DELETE", "/api/boards/cup/players/p3", token=ADMIN_TOKEN)[0] == 204
        seq, rows = wait_for("the removal everywhere", lambda: converged(cluster, "cup"))
        assert [user for user, _, _ in rows] == ["p2", "p1", "p0"]

        status, reset = c.request("POST", "/api/boards/cup/reset", token=ADMIN_TOKEN)
        assert (status, reset) == (200, {"board": "cup", "season": 1, "current": 2})
        for server in cluster.servers:
            wait_for(
                "season 2 everywhere",
                lambda s=server: (
                    (board_of(s, "cup") or {}).get("season") == 2
                    and standings(s, "cup") == (seq + 1, [])
                ),
            )
        status, archived = a.request("GET", "/api/boards/cup/seasons", token=ADMIN_TOKEN)
        assert status == 200 and [s["players"] for s in archived["seasons"]] == [3]

        assert b.request("DELETE", "/api/boards/cup", token=ADMIN_TOKEN)[0] == 204
        for server in cluster.servers:
            wait_for("the board gone", lambda s=server: board_of(s, "cup") is None)
        assert poster.post(a, "cup", {"user_id": "late", "score": 1})[0] == 404
        # The subscriber on c was told the board went away.
        wait_for("the deletion on c's socket", lambda: watcher.find("error", code="not_found"))
    finally:
        poster.close()
        watcher.close()


def test_processes_starting_together_share_one_generated_secret(
    postgres_url: str, private_redis, tmp_path: Path
):
    servers = [
        GeneratedSecretServer(
            postgres_url, tmp_path / f"s{i}.log", "--redis-url", private_redis.url
        )
        for i in range(3)
    ]
    try:
        for server in servers:  # together, on a database none of them has migrated yet
            server.launch()
        for server in servers:
            server.wait_ready()
        admin = servers[0].token("boss", "admin")  # signed with the secret stored in the database
        for server in servers:
            status, answer = server.request("GET", "/api/me", token=admin)
            assert (status, answer["user_id"]) == (200, "boss")
    finally:
        for server in servers:
            if server.process is not None:
                server.stop()


def test_a_process_started_while_redis_is_away_serves_writes_and_becomes_ready(
    postgres_url: str, private_redis, tmp_path: Path
):
    private_redis.stop()
    server = ServerProcess(postgres_url, tmp_path / "alone.log", "--redis-url", private_redis.url)
    server.launch()
    try:
        wait_for("the boards loaded", lambda: board_list(server) is not None)
        status, problem = server.request("GET", "/readyz")
        assert status == 503 and "Redis" in problem["detail"]
        status, _ = server.request(
            "POST", "/api/boards", {"id": "solo", "title": "Solo"}, ADMIN_TOKEN
        )
        assert status == 201
        poster = Poster([server])
        try:
            assert poster.post(server, "solo", {"user_id": "a", "score": 3})[0] == 200
        finally:
            poster.close()
        private_redis.start()
        wait_for("/readyz 200", lambda: server.request("GET", "/readyz")[0] == 200)
        assert standings(server, "solo") == stored_standings(postgres_url, "solo")
    finally:
        server.stop()


def board_list(server: ServerProcess) -> list | None:
    try:
        status, answer = server.request("GET", "/api/boards", token=ADMIN_TOKEN)
    except OSError:
        return None
    return answer if status == 200 else None


def manage(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """`run.py board|user …` with the cluster's flags, aimed at `server`'s port."""
    return subprocess.run(
        server.command("--port", str(server.port), *args),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_management_commands_go_through_a_running_process_so_every_process_sees_them(
    cluster: Cluster,
):
    a, b, c = cluster.servers
    made = manage(b, "board", "create", "cli", "--title", "Made by run.py", "--operator", "incr")
    assert made.returncode == 0, made.stderr
    assert made.stdout.splitlines()[-1] == f"(through the running server at {b.base_url})"
    for server in cluster.servers:
        wait_for(f"the board on {server.port}", lambda s=server: board_of(s, "cli"))
    status, answer = a.request(
        "POST", "/api/boards/cli/scores", {"user_id": "p", "score": 4}, ADMIN_TOKEN
    )
    assert status == 200, answer
    reset = manage(c, "board", "reset", "cli")
    assert reset.returncode == 0, reset.stderr
    for server in cluster.servers:
        wait_for(f"the reset on {server.port}", lambda s=server: standings(s, "cli") == (2, []))
        assert board_of(server, "cli")["season"] == 2

    # With every process stopped, the command writes the database, and the processes read
    # it when they start.
    assert cluster.stop() == [0, 0, 0]
    offline = manage(a, "board", "create", "later", "--title", "Later")
    assert offline.returncode == 0, offline.stderr
    assert "written to the database directly" in offline.stdout
    a.start()
    assert board_of(a, "later") is not None


def test_a_cluster_and_a_single_process_server_keep_each_other_off_one_database(
    cluster: Cluster, tmp_path: Path, private_redis
):
    # The cluster's processes hold the database lock shared: a server without --redis-url,
    # which would keep its own memory beside theirs, is refused in one line.
    single = ServerProcess(cluster.database_url, tmp_path / "single.log")
    result = subprocess.run(
        single.command("--port", str(single.port)), cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "another server is running on this database" in result.stderr
    assert "advisory lock" in result.stderr and "Traceback" not in result.stderr

    # And the other way round: with a single-process server running, no cluster process starts.
    assert cluster.stop() == [0, 0, 0]
    single.start()
    try:
        late = cluster.servers[0]
        result = subprocess.run(
            late.command("--port", str(late.port), *late.extra_args),
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 2
        assert "a single-process server (no --redis-url) is running" in result.stderr
        supervised = subprocess.run(
            late.command("--port", str(late.port), *late.extra_args, "--processes", "2"),
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        assert supervised.returncode == 2
        assert "a single-process server (no --redis-url) is running" in supervised.stderr
    finally:
        assert single.stop() == 0
