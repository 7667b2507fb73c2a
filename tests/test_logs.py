"""Logging (scoreboard/logs.py): no token in any line, whatever the path or the spelling.

The end-to-end test drives a real `run.py` at debug level through every path that logs a
request (access log, Tornado's HTTPError lines, an exception in the WebSocket `open`) and greps
the process's whole output for the token.
"""

from __future__ import annotations

import base64
import logging
import os
import socket
import urllib.error
import urllib.request

import pytest
from server_process import ServerProcess
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

from scoreboard.app import make_app
from scoreboard.handlers.base import BaseHandler, public
from scoreboard.logs import RedactingFormatter, redact_text, redacted_uri

TOKEN_SPELLINGS = ("access_token", "access%5Ftoken", "access%5ftoken", "%61ccess_token")


def _get(server: ServerProcess, path: str, **headers: str) -> int:
    request = urllib.request.Request(server.base_url + path, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as err:
        err.close()
        return err.code


def _post(server: ServerProcess, path: str) -> int:
    request = urllib.request.Request(server.base_url + path, b"x=1", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as err:
        err.close()
        return err.code


def _handshake(server: ServerProcess, query: str) -> bytes:
    """A WebSocket upgrade with the token in the query; the status line."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            f"GET /ws?{query} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
        return head.split(b"\r\n", 1)[0]


def test_no_token_reaches_the_log_whatever_the_spelling_or_path(tmp_path):
    log_path = tmp_path / "server.log"
    server = ServerProcess(
        f"sqlite:///{tmp_path / 'sb.db'}", log_path, "--log-level", "debug"
    ).start()
    try:
        token = server.token("alice")
        admin = server.token("admin", "admin")
        assert server.request("POST", "/api/boards", {"id": "b", "title": "B"}, admin)[0] == 201
        for name in TOKEN_SPELLINGS:
            # Accepted at the handshake in every spelling (the query is decoded): a 101.
            assert b" 101 " in _handshake(server, f"{name}={token}&board=b"), name
            # An exception in open() (undecodable argument) goes through log_exception.
            _handshake(server, f"{name}={token}&board=%FF")
            # Tornado's own 400 for an undecodable argument quotes the request.
            path = f"/api/boards/b/leaderboard?limit=%FF&{name}={token}"
            assert _get(server, path, Authorization=f"Bearer {token}") == 400
            # The XSRF refusal of a form post is logged with its URI.
            assert _post(server, f"/logout?{name}={token}") == 403
            assert _get(server, f"/nope?{name}={token}") == 404
            assert _get(server, "/api/me", Authorization=f"Bearer {token}") == 200
            assert _get(server, "/api/me", Authorization=f"Bearer {token}x") == 401
    finally:
        assert server.stop() == 0
    output = log_path.read_text()
    assert "[redacted]" in output
    for part in token.split("."):
        assert part not in output.replace("[redacted]", ""), "a token part reached the log"
    assert "[redacted][redacted]" not in output
    assert "HTTPServerRequest(" not in output  # Tornado's repr(request) quotes the raw URI


class Boom(BaseHandler):
    @public
    def get(self) -> None:
        raise RuntimeError("a bug")


@pytest.mark.gen_test(timeout=30)
async def test_an_uncaught_exception_logs_the_redacted_uri_only(make_services, caplog):
    services = await make_services()
    app = make_app(services)
    app.add_handlers(r".*", [(r"/boom", Boom, {"services": services})])
    sock, port = bind_unused_port()
    server = HTTPServer(app)
    server.add_sockets([sock])
    token = services.tokens.issue("alice")
    caplog.set_level(logging.INFO)
    answer = await AsyncHTTPClient().fetch(
        f"http://127.0.0.1:{port}/boom?%61ccess_token={token}", raise_error=False
    )
    server.stop()
    assert answer.code == 500
    assert any("Uncaught exception GET /boom" in r.getMessage() for r in caplog.records)
    for record in caplog.records:
        assert token not in record.getMessage()
        assert "HTTPServerRequest(" not in record.getMessage()


@pytest.mark.parametrize("name", TOKEN_SPELLINGS)
def test_redacted_uri_decodes_parameter_names(name):
    assert redacted_uri(f"/ws?board=b&{name}=abc.def.ghi&x=1") == (
        f"/ws?board=b&{name}=[redacted]&x=1"
    )


def test_redact_text_catches_jwts_and_bearer_values_anywhere():
    line = "Uncaught exception GET /ws?%61ccess_token=eyJa.eyJb.sig (1.2.3.4) Bearer xyz"
    cleaned = redact_text(line)
    assert "eyJ" not in cleaned and "sig" not in cleaned and "xyz" not in cleaned
    assert redact_text("no secrets here: a=b&c=d") == "no secrets here: a=b&c=d"


def test_the_formatter_redacts_the_traceback_too():
    try:
        raise ValueError("bad request /ws?access%5Ftoken=eyJhbGc.eyJzdWIi.c2ln")
    except ValueError:
        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "failed", (), None)
        import sys

        record.exc_info = sys.exc_info()
    text = RedactingFormatter("%(message)s").format(record)
    assert "eyJ" not in text and "c2ln" not in text
