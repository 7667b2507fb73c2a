"""`/metrics` (docs/operations.md): bounded label sets whatever clients send, both text formats.

Each test talks to a real server on a free port and reads `/metrics` as a client would.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess

import pytest
from conftest import missing_service

pytestmark = pytest.mark.gen_test(timeout=60)

HTTP_HISTOGRAM = "scoreboard_http_request_duration_seconds"
KNOWN_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}


def series(text: str) -> set[str]:
    """Every sample name with its labels in a text exposition."""
    return {line.rpartition(" ")[0] for line in text.splitlines() if line and line[0] != "#"}


def label_values(text: str, label: str) -> set[str]:
    return set(re.findall(rf'{HTTP_HISTOGRAM}_count{{[^}}]*{label}="([^"]*)"', text))


async def raw_request(api, head: bytes) -> bytes:
    """Send a hand-made request head; the answer's status line (or b'' if none)."""
    port = int(api.base_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    await writer.drain()
    line = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    return line


async def test_made_up_methods_paths_and_boards_do_not_grow_the_series(api):
    await api.make_board("real")
    token = api.token("p1")
    await api.post("/api/boards/real/scores", {"score": 1}, token=token)
    for method in ("GET", "HEAD", "OPTIONS"):
        await api.fetch(method, "/healthz")
    await api.fetch("BREW", "/healthz")
    before_text = (await api.get("/metrics")).text
    before = series(before_text)
    for i in range(120):
        method = f"X{i}" + "M" * (i * 60)  # up to 7 KB of method name, as the attack sent
        await raw_request(api, f"{method} /healthz HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await api.get(f"/made/up/path/{i}")
        await api.get(f"/api/boards/made-up-{i}/leaderboard", token=token)
        await api.post(f"/api/boards/made-up-{i}/scores", {"score": 1}, token=token)
        await api.fetch("PROPFIND", f"/api/boards/made-up-{i}")
    text = (await api.get("/metrics")).text
    assert label_values(text, "method") <= KNOWN_METHODS
    assert "other" in label_values(text, "method")
    assert not any("made-up" in name or "made/up" in name for name in series(text))
    grown = {name for name in series(text) - before if "_bucket{" not in name}
    # A few new (handler, method, status) combinations and error codes, not one per request.
    assert len(grown) <= 16, sorted(grown)
    assert len(text) - len(before_text) < 20_000
    print(
        f"600 made-up requests: {len(grown)} new series, /metrics grew "
        f"{len(text) - len(before_text)} bytes"
    )


async def test_openmetrics_on_request_and_no_created_series(api):
    await api.make_board("om")
    await api.post("/api/boards/om/scores", {"score": 1}, token=api.token("p1"))
    text = await api.get("/metrics")
    assert text.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "_created" not in text.text
    om = await api.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert om.headers["Content-Type"].startswith("application/openmetrics-text")
    assert om.text.rstrip().endswith("# EOF")
    assert "_created" not in om.text


async def test_long_polls_do_not_fill_the_inf_bucket(api):
    await api.make_board("poll")
    token = api.token("p1")

    def bucket(values: dict[str, float], le: str) -> float:
        name = f'{HTTP_HISTOGRAM}_bucket{{handler="Updates",le="{le}",method="GET",status="200"}}'
        return values.get(name, 0.0)

    before = await api.metric_values()
    await api.get("/api/boards/poll/updates?since=0&timeout=1", token=token)
    after = await api.metric_values()
    # The one-second wait is not the server's work: the poll lands in a sub-second bucket.
    assert bucket(after, "0.5") - bucket(before, "0.5") == 1
    assert bucket(after, "+Inf") - bucket(before, "+Inf") == 1


async def test_metrics_pass_promtool_after_traffic(api):
    promtool = shutil.which("promtool")
    if promtool is None:
        missing_service("promtool (Debian package prometheus) is not installed")
    await api.make_board("b")
    token = api.token("p1")
    for i in range(20):
        await api.post("/api/boards/b/scores", {"score": i}, token=token)
        await api.fetch(f"Z{i}", "/healthz")
        await api.get(f"/nope/{i}")
    await api.fetch("HEAD", "/metrics")
    body = (await api.get("/metrics")).body
    check = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, timeout=30
    )
    # promtool lints the Prometheus text format: exit 0 means nothing to remark.
    assert check.returncode == 0, check.stderr.decode()
