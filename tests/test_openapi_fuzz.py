"""schemathesis against a real `run.py`: every check, with and without credentials.

No 5xx, every response matching `/api/openapi.json`, requests the document allows accepted and
requests it forbids refused. Bounded in time (`--max-time`) so that CI stays short; the seed
is fixed so a failure reproduces. tests/schemathesis.toml lists the few exceptions the
document cannot express. The long-poll is left out: it answers after its `timeout` (up to 60
s) by design, and has its own tests in test_api.py.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import missing_service
from server_process import ServerProcess

HERE = Path(__file__).resolve().parent
MAX_TIME_S = 40  # per run; two runs


@pytest.mark.timeout(3 * MAX_TIME_S + 60)
@pytest.mark.parametrize("credentials", ["anonymous", "admin"])
def test_the_api_matches_its_openapi_document(tmp_path, credentials):
    st = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    if st is None:
        missing_service("schemathesis is not installed (requirements-dev.txt)")
    server = ServerProcess(
        f"sqlite:///{tmp_path / 'sb.db'}",
        tmp_path / "server.log",
        "--score-rate",
        "10000",
        "--score-burst",
        "10000",
        "--login-rate",
        "10000",
        "--login-burst",
        "10000",
        "--log-level",
        "warning",
    ).start()
    try:
        admin = server.token("admin", "admin")
        server.request("POST", "/api/boards", {"id": "b1", "title": "B1"}, admin)
        server.request("POST", "/api/boards/b1/scores", {"score": 5}, admin)
        auth = ["-H", f"Authorization: Bearer {admin}"] if credentials == "admin" else []
        run = subprocess.run(
            [
                st,
                "--config-file",
                str(HERE / "schemathesis.toml"),
                "--no-color",
                "run",
                f"{server.base_url}/api/openapi.json",
                "--checks",
                "all",
                "--max-examples",
                "12",
                "--max-time",
                str(MAX_TIME_S),
                "--seed",
                "8",
                "--exclude-path-regex",
                "/updates$",
                "--request-timeout",
                "10",
                *auth,
            ],
            capture_output=True,
            text=True,
            cwd=tmp_path,  # its .schemathesis/ cache stays out of the checkout
            timeout=3 * MAX_TIME_S + 30,
        )
    finally:
        assert server.stop() == 0
    report = run.stdout[-8000:]
    assert run.returncode == 0, report
    summary = [line.strip() for line in run.stdout.splitlines() if "generated" in line]
    print(f"schemathesis, {credentials}: {summary}")
    assert "Traceback" not in (tmp_path / "server.log").read_text()
