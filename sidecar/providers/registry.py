"""Built-in and custom providers by id, and "provider:model" resolution."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import cast

import msgspec
from msgspec import UNSET

from ..errors import SidecarError, header_safe
from ..settings import Settings, SettingsStore
from ..trust import Trust, host_of
from ..types import ConfigureProviderParams, ModelLimits, OAuthConfig, Protocol, ProviderConfig, ProviderLimits
from .catalog import BUILTIN
from .model import Model, Provider
from .routing import OPENAI_STYLE

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


def check_url(url: str) -> None:
    if not re.match(r"^https?://[^/\s]+", url) or not url.isprintable() or any(c.isspace() for c in url):
        raise SidecarError("invalid_request", "base_url must be an http:// or https:// URL")


_LOOPBACK = ("localhost", "127.0.0.1", "::1")


def check_oauth(oauth: OAuthConfig) -> None:
    """An ``oauth`` block given over RPC: https endpoints (http only to this machine), what its flow needs."""
    needed = "device_authorization_endpoint" if oauth.flow == "device" else "authorization_endpoint"
    if not isinstance(getattr(oauth, needed), str):
        raise SidecarError("invalid_request", f"oauth: flow {oauth.flow!r} needs {needed}")
    for name in ("device_authorization_endpoint", "authorization_endpoint", "token_endpoint"):
        url = getattr(oauth, name)
        if not isinstance(url, str):
            continue
        check_url(url)
        host = host_of(url)
        if not url.startswith("https://") and not (host in _LOOPBACK or host.startswith("127.")):
            raise SidecarError("invalid_request", f"oauth.{name} must be an https:// URL (http only to this machine)")
    if not oauth.client_id or not header_safe(oauth.client_id) or " " in oauth.client_id:
        raise SidecarError("invalid_request", "oauth.client_id must be printable ASCII without spaces")
    if not all(s and header_safe(s) and " " not in s for s in oauth.scopes):
        raise SidecarError("invalid_request", "oauth.scopes must be printable ASCII words without spaces")
    extra = oauth.extra_params or {}
    if not all(k and k.isprintable() and v.isprintable() for k, v in extra.items()):
        raise SidecarError("invalid_request", "oauth.extra_params must be printable")


def _moved(url: str | None, origin: str) -> str | None:
    """``url`` with its scheme, host and port replaced by ``origin``'s."""
    if not url:
        return url
    rest = url.split("://", 1)[-1]
    path = rest[rest.find("/"):] if "/" in rest else ""
    return origin.rstrip("/") + path


def _oauth_moved(p: Provider, origin: str) -> Provider:
    """A built-in's sign-in endpoints moved by the app's trusted side (``--oauth-url``)."""
    if p.oauth is None:
        return p
    o = p.oauth
    oauth = msgspec.structs.replace(
        o,
        token_endpoint=_moved(o.token_endpoint, origin) or o.token_endpoint,
        device_authorization_endpoint=(_moved(o.device_authorization_endpoint, origin)
                                       if isinstance(o.device_authorization_endpoint, str) else UNSET),
        authorization_endpoint=(_moved(o.authorization_endpoint, origin)
                                if isinstance(o.authorization_endpoint, str) else UNSET),
    )
    return replace(p, oauth=oauth, session_endpoint=_moved(p.session_endpoint, origin),
                   session_hosts=(*p.session_hosts, host_of(origin)))


def _limits(p: Provider, configured: ProviderLimits | None) -> ProviderLimits | None:
    """The user's limits over the catalog's defaults (claude-code's concurrency of 2 stays unless changed)."""
    if configured is None or p.limits is None:
        return configured or p.limits
    merged = {k: v for k, v in msgspec.structs.asdict(p.limits).items() if v is not UNSET}
    merged.update({k: v for k, v in msgspec.structs.asdict(configured).items() if v is not UNSET})
    return ProviderLimits(**merged)


def _protocol(own: Protocol, chosen: str | None) -> Protocol:
    """A built-in's protocol with the user's choice (configure_provider): only between OpenAI's two APIs."""
    if chosen in OPENAI_STYLE and own in OPENAI_STYLE:
        return cast(Protocol, chosen)
    return own


def _with_limits(p: Provider, limits: dict[str, ModelLimits] | None) -> Provider:
    """``p`` with configure_provider's model limits over the catalog's; models the catalog does not know go to
    ``configured_models``."""
    if not limits:
        return p
    models = []
    for m in p.models:
        given = limits.get(m.id)
        if given is not None:
            m = replace(m, context_window=given.context_window or m.context_window,
                        max_output_tokens=given.max_output_tokens or m.max_output_tokens)
        models.append(m)
    known = {m.id for m in p.models}
    added = tuple(Model(mid, context_window=g.context_window or None, max_output_tokens=g.max_output_tokens or None)
                  for mid, g in sorted(limits.items()) if mid not in known)
    return replace(p, models=tuple(models), configured_models=added)


class Registry:
    def __init__(self, settings: SettingsStore, trust: Trust | None = None) -> None:
        self._settings = settings
        self._trust = trust = trust or Trust()
        self._builtin = {p.id: self._trusted(p) for p in BUILTIN}

    def _trusted(self, p: Provider) -> Provider:
        """A provider as the app's trusted side made it: the catalog's, or the base URL given at start."""
        if p.id in self._trust.programs and not p.is_custom:
            p = replace(p, program=self._trust.programs[p.id])
        if p.id in self._trust.oauth_urls and not p.is_custom:
            p = _oauth_moved(p, self._trust.oauth_urls[p.id])
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
        p = _with_limits(p, o.models)
        if p.is_custom:  # a custom provider's own fields are changed in place; only limits live here
            return replace(p, limits=o.limits)
        return replace(
            p,
            limits=_limits(p, o.limits),
            base_url=(o.base_url or p.base_url).rstrip("/"),
            headers={**p.headers, **(o.headers or {})},
            api_key_env=o.api_key_env or p.api_key_env,
            extra_body={**p.extra_body, **(o.extra_body or {})},
            protocol=_protocol(p.protocol, o.protocol),
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
        from ..protocols import available, get_protocol

        if cfg.protocol not in available() or get_protocol(cfg.protocol).transport != "http":
            raise SidecarError("invalid_request", f"protocol {cfg.protocol!r} is not available for custom providers")
        check_url(cfg.base_url)
        _check_headers(cfg.headers)
        if isinstance(cfg.oauth, OAuthConfig):
            check_oauth(cfg.oauth)
        if isinstance(cfg.api_key_env, str):
            self._trust.check_env_name(cfg.api_key_env, None)
        self._settings.upsert_custom(cfg)
        return self._custom(cfg)

    def configure(self, params: ConfigureProviderParams) -> Provider:
        """Change where and how a provider is reached; UNSET keeps a field, None resets it."""
        if isinstance(params.base_url, str):
            check_url(params.base_url)
        _check_headers(params.headers)
        builtin = self._builtin.get(params.id)
        if builtin is not None and not builtin.configurable:
            raise SidecarError("invalid_request", f"the {params.id} provider cannot be configured")
        if builtin is not None and builtin.transport == "process" and params.base_url is not UNSET:
            raise SidecarError("invalid_request", f"{params.id}'s base_url cannot be changed over RPC: the program's "
                                                  "own sign-in would follow it (the app can set ANTHROPIC_BASE_URL "
                                                  "in the sidecar's environment)")
        if isinstance(params.api_key_env, str):
            self._trust.check_env_name(params.api_key_env, builtin.own_key_env if builtin else None)
        if builtin is not None and params.oauth is not UNSET:
            raise SidecarError("invalid_request", f"{params.id}'s sign-in cannot be changed over RPC (the app can move "
                                                  f"it at start with --oauth-url {params.id}=URL)")
        if builtin is not None and builtin.oauth is not None and params.base_url is not UNSET:
            raise SidecarError("invalid_request", f"{params.id}'s base_url cannot be changed over RPC: its sign-in "
                               f"says where requests go (the app can set --base-url {params.id}=URL)")
        if isinstance(params.oauth, OAuthConfig):
            check_oauth(params.oauth)
        fields = ("base_url", "headers", "api_key_env", "extra_body", "limits", "protocol", "oauth", "models")
        changes = {f: getattr(params, f) for f in fields if getattr(params, f) is not UNSET}
        current = self.get(params.id)  # unknown_provider
        custom = params.id not in self._builtin
        if custom and changes.get("base_url", "") is None:
            raise SidecarError("invalid_request", "a custom provider's base_url cannot be reset")
        if params.protocol is not UNSET:
            own = current.protocol if custom else self._builtin[params.id].protocol
            if own not in OPENAI_STYLE:
                raise SidecarError("invalid_request", f"{params.id} speaks {own!r}: only an OpenAI-style provider's "
                                                      "protocol can change (between 'openai' and 'openai-responses')")
            if custom and params.protocol is None:
                raise SidecarError("invalid_request", "a custom provider's protocol cannot be reset")
        self._settings.override(params.id, changes, custom=custom)
        return self.get(params.id)

    def remove(self, provider_id: str) -> bool:
        return self._settings.remove_custom(provider_id)
