"""The settings that bound one client's share of a node: the sessions it holds open, what a session may send, and
how an address is grouped."""

from __future__ import annotations

from server.settings.base import setting, settings_group

__all__ = ["ClientLimitSettings"]


@settings_group
class ClientLimitSettings:
    ws_inbound_kb_per_s: int = setting(4096, "KiB per second one WebSocket session may send on average (a"
        " second's worth at once); beyond it the socket is not read until the budget refills, far above what"
        " real-time audio needs", lo=64, hi=1 << 20)
    ws_max_bad_messages: int = setting(32, "a WebSocket session that sends this many invalid messages within a minute"
        " is closed (1008) after an error saying so", lo=1, hi=100000)
    session_idle_timeout: float = setting(60.0, "a Realtime session that has sent no audio for this long"
        " (since it opened or since its last append) is closed; it holds one of its token's and address's"
        " stream slots (0: never)", lo=0, hi=86400)
    max_webrtc_offers_per_caller: int = setting(4, "WebRTC sessions one token or client address may have offered and"
        " not yet connected; more are answered 429", lo=1, hi=10000)
    ipv6_prefix_length: int = setting(64, "per-address limits count every IPv6 client of one network of this prefix"
        " length as one address (a host is usually given a whole /64)", lo=1, hi=128)
