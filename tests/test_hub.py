"""The hub's pure timing maths and framing, and its conflation policy over a fake sink."""

from __future__ import annotations

import math
import struct

import orjson
import pytest

from scoreboard import hub as hub_module
from scoreboard.auth import Identity, Role
from scoreboard.hub import (
    ConnState,
    abuse_streak_start,
    affected_from,
    broadcast_delay,
    close_delay,
    encode_frame,
    message_rate,
    ping_slices,
    stalled,
    sweep_period,
)
from scoreboard.ranking import Outcome, Record

# -- framing ---------------------------------------------------------------------------------


def parse_frame(frame: bytes) -> tuple[int, int, bytes]:
    """(first byte, mask bit, payload) of one unmasked frame; checks the length field."""
    first, second = frame[0], frame[1]
    length, offset = second & 0x7F, 2
    if length == 126:
        (length,) = struct.unpack("!H", frame[2:4])
        offset = 4
    elif length == 127:
        (length,) = struct.unpack("!Q", frame[2:10])
        offset = 10
    payload = frame[offset:]
    assert len(payload) == length
    return first, second & 0x80, payload


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_encode_frame_uses_the_shortest_length_field(size):
    payload = b"x" * size
    frame = encode_frame(payload)
    first, masked, body = parse_frame(frame)
    assert first == 0x81  # FIN + text
    assert masked == 0  # servers never mask
    assert body == payload
    header = 2 if size < 126 else 4 if size <= 0xFFFF else 10
    assert len(frame) == size + header


def test_message_is_a_framed_json_envelope():
    first, _, payload = parse_frame(hub_module.message("pong", {"t": 1}))
    assert first == 0x81
    assert orjson.loads(payload) == {"type": "pong", "data": {"t": 1}}


# -- timing maths ----------------------------------------------------------------------------


def test_broadcast_delay_is_zero_after_a_quiet_period_and_the_rest_of_the_window_otherwise():
    assert broadcast_delay(last_sent_at=-math.inf, interval=0.1, now=5.0) == 0
    assert broadcast_delay(last_sent_at=4.0, interval=0.1, now=5.0) == 0
    assert broadcast_delay(last_sent_at=4.97, interval=0.1, now=5.0) == pytest.approx(0.07)
    assert broadcast_delay(last_sent_at=5.0, interval=0.1, now=5.0) == pytest.approx(0.1)


def test_sweep_period_is_a_quarter_of_the_shortest_deadline_within_bounds():
    assert sweep_period(ping_interval=20, slow_consumer_timeout=30) == 1.0
    assert sweep_period(ping_interval=2, slow_consumer_timeout=30) == 0.5
    assert sweep_period(ping_interval=20, slow_consumer_timeout=0.4) == pytest.approx(0.1)
    assert sweep_period(ping_interval=0.01, slow_consumer_timeout=30) == 0.02


def test_every_connection_is_pinged_once_per_interval():
    assert ping_slices(ping_interval=20, period=1.0) == 20
    assert ping_slices(ping_interval=0.4, period=0.1) == 4
    assert ping_slices(ping_interval=0.01, period=0.02) == 1


def test_stalled_after_timeout_without_progress():
    assert not stalled(mark=10.0, now=39.9, timeout=30)
    assert stalled(mark=10.0, now=40.0, timeout=30)


def test_abuse_streak_starts_at_a_refusal_and_ends_after_a_quiet_second():
    start = abuse_streak_start(streak_start=None, last_refused_at=None, now=1.0, quiet=1.0)
    assert start == 1.0
    assert abuse_streak_start(streak_start=1.0, last_refused_at=1.5, now=2.2, quiet=1.0) == 1.0
    assert abuse_streak_start(streak_start=1.0, last_refused_at=1.5, now=2.6, quiet=1.0) == 2.6


def test_close_delays_spread_evenly_within_the_bound():
    delays = [close_delay(index=i, count=8, spread=5.0) for i in range(8)]
    assert delays[0] == 0
    assert delays == sorted(delays)
    assert max(delays) < 5.0
    assert delays[1] == pytest.approx(5.0 / 8)
    assert close_delay(index=0, count=0, spread=5.0) == 0


def test_message_rate_over_samples():
    assert message_rate([]) == 0
    assert message_rate([(1.0, 10)]) == 0
    assert message_rate([(1.0, 10), (2.0, 30), (3.0, 50)]) == 20


def _outcome(rank: int, previous_rank: int | None) -> Outcome:
    record = Record("u", "u", 1, 0, 1, 0.0)
    return Outcome("u", "u", 1, 0, rank, previous_rank, None, True, 1, record, rank <= 10)


def test_affected_from_is_the_best_rank_a_change_may_have_moved():
    assert affected_from(_outcome(5, None)) == 5  # a new entry pushes everyone below down
    assert affected_from(_outcome(3, 9)) == 3  # overtook ranks 3..8
    assert affected_from(_outcome(9, 3)) == 3  # fell: ranks 4..9 moved up
    assert affected_from(_outcome(4, 4)) == math.inf  # moved nobody


# -- conflation over a fake sink -------------------------------------------------------------


class FakeSink:
    """A socket that accepts `room` bytes, then queues; `drain()` plays the peer reading."""

    def __init__(self, room: int = 10**9) -> None:
        self.room = room
        self.delivered: list[bytes] = []
        self.queue: list[bytes] = []
        self.flushed = 0
        self.closed_with: int | None = None
        self.aborted = False

    def send_frame(self, data: bytes) -> bool:
        if not self.queue and len(data) <= self.room:
            self.room -= len(data)
            self.delivered.append(data)
            return True
        self.queue.append(data)
        return False

    def unsent_bytes(self) -> int:
        return sum(map(len, self.queue))

    def flushed_bytes(self) -> int:
        return self.flushed

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        self.closed_with = code

    def abort(self) -> None:
        self.aborted = True

    def drain(self) -> None:
        self.delivered.extend(self.queue)
        self.flushed += self.unsent_bytes()
        self.queue.clear()
        self.room = 10**9


def _split(blob: bytes) -> list[dict]:
    """Every JSON message in a run of frames."""
    out = []
    while blob:
        length, offset = blob[1] & 0x7F, 2
        if length == 126:
            (length,) = struct.unpack("!H", blob[2:4])
            offset = 4
        out.append(orjson.loads(blob[offset : offset + length]))
        blob = blob[offset + length :]
    return out


SERVER = Identity(sub="game", role=Role.SERVER, name=None, exp=2**40)


@pytest.mark.gen_test(timeout=10)
async def test_a_backlogged_connection_keeps_only_the_newest_state_per_board(make_services):
    services = await make_services(broadcast_interval_ms=1)
    service, hub = services.service, services.hub
    await service.create_board({"id": "b", "title": "B"})
    viewer = Identity(sub="viewer", role=Role.PLAYER, name=None, exp=2**40)
    sink = FakeSink(room=600)  # room for the status and the snapshot, then the "socket" fills
    conn = hub.open(sink, viewer, board="b")
    for score in range(1, 40):
        await service.submit_score(SERVER, "b", {"score": score, "user_id": f"p{score}"})
        hub._broadcast(hub._rooms["b"])  # no waiting for the coalescing timer
    assert conn.state is ConnState.BACKLOGGED
    # One frame went to the stream's queue; everything after it was conflated into one.
    assert len(sink.queue) == 1
    assert list(conn.pending) == [(0, "b")]
    sink.drain()
    hub.drained(conn)
    assert conn.state is ConnState.OPEN
    last = _split(sink.delivered[-1])[-1]
    assert last["type"] == "score_update"
    assert last["data"]["seq"] == service.board("b").ranks.seq
    seqs = [m["data"]["seq"] for f in sink.delivered for m in _split(f) if "seq" in m["data"]]
    assert seqs == sorted(set(seqs))  # strictly increasing


@pytest.mark.gen_test(timeout=10)
async def test_a_score_update_is_one_bytes_object_handed_to_every_subscriber(make_services):
    services = await make_services(broadcast_interval_ms=1)
    service, hub = services.service, services.hub
    await service.create_board({"id": "b", "title": "B"})
    sinks = [FakeSink() for _ in range(50)]
    for n, sink in enumerate(sinks):
        hub.open(sink, Identity(sub=f"v{n}", role=Role.PLAYER, name=None, exp=2**40), board="b")
    await service.submit_score(SERVER, "b", {"score": 7, "user_id": "p1"})
    updates = [sink.delivered[-1] for sink in sinks]
    assert _split(updates[0])[0]["type"] == "score_update"
    # Serialized and framed once: the very same object, not 50 equal copies.
    assert all(frame is updates[0] for frame in updates)


@pytest.mark.gen_test(timeout=10)
async def test_unsent_bytes_over_the_bound_close_with_1013(make_services):
    services = await make_services(max_unsent_bytes=1000)
    hub = services.hub
    sink = FakeSink(room=0)
    conn = hub.open(sink, None)
    assert conn.state is ConnState.BACKLOGGED
    for t in range(40):  # pongs are not state: they queue until the bound
        hub.receive(conn, orjson.dumps({"type": "ping", "data": {"t": t}}))
    assert sink.closed_with == 1013
    assert conn.state is ConnState.CLOSING
    assert hub.connection_count == 0


@pytest.mark.gen_test(timeout=10)
async def test_expiry_entries_of_closed_connections_do_not_pile_up(make_services):
    services = await make_services()
    hub = services.hub
    for i in range(3000):
        identity = Identity(sub=f"u{i}", role=Role.PLAYER, name=None, exp=2**40)
        hub.closed(hub.open(FakeSink(), identity), client_code=1000)
    hub._sweep_expired()
    assert len(hub._expiry) <= hub_module.EXPIRY_SLACK
    assert hub.connection_count == 0


def test_live_delivery_settings_have_flags_env_variables_and_checks():
    from scoreboard.config import ConfigError, Settings, parse_settings

    defaults = Settings()
    assert (defaults.status_interval, defaults.slow_consumer_timeout) == (10.0, 30.0)
    assert (defaults.max_unsent_bytes, defaults.shutdown_spread) == (1024 * 1024, 5.0)
    assert (defaults.ws_message_rate, defaults.ws_message_burst) == (20.0, 50)
    assert defaults.ws_abuse_close_after == 5.0 and defaults.rank_update_delay <= 2.0
    settings = parse_settings(
        ["--slow-consumer-timeout", "0.5"], {"SCOREBOARD_MAX_UNSENT_BYTES": "4096"}
    )
    assert (settings.slow_consumer_timeout, settings.max_unsent_bytes) == (0.5, 4096)
    with pytest.raises(ConfigError, match="--rank-update-delay"):
        parse_settings(["--rank-update-delay", "3"], {})
    with pytest.raises(ConfigError, match="--ws-message-rate"):
        parse_settings(["--ws-message-rate", "0"], {})
    with pytest.raises(ConfigError, match="--shutdown-spread"):
        parse_settings(["--shutdown-spread", "-1"], {})
