"""Built-in and custom providers by id, and "provider:model" resolution."""

from __future__ import annotations

import re
from dataclasses import replace

from msgspec import UNSET

from ..errors import SidecarError, header_safe
from ..settings import Settings, SettingsStore
from ..trust import Trust, host_of
from ..types import ConfigureProviderParams, ProviderConfig
from .catalog import BUILTIN
from .model import Provider

_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


def split_model(model: str) -> tuple[str, str]:
    """``ollama:llama3.2:3b`` is provider ``ollama``, model ``llama3.2:3b``."""
    provider, sep, model_id = model.partition(":")
    if not sep or not provider or not model_id:
        raise SidecarError("invalid_request", f"model must be 'provider:model', got {model!r}")
    return provider, model_id


def _check_headers(headers: dict[str, str] | object | None) -> None:
    if isinstance(headers, dict) and not all(header_safe(k) and header_safe(v) for k, v in headers.items()):
        raise SidecarError("invalid_request", "header names and values must be printable ASCII")


def _check_url(url: str) -> None:
    if not re.match(r"^https?://[^/\s]+", url):
        raise SidecarError("invalid_request", "base_url must be an http:// or https:// URL")


class Registry:
    def __init__(self, settings: SettingsStore, trust: Trust | None = None) -> None:
        self._settings = settings
        self._trust = trust = trust or Trust()
        self._builtin = {p.id: self._trusted(p) for p in BUILTIN}

    def _trusted(self, p: Provider) -> Provider:
        """A provider as the app's trusted side made it: the catalog's, or the base URL given at start."""
        base_url = self._trust.base_urls.get(p.id, p.base_url)
        own_env = None if p.is_custom else p.api_key_env
        if p.is_custom and p.id not in self._trust.base_urls:
            return p
        return replace(p, base_url=base_url, own_key_env=own_env, key_host=host_of(base_url))

    def all(self) -> list[Provider]:
        settings = self._settings.value
        custom = [self._custom(c) for c in settings.custom_providers]
        return sorted((self._configured(p, settings) for p in [*self._builtin.values(), *custom]), key=lambda p: p.id)

    def _custom(self, cfg: ProviderConfig) -> Provider:
        return self._trusted(Provider.from_config(cfg))

    def _configured(self, p: Provider, settings: Settings) -> Provider:
        """A built-in with the user's overrides applied (headers and extra_body merged over the catalog's)."""
        o = settings.overrides.get(p.id)
        if o is None:
            return p
        if p.is_custom:  # a custom provider's own fields are changed in place; only limits live here
            return replace(p, limits=o.limits)
        return replace(
            p,
            limits=o.limits or p.limits,  # the catalog's own (local: one at a time) until the user sets some
            base_url=(o.base_url or p.base_url).rstrip("/"),
            headers={**p.headers, **(o.headers or {})},
            api_key_env=o.api_key_env or p.api_key_env,
            extra_body={**p.extra_body, **(o.extra_body or {})},
        )

    def get(self, provider_id: str) -> Provider:
        settings = self._settings.value
        if provider_id in self._builtin:
            return self._configured(self._builtin[provider_id], settings)
        for cfg in settings.custom_providers:
            if cfg.id == provider_id:
                return self._configured(self._custom(cfg), settings)
        raise SidecarError("unknown_provider", f"Unknown provider {provider_id!r}", provider=provider_id)

    def register(self, cfg: ProviderConfig) -> Provider:
        if cfg.id in self._builtin:
            raise SidecarError("invalid_request", f"{cfg.id!r} is a built-in provider; choose another id")
        if not _ID.match(cfg.id):
            raise SidecarError(
                "invalid_request", "provider id must be 1-64 of a-z, 0-9, '.', '_', '-' (no ':')"
            )
        from ..protocols import available

        if cfg.protocol not in available():
            raise SidecarError("invalid_request", f"protocol {cfg.protocol!r} is not available for custom providers")
        _check_url(cfg.base_url)
        _check_headers(cfg.headers)
        if isinstance(cfg.api_key_env, str):
            self._trust.check_env_name(cfg.api_key_env, None)
        self._settings.upsert_custom(cfg)
        return self._custom(cfg)

    def configure(self, params: ConfigureProviderParams) -> Provider:
        """Change where and how a provider is reached; UNSET keeps a field, None resets it."""
        if isinstance(params.base_url, str):
            _check_url(params.base_url)
        _check_headers(params.headers)
        builtin = self._builtin.get(params.id)
        if builtin is not None and not builtin.configurable:
            raise SidecarError("invalid_request", f"the {params.id} provider cannot be configured")
        if isinstance(params.api_key_env, str):
            self._trust.check_env_name(params.api_key_env, builtin.own_key_env if builtin else None)
        fields = ("base_url", "headers", "api_key_env", "extra_body", "limits")
        changes = {f: getattr(params, f) for f in fields if getattr(params, f) is not UNSET}
        self.get(params.id)  # unknown_provider
        custom = params.id not in self._builtin
        if custom and changes.get("base_url", "") is None:
            raise SidecarError("invalid_request", "a custom provider's base_url cannot be reset")
        self._settings.override(params.id, changes, custom=custom)
        return self.get(params.id)

    def remove(self, provider_id: str) -> bool:
        return self._settings.remove_custom(provider_id)
