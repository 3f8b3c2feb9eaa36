"""Which addresses are inside a network, and what ``VOXLANE_OUTBOUND_ALLOWLIST`` lets through although it is.

Apart from :mod:`server.http.outbound`, which guards the requests, so that the settings can check an allowlist's
syntax at start without importing an HTTP client, and sit below what they configure.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass

__all__ = ["Allowlist", "IPAddress", "IPNetwork", "canonical", "host_key", "is_internal", "parse_allowlist"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_HOST_NAME = re.compile(r"^[a-z0-9_](?:[a-z0-9_.-]{0,251}[a-z0-9_])?$")


def canonical(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address carries (mapped ``::ffff:a.b.c.d``, 6to4, NAT64), else the address."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def is_internal(address: IPAddress) -> bool:
    """Whether an address is inside some network rather than on the public internet."""
    a = canonical(address)
    return (a.is_private or a.is_loopback or a.is_link_local or a.is_multicast or a.is_unspecified
            or a.is_reserved or not a.is_global
            or (isinstance(a, ipaddress.IPv6Address) and a.is_site_local))


@dataclass(frozen=True)
class Allowlist:
    """What ``VOXLANE_OUTBOUND_ALLOWLIST`` lets through although it is internal."""

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()

    def allows_host(self, host: str) -> bool:
        return host_key(host) in self.hosts

    def allows_address(self, address: IPAddress) -> bool:
        a = canonical(address)
        return any(a.version == n.version and a in n for n in self.networks)


@functools.lru_cache(maxsize=16)
def parse_allowlist(text: str) -> Allowlist:
    """``"10.0.0.0/8, 127.0.0.1, hooks.internal"`` -> :class:`Allowlist`; ValueError names a bad entry."""
    networks: list[IPNetwork] = []
    hosts: set[str] = set()
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
            continue
        except ValueError:
            pass
        name = host_key(item)
        if not _HOST_NAME.match(name):
            raise ValueError(f"{item!r} is neither a CIDR (10.0.0.0/8, fd00::/8, 127.0.0.1) nor a host name")
        hosts.add(name)
    return Allowlist(tuple(networks), frozenset(hosts))


def host_key(host: str) -> str:
    return host.strip().lower().rstrip(".")
