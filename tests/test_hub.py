"""The hub over a fake sink: rooms, conflation for slow consumers, the rank-check bound."""

from __future__ import annotations

import math

import pytest
from helpers import FakeSink, split_frames

from scoreboard import hub as hub_module
from scoreboard.auth import Identity, Role
from scoreboard.connections import STATE, ConnState
from scoreboard.hub import affected_from
from scoreboard.ranking import Outcome, Record


def _outcome(rank: int, previous_rank: int | None) -> Outcome:
    record = Record("u", "u", 1, 0, 1, 0.0)
    return Outcome("u", "u", 1, 0, rank, previous_rank, None, True, 1, record, rank <= 10)


def test_affected_from_is_the_best_rank_a_change_may_have_moved():
    assert affected_from(_outcome(5, None)) == 5  # a new entry pushes everyone below down
    assert affected_from(_outcome(3, 9)) == 3  # overtook ranks 3..8
    assert affected_from(_outcome(9, 3)) == 3  # fell: ranks 4..9 moved up
    assert affected_from(_outcome(4, 4)) == math.inf  # moved nobody


# -- conflation over a fake sink -------------------------------------------------------------

SERVER = Identity(sub="game", role=Role.SERVER, name=None, exp=2**40)


@pytest.mark.gen_test(timeout=10)
async def test_a_backlogged_connection_keeps_only_the_newest_state_per_board(make_services):
    services = await make_services(broadcast_interval_ms=1)
    service, hub = services.service, services.hub
    await service.create_board({"id": "b", "title": "B"})
    viewer = Identity(sub="viewer", role=Role.PLAYER, name=None, exp=2**40)
    sink = FakeSink(room=600)  # room for the status and the snapshot, then the "socket" fills
    conn = services.sessions.open(sink, viewer, board="b", reconnect=False).conn
    for score in range(1, 40):
        await service.submit_score(SERVER, "b", {"score": score, "user_id": f"p{score}"})
        hub._broadcast(hub._rooms["b"])  # no waiting for the coalescing timer
    assert conn.state is ConnState.BACKLOGGED
    # One frame went to the stream's queue; everything after it was conflated into one.
    assert len(sink.queue) == 1
    assert list(conn.pending) == [(STATE, "b")]
    sink.drain()
    hub.drained(conn)
    assert conn.state is ConnState.OPEN
    last = split_frames(sink.delivered[-1])[-1]
    assert last["type"] == "score_update"
    assert last["data"]["seq"] == service.board("b").ranks.seq
    seqs = [m["data"]["seq"] for f in sink.delivered for m in split_frames(f) if "seq" in m["data"]]
    assert seqs == sorted(set(seqs))  # strictly increasing


@pytest.mark.gen_test(timeout=10)
async def test_a_score_update_is_one_bytes_object_handed_to_every_subscriber(make_services):
    services = await make_services(broadcast_interval_ms=1)
    service = services.service
    await service.create_board({"id": "b", "title": "B"})
    sinks = [FakeSink() for _ in range(50)]
    for n, sink in enumerate(sinks):
        viewer = Identity(sub=f"v{n}", role=Role.PLAYER, name=None, exp=2**40)
        services.sessions.open(sink, viewer, board="b", reconnect=False)
    await service.submit_score(SERVER, "b", {"score": 7, "user_id": "p1"})
    updates = [sink.delivered[-1] for sink in sinks]
    assert split_frames(updates[0])[0]["type"] == "score_update"
    # Serialized and framed once: the very same object, not 50 equal copies.
    assert all(frame is updates[0] for frame in updates)


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


def test_the_hub_never_imports_the_service_or_the_session():
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(hub_module))
    imported = {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert not imported & {"service", "session"}, imported


def test_a_kernel_queue_that_never_shrinks_is_a_slow_consumer():
    from scoreboard.connections import Connection, Outbox

    closed: list[Connection] = []
    outbox = Outbox(
        max_unsent_bytes=1000,
        slow_consumer_timeout=10,
        clock=lambda: 0.0,
        fresh_snapshot=lambda conn, board: b"",
        close_slow=closed.append,
    )
    reading, stopped, flooded = FakeSink(), FakeSink(), FakeSink()
    conns = [Connection(i, None, sink) for i, sink in enumerate((reading, stopped, flooded))]
    for t, kernel in ((0, 300), (4, 500), (8, 200), (12, 400), (16, 600), (20, 0)):
        reading.kernel = kernel  # goes up and down: the peer reads
        stopped.kernel = 300 + t  # only grows
        flooded.kernel = 1500 if t >= 8 else 100
        for conn in conns:
            outbox.check_kernel(conn, float(t))
    assert closed[0] is conns[2]  # past the bound at the first look after it grew
    assert conns[1] in closed  # no shrink in 10 s
    assert conns[0] not in closed
