"""The shape of a provider and of a model in the catalog."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from msgspec import UNSET

from ..types import Api, ModelInfo, OAuthConfig, Protocol, ProviderConfig, ProviderLimits, TransportKind


@dataclass(frozen=True)
class Model:
    id: str
    name: str = ""
    context_window: int | None = None
    max_output_tokens: int | None = None
    tools: bool | None = None
    vision: bool | None = None
    reasoning: bool | None = None
    input_price: float | None = None
    """USD per 1M input tokens (list price; None: unknown or free)"""
    output_price: float | None = None
    """USD per 1M output tokens, reasoning tokens included"""
    cached_input_price: float | None = None
    """USD per 1M input tokens read from the provider's prompt cache; None: priced as input"""
    embedding: bool | None = None
    """True: an embedding model (``llm_embed``), not a chat model; a catalog model without it is a chat model,
    refused by ``llm_embed`` (None elsewhere: unknown, let through)"""
    api: Api | None = None
    """``responses``: served only by OpenAI's Responses API, so requests go there on an ``openai`` provider
    (``providers.routing``); None: the provider's own protocol"""

    def info(self, provider: str) -> ModelInfo:
        def opt(v: Any) -> Any:
            return UNSET if v is None else v

        return ModelInfo(
            id=f"{provider}:{self.id}",
            provider=provider,
            name=self.name or self.id,
            context_window=opt(self.context_window),
            max_output_tokens=opt(self.max_output_tokens),
            supports_tools=opt(self.tools),
            supports_vision=opt(self.vision),
            supports_reasoning=opt(self.reasoning),
            input_price=opt(self.input_price),
            output_price=opt(self.output_price),
            cached_input_price=opt(self.cached_input_price),
            supports_embedding=opt(self.embedding),
            api=opt(self.api),
        )


@dataclass(frozen=True)
class Provider:
    id: str
    name: str
    protocol: Protocol
    base_url: str
    api_key_env: str | None = None
    requires_api_key: bool = True
    headers: dict[str, str] = field(default_factory=dict)
    extra_body: dict[str, Any] = field(default_factory=dict)
    models: tuple[Model, ...] = ()
    is_local: bool = False
    is_custom: bool = False
    configurable: bool = True
    """False: the catalog's entry is used as it is: configure_provider refuses it and no key is looked up
    for it (a provider that reaches no service, such as the offline one)"""
    stream_usage: bool = True
    """openai protocol: send stream_options.include_usage (a few servers reject it)"""
    max_tokens_field: str = "max_tokens"
    """openai protocol: OpenAI's own API wants ``max_completion_tokens`` (its reasoning models refuse the other)"""
    limits: ProviderLimits | None = None
    """the user's resilience settings (configure_provider)"""
    api_version: str | None = None
    """openai protocol, Azure style: deployment URLs, ``api-version`` query and ``api-key`` header"""
    own_key_env: str | None = None
    """the catalog's key variable (``OPENAI_API_KEY``); any other variable needs the app's ``--allow-env``"""
    key_host: str | None = None
    """where a key from ``own_key_env`` may go: the catalog's host, or that of a base URL the app set at start"""
    transport: TransportKind = "http"
    """how the engine reaches the model: HTTP, a child process, in this process (a worker thread), built in"""
    program: str | None = None
    """process transport: the program to run, as the app's trusted side set it (a path or a name on PATH)"""
    embed_batch: int | None = None
    """the most texts one embeddings request may carry, where the service's limit is below its protocol's"""
    responses_path: str = "/responses"
    """openai-responses protocol: the Responses API's path under ``base_url`` (Azure: ``/v1/responses``)"""
    oauth: OAuthConfig | None = None
    """sign in instead of a key: requests send the access token (``sidecar/auth``)"""
    redirect_uri: str | None = None
    """browser sign-in: the redirect the provider registered for its client (its port is then the listener's);
    None: ``http://127.0.0.1:<ephemeral port>/callback``"""
    session: str | None = None
    """a provider-specific step after sign-in (``copilot``: exchange for a Copilot token; ``chatgpt``: the
    account header from the ID token); see ``sidecar/auth/sessions.py``"""
    session_endpoint: str | None = None
    """the ``copilot`` step's token exchange URL"""
    session_hosts: tuple[str, ...] = ()
    """hosts (and their subdomains) an API base learned from the session step may be on"""

    @property
    def auth(self) -> str:
        """How requests authenticate: ``oauth``, ``api_key`` or ``none``."""
        if self.oauth is not None:
            return "oauth"
        return "api_key" if self.requires_api_key or self.api_key_env else "none"
    configured_models: tuple[Model, ...] = ()
    """models the catalog does not know that configure_provider gave limits (context windows) to; unlike
    ``models``, they say nothing of what the model is (chat or embeddings)"""

    def model(self, model_id: str) -> Model | None:
        """What the catalog, or configure_provider's limits, know of one model."""
        return next((m for m in (*self.models, *self.configured_models) if m.id == model_id), None)

    @property
    def default_models(self) -> list[str]:
        return [m.id for m in self.models]

    def config(self) -> ProviderConfig:
        return ProviderConfig(
            id=self.id,
            name=self.name,
            protocol=self.protocol,
            base_url=self.base_url,
            api_key_env=self.api_key_env or UNSET,
            requires_api_key=self.requires_api_key,
            headers=self.headers or UNSET,
            extra_body=self.extra_body or UNSET,
            default_models=self.default_models or UNSET,
            oauth=self.oauth if self.oauth is not None else UNSET,
        )

    @classmethod
    def from_config(cls, cfg: ProviderConfig) -> Provider:
        host = cfg.base_url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
        return cls(
            id=cfg.id,
            name=cfg.name,
            protocol=cfg.protocol,
            base_url=cfg.base_url.rstrip("/"),
            api_key_env=cfg.api_key_env or None,
            requires_api_key=cfg.requires_api_key,
            headers=dict(cfg.headers or {}),
            extra_body=dict(cfg.extra_body or {}),
            models=tuple(Model(m) for m in cfg.default_models or ()),
            is_local=host in ("localhost", "127.0.0.1", "::1", "0.0.0.0"),
            is_custom=True,
            oauth=cfg.oauth or None,
        )
