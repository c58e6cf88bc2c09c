"""Built-in and custom providers by id, and "provider:model" resolution."""

from __future__ import annotations

import re

from ..errors import SidecarError
from ..settings import SettingsStore
from ..types import ProviderConfig
from .catalog import BUILTIN
from .model import Provider

_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


def split_model(model: str) -> tuple[str, str]:
    """``ollama:llama3.2:3b`` is provider ``ollama``, model ``llama3.2:3b``."""
    provider, sep, model_id = model.partition(":")
    if not sep or not provider or not model_id:
        raise SidecarError("invalid_request", f"model must be 'provider:model', got {model!r}")
    return provider, model_id


class Registry:
    def __init__(self, settings: SettingsStore) -> None:
        self._settings = settings
        self._builtin = {p.id: p for p in BUILTIN}

    def all(self) -> list[Provider]:
        custom = [Provider.from_config(c) for c in self._settings.value.custom_providers]
        return sorted([*self._builtin.values(), *custom], key=lambda p: p.id)

    def get(self, provider_id: str) -> Provider:
        if provider_id in self._builtin:
            return self._builtin[provider_id]
        for cfg in self._settings.value.custom_providers:
            if cfg.id == provider_id:
                return Provider.from_config(cfg)
        raise SidecarError("unknown_provider", f"Unknown provider {provider_id!r}", provider=provider_id)

    def register(self, cfg: ProviderConfig) -> Provider:
        if cfg.id in self._builtin:
            raise SidecarError("invalid_request", f"{cfg.id!r} is a built-in provider; choose another id")
        if not _ID.match(cfg.id):
            raise SidecarError(
                "invalid_request", "provider id must be 1-64 of a-z, 0-9, '.', '_', '-' (no ':')"
            )
        from ..protocols import available

        if cfg.protocol == "mock" or cfg.protocol not in available():
            raise SidecarError("invalid_request", f"protocol {cfg.protocol!r} is not available for custom providers")
        if not re.match(r"^https?://[^/]", cfg.base_url):
            raise SidecarError("invalid_request", "base_url must be an http:// or https:// URL")
        providers = [c for c in self._settings.value.custom_providers if c.id != cfg.id]
        providers.append(cfg)
        providers.sort(key=lambda c: c.id)
        self._settings.value.custom_providers = providers
        self._settings.save()
        return Provider.from_config(cfg)

    def remove(self, provider_id: str) -> bool:
        before = self._settings.value.custom_providers
        after = [c for c in before if c.id != provider_id]
        if len(after) == len(before):
            return False
        self._settings.value.custom_providers = after
        self._settings.save()
        return True
