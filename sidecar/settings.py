"""Persistent settings in the data dir: custom providers, the active provider, and which
providers have a key saved (keyring cannot list its entries, and listing must not wait on it).

Written atomically (temp file, fsync, rename); a file that does not parse is renamed
aside and reported, never silently overwritten.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

from .types import ActiveProvider, ProviderConfig, ProviderLimits

log = logging.getLogger("sidecar.settings")

FILE_NAME = "settings.json"


class ProviderOverride(msgspec.Struct, omit_defaults=True):
    """What the user changed on a built-in provider (configure_provider)."""

    base_url: str | None = None
    headers: dict[str, str] | None = None
    api_key_env: str | None = None
    extra_body: dict[str, Any] | None = None
    limits: ProviderLimits | None = None


class Settings(msgspec.Struct):
    version: int = 1
    custom_providers: list[ProviderConfig] = msgspec.field(default_factory=list)
    overrides: dict[str, ProviderOverride] = msgspec.field(default_factory=dict)
    active: ActiveProvider | None = None
    saved_keys: list[str] = msgspec.field(default_factory=list)
    key_hosts: dict[str, str] = msgspec.field(default_factory=dict)
    """provider id -> the host its saved key may be sent to (the host of its base URL when it was saved)"""


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
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / FILE_NAME
        self.value = self._load()

    def _load(self) -> Settings:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return Settings()
        except OSError as exc:
            log.warning("cannot read %s (%s); starting with defaults", self.path, exc.strerror)
            return Settings()
        try:
            return msgspec.json.decode(raw, type=Settings)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            aside = self.path.with_name(f"{FILE_NAME}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
            try:
                os.replace(self.path, aside)
                log.error("settings file %s is corrupt (%s); kept it as %s", self.path, exc, aside.name)
            except OSError:
                log.error("settings file %s is corrupt (%s) and could not be moved", self.path, exc)
            return Settings()

    def save(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        data = msgspec.json.format(msgspec.json.encode(self.value), indent=2) + b"\n"
        fd, tmp = tempfile.mkstemp(prefix=".settings-", suffix=".tmp", dir=self.data_dir)
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
        if os.name == "posix":  # make the rename itself durable
            dir_fd = os.open(self.data_dir, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
