"""scoreboard.loadtest: its pure parts, and `run.py loadtest` against a real server."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
from server_process import REPO, SECRET, ServerProcess

from scoreboard.loadtest import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_TEXT,
    ClientGroup,
    FrameParser,
    LatencyHistogram,
    LoadtestError,
    Target,
    client_frame,
    close_code,
    mask_payload,
    parse_response_head,
    percentile,
    schedule,
    score_base,
    split,
)

# -- pure parts -------------------------------------------------------------------------------


def server_frame(payload: bytes, opcode: int = OP_TEXT, fin: bool = True) -> bytes:
    """An unmasked frame as a server sends it."""
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        return bytes((first, n)) + payload
    if n < 1 << 16:
        return bytes((first, 126)) + n.to_bytes(2, "big") + payload
    return bytes((first, 127)) + n.to_bytes(8, "big") + payload


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.99) == 99
    assert percentile(values, 1.0) == 100
    assert percentile(values, 0.0) == 1
    assert percentile([7.0], 0.99) == 7
    assert percentile([], 0.5) != percentile([], 0.5)  # NaN


def test_histogram_quantiles_within_one_percent_and_merge():
    first, second = LatencyHistogram(), LatencyHistogram()
    for ms in range(1, 501):
        first.add(ms / 1000)
    for ms in range(501, 1001):
        second.add(ms / 1000)
    first.merge(LatencyHistogram.from_json(json.loads(json.dumps(second.to_json()))))
    assert first.count == 1000
    assert first.max == 1.0
    for q, exact in ((0.5, 0.5), (0.9, 0.9), (0.99, 0.99)):
        assert abs(first.quantile(q) - exact) <= exact * 0.01
    assert first.quantile(1.0) == 1.0  # capped at the max seen
    summary = first.summary_ms()
    assert summary["count"] == 1000 and summary["max"] == 1000.0


def test_histogram_of_nothing_and_of_zero():
    empty = LatencyHistogram()
    assert empty.summary_ms() == {"count": 0, "p50": None, "p90": None, "p99": None, "max": None}
    zero = LatencyHistogram()
    zero.add(0.0)
    assert zero.quantile(0.5) == 0.0


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


@pytest.mark.parametrize("size", [0, 5, 125, 126, 1000, 65535, 65536, 70000])
def test_client_frames_are_masked_and_round_trip(size):
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    frame = client_frame(payload, OP_BINARY, mask=b"\x01\x02\x03\x04")
    assert frame[0] == 0x80 | OP_BINARY
    assert frame[1] & 0x80  # the mask bit: client -> server frames are always masked
    if size:
        assert payload not in frame
    assert FrameParser().feed(frame) == [(OP_BINARY, payload)]


def test_mask_payload_is_its_own_inverse():
    mask = b"\xaa\x55\x0f\xf0"
    data = b"hello, websocket"
    assert mask_payload(mask_payload(data, mask), mask) == data
    assert mask_payload(b"", mask) == b""


def test_frame_parser_on_joined_and_split_buffers():
    frames = [
        server_frame(b'{"type":"score_update"}'),
        server_frame(b"x" * 300),
        server_frame(b"y" * 70000, OP_BINARY),
        server_frame(b"ping!", OP_PING),
        server_frame((1001).to_bytes(2, "big") + b"bye", OP_CLOSE),
    ]
    stream = b"".join(frames)
    expected = [
        (OP_TEXT, b'{"type":"score_update"}'),
        (OP_TEXT, b"x" * 300),
        (OP_BINARY, b"y" * 70000),
        (OP_PING, b"ping!"),
        (OP_CLOSE, (1001).to_bytes(2, "big") + b"bye"),
    ]
    assert FrameParser().feed(stream) == expected  # all joined in one read
    for chunk in (1, 2, 3, 7, 1000, 16384):  # every cut, including inside the length fields
        parser = FrameParser()
        got = []
        for start in range(0, len(stream), chunk):
            got += parser.feed(stream[start : start + chunk])
        assert got == expected, chunk


def test_frame_parser_joins_fragments_around_control_frames():
    stream = (
        server_frame(b"hel", OP_TEXT, fin=False)
        + server_frame(b"", OP_PING)
        + server_frame(b"lo", 0x0, fin=False)
        + server_frame(b"!", 0x0, fin=True)
    )
    assert FrameParser().feed(stream) == [(OP_PING, b""), (OP_TEXT, b"hello!")]


def test_group_times_each_post_once_and_only_this_runs_posts():
    group = ClientGroup(Target("127.0.0.1", 1))
    group.posts = 3
    client = SimpleNamespace(last_index=-1)
    group.post_sent(0, 10.0)
    group.post_sent(1, 10.1)
    group.top_score(client, 1_000_000, 10.5)  # someone else's score on top: not ours to time
    assert (group.delivered, group.latency.count) == (0, 0)
    group.top_score(client, 1, 10.2)  # one frame holding posts 0 and 1
    assert (group.delivered, group.latency.count) == (2, 2)
    assert group.latency.max == pytest.approx(0.2)
    group.top_score(client, 0, 10.3)  # an older frame again: nothing new
    group.top_score(client, 2, 10.4)  # before its send time reached this process
    assert (group.delivered, group.latency.count, len(group.pending)) == (3, 2, 1)
    group.post_sent(2, 10.35)
    assert group.report()["delivered"] == 3
    assert group.latency.count == 3 and not group.pending


def test_close_code_and_response_head():
    assert close_code((4401).to_bytes(2, "big") + b"expired") == 4401
    assert close_code(b"") == 1005
    assert parse_response_head(b"HTTP/1.1 101 Switching") is None
    status, head, rest = parse_response_head(b"HTTP/1.1 401 Unauthorized\r\nA: b\r\n\r\n{}")
    assert (status, rest) == (401, b"{}")
    assert head.startswith(b"HTTP/1.1 401")


def test_target_from_url():
    assert Target.from_url("http://127.0.0.1:8888") == Target("127.0.0.1", 8888)
    assert Target.from_url("127.0.0.1:9000").port == 9000
    assert Target.from_url("ws://[::1]:8888").host_header == "[::1]:8888"
    for bad in ("https://x:1", "ftp://x", "http://x:notaport"):
        with pytest.raises(LoadtestError):
            Target.from_url(bad)


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
