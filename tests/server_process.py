"""A real `run.py` process on a free port, for tests that need signals, restarts and SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SECRET = "p" * 40  # the subprocess servers' HS256 key
START_TIMEOUT_S = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`python run.py` with its own port; `start()` returns once /readyz answers 200."""

    def __init__(
        self,
        database_url: str,
        log_path: Path,
        *extra_args: str,
        tls: ssl.SSLContext | None = None,
        nofile: int | None = None,
    ) -> None:
        self.nofile = nofile  # RLIMIT_NOFILE of the server process (ulimit -n), if set
        self.database_url = database_url
        self.log_path = log_path
        self.extra_args = extra_args
        self.tls = tls  # the client context trusting the server's certificate, for HTTPS
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def command(self, *args: str) -> list[str]:
        return [
            sys.executable,
            str(REPO / "run.py"),
            "--database-url",
            self.database_url,
            "--jwt-secret",
            SECRET,
            *args,
        ]

    def start(self) -> ServerProcess:
        self.launch()
        return self.wait_ready()

    def launch(self) -> ServerProcess:
        """Start the process without waiting for it to be ready."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCOREBOARD_")}
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command("--port", str(self.port), *self.extra_args),
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=self._limit_descriptors if self.nofile is not None else None,
        )
        log.close()
        return self

    def wait_ready(self) -> ServerProcess:
        """Return once /readyz answers 200; RuntimeError if the process exits or stays unready."""
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()}")
            try:
                if self.request("GET", "/readyz")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop(signal.SIGKILL)
        raise RuntimeError(f"server not ready in {START_TIMEOUT_S}s:\n{self.log_path.read_text()}")

    def _limit_descriptors(self) -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 20) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.process.wait(timeout)

    def token(self, sub: str, role: str = "player") -> str:
        out = subprocess.run(
            self.command("token", sub, "--role", role),
            cwd=REPO,
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout.strip()

    def request(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> tuple[int, Any]:
        return self.request_with_headers(method, path, body, token)[:2]

    def request_with_headers(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, Any]:
        """(status, JSON body, response headers)."""
        headers = {"Content-Type": "application/json", **(headers or {})}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=10, context=self.tls) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None, response.headers
        except urllib.error.HTTPError as err:
            with err:
                return err.code, json.loads(err.read() or b"null"), err.headers
