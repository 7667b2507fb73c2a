"""The project as a user installs it: build the wheel, install it, run `scoreboard`.

The wheel is built from a copy of the checkout (so no build/ or egg-info is left in it) and
installed with --no-deps into a temporary target; the dependencies come from this test's own
environment through PYTHONPATH. Every installed command runs with a temporary directory as its
working directory, so nothing can be found through the checkout: templates, static files and
migrations must come from the installed package.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import sysconfig
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest
from server_process import free_port

import scoreboard

REPO = Path(__file__).resolve().parent.parent
BUILD_TIMEOUT_S = 240  # an isolated build may first download setuptools
RUN_TIMEOUT_S = 60
START_TIMEOUT_S = 30
SECRET = "k" * 40

#: The build backend pyproject.toml asks for; below it, the build is isolated (pip fetches it).
MIN_SETUPTOOLS = 77

pytestmark = pytest.mark.timeout(BUILD_TIMEOUT_S + 120)


def _setuptools_major() -> int:
    try:
        import setuptools
    except ImportError:
        return 0
    return int(setuptools.__version__.split(".")[0])


def _pip(*args: str, cwd: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, f"pip {' '.join(args)}:\n{result.stdout}\n{result.stderr}"


class Installed:
    """The wheel, its installed copy in `target`, and a way to run its `scoreboard`."""

    def __init__(self, wheel: Path, target: Path, workdir: Path) -> None:
        self.wheel = wheel
        self.target = target
        self.workdir = workdir  # not the checkout, nor anything under it
        self.script = target / "bin" / "scoreboard"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCOREBOARD_")}
        # The installed package first, then this environment's dependencies; never the checkout.
        paths = sysconfig.get_paths()
        env["PYTHONPATH"] = os.pathsep.join(
            dict.fromkeys([str(self.target), paths["purelib"], paths["platlib"]])
        )
        env["COLUMNS"] = "100"  # argparse wraps help at the terminal's width
        return env

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.script), *args],
            cwd=self.workdir,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            check=False,
        )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("packaging")
    source = root / "source"
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            "node_modules",
            "build",
            "dist",
            "*.egg-info",
            "__pycache__",
            ".pytest_cache",
            ".ruff_cache",
            ".hypothesis",
            "*.db",
            "*.db-*",
        ),
    )
    dist = root / "dist"
    if _setuptools_major() >= MIN_SETUPTOOLS:
        # The dev lock pins setuptools: build offline with it, as `pip wheel .` would.
        _pip(
            "wheel",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "-w",
            str(dist),
            ".",
            cwd=source,
        )
    else:
        _pip("wheel", "--no-deps", "-w", str(dist), ".", cwd=source)
    (wheel,) = dist.glob("scoreboard-*.whl")
    target = root / "target"
    _pip("install", "--no-deps", "--no-index", "--target", str(target), str(wheel), cwd=root)
    workdir = root / "work"
    workdir.mkdir()
    return Installed(wheel, target, workdir)


def test_wheel_holds_the_package_its_web_ui_and_migrations_only(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
        entry_points = wheel.read(f"scoreboard-{scoreboard.__version__}.dist-info/entry_points.txt")
    top_levels = {name.split("/")[0] for name in names}
    assert top_levels == {"scoreboard", f"scoreboard-{scoreboard.__version__}.dist-info"}
    assert not any(name.startswith(("bench/", "tests/", "docs/")) for name in names)

    def files(folder: str, pattern: str = "*") -> set[str]:
        return {
            path.relative_to(REPO / folder).as_posix()
            for path in (REPO / folder).rglob(pattern)
            if path.is_file() and "__pycache__" not in path.parts
        }

    modules = {f"scoreboard/{p}" for p in files("scoreboard", "*.py")}
    assert modules <= names  # every module, migrations included
    assert "scoreboard/migrations/script.py.mako" in names
    assert "scoreboard/migrations/versions/0001_initial.py" in names
    assert {f"scoreboard/templates/{p}" for p in files("templates")} <= names
    assert {f"scoreboard/static/{p}" for p in files("static")} <= names
    assert b"scoreboard = scoreboard.cli:main" in entry_points


def test_the_installed_code_is_the_one_that_runs(installed: Installed) -> None:
    probe = (
        "import scoreboard, scoreboard.app as app, scoreboard.store as store;"
        "print(scoreboard.__file__, app.TEMPLATE_PATH, app.STATIC_PATH, store.MIGRATIONS_DIR)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=installed.workdir,
        env=installed.env(),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    paths = [Path(p) for p in result.stdout.split()]
    assert len(paths) == 4
    for path in paths:
        assert path.is_relative_to(installed.target), path
        assert not path.is_relative_to(REPO), path


def test_scoreboard_help_equals_run_py_help(installed: Installed) -> None:
    ours = installed.run("--help")
    assert ours.returncode == 0, ours.stderr
    theirs = subprocess.run(
        [sys.executable, str(REPO / "run.py"), "--help"],
        cwd=REPO,
        env={**installed.env(), "PYTHONPATH": ""},
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=True,
    )
    assert ours.stdout.startswith("usage: scoreboard ")
    assert theirs.stdout.startswith("usage: run.py ")
    # The usage block wraps by the program's name; everything after it must be the same.
    assert ours.stdout.split("\n\n", 1)[1] == theirs.stdout.split("\n\n", 1)[1]


def test_scoreboard_migrate_works_outside_the_checkout(installed: Installed) -> None:
    database = installed.workdir / "migrate.db"
    result = installed.run("--database-url", f"sqlite:///{database}", "migrate")
    assert result.returncode == 0, result.stderr
    assert "newest schema" in result.stdout
    with sqlite3.connect(database) as conn:
        (version,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        columns = {row[1] for row in conn.execute("PRAGMA table_info(boards)")}
    newest = sorted(p.name for p in (REPO / "scoreboard/migrations/versions").glob("0*.py"))[-1]
    assert newest.startswith(version)
    assert "score_format" in columns  # the newest migration ran


def test_installed_scoreboard_serves_its_pages_and_static_files(installed: Installed) -> None:
    port = free_port()
    database = installed.workdir / "serve.db"
    log_path = installed.workdir / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                str(installed.script),
                "--database-url",
                f"sqlite:///{database}",
                "--jwt-secret",
                SECRET,
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            cwd=installed.workdir,
            env=installed.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert process.poll() is None, f"server exited early:\n{log_path.read_text()}"
            try:
                with urllib.request.urlopen(f"{base}/readyz", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"not ready:\n{log_path.read_text()}"
            time.sleep(0.2)

        with urllib.request.urlopen(f"{base}/login", timeout=10) as response:
            assert response.status == 200
            page = response.read().decode()
        link = re.search(r'<link rel="stylesheet" href="(/static/css/app\.css\?v=\w+)">', page)
        assert link is not None, page
        with urllib.request.urlopen(base + link.group(1), timeout=10) as response:
            assert response.status == 200
            assert response.read() == (REPO / "static/css/app.css").read_bytes()
        with urllib.request.urlopen(f"{base}/static/js/scoreboard-client.js", timeout=10) as r:
            assert r.status == 200
    finally:
        # Stop exactly the process started here, by its PID.
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
    assert process.returncode == 0, log_path.read_text()


def test_alembic_ini_still_migrates_by_hand(tmp_path: Path) -> None:
    """`alembic -x url=… upgrade head` from the checkout, as alembic.ini's comment says."""
    database = tmp_path / "by-hand.db"
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "-x", f"url=sqlite:///{database}", "upgrade", "head"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() is not None


def _pins(path: Path) -> dict[str, str]:
    """name -> version of every `name==version` line (extras and hashes left out)."""
    pins = {}
    for line in path.read_text().splitlines():
        match = re.match(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^\s;\\]+)", line)
        if match:
            pins[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return pins


def test_the_locks_hold_the_direct_pins() -> None:
    """A pin changed in requirements*.txt without `make lock` would not be installed."""
    runtime, dev = _pins(REPO / "requirements.txt"), _pins(REPO / "requirements-dev.txt")
    runtime_lock = _pins(REPO / "requirements.lock")
    dev_lock = _pins(REPO / "requirements-dev.lock")
    assert runtime.items() <= runtime_lock.items()
    assert (runtime | dev).items() <= dev_lock.items()
    # The dev lock holds the runtime lock's versions (make lock compiles it constrained so).
    assert runtime_lock.items() <= dev_lock.items()
    for lock in ("requirements.lock", "requirements-dev.lock"):
        text = (REPO / lock).read_text()
        entries = re.findall(
            r"^[A-Za-z0-9_.-]+==\S+ \\\n(?:    --hash=sha256:\w+(?: \\)?\n)+", text, re.M
        )
        assert len(entries) == len(_pins(REPO / lock)), f"{lock}: a pin without hashes"
