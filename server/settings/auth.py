"""The settings of authentication: public or private mode, and the keys and claims a bearer JWT is checked
against; a private server without a key, or a provider's key without an audience, is refused at start."""

from __future__ import annotations

from server.settings.base import SettingsError, setting, settings_group

__all__ = ["JWT_AUDIENCE_REQUIRED", "AuthSettings", "check_auth"]

JWT_AUDIENCE_REQUIRED = ("VOXLANE_JWT_AUDIENCE is required when VOXLANE_JWT_PUBLIC_KEY is set: keys from an"
                         " identity provider also sign its tokens for other services, and only the 'aud' claim"
                         " tells which are meant for this one")


@settings_group
class AuthSettings:
    auth_mode: str = setting("public", "public: no token needed; private: bearer tokens", ("public", "private"))
    jwt_secret: str | None = setting(None, "HS256 secret for bearer tokens", secret=True)
    jwt_public_key: str | None = setting(None, "RS256/ES256 verification key: a PEM, a PEM file or a JWKS JSON file")
    jwt_audience: str | None = setting(None, "required 'aud' claim of bearer JWTs (default: not checked)")
    jwt_issuer: str | None = setting(None, "required 'iss' claim of bearer JWTs (default: not checked)")
    jwt_max_lifetime: int = setting(86400, "longest lifetime (exp - iat, or exp - now without iat) in seconds a bearer"
        " JWT may have; every JWT must carry 'exp'", lo=60, hi=30 * 86400)


def check_auth(settings: AuthSettings) -> None:
    """Raises ``SettingsError`` naming the setting that is missing."""
    if settings.auth_mode == "private" and not (settings.jwt_secret or settings.jwt_public_key):
        raise SettingsError("VOXLANE_JWT_SECRET (or VOXLANE_JWT_PUBLIC_KEY) is required when"
                            " VOXLANE_AUTH_MODE=private")
    if settings.jwt_public_key and not settings.jwt_audience:
        raise SettingsError(JWT_AUDIENCE_REQUIRED)
