"""Every wire type, as msgspec Structs: the single source of the schema and the TypeScript types.

Optional wire fields default to ``UNSET`` so they are left out of the JSON when absent
(never sent as ``null``). Unknown fields are refused so a typo in a request is a
-32602 that names it, not a silently ignored option.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import UNSET, Meta, Struct, UnsetType, field


class Wire(Struct, forbid_unknown_fields=True):
    """Base of every wire type."""


# --- content -------------------------------------------------------------------------


class TextPart(Wire, tag_field="type", tag="text"):
    text: str


class ImagePart(Wire, tag_field="type", tag="image"):
    media_type: str
    data: str | UnsetType = UNSET
    """base64, without a data: prefix"""
    url: str | UnsetType = UNSET


class ToolCallPart(Wire, tag_field="type", tag="tool_call"):
    id: str
    name: str
    arguments: dict[str, Any]


class ReasoningPart(Wire, tag_field="type", tag="reasoning"):
    text: str
    signature: str | UnsetType = UNSET


class RedactedReasoningPart(Wire, tag_field="type", tag="redacted_reasoning"):
    data: str


ContentPart = TextPart | ImagePart | ToolCallPart | ReasoningPart | RedactedReasoningPart


class SystemMessage(Wire, tag_field="role", tag="system"):
    content: str


class UserMessage(Wire, tag_field="role", tag="user"):
    content: str | list[ContentPart]


class AssistantMessage(Wire, tag_field="role", tag="assistant"):
    content: str | list[ContentPart]


class ToolMessage(Wire, tag_field="role", tag="tool"):
    tool_call_id: str
    content: str | list[ContentPart]
    is_error: bool | UnsetType = UNSET


Message = SystemMessage | UserMessage | AssistantMessage | ToolMessage


class ToolDefinition(Wire):
    name: str
    parameters: dict[str, Any]
    description: str | UnsetType = UNSET


class ToolChoiceName(Wire):
    name: str


class ResponseFormat(Wire):
    type: Literal["text", "json_object", "json_schema"]
    schema: dict[str, Any] | UnsetType = UNSET
    name: str | UnsetType = UNSET


class ReasoningOptions(Wire):
    effort: Literal["low", "medium", "high"] | UnsetType = UNSET
    budget_tokens: int | UnsetType = UNSET


class Timeouts(Wire):
    connect_ms: int | UnsetType = UNSET
    first_byte_ms: int | UnsetType = UNSET
    idle_ms: int | UnsetType = UNSET
    total_ms: int | UnsetType = UNSET


class RetryOptions(Wire):
    max_retries: int | UnsetType = UNSET
    max_delay_ms: int | UnsetType = UNSET


# --- long conversations (issue 18) ----------------------------------------------------


class ContextOptions(Wire):
    """What a request does when its conversation does not fit the model's context window.

    ``error`` (the default) sends it as it is: the upstream's ``context_length_exceeded`` is the answer.
    ``trim`` drops the oldest turns, ``compact`` replaces them with one summary (a ``compacted`` event says
    so); both never drop a system message, the last user message, or one half of a tool call and its result,
    act before sending when the count says the request will not fit, and once more after an upstream
    ``context_length_exceeded``."""

    strategy: Literal["error", "trim", "compact"] = "error"
    reserve_output_tokens: Annotated[int, Meta(ge=0)] | UnsetType = UNSET
    """tokens of the window kept free for the answer (default: ``max_tokens`` when given, else the model's
    ``max_output_tokens`` up to a quarter of the window, else 1024)"""
    keep_last: Annotated[int, Meta(ge=0)] | UnsetType = UNSET
    """the last N messages are never dropped (widened so no tool call loses its result); the last user
    message and the last assistant turn are kept whatever this says"""
    summary_model: str | UnsetType = UNSET
    """``provider:model`` that writes the summary for ``compact`` (default: the request's own model)"""


class StreamTextParams(Wire):
    messages: list[Message]
    stream_id: str | UnsetType = UNSET
    model: str | UnsetType = UNSET
    system: str | UnsetType = UNSET
    tools: list[ToolDefinition] | UnsetType = UNSET
    tool_choice: Literal["auto", "none", "required"] | ToolChoiceName | UnsetType = UNSET
    parallel_tool_calls: bool | UnsetType = UNSET
    """false: at most one tool call per step (OpenAI ``parallel_tool_calls``, Anthropic
    ``disable_parallel_tool_use``); Gemini, Ollama and Cohere have no such switch: with tools, a ``warning``
    event says it was not sent"""
    temperature: float | UnsetType = UNSET
    top_p: float | UnsetType = UNSET
    max_tokens: int | UnsetType = UNSET
    stop: list[str] | UnsetType = UNSET
    seed: int | UnsetType = UNSET
    response_format: ResponseFormat | UnsetType = UNSET
    """JSON answers: the final text is checked (against ``schema`` for json_schema); when it is not that
    JSON the stream ends in an ``error`` with code ``protocol_error`` naming the first failing path"""
    reasoning: ReasoningOptions | UnsetType = UNSET
    provider_options: dict[str, Any] | UnsetType = UNSET
    """merged into the upstream request body after the provider's ``extra_body``: objects merge key by key,
    anything else replaces, ``null`` deletes"""
    fallback_models: list[str] | UnsetType = UNSET
    timeout_ms: int | UnsetType = UNSET
    timeouts: Timeouts | UnsetType = UNSET
    retry: RetryOptions | UnsetType = UNSET
    cache: bool | UnsetType = UNSET
    priority: Priority | UnsetType = UNSET
    """``interactive`` (the default) or ``background``: each provider's concurrency and rate queues serve every
    waiting interactive request first; a background one waits while any interactive one does. The tool loop
    gives it to each of its steps"""
    context: ContextOptions | UnsetType = UNSET
    """what to do when the conversation does not fit the model's context window (default: send it as it is)"""


# --- results -------------------------------------------------------------------------


class Usage(Wire):
    input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int | UnsetType = UNSET
    cached_input_tokens: int | UnsetType = UNSET
    cache_creation_tokens: int | UnsetType = UNSET
    estimated: bool | UnsetType = UNSET
    """true: the upstream reported no usage, so the sidecar counted the text it sent and received (with the
    server's tokenizer where it has one, else from the characters); absent when the upstream reported it"""
    cost_usd: float | UnsetType = UNSET
    """what the request cost in USD as the provider reported it (Claude Code's ``total_cost_usd``); the usage
    log records it instead of its estimate from the catalog's prices. Absent when the provider says nothing"""


ErrorCode = Literal[
    "invalid_request",
    "unknown_provider",
    "unknown_model",
    "missing_api_key",
    "authentication_failed",
    "permission_denied",
    "rate_limited",
    "context_length_exceeded",
    "content_filtered",
    "upstream_unavailable",
    "timeout",
    "network_error",
    "protocol_error",
    "cancelled",
    "keyring_unavailable",
    "storage_error",
    "key_host_mismatch",
    "not_found",
    "provider_not_installed",
    "internal",
]


class ErrorInfo(Wire):
    code: ErrorCode
    message: str
    retryable: bool = False
    provider: str | UnsetType = UNSET
    status: int | UnsetType = UNSET
    retry_after_ms: int | UnsetType = UNSET
    """when the upstream said how long to wait (Retry-After and the providers' reset headers)"""
    keychain: Literal["unavailable"] | UnsetType = UNSET
    """``missing_api_key`` when no OS keychain could be read: the message says how to get one"""


FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "other", "max_steps"]
"""``max_steps`` only ends a tool loop (``llm_chat_loop_start``) whose model still called tools at its last step"""
Protocol = Literal[
    "openai", "anthropic", "gemini", "ollama", "cohere", "claude-code", "llama-cpp", "mock", "openai-responses"
]
Api = Literal["responses", "chat"]
"""which of OpenAI's APIs a model is reached through: the Responses API (``POST /responses``, protocol
``openai-responses``) or Chat Completions (protocol ``openai``)"""
TransportKind = Literal["http", "process", "local", "mock"]
"""how the engine reaches a provider's model: HTTP, a child process, in this process, the built-in offline one"""


class ProviderConfig(Wire):
    id: str
    name: str
    protocol: Protocol
    base_url: str
    api_key_env: str | UnsetType = UNSET
    requires_api_key: bool = True
    headers: dict[str, str] | UnsetType = UNSET
    extra_body: dict[str, Any] | UnsetType = UNSET
    default_models: list[str] | UnsetType = UNSET
    oauth: OAuthConfig | UnsetType = UNSET
    """sign in instead of a key (custom providers: an app's own OpenAI-compatible gateway)"""


class ProviderInfo(Wire):
    id: str
    name: str
    protocol: Protocol
    base_url: str
    is_custom: bool
    is_local: bool
    has_api_key: bool
    key_source: Literal["keyring", "env"] | None
    requires_api_key: bool = True
    api_key_env: str | UnsetType = UNSET
    headers: dict[str, str] | UnsetType = UNSET
    extra_body: dict[str, Any] | UnsetType = UNSET
    default_models: list[str] | UnsetType = UNSET
    limits: ProviderLimits | UnsetType = UNSET
    auth: Literal["api_key", "oauth", "none"] | UnsetType = UNSET
    """how requests authenticate: a key, a sign-in (``oauth_sign_in_start``), or nothing"""
    signed_in: bool | UnsetType = UNSET
    """``auth: "oauth"`` only: tokens are saved for it (``oauth_status`` checks them)"""


class ModelInfo(Wire):
    id: str
    provider: str
    name: str
    context_window: int | UnsetType = UNSET
    max_output_tokens: int | UnsetType = UNSET
    supports_tools: bool | UnsetType = UNSET
    supports_vision: bool | UnsetType = UNSET
    supports_reasoning: bool | UnsetType = UNSET
    input_price: float | UnsetType = UNSET
    """list price in USD per 1M input tokens, where the catalog knows it"""
    output_price: float | UnsetType = UNSET
    """list price in USD per 1M output tokens (reasoning included)"""
    cached_input_price: float | UnsetType = UNSET
    """USD per 1M input tokens read from the prompt cache"""
    supports_embedding: bool | UnsetType = UNSET
    """true: an embedding model, for llm_embed (not for chat)"""
    api: Api | UnsetType = UNSET
    """the OpenAI API this model needs: ``responses`` for the models served only by the Responses API (requests
    for them go to ``/responses`` even on a provider whose protocol is ``openai``); absent: the provider's own.
    A request's ``provider_options.api`` overrides it"""


# --- method params and results ---------------------------------------------------------


class StreamStarted(Wire):
    stream_id: str


class AbortStreamParams(Wire):
    stream_id: str


class AbortStreamResult(Wire):
    aborted: bool


class CompleteChatResult(Wire):
    content: str
    parts: list[ContentPart]
    finish_reason: FinishReason
    usage: Usage
    model: str
    provider_metadata: dict[str, Any] | UnsetType = UNSET
    """as in the stream's ``done`` event (e.g. claude-code's ``session_id``, to resume the session)"""
    compacted: list[CompactedEvent] | UnsetType = UNSET
    """``context: {strategy: "compact"}``: the compactions made before sending, in order, as the stream's
    ``compacted`` events say them (apply them to the stored conversation the same way)"""


# --- embeddings (llm_embed) ----------------------------------------------------------------


class EmbedParams(Wire):
    model: str
    """``provider:model``: an embedding model (a catalog model with supports_embedding, or one the catalog
    does not know: a custom provider's, an Ollama model, a ``local:`` model registered with embedding: true)"""
    input: list[str]
    """the texts (at least one), one vector each, in this order; sent in batches of the provider's limit"""
    dimensions: Annotated[int, Meta(ge=1, le=65536)] | UnsetType = UNSET
    """shorter vectors, where the model can make them (OpenAI's text-embedding-3, Gemini, Cohere embed-v4)"""
    provider_options: dict[str, Any] | UnsetType = UNSET
    """merged into each request's body (Cohere's ``input_type``, Gemini's ``taskType``)"""
    priority: Priority | UnsetType = UNSET
    """as in llm_stream_text: ``background`` waits behind every waiting ``interactive`` request"""


class EmbedResult(Wire):
    embeddings: list[list[float]]
    """one vector per input, in the order of ``input``"""
    model: str
    """``provider:model``"""
    usage: Usage
    """input tokens as the provider reported them (``estimated: true`` where it reported none);
    output_tokens is 0"""


# --- the tool loop (llm_chat_loop_start) ------------------------------------------------


class ChatLoopParams(StreamTextParams):
    """A request the sidecar runs step after step: the model calls tools, the frontend runs them."""

    max_steps: Annotated[int, Meta(ge=1)] = 10
    """model turns at most; when the last one still calls tools the loop ends with finish_reason max_steps"""
    tool_timeout_ms: Annotated[int, Meta(ge=1)] = 600_000
    """how long to wait for llm_submit_tool_results before ending with error timeout"""
    mcp_servers: list[str] | UnsetType = UNSET
    """ids of MCP servers (mcp_list_servers) whose tools are offered beside ``tools``, named
    ``<server>__<tool>``; the sidecar runs them itself (started on first use)"""
    tool_approval: Literal["never", "always"] | dict[str, Literal["never", "always"]] | UnsetType = UNSET
    """whether an MCP tool call waits for llm_submit_tool_approval: ``never`` (the default), ``always``, or
    per tool by ``"<server>/<tool>"`` key (``"<server>/*"`` for a server's tools, ``"*"`` for the rest; a tool
    no key names needs approval)"""
    mcp_call_timeout_ms: Annotated[int, Meta(ge=1)] = 60_000
    """how long one MCP tool call may take; then it is cancelled and goes back to the model as an error"""


class ChatLoopStarted(Wire):
    loop_id: str
    stream_id: str
    """the loop's events, all steps in one seq, come as llm-stream-<stream_id>"""


class ToolCallRequest(Wire):
    tool_call_id: str
    name: str
    arguments: dict[str, Any]


class ToolResult(Wire):
    tool_call_id: str
    content: str | list[ContentPart]
    """text, or text and image parts"""
    is_error: bool | UnsetType = UNSET


class SubmitToolResultsParams(Wire):
    loop_id: str
    results: list[ToolResult]
    """one per requested call, all at once, in any order"""


class SubmitToolResultsResult(Wire):
    accepted: bool


class LoopIdParams(Wire):
    loop_id: str


LoopState = Literal["running", "waiting_for_tools", "done", "error", "cancelled", "waiting_for_approval"]


class LoopMessages(Wire):
    loop_id: str
    stream_id: str
    messages: list[Message]
    """the input messages, then every finished step's assistant turn and its tool results"""
    state: LoopState
    step: int
    """the step running or last run (1-based; 0 before the first starts)"""
    pending_tool_calls: list[ToolCallRequest] | UnsetType = UNSET
    """while waiting_for_tools: the calls whose results are awaited"""
    error: ErrorInfo | UnsetType = UNSET
    """when the loop ended with an error (or was cancelled)"""
    pending_approvals: list[ApprovalCall] | UnsetType = UNSET
    """MCP tool calls waiting for llm_submit_tool_approval"""


class ListModelsParams(Wire):
    provider: str | UnsetType = UNSET
    refresh: bool = False


class ProviderIdParams(Wire):
    id: str


class RemovedResult(Wire):
    removed: bool


class SetActiveProviderParams(Wire):
    provider: str
    model: str
    api_key: str | UnsetType = UNSET


class ActiveProvider(Wire):
    provider: str
    model: str


class TestConnectionParams(Wire):
    provider: str
    model: str | UnsetType = UNSET
    api_key: str | UnsetType = UNSET
    base_url: str | UnsetType = UNSET


class TestConnectionResult(Wire):
    ok: bool
    latency_ms: float
    error: ErrorInfo | UnsetType = UNSET


class SaveApiKeyParams(Wire):
    provider: str
    api_key: str


class SaveApiKeyResult(Wire):
    provider: str
    has_api_key: bool


class ProviderParams(Wire):
    provider: str


KeySource = Literal["keyring", "env"]


class ApiKeyStatus(Wire):
    provider: str
    has_api_key: bool
    source: KeySource | None
    preview: str | None
    keychain: Literal["unavailable"] | UnsetType = UNSET
    """no OS keychain could be read, so only the environment was consulted"""
    hint: str | UnsetType = UNSET
    """with ``keychain``: why, and how to get a keychain"""


class DeletedResult(Wire):
    deleted: bool


class SavedProvider(Wire):
    provider: str
    has_api_key: bool
    source: KeySource


class SidecarInfoResult(Wire):
    version: str
    protocol_version: int
    python: str
    keyring_backend: str | None
    data_dir: str


class ProviderLimits(Wire):
    """Per-provider defaults for resilience; a request's own ``timeouts``/``retry`` win over them."""

    timeouts: Timeouts | UnsetType = UNSET
    retry: RetryOptions | UnsetType = UNSET
    max_concurrency: int | UnsetType = UNSET
    """requests in flight at once; more wait in order"""
    requests_per_minute: float | UnsetType = UNSET
    """a token bucket: the sustained rate, with bursts up to one minute's worth"""
    breaker_threshold: int | UnsetType = UNSET
    """consecutive failures that open the circuit (default 5)"""
    breaker_cooldown_ms: int | UnsetType = UNSET
    """how long an open circuit fails fast before one probe request may pass (default 30000)"""


class ConfigureProviderParams(Wire):
    """Override a provider's connection settings; ``null`` puts a field back to its default."""

    id: str
    base_url: str | UnsetType | None = UNSET
    headers: dict[str, str] | UnsetType | None = UNSET
    api_key_env: str | UnsetType | None = UNSET
    extra_body: dict[str, Any] | UnsetType | None = UNSET
    limits: ProviderLimits | UnsetType | None = UNSET
    protocol: Literal["openai", "openai-responses"] | UnsetType | None = UNSET
    """an OpenAI-style provider's API: ``openai-responses`` sends every request to its Responses API
    (``/responses``), ``openai`` to Chat Completions; only between these two (issue 16)"""
    oauth: OAuthConfig | UnsetType | None = UNSET
    """custom providers only; changing an endpoint's host signs the provider out"""
    models: dict[str, ModelLimits] | UnsetType | None = UNSET
    """model id -> its context window and output limit, for models the catalog does not know or gets wrong
    (merged over earlier ones; ``null`` forgets them all)"""


class HealthParams(Wire):
    provider: str | UnsetType = UNSET


class ProviderHealth(Wire):
    provider: str
    state: Literal["closed", "open", "half_open"]
    requests: int
    """attempts finished since start (each retry counts)"""
    errors: int
    consecutive_failures: int
    in_flight: int
    queued: int
    error_counts: dict[str, int]
    latency_p50_ms: float | UnsetType = UNSET
    latency_p95_ms: float | UnsetType = UNSET
    queued_by_priority: QueuedByPriority = field(default_factory=lambda: QueuedByPriority())
    """``queued`` split by the requests' ``priority``"""


class UsageStatsParams(Wire):
    since: str | UnsetType = UNSET
    """ISO 8601 date or date-time (UTC when no offset); default: everything recorded"""
    group_by: Literal["provider", "model", "day"] | UnsetType = UNSET


class UsageGroup(Wire):
    key: str
    requests: int
    errors: int
    input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cached_input_tokens: int
    cost_usd: float
    """estimated from the catalog's prices; 0 for models without one"""
    estimated_requests: int = 0
    """requests whose token counts the sidecar counted itself (``usage.estimated``: the upstream reported none)"""
    avg_latency_ms: float | UnsetType = UNSET
    avg_ttft_ms: float | UnsetType = UNSET


class UsageStats(Wire):
    total: UsageGroup
    groups: list[UsageGroup]


class DiscoverParams(Wire):
    timeout_ms: int = 500
    ports: list[Annotated[int, Meta(ge=1, le=65535)]] | UnsetType = UNSET
    """ports to probe on 127.0.0.1; default: Ollama 11434, LM Studio 1234, llama.cpp 8080, vLLM 8000, Jan 1337"""


class RegisterLocalModelParams(Wire):
    """A GGUF file the sidecar runs itself, as ``local:<id>``."""

    id: Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    path: str
    """an absolute path to a ``.gguf`` file; its header is read (never its content returned)"""
    n_ctx: Annotated[int, Meta(ge=0, le=1 << 20)] | UnsetType = UNSET
    """context size; default: the model's own, at most 4096 (0: the model's own)"""
    n_threads: Annotated[int, Meta(ge=1, le=512)] | UnsetType = UNSET
    n_gpu_layers: Annotated[int, Meta(ge=-1, le=10_000)] | UnsetType = UNSET
    chat_format: Annotated[str, Meta(max_length=64)] | UnsetType = UNSET
    """a llama-cpp-python chat format (``chatml``, ``llama-3``...); default: the template in the file"""
    embedding: bool = False
    """the model also serves ``llm_embed``"""
    idle_unload_s: Annotated[float, Meta(ge=0)] = 300.0
    """unloaded after this long unused (0: right after each request)"""


class LocalModelInfo(Wire):
    """A registered local model, with what its file's header says."""

    id: str
    path: str
    embedding: bool = False
    idle_unload_s: float = 300.0
    n_ctx: int | UnsetType = UNSET
    n_threads: int | UnsetType = UNSET
    n_gpu_layers: int | UnsetType = UNSET
    chat_format: str | UnsetType = UNSET
    architecture: str | UnsetType = UNSET
    name: str | UnsetType = UNSET
    context_length: int | UnsetType = UNSET
    """the context the model was trained for (from the file)"""
    embedding_length: int | UnsetType = UNSET
    chat_template: str | UnsetType = UNSET
    size_bytes: int = 0
    loaded: bool = False


class LocalModelIdParams(Wire):
    id: str


class DiscoverLocalModelsParams(Wire):
    dirs: list[str] | UnsetType = UNSET
    """folders to search (absolute); default: the data dir's ``models/``, LM Studio's and Ollama's model folders"""


class DiscoveredLocalModel(Wire):
    path: str
    size_bytes: int
    source: Literal["data_dir", "lmstudio", "ollama", "dir"]
    architecture: str | UnsetType = UNSET
    name: str | UnsetType = UNSET
    context_length: int | UnsetType = UNSET


class UnloadedResult(Wire):
    unloaded: bool


class DiscoveredProvider(Wire):
    provider: str
    base_url: str
    models: list[str]
    version: str | UnsetType = UNSET


# --- Meilisearch chat workspaces (list_chat_providers, configure_chat_workspace) -----------

ChatSource = Literal["openAi", "mistral", "azureOpenAi", "vLlm"]
"""Meilisearch's ``source`` values (v1.16 on; it dropped its Gemini source)"""


class ChatProviderInfo(Wire):
    provider: str
    name: str
    native: bool
    """Meilisearch talks to the provider itself (openai, mistral, azure-openai)"""
    source: ChatSource
    needs_proxy: bool
    """Meilisearch reaches it through the sidecar's local proxy, as a ``vLlm`` source"""
    has_api_key: bool
    """a key is saved or in the environment (or the provider needs none)"""


class ChatPrompts(Wire):
    system: str | UnsetType = UNSET
    search_description: str | UnsetType = UNSET
    search_q_param: str | UnsetType = UNSET
    search_filter_param: str | UnsetType = UNSET
    search_index_uid_param: str | UnsetType = UNSET


class ChatWorkspaceParams(Wire):
    meilisearch_url: str
    """e.g. http://127.0.0.1:7700"""
    workspace: str
    meilisearch_api_key: str | UnsetType = UNSET
    """sent as ``Authorization: Bearer``; enabling the experimental feature needs the master key"""


class ConfigureChatWorkspaceParams(Wire):
    meilisearch_url: str
    workspace: str
    provider: str
    meilisearch_api_key: str | UnsetType = UNSET
    """must be allowed to change chat settings (and experimental features, while chat is off: the master key)"""
    model: str | UnsetType = UNSET
    """the model chat requests will name (``provider:`` prefix optional); for azure-openai the deployment.
    Meilisearch keeps no model in a workspace: it is sent with each chat completion request"""
    prompts: ChatPrompts | UnsetType = UNSET


class ChatWorkspaceSettings(Wire):
    """A workspace's settings as Meilisearch reports them, in snake_case, without the key."""

    source: str | None = None
    base_url: str | None = None
    org_id: str | None = None
    project_id: str | None = None
    deployment_id: str | None = None
    api_version: str | None = None
    api_key: str | None = None
    """``"[redacted]"`` when Meilisearch holds a key, null when none: a key is never returned"""
    prompts: ChatPrompts | UnsetType = UNSET


class ChatWorkspaceResult(Wire):
    workspace: str
    provider: str
    source: ChatSource
    uses_proxy: bool
    settings: ChatWorkspaceSettings
    model: str | UnsetType = UNSET
    """what to send as ``model`` in POST /chats/{workspace}/chat/completions (``provider:model`` through the
    proxy, the provider's own id otherwise); absent when no model was given and none is known"""
    feature_enabled: bool = False
    """true when this call switched on Meilisearch's chatCompletions experimental feature"""


# --- the local OpenAI-compatible proxy (start_llm_proxy, ...) ---------------------------------


class StartProxyParams(Wire):
    port: Annotated[int, Meta(ge=0, le=65535)] | UnsetType = UNSET
    """default: a free port (0)"""
    host: str | UnsetType = UNSET
    """default 127.0.0.1; a host that is not loopback opens the proxy to the network (the token still guards it)"""
    token: str | UnsetType = UNSET
    """the bearer token clients must send (at least 16 characters); default: a random one per start"""


class ProxyStarted(Wire):
    url: str
    """the OpenAI base URL, e.g. http://127.0.0.1:PORT/v1"""
    token: str
    """send as ``Authorization: Bearer <token>`` (the OpenAI SDKs' api_key)"""


class ProxyStopped(Wire):
    stopped: bool


class ProxyRunning(Wire):
    running: bool


class ProxyUrl(Wire):
    url: str | None


class ProxyProvider(Wire):
    id: str
    name: str
    protocol: Protocol
    is_local: bool
    models: list[str]
    """``provider:model`` ids to put in a request's ``model``"""


class Empty(Wire):
    pass


class SidecarReady(Wire):
    version: str
    protocol_version: int
    pid: int


# --- OAuth sign-in (issue 17) ----------------------------------------------------------


class OAuthConfig(Wire, kw_only=True):
    """How to sign in to a provider, in RFC 8414's names: the device grant (RFC 8628) or the authorization
    code grant with PKCE and a loopback redirect (RFC 7636, RFC 8252)."""

    flow: Literal["device", "browser"]
    device_authorization_endpoint: str | UnsetType = UNSET
    """``flow: "device"``: where the code is requested"""
    authorization_endpoint: str | UnsetType = UNSET
    """``flow: "browser"``: the page the app opens"""
    token_endpoint: str
    client_id: str
    """the public client's id (sent in the form body; there is no client secret)"""
    scopes: list[str] = []
    extra_params: dict[str, str] | UnsetType = UNSET
    """added to the device-code request or the authorize URL"""


class OAuthStartParams(Wire):
    provider: str


class OAuthSignInStarted(Wire):
    """Progress follows as ``oauth-<flow_id>`` notifications until ``signed_in`` or ``error``."""

    flow_id: str
    kind: Literal["device", "browser"]
    verification_uri: str | UnsetType = UNSET
    """device: the page where the user enters ``user_code``"""
    user_code: str | UnsetType = UNSET
    verification_uri_complete: str | UnsetType = UNSET
    """device, when the server gives one: the page with the code filled in"""
    expires_in: int | UnsetType = UNSET
    """seconds the code (device) or the listener (browser) stays valid"""
    authorize_url: str | UnsetType = UNSET
    """browser: the URL the app opens in the user's browser (the sidecar opens no windows)"""


class OAuthFlowParams(Wire):
    flow_id: str


class OAuthCancelResult(Wire):
    cancelled: bool


class OAuthStatus(Wire):
    provider: str
    signed_in: bool
    account: str | UnsetType = UNSET
    """who is signed in, where the provider says (an e-mail, a login); never a token"""
    expires_at: int | UnsetType = UNSET
    """unix time (seconds) the access token expires; it is refreshed before then"""


class OAuthSignOutResult(Wire):
    signed_out: bool


class OAuthEvent(Wire, tag_field="type", kw_only=True):
    """Params of an ``oauth-<flow_id>`` notification."""

    flow_id: str = ""


class OAuthPendingEvent(OAuthEvent, tag="pending"):
    """Still waiting for the user (each poll of the device flow; once when the browser flow listens)."""


class OAuthSignedInEvent(OAuthEvent, tag="signed_in"):
    account: str | UnsetType = UNSET


class OAuthErrorEvent(OAuthEvent, tag="error"):
    error: ErrorInfo


OAuthFlowEvent = OAuthPendingEvent | OAuthSignedInEvent | OAuthErrorEvent


# --- stream events (params of `llm-stream-<stream_id>` notifications) ------------------


class Event(Wire, tag_field="type", kw_only=True):
    """Common head of every stream event; the stream sets ``stream_id`` and ``seq``."""

    stream_id: str = ""
    seq: int = 0


class StartEvent(Event, tag="start"):
    provider: str
    model: str


class TextDeltaEvent(Event, tag="text_delta"):
    text: str


class ReasoningDeltaEvent(Event, tag="reasoning_delta"):
    text: str


class ReasoningEndEvent(Event, tag="reasoning_end"):
    signature: str | UnsetType = UNSET


class RedactedReasoningEvent(Event, tag="redacted_reasoning"):
    data: str


class ToolCallStartEvent(Event, tag="tool_call_start"):
    tool_call_id: str
    name: str
    index: int


class ToolCallDeltaEvent(Event, tag="tool_call_delta"):
    tool_call_id: str
    arguments_delta: str


class ToolCallEvent(Event, tag="tool_call"):
    tool_call_id: str
    name: str
    arguments: dict[str, Any]
    arguments_raw: str | UnsetType = UNSET
    """only when the model's arguments were not a JSON object: the text as it came"""


class UsageEvent(Event, tag="usage"):
    input_tokens: int
    output_tokens: int
    reasoning_tokens: int | UnsetType = UNSET
    cached_input_tokens: int | UnsetType = UNSET
    cache_creation_tokens: int | UnsetType = UNSET
    estimated: bool | UnsetType = UNSET
    """as in ``Usage``: counted by the sidecar because the upstream reported none"""
    cost_usd: float | UnsetType = UNSET
    """as in ``Usage``: the cost the provider reported"""


class RetryEvent(Event, tag="retry"):
    attempt: int
    delay_ms: int
    reason: ErrorCode


class FallbackEvent(Event, tag="fallback"):
    from_model: str
    to_model: str
    reason: ErrorCode


class DoneEvent(Event, tag="done"):
    finish_reason: FinishReason
    usage: Usage
    model: str
    latency_ms: float
    ttft_ms: float | UnsetType = UNSET
    provider_metadata: dict[str, Any] | UnsetType = UNSET
    """what the provider said about the answer that a later request can use, e.g. ``claude-code``'s
    ``session_id`` (send it back as ``provider_options.session_id`` to continue that session)"""


class ErrorEvent(Event, tag="error"):
    error: ErrorInfo


class WarningEvent(Event, tag="warning"):
    """Something in the request the upstream or protocol cannot honour and the sidecar dropped (e.g.
    ``seed`` for Anthropic): the request still goes; sent after ``start``, before any output."""

    code: str
    """machine-readable, e.g. ``unsupported_setting``"""
    message: str


class StepStartEvent(Event, tag="step_start"):
    """Tool loops only: a model turn begins (1-based); its own start event follows."""

    step: int


class ToolCallsRequestedEvent(Event, tag="tool_calls_requested"):
    """Tool loops only: run these and answer with llm_submit_tool_results; the loop waits."""

    loop_id: str
    step: int
    calls: list[ToolCallRequest]


class CompactedEvent(Event, tag="compacted"):
    """``context: {strategy: "compact"}``: the oldest messages were replaced by a summary before sending.

    The messages replaced are the ``removed_messages`` that follow the leading system messages; in their place
    went one system message, ``"Summary of the earlier conversation:\\n\\n" + summary``. An app that stores
    the conversation can make the same change and send the shorter history from then on."""

    removed_messages: int
    tokens_before: int
    """the request's input tokens before (the sidecar's count: an estimate unless the provider counted)"""
    tokens_after: int
    summary: str


# --- MCP: the sidecar as the app's MCP host (issue 19) ---------------------------------------


class McpServerConfig(Wire):
    """An MCP server the sidecar can run: a program on stdio, or a Streamable HTTP endpoint."""

    id: Annotated[str, Meta(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")]
    """its tools are offered to a model as ``<id>__<tool>``"""
    transport: Literal["stdio", "http"]
    command: str | UnsetType = UNSET
    """stdio: the program to run (in its own process group; stopped with the sidecar)"""
    args: list[str] | UnsetType = UNSET
    env: dict[str, str] | UnsetType = UNSET
    """stdio: variables added to the few it inherits (HOME, PATH, ...); the sidecar's own environment,
    keys included, is not passed on"""
    cwd: str | UnsetType = UNSET
    url: str | UnsetType = UNSET
    """http: the server's Streamable HTTP endpoint"""
    headers: dict[str, str] | UnsetType = UNSET
    secret_env: list[str] | UnsetType = UNSET
    """names in ``env`` whose values are kept in the OS keychain, never in the settings file"""
    secret_headers: list[str] | UnsetType = UNSET
    """names in ``headers`` whose values are kept in the OS keychain, never in the settings file"""


class McpAddServerParams(McpServerConfig):
    start: bool = False
    """start it now (and answer once it is ready or failed) rather than on first use"""


class McpServerIdParams(Wire):
    id: str


McpStatus = Literal["stopped", "starting", "ready", "failed"]


class McpServerInfo(Wire):
    """A server and where it stands; never an env or header value. Also the params of ``mcp-status``."""

    id: str
    transport: Literal["stdio", "http"]
    source: Literal["config", "settings"]
    """``config``: declared by the app with --mcp-config (RPC cannot change it); ``settings``: mcp_add_server"""
    status: McpStatus
    command: str | UnsetType = UNSET
    args: list[str] | UnsetType = UNSET
    url: str | UnsetType = UNSET
    env_names: list[str] | UnsetType = UNSET
    header_names: list[str] | UnsetType = UNSET
    error: str | UnsetType = UNSET
    """why it failed (or last failed)"""
    server_name: str | UnsetType = UNSET
    server_version: str | UnsetType = UNSET
    tool_count: int | UnsetType = UNSET
    pid: int | UnsetType = UNSET
    """stdio, while it runs"""
    restarts: int = 0


class McpListToolsParams(Wire):
    server: str | UnsetType = UNSET
    """one server's tools (started if needed); absent: those of every server, each started if needed"""


class McpToolInfo(Wire):
    server: str
    name: str
    """the tool's own name, as mcp_call_tool takes it"""
    tool_name: str
    """the name a model sees in a tool loop: ``<server>__<name>`` within the providers' name rules"""
    input_schema: dict[str, Any]
    description: str | UnsetType = UNSET


class McpCallToolParams(Wire):
    server: str
    name: str
    input: dict[str, Any] = {}
    """the tool's arguments (MCP's ``arguments``: a param may not be called that, since generated strict
    TypeScript clients, @open-rpc/generator's among them, cannot take a parameter named ``arguments``)"""
    timeout_ms: Annotated[int, Meta(ge=1)] = 60_000


class McpCallToolResult(Wire):
    content: list[dict[str, Any]]
    """the server's MCP content blocks as it sent them (text, image, audio, resource_link, resource)"""
    is_error: bool
    structured_content: dict[str, Any] | UnsetType = UNSET


class ApprovalCall(Wire):
    id: str
    """the model's tool_call_id"""
    server: str
    name: str
    """the MCP tool's own name (not ``<server>__<tool>``)"""
    arguments: dict[str, Any]


class ToolApprovalDecision(Wire):
    id: str
    approved: bool
    reason: str | UnsetType = UNSET
    """for a denial: goes back to the model with the error result"""


class SubmitToolApprovalParams(Wire):
    loop_id: str
    decisions: list[ToolApprovalDecision]
    """one per call of the tool_approval_requested event, all at once"""


class SubmitToolApprovalResult(Wire):
    accepted: bool


class ToolApprovalRequestedEvent(Event, tag="tool_approval_requested"):
    """Tool loops only: these MCP tool calls run once llm_submit_tool_approval approves them."""

    loop_id: str
    step: int
    calls: list[ApprovalCall]


class ToolResultEvent(Event, tag="tool_result"):
    """Tool loops only: an MCP tool call the sidecar made (or that was denied) has its result."""

    call_id: str
    server: str
    name: str
    is_error: bool
    preview: str
    """the start of the result's text (at most 200 characters)"""


StreamEvent = (
    StartEvent
    | TextDeltaEvent
    | ReasoningDeltaEvent
    | ReasoningEndEvent
    | RedactedReasoningEvent
    | ToolCallStartEvent
    | ToolCallDeltaEvent
    | ToolCallEvent
    | UsageEvent
    | RetryEvent
    | FallbackEvent
    | DoneEvent
    | ErrorEvent
    | StepStartEvent
    | ToolCallsRequestedEvent
    | WarningEvent
    | CompactedEvent
    | ToolApprovalRequestedEvent
    | ToolResultEvent
)

TERMINAL_EVENTS = (DoneEvent, ErrorEvent)


# --- priority classes (issue 18) ------------------------------------------------------------------------

Priority = Literal["interactive", "background"]
"""how a request queues for a provider's concurrency slots and rate tokens: waiting ``interactive`` requests
are served first"""


class QueuedByPriority(Wire):
    """requests waiting for a concurrency slot or a rate token, by class"""

    interactive: int = 0
    background: int = 0


# --- long conversations (issue 18) ----------------------------------------------------


class CountTokensParams(Wire):
    model: str
    """``provider:model``"""
    messages: list[Message]
    system: str | UnsetType = UNSET
    tools: list[ToolDefinition] | UnsetType = UNSET


class CountTokensResult(Wire):
    input_tokens: int
    exact: bool
    """true: the provider (or the local model's tokenizer) counted; false: the sidecar's calibrated estimate"""
    context_window: int | UnsetType = UNSET
    """the model's context window where the sidecar knows it (catalog, live model list, configure_provider's
    ``models``, or the limit an upstream stated in an overflow error)"""


class CompactMessagesParams(Wire):
    model: str
    """``provider:model`` the messages are meant for: its window is the default target"""
    messages: list[Message]
    target_tokens: Annotated[int, Meta(ge=1)] | UnsetType = UNSET
    """compact until the messages' estimate is at most this (default: half the model's context window)"""
    summary_model: str | UnsetType = UNSET
    """``provider:model`` that writes the summary (default: ``model``)"""
    system: str | UnsetType = UNSET
    """counted with the messages (never compacted)"""
    priority: Priority | UnsetType = UNSET
    """how the summary request queues (``background`` for compaction the app runs while the user waits for
    nothing; default ``interactive``)"""


class CompactMessagesResult(Wire):
    messages: list[Message]
    """the oldest turns replaced by one summary system message; unchanged when they already fit"""
    tokens_before: int
    tokens_after: int


class ModelLimits(Wire):
    """configure_provider's ``models``: what the sidecar should take as a model's limits."""

    context_window: Annotated[int, Meta(ge=1)] | UnsetType = UNSET
    max_output_tokens: Annotated[int, Meta(ge=1)] | UnsetType = UNSET
