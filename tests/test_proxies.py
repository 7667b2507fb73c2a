"""--trusted-proxies: forwarded client addresses are believed only from the proxies named."""

from __future__ import annotations

import ipaddress
import logging

import pytest

from scoreboard.config import ConfigError, parse_settings
from scoreboard.proxies import client_address, forwarded_protocol

TRUSTED = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"))


@pytest.mark.parametrize(
    ("peer", "headers", "expected"),
    [
        # From a trusted proxy: the nearest address that is not itself a trusted proxy.
        ("10.0.0.2", {"X-Forwarded-For": "203.0.113.7"}, "203.0.113.7"),
        ("10.0.0.2", {"X-Forwarded-For": "198.51.100.1, 203.0.113.7, 10.0.0.9"}, "203.0.113.7"),
        ("::1", {"X-Forwarded-For": "2001:db8::5"}, "2001:db8::5"),
        ("10.0.0.2", {"X-Real-IP": "203.0.113.8"}, "203.0.113.8"),
        ("10.0.0.2", {"X-Forwarded-For": "10.0.0.3, 10.0.0.4"}, "10.0.0.3"),
        # Junk in the header: the last address that could be checked, never the junk.
        ("10.0.0.2", {"X-Forwarded-For": "evil, 203.0.113.7"}, "203.0.113.7"),
        ("10.0.0.2", {"X-Forwarded-For": "203.0.113.7, evil"}, "10.0.0.2"),
        ("10.0.0.2", {"X-Real-IP": "not an address"}, "10.0.0.2"),
        ("10.0.0.2", {}, "10.0.0.2"),
        # From anyone else, the headers say nothing.
        ("192.0.2.1", {"X-Forwarded-For": "203.0.113.7"}, "192.0.2.1"),
        ("192.0.2.1", {"X-Real-IP": "203.0.113.7"}, "192.0.2.1"),
    ],
)
def test_client_address(peer, headers, expected):
    assert client_address(peer, headers, TRUSTED) == expected


def test_no_trusted_proxies_means_headers_are_ignored():
    assert client_address("10.0.0.2", {"X-Forwarded-For": "203.0.113.7"}, ()) == "10.0.0.2"


def test_flag_takes_addresses_and_cidrs_and_refuses_junk():
    settings = parse_settings(["--trusted-proxies", "10.0.0.0/8, 127.0.0.1,::1"], environ={})
    assert settings.trusted_proxies == ("10.0.0.0/8", "127.0.0.1", "::1")
    with pytest.raises(ConfigError, match=r"--trusted-proxies: .*'10\.0\.0\.300'"):
        parse_settings(["--trusted-proxies", "10.0.0.300"], environ={})


async def _logins(api, forwarded_for: str, count: int) -> list[int]:
    body = {"username": "nobody", "password": "wrong password"}
    statuses = []
    for _ in range(count):
        response = await api.post(
            "/api/auth/login", body, headers={"X-Forwarded-For": forwarded_for}
        )
        statuses.append(response.status)
    return statuses


@pytest.mark.gen_test(timeout=30)
async def test_behind_a_trusted_proxy_each_player_has_their_own_login_bucket(make_api, caplog):
    api = await make_api(login_rate=0.01, login_burst=2, trusted_proxies=("127.0.0.1",))
    caplog.set_level(logging.INFO, logger="scoreboard.access")
    assert await _logins(api, "203.0.113.1", 3) == [401, 401, 429]
    assert await _logins(api, "203.0.113.2", 3) == [401, 401, 429]
    assert "(203.0.113.2)" in caplog.text  # the access log names the player, not the proxy


@pytest.mark.gen_test(timeout=30)
async def test_from_an_untrusted_peer_forwarded_headers_are_ignored(make_api, caplog):
    api = await make_api(login_rate=0.01, login_burst=2)
    caplog.set_level(logging.INFO, logger="scoreboard.access")
    # A client cannot dodge its limit by making up addresses.
    assert await _logins(api, "203.0.113.1", 3) == [401, 401, 429]
    assert await _logins(api, "203.0.113.2", 1) == [429]
    assert "203.0.113" not in caplog.text
    assert "(127.0.0.1)" in caplog.text


@pytest.mark.parametrize(
    ("peer", "said", "expected"),
    [
        ("10.0.0.2", "https", "https"),
        ("10.0.0.2", "HTTPS", "https"),
        ("10.0.0.2", "http, https", "https"),  # the nearest proxy's word counts
        ("10.0.0.2", "gopher", "http"),
        ("10.0.0.2", None, "http"),
        ("203.0.113.7", "https", "http"),  # not a trusted proxy: ignored
    ],
)
def test_forwarded_protocol(peer, said, expected):
    headers = {} if said is None else {"X-Forwarded-Proto": said}
    assert forwarded_protocol(peer, headers, TRUSTED, "http") == expected
