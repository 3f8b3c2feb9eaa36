"""Meeting capabilities: the keys in a meeting's room URLs, and the short-lived tokens ``join`` hands out.

A room URL carries a key that says what its holder may do in that meeting (``participant``, ``host`` or
``viewer``), like a Whereby room URL: whoever has the link joins, nobody needs an account. ``join`` turns a key
(or the owner's own token) into a meeting token: ``vxm_`` and a JWT signed with a secret of this deployment
(never the identity provider's), naming one meeting and one participant, living minutes. The auth middleware lets
such a token reach that meeting's WebSocket and WebRTC endpoints only, and pins the audio it publishes to its
participant, so a participant cannot speak under another one's name.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from typing import Any

import jwt

from server.http.errors import ApiError

MEETING_TOKEN_PREFIX = "vxm_"
ROLES = ("participant", "host", "viewer")
PUBLISHING_ROLES = ("participant", "host")
_AUDIENCE = "voxlane-meeting"
_MEETING_SCOPED = re.compile(r"^/v1/(?:transcripts_websocket/(?P<ws>[^/]+)|transcripts_webrtc/(?P<rtc>[^/]+)/"
                             r"(?:offer|answer)|transcripts/(?P<read>[^/]+)|meetings/(?P<meeting>[^/]+)(?P<end>/end)?)$")


class MeetingTokenError(ValueError):
    """The token is not a valid meeting token (expired, forged, malformed)."""


@dataclass(frozen=True)
class MeetingGrant:
    """What a meeting token allows: publishing as ``participant`` into meeting ``meeting_id`` (``owner`` owns its
    transcript); a host may also end the meeting."""

    meeting_id: str
    owner: str | None
    role: str
    participant: dict[str, Any]
    expires: int

    @property
    def publishes(self) -> bool:
        return self.role in PUBLISHING_ROLES


@dataclass(frozen=True)
class MeetingTokens:
    """Keys and tokens from one server secret (shared by every node through the store)."""

    secret: bytes

    def room_key(self, meeting_id: str, role: str) -> str:
        return hmac.new(self.secret, f"room-key\n{meeting_id}\n{role}".encode(), hashlib.sha256).hexdigest()[:32]

    def role_of(self, meeting_id: str, key: str) -> str | None:
        """The role a room key grants in this meeting (None: not a key of it)."""
        given = key.encode("utf-8", "surrogatepass")
        for role in ROLES:
            if hmac.compare_digest(self.room_key(meeting_id, role).encode(), given):
                return role
        return None

    def mint(self, grant: MeetingGrant) -> str:
        claims = {"aud": _AUDIENCE, "mtg": grant.meeting_id, "own": grant.owner, "role": grant.role,
                  "par": grant.participant, "exp": grant.expires, "iat": int(time.time())}
        return MEETING_TOKEN_PREFIX + jwt.encode(claims, self.secret, algorithm="HS256")

    def verify(self, token: str) -> MeetingGrant:
        try:
            claims = jwt.decode(token.removeprefix(MEETING_TOKEN_PREFIX), self.secret, algorithms=["HS256"],
                                audience=_AUDIENCE, leeway=30, options={"require": ["exp", "mtg", "role", "par"]})
        except jwt.ExpiredSignatureError:
            raise MeetingTokenError("meeting token expired: join again") from None
        except jwt.PyJWTError as exc:
            raise MeetingTokenError(f"invalid meeting token: {exc}") from None
        if claims["role"] not in ROLES or not isinstance(claims["par"], dict):
            raise MeetingTokenError("invalid meeting token")
        return MeetingGrant(meeting_id=str(claims["mtg"]), owner=claims.get("own"), role=claims["role"],
                            participant=claims["par"], expires=int(claims["exp"]))


def check_meeting_path(grant: MeetingGrant, method: str, path: str) -> None:
    """A meeting token reaches its meeting's live endpoints, reads its transcript and meeting, and (a host's) ends
    it; nothing else (403)."""
    m = _MEETING_SCOPED.match(path)
    target = m and (m.group("ws") or m.group("rtc") or m.group("read") or m.group("meeting"))
    allowed = m is not None and target == grant.meeting_id and bool(
        m.group("ws") or m.group("rtc") or (m.group("end") and method == "POST" and grant.role == "host")
        or (not m.group("end") and method in ("GET", "HEAD")))
    if not allowed:
        raise ApiError(403, "this meeting token only reaches its own meeting's live endpoints", "INSUFFICIENT_SCOPE",
                       {"meeting_id": grant.meeting_id})
