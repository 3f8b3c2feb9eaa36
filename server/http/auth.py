"""Access control: who is calling (JWT or API key), what they may do (scopes), what they may see (owners).

Two modes (``VOXLANE_AUTH_MODE``):

* ``public``: no token needed; an anonymous caller has every scope but ``transcripts:unredacted`` and sees the
  rows without an owner.
  A caller that does send a voxlane token is that user (a bad one is still a 401); a bearer that is not
  shaped like one (the OpenAI SDK's placeholder key) is ignored.
* ``private``: every ``/v1`` and ``/api`` route except the participant API (the project id is the
  capability) needs ``Authorization: Bearer <token>``; ``/health`` and the web client stay open.

Tokens are JWTs (HS256 with ``VOXLANE_JWT_SECRET``; RS256/ES256 with ``VOXLANE_JWT_PUBLIC_KEY``, a PEM or a
JWKS file) or API keys made by ``voxlane token create`` (stored as SHA-256 hashes, shown once). A JWT must
carry ``exp`` and may live at most ``VOXLANE_JWT_MAX_LIFETIME``; with an outside key it must also carry the
``aud`` of ``VOXLANE_JWT_AUDIENCE`` (required then), since the identity provider signs other services' tokens too.

:class:`AuthMiddleware` (pure ASGI, so streaming bodies and WebSockets pass untouched) authenticates every
request, checks the route's scope (:func:`required_scope`), and for any ``/v1/transcripts*/{id}`` path checks
that the transcript exists *and* belongs to the caller: another user's transcript is a 404, never a 403.
Route handlers read the caller with :func:`principal`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

import jwt
from starlette.requests import HTTPConnection
from starlette.types import Receive, Scope, Send

from protocol.close import CLOSE_FORBIDDEN, CLOSE_NOT_FOUND, CLOSE_UNAUTHORIZED
from server.http.errors import ApiError, error_response
from server.http.jwt_keys import load_public_keys
from server.http.meeting_tokens import MEETING_TOKEN_PREFIX, MeetingGrant, MeetingTokens, check_meeting_path
from server.http.middleware import ConnectionMiddleware
from server.http.scopes import (  # noqa: F401 (re-exported: routes import the scopes from here)
    AUTHENTICATED,
    DEFAULT_JWT_SCOPES,
    EXPORT,
    MEETING_JOIN,
    PROJECTS_ADMIN,
    READ,
    SCOPES,
    UNREDACTED,
    WRITE,
    is_open,
    required_scope,
    transcript_id_in,
)
from server.settings import JWT_AUDIENCE_REQUIRED, Settings, SettingsError

log = logging.getLogger("voxlane.auth")

"""A route any valid token may call, whatever its scopes (the API description)."""

API_KEY_PREFIX = "vxl_"
ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384")
JWT_LEEWAY = 30
"""Seconds of clock skew allowed between this server and a token's issuer (``exp``, ``nbf``, ``iat``)."""
_KEY_SHAPE = re.compile(r"^vxl_(?P<id>[0-9a-f]{12})_(?P<secret>[A-Za-z0-9_-]{20,})$")


@dataclass(frozen=True)
class Principal:
    user: str | None
    scopes: frozenset[str]
    via: str = "anonymous"  # anonymous | jwt | api_key | meeting
    key_id: str | None = None
    meeting: MeetingGrant | None = None  # a meeting token: that meeting's endpoints only, as its participant

    def has(self, scope: str) -> bool:
        return scope == AUTHENTICATED or scope in self.scopes

    def can_see(self, owner: str | None) -> bool:
        """A row belongs to its creator. Rows without an owner (made anonymously in public mode) are what an
        anonymous caller sees; a user sees only their own."""
        return owner == self.user

    @property
    def owner_filter(self) -> str | None:
        """The ``owner`` argument for store listings: exactly what this caller may see."""
        return self.user


ANONYMOUS = Principal(user=None, scopes=frozenset(SCOPES) - {UNREDACTED})
NOBODY = Principal(user=None, scopes=frozenset())
"""An unauthenticated caller in private mode, on a route where a token is optional (a meeting's join)."""


class AuthError(ApiError):
    def __init__(self, message: str, code: str = "UNAUTHORIZED") -> None:
        super().__init__(401, message, code, headers={"WWW-Authenticate": 'Bearer realm="voxlane"'})


# ---------------------------------------------------------------- API keys


def generate_api_key() -> tuple[str, str, str]:
    """(key id, the key itself, its hash). The key is shown once; only the hash is stored."""
    key_id = secrets.token_hex(6)
    token = f"{API_KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    return key_id, token, hash_api_key(token)


def hash_api_key(token: str) -> str:
    # 256 random bits need no slow hash: nothing about them can be guessed offline.
    return hashlib.sha256(token.encode()).hexdigest()


def parse_scopes(values: list[str] | tuple[str, ...] | str) -> list[str]:
    items = values.replace(",", " ").split() if isinstance(values, str) else [
        s for v in values for s in v.replace(",", " ").split()]
    unknown = [s for s in items if s not in SCOPES]
    if unknown:
        raise ValueError(f"unknown scope {unknown[0]!r}; expected some of {', '.join(SCOPES)}")
    return sorted(set(items), key=SCOPES.index)


def looks_like_ours(token: str) -> bool:
    """A voxlane API key or a JWT. In public mode any other bearer is ignored: clients such as the OpenAI SDK
    always send a key (``api_key="anything"``) where no token is needed, and the caller is then anonymous; a
    token that looks like ours and fails is still a 401, so a mistyped key is not silently anonymous."""
    return token.startswith((API_KEY_PREFIX, MEETING_TOKEN_PREFIX)) or token.count(".") == 2


class Authenticator:
    """Turns a bearer token into a :class:`Principal` or raises :class:`AuthError`."""

    CACHE_SECONDS = 10.0

    def __init__(self, settings: Settings, store: Any, meetings: MeetingTokens | None = None) -> None:
        self.settings = settings
        self.store = store
        self.meetings = meetings
        self.public_keys = load_public_keys(settings.jwt_public_key) if settings.jwt_public_key else {}
        if self.public_keys and not settings.jwt_audience:  # also when Settings were built without validate()
            raise SettingsError(JWT_AUDIENCE_REQUIRED)
        self._key_cache: dict[str, tuple[float, Principal]] = {}
        self._touched: dict[str, float] = {}

    @property
    def private(self) -> bool:
        return self.settings.auth_mode == "private"

    async def authenticate(self, token: str) -> Principal:
        if token.startswith(API_KEY_PREFIX):
            return await self._api_key(token)
        if token.startswith(MEETING_TOKEN_PREFIX) and self.meetings is not None:
            return self._meeting(token)
        if looks_like_ours(token):
            return self._jwt(token)
        raise AuthError("malformed bearer token: expected a JWT or a voxlane API key", "INVALID_TOKEN")

    def _jwt(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("malformed JWT", "INVALID_TOKEN") from None
        alg = header.get("alg")
        if alg == "HS256":
            if not self.settings.jwt_secret:
                raise AuthError("HS256 tokens are not accepted by this server", "INVALID_TOKEN")
            key: Any = self.settings.jwt_secret
        elif alg in ASYMMETRIC_ALGORITHMS:
            if not self.public_keys:
                raise AuthError(f"{alg} tokens are not accepted by this server", "INVALID_TOKEN")
            kid = header.get("kid")
            key = self.public_keys.get(kid) if kid in self.public_keys else (
                next(iter(self.public_keys.values())) if len(self.public_keys) == 1 else None)
            if key is None:
                raise AuthError("JWT signed with an unknown key id", "INVALID_TOKEN")
        else:
            raise AuthError(f"unsupported JWT algorithm {alg!r}", "INVALID_TOKEN")
        aud, iss = self.settings.jwt_audience, self.settings.jwt_issuer
        try:
            claims = jwt.decode(token, key, algorithms=[alg], audience=aud, issuer=iss, leeway=JWT_LEEWAY,
                                options={"require": ["sub", "exp"], "verify_aud": aud is not None})
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired", "TOKEN_EXPIRED") from None
        except jwt.MissingRequiredClaimError as exc:
            hint = " (a token that never expires is not accepted)" if exc.claim == "exp" else ""
            raise AuthError(f"invalid token: it has no {exc.claim!r} claim{hint}", "INVALID_TOKEN") from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {exc}", "INVALID_TOKEN") from None
        self._check_lifetime(claims)
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise AuthError("invalid token: 'sub' must be a non-empty string", "INVALID_TOKEN")
        raw = claims.get("scope", claims.get("scopes", claims.get("scp", [])))
        items = raw.split() if isinstance(raw, str) else [s for s in raw if isinstance(s, str)] if isinstance(
            raw, list) else []
        scopes = frozenset(s for s in items if s in SCOPES) or frozenset(DEFAULT_JWT_SCOPES)
        return Principal(user=sub, scopes=scopes, via="jwt")

    def _meeting(self, token: str) -> Principal:
        assert self.meetings is not None
        try:
            grant = self.meetings.verify(token)
        except ValueError as exc:  # MeetingTokenError
            raise AuthError(str(exc), "TOKEN_EXPIRED" if "expired" in str(exc) else "INVALID_TOKEN") from None
        scopes = frozenset((READ, WRITE) if grant.publishes else (READ,))
        return Principal(user=grant.owner, scopes=scopes, via="meeting", meeting=grant)

    def _check_lifetime(self, claims: dict[str, Any]) -> None:
        """A stolen token is only worth its remaining lifetime, so a token minted to live longer than
        ``VOXLANE_JWT_MAX_LIFETIME`` is refused outright (measured from ``iat``, or from now without one)."""
        iat = claims.get("iat")
        if isinstance(iat, int | float) and not isinstance(iat, bool):
            lifetime, slack = claims["exp"] - iat, 0
        else:  # without iat only what is left can be measured; allow for the clocks' skew
            lifetime, slack = claims["exp"] - time.time(), JWT_LEEWAY
        limit = self.settings.jwt_max_lifetime
        if lifetime > limit + slack:
            raise AuthError(f"invalid token: it lives {lifetime:.0f} s, longer than this server accepts ({limit} s,"
                            " VOXLANE_JWT_MAX_LIFETIME)", "INVALID_TOKEN")

    async def _api_key(self, token: str) -> Principal:
        digest = hash_api_key(token)
        now = time.monotonic()
        cached = self._key_cache.get(digest)
        if cached is not None and now - cached[0] < self.CACHE_SECONDS:
            return cached[1]
        m = _KEY_SHAPE.match(token)
        row = await self.store.get_api_key(m.group("id")) if m else None
        if row is None or not hmac.compare_digest(row["key_hash"], digest):
            raise AuthError("unknown API key", "INVALID_TOKEN")
        if row.get("revoked_at"):
            raise AuthError("API key revoked", "TOKEN_REVOKED")
        principal = Principal(user=row.get("user") or f"apikey:{row['id']}", scopes=frozenset(row["scopes"]),
                              via="api_key", key_id=row["id"])
        self._key_cache[digest] = (now, principal)
        if now - self._touched.get(row["id"], -1e9) > 60:
            self._touched[row["id"]] = now
            await self.store.touch_api_key(row["id"])
        return principal

    def forget_cached_keys(self) -> None:
        self._key_cache.clear()


def _allows_query_token(scope: Scope) -> bool:
    """``?token=`` for clients that cannot set headers: WebSockets and <audio> elements."""
    return scope["type"] == "websocket" or (
        scope.get("method") in ("GET", "HEAD") and scope["path"].endswith(("/download", "/stream")))


OPENAI_KEY_PROTOCOL = "openai-insecure-api-key."
DEEPGRAM_KEY_PROTOCOL = "token"


def bearer_token(scope: Scope) -> str | None:
    """The caller's token from ``Authorization: Bearer`` or ``Token`` (or ``?token=`` where allowed, removed from the
    query string so it reaches no access log)."""
    for name, value in scope.get("headers") or ():
        if name == b"authorization":
            kind, _, token = value.decode("latin-1").partition(" ")
            if kind.lower() in ("bearer", "token") and token.strip():  # Token: what Deepgram's clients send
                return token.strip()
            raise AuthError("the Authorization header must be 'Bearer <token>' (or 'Token <token>')")
    if scope["type"] == "websocket":  # browsers cannot set headers: the key comes as a subprotocol
        for name, value in scope.get("headers") or ():
            if name == b"sec-websocket-protocol":
                protocols = [p.strip() for p in value.decode("latin-1").split(",")]
                for proto in protocols:
                    key = proto.removeprefix(OPENAI_KEY_PROTOCOL)
                    if key != proto and key:
                        return key
                if len(protocols) == 2 and protocols[0] == DEEPGRAM_KEY_PROTOCOL and protocols[1]:
                    return protocols[1]  # Deepgram's browser clients: ["token", <key>]
    if _allows_query_token(scope) and scope.get("query_string"):
        pairs = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        token = next((v for k, v in pairs if k == "token"), None)
        if token is not None:
            scope["query_string"] = urlencode([(k, v) for k, v in pairs if k != "token"]).encode("latin-1")
            return token or None
    return None


def principal(conn: HTTPConnection) -> Principal:
    """The caller, as the middleware established it."""
    return conn.scope.get("state", {}).get("principal") or ANONYMOUS


def require(conn: HTTPConnection, scope: str) -> Principal:
    p = principal(conn)
    if not p.has(scope):
        raise ApiError(403, f"this token lacks the {scope!r} scope", "INSUFFICIENT_SCOPE", {"required": scope})
    return p


def can_publish(conn: HTTPConnection) -> bool:
    """Whether a WebSocket caller may send audio (``transcripts:write``), not only listen."""
    return principal(conn).has(WRITE)


class AuthMiddleware(ConnectionMiddleware):
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        rest = getattr(scope["app"].state, "rest", None) if "app" in scope else None
        path = scope["path"]
        websocket = scope["type"] == "websocket"
        try:
            needed = required_scope(scope.get("method", "GET"), path, websocket)
            if needed is None and rest is not None and MEETING_JOIN.match(path):
                scope.setdefault("state", {})["principal"] = await self._optional(scope, rest.authenticator)
            if needed is not None and rest is not None:
                who = await self._identify(scope, rest.authenticator)
                scope.setdefault("state", {})["principal"] = who
                if who.meeting is not None:
                    check_meeting_path(who.meeting, scope.get("method", "GET"), path)
                if not who.has(needed):
                    raise ApiError(403, f"this token lacks the {needed!r} scope", "INSUFFICIENT_SCOPE",
                                   {"required": needed})
                tid = transcript_id_in(path)
                if tid is not None:
                    row = await rest.store.get_transcript(tid)
                    if row is None or not who.can_see(row.get("owner")):
                        raise ApiError(404, "transcript not found", "TRANSCRIPT_NOT_FOUND", {"transcript_id": tid})
                    scope["state"]["transcript"] = row  # handlers take it from server.http.visibility
        except ApiError as exc:
            await self._reject(scope, receive, send, exc)
            return
        await self.app(scope, receive, send)

    @staticmethod
    async def _identify(scope: Scope, authenticator: Authenticator) -> Principal:
        token = bearer_token(scope)
        if token is not None and (authenticator.private or looks_like_ours(token)):
            return await authenticator.authenticate(token)
        if authenticator.private:
            raise AuthError("this server needs 'Authorization: Bearer <token>'"
                            + (" (or ?token=)" if _allows_query_token(scope) else ""))
        return ANONYMOUS

    @staticmethod
    async def _optional(scope: Scope, authenticator: Authenticator) -> Principal:
        """The caller where a token is optional: with no token, in private mode, nobody (no scopes at all)."""
        token = bearer_token(scope)
        if token is not None and (authenticator.private or looks_like_ours(token)):
            return await authenticator.authenticate(token)
        return NOBODY if authenticator.private else ANONYMOUS

    @staticmethod
    async def _reject(scope: Scope, receive: Receive, send: Send, exc: ApiError) -> None:
        if scope["type"] == "http":
            response = error_response(exc.status_code, exc.code, exc.message, exc.details, exc.headers)
            await response(scope, receive, send)
            return
        # WebSocket: accept, then close with a code the client can read (4401/4403/4404) and the reason.
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        code = {401: CLOSE_UNAUTHORIZED, 403: CLOSE_FORBIDDEN, 404: CLOSE_NOT_FOUND}.get(exc.status_code, 1008)
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": code, "reason": exc.message[:120]})

