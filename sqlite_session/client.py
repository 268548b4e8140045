"""What a login records of the client, when the app opts in (``record_client``)."""

from __future__ import annotations

import ipaddress

from flask import has_request_context, request

# How much of the client's address is recorded at a login (record_client): the network,
# enough to tell a place from another, not the host.
IPV4_PREFIX = 24
IPV6_PREFIX = 48
AGENT_CHARS = 256


def recorded_client() -> tuple[str | None, str | None]:
    """The user agent and the coarse address of the current request's client."""
    if not has_request_context():
        return None, None
    agent = request.headers.get("User-Agent")
    address = request.remote_addr
    return (agent[:AGENT_CHARS] if agent else None), (coarse_address(address) if address else None)


def coarse_address(address: str) -> str | None:
    """``address``'s network (a /24 of IPv4, a /48 of IPv6); None if it is not an address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    prefix = IPV4_PREFIX if ip.version == 4 else IPV6_PREFIX
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))
