"""Persistent settings in the data dir: custom providers, the active provider, and which
providers have a key saved and for which host (keyring cannot list its entries, and listing
must not wait on it).

Changed read-modify-write under a lock file, so several sidecars can share a data dir; written
atomically (temp file, fsync, rename); a file that does not parse is renamed aside and
reported, never silently overwritten.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from msgspec import UNSET

from .errors import SidecarError
from .storage import locked, private_dir, storage_error
from .types import ActiveProvider, LocalModelInfo, McpServerConfig, ModelLimits, ProviderConfig, ProviderLimits

log = logging.getLogger("sidecar.settings")

FILE_NAME = "settings.json"
LOCK_NAME = "settings.lock"
TEMP_PREFIX, TEMP_SUFFIX = ".settings-", ".tmp"

T = TypeVar("T")

KeyIndexEntry = tuple[bool, str | None]
"""whether a key is saved for a provider, and the host it is bound to"""


class ProviderOverride(msgspec.Struct, omit_defaults=True):
    """What the user changed on a built-in provider (configure_provider)."""

    base_url: str | None = None
    headers: dict[str, str] | None = None
    api_key_env: str | None = None
    extra_body: dict[str, Any] | None = None
    limits: ProviderLimits | None = None
    protocol: str | None = None
    """an OpenAI-style provider's API: ``openai`` or ``openai-responses`` (``providers.routing``)"""
    models: dict[str, ModelLimits] | None = None
    """configure_provider's model limits (context windows), for built-in and custom providers alike"""


class Settings(msgspec.Struct):
    version: int = 1
    custom_providers: list[ProviderConfig] = msgspec.field(default_factory=list)
    overrides: dict[str, ProviderOverride] = msgspec.field(default_factory=dict)
    active: ActiveProvider | None = None
    saved_keys: list[str] = msgspec.field(default_factory=list)
    key_hosts: dict[str, str] = msgspec.field(default_factory=dict)
    """provider id -> the host a saved key is bound to (the host of its base URL when it was saved)"""
    local_models: list[LocalModelInfo] = msgspec.field(default_factory=list)
    """GGUF files registered with register_local_model, sorted by id"""
    signed_in: list[str] = msgspec.field(default_factory=list)
    """providers with sign-in tokens in the keychain (the tokens themselves are never here)"""
    mcp_servers: list[McpServerConfig] = msgspec.field(default_factory=list)
    """MCP servers added with mcp_add_server, sorted by id; the values of their secret_env and secret_headers
    are in the keychain, not here"""


def default_data_dir() -> Path:
    """The platform's per-user data folder, as desktop apps expect it."""
    home = Path.home()
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA") or home / "AppData" / "Roaming")
    elif sys.platform == "darwin":
        base = home / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share")
    return base / "llm-sidecar"


class SettingsStore:
    """The settings file, shared with any other sidecar on the same data dir (two app windows).

    Reading is cheap: ``value`` stats the file and re-reads it only when another process replaced
    it. Every change goes through ``update`` (or an intent method built on it): take the lock,
    re-read the file, change that fresh copy, write it atomically, and only then make it ``value``.
    A change that cannot be saved raises ``storage_error`` and changes nothing, in memory or on disk.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / FILE_NAME
        self.lock_path = data_dir / LOCK_NAME
        self._mutex = threading.Lock()
        self._value = Settings()
        self._stamp: _Stamp | None = None
        self._start()

    # --- reading ---------------------------------------------------------------------------

    @property
    def value(self) -> Settings:
        """The settings now, for reading only: change them with the intent methods below."""
        if _stamp_of(self.path) != self._stamp:
            self._refresh()
        return self._value

    def _start(self) -> None:
        if not self.data_dir.is_dir():
            return  # nothing to read yet; the first change creates the data dir
        try:
            with locked(self.lock_path):
                self._remove_stale_temp_files()
                self._value, self._stamp = self._read(set_aside=True)
                return
        except OSError as exc:  # e.g. a read-only data dir: it can still be read
            log.warning("cannot lock %s (%s); reading the settings without the lock", self.lock_path,
                        exc.strerror or exc)
        try:
            self._value, self._stamp = self._read(set_aside=True)
        except OSError as exc:
            log.warning("cannot read %s (%s); starting with defaults", self.path, exc.strerror)

    def _refresh(self) -> None:
        """Another process replaced the file: read it (without the lock; renames are atomic)."""
        with self._mutex:
            try:
                self._value, self._stamp = self._read(set_aside=False)
            except (OSError, _Corrupt) as exc:
                # keep what we have; the next change, under the lock, reads it again (and sets a bad one aside)
                log.warning("cannot read %s (%s); keeping the settings read before", self.path,
                            exc.strerror if isinstance(exc, OSError) else exc)
                self._stamp = _stamp_of(self.path)

    def _read(self, *, set_aside: bool) -> tuple[Settings, _Stamp | None]:
        """The file's settings and the stamp of the very bytes read; a corrupt file is renamed aside
        (only under the lock, ``set_aside``) or raises ``_Corrupt``."""
        try:
            with open(self.path, "rb") as f:
                stamp = _stamp_from(os.fstat(f.fileno()))
                raw = f.read()
        except FileNotFoundError:
            return Settings(), None
        try:
            return msgspec.json.decode(raw, type=Settings), stamp
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            if not set_aside:
                raise _Corrupt(str(exc)) from None
            aside = self.path.with_name(f"{FILE_NAME}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
            try:
                os.replace(self.path, aside)
                log.error("settings file %s is corrupt (%s); kept it as %s", self.path, exc, aside.name)
            except OSError:
                log.error("settings file %s is corrupt (%s) and could not be moved", self.path, exc)
            return Settings(), None

    def _remove_stale_temp_files(self) -> None:
        """Temp files of writers killed mid-write; only called under the lock, when nobody writes one."""
        for tmp in self.data_dir.glob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}"):
            try:
                tmp.unlink()
                log.info("removed the stale temp file %s", tmp.name)
            except OSError as exc:
                log.warning("cannot remove the stale temp file %s (%s)", tmp, exc.strerror)

    # --- changing ----------------------------------------------------------------------------

    def update(self, change: Callable[[Settings], T]) -> T:
        """Apply ``change`` to a fresh copy of the file's settings under the lock, save it, and
        return what ``change`` returned. ``change`` may raise to abort: nothing is written then.
        Nothing is written either when it changed nothing, which succeeds even in a data dir that
        cannot be written (e.g. saving a new key for a provider whose key is already indexed)."""
        with self._mutex:
            try:
                private_dir(self.data_dir)
                with locked(self.lock_path):
                    fresh, stamp = self._read(set_aside=True)
                    before = msgspec.json.encode(fresh)
                    result = change(fresh)
                    if msgspec.json.encode(fresh) != before:
                        stamp = self._write(fresh)
            except OSError as exc:
                fresh, stamp, result = self._unchanged_by(change, storage_error(self.path, exc))
            self._value, self._stamp = fresh, stamp
            return result

    def _unchanged_by(self, change: Callable[[Settings], T], error: SidecarError) -> tuple[Settings, _Stamp | None, T]:
        """After a failed write: the file as it is and ``change``'s result when ``change`` changes
        nothing in it (then nothing needed writing); ``error`` otherwise."""
        try:
            fresh, stamp = self._read(set_aside=False)
        except (OSError, _Corrupt):
            raise error from None
        before = msgspec.json.encode(fresh)
        result = change(fresh)
        if msgspec.json.encode(fresh) != before:
            raise error
        return fresh, stamp, result

    def _write(self, value: Settings) -> _Stamp | None:
        """Write atomically (temp file 0600, fsync, rename); the stamp of the file written."""
        data = msgspec.json.format(msgspec.json.encode(value), indent=2) + b"\n"
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=self.data_dir)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        if os.name == "posix":  # make the rename itself durable; it has taken effect either way
            try:
                dir_fd = os.open(self.data_dir, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
            except OSError as exc:
                log.warning("cannot sync the data dir %s (%s)", self.data_dir, exc.strerror)
        return _stamp_of(self.path)

    def set_active(self, active: ActiveProvider | None) -> ActiveProvider | None:
        """Choose the provider used when a request names none; returns the one before (to undo with)."""

        def change(s: Settings) -> ActiveProvider | None:
            previous, s.active = s.active, active
            return previous

        return self.update(change)

    def upsert_custom(self, cfg: ProviderConfig) -> None:
        """Add or replace a custom provider."""

        def change(s: Settings) -> None:
            s.custom_providers = sorted([*(c for c in s.custom_providers if c.id != cfg.id), cfg], key=lambda c: c.id)

        self.update(change)

    def remove_custom(self, provider_id: str) -> bool:
        """Remove a custom provider and its overrides; False when there was none."""

        def change(s: Settings) -> bool:
            kept = [c for c in s.custom_providers if c.id != provider_id]
            if len(kept) == len(s.custom_providers):
                return False
            s.custom_providers = kept
            s.overrides.pop(provider_id, None)
            return True

        return self.update(change)

    def override(self, provider_id: str, changes: Mapping[str, Any], *, custom: bool) -> None:
        """configure_provider's change (None resets a field): a custom provider's own fields change
        in its config; a built-in's go to its override, and so do ``limits`` of either."""

        def change(s: Settings) -> None:
            rest = dict(changes)
            if custom:
                cfg = next((c for c in s.custom_providers if c.id == provider_id), None)
                if cfg is None:  # another process removed it meanwhile
                    raise SidecarError("unknown_provider", f"Unknown provider {provider_id!r}", provider=provider_id)
                for name in [n for n in rest if n not in ("limits", "models")]:
                    value = rest.pop(name)
                    setattr(cfg, name, UNSET if value is None else value)
            current = msgspec.structs.asdict(s.overrides.get(provider_id, ProviderOverride()))
            if rest.get("models") is not None:  # model limits merge over the ones set before
                rest["models"] = {**(current["models"] or {}), **rest["models"]}
            updated = ProviderOverride(**{**current, **rest})
            if updated == ProviderOverride():
                s.overrides.pop(provider_id, None)
            else:
                s.overrides[provider_id] = updated

        self.update(change)

    def upsert_local_model(self, model: LocalModelInfo) -> None:
        """Add or replace a registered local model."""

        def change(s: Settings) -> None:
            s.local_models = sorted([*(m for m in s.local_models if m.id != model.id), model], key=lambda m: m.id)

        self.update(change)

    def remove_local_model(self, model_id: str) -> bool:
        """Forget a registered local model; False when there was none."""

        def change(s: Settings) -> bool:
            kept = [m for m in s.local_models if m.id != model_id]
            removed = len(kept) != len(s.local_models)
            s.local_models = kept
            return removed

        return self.update(change)

    def upsert_mcp_server(self, server: McpServerConfig) -> None:
        """Add or replace an MCP server (without its secret values)."""

        def change(s: Settings) -> None:
            s.mcp_servers = sorted([*(m for m in s.mcp_servers if m.id != server.id), server], key=lambda m: m.id)

        self.update(change)

    def remove_mcp_server(self, server_id: str) -> McpServerConfig | None:
        """Forget an MCP server; the one removed, or None when there was none."""

        def change(s: Settings) -> McpServerConfig | None:
            removed = next((m for m in s.mcp_servers if m.id == server_id), None)
            s.mcp_servers = [m for m in s.mcp_servers if m.id != server_id]
            return removed

        return self.update(change)

    def bind_key(self, provider_id: str, host: str) -> KeyIndexEntry:
        """Record that a key is saved for ``provider_id``, bound to ``host``; returns the binding before."""
        return self.restore_key(provider_id, (True, host))

    def unbind_key(self, provider_id: str) -> KeyIndexEntry:
        """Record that no key is saved for ``provider_id``; returns the binding before."""
        return self.restore_key(provider_id, (False, None))

    def restore_key(self, provider_id: str, binding: KeyIndexEntry) -> KeyIndexEntry:
        """Set ``provider_id``'s key binding as ``bind_key``/``unbind_key`` returned it; returns the one before."""
        saved, host = binding

        def change(s: Settings) -> KeyIndexEntry:
            previous = (provider_id in s.saved_keys, s.key_hosts.get(provider_id))
            keys = set(s.saved_keys) - {provider_id}
            s.saved_keys = sorted(keys | {provider_id} if saved else keys)
            if host is None:
                s.key_hosts.pop(provider_id, None)
            else:
                s.key_hosts[provider_id] = host
            return previous

        return self.update(change)


    def mark_signed_in(self, provider_id: str, on: bool) -> bool:
        """Record whether tokens are saved for ``provider_id``; returns whether they were before."""

        def change(s: Settings) -> bool:
            before = provider_id in s.signed_in
            rest = set(s.signed_in) - {provider_id}
            s.signed_in = sorted(rest | {provider_id} if on else rest)
            return before

        return self.update(change)


_Stamp = tuple[int, int, int, int]
"""what tells one version of the file from the next: device, inode, size, modification time"""


def _stamp_from(st: os.stat_result) -> _Stamp:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _stamp_of(path: Path) -> _Stamp | None:
    try:
        return _stamp_from(os.stat(path))
    except OSError:
        return None


class _Corrupt(Exception):
    pass
