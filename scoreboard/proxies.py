"""Which address a request comes from, and over which scheme, when reverse proxies stand in
front of the server.

`X-Forwarded-For`, `X-Real-IP` and `X-Forwarded-Proto` are believed only when the connection's
peer is one of the configured trusted proxies (`--trusted-proxies`); from anyone else they are
ignored, or any client could pick the address its rate limits are counted under.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """Addresses and CIDRs as networks; ValueError naming the first bad entry."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"expected an IP address or CIDR, got {entry!r}") from None
    return tuple(networks)


def _address(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _trusted(address: Address, trusted: tuple[Network, ...]) -> bool:
    return any(address in network for network in trusted)


def client_address(peer: str, headers: Mapping[str, str], trusted: tuple[Network, ...]) -> str:
    """The client's address: the peer, or what trusted proxies say they were talking to.

    `X-Forwarded-For` is read from the right (the hop nearest to us) and the first address that
    is not itself a trusted proxy is the client; every proxy appends, so entries left of that
    one were written by the client and prove nothing. A malformed entry ends the walk at the
    last address that was checked.
    """
    current = _address(peer)
    if current is None or not trusted or not _trusted(current, trusted):
        return peer
    forwarded = headers.get("X-Forwarded-For")
    if forwarded:
        for hop in reversed(forwarded.split(",")):
            address = _address(hop)
            if address is None:
                break
            current = address
            if not _trusted(address, trusted):
                break
        return str(current)
    real = _address(headers.get("X-Real-IP") or "")
    return str(real) if real is not None else peer


def forwarded_protocol(
    peer: str, headers: Mapping[str, str], trusted: tuple[Network, ...], current: str
) -> str:
    """`https` or `http` as a trusted proxy says the client spoke it (`X-Forwarded-Proto`).

    A proxy that ends TLS talks plain HTTP to us; without this, the log-in cookie of a
    browser on HTTPS would lose its `Secure` flag. The nearest proxy's value counts (the
    last of a list), as for addresses; anything but http or https leaves `current`.
    """
    address = _address(peer)
    if address is None or not _trusted(address, trusted):
        return current
    said = (headers.get("X-Forwarded-Proto") or "").split(",")[-1].strip().lower()
    return said if said in ("http", "https") else current
