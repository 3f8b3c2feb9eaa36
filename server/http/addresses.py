"""A client's address as the per-address limits count it: an IPv6 client by its network, not its host address.

A host on IPv6 is usually given a whole /64 and may take any of its addresses for each connection; keyed by the
full address, one host would get an allowance per connection. ``VOXLANE_IPV6_PREFIX_LENGTH`` sets the network
size counted as one address. IPv4 addresses (and IPv4-mapped IPv6 ones) count as themselves.
"""

from __future__ import annotations

import functools
import ipaddress

DEFAULT_IPV6_PREFIX = 64


@functools.lru_cache(maxsize=4096)
def address_key(host: str, ipv6_prefix: int = DEFAULT_IPV6_PREFIX) -> str:
    """``host`` as one key of the per-address limits: an IPv6 address becomes its network (``2001:db8::/64``)."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])  # a link-local address's zone is not part of it
    except ValueError:
        return host  # not an address (a test client's name, a Unix socket)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, ipv6_prefix), strict=False))
    return str(ip)
