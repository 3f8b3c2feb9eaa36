"""The node's one Redis client (``VOXLANE_REDIS_URL``): made and closed by the composition root, shared by
everything on this node that uses Redis (live fan-out today; leases and shared rate limits next).

Commands fail fast (a 2 s connect timeout, one quick retry) because each user has its own answer to Redis being
away: fan-out buffers its appends and retries them in order, and its reader reconnects with backoff. redis-py's
default (ten retries, up to a second apart) would hold each of them for seconds before they could answer.
Nothing here echoes the URL: it may hold a password (logs get :func:`describe`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from server.node import node_id

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("voxlane.redis")

SCHEMES = ("redis", "rediss", "unix")
CONNECT_TIMEOUT_S = 2.0
SOCKET_TIMEOUT_S = 5.0
"""Longer than any blocking read a user makes (fan-out's XREAD blocks 2 s); a Redis that vanished without
closing the connection (a network partition) is noticed within this."""


def check_url(url: str) -> None:
    """Raises ``ValueError`` saying what is wrong with ``url``, without repeating it."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError("not a valid URL (is the port a number between 0 and 65535?)") from None
    if parts.scheme not in SCHEMES:
        raise ValueError("expected a redis://host:port/db, rediss://host:port/db or unix:///path/to.sock URL")
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError("a unix:// URL needs the socket's path (unix:///run/redis.sock)")
        return
    db = parts.path.lstrip("/")
    if db and not db.isdigit():
        raise ValueError("the path of a redis:// URL is the database number (redis://host:6379/0)")
    if port == 0:
        raise ValueError("port 0 is not a Redis port")
    from redis.asyncio import ConnectionPool  # here: settings are validated before anything imports redis

    try:
        ConnectionPool.from_url(url)  # what redis-py itself refuses (it connects nothing yet)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"redis-py cannot use it ({type(exc).__name__})") from None


def describe(url: str) -> str:
    """The URL without its user and password, for logs."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    return f"{parts.scheme}://{parts.hostname or 'localhost'}:{parts.port or 6379}{parts.path or ''}"


def connect(url: str) -> Redis:
    """A client on a connection pool; it connects on first use, so a Redis that is down does not stop a start."""
    from redis.asyncio import Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialWithJitterBackoff

    return Redis.from_url(url, decode_responses=True, socket_connect_timeout=CONNECT_TIMEOUT_S,
                          socket_timeout=SOCKET_TIMEOUT_S, socket_keepalive=True, health_check_interval=30,
                          retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.1), 1),
                          client_name=f"voxlane:{node_id()}")


async def reachable(client: Redis, url: str, within: float = 3.0) -> bool:
    """One PING at start: a Redis that is down is logged, not fatal (fan-out catches up once it is back)."""
    from redis.exceptions import RedisError

    try:
        await asyncio.wait_for(client.ping(), within)
    except (RedisError, OSError, TimeoutError) as exc:
        log.warning("Redis at %s is not reachable now (%s); live messages reach other nodes once it is",
                    describe(url), type(exc).__name__)
        return False
    return True
