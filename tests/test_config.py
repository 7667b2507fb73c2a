"""Settings from flags and SCOREBOARD_* variables, and their validation at start."""

from __future__ import annotations

import pytest

from scoreboard.config import FLAGS, ConfigError, Settings, parse_settings


def test_defaults_match_the_spec():
    s = parse_settings([], {})
    assert (s.host, s.port, s.database_url) == ("127.0.0.1", 8888, "sqlite:///scoreboard.db")
    assert s.jwt_secret is None and s.token_ttl == 86400
    assert (s.max_connections, s.max_connections_per_user) == (20000, 10)
    assert (s.broadcast_interval_ms, s.ping_interval, s.log_level) == (100, 20.0, "info")
    assert s.anonymous_read is False and s.allowed_origins == ()


def test_every_flag_has_its_environment_variable_and_the_flag_wins():
    env = {
        "SCOREBOARD_PORT": "9000",
        "SCOREBOARD_ANONYMOUS_READ": "true",
        "SCOREBOARD_ALLOWED_ORIGINS": "https://a.example, https://b.example/",
    }
    s = parse_settings(["--port", "9100"], env)
    assert s.port == 9100
    assert s.anonymous_read is True
    assert s.allowed_origins == ("https://a.example", "https://b.example")
    assert parse_settings(["--no-anonymous-read"], env).anonymous_read is False
    for flag in FLAGS:
        assert flag.env == "SCOREBOARD_" + flag.name.upper()
        assert flag.option == "--" + flag.name.replace("_", "-")


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--jwt-secret", "short"], {}, "at least 32 bytes"),
        (["--port", "70000"], {}, "--port"),
        (["--port", "x"], {}, "expected int"),
        ([], {"SCOREBOARD_ANONYMOUS_READ": "maybe"}, "SCOREBOARD_ANONYMOUS_READ"),
        (["--allowed-origins", "quiz.example"], {}, "scheme://host"),
        (["--database-url", "mysql://x"], {}, "--database-url"),
        (["--processes", "2"], {}, "--redis-url"),
        (["--redis-url", "redis://r"], {}, "needs a PostgreSQL --database-url"),
        (["--certfile", "/tmp/c.pem"], {}, "both or neither"),
        (["--log-level", "loud"], {}, "--log-level"),
        (["--broadcast-interval-ms", "0"], {}, "positive"),
        (["--jwt-public-key-file", "/nonexistent.pem"], {}, "no such file"),
    ],
)
def test_bad_values_are_refused_with_the_flag_named(argv, env, message):
    with pytest.raises(ConfigError, match=message):
        parse_settings(argv, env)


def test_settings_are_frozen_and_replace_validates():
    s = Settings()
    with pytest.raises(AttributeError):
        s.port = 1  # type: ignore[misc]
    assert s.replace(port=1).port == 1
    with pytest.raises(ConfigError):
        s.replace(jwt_secret="x")
