"""A sign-in's tokens as they are kept in the keychain (one JSON entry per provider), and what is read from a
token answer: expiry, the refresh margin, the account named by the ID token's claims."""

from __future__ import annotations

import base64
import time
from typing import Any

import msgspec

MAX_MARGIN_S = 60.0
MARGIN_SHARE = 0.1
"""refresh this share of a token's lifetime before it expires, at most MAX_MARGIN_S: a token that lives 2 s is
refreshed 0.2 s before its end, not again at once"""


class StoredTokens(msgspec.Struct, omit_defaults=True):
    access_token: str
    token_host: str
    """the host of the token endpoint that issued them: another endpoint host means sign in again"""
    hosts: list[str]
    """the hosts requests with the access token may go to (the provider's base URL's when signed in)"""
    obtained_at: float
    """unix time of the answer that gave ``access_token``"""
    refresh_token: str | None = None
    expires_at: float | None = None
    """unix time; None: the server gave no lifetime (GitHub's tokens do not expire)"""
    account: str | None = None
    account_id: str | None = None
    """ChatGPT: the ``chatgpt_account_id`` claim, sent as ``chatgpt-account-id``"""

    def due(self, now: float | None = None) -> bool:
        """Whether to refresh now: within the margin of expiry (a share of the lifetime, capped)."""
        if self.expires_at is None:
            return False
        now = time.time() if now is None else now
        margin = min(MARGIN_SHARE * max(self.expires_at - self.obtained_at, 0.0), MAX_MARGIN_S)
        return now >= self.expires_at - margin


def from_answer(answer: dict[str, Any], token_host: str, hosts: list[str],
                previous: StoredTokens | None = None) -> StoredTokens:
    """Tokens from a token endpoint's answer; a refresh answer without a new refresh token keeps the old one."""
    now = time.time()
    expires_in = answer.get("expires_in")
    expires_at = now + float(expires_in) if isinstance(expires_in, int | float) and expires_in > 0 else None
    if expires_at is None and isinstance(expires_in, str) and expires_in.isdigit():
        expires_at = now + int(expires_in)
    refresh = answer.get("refresh_token")
    claims = id_token_claims(answer.get("id_token"))
    account, account_id = account_of(claims)
    return StoredTokens(
        access_token=answer["access_token"],
        token_host=token_host,
        hosts=hosts,
        obtained_at=now,
        refresh_token=refresh if isinstance(refresh, str) and refresh else previous.refresh_token if previous else None,
        expires_at=expires_at,
        account=account or (previous.account if previous else None),
        account_id=account_id or (previous.account_id if previous else None),
    )


def id_token_claims(id_token: object) -> dict[str, Any]:
    """The claims of an ID token (a JWT's middle part), read only: it came straight from the issuer over the
    connection the client opened, so its signature is not what tells us who signed in (OIDC Core 3.1.3.7)."""
    if not isinstance(id_token, str) or id_token.count(".") != 2:
        return {}
    part = id_token.split(".")[1]
    try:
        claims = msgspec.json.decode(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (ValueError, msgspec.DecodeError):
        return {}
    return claims if isinstance(claims, dict) else {}


def account_of(claims: dict[str, Any]) -> tuple[str | None, str | None]:
    """(who signed in, ChatGPT's account id) from ID token claims."""
    profile = claims.get("https://api.openai.com/profile")  # OpenAI puts the e-mail here too
    email = profile.get("email") if isinstance(profile, dict) else None
    found = (claims.get(k) for k in ("email", "preferred_username"))
    who = next((v for v in (*found, email, claims.get("sub")) if isinstance(v, str) and v), None)
    openai = claims.get("https://api.openai.com/auth")
    account_id = openai.get("chatgpt_account_id") if isinstance(openai, dict) else None
    return who, account_id if isinstance(account_id, str) else None


def encode(tokens: StoredTokens) -> str:
    return msgspec.json.encode(tokens).decode()


def decode(raw: str) -> StoredTokens | None:
    """None for an entry that does not parse (written by something else): treated as signed out."""
    try:
        return msgspec.json.decode(raw, type=StoredTokens)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
