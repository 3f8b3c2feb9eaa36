"""Signed URLs: kiosk chunk uploads, and the links a participant is given (unsubscribe)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass


@dataclass
class UploadSigner:
    """HMAC-signed, expiring URLs for kiosk chunk uploads (the server's stand-in for presigned S3 URLs), and
    signed links that act on one thing for whoever holds them (a participant's unsubscribe link)."""

    secret: bytes

    def sign(self, conversation_id: str, key: str, expires: int) -> str:
        msg = f"PUT\n{conversation_id}\n{key}\n{expires}".encode()
        return hmac.new(self.secret, msg, hashlib.sha256).hexdigest()

    def verify(self, conversation_id: str, key: str, expires: int, signature: str) -> bool:
        # bytes, not str: compare_digest raises TypeError on a str with non-ASCII characters (a forged URL's)
        return hmac.compare_digest(self.sign(conversation_id, key, expires).encode(),
                                   signature.encode("utf-8", "surrogatepass"))

    def sign_link(self, action: str, subject: str) -> str:
        """A link's signature: ``action`` on ``subject`` (a conversation id), for as long as the secret lasts (an
        unsubscribe link in a mail must work when it is read)."""
        return hmac.new(self.secret, f"LINK\n{action}\n{subject}".encode(), hashlib.sha256).hexdigest()

    def verify_link(self, action: str, subject: str, signature: str) -> bool:
        return hmac.compare_digest(self.sign_link(action, subject).encode(),
                                   signature.encode("utf-8", "surrogatepass"))
