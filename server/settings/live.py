"""The settings of live streams: how speech is cut into segments and committed, speakers told apart, peers kept
alive and bounded, and how many streams a node admits (its capacity, per token and address, WebRTC offers)."""

from __future__ import annotations

from server.settings.base import setting, settings_group

__all__ = ["LiveSettings"]


@settings_group
class LiveSettings:
    vad_threshold: float = setting(0.35, "speech probability that starts speech", lo=0.05, hi=0.95)
    vad_min_silence_ms: int = setting(800, "a pause this long ends a segment", lo=100, hi=10000)
    pause_commit_ms: int = setting(250, "a pause this long makes the words before it final", lo=50, hi=5000)
    pause_settle_ms: int = setting(350, "a pause this long makes final even the words a pause commit left open (an"
        " unsure word, a stream's first short line), as the segment's final would read them", lo=50, hi=10000)
    pause_commit_confidence: float = setting(0.5, "a pause commit leaves a word this unsure (and not yet agreed on) to"
        " a later reading, a pause of VOXLANE_PAUSE_SETTLE_MS or the segment's final", lo=0, hi=1)
    min_step_ms: int = setting(500, "least new audio before a live hypothesis is refreshed", lo=100, hi=10000)
    first_step_ms: int = setting(500, "least audio before a live segment's first"
        " reading (its first partial)", lo=100, hi=10000)
    window_seconds: float = setting(20.0, "decode window beyond which committed audio is trimmed off", lo=2, hi=30)
    segment_close_seconds: float = setting(6.0, "a pause of VOXLANE_PAUSE_COMMIT_MS closes a segment this long once its"
        " words are final (at a sentence end it closes whatever its length; 0: sentence ends only)", lo=0, hi=120)
    sentence_split_seconds: float = setting(0.0, "a segment this long closes after a final word that ends a"
        " sentence even when the speaker goes on without a pause (abutting turns, crosstalk; 0: at every such"
        " sentence end; -1: only at a pause)", lo=-1, hi=120)
    max_segment_seconds: float = setting(20.0, "segments longer than this are split", lo=3, hi=120)
    diarization: str = setting("on", "label speakers of mixed (non-participant)"
        " live streams and uploads", ("on", "off"))
    max_speakers: int = setting(8, "most speakers diarization tells apart in one stream", lo=1, hi=64)
    speaker_threshold: float = setting(0.3, "cosine distance below which voice clusters merge"
        " (lower: more speakers)", lo=0.05, hi=0.9)
    ping_interval: float = setting(15.0, "seconds between ping messages (0: off)", lo=0, hi=3600)
    idle_timeout: float = setting(60.0, "a WebSocket peer that answers no WebSocket ping for this long (a dead or"
        " half-open connection) is closed; pings go out every half of it", lo=2, hi=86400)
    publisher_idle_timeout: float = setting(120.0, "a started live stream that sends no audio for this long is finished"
        " as if it had sent 'stop' (finals stored); pause still sends audio (0: never)", lo=0, hi=86400)
    send_timeout: float = setting(20.0, "a subscriber whose socket takes no message for this long (it stopped reading)"
        " is disconnected; its queue of pending messages is capped too", lo=1, hi=3600)
    status_interval: float = setting(2.0, "seconds between status/lag reports while a"
        " stream is live (0: off)", lo=0, hi=3600)
    max_frame_kb: int = setting(256, "largest binary audio frame a live WebSocket accepts, in KiB; a bigger one gets a"
        " MESSAGE_TOO_LARGE error and the stream goes on", lo=4, hi=8192)
    max_audio_lead_seconds: float = setting(10.0, "how far a live stream's audio may run ahead of the wall clock since"
        " it started: beyond it a WebSocket is not read until real time catches up, and WebRTC frames are dropped (0:"
        " no limit, for trusted clients that send recordings faster than real time)", lo=0, hi=86400)
    max_live_streams: int = setting(0, "most live audio streams at once, whatever the measured capacity (0: the"
        " measured capacity alone decides)", lo=0, hi=100000)
    latency_target_s: float = setting(2.0, "a new live stream is refused (OVERLOADED) when the inference loop's"
        " measured decode times say the admitted streams' commits would take longer than this", lo=0.01, hi=600)
    max_streams_per_token: int = setting(32, "most live streams one user or API key publishes"
        " at once (0: no limit)", lo=0, hi=100000)
    max_streams_per_address: int = setting(32, "most live streams one client address publishes"
        " at once (0: no limit)", lo=0, hi=100000)
    max_webrtc_offers: int = setting(16, "WebRTC offers being negotiated at once;"
        " more are answered 503", lo=1, hi=10000)
    max_concurrent_uploads: int = setting(8, "audio uploads being received at once; more are"
        " answered 429 (0: no limit)", lo=0, hi=10000)
    live_lease_seconds: float = setting(10.0, "with Redis: how long a node's hold on the transcripts it streams"
        " lasts unrenewed; a transcript whose node died is finished by another node this long after it died"
        " (plus a one-second sweep)", lo=2, hi=600)
    live_grace_seconds: float = setting(30.0, "with Redis: how long a transcript whose node died"
        " stays live without an owner, so that its publisher may reconnect to another node and go on,"
        " before a sweep finishes it", lo=0, hi=3600)
    live_part_seconds: float = setting(8.0, "on S3: how often a live recording's new audio goes to the bucket while the"
        " stream runs (a node that dies loses at most this much of it, and the audio on its way to disk)", lo=1, hi=600)
    ice_hosts: str = setting("", "comma-separated local addresses to gather WebRTC candidates on (default: all)")
    ice_servers: str = setting("", "comma-separated stun:/turn: URLs (turn:user:pass@host:port)")
