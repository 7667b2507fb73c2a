"""scoreboard.loadtest: its schedule, and `run.py loadtest` against a real server."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys

import pytest
from server_process import REPO, SECRET, ServerProcess

from scoreboard import loadtest as loadtest_module
from scoreboard.loadtest import schedule, score_base, split

# -- pure parts -------------------------------------------------------------------------------


def test_schedule_is_even_and_bounded():
    offsets = schedule(20, 2)
    assert len(offsets) == 40
    assert offsets[0] == 0 and offsets[-1] == pytest.approx(1.95)
    assert all(b - a == pytest.approx(0.05) for a, b in itertools.pairwise(offsets))
    assert len(schedule(100, 0.5)) == 50
    assert schedule(3, 1) == [0, 1 / 3, 2 / 3]
    assert schedule(0.5, 1) == [0]
    assert schedule(10, 0) == []


def test_split_shares_differ_by_at_most_one():
    assert split(10, 3) == [4, 3, 3]
    assert split(2, 4) == [1, 1, 0, 0]
    assert sum(split(2001, 7)) == 2001


def test_score_base_leaves_room_above_earlier_runs():
    earlier = score_base(1_800_000_000.0)
    assert score_base(1_800_000_001.0) > earlier + 99_999  # a second later: 100,000 posts above
    assert score_base(4_000_000_000.0) < 2**53  # still exact in JavaScript clients


# -- run.py loadtest against a real server ----------------------------------------------------


@pytest.fixture
def server(tmp_path):
    # A 1 ms coalescing window: at 20 posts/s every post makes its own score_update.
    process = ServerProcess(
        f"sqlite:///{tmp_path / 'lt.db'}",
        tmp_path / "server.log",
        "--broadcast-interval-ms",
        "1",
        "--log-level",
        "warning",
    ).start()
    yield process
    process.stop()


def loadtest(
    server: ServerProcess, *args: str, secret: str = SECRET
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCOREBOARD_")}
    return subprocess.run(
        [
            sys.executable,
            str(REPO / "run.py"),
            "--jwt-secret",
            secret,
            "loadtest",
            "--url",
            server.base_url,
            *args,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )


def check_full_delivery(result: subprocess.CompletedProcess, clients: int, posts: int) -> dict:
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["connect"] == {**summary["connect"], "connected": clients, "failed": 0}
    assert summary["posts"]["sent"] == summary["posts"]["accepted"] == posts
    assert summary["posts"]["failed"] == {}
    # Every post puts a new score on top, so each one changes the top 10 and every
    # (post, subscriber) pair is timed. Frames are one per post and subscriber on a quiet
    # machine; on a busy one two posts committed in one batch share a frame, so their count
    # is bounded, not exact.
    assert summary["deliveries"] == {"expected": posts * clients, "delivered": posts * clients}
    assert clients <= summary["frames"]["received"] <= posts * clients * 2
    assert summary["latency_ms"]["count"] == posts * clients
    assert 0 <= summary["latency_ms"]["p50"] <= summary["latency_ms"]["p99"]
    assert summary["latency_ms"]["p99"] <= summary["latency_ms"]["max"]
    assert summary["errors"] == {} and summary["close_codes"] == {}
    assert summary["client"]["loop_lag_ms"]["count"] > 0
    assert "loadtest" in result.stderr and "frames" in result.stderr  # the progress line
    return summary


@pytest.mark.parametrize("via", ["http", "ws"])
def test_short_run_delivers_every_post_to_every_subscriber(server, via):
    args = ("--clients", "20", "--rate", "20", "--duration", "2", "--via", via)
    result = loadtest(server, *args, "--create-board")
    summary = check_full_delivery(result, clients=20, posts=40)
    assert summary["via"] == via
    # The same board again: the new run's scores start above the old ones.
    check_full_delivery(loadtest(server, *args), clients=20, posts=40)


def test_processes_merge_their_clients(server):
    result = loadtest(
        server,
        *("--clients", "20", "--rate", "20", "--duration", "2"),
        *("--processes", "2", "--create-board"),
    )
    summary = check_full_delivery(result, clients=20, posts=40)
    assert summary["processes"] == 2


def test_tokens_file_and_kernel_timestamps(server, tmp_path):
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("\n".join(server.token(f"reader{i}") for i in range(5)) + "\n")
    result = loadtest(
        server,
        *("--clients", "5", "--rate", "10", "--duration", "1"),
        *("--tokens-file", str(tokens), "--kernel-timestamps", "--create-board"),
    )
    summary = check_full_delivery(result, clients=5, posts=10)
    assert summary["kernel_timestamps"] is True
    assert summary["client"]["read_delay_ms"]["count"] > 0  # kernel stamps were read


@pytest.mark.parametrize("via", ["http", "ws"])
def test_post_url_sends_the_posts_to_that_server(server, tmp_path, via):
    """Subscribers on one server, posts to another: in a cluster (bench_all.py's cluster rows)
    the first carries them; here the two are unrelated, so the second stores every post and
    the first's subscribers see none of them."""
    other = ServerProcess(
        f"sqlite:///{tmp_path / 'other.db'}", tmp_path / "other.log", "--log-level", "warning"
    ).start()
    try:
        admin = server.token("admin", "admin")
        for each in (server, other):
            board = {"id": "lt", "title": "lt", "operator": "set"}
            assert each.request("POST", "/api/boards", board, admin)[0] == 201
        options = loadtest_module.Options(
            url=server.base_url,
            clients=3,
            rate=10,
            duration=1,
            board="lt",
            via=via,
            drain=0.5,
            subscriber_tokens=[server.token("reader")],
            poster_token=server.token("feeder", "server"),
            post_url=other.base_url,
        )
        summary = asyncio.run(loadtest_module.run(options))
        assert summary["connect"]["connected"] == 3
        assert summary["posts"]["accepted"] == 10 and summary["posts"]["failed"] == {}
        assert summary["deliveries"] == {"expected": 30, "delivered": 0}
        status, stored = other.request("GET", "/api/boards/lt/leaderboard", token=admin)
        assert status == 200 and stored["total"] == 10  # posts cycle over 10 players
        status, untouched = server.request("GET", "/api/boards/lt/leaderboard", token=admin)
        assert status == 200 and untouched["total"] == 0
    finally:
        other.stop()


def test_missing_board_is_named_unless_created(server):
    result = loadtest(server, "--clients", "2", "--rate", "5", "--duration", "1", "--board", "nb")
    assert result.returncode == 1
    assert "board 'nb' does not exist" in result.stderr and "--create-board" in result.stderr
    assert "Traceback" not in result.stderr


def test_wrong_secret_is_a_401_named_as_such(server):
    result = loadtest(server, "--clients", "2", "--rate", "5", "--duration", "1", secret="q" * 40)
    assert result.returncode == 1
    assert "HTTP 401" in result.stderr and "--jwt-secret" in result.stderr
    assert "Traceback" not in result.stderr


def test_refused_connection_and_bad_arguments(tmp_path):
    from server_process import free_port

    closed = ServerProcess(f"sqlite:///{tmp_path / 'x.db'}", tmp_path / "x.log")
    closed.port = free_port()  # nothing listens there
    result = loadtest(closed, "--clients", "2", "--rate", "5", "--duration", "1")
    assert result.returncode == 1
    assert "connection refused" in result.stderr and "Traceback" not in result.stderr

    for bad in (("--clients", "0"), ("--rate", "-1"), ("--duration", "x"), ("--via", "udp")):
        args = {"--clients": "2", "--rate": "5", "--duration": "1"}
        args[bad[0]] = bad[1]
        result = loadtest(closed, *(item for pair in args.items() for item in pair))
        assert result.returncode == 2, bad
        assert bad[0] in result.stderr and "Traceback" not in result.stderr
