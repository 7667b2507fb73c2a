"""scoreboard.loadclient: WebSocket framing, latency histograms, the client group's timing."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from scoreboard.loadclient import (
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
)


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
