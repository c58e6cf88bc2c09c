"""API keys: the OS keychain (via keyring) first, then the provider's environment variable; for a provider one
signs in to, the access token its ``TokenSource`` (``sidecar/auth``) keeps.

Every keyring call runs in a worker thread under a timeout, because a locked or
prompting collection can block for minutes. The sidecar never picks a plaintext store
itself: keyring's own choice is honoured only when it is a real keychain or when the
user chose the backend explicitly. A key is never logged, returned or put in a message.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Protocol, TypeVar

import anyio
import anyio.to_thread

from .errors import SidecarError, header_safe
from .providers import Provider
from .settings import KeyIndexEntry, SettingsStore
from .trust import KeyBinding, Trust, host_of
from .types import ApiKeyStatus, KeySource

log = logging.getLogger("sidecar.credentials")

T = TypeVar("T")

FIX = (
    "Start and unlock the desktop keychain (on Linux a Secret Service such as GNOME Keyring or KWallet), "
    "or choose a keyring backend with PYTHON_KEYRING_BACKEND"
)


def clean_key(key: str) -> str:
    """A key as the user pasted it, trimmed; invalid_request when it cannot go in a header."""
    key = key.strip()
    if not key:
        raise SidecarError("invalid_request", "api_key must not be empty")
    if not header_safe(key) or " " in key or len(key) > 4096:
        raise SidecarError("invalid_request", "api_key must be printable ASCII without spaces, at most 4096 "
                           "characters (a pasted key may carry an invisible character)")
    return key


def preview(key: str) -> str:
    """``…`` and the last 4 characters, after the first 3 for keys of 20 or more (``sk-…abcd``).

    Keys shorter than 8 characters show nothing but ``…``: their last 4 would be half the key.
    """
    if len(key) < 8:
        return "…"
    return (key[:3] if len(key) >= 20 else "") + "…" + key[-4:]


def redact(text: str, secret: str | None) -> str:
    """Remove ``secret`` and every 6-character run of it from ``text``."""
    if not secret or len(secret) < 6:
        return text
    text = text.replace(secret, "[redacted]")
    for i in range(len(secret) - 5):
        frag = secret[i : i + 6]
        if frag in text:
            text = text.replace(frag, "***")
    return text


class _Backend:
    """keyring, imported on first use (it is slow to import) and checked once."""

    def __init__(self) -> None:
        self._keyring: Any = None
        self.name: str | None = None

    def get(self) -> Any:
        if self._keyring is None:
            import keyring
            import keyring.backends.fail

            backend = keyring.get_keyring()
            name = f"{type(backend).__module__}.{type(backend).__name__}"
            if isinstance(backend, keyring.backends.fail.Keyring):
                raise _Unavailable("no keychain backend is available")
            explicit = bool(os.environ.get("PYTHON_KEYRING_BACKEND")) or _has_keyring_config()
            if not explicit and ("plaintext" in name.lower() or name.startswith("keyrings.alt")):
                raise _Unavailable(f"keyring chose the plaintext store {name}, which the sidecar refuses")
            self._keyring, self.name = keyring, name
        return self._keyring


class _Unavailable(Exception):
    pass


def _has_keyring_config() -> bool:
    try:
        from keyring.core import _config_path

        return bool(_config_path().exists())
    except Exception:
        return False


@dataclass(frozen=True)
class Key:
    value: str
    source: KeySource
    binding: KeyBinding


@dataclass(frozen=True)
class Lookup:
    key: Key | None
    keychain_problem: str | None = None
    """why the keychain could not be read (then only the environment was consulted)"""


@dataclass(frozen=True)
class Grant:
    """What a signed-in provider's requests carry now: its access token, where they may go, and how."""

    token: str
    hosts: frozenset[str]
    """the hosts the token was issued for: it is sent nowhere else"""
    base_url: str | None = None
    """where requests go when the sign-in says (Copilot's API base from its token answer); None: the provider's"""
    headers: Mapping[str, str] = field(default_factory=dict)
    """headers the sign-in adds (ChatGPT's account id)"""


class TokenSource(Protocol):
    """The sign-ins (``sidecar/auth``): a valid access token for a provider with ``oauth``, refreshed as needed."""

    async def grant(self, provider: Provider) -> Grant:
        """A token valid now (refreshed before expiry, single-flight); ``authentication_failed`` when signed out."""
        ...

    async def rejected(self, provider: Provider, token: str) -> bool:
        """The upstream answered 401 to ``token``: refresh once (single-flight); False when that cannot help."""
        ...

    def signed_in(self, provider: Provider) -> bool:
        """Whether tokens are saved for it, from the settings' index (without asking the keychain)."""
        ...


def check_sendable(key: str, provider: Provider, source: str) -> None:
    """A key with an invisible or non-ASCII character (pasted with it) cannot go in a header."""
    if not header_safe(key):
        raise SidecarError("invalid_request", f"the API key for {provider.id!r} ({source}) holds characters that "
                           "cannot be sent in an HTTP header; paste it again", provider=provider.id)


class Credentials:
    def __init__(self, service: str, settings: SettingsStore, trust: Trust | None = None, *,
                 timeout: float = 5.0) -> None:
        self.service = service
        self._settings = settings
        self._trust = trust or Trust()
        self._timeout = timeout
        self._backend = _Backend()
        self.tokens: TokenSource | None = None
        """the sign-ins, set by the app; requests to a provider with ``oauth`` get their token from it"""

    # --- keyring calls, each in a worker thread under a timeout --------------------

    async def _call(self, fn: Callable[[Any], T], provider: Provider | None = None) -> T:
        def run() -> T:
            try:
                return fn(self._backend.get())
            except _Unavailable:
                raise
            except Exception as exc:  # keyring/secretstorage/jeepney errors; the text may be long
                raise _Unavailable(type(exc).__name__) from None

        env = f"; or set {provider.api_key_env}" if provider and provider.api_key_env else ""
        try:
            with anyio.fail_after(self._timeout):
                return await anyio.to_thread.run_sync(run, abandon_on_cancel=True)
        except TimeoutError:
            raise SidecarError(
                "keyring_unavailable",
                f"The OS keychain did not answer within {self._timeout:g} s (is it locked?). {FIX}{env}.",
            ) from None
        except _Unavailable as exc:
            raise SidecarError("keyring_unavailable", f"No usable OS keychain ({exc}). {FIX}{env}.") from None

    async def _read(self, provider: Provider) -> str | None:
        value = await self._call(lambda kr: kr.get_password(self.service, provider.id), provider)
        return value or None

    # --- public API -------------------------------------------------------------------

    def _env_binding(self, provider: Provider) -> KeyBinding | None:
        """Where the provider's environment variable may be sent; None when the app did not allow it."""
        name = provider.api_key_env
        if not name:
            return None
        hosts = set()
        if name == provider.own_key_env and provider.key_host:
            hosts.add(provider.key_host)
        allowed = self._trust.allowed_env.get(name)
        if allowed:
            hosts.add(allowed)
        return KeyBinding(frozenset(hosts), f"from {name}") if hosts else None

    def _saved_binding(self, provider: Provider) -> KeyBinding:
        host = (self._settings.value.key_hosts.get(provider.id) or provider.key_host
                or host_of(provider.base_url))
        return KeyBinding(frozenset({host}), f"saved for {host}")

    async def lookup(self, provider: Provider) -> Lookup:
        """The key a request would use now, where it came from and where it may go.

        No keychain is a normal state: reading then finds no saved key (and says why), and the environment
        is still consulted.
        """
        problem = None
        try:
            saved = await self._read(provider)
        except SidecarError as exc:
            saved, problem = None, exc.info.message
        if saved:
            return Lookup(Key(saved, "keyring", self._saved_binding(provider)))
        binding = self._env_binding(provider)
        value = os.environ.get(provider.api_key_env) if binding and provider.api_key_env else None
        if binding and value:
            if problem:
                log.warning("keychain unavailable; using %s for %s", provider.api_key_env, provider.id)
            return Lookup(Key(value, "env", binding), problem)
        return Lookup(None, problem)

    async def key_for(self, provider: Provider, url: str) -> str | None:
        """The key (or a signed-in provider's access token) to send to ``url`` for ``provider`` now; None when
        none is needed and none is there.

        Raises ``missing_api_key`` when one is needed and none is found, ``key_host_mismatch`` when the key
        belongs to another host, ``authentication_failed`` when a provider one signs in to is signed out.
        """
        if provider.oauth is not None:
            grant = await self.grant(provider)
            KeyBinding(grant.hosts, "from its sign-in").check(url, provider.id)
            return grant.token
        found = await self.lookup(provider)
        if found.key is None:
            if provider.requires_api_key:
                raise self.missing(provider, found)
            return None
        found.key.binding.check(url, provider.id)
        check_sendable(found.key.value, provider, found.key.source)
        return found.key.value

    async def grant(self, provider: Provider) -> Grant:
        if self.tokens is None:
            raise SidecarError("authentication_failed", f"{provider.id}: sign-in is not available here",
                               provider=provider.id)
        grant = await self.tokens.grant(provider)
        check_sendable(grant.token, provider, "its sign-in")
        return grant

    async def authorized(self, provider: Provider) -> tuple[Provider, str | None]:
        """``provider`` as its sign-in says to reach it (base URL, headers) and the token to send; for any other
        provider, itself and its key (``key_for`` its base URL)."""
        if provider.oauth is None:
            if not (provider.requires_api_key or provider.api_key_env):
                return provider, None
            return provider, await self.key_for(provider, provider.base_url)
        grant = await self.grant(provider)
        if grant.base_url is not None or grant.headers:
            provider = replace(provider, base_url=grant.base_url or provider.base_url,
                               headers={**provider.headers, **grant.headers})
        KeyBinding(grant.hosts, "from its sign-in").check(provider.base_url, provider.id)
        return provider, grant.token

    async def token_rejected(self, provider: Provider, token: str | None) -> bool:
        """An upstream answered 401 to a signed-in provider's ``token``: True when a refreshed one may be tried."""
        if provider.oauth is None or self.tokens is None or not token:
            return False
        return await self.tokens.rejected(provider, token)

    def signed_in(self, provider: Provider) -> bool:
        return provider.oauth is not None and self.tokens is not None and self.tokens.signed_in(provider)

    # --- other secrets in the keychain: a sign-in's tokens (one JSON entry), an MCP server's secret env and
    # header values; never logged, never in the settings -------------------------------------------------

    async def read_secret(self, user: str, provider: Provider | None = None) -> str | None:
        return await self._call(lambda kr: kr.get_password(self.service, user), provider) or None

    async def write_secret(self, user: str, value: str, provider: Provider | None = None) -> None:
        await self._call(partial(_set, self.service, user, value), provider)

    async def delete_secret(self, user: str, provider: Provider | None = None) -> bool:
        return await self._call(partial(_delete, self.service, user), provider)

    def missing(self, provider: Provider, found: Lookup) -> SidecarError:
        env = f" or set {provider.api_key_env}" if provider.api_key_env else ""
        if provider.api_key_env and self._env_binding(provider) is None:
            env = (f" ({provider.api_key_env} is not consulted: the app did not allow it with "
                   f"--allow-env {provider.api_key_env}=HOST)")
        message = f"No API key saved for provider {provider.id!r} (save one with save_api_key{env})"
        if found.keychain_problem:
            message += f". {found.keychain_problem}"
        err = SidecarError("missing_api_key", message, provider=provider.id)
        if found.keychain_problem:
            err.info.keychain = "unavailable"
        return err

    async def save(self, provider: Provider, key: str) -> None:
        """Save ``key`` for ``provider``, bound to the host of its base URL now (it will go nowhere else).

        The settings' key index first, then the keychain, and the index put back as it was when the
        keychain fails, so a failure changes nothing. (This order because a settings write can be undone;
        a keychain write could only be undone by reading the old key back.)
        """
        # a storage_error here leaves the keychain untouched
        previous = self._settings.bind_key(provider.id, host_of(provider.base_url))
        try:
            await self._call(partial(_set, self.service, provider.id, key), provider)
        except BaseException:
            self._undo(provider, previous)
            raise
        log.info("saved an API key for %s", provider.id)

    async def delete(self, provider: Provider) -> bool:
        """Delete ``provider``'s saved key; like ``save``, the index first and put back on failure."""
        previous = self._settings.unbind_key(provider.id)
        try:
            return await self._call(partial(_delete, self.service, provider.id), provider)
        except BaseException:
            self._undo(provider, previous)
            raise

    def _undo(self, provider: Provider, previous: KeyIndexEntry) -> None:
        try:
            self._settings.restore_key(provider.id, previous)
        except SidecarError as exc:
            log.error("could not restore the key index of %s after a keychain failure: %s", provider.id,
                      exc.info.message)

    async def status(self, provider: Provider) -> ApiKeyStatus:
        found = await self.lookup(provider)
        if found.key is None:
            status = ApiKeyStatus(provider=provider.id, has_api_key=False, source=None, preview=None)
            if found.keychain_problem:
                status.keychain, status.hint = "unavailable", found.keychain_problem
            return status
        key = found.key
        return ApiKeyStatus(provider=provider.id, has_api_key=True, source=key.source, preview=preview(key.value))

    def known_source(self, provider: Provider) -> KeySource | None:
        """Where a key is, without asking the keychain: the saved-key index, then the environment."""
        if provider.id in self._settings.value.saved_keys:
            return "keyring"
        if provider.api_key_env and os.environ.get(provider.api_key_env) and self._env_binding(provider):
            return "env"
        return None

    async def backend_name(self) -> str | None:
        try:
            await self._call(lambda kr: None)
        except SidecarError:
            return None
        return self._backend.name


def _set(service: str, user: str, key: str, kr: Any) -> None:
    kr.set_password(service, user, key)


def _delete(service: str, user: str, kr: Any) -> bool:
    import keyring.errors

    if kr.get_password(service, user) is None:
        return False
    try:
        kr.delete_password(service, user)
    except keyring.errors.PasswordDeleteError:
        return False
    return True
