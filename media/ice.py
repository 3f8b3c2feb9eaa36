"""ICE for the WebRTC transport: which STUN/TURN servers and local addresses to use, which remote candidates to
accept (``VOXLANE_ICE_SERVERS``, ``VOXLANE_ICE_HOSTS``), and the hook that keeps aioice's gathering on them."""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import aioice.ice
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
)
from aiortc.rtcicetransport import parse_stun_turn_uri


class SdpError(ValueError):
    """A session description that cannot be used (malformed, or nothing usable in it)."""


# ---------------------------------------------------------------------------------------- ICE


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def parse_ice_hosts(value: str) -> tuple[str, ...]:
    """``VOXLANE_ICE_HOSTS``: comma-separated IP addresses of this machine (empty: all non-loopback)."""
    hosts: list[str] = []
    for part in (p.strip() for p in (value or "").split(",")):
        if not part:
            continue
        ip = _ip(part)
        if ip is None:
            raise ValueError(f"VOXLANE_ICE_HOSTS: {part!r} is not an IP address")
        if str(ip) not in hosts:
            hosts.append(str(ip))
    return tuple(hosts)


_TURN_CREDENTIALS = re.compile(r"^(?P<scheme>turns?):(?P<user>[^:@/]*):(?P<password>[^@/]*)@(?P<rest>.+)$")


def parse_ice_servers(value: str) -> list[RTCIceServer]:
    """``VOXLANE_ICE_SERVERS``: ``stun:host[:port]``, ``turn[s]:user:pass@host[:port][?transport=udp|tcp]``.

    aiortc uses at most one STUN and one TURN server; the first of each kind wins.
    """
    servers: list[RTCIceServer] = []
    for part in (p.strip() for p in (value or "").split(",")):
        if not part:
            continue
        username = credential = None
        url = part
        m = _TURN_CREDENTIALS.match(part)
        if m:
            url = f"{m['scheme']}:{m['rest']}"
            username, credential = m["user"], m["password"]
        try:
            parsed = parse_stun_turn_uri(url)
        except ValueError as exc:
            raise ValueError(f"VOXLANE_ICE_SERVERS: {part!r} is not a stun:/turn: URL ({exc})") from None
        if parsed["scheme"] in ("turn", "turns") and username is None:
            raise ValueError(f"VOXLANE_ICE_SERVERS: {part!r} needs credentials (turn:user:pass@host:port)")
        servers.append(RTCIceServer(urls=url, username=username, credential=credential))
    return servers


@dataclass(frozen=True)
class IceConfig:
    servers: list[RTCIceServer] = field(default_factory=list)
    hosts: tuple[str, ...] = ()  # IP addresses as parse_ice_hosts() wrote them

    @classmethod
    def from_settings(cls, ice_servers: str, ice_hosts: str) -> IceConfig:
        return cls(servers=parse_ice_servers(ice_servers), hosts=parse_ice_hosts(ice_hosts))

    @property
    def loopback_only(self) -> bool:
        return bool(self.hosts) and all(ipaddress.ip_address(h).is_loopback for h in self.hosts)

    def allows_remote(self, address: str) -> bool:
        """Whether a remote candidate address may be used (everything, unless loopback-only)."""
        if not self.loopback_only:
            return True
        ip = _ip(address)  # mDNS names (``*.local``) are not IP addresses: dropped
        return (ip is not None and ip.is_loopback
                and any(ipaddress.ip_address(h).version == ip.version for h in self.hosts))

    def rtc_configuration(self) -> RTCConfiguration:
        # An explicit list, even empty: with None aiortc adds stun.l.google.com.
        return RTCConfiguration(iceServers=list(self.servers), bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


# aioice gathers host candidates on the addresses returned by its module-level
# ``get_host_addresses(use_ipv4, use_ipv6)``, which lists every interface address except
# 127.0.0.1 and ::1, with no way to choose them per connection. ``_gather_on`` carries the
# configured VOXLANE_ICE_HOSTS into that call: a peer sets it around ``setLocalDescription``
# (the only place aiortc gathers), and the wrapper installed below returns those addresses
# instead. Gathering runs in tasks created inside that call, which inherit the context, so
# concurrent connections with and without a host list do not see each other's value; with
# the variable unset the wrapper is exactly aioice's own function.
_gather_on: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar("voxlane_ice_hosts",
                                                                                    default=None)
_aioice_get_host_addresses = aioice.ice.get_host_addresses


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    hosts = _gather_on.get()
    if hosts is None:
        return _aioice_get_host_addresses(use_ipv4, use_ipv6)
    return [h for h in hosts if (use_ipv4 if ipaddress.ip_address(h).version == 4 else use_ipv6)]


@contextlib.contextmanager
def gather_on(hosts: tuple[str, ...] | list[str] | None) -> Iterator[None]:
    """Within this block, aiortc gathers host candidates on ``hosts`` only (None: aioice's default).

    Wrap ``setLocalDescription`` in it; clients on the same machine (tests) use it to stay on loopback.
    """
    install_host_address_hook()
    token = _gather_on.set(tuple(hosts) if hosts else None)
    try:
        yield
    finally:
        _gather_on.reset(token)


def install_host_address_hook() -> None:
    if aioice.ice.get_host_addresses is not _get_host_addresses:
        aioice.ice.get_host_addresses = _get_host_addresses


def filter_remote_candidates(sdp: str, ice: IceConfig) -> tuple[str, int, int]:
    """Drop ``a=candidate`` lines whose address the configuration does not allow.

    Returns ``(sdp, kept, dropped)``. Line endings are kept as they came.
    """
    kept = dropped = 0
    out: list[str] = []
    for line in sdp.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        if body.startswith("a=candidate:"):
            parts = body[len("a=candidate:"):].split()
            # foundation component transport priority address port "typ" type ...
            if len(parts) < 8 or parts[6] != "typ":
                raise SdpError(f"malformed candidate line: {body[:120]!r}")
            if not ice.allows_remote(parts[4]):
                dropped += 1
                continue
            kept += 1
        out.append(line)
    return "".join(out), kept, dropped
