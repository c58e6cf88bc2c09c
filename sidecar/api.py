"""One small function per RPC method: take decoded params, call a service, return a wire type.

Each is declared once, by ``@rpc_method("summary")``: its name, params and result types are its signature."""

from __future__ import annotations

import logging
import sys
from functools import cached_property
from typing import TYPE_CHECKING

from msgspec import UNSET

from . import PROTOCOL_VERSION, __version__
from .credentials import clean_key
from .engine import EventSink
from .errors import SidecarError
from .providers import Provider, split_model
from .rpc import MethodRegistry, RequestContext
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
    CompactMessagesParams,
    CompactMessagesResult,
    CompleteChatResult,
    ConfigureChatWorkspaceParams,
    ConfigureProviderParams,
    CountTokensParams,
    CountTokensResult,
    DeletedResult,
    DiscoveredLocalModel,
    DiscoveredProvider,
    DiscoverLocalModelsParams,
    DiscoverParams,
    EmbedParams,
    EmbedResult,
    Empty,
    HealthParams,
    ListModelsParams,
    LocalModelIdParams,
    LocalModelInfo,
    LoopIdParams,
    LoopMessages,
    McpAddServerParams,
    McpCallToolParams,
    McpCallToolResult,
    McpListToolsParams,
    McpServerIdParams,
    McpServerInfo,
    McpToolInfo,
    ModelInfo,
    OAuthCancelResult,
    OAuthFlowParams,
    OAuthSignInStarted,
    OAuthSignOutResult,
    OAuthStartParams,
    OAuthStatus,
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
    RegisterLocalModelParams,
    RemovedResult,
    SaveApiKeyParams,
    SaveApiKeyResult,
    SavedProvider,
    SetActiveProviderParams,
    SidecarInfoResult,
    StartProxyParams,
    StreamStarted,
    StreamTextParams,
    SubmitToolApprovalParams,
    SubmitToolApprovalResult,
    SubmitToolResultsParams,
    SubmitToolResultsResult,
    TestConnectionParams,
    TestConnectionResult,
    UnloadedResult,
    UsageStats,
    UsageStatsParams,
)

if TYPE_CHECKING:
    from pathlib import Path

    from .auth import Flows, SignIns
    from .credentials import Credentials
    from .engine import Engine
    from .lazy import Lazy
    from .local import LocalModels
    from .loop import LoopManager
    from .mcp.servers import McpHost
    from .meilisearch import ChatWorkspaces
    from .providers import Registry
    from .proxy import ProxyManager
    from .settings import SettingsStore
    from .trust import Trust
    from .usage import UsageStore

log = logging.getLogger("sidecar.api")

rpc_method = MethodRegistry()
"""Every RPC method, in the schema's order: the dispatcher's table and the schema are both built from it."""


class Api:
    def __init__(
        self,
        *,
        engine: Engine,
        registry: Registry,
        credentials: Credentials,
        settings: SettingsStore,
        trust: Trust,
        data_dir: Path,
        usage: Lazy[UsageStore],
        proxy: Lazy[ProxyManager],
        local: LocalModels,
        sign_ins: Lazy[SignIns],
        mcp: McpHost,
    ) -> None:
        self.engine = engine
        self.registry = registry
        self.credentials = credentials
        self.settings = settings
        self.trust = trust
        self.data_dir = data_dir
        self.usage = usage
        self.proxy = proxy
        self.local = local
        self.sign_ins = sign_ins
        self.mcp = mcp

    @cached_property
    def flows(self) -> Flows:
        """Sign-in flows, built (and imported) on first use."""
        from .auth import Flows

        return Flows(self.registry, self.sign_ins.get())

    @cached_property
    def loops(self) -> LoopManager:
        """Built on first use: start-up does not pay for the tool loop's module."""
        from .loop import LoopManager

        return LoopManager(self.engine, self.mcp)

    @cached_property
    def chat_workspaces(self) -> ChatWorkspaces:
        """Meilisearch chat set-up, built on first use; it builds the proxy only when one is needed."""
        from .meilisearch import ChatWorkspaces

        def active_model(provider: str) -> str | None:
            active = self.settings.value.active
            return active.model if active is not None and active.provider == provider else None

        return ChatWorkspaces(self.registry, self.credentials, self.proxy.get, active_model,
                              self.trust.allows_meilisearch)

    def info(self, provider: Provider) -> ProviderInfo:
        cfg = provider.config()
        source = self.credentials.known_source(provider) if provider.configurable else None
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
            auth=provider.auth,  # type: ignore[arg-type]
            signed_in=self.credentials.signed_in(provider) if provider.oauth is not None else UNSET,
        )

    # --- streaming ----------------------------------------------------------------------

    @rpc_method("Start a stream; its events follow as llm-stream-<stream_id> notifications.")
    async def llm_stream_text(self, ctx: RequestContext, params: StreamTextParams) -> StreamStarted:
        stream_id, scope, prepared = await self.engine.open(params.stream_id, params)
        sink = EventSink(stream_id, ctx.server.notify, after=ctx.responded)
        ctx.spawn(lambda: self.engine.run_stream(prepared, sink, scope))
        return StreamStarted(stream_id=stream_id)

    @rpc_method("Abort a stream; it ends with an error event of code cancelled.")
    async def llm_abort_stream(self, ctx: RequestContext, params: AbortStreamParams) -> AbortStreamResult:
        return AbortStreamResult(aborted=self.engine.abort(params.stream_id))

    @rpc_method("Run a request to its end and return the whole answer.")
    async def complete_chat(self, ctx: RequestContext, params: StreamTextParams) -> CompleteChatResult:
        return await self.engine.complete_chat(params)

    @rpc_method(
        "Embed texts: one vector per input, in order, sent in batches of the provider's limit (openai, gemini, "
        "cohere and ollama protocols, and local: models registered with embedding: true)."
    )
    async def llm_embed(self, ctx: RequestContext, params: EmbedParams) -> EmbedResult:
        return await self.engine.embed(params)

    @rpc_method(
        "Count a request's input tokens: exact where the provider counts (Anthropic count_tokens, Gemini "
        "countTokens, Cohere tokenize, llama.cpp and llama-cpp-python tokenize, local models' tokenizer), else the "
        "sidecar's calibrated estimate (exact: false); with the model's context window where it is known."
    )
    async def count_tokens(self, ctx: RequestContext, params: CountTokensParams) -> CountTokensResult:
        return await self.engine.count_tokens(params, self.local.count_tokens)

    @rpc_method(
        "Compact a conversation now: its oldest turns replaced by one summary written by summary_model (default "
        "model), down to target_tokens (default half the model's window); the same as context: compact does."
    )
    async def llm_compact_messages(self, ctx: RequestContext, params: CompactMessagesParams) -> CompactMessagesResult:
        return await self.engine.compact_messages(params)

    @rpc_method(
        "Start a tool loop: the sidecar streams step after step on llm-stream-<stream_id>, asking for tool "
        "results (tool_calls_requested) until the model answers without tools, max_steps is reached, or it fails."
    )
    async def llm_chat_loop_start(self, ctx: RequestContext, params: ChatLoopParams) -> ChatLoopStarted:
        loop = await self.loops.open(params)
        sink = EventSink(loop.stream_id, ctx.server.notify, after=ctx.responded)
        ctx.spawn(lambda: self.loops.run(loop, sink, ctx.server.input_closed))
        return ChatLoopStarted(loop_id=loop.loop_id, stream_id=loop.stream_id)

    @rpc_method("Answer a tool loop's tool_calls_requested with the results of all its calls; the loop goes on.")
    async def llm_submit_tool_results(
        self, ctx: RequestContext, params: SubmitToolResultsParams
    ) -> SubmitToolResultsResult:
        return self.loops.submit(params)

    @rpc_method(
        "Answer a tool loop's tool_approval_requested: approve or deny each MCP tool call (a denied one goes back "
        "to the model as an error result with the reason)."
    )
    async def llm_submit_tool_approval(
        self, ctx: RequestContext, params: SubmitToolApprovalParams
    ) -> SubmitToolApprovalResult:
        return self.loops.approve(params)

    @rpc_method(
        "A tool loop's conversation so far (input, assistant turns, tool results) and its state; ended loops "
        "are kept for a while."
    )
    async def llm_get_loop_messages(self, ctx: RequestContext, params: LoopIdParams) -> LoopMessages:
        return self.loops.messages(params.loop_id)

    # --- MCP servers ---------------------------------------------------------------------

    @rpc_method(
        "Add or replace an MCP server (persisted; secret_env and secret_headers values go to the keychain). Only "
        "when the sidecar was started with --allow-mcp: an MCP server is a program."
    )
    async def mcp_add_server(self, ctx: RequestContext, params: McpAddServerParams) -> McpServerInfo:
        return await self.mcp.add(params)

    @rpc_method("Stop and forget an MCP server added with mcp_add_server (--allow-mcp only).")
    async def mcp_remove_server(self, ctx: RequestContext, params: McpServerIdParams) -> RemovedResult:
        return await self.mcp.remove(params.id)

    @rpc_method("The MCP servers (--mcp-config's and those added) with their status; never an env or header value.")
    async def mcp_list_servers(self, ctx: RequestContext) -> list[McpServerInfo]:
        return self.mcp.servers()

    @rpc_method("The tools of one MCP server, or of all, with their JSON schemas (servers start if needed).")
    async def mcp_list_tools(self, ctx: RequestContext, params: McpListToolsParams) -> list[McpToolInfo]:
        return await self.mcp.list_tools(params.server if isinstance(params.server, str) else None)

    @rpc_method("Call an MCP server's tool and return its result content.")
    async def mcp_call_tool(self, ctx: RequestContext, params: McpCallToolParams) -> McpCallToolResult:
        return await self.mcp.call_tool(params)

    # --- providers and models -----------------------------------------------------------

    @rpc_method("Built-in and custom providers, sorted by id.")
    async def list_providers(self, ctx: RequestContext) -> list[ProviderInfo]:
        return [self.info(p) for p in self.registry.all()]

    @rpc_method("Models of one provider, or of all.")
    async def llm_list_available_models(self, ctx: RequestContext, params: ListModelsParams) -> list[ModelInfo]:
        providers = [self.registry.get(params.provider)] if isinstance(params.provider, str) else self.registry.all()
        return await self.engine.list_models(providers, params.refresh)

    @rpc_method("Add or replace a custom provider (persisted).")
    async def llm_register_custom_provider(self, ctx: RequestContext, params: ProviderConfig) -> ProviderInfo:
        return self.info(self.registry.register(params))

    @rpc_method("Remove a custom provider.")
    async def llm_remove_custom_provider(self, ctx: RequestContext, params: ProviderIdParams) -> RemovedResult:
        return RemovedResult(removed=self.registry.remove(params.id))

    @rpc_method("Override a provider's base_url, headers, api_key_env, extra_body, limits, models' context windows, "
                "(OpenAI-style) protocol or (custom providers) oauth sign-in (persisted; null resets a field).")
    async def configure_provider(self, ctx: RequestContext, params: ConfigureProviderParams) -> ProviderInfo:
        provider = self.registry.configure(params)
        self.engine.forget_models(provider.id)
        return self.info(provider)

    @rpc_method("Find model servers running on this machine (Ollama, LM Studio, llama.cpp, vLLM, Jan).")
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

    # --- local models --------------------------------------------------------------------------

    @rpc_method("Register a GGUF file as local:<id> (its header is read, not its weights; persisted).")
    async def register_local_model(self, ctx: RequestContext, params: RegisterLocalModelParams) -> LocalModelInfo:
        import anyio

        info = await anyio.to_thread.run_sync(self.local.register, params)
        self.engine.forget_models("local")  # llm_list_available_models lists it now
        return info

    @rpc_method("The registered local models, and whether each is loaded.")
    async def list_local_models(self, ctx: RequestContext) -> list[LocalModelInfo]:
        return self.local.all()

    @rpc_method("Unload a local model now, freeing its memory (it loads again on its next request).")
    async def unload_local_model(self, ctx: RequestContext, params: LocalModelIdParams) -> UnloadedResult:
        self.local.get(params.id)
        return UnloadedResult(unloaded=await self.local.unload(params.id))

    @rpc_method("Forget a local model (unloading it; the file stays).")
    async def unregister_local_model(self, ctx: RequestContext, params: LocalModelIdParams) -> RemovedResult:
        import anyio

        removed = await anyio.to_thread.run_sync(self.local.unregister, params.id)
        self.engine.forget_models("local")
        return RemovedResult(removed=removed)

    @rpc_method("GGUF files on this machine: the data dir's models/, LM Studio's and Ollama's model folders.")
    async def discover_local_models(
        self, ctx: RequestContext, params: DiscoverLocalModelsParams
    ) -> list[DiscoveredLocalModel]:
        import anyio

        from .local.discover import default_dirs, discover, requested_dirs

        dirs = requested_dirs(params.dirs) if isinstance(params.dirs, list) else default_dirs(self.data_dir)
        return await anyio.to_thread.run_sync(discover, dirs)

    @rpc_method("Choose the provider and model used when a request names none (persisted).")
    async def set_active_provider(self, ctx: RequestContext, params: SetActiveProviderParams) -> ProviderInfo:
        provider = self.registry.get(params.provider)
        model = params.model
        if ":" in model and model.split(":", 1)[0] == provider.id:
            model = split_model(model)[1]
        if not model:
            raise SidecarError("invalid_request", "model must not be empty")
        key = clean_key(params.api_key) if isinstance(params.api_key, str) else None
        previous = self.settings.set_active(ActiveProvider(provider=provider.id, model=model))
        if key is not None:
            try:
                await self.credentials.save(provider, key)
            except BaseException:
                try:  # all or nothing: the key failed, so the choice is undone too
                    self.settings.set_active(previous)
                except SidecarError as exc:
                    log.error("could not restore the active provider after a failed key save: %s", exc.info.message)
                raise
        return self.info(provider)

    @rpc_method("The active provider and model, or null.")
    async def get_active_provider(self, ctx: RequestContext) -> ActiveProvider | None:
        return self.settings.value.active

    @rpc_method("Check a key and base URL with a cheap authenticated call.")
    async def test_provider_connection(
        self, ctx: RequestContext, params: TestConnectionParams
    ) -> TestConnectionResult:
        return await self.engine.test_connection(params)

    @rpc_method("Circuit state, counters, queue and latency percentiles of one provider, or of all.")
    async def get_provider_health(self, ctx: RequestContext, params: HealthParams) -> list[ProviderHealth]:
        if isinstance(params.provider, str):
            ids = [self.registry.get(params.provider).id]  # unknown_provider
        else:
            ids = [p.id for p in self.registry.all()]
        return self.engine.health.snapshot(ids)

    @rpc_method("Requests, errors, tokens, estimated cost and average latency since a date, in total and grouped.")
    async def get_usage_stats(self, ctx: RequestContext, params: UsageStatsParams) -> UsageStats:
        import anyio.to_thread

        # in a worker thread: a long history must not hold up the streams on the event loop
        return await anyio.to_thread.run_sync(self.usage.get().stats, params)

    # --- Meilisearch chat workspaces ------------------------------------------------------

    @rpc_method(
        "How each provider can back a Meilisearch chat workspace: natively (openAi, mistral, azureOpenAi) or "
        "through the sidecar's local proxy as a vLlm source."
    )
    async def list_chat_providers(self, ctx: RequestContext) -> list[ChatProviderInfo]:
        return self.chat_workspaces.list_providers()

    @rpc_method(
        "Set up a Meilisearch chat workspace for a provider: enables the chatCompletions experimental feature "
        "when off, starts the proxy when needed, and PATCHes the workspace settings; the key is never returned."
    )
    async def configure_chat_workspace(
        self, ctx: RequestContext, params: ConfigureChatWorkspaceParams
    ) -> ChatWorkspaceResult:
        return await self.chat_workspaces.configure(params)

    @rpc_method("A Meilisearch chat workspace's settings, with its apiKey redacted.")
    async def get_chat_workspace_settings(
        self, ctx: RequestContext, params: ChatWorkspaceParams
    ) -> ChatWorkspaceSettings:
        return await self.chat_workspaces.get_settings(params)

    # --- the local OpenAI-compatible proxy ---------------------------------------------------

    @rpc_method(
        "Start the local OpenAI-compatible proxy (POST /v1/chat/completions, POST /v1/embeddings, GET /v1/models) "
        "with model = "
        "provider:model; loopback only unless a host is given; already running with the same settings: its url."
    )
    async def start_llm_proxy(self, ctx: RequestContext, params: StartProxyParams) -> ProxyStarted:
        url, token = await self.proxy.get().start(
            params.host if isinstance(params.host, str) else None,
            params.port if isinstance(params.port, int) else None,
            params.token if isinstance(params.token, str) else None,
        )
        return ProxyStarted(url=url, token=token)

    @rpc_method("Stop the local proxy; false when it was not running.")
    async def stop_llm_proxy(self, ctx: RequestContext) -> ProxyStopped:
        proxy = self.proxy.built
        return ProxyStopped(stopped=proxy is not None and await proxy.stop())

    @rpc_method("Whether the local proxy is serving.")
    async def is_llm_proxy_running(self, ctx: RequestContext) -> ProxyRunning:
        proxy = self.proxy.built
        return ProxyRunning(running=proxy is not None and proxy.running)

    @rpc_method("The running proxy's OpenAI base URL, or null.")
    async def get_llm_proxy_url(self, ctx: RequestContext) -> ProxyUrl:
        proxy = self.proxy.built
        return ProxyUrl(url=proxy.url if proxy is not None else None)

    @rpc_method("Providers the proxy can route to (a key is available or none is needed), with their models.")
    async def list_proxy_providers(self, ctx: RequestContext) -> list[ProxyProvider]:
        providers = self.proxy.get().providers()
        models = await self.engine.list_models(providers, False)
        return [ProxyProvider(id=p.id, name=p.name, protocol=p.protocol, is_local=p.is_local,
                              models=[m.id for m in models if m.provider == p.id]) for p in providers]

    # --- keys ---------------------------------------------------------------------------

    @rpc_method("Save a key in the OS keychain.")
    async def save_api_key(self, ctx: RequestContext, params: SaveApiKeyParams) -> SaveApiKeyResult:
        provider = self.registry.get(params.provider)
        await self.credentials.save(provider, clean_key(params.api_key))
        return SaveApiKeyResult(provider=provider.id, has_api_key=True)

    @rpc_method("Whether a key is available, and a preview; never the key.")
    async def get_api_key(self, ctx: RequestContext, params: ProviderParams) -> ApiKeyStatus:
        return await self.credentials.status(self.registry.get(params.provider))

    @rpc_method("Delete a saved key from the OS keychain.")
    async def delete_api_key(self, ctx: RequestContext, params: ProviderParams) -> DeletedResult:
        return DeletedResult(deleted=await self.credentials.delete(self.registry.get(params.provider)))

    @rpc_method("Providers that have a key, and where it is.")
    async def list_saved_providers(self, ctx: RequestContext) -> list[SavedProvider]:
        out = []
        for p in self.registry.all():
            source = self.credentials.known_source(p)
            if source is not None:
                out.append(SavedProvider(provider=p.id, has_api_key=True, source=source))
        return out

    # --- signing in (OAuth) ----------------------------------------------------------------

    @rpc_method(
        "Start signing in to a provider: a device code to show (kind device: verification_uri, user_code) or a URL "
        "for the app to open (kind browser: authorize_url); progress follows as oauth-<flow_id> notifications."
    )
    async def oauth_sign_in_start(self, ctx: RequestContext, params: OAuthStartParams) -> OAuthSignInStarted:
        server = ctx.server
        return await self.flows.start(params.provider, server.notify, ctx.spawn, ctx.responded, server.input_closed)

    @rpc_method("Cancel a sign-in; its oauth-<flow_id> notifications end with an error of code cancelled.")
    async def oauth_sign_in_cancel(self, ctx: RequestContext, params: OAuthFlowParams) -> OAuthCancelResult:
        return OAuthCancelResult(cancelled=self.flows.cancel(params.flow_id))

    @rpc_method("Whether a provider is signed in, as whom and until when; never a token.")
    async def oauth_status(self, ctx: RequestContext, params: ProviderParams) -> OAuthStatus:
        return await self.sign_ins.get().status(self.flows.provider(params.provider))

    @rpc_method("Sign out of a provider: its tokens are deleted from the keychain.")
    async def oauth_sign_out(self, ctx: RequestContext, params: ProviderParams) -> OAuthSignOutResult:
        return OAuthSignOutResult(signed_out=await self.sign_ins.get().sign_out(self.flows.provider(params.provider)))

    # --- the process ---------------------------------------------------------------------

    @rpc_method("Version, keychain backend and data dir.")
    async def sidecar_info(self, ctx: RequestContext) -> SidecarInfoResult:
        return SidecarInfoResult(
            version=__version__,
            protocol_version=PROTOCOL_VERSION,
            python=sys.version.split()[0],
            keyring_backend=await self.credentials.backend_name(),
            data_dir=str(self.data_dir),
        )

    @rpc_method("Cancel every stream, answer, and exit.")
    async def shutdown(self, ctx: RequestContext) -> Empty:
        async def stop_after_reply() -> None:
            await ctx.responded.wait()
            ctx.server.stop()

        ctx.spawn(stop_after_reply)
        return Empty()
