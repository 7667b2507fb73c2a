"""Debian's nginx running docs/deploy/nginx.conf, on a free port, as the current user.

The documented file is the one tested: `render_site` replaces only its `listen` address and
the addresses of its upstream servers (each keeping the documented parameters), and fails
loudly when the file no longer has the shape it expects, rather than testing something else.
The main configuration around it (pid, logs and temporary files in the test's directory)
stands in for the distribution's /etc/nginx/nginx.conf, which includes conf.d/*.conf in http.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from server_process import REPO, free_port

SITE = REPO / "docs" / "deploy" / "nginx.conf"
START_TIMEOUT_S = 15
_UPSTREAM = re.compile(r"(upstream scoreboard \{\n)(.*?)(\n\})", re.S)
_SERVER_LINE = re.compile(r"^(\s*)server\s+(\S+)(.*;)$", re.M)
_LISTEN = re.compile(r"^(\s*)listen 80;$", re.M)


def nginx_binary() -> str | None:
    """The nginx binary (Debian puts it in /usr/sbin, which a user's PATH may lack)."""
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None
    )


def render_site(text: str, *, listen: str, upstreams: list[str]) -> str:
    """The documented site with its listen address and upstream servers replaced."""
    upstream = _UPSTREAM.search(text)
    assert upstream is not None, "docs/deploy/nginx.conf has no `upstream scoreboard { … }`"
    lines = upstream.group(2).split("\n")
    documented = [i for i, line in enumerate(lines) if _SERVER_LINE.match(line)]
    assert documented, "the upstream block names no server"
    shapes = {_SERVER_LINE.match(lines[i]).group(1, 3) for i in documented}  # type: ignore[union-attr]
    assert len(shapes) == 1, "the documented servers differ in their parameters"
    ((indent, parameters),) = shapes
    ours = [f"{indent}server {address}{parameters}" for address in upstreams]
    lines = (
        lines[: documented[0]]
        + ours
        + [line for i, line in enumerate(lines) if i > documented[0] and i not in documented]
    )
    text = text[: upstream.start(2)] + "\n".join(lines) + text[upstream.end(2) :]
    text, listens = _LISTEN.subn(rf"\1listen {listen};", text)
    assert listens == 1, "docs/deploy/nginx.conf should have exactly one `listen 80;`"
    return text


def main_config(folder: Path, site: Path) -> str:
    """What /etc/nginx/nginx.conf gives the site, with every path in `folder`."""
    # As root, nginx would switch its workers to `nobody`, who may not enter the test's
    # private directory; as anyone else the directive would only be warned about.
    user = "user root root;\n" if os.geteuid() == 0 else ""
    temp = "\n".join(
        f"    {kind}_temp_path {folder / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"{user}worker_processes 1;\n"
        f"pid {folder / 'nginx.pid'};\n"
        f"error_log {folder / 'error.log'} info;\n"
        "events { worker_connections 1024; }\n"
        "http {\n"
        f"    access_log {folder / 'access.log'};\n"
        f"{temp}\n"
        f"    include {site};\n"
        "}\n"
    )


class NginxProcess:
    """nginx in the foreground (`daemon off`), with its own prefix, configuration and port."""

    def __init__(self, binary: str, folder: Path, upstreams: list[str]) -> None:
        self.binary = binary
        self.folder = folder
        self.port = free_port()
        folder.mkdir(parents=True, exist_ok=True)
        self.site = folder / "scoreboard.conf"
        self.site.write_text(
            render_site(SITE.read_text(), listen=f"127.0.0.1:{self.port}", upstreams=upstreams)
        )
        self.config = folder / "nginx.conf"
        self.config.write_text(main_config(folder, self.site))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def command(self, *extra: str) -> list[str]:
        return [
            self.binary,
            "-p",
            str(self.folder),
            "-c",
            str(self.config),
            "-e",
            str(self.folder / "error.log"),
            *extra,
        ]

    def check(self) -> subprocess.CompletedProcess[str]:
        """`nginx -t`: the configuration as nginx itself judges it."""
        return subprocess.run(self.command("-t"), capture_output=True, text=True, timeout=30)

    def start(self) -> NginxProcess:
        log = (self.folder / "stderr.log").open("ab")
        self.process = subprocess.Popen(
            self.command("-g", "daemon off;"), stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited:\n{self.errors()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nginx did not listen in {START_TIMEOUT_S} s:\n{self.errors()}")

    def errors(self) -> str:
        return "".join(
            (self.folder / name).read_text()
            for name in ("stderr.log", "error.log")
            if (self.folder / name).exists()
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # nginx's fast shutdown
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
