"""The process's logging: where lines go, and that no token ever reaches one.

Secrets are kept out at two layers. Every line that shows a request names its URI through
`redacted_uri`, which redacts the query parameters whose *decoded* name is a secret
(`access%5Ftoken` and `%61ccess_token` are `access_token` to Tornado, so they are to us), and
no line shows `repr(request)`. Behind that, `RedactingFormatter` cleans every formatted line,
traceback included, of anything that looks like a token: a secret query parameter, a
`Bearer …` value, or a JWT anywhere in the text. The second layer catches the paths nobody
thought of (a library's own message, an exception that quotes a URL).

`--log-file` writes the log to a file instead of standard error; SIGHUP reopens it, so that
logrotate can move the file away (`reopen()`).
"""

from __future__ import annotations

import logging
import re
import sys
from urllib.parse import unquote_plus

#: Query parameters (decoded, case-insensitive) whose value never reaches a log line.
SECRET_PARAMETERS = frozenset({"access_token", "token", "password"})
REDACTED = "[redacted]"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# name=value pairs of a query string inside free text; names may be percent-encoded.
_PAIR = re.compile(r"(?P<name>[A-Za-z0-9%_.~+\-]+)=(?P<value>[^&\s\"'<>()\[\]]*)")
_BEARER = re.compile(r"(?i)\b(bearer[ .]+)[^\s,\"']+")
# header.payload.signature, each base64url; the header of every JWT starts with `eyJ` ({").
_JWT = re.compile(r"eyJ[A-Za-z0-9_\-]*\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*")

log = logging.getLogger(__name__)


def is_secret_parameter(raw_name: str) -> bool:
    """True when a (possibly percent-encoded) query parameter name names a secret."""
    return unquote_plus(raw_name).strip().lower() in SECRET_PARAMETERS


def redacted_uri(uri: str) -> str:
    """The URI as logs may show it: values of secret query parameters replaced."""
    path, sep, query = uri.partition("?")
    if not sep:
        return uri
    pairs = []
    for pair in query.split("&"):
        name, eq, _ = pair.partition("=")
        pairs.append(f"{name}={REDACTED}" if eq and is_secret_parameter(name) else pair)
    return f"{path}?{'&'.join(pairs)}"


def _redact_pair(match: re.Match[str]) -> str:
    if match["value"] and is_secret_parameter(match["name"]):
        return f"{match['name']}={REDACTED}"
    return match[0]


def redact_text(text: str) -> str:
    """Free text with every token-looking value replaced (query pairs, Bearer values, JWTs)."""
    if "=" in text:
        text = _PAIR.sub(_redact_pair, text)
    text = _BEARER.sub(lambda m: m[1] + REDACTED, text)
    return _JWT.sub(REDACTED, text)


class RedactingFormatter(logging.Formatter):
    """A formatter whose every line, traceback included, has passed `redact_text`."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


class _ReopenableFileHandler(logging.FileHandler):
    def reopen(self) -> None:
        self.acquire()
        try:
            if self.stream is not None:
                self.stream.close()
            self.stream = self._open()
        finally:
            self.release()


def configure(level: str, log_file: str | None = None) -> None:
    """Root logging at `level` to `log_file` (appended) or standard error, redacting."""
    handler: logging.Handler
    if log_file is None:
        handler = logging.StreamHandler(sys.stderr)
    else:
        handler = _ReopenableFileHandler(log_file, encoding="utf-8")
    handler.setFormatter(RedactingFormatter(FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


def label_process(label: str) -> None:
    """Name the writing process on every later line: `… INFO [process 2 pid 4242] scoreboard: …`.

    With `--processes N` all processes write to one standard error or one log file; without
    the label nobody could tell whose line a failure is.
    """
    labelled = f"%(asctime)s %(levelname)s [{label.replace('%', '%%')}] %(name)s: %(message)s"
    for handler in logging.getLogger().handlers:
        handler.setFormatter(RedactingFormatter(labelled))


def reopen() -> None:
    """SIGHUP: reopen the log file (after logrotate moved it); a no-op, logged, on stderr."""
    files = [h for h in logging.getLogger().handlers if isinstance(h, _ReopenableFileHandler)]
    for handler in files:
        handler.reopen()
    if files:
        log.info("SIGHUP: reopened the log file")
    else:
        log.info("SIGHUP: logging to standard error, nothing to reopen")
