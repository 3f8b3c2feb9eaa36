"""Signed upload URLs for kiosk chunks."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass


@dataclass
class UploadSigner:
    """HMAC-signed, expiring URLs for kiosk chunk uploads (the server's stand-in for presigned S3 URLs)."""

    secret: bytes

    def sign(self, conversation_id: str, key: str, expires: int) -> str:
        msg = f"PUT\n{conversation_id}\n{key}\n{expires}".encode()
        return hmac.new(self.secret, msg, hashlib.sha256).hexdigest()

    def verify(self, conversation_id: str, key: str, expires: int, signature: str) -> bool:
        # bytes, not str: compare_digest raises TypeError on a str with non-ASCII characters (a forged URL's)
        return hmac.compare_digest(self.sign(conversation_id, key, expires).encode(),
                                   signature.encode("utf-8", "surrogatepass"))
