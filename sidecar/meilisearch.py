"""Meilisearch chat workspaces: which ``source`` a provider maps to, and the few HTTP calls that set one up.

Meilisearch (v1.16 on) talks itself to OpenAI, Mistral and Azure OpenAI; every other provider reaches it
through the sidecar's local OpenAI-compatible proxy, declared as a ``vLlm`` source whose ``baseUrl`` is the
proxy and whose ``apiKey`` is the proxy's token. A workspace holds no model: the caller names one in each
``POST /chats/{workspace}/chat/completions``, so ``configure`` only returns the string to send.

A provider key is sent to Meilisearch (it needs it to call the provider) but is never logged, never put in
a message and never returned: Meilisearch's own masked ``apiKey`` shows the key's first characters, so the
sidecar replaces it with ``[redacted]``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import msgspec
from msgspec import UNSET

from .credentials import redact
from .errors import SidecarError, header_safe
from .framing import MAX_BODY_BYTES, read_body
from .providers import Provider, Registry
from .providers.routing import route as route_api
from .types import (
    ChatPrompts,
    ChatProviderInfo,
    ChatSource,
    ChatWorkspaceParams,
    ChatWorkspaceResult,
    ChatWorkspaceSettings,
    ConfigureChatWorkspaceParams,
    ErrorCode,
    KeySource,
    StreamTextParams,
)

log = logging.getLogger("sidecar.meilisearch")

TIMEOUT = 5.0
"""seconds for each call: these are small settings requests to a server the user runs"""
REDACTED = "[redacted]"

NATIVE: dict[str, ChatSource] = {"openai": "openAi", "mistral": "mistral", "azure-openai": "azureOpenAi"}
"""built-in provider id -> the Meilisearch source that calls it directly"""
DEFAULT_BASE_URL: dict[str, str] = {"openAi": "https://api.openai.com/v1", "mistral": "https://api.mistral.ai/v1"}
"""where Meilisearch goes when a workspace has no baseUrl"""

PROMPT_FIELDS = {
    "system": "system",
    "search_description": "searchDescription",
    "search_q_param": "searchQParam",
    "search_filter_param": "searchFilterParam",
    "search_index_uid_param": "searchIndexUidParam",
}
SETTING_FIELDS = {
    "source": "source",
    "base_url": "baseUrl",
    "org_id": "orgId",
    "project_id": "projectId",
    "deployment_id": "deploymentId",
    "api_version": "apiVersion",
}


class ProxyLike(Protocol):
    """The local proxy as this module needs it (``App.proxy``)."""

    async def ensure_running(self) -> tuple[str, str]:
        """Start it if needed; its base URL (``http://127.0.0.1:PORT/v1``) and bearer token."""
        ...


class KeyResolver(Protocol):
    async def key_for(self, provider: Provider, url: str) -> str | None: ...

    def known_source(self, provider: Provider) -> KeySource | None: ...


# --- pure mapping ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChatRoute:
    """How Meilisearch reaches one provider."""

    source: ChatSource
    native: bool
    base_url: str | None = None
    """native sources only: the baseUrl to set (None: Meilisearch's default for the source)"""
    api_version: str | None = None


PROXY_ROUTE = ChatRoute("vLlm", native=False)


def needs_responses(provider: Provider, model: str) -> bool:
    """Whether ``model`` (``provider:`` prefixed or not) is reached through OpenAI's Responses API
    (``providers.routing``), which no native Meilisearch source speaks."""
    bare = chat_model(provider, model, PROXY_ROUTE)
    model = bare.partition(":")[2] if bare else model
    return route_api(StreamTextParams(messages=[]), provider, model).protocol == "openai-responses"


def chat_route(provider: Provider) -> ChatRoute:
    """The Meilisearch source for ``provider``: native for OpenAI, Mistral and Azure, the proxy otherwise."""
    source = NATIVE.get(provider.id)
    if source is None:
        return PROXY_ROUTE
    base = provider.base_url.rstrip("/")
    if source == "azureOpenAi":
        # Meilisearch's Azure client appends /openai/deployments/{id}/...; the catalog's URL ends in /openai
        base = re.sub(r"/openai$", "", base)
        return ChatRoute(source, native=True, base_url=base, api_version=provider.api_version or "2024-10-21")
    return ChatRoute(source, native=True, base_url=None if base == DEFAULT_BASE_URL[source] else base)


def chat_model(provider: Provider, model: str | None, route: ChatRoute) -> str | None:
    """The ``model`` a chat completion request names: ``provider:model`` through the proxy, the bare id otherwise.

    ``model`` may carry the ``provider:`` prefix (``ollama:llama3.2:3b``) or not (``llama3.2:3b``).
    """
    if model is not None:
        prefix, sep, rest = model.partition(":")
        if sep and prefix == provider.id and rest:
            model = rest
    if not model:
        return None
    return model if route.native else f"{provider.id}:{model}"


def settings_body(
    route: ChatRoute,
    *,
    api_key: str | None,
    model: str | None = None,
    proxy_url: str | None = None,
    prompts: ChatPrompts | None = None,
) -> dict[str, Any]:
    """The camelCase PATCH body. Fields another source would have left are reset with null (a PATCH keeps
    what it does not name), so switching a workspace from the proxy back to OpenAI drops the proxy's URL."""
    body: dict[str, Any] = {"source": route.source}
    if route.source == "vLlm":
        if not proxy_url:
            raise SidecarError("internal", "the local proxy gave no URL")
        body["baseUrl"] = proxy_url
    else:
        body["baseUrl"] = route.base_url
    if route.source == "azureOpenAi":
        if not model:
            raise SidecarError("invalid_request", "azure-openai needs model: the name of the Azure deployment",
                               provider="azure-openai")
        body["deploymentId"] = model
        body["apiVersion"] = route.api_version
    else:
        body["deploymentId"] = None
        body["apiVersion"] = None
    if api_key is not None:
        body["apiKey"] = api_key
    if prompts is not None:
        mapped = {PROMPT_FIELDS[k]: v for k, v in msgspec.structs.asdict(prompts).items() if v is not UNSET}
        if mapped:
            body["prompts"] = mapped
    return body


def public_settings(raw: Any) -> ChatWorkspaceSettings:
    """Meilisearch's settings answer in snake_case, with ``apiKey`` replaced by ``[redacted]``."""
    if not isinstance(raw, dict):
        raise SidecarError("protocol_error", "Meilisearch answered the chat settings request with no JSON object")

    def text(value: Any) -> str | None:
        return value if isinstance(value, str) else None

    out = ChatWorkspaceSettings()
    for ours, theirs in SETTING_FIELDS.items():
        setattr(out, ours, text(raw.get(theirs)))
    out.api_key = REDACTED if raw.get("apiKey") else None
    prompts = raw.get("prompts")
    if isinstance(prompts, dict):
        out.prompts = ChatPrompts(**{
            ours: prompts[theirs] for ours, theirs in PROMPT_FIELDS.items() if isinstance(prompts.get(theirs), str)
        })
    return out


# --- errors ------------------------------------------------------------------------------------

_AUTH_CODES = {"missing_authorization_header": "authentication_failed", "invalid_api_key": "authentication_failed"}


def error_code(status: int, meili_code: str | None) -> ErrorCode:
    """A Meilisearch error as a contract code: by its ``code`` first, then by the HTTP status."""
    if status == 401:
        return "authentication_failed"
    if status == 403:
        return "permission_denied"
    if meili_code in _AUTH_CODES:
        return "authentication_failed"
    if status == 404 or (meili_code or "").endswith("_not_found"):
        return "not_found"
    if status == 408:
        return "timeout"
    if status == 429:
        return "rate_limited"
    if status >= 500:
        return "upstream_unavailable"
    return "invalid_request"  # feature_not_enabled, bad_request, invalid_chat_* and the other 4xx


def response_error(status: int, content: bytes, secrets: tuple[str | None, ...]) -> SidecarError:
    """The SidecarError for a non-2xx answer, carrying Meilisearch's message (with any secret removed)."""
    message = code = None
    try:
        body = msgspec.json.decode(content)
    except msgspec.DecodeError:
        body = None
    if isinstance(body, dict):
        message = body.get("message") if isinstance(body.get("message"), str) else None
        code = body.get("code") if isinstance(body.get("code"), str) else None
    text = message or f"HTTP {status}"
    for secret in secrets:
        text = redact(text, secret)
    if len(text) > 500:
        text = text[:500] + "…"
    suffix = f" ({code})" if code else ""
    return SidecarError(error_code(status, code), f"Meilisearch: {text}{suffix}", status=status)


# --- the HTTP client ---------------------------------------------------------------------------


def _base(url: str) -> str:
    if not re.match(r"^https?://[^/\s@]+(/\S*)?$", url):
        raise SidecarError("invalid_request", "meilisearch_url must be an http:// or https:// URL without user info")
    return url.rstrip("/")


class MeilisearchClient:
    """A few Meilisearch routes, with errors mapped to contract codes. Its own short-lived httpx client,
    without the environment's proxies: Meilisearch often runs on this machine."""

    def __init__(self, url: str, api_key: str | None, *, secrets: tuple[str | None, ...] = (),
                 timeout: float = TIMEOUT) -> None:
        self.url = _base(url)
        split = urlsplit(self.url)
        self.where = f"{split.scheme}://{split.netloc}"
        if api_key is not None and (not api_key or not header_safe(api_key) or " " in api_key):
            raise SidecarError("invalid_request", "meilisearch_api_key must be printable ASCII without spaces")
        self.headers = {"accept": "application/json"}
        if api_key:
            self.headers["authorization"] = f"Bearer {api_key}"
        self.secrets = (api_key, *secrets)
        self.timeout = timeout

    async def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Send one request; the decoded JSON answer (None for an empty one)."""
        import httpx

        content = None if body is None else msgspec.json.encode(body)
        headers = dict(self.headers)
        if content is not None:
            headers["content-type"] = "application/json"
        try:
            async with httpx.AsyncClient(trust_env=False, timeout=self.timeout) as client, \
                    client.stream(method, self.url + path, content=content, headers=headers) as response:
                status = response.status_code
                answer = await read_body(response.aiter_bytes(), MAX_BODY_BYTES, f"Meilisearch at {self.where}",
                                         "its answer")
        except httpx.TimeoutException:
            raise SidecarError("timeout", f"Meilisearch at {self.where} did not answer within {self.timeout:g} s"
                               ) from None
        except httpx.HTTPError as exc:  # its text may hold the URL; name the type only
            raise SidecarError("network_error", f"Could not reach Meilisearch at {self.where} "
                               f"({type(exc).__name__})") from None
        if status >= 400:
            raise response_error(status, answer, self.secrets)
        if not answer.strip():
            return None
        try:
            return msgspec.json.decode(answer)
        except msgspec.DecodeError:
            raise SidecarError("protocol_error", f"Meilisearch answered {method} {path} with something not JSON",
                               status=status) from None

    async def ensure_chat_enabled(self) -> bool:
        """Switch the chatCompletions experimental feature on when it is off; whether this call did."""
        features = await self.request("GET", "/experimental-features")
        if isinstance(features, dict) and features.get("chatCompletions") is True:
            return False
        await self.request("PATCH", "/experimental-features", {"chatCompletions": True})
        return True

    async def patch_settings(self, workspace: str, body: dict[str, Any]) -> Any:
        path = f"/chats/{quote(workspace, safe='')}/settings"
        answer = await self.request("PATCH", path, body)
        if answer is None:  # v1.15 answered an empty 200
            answer = await self.request("GET", path)
        return answer

    async def get_settings(self, workspace: str) -> Any:
        return await self.request("GET", f"/chats/{quote(workspace, safe='')}/settings")


# --- the service behind the RPC methods ----------------------------------------------------------


def _workspace(name: str) -> str:
    if not name or len(name) > 400 or not name.isprintable():
        raise SidecarError("invalid_request", "workspace must be 1 to 400 printable characters")
    return name


class ChatWorkspaces:
    def __init__(self, registry: Registry, credentials: KeyResolver, proxy: Callable[[], ProxyLike],
                 active_model: Callable[[str], str | None] = lambda provider: None,
                 allowed: Callable[[str], bool] = lambda url: False) -> None:
        self.registry = registry
        self.allowed = allowed
        """whether the app allowed this Meilisearch (``--allow-meilisearch``) to receive providers' own keys"""
        self.credentials = credentials
        self.proxy = proxy
        """returns the proxy; called only when a provider needs it (it may start it)"""
        self.active_model = active_model
        """the active model of a provider, if it is the active one"""

    def list_providers(self) -> list[ChatProviderInfo]:
        out = []
        for p in self.registry.all():
            route = chat_route(p)
            has_key = not p.requires_api_key or self.credentials.known_source(p) is not None
            out.append(ChatProviderInfo(provider=p.id, name=p.name, native=route.native, source=route.source,
                                        needs_proxy=not route.native, has_api_key=has_key))
        return out

    async def configure(self, params: ConfigureChatWorkspaceParams) -> ChatWorkspaceResult:
        workspace = _workspace(params.workspace)
        provider = self.registry.get(params.provider)
        route = chat_route(provider)
        if route.native and not self.allowed(params.meilisearch_url):
            # The app did not allow this Meilisearch to hold the provider's key: it gets the proxy's token instead.
            log.info("Meilisearch at %s is not allowed to hold %s's key: using the local proxy",
                     _base(params.meilisearch_url), provider.id)
            route = PROXY_ROUTE
        # the given model, else the active one when this provider is active, else the catalog's first
        wanted = params.model if isinstance(params.model, str) else None
        wanted = wanted or self.active_model(provider.id) or next(iter(provider.default_models), None)
        if route.native and wanted is not None and needs_responses(provider, wanted):
            route = PROXY_ROUTE  # Meilisearch's own sources speak Chat Completions only
        model = chat_model(provider, wanted, route)
        if route.source == "azureOpenAi":
            if "YOUR-RESOURCE" in (route.base_url or ""):
                raise SidecarError("invalid_request", "set azure-openai's base_url (your resource) with "
                                   "configure_provider first", provider=provider.id)
            if model is None:
                raise SidecarError("invalid_request", "azure-openai needs model: the name of the Azure deployment",
                                   provider=provider.id)
        key: str | None = None
        if route.native:  # Meilisearch calls the provider itself with this key: check it before any request
            key = await self.credentials.key_for(provider, provider.base_url)
        prompts = params.prompts if isinstance(params.prompts, ChatPrompts) else None
        client = MeilisearchClient(params.meilisearch_url, _opt(params.meilisearch_api_key), secrets=(key,))
        enabled = await client.ensure_chat_enabled()
        proxy_url = None
        if not route.native:  # the proxy's token is the key Meilisearch sends it
            proxy_url, key = await self.proxy().ensure_running()
            client.secrets = (*client.secrets, key)
        body = settings_body(route, api_key=key, model=model, proxy_url=proxy_url, prompts=prompts)
        answer = await client.patch_settings(workspace, body)
        log.info("configured Meilisearch chat workspace %r for %s (source %s)", workspace, provider.id, route.source)
        return ChatWorkspaceResult(
            workspace=workspace, provider=provider.id, source=route.source, uses_proxy=not route.native,
            settings=public_settings(answer), model=model or UNSET, feature_enabled=enabled,
        )

    async def get_settings(self, params: ChatWorkspaceParams) -> ChatWorkspaceSettings:
        client = MeilisearchClient(params.meilisearch_url, _opt(params.meilisearch_api_key))
        return public_settings(await client.get_settings(_workspace(params.workspace)))


def _opt(value: str | msgspec.UnsetType) -> str | None:
    return value if isinstance(value, str) else None
