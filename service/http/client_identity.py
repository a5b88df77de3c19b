"""Who sent a request: the client that per-client budgets, crash containment and fair scheduling charge.

A client is its API key when keys are on; else its address. Behind a reverse proxy or an ingress the socket's peer
is the proxy, so "per address" would mean "everyone": when the peer is one of ``trusted_proxies``, the client is
the right-most address of the forwarded header that is not itself a trusted proxy. Right-most, because every proxy
appends the address it received the request from, so only the entries to the right of the first untrusted hop
were written by proxies we trust; anything further left was sent by the client and may be forged. Headers from
peers that are not trusted proxies are ignored entirely.

Only one header is read (``forwarded_header``: ``X-Forwarded-For`` by default, or RFC 7239 ``Forwarded``): a proxy
that appends to one of them usually passes the other through untouched, and reading both would let a client pick
its own identity.

IPv6 clients are identified by their /64: one host is routinely given a whole /64, so single addresses would let
it appear as any number of clients.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

Network = IPv4Network | IPv6Network
Address = IPv4Address | IPv6Address

MAX_HOPS = 64
"""Forwarded hops looked at, from the right; a longer chain is cut (a real one has a handful)."""
_FOR = re.compile(r'(?:^|;)\s*for\s*=\s*("[^"]*"|[^;,\s]*)', re.IGNORECASE)


def parse_address(text: str) -> Address | None:
    """An address from a header entry or a peer: ``1.2.3.4``, ``1.2.3.4:5678``, ``[::1]:5678``, ``::1``."""
    text = text.strip().strip('"').strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:  # IPv4 with a port (an IPv6 address has several colons)
        text = text.split(":", 1)[0]
    try:
        return ip_address(text)
    except ValueError:
        return None


def forwarded_for_hops(values: Sequence[str]) -> list[str]:
    """The entries of every ``X-Forwarded-For`` line, in order (several lines form one list)."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def forwarded_hops(values: Sequence[str]) -> list[str]:
    """The ``for=`` parameter of every element of every RFC 7239 ``Forwarded`` line, in order."""
    hops: list[str] = []
    for value in values:
        for element in value.split(","):
            match = _FOR.search(element)
            hops.append(match.group(1) if match else "")
    return hops


def address_key(address: Address) -> str:
    """The client key of an address: the address itself, or for IPv6 its /64 (see the module docstring)."""
    if isinstance(address, IPv6Address) and address.ipv4_mapped is None:
        return f"addr:{ip_network(f'{address}/64', strict=False)}"
    plain = address.ipv4_mapped if isinstance(address, IPv6Address) and address.ipv4_mapped else address
    return f"addr:{plain}"


class ClientIdentity:
    """Resolves the client of a request from its peer and its headers, given the trusted proxies."""

    def __init__(self, trusted_proxies: Sequence[Network] = (), header: str = "x-forwarded-for") -> None:
        self.trusted = tuple(trusted_proxies)
        self.header = header.lower()

    def is_trusted(self, address: Address | None) -> bool:
        if address is None:
            return False
        if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address.version == net.version and address in net for net in self.trusted)

    def client_address(self, peer: str | None, header: Callable[[str], list[str]]) -> Address | None:
        """The client's address: the peer, or behind trusted proxies the right-most untrusted forwarded hop.

        A hop that is not an address (``unknown``, an obfuscated name, garbage) ends the walk: the client is then
        the last trusted proxy that reported it, which is all that can be vouched for.
        """
        current = parse_address(peer) if peer else None
        if not self.trusted or not self.is_trusted(current):
            return current
        values = header(self.header)
        hops = forwarded_hops(values) if self.header == "forwarded" else forwarded_for_hops(values)
        for hop in reversed(hops[-MAX_HOPS:]):
            address = parse_address(hop)
            if address is None:
                return current
            current = address
            if not self.is_trusted(address):
                return address
        return current  # every hop is a trusted proxy: the left-most one sent it

    def client(self, peer: str | None, header: Callable[[str], list[str]], key_id: str | None = None) -> str:
        """The client key: ``key:<id>`` for an API key, else ``addr:<address>``, else ``anonymous``."""
        if key_id is not None:
            return f"key:{key_id}"
        address = self.client_address(peer, header)
        return address_key(address) if address is not None else "anonymous"
