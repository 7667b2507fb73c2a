"""`make bench-smoke`: every benchmark runs with tiny sizes and prints its table.

No figure is judged here (benchmarks print figures; tests check behaviour): the run must exit 0
and print the final table with a row for each figure. The npm peers are installed by the
benchmark itself (npm ci into bench/peers/node_modules) when node and npm are present; without
them the table says so and the run still passes. The cluster rows need PostgreSQL and
redis-server: without them the rows say "not measured" and the run passes, except under
SCOREBOARD_REQUIRE_SERVICES=1 (CI), which the benchmark is given and where it fails. Select it
with `-m bench`, skip it with `-m "not bench"`.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from server_process import REPO

FIGURES = (
    "CPU per delivered frame",
    "RSS per idle connection",
    "posted -> received p99",
    "server loop lag p99",
    "durable HTTP posts/s",
    "durable WS submit_score/s",
    "rank lookup",
    "score update",
    "start-up to ready",
    "cross-process delivery p99",  # a figure, or "not measured: <reason>" without the services
    "frames/s, ",
    "GIL-free C send loop",  # a figure, or "not measured: no C compiler"
)


@pytest.mark.bench
@pytest.mark.timeout(300)
def test_tiny_benchmark_runs_every_figure_and_prints_the_table():
    # No server setting from the environment; the services rule of CI, though, applies.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SCOREBOARD_") or k == "SCOREBOARD_REQUIRE_SERVICES"
    }
    env["BENCH_SIZE"] = "tiny"
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench_all.py")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "| figure" in out and "| this project" in out and "| met?" in out
    assert "machine:" in out and "load:" in out
    for figure in FIGURES:
        assert figure in out, figure
    assert "Traceback" not in result.stderr
