"""The settings of background work and what feeds it: a node's roles (jobs, live), its lanes of workers, job
attempts and leases, the signed kiosk upload URLs and per-address and per-project rates, and webhook deliveries
with the internal addresses they may reach."""

from __future__ import annotations

from server.internal_addresses import parse_allowlist
from server.settings.base import reported_as, setting, settings_group

__all__ = ["JobSettings", "check_jobs"]


@settings_group
class JobSettings:
    jobs: str = setting("on", "whether 'voxlane serve' also takes jobs (transcribing recorded files,"
        " merges, summaries, webhooks) besides the API and live streams; off: an API node, with 'voxlane"
        " worker' nodes taking them", ("on", "off"))
    live: str = setting("on", "whether 'voxlane serve' takes live audio (WebSocket, WebRTC, Realtime)"
        " and answers the routes that transcribe while the caller waits; off, with VOXLANE_JOBS=off,"
        " the node loads no model", ("on", "off"))
    event_workers: int = setting(8, "merges, summaries and webhook deliveries a node that takes jobs runs at once (a"
        " lane of their own: a long transcription never holds them up)", lo=1, hi=256)
    job_max_attempts: int = setting(3, "attempts a job gets (an error, or a node that died running it, uses one) before"
        " it is given up and its transcript or chunk marked failed", lo=1, hi=100)
    job_lease_seconds: float = setting(10.0, "PostgreSQL job queue: a node whose heartbeat (every fifth of this) stops"
        " for this long is dead, and its running jobs run again elsewhere", lo=2, hi=3600)
    job_stall_seconds: float = setting(900.0, "a running job that shows no progress for this long (a hung decode or"
        " read on a node that is otherwise alive) is cancelled and counted as a failed attempt", lo=5, hi=86400)
    upload_url_ttl: int = setting(900, "seconds a signed kiosk chunk upload URL stays valid", lo=10, hi=7 * 86400)
    upload_url_rate: int = setting(40, "get-upload-url requests allowed per minute per conversation", lo=1, hi=100000)
    rate_per_address: int = setting(600, "participant API requests allowed per minute per client address (the"
        " connection's peer; behind a proxy, as uvicorn's --forwarded-allow-ips resolves it)", lo=1, hi=1000000)
    rate_per_project: int = setting(1200, "conversation starts and get-upload-url requests allowed per minute per"
        " project, whatever the conversation", lo=1, hi=1000000)
    max_open_conversations: int = setting(1000, "unfinished conversations a project may have (those active in the last"
        " 24 h); starting one more answers 429", lo=1, hi=10000000)
    webhook_retry_base: float = setting(10.0, "seconds before a failed webhook delivery is"
        " retried; doubles per attempt", lo=0.05, hi=3600)
    webhook_max_attempts: int = setting(10, "attempts before a webhook delivery is marked failed", lo=1, hi=100)
    webhook_timeout: float = setting(10.0, "seconds a webhook receiver has to answer one delivery", lo=0.5, hi=300)
    outbound_allowlist: str = setting("", "comma-separated CIDRs and/or host names that webhooks (and other URLs the"
        " server calls for a user) may reach although they are internal (loopback, private, link-local, ...)")


def check_jobs(settings: JobSettings) -> None:
    """Raises ``SettingsError`` naming the setting that is wrong."""
    if settings.outbound_allowlist:
        with reported_as("VOXLANE_OUTBOUND_ALLOWLIST"):
            parse_allowlist(settings.outbound_allowlist)
