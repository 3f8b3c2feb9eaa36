"""Requests the server makes to a URL a user gave it (webhook deliveries): never to an internal address.

A user's URL is a request made from inside the server's network: to the cloud metadata service
(169.254.169.254), a database on loopback, an admin page on 10.x. So every such URL passes
:class:`OutboundGuard`:

* only ``http``/``https``, with a host and without ``user:password@``;
* the host is resolved once (``getaddrinfo`` in a worker thread) and refused if ANY of its addresses is internal
  (:func:`is_internal`: private, loopback, link-local, multicast, unspecified, reserved, shared 100.64/10, or
  otherwise not globally routable; an IPv4 address carried inside IPv6 (``::ffff:a.b.c.d``, 6to4, NAT64) is
  judged as itself);
* the connection then goes to one of exactly those checked addresses (:class:`PinnedBackend`): there is no second
  lookup that a rebinding DNS server could answer differently. The request keeps the URL's host in ``Host`` and
  in TLS (SNI and certificate verification are for the host name, not the address);
* redirects are not followed (:func:`guarded_client`); a hop followed anyway would pass the guard again.

``VOXLANE_OUTBOUND_ALLOWLIST`` (CIDRs and/or host names) lets an operator reach a receiver inside the network.
Callers check at registration (a clear 422) and the transport checks again on every request, so an address that
became internal, or an allowlist entry removed since, stops the request before anything is sent.
"""

from __future__ import annotations

import asyncio
import contextvars
import ipaddress
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpcore
import httpx

from server.internal_addresses import Allowlist, is_internal, parse_allowlist

if TYPE_CHECKING:
    from server.settings import Settings

ALLOWLIST_HINT = "VOXLANE_OUTBOUND_ALLOWLIST can allow it"


class OutboundRefused(Exception):
    """A URL the server will not call. ``reason``: ``url`` (not an http(s) URL it accepts), ``internal`` (an
    address inside the network) or ``unresolvable`` (the host name has no address now)."""

    def __init__(self, message: str, reason: str, address: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.address = address  # for the server's log only: a user is not told what an internal name resolves to

    @property
    def code(self) -> str:
        """The API error code for it."""
        return "URL_UNRESOLVABLE" if self.reason == "unresolvable" else "URL_NOT_ALLOWED"


# ---------------------------------------------------------------- checking a URL


@dataclass(frozen=True)
class Target:
    """A checked URL: where its request may connect, and nowhere else."""

    url: httpx.URL
    host: str  # as the connection pool names it (ASCII, IPv6 without brackets)
    port: int
    addresses: tuple[str, ...]  # every address the host resolved to, all checked, in the resolver's order


def parse_url(url: str | httpx.URL) -> httpx.URL:
    """The URL as httpx will send it (one parser decides what is checked and what is called)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        raise OutboundRefused("not a valid URL", "url") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise OutboundRefused("only absolute http:// or https:// URLs are called", "url")
    if parsed.userinfo:
        raise OutboundRefused("a URL with user:password@ is not accepted (webhooks are signed instead)", "url")
    return parsed


async def resolve(host: str, port: int) -> tuple[str, ...]:
    """Every address of ``host`` (one lookup, in a worker thread: getaddrinfo blocks)."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise OutboundRefused(f"cannot resolve {host!r}: {getattr(exc, 'strerror', None) or exc}",
                              "unresolvable") from None
    addresses = tuple(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise OutboundRefused(f"cannot resolve {host!r}: no address", "unresolvable")
    return addresses


class OutboundGuard:
    """Checks URLs against the rule above and ``VOXLANE_OUTBOUND_ALLOWLIST`` as the settings hold it now."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def allowlist(self) -> Allowlist:
        return parse_allowlist(self.settings.outbound_allowlist or "")

    async def check(self, url: str | httpx.URL) -> Target:
        """The :class:`Target` to connect to, or :class:`OutboundRefused`."""
        parsed = parse_url(url)
        host = parsed.raw_host.decode("ascii")
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            async with asyncio.timeout(self.settings.webhook_timeout):
                addresses = await resolve(host, port)
        except TimeoutError:
            raise OutboundRefused(f"cannot resolve {host!r}: no answer in time", "unresolvable") from None
        allow = self.allowlist
        if not allow.allows_host(host):
            for text in addresses:
                address = ipaddress.ip_address(text)
                if is_internal(address) and not allow.allows_address(address):
                    literal = _is_literal(host)
                    what = f"{host} is an internal address" if literal else f"{host} resolves to an internal address"
                    raise OutboundRefused(f"{what} (loopback, private, link-local, ...), which the server does not"
                                          f" call; {ALLOWLIST_HINT}", "internal", text)
        return Target(parsed, host, port, addresses)


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------- connecting only where it was checked


_PINNED: contextvars.ContextVar[Target | None] = contextvars.ContextVar("voxlane_outbound_target", default=None)
"""The target of the request being sent in this task: the connection pool connects in the requesting task."""


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Opens a connection only to an address of the checked :class:`Target` of the request being sent.

    httpcore hands the URL's host name to ``connect_tcp`` (and keeps it for TLS); this backend dials the checked
    addresses instead of resolving the name again. A connection without a target is refused: fail closed."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,  # noqa: ASYNC109 - httpcore's
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        target = _PINNED.get()
        if target is None or (target.host, target.port) != (host, port):
            raise httpcore.ConnectError(f"no checked address for {host}:{port}: not connecting")
        error: Exception | None = None
        for address in target.addresses:
            try:
                return await self._inner.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                                     socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(self, path: str, timeout: float | None = None,  # noqa: ASYNC109 - httpcore's
                                  socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("outbound requests use TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncBaseTransport):
    """httpx's own transport (HTTP/1.1, pooling, TLS, error mapping), checking every request first and connecting
    through :class:`PinnedBackend`. Never uses proxies from the environment (they would do the connecting)."""

    def __init__(self, guard: OutboundGuard, limits: httpx.Limits | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.guard = guard
        limits = limits or httpx.Limits(max_connections=32, max_keepalive_connections=8)
        self._http = httpx.AsyncHTTPTransport(trust_env=False, limits=limits)
        # httpx (0.28) takes no network backend, so its pool is replaced by the same pool with ours.
        assert isinstance(self._http._pool, httpcore.AsyncConnectionPool), "httpx changed its transport"
        self._http._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context or httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections, max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=PinnedBackend())

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        target = await self.guard.check(request.url)
        token = _PINNED.set(target)
        try:
            return await self._http.handle_async_request(request)
        finally:
            _PINNED.reset(token)

    async def aclose(self) -> None:
        await self._http.aclose()


def guarded_client(guard: OutboundGuard, ssl_context: ssl.SSLContext | None = None, **kwargs: Any) -> httpx.AsyncClient:
    """An httpx client for users' URLs: guarded, pinned, no redirects, no proxies or netrc from the environment.
    Requests raise :class:`OutboundRefused` (before anything is sent) for a URL the guard refuses.
    ``ssl_context``: whom to trust (default: the public CAs), e.g. an operator's internal CA."""
    return httpx.AsyncClient(transport=GuardedTransport(guard, ssl_context=ssl_context), follow_redirects=False,
                             trust_env=False, **kwargs)
