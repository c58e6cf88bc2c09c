"""PKCE (RFC 7636, S256) and the ``state`` value of the authorization code flow."""

from __future__ import annotations

import base64
import hashlib
import secrets


def verifier() -> str:
    """64 characters of the unreserved set (RFC 7636 section 4.1 asks for 43 to 128)."""
    return secrets.token_urlsafe(48)


def challenge(code_verifier: str) -> str:
    """BASE64URL(SHA256(verifier)) without padding (section 4.2, S256)."""
    digest = hashlib.sha256(code_verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def state() -> str:
    return secrets.token_urlsafe(24)
