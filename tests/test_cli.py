"""The run.py subcommands, as a user runs them (real subprocesses, real SQLite files)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import jwt
import pytest
from server_process import REPO, SECRET, ServerProcess


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "run.py"), *args],
        cwd=REPO,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_short_secret_refuses_to_start(tmp_path):
    result = run("--database-url", f"sqlite:///{tmp_path}/x.db", "--jwt-secret", "too-short")
    assert result.returncode == 2
    assert "--jwt-secret: must be at least 32 bytes" in result.stderr
    assert "Traceback" not in result.stderr


def test_generated_secret_is_kept_so_tokens_survive(tmp_path):
    url = f"sqlite:///{tmp_path}/gen.db"
    first = run("--database-url", url, "token", "alice")
    second = run("--database-url", url, "token", "bob", "--role", "admin", "--name", "Bob")
    assert first.returncode == second.returncode == 0
    assert "generated one and stored it in the database" in first.stderr
    assert "generated" not in second.stderr
    # Both tokens verify with the one key stored in the database.
    with sqlite3.connect(tmp_path / "gen.db") as db:
        (stored,) = db.execute(
            "SELECT value FROM server_settings WHERE key = 'jwt_secret'"
        ).fetchone()
    assert len(stored.encode()) >= 32
    alice = jwt.decode(first.stdout.strip(), stored, algorithms=["HS256"])
    claims = jwt.decode(second.stdout.strip(), stored, algorithms=["HS256"])
    assert alice["sub"] == "alice"
    assert (claims["sub"], claims["role"], claims["name"]) == ("bob", "admin", "Bob")
    assert claims["exp"] - claims["iat"] == 86400
    bad = run("--database-url", url, "token", "not valid!")
    assert bad.returncode == 1 and "Traceback" not in bad.stderr


def test_migrate_user_create_and_board_create_then_serve(tmp_path):
    url = f"sqlite:///{tmp_path}/cli.db"
    assert run("--database-url", url, "migrate").returncode == 0
    created = run(
        "--database-url",
        url,
        "user",
        "create",
        "root",
        "--role",
        "admin",
        stdin="a long password\n",
    )
    assert created.returncode == 0, created.stderr
    assert run("--database-url", url, "user", "create", "x", stdin="short\n").returncode == 1
    board = run(
        "--database-url",
        url,
        "--jwt-secret",
        SECRET,
        "board",
        "create",
        "laps",
        "--title",
        "Lap times",
        "--order",
        "asc",
        "--operator",
        "set",
    )
    assert board.returncode == 0, board.stderr
    again = run("--database-url", url, "board", "create", "laps", "--title", "Again")
    assert again.returncode == 1 and "exists" in again.stderr

    server = ServerProcess(url, tmp_path / "server.log").start()
    try:
        status, login = server.request(
            "POST", "/api/auth/login", {"username": "root", "password": "a long password"}
        )
        assert status == 200 and login["user"]["role"] == "admin"
        status, boards = server.request("GET", "/api/boards", token=login["access_token"])
        assert status == 200
        assert [(b["id"], b["order"], b["operator"]) for b in boards["boards"]] == [
            ("laps", "asc", "set")
        ]
    finally:
        assert server.stop() == 0


def _self_signed(tmp_path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(certfile), str(keyfile)


def _tls_server(tmp_path: Path) -> tuple[ServerProcess, str]:
    """A started server on HTTPS/WSS with a certificate made here (its client trusts it), and
    the certificate's path."""
    import ssl

    certfile, keyfile = _self_signed(tmp_path)
    server = ServerProcess(
        f"sqlite:///{tmp_path}/tls.db",
        tmp_path / "server.log",
        "--certfile",
        certfile,
        "--keyfile",
        keyfile,
        tls=ssl.create_default_context(cafile=certfile),
    )
    return server.start(), certfile


def test_certfile_and_keyfile_serve_https(tmp_path):

    server, _ = _tls_server(tmp_path)
    try:
        assert server.request("GET", "/healthz") == (200, {"status": "ok"})
        assert "serving on https://" in server.log_path.read_text()
    finally:
        assert server.stop() == 0


def test_cluster_mode_on_sqlite_is_refused_in_one_line(tmp_path):
    result = run("--database-url", f"sqlite:///{tmp_path}/c.db", "--redis-url", "redis://x")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "scoreboard: --redis-url: cluster mode needs a PostgreSQL --database-url "
        "(postgresql+psycopg://…), got sqlite:…"
    ]
    assert not (tmp_path / "c.db").exists()


def test_processes_above_one_fail_to_start_in_one_line_before_forking():
    # The supervisor migrates before it forks: an unreachable database is its one line.
    result = run(
        "--database-url", "postgresql+psycopg://nobody@127.0.0.1:1/none",
        "--redis-url", "redis://127.0.0.1:1/0",
        "--processes", "2",
    )  # fmt: skip
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(
        "scoreboard: cannot open the database postgresql+psycopg://nobody@127.0.0.1:1/none: "
    )
    assert "[process " not in result.stderr  # nothing was forked


def test_board_create_score_format_flag(tmp_path):
    url = f"sqlite:///{tmp_path}/fmt.db"
    made = run("--database-url", url, "board", "create", "laps", "--title", "Laps")
    assert made.returncode == 0, made.stderr
    timed = run(
        "--database-url",
        url,
        "board",
        "create",
        "race",
        "--title",
        "Race",
        "--score-format",
        "duration_ms",
    )
    assert timed.returncode == 0, timed.stderr
    for bad in ("decimal:7", "Integer", "decimal:01", ""):
        refused = run(
            "--database-url", url, "board", "create", "bad", "--title", "B", "--score-format", bad
        )
        assert refused.returncode == 2, (bad, refused.stderr)
        assert refused.stderr.splitlines() == [
            f"scoreboard: --score-format must be integer, duration_ms or decimal:N with N 1-6, "
            f"got {bad!r}"
        ]
    with sqlite3.connect(tmp_path / "fmt.db") as db:
        rows = db.execute("SELECT id, score_format FROM boards ORDER BY id").fetchall()
    assert rows == [("laps", "integer"), ("race", "duration_ms")]


def test_certfile_and_keyfile_serve_wss(tmp_path):
    """The WebSocket on the same TLS port: handshake, subscribe, and a live score_update."""
    import json
    import ssl

    import websocket

    server, certfile = _tls_server(tmp_path)
    try:
        admin = server.token("admin", "admin")
        assert server.request("POST", "/api/boards", {"id": "b", "title": "B"}, admin)[0] == 201
        ws = websocket.create_connection(
            f"wss://127.0.0.1:{server.port}/ws",
            header=[f"Authorization: Bearer {admin}"],
            sslopt={"ca_certs": certfile, "cert_reqs": ssl.CERT_REQUIRED},
            timeout=5,
        )
        try:
            ws.send(json.dumps({"type": "subscribe", "data": {"board": "b"}}))
            kinds = []
            while "snapshot" not in kinds:
                kinds.append(json.loads(ws.recv())["type"])
            assert server.request("POST", "/api/boards/b/scores", {"score": 3}, admin)[0] == 200
            while (frame := json.loads(ws.recv()))["type"] != "score_update":
                pass
            assert frame["data"]["board"] == "b"
        finally:
            ws.close()
        # A client that does not trust the certificate is refused at the TLS handshake.
        with pytest.raises(ssl.SSLError):
            websocket.create_connection(f"wss://127.0.0.1:{server.port}/ws", timeout=5)
    finally:
        assert server.stop() == 0


# -- management on the running server, and the one-server lock -------------------------------


def manage(server: ServerProcess, *args: str, stdin: str | None = None):
    """A management command aimed at `server`'s database and port."""
    return subprocess.run(
        server.command("--port", str(server.port), *args),
        cwd=REPO,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_management_goes_through_a_running_server_and_its_subscribers_see_it(tmp_path):
    import json

    import websocket

    server = ServerProcess(f"sqlite:///{tmp_path}/live.db", tmp_path / "server.log").start()
    try:
        made = manage(
            server,
            "board",
            "create",
            "speedrun",
            "--title",
            "Speed run",
            "--order",
            "asc",
            "--score-format",
            "duration_ms",
        )
        assert made.returncode == 0, made.stderr
        assert made.stdout.splitlines() == [
            "created board speedrun",
            f"(through the running server at {server.base_url})",
        ]
        admin = server.token("boss", "admin")
        # The running server knows the board at once (no restart, no 404/409 trap).
        status, board = server.request("GET", "/api/boards/speedrun", token=admin)
        assert status == 200 and board["score_format"] == "duration_ms"
        game = server.token("game", "server")
        server.request(
            "POST", "/api/boards/speedrun/scores", {"user_id": "amy", "score": 62345}, game
        )

        ws = websocket.create_connection(
            server.base_url.replace("http", "ws") + "/ws?board=speedrun",
            header=[f"Authorization: Bearer {admin}"],
            timeout=10,
        )
        try:
            while json.loads(ws.recv())["type"] != "snapshot":
                pass
            listed = manage(server, "board", "list")
            assert listed.returncode == 0, listed.stderr
            assert "amy 1:02.345" in listed.stdout and "through the running server" in listed.stdout
            reset = manage(server, "board", "reset", "speedrun")
            assert reset.returncode == 0, reset.stderr
            assert reset.stdout.startswith("reset board speedrun: season 1 archived, season 2")
            while (frame := json.loads(ws.recv()))["type"] != "snapshot":
                pass
            assert frame["data"]["top_10"] == [] and frame["data"]["total_players"] == 0
        finally:
            ws.close()
        status, seasons = server.request("GET", "/api/boards/speedrun/seasons", token=admin)
        assert [s["players"] for s in seasons["seasons"]] == [1]

        user = manage(
            server, "user", "create", "judge", "--role", "admin", stdin="a long password\n"
        )
        assert user.returncode == 0, user.stderr
        assert "through the running server" in user.stdout
        status, login = server.request(
            "POST", "/api/auth/login", {"username": "judge", "password": "a long password"}
        )
        assert status == 200 and login["user"]["role"] == "admin"
        users = manage(server, "user", "list")
        assert "judge" in users.stdout and "admin" in users.stdout

        gone = manage(server, "board", "delete", "speedrun")
        assert gone.returncode == 0, gone.stderr
        assert server.request("GET", "/api/boards/speedrun", token=admin)[0] == 404
        missing = manage(server, "board", "reset", "speedrun")
        assert missing.returncode == 1
        assert "404" in missing.stderr and "Traceback" not in missing.stderr
    finally:
        assert server.stop() == 0

    # Stopped: the same commands write the database, and say so.
    offline = manage(
        server, "board", "create", "next", "--title", "Next", "--reset-schedule", "weekly"
    )
    assert offline.returncode == 0, offline.stderr
    assert offline.stdout.splitlines()[-1] == (
        "(written to the database directly: no server is running on it)"
    )
    listed = manage(server, "board", "list")
    assert "next" in listed.stdout and "directly" in listed.stdout
    assert manage(server, "board", "reset", "next").returncode == 0
    server.start()
    try:
        admin = server.token("boss", "admin")
        status, board = server.request("GET", "/api/boards/next", token=admin)
        assert status == 200 and board["season"] == 2 and board["reset_schedule"] == "weekly"
    finally:
        assert server.stop() == 0


def test_a_lock_held_but_no_server_answering_is_said_in_one_line(tmp_path):
    server = ServerProcess(f"sqlite:///{tmp_path}/l.db", tmp_path / "server.log").start()
    try:
        wrong_port = subprocess.run(
            server.command("--port", "1", "board", "list"),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        assert server.stop() == 0
    assert wrong_port.returncode == 1
    (line,) = wrong_port.stderr.splitlines()
    assert "none answers at http://127.0.0.1:1" in line and "l.db.lock" in line


def _second_server_is_refused(url: str, tmp_path, lock_words: str) -> None:
    first = ServerProcess(url, tmp_path / "first.log").start()
    try:
        second = subprocess.run(
            ServerProcess(url, tmp_path / "second.log").command("--port", "1"),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 2
        (line,) = second.stderr.splitlines()
        assert line.startswith("scoreboard: another server is running on this database")
        assert lock_words in line
        assert first.request("GET", "/healthz")[0] == 200
    finally:
        assert first.stop() == 0
    # The lock dies with its process: a server starts again at once.
    again = ServerProcess(url, tmp_path / "again.log").start()
    assert again.stop() == 0


def test_a_second_server_on_the_same_sqlite_file_is_refused(tmp_path):
    _second_server_is_refused(f"sqlite:///{tmp_path}/one.db", tmp_path, "one.db.lock")


def test_a_second_server_on_the_same_postgres_database_is_refused(postgres_url, tmp_path):
    _second_server_is_refused(postgres_url, tmp_path, "PostgreSQL advisory lock")


def test_a_killed_servers_lock_is_gone_with_it(tmp_path):
    import signal

    url = f"sqlite:///{tmp_path}/k.db"
    server = ServerProcess(url, tmp_path / "server.log").start()
    assert server.stop(signal.SIGKILL) == -signal.SIGKILL
    direct = run("--database-url", url, "--jwt-secret", SECRET, "board", "list")
    assert direct.returncode == 0 and "directly" in direct.stdout


# -- flags, version, signals and start-up failures -----------------------------------------


def test_version_and_help_show_every_default(tmp_path):
    from scoreboard import __version__
    from scoreboard.config import FLAGS, Settings

    version = run("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"run.py {__version__}"
    shown = run("--help")
    assert shown.returncode == 0
    help_text = " ".join(shown.stdout.split())
    defaults = Settings()
    for flag in FLAGS:
        assert flag.option in help_text, flag.option
        default = getattr(defaults, flag.name)
        if default is not None and default != ():
            assert f"default: {default}" in help_text or f"default: {str(default).lower()}" in (
                help_text
            ), flag.option


def test_log_level_is_case_insensitive_and_global_flags_follow_a_subcommand(tmp_path):
    url = f"sqlite:///{tmp_path}/order.db"
    result = run(
        "token", "alice", "--database-url", url, "--jwt-secret", SECRET, "--log-level", "INFO"
    )
    assert result.returncode == 0, result.stderr
    assert jwt.decode(result.stdout.strip(), SECRET, algorithms=["HS256"])["sub"] == "alice"
    assert not (REPO / "scoreboard.db-order").exists()
    # The flag after the subcommand was used: the database is the one named there.
    assert (tmp_path / "order.db").exists()
    mixed = run(
        "--log-level", "WARNING", "token", "bob", "--database-url", url, "--jwt-secret", SECRET
    )
    assert mixed.returncode == 0, mixed.stderr


def test_loadtest_takes_the_server_flags_after_it_but_keeps_its_own_processes():
    from scoreboard import config
    from scoreboard.cli import build_parser

    argv = ["loadtest", "--url", "http://127.0.0.1:1", "--clients", "2", "--rate", "1"]
    argv += ["--duration", "1", "--jwt-secret", SECRET, "--processes", "3"]
    args = build_parser().parse_args(argv)
    settings = config.settings_from(args, {})
    assert settings.jwt_secret == SECRET  # the server's secret, given after the subcommand
    assert args.loadtest_processes == 3 and settings.processes == 1


def _one_line_failure(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_start_up_failures_are_one_line_naming_cause_and_value(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        result = run(
            "--database-url", f"sqlite:///{tmp_path}/p.db", "--jwt-secret", SECRET, "--port", port
        )
        _one_line_failure(result, port, "in use")
    missing = tmp_path / "missing.pem"
    result = run(
        "--database-url",
        f"sqlite:///{tmp_path}/c.db",
        "--jwt-secret",
        SECRET,
        "--port",
        "0",
        "--certfile",
        str(missing),
        "--keyfile",
        str(missing),
    )
    _one_line_failure(result, str(missing))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    result = run(
        "--database-url",
        f"sqlite:///{tmp_path}/c.db",
        "--jwt-secret",
        SECRET,
        "--port",
        "0",
        "--certfile",
        str(garbage),
        "--keyfile",
        str(garbage),
    )
    _one_line_failure(result, str(garbage))
    unwritable = tmp_path / "ro"
    unwritable.mkdir()
    unwritable.chmod(0o500)
    try:
        result = run(
            "--database-url",
            f"sqlite:///{unwritable}/sub/x.db",
            "--jwt-secret",
            SECRET,
            "--port",
            "0",
        )
        _one_line_failure(result, f"{unwritable}/sub/x.db")
    finally:
        unwritable.chmod(0o700)
    result = run(
        "--database-url",
        "postgresql+psycopg://nobody:hunter2@127.0.0.1:1/none",
        "--jwt-secret",
        SECRET,
        "--port",
        "0",
    )
    _one_line_failure(result, "127.0.0.1:1")
    assert "hunter2" not in result.stderr
    newer = tmp_path / "newer.db"
    assert run("--database-url", f"sqlite:///{newer}", "migrate").returncode == 0
    with sqlite3.connect(newer) as db:
        db.execute("UPDATE alembic_version SET version_num = 'ffffffffffff'")
    result = run("--database-url", f"sqlite:///{newer}", "--jwt-secret", SECRET, "--port", "0")
    _one_line_failure(result, "ffffffffffff")


def test_sighup_reopens_the_log_file_and_never_kills(tmp_path):
    import os
    import signal
    import time

    log_file = tmp_path / "scoreboard.log"
    server = ServerProcess(
        f"sqlite:///{tmp_path}/hup.db", tmp_path / "out.log", "--log-file", str(log_file)
    ).start()
    try:
        assert "serving on" in log_file.read_text()
        rotated = tmp_path / "scoreboard.log.1"
        os.rename(log_file, rotated)
        server.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while not log_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.request("GET", "/healthz")[0] == 200
        assert server.process.poll() is None
        assert "reopened the log file" in log_file.read_text()
        deadline = time.monotonic() + 5  # the access line is written just after the answer
        while "GET /healthz" not in log_file.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "GET /healthz" in log_file.read_text()
        assert "GET /healthz" not in rotated.read_text()
    finally:
        assert server.stop() == 0
    # Without a log file SIGHUP is a logged no-op.
    plain = ServerProcess(f"sqlite:///{tmp_path}/hup2.db", tmp_path / "plain.log").start()
    try:
        plain.process.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert plain.request("GET", "/healthz")[0] == 200
    finally:
        assert plain.stop() == 0
    assert "nothing to reopen" in (tmp_path / "plain.log").read_text()
