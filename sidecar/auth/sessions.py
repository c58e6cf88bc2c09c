"""The signed-in providers' tokens: kept in the keychain (one JSON entry per provider, ``oauth:<id>``), cached in
memory, refreshed before expiry and once after a 401, one refresh at a time per provider (single-flight: every
request that needs it waits for the same one), a rotated refresh token saved before it is used again, and the
provider-specific step after sign-in (Copilot's token exchange, ChatGPT's account header).

This is the ``TokenSource`` the credentials hand requests' tokens from."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio

from ..credentials import Credentials, Grant, redact
from ..errors import SidecarError
from ..providers import Provider
from ..settings import SettingsStore
from ..trust import Trust, host_of
from ..types import OAuthStatus
from . import copilot
from .http import OAuthError, new_client, token_request
from .tokens import StoredTokens, decode, encode, from_answer

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("sidecar.auth")


def entry(provider_id: str) -> str:
    """The keychain user name of a provider's tokens (beside its API key, which is under its bare id)."""
    return f"oauth:{provider_id}"


def sign_in_again(provider: Provider, why: str) -> SidecarError:
    return SidecarError("authentication_failed", f"{provider.id}: {why}; sign in again (oauth_sign_in_start)",
                        provider=provider.id)


class SignIns:
    def __init__(self, credentials: Credentials, settings: SettingsStore, trust: Trust) -> None:
        self._credentials = credentials
        self._settings = settings
        self._trust = trust
        self._tokens: dict[str, StoredTokens] = {}
        self._copilot: dict[str, copilot.CopilotToken] = {}
        self._locks: dict[str, anyio.Lock] = {}
        self._client: httpx.AsyncClient | None = None

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = new_client()
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    def _lock(self, provider_id: str) -> anyio.Lock:
        lock = self._locks.get(provider_id)
        if lock is None:
            lock = self._locks[provider_id] = anyio.Lock()
        return lock

    # --- TokenSource ----------------------------------------------------------------------

    def signed_in(self, provider: Provider) -> bool:
        return provider.id in self._settings.value.signed_in

    async def grant(self, provider: Provider) -> Grant:
        async with self._lock(provider.id):
            tokens = await self._current(provider)
            return await self._grant(provider, tokens)

    async def rejected(self, provider: Provider, token: str) -> bool:
        async with self._lock(provider.id):
            held = self._copilot.get(provider.id)
            if provider.session == "copilot":
                if held is not None and held.token == token:
                    del self._copilot[provider.id]  # the next grant exchanges again
                return True
            tokens = self._tokens.get(provider.id)
            if tokens is None:
                return False
            if tokens.access_token != token:
                return True  # another request refreshed it meanwhile
            if tokens.refresh_token is None:
                return False
            await self._refresh(provider, tokens)
            return True

    # --- sign-in, status, sign-out ---------------------------------------------------------------

    def hosts_for(self, provider: Provider) -> list[str]:
        """Where a new sign-in's tokens may go: the provider's base URL's host (Copilot: the exchange decides)."""
        return [] if provider.session == "copilot" else [host_of(provider.base_url)]

    async def save(self, provider: Provider, answer: dict[str, object]) -> StoredTokens:
        """A completed sign-in's token answer, saved in the keychain (then indexed) and used from now on."""
        assert provider.oauth is not None
        tokens = from_answer(answer, host_of(provider.oauth.token_endpoint), self.hosts_for(provider))
        async with self._lock(provider.id):
            await self._credentials.write_secret(entry(provider.id), encode(tokens), provider)
            self._tokens[provider.id] = tokens
            self._copilot.pop(provider.id, None)
            self._settings.mark_signed_in(provider.id, True)
        log.info("signed in to %s", provider.id)
        return tokens

    async def status(self, provider: Provider) -> OAuthStatus:
        async with self._lock(provider.id):
            tokens = await self._load(provider)
        if tokens is None or not self._bound(provider, tokens):
            return OAuthStatus(provider=provider.id, signed_in=False)
        status = OAuthStatus(provider=provider.id, signed_in=True)
        if tokens.account:
            status.account = tokens.account
        if tokens.expires_at is not None:
            status.expires_at = int(tokens.expires_at)
        return status

    async def sign_out(self, provider: Provider) -> bool:
        async with self._lock(provider.id):
            return await self._forget(provider)

    # --- inside the provider's lock --------------------------------------------------------------

    async def _load(self, provider: Provider) -> StoredTokens | None:
        """The tokens in memory, else in the keychain (another process may have saved them)."""
        tokens = self._tokens.get(provider.id)
        if tokens is None:
            tokens = await self._read(provider)
            if tokens is not None:
                self._tokens[provider.id] = tokens
        return tokens

    async def _read(self, provider: Provider) -> StoredTokens | None:
        raw = await self._credentials.read_secret(entry(provider.id), provider)
        return decode(raw) if raw else None

    def _bound(self, provider: Provider, tokens: StoredTokens) -> bool:
        """Still the endpoints they were issued for: the token endpoint's host, and (but for Copilot, whose
        exchange names its own) the base URL's."""
        assert provider.oauth is not None
        if tokens.token_host != host_of(provider.oauth.token_endpoint):
            return False
        return provider.session == "copilot" or host_of(provider.base_url) in tokens.hosts

    async def _forget(self, provider: Provider) -> bool:
        self._tokens.pop(provider.id, None)
        self._copilot.pop(provider.id, None)
        deleted = await self._credentials.delete_secret(entry(provider.id), provider)
        was = self._settings.mark_signed_in(provider.id, False)
        return deleted or was

    async def _current(self, provider: Provider) -> StoredTokens:
        tokens = await self._load(provider)
        if tokens is None:
            if self.signed_in(provider):  # the index says so but the keychain has nothing: fix the index
                self._settings.mark_signed_in(provider.id, False)
            raise SidecarError("authentication_failed", f"{provider.id}: not signed in (sign in with "
                               "oauth_sign_in_start)", provider=provider.id)
        if not self._bound(provider, tokens):
            await self._forget(provider)
            raise sign_in_again(provider, "its sign-in endpoints or base URL changed since it signed in")
        if tokens.due():
            tokens = await self._refresh(provider, tokens)
        return tokens

    async def _refresh(self, provider: Provider, tokens: StoredTokens) -> StoredTokens:
        """New tokens from the refresh token, saved in the keychain before anything uses them."""
        assert provider.oauth is not None
        stored = await self._read(provider)  # another sidecar on this keychain may have refreshed already
        if stored is not None and stored.access_token != tokens.access_token and not stored.due():
            self._tokens[provider.id] = stored
            return stored
        if tokens.refresh_token is None:
            await self._forget(provider)
            raise sign_in_again(provider, "the sign-in expired")
        form = {"grant_type": "refresh_token", "refresh_token": tokens.refresh_token,
                "client_id": provider.oauth.client_id}
        try:
            answer = await token_request(self.client(), provider.oauth.token_endpoint, form, provider.id)
        except OAuthError as exc:
            if exc.error != "invalid_grant":
                err = exc.as_sidecar(provider.id, "refreshing the sign-in")
                err.info.message = redact(err.info.message, tokens.refresh_token)  # a server may echo it
                raise err from None
            await self._forget(provider)
            raise sign_in_again(provider, "the sign-in was revoked or has expired (invalid_grant)") from None
        fresh = from_answer(answer, tokens.token_host, tokens.hosts, previous=tokens)
        await self._credentials.write_secret(entry(provider.id), encode(fresh), provider)  # rotation: saved first
        self._tokens[provider.id] = fresh
        log.info("refreshed the sign-in of %s", provider.id)
        return fresh

    async def _grant(self, provider: Provider, tokens: StoredTokens) -> Grant:
        if provider.session == "copilot":
            held = self._copilot.get(provider.id)
            if held is None or held.source != tokens.access_token or held.due():
                fixed = provider.base_url if provider.id in self._trust.base_urls else None
                try:
                    held = await copilot.exchange(self.client(), provider, tokens.access_token, fixed)
                except copilot.GitHubTokenRefused:
                    await self._forget(provider)
                    raise sign_in_again(provider, "GitHub refused its token (revoked or expired)") from None
                self._copilot[provider.id] = held
            return Grant(held.token, frozenset({host_of(held.base_url)}), base_url=held.base_url)
        headers = {}
        if provider.session == "chatgpt" and tokens.account_id:
            headers["chatgpt-account-id"] = tokens.account_id
        return Grant(tokens.access_token, frozenset(tokens.hosts), headers=headers)
