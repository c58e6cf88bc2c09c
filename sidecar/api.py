"""One small function per RPC method: take decoded params, call a service, return a wire type."""

from __future__ import annotations

import logging
import sys
from functools import cached_property
from typing import TYPE_CHECKING

from msgspec import UNSET

from . import PROTOCOL_VERSION, __version__
from .engine import EventSink
from .errors import SidecarError, header_safe
from .providers import Provider, split_model
from .rpc import MethodSpec, RequestContext
from .types import (
    AbortStreamParams,
    AbortStreamResult,
    ActiveProvider,
    ApiKeyStatus,
    ChatLoopParams,
    ChatLoopStarted,
    ChatProviderInfo,
    ChatWorkspaceParams,
    ChatWorkspaceResult,
    ChatWorkspaceSettings,
    CompleteChatResult,
    ConfigureChatWorkspaceParams,
    ConfigureProviderParams,
    DeletedResult,
    DiscoveredProvider,
    DiscoverParams,
    Empty,
    HealthParams,
    ListModelsParams,
    LoopIdParams,
    LoopMessages,
    ModelInfo,
    ProviderConfig,
    ProviderHealth,
    ProviderIdParams,
    ProviderInfo,
    ProviderParams,
    ProxyProvider,
    ProxyRunning,
    ProxyStarted,
    ProxyStopped,
    ProxyUrl,
    RemovedResult,
    SaveApiKeyParams,
    SaveApiKeyResult,
    SavedProvider,
    SetActiveProviderParams,
    SidecarInfoResult,
    StartProxyParams,
    StreamStarted,
    StreamTextParams,
    SubmitToolResultsParams,
    SubmitToolResultsResult,
    TestConnectionParams,
    TestConnectionResult,
    UsageStats,
    UsageStatsParams,
)

if TYPE_CHECKING:
    from .app import App
    from .loop import LoopManager
    from .meilisearch import ChatWorkspaces

log = logging.getLogger("sidecar.api")


class Api:
    def __init__(self, app: App) -> None:
        self.app = app
        self.engine = app.engine
        self.registry = app.registry
        self.credentials = app.credentials

    @cached_property
    def loops(self) -> LoopManager:
        """Built on first use: start-up does not pay for the tool loop's module."""
        from .loop import LoopManager

        return LoopManager(self.engine)

    @cached_property
    def chat_workspaces(self) -> ChatWorkspaces:
        """Meilisearch chat set-up, built on first use; it asks the app for the proxy only when one is needed."""
        from .meilisearch import ChatWorkspaces

        def active_model(provider: str) -> str | None:
            active = self.app.settings.value.active
            return active.model if active is not None and active.provider == provider else None

        return ChatWorkspaces(self.registry, self.credentials, lambda: self.app.proxy, active_model,
                              self.app.trust.allows_meilisearch)

    def info(self, provider: Provider) -> ProviderInfo:
        cfg = provider.config()
        source = None if provider.protocol == "mock" else self.credentials.known_source(provider)
        return ProviderInfo(
            id=cfg.id,
            name=cfg.name,
            protocol=cfg.protocol,
            base_url=cfg.base_url,
            is_custom=provider.is_custom,
            is_local=provider.is_local,
            has_api_key=source is not None,
            key_source=source,
            requires_api_key=cfg.requires_api_key,
            api_key_env=cfg.api_key_env,
            headers=cfg.headers,
            extra_body=cfg.extra_body,
            default_models=cfg.default_models,
            limits=provider.limits or UNSET,
        )

    # --- streaming ----------------------------------------------------------------------

    async def llm_stream_text(self, ctx: RequestContext, params: StreamTextParams) -> StreamStarted:
        stream_id, scope, prepared = await self.engine.open(params.stream_id, params)
        sink = EventSink(stream_id, ctx.server.notify, after=ctx.responded)
        ctx.spawn(lambda: self.engine.run_stream(prepared, sink, scope))
        return StreamStarted(stream_id=stream_id)

    async def llm_chat_loop_start(self, ctx: RequestContext, params: ChatLoopParams) -> ChatLoopStarted:
        loop = await self.loops.open(params)
        sink = EventSink(loop.stream_id, ctx.server.notify, after=ctx.responded)
        ctx.spawn(lambda: self.loops.run(loop, sink, ctx.server.input_closed))
        return ChatLoopStarted(loop_id=loop.loop_id, stream_id=loop.stream_id)

    async def llm_submit_tool_results(
        self, ctx: RequestContext, params: SubmitToolResultsParams
    ) -> SubmitToolResultsResult:
        return self.loops.submit(params)

    async def llm_get_loop_messages(self, ctx: RequestContext, params: LoopIdParams) -> LoopMessages:
        return self.loops.messages(params.loop_id)

    async def llm_abort_stream(self, ctx: RequestContext, params: AbortStreamParams) -> AbortStreamResult:
        return AbortStreamResult(aborted=self.engine.abort(params.stream_id))

    async def complete_chat(self, ctx: RequestContext, params: StreamTextParams) -> CompleteChatResult:
        return await self.engine.complete_chat(params)

    # --- providers and models -----------------------------------------------------------

    async def list_providers(self, ctx: RequestContext) -> list[ProviderInfo]:
        return [self.info(p) for p in self.registry.all()]

    async def llm_list_available_models(self, ctx: RequestContext, params: ListModelsParams) -> list[ModelInfo]:
        providers = [self.registry.get(params.provider)] if isinstance(params.provider, str) else self.registry.all()
        return await self.engine.list_models(providers, params.refresh)

    async def llm_register_custom_provider(self, ctx: RequestContext, params: ProviderConfig) -> ProviderInfo:
        return self.info(self.registry.register(params))

    async def configure_provider(self, ctx: RequestContext, params: ConfigureProviderParams) -> ProviderInfo:
        provider = self.registry.configure(params)
        self.engine.forget_models(provider.id)
        return self.info(provider)

    async def discover_local_providers(self, ctx: RequestContext, params: DiscoverParams) -> list[DiscoveredProvider]:
        import httpx

        from .framing import read_body
        from .providers.discovery import DEFAULT_PORTS, Answer, discover

        timeout = max(params.timeout_ms, 1) / 1000
        ports = list(params.ports) if isinstance(params.ports, list) else list(DEFAULT_PORTS)
        # Its own client: local servers must not be reached through a proxy from the environment.
        async with httpx.AsyncClient(trust_env=False, timeout=timeout) as client:

            async def get(url: str) -> Answer | None:
                try:
                    async with client.stream("GET", url) as response:  # read at most 1 MiB of a probe's answer
                        body = await read_body(response.aiter_bytes(), 1 << 20, "discovery", "a probe's answer")
                except (httpx.HTTPError, SidecarError):
                    return None
                return Answer(response.status_code, body)

            return await discover(get, ports, timeout)

    async def llm_remove_custom_provider(self, ctx: RequestContext, params: ProviderIdParams) -> RemovedResult:
        return RemovedResult(removed=self.registry.remove(params.id))

    async def set_active_provider(self, ctx: RequestContext, params: SetActiveProviderParams) -> ProviderInfo:
        provider = self.registry.get(params.provider)
        model = params.model
        if ":" in model and model.split(":", 1)[0] == provider.id:
            model = split_model(model)[1]
        if not model:
            raise SidecarError("invalid_request", "model must not be empty")
        key = _clean_key(params.api_key) if isinstance(params.api_key, str) else None
        previous = self.app.settings.set_active(ActiveProvider(provider=provider.id, model=model))
        if key is not None:
            try:
                await self.credentials.save(provider, key)
            except BaseException:
                try:  # all or nothing: the key failed, so the choice is undone too
                    self.app.settings.set_active(previous)
                except SidecarError as exc:
                    log.error("could not restore the active provider after a failed key save: %s", exc.info.message)
                raise
        return self.info(provider)

    async def get_active_provider(self, ctx: RequestContext) -> ActiveProvider | None:
        return self.app.settings.value.active

    async def test_provider_connection(
        self, ctx: RequestContext, params: TestConnectionParams
    ) -> TestConnectionResult:
        return await self.engine.test_connection(params)

    async def get_provider_health(self, ctx: RequestContext, params: HealthParams) -> list[ProviderHealth]:
        if isinstance(params.provider, str):
            ids = [self.registry.get(params.provider).id]  # unknown_provider
        else:
            ids = [p.id for p in self.registry.all()]
        return self.app.health.snapshot(ids)

    async def get_usage_stats(self, ctx: RequestContext, params: UsageStatsParams) -> UsageStats:
        import anyio.to_thread

        # in a worker thread: a long history must not hold up the streams on the event loop
        return await anyio.to_thread.run_sync(self.app.usage.stats, params)

    # --- Meilisearch chat workspaces ------------------------------------------------------

    async def list_chat_providers(self, ctx: RequestContext) -> list[ChatProviderInfo]:
        return self.chat_workspaces.list_providers()

    async def configure_chat_workspace(
        self, ctx: RequestContext, params: ConfigureChatWorkspaceParams
    ) -> ChatWorkspaceResult:
        return await self.chat_workspaces.configure(params)

    async def get_chat_workspace_settings(
        self, ctx: RequestContext, params: ChatWorkspaceParams
    ) -> ChatWorkspaceSettings:
        return await self.chat_workspaces.get_settings(params)

    # --- the local OpenAI-compatible proxy ---------------------------------------------------

    async def start_llm_proxy(self, ctx: RequestContext, params: StartProxyParams) -> ProxyStarted:
        url, token = await self.app.proxy.start(
            params.host if isinstance(params.host, str) else None,
            params.port if isinstance(params.port, int) else None,
            params.token if isinstance(params.token, str) else None,
        )
        return ProxyStarted(url=url, token=token)

    async def stop_llm_proxy(self, ctx: RequestContext) -> ProxyStopped:
        return ProxyStopped(stopped="proxy" in self.app.__dict__ and await self.app.proxy.stop())

    async def is_llm_proxy_running(self, ctx: RequestContext) -> ProxyRunning:
        return ProxyRunning(running="proxy" in self.app.__dict__ and self.app.proxy.running)

    async def get_llm_proxy_url(self, ctx: RequestContext) -> ProxyUrl:
        return ProxyUrl(url=self.app.proxy.url if "proxy" in self.app.__dict__ else None)

    async def list_proxy_providers(self, ctx: RequestContext) -> list[ProxyProvider]:
        proxy = self.app.proxy
        providers = proxy.providers()
        models = await self.engine.list_models(providers, False)
        return [ProxyProvider(id=p.id, name=p.name, protocol=p.protocol, is_local=p.is_local,
                              models=[m.id for m in models if m.provider == p.id]) for p in providers]

    # --- keys ---------------------------------------------------------------------------

    async def save_api_key(self, ctx: RequestContext, params: SaveApiKeyParams) -> SaveApiKeyResult:
        provider = self.registry.get(params.provider)
        await self.credentials.save(provider, _clean_key(params.api_key))
        return SaveApiKeyResult(provider=provider.id, has_api_key=True)

    async def get_api_key(self, ctx: RequestContext, params: ProviderParams) -> ApiKeyStatus:
        return await self.credentials.status(self.registry.get(params.provider))

    async def delete_api_key(self, ctx: RequestContext, params: ProviderParams) -> DeletedResult:
        return DeletedResult(deleted=await self.credentials.delete(self.registry.get(params.provider)))

    async def list_saved_providers(self, ctx: RequestContext) -> list[SavedProvider]:
        out = []
        for p in self.registry.all():
            source = self.credentials.known_source(p)
            if source is not None:
                out.append(SavedProvider(provider=p.id, has_api_key=True, source=source))
        return out

    # --- the process ---------------------------------------------------------------------

    async def sidecar_info(self, ctx: RequestContext) -> SidecarInfoResult:
        return SidecarInfoResult(
            version=__version__,
            protocol_version=PROTOCOL_VERSION,
            python=sys.version.split()[0],
            keyring_backend=await self.credentials.backend_name(),
            data_dir=str(self.app.data_dir),
        )

    async def shutdown(self, ctx: RequestContext) -> Empty:
        async def stop_after_reply() -> None:
            await ctx.responded.wait()
            ctx.server.stop()

        ctx.spawn(stop_after_reply)
        return Empty()



def _clean_key(key: str) -> str:
    key = key.strip()
    if not key:
        raise SidecarError("invalid_request", "api_key must not be empty")
    if not header_safe(key) or " " in key or len(key) > 4096:
        raise SidecarError("invalid_request", "api_key must be printable ASCII without spaces, at most 4096 "
                           "characters (a pasted key may carry an invisible character)")
    return key


METHODS: tuple[tuple[str, type | None, object, str], ...] = (
    ("llm_stream_text", StreamTextParams, StreamStarted,
     "Start a stream; its events follow as llm-stream-<stream_id> notifications."),
    ("llm_abort_stream", AbortStreamParams, AbortStreamResult,
     "Abort a stream; it ends with an error event of code cancelled."),
    ("complete_chat", StreamTextParams, CompleteChatResult, "Run a request to its end and return the whole answer."),
    ("llm_chat_loop_start", ChatLoopParams, ChatLoopStarted,
     "Start a tool loop: the sidecar streams step after step on llm-stream-<stream_id>, asking for tool "
     "results (tool_calls_requested) until the model answers without tools, max_steps is reached, or it fails."),
    ("llm_submit_tool_results", SubmitToolResultsParams, SubmitToolResultsResult,
     "Answer a tool loop's tool_calls_requested with the results of all its calls; the loop goes on."),
    ("llm_get_loop_messages", LoopIdParams, LoopMessages,
     "A tool loop's conversation so far (input, assistant turns, tool results) and its state; ended loops "
     "are kept for a while."),
    ("list_providers", None, list[ProviderInfo], "Built-in and custom providers, sorted by id."),
    ("llm_list_available_models", ListModelsParams, list[ModelInfo], "Models of one provider, or of all."),
    ("llm_register_custom_provider", ProviderConfig, ProviderInfo, "Add or replace a custom provider (persisted)."),
    ("llm_remove_custom_provider", ProviderIdParams, RemovedResult, "Remove a custom provider."),
    ("configure_provider", ConfigureProviderParams, ProviderInfo,
     "Override a provider's base_url, headers, api_key_env or extra_body (persisted; null resets a field)."),
    ("discover_local_providers", DiscoverParams, list[DiscoveredProvider],
     "Find model servers running on this machine (Ollama, LM Studio, llama.cpp, vLLM, Jan)."),
    ("set_active_provider", SetActiveProviderParams, ProviderInfo,
     "Choose the provider and model used when a request names none (persisted)."),
    ("get_active_provider", None, ActiveProvider | None, "The active provider and model, or null."),
    ("test_provider_connection", TestConnectionParams, TestConnectionResult,
     "Check a key and base URL with a cheap authenticated call."),
    ("get_provider_health", HealthParams, list[ProviderHealth],
     "Circuit state, counters, queue and latency percentiles of one provider, or of all."),
    ("get_usage_stats", UsageStatsParams, UsageStats,
     "Requests, errors, tokens, estimated cost and average latency since a date, in total and grouped."),
    ("list_chat_providers", None, list[ChatProviderInfo],
     "How each provider can back a Meilisearch chat workspace: natively (openAi, mistral, azureOpenAi) or "
     "through the sidecar's local proxy as a vLlm source."),
    ("configure_chat_workspace", ConfigureChatWorkspaceParams, ChatWorkspaceResult,
     "Set up a Meilisearch chat workspace for a provider: enables the chatCompletions experimental feature "
     "when off, starts the proxy when needed, and PATCHes the workspace settings; the key is never returned."),
    ("get_chat_workspace_settings", ChatWorkspaceParams, ChatWorkspaceSettings,
     "A Meilisearch chat workspace's settings, with its apiKey redacted."),
    ("start_llm_proxy", StartProxyParams, ProxyStarted,
     "Start the local OpenAI-compatible proxy (POST /v1/chat/completions, GET /v1/models) with model = "
     "provider:model; loopback only unless a host is given; already running with the same settings: its url."),
    ("stop_llm_proxy", None, ProxyStopped, "Stop the local proxy; false when it was not running."),
    ("is_llm_proxy_running", None, ProxyRunning, "Whether the local proxy is serving."),
    ("get_llm_proxy_url", None, ProxyUrl, "The running proxy's OpenAI base URL, or null."),
    ("list_proxy_providers", None, list[ProxyProvider],
     "Providers the proxy can route to (a key is available or none is needed), with their models."),
    ("save_api_key", SaveApiKeyParams, SaveApiKeyResult, "Save a key in the OS keychain."),
    ("get_api_key", ProviderParams, ApiKeyStatus, "Whether a key is available, and a preview; never the key."),
    ("delete_api_key", ProviderParams, DeletedResult, "Delete a saved key from the OS keychain."),
    ("list_saved_providers", None, list[SavedProvider], "Providers that have a key, and where it is."),
    ("sidecar_info", None, SidecarInfoResult, "Version, keychain backend and data dir."),
    ("shutdown", None, Empty, "Cancel every stream, answer, and exit."),
)
"""Every RPC method: name, params type (None: takes none), result type, summary.
The dispatcher's table and the schema are both built from this."""


def method_table(api: Api) -> dict[str, MethodSpec]:
    return {name: MethodSpec(getattr(api, name), params, result, summary) for name, params, result, summary in METHODS}
