"""API keys: the OS keychain (via keyring) first, then the provider's environment variable.

Every keyring call runs in a worker thread under a timeout, because a locked or
prompting collection can block for minutes. The sidecar never picks a plaintext store
itself: keyring's own choice is honoured only when it is a real keychain or when the
user chose the backend explicitly. A key is never logged, returned or put in a message.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from .errors import SidecarError
from .providers import Provider
from .settings import KeyBinding, SettingsStore
from .types import ApiKeyStatus, KeySource

log = logging.getLogger("sidecar.credentials")

T = TypeVar("T")

FIX = (
    "Start and unlock the desktop keychain (on Linux a Secret Service such as GNOME Keyring or KWallet), "
    "or choose a keyring backend with PYTHON_KEYRING_BACKEND"
)


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


class Credentials:
    def __init__(self, service: str, settings: SettingsStore, *, timeout: float = 5.0) -> None:
        self.service = service
        self._settings = settings
        self._timeout = timeout
        self._backend = _Backend()

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

    async def resolve(self, provider: Provider) -> tuple[str, KeySource] | None:
        """The key to use for a request now, and where it came from."""
        env_value = os.environ.get(provider.api_key_env) if provider.api_key_env else None
        try:
            saved = await self._read(provider)
        except SidecarError:
            if env_value:
                log.warning("keychain unavailable; using %s for %s", provider.api_key_env, provider.id)
                return env_value, "env"
            raise
        if saved:
            return saved, "keyring"
        if env_value:
            return env_value, "env"
        return None

    async def save(self, provider: Provider, key: str, host: str) -> None:
        """Save ``key`` for ``provider``, bound to ``host``: the settings' key index first, then the
        keychain, and the index put back as it was when the keychain fails, so a failure changes
        nothing. (This order because a settings write can be undone; a keychain write could only be
        undone by reading the old key back.)"""
        previous = self._settings.bind_key(provider.id, host)  # storage_error: the keychain is untouched
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

    def _undo(self, provider: Provider, previous: KeyBinding) -> None:
        try:
            self._settings.restore_key(provider.id, previous)
        except SidecarError as exc:
            log.error("could not restore the key index of %s after a keychain failure: %s", provider.id,
                      exc.info.message)

    async def status(self, provider: Provider) -> ApiKeyStatus:
        found = await self.resolve(provider)
        if found is None:
            return ApiKeyStatus(provider=provider.id, has_api_key=False, source=None, preview=None)
        key, source = found
        return ApiKeyStatus(provider=provider.id, has_api_key=True, source=source, preview=preview(key))

    def known_source(self, provider: Provider) -> KeySource | None:
        """Where a key is, without asking the keychain: the saved-key index, then the environment."""
        if provider.id in self._settings.value.saved_keys:
            return "keyring"
        if provider.api_key_env and os.environ.get(provider.api_key_env):
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
