"""docs/deploy/scoreboard.service says what the code does: its flags are accepted, and it gives
the supervisor's graceful stop time to finish before systemd escalates."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys

from server_process import REPO

from scoreboard.cli import build_parser
from scoreboard.config import settings_from
from scoreboard.supervisor import STOP_TIMEOUT_S

UNIT = REPO / "docs" / "deploy" / "scoreboard.service"
DOCUMENTED_PYTHON = "/srv/scoreboard/.venv/bin/python"


def unit_entries(text: str) -> dict[str, list[str]]:
    """`Key=value` lines of a unit (continuations joined, comments dropped), each key's values."""
    entries: dict[str, list[str]] = {}
    joined = text.replace("\\\n", " ")
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        entries.setdefault(key, []).append(value)
    return entries


def test_the_unit_starts_a_cluster_that_the_flags_accept():
    entries = unit_entries(UNIT.read_text())
    (command,) = entries["ExecStart"]
    argv = shlex.split(command)
    assert argv[:2] == [DOCUMENTED_PYTHON, "run.py"]
    environ = dict(value.split("=", 1) for value in entries["Environment"])
    # What the EnvironmentFile holds (the secrets), as its comment says.
    environ["SCOREBOARD_JWT_SECRET"] = "s" * 40
    environ["SCOREBOARD_DATABASE_URL"] = "postgresql+psycopg://sb:secret@db/sb"
    settings = settings_from(build_parser().parse_args(argv[2:]), environ)
    assert settings.processes > 1 and settings.redis_url is not None
    assert settings.trusted_proxies


def test_systemd_waits_longer_than_the_supervisor_and_signals_it_alone(tmp_path):
    entries = unit_entries(UNIT.read_text())
    assert entries["KillSignal"] == ["SIGTERM"]
    assert entries["KillMode"] == ["mixed"]  # SIGTERM to the supervisor; it forwards
    assert float(entries["TimeoutStopSec"][0]) > STOP_TIMEOUT_S
    assert entries["Restart"] == ["on-failure"]
    analyze = shutil.which("systemd-analyze")
    if analyze is not None:
        # systemd's own reading of the unit, with paths that exist on this machine.
        text = UNIT.read_text().replace(DOCUMENTED_PYTHON, sys.executable)
        text = text.replace("WorkingDirectory=/srv/scoreboard", f"WorkingDirectory={REPO}")
        checked = tmp_path / "scoreboard.service"
        checked.write_text(text)
        result = subprocess.run(
            [analyze, "verify", str(checked)], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
