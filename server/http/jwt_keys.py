"""The public keys outside JWTs are checked with (``VOXLANE_JWT_PUBLIC_KEY``): a PEM, a PEM file or a JWKS."""

from __future__ import annotations

import json
import os
from typing import Any

import jwt

from server.settings import SettingsError


def load_public_keys(value: str) -> dict[str | None, Any]:
    """``VOXLANE_JWT_PUBLIC_KEY``: PEM text, a PEM file, or a JWKS/JWK JSON file -> {kid: key}."""
    text = value
    if not value.lstrip().startswith(("-----BEGIN", "{")):
        try:
            with open(os.path.expanduser(value), encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise SettingsError(f"VOXLANE_JWT_PUBLIC_KEY: cannot read {value!r}: {exc.strerror}") from None
    try:
        if text.lstrip().startswith("{"):
            data = json.loads(text)
            jwks = (data.get("keys") if isinstance(data, dict) and "keys" in data else [data]) or []
            keys = {}
            for item in jwks:
                jwk = jwt.PyJWK(item)
                keys[item.get("kid")] = jwk.key
            if not keys:
                raise ValueError("the JWKS holds no keys")
            return keys
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        return {None: load_pem_public_key(text.encode())}
    except (ValueError, TypeError, jwt.PyJWKError, jwt.InvalidKeyError) as exc:
        raise SettingsError(f"VOXLANE_JWT_PUBLIC_KEY: not a usable public key or JWKS: {exc}") from None
