"""What the protocols share when they build a request: the body merge (``extra_body`` then
``provider_options``), plain settings under the API's names, OpenAI's tool shapes (which Ollama and Cohere
take too), the headers with a pluggable key header, data: URLs, and the warning for a setting a protocol
cannot send. (Reading error bodies is in ``http_errors``; the interface every protocol provides is in
``base``.)"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from ..errors import SidecarError
from ..providers.model import Provider
from ..types import ContentPart, ImagePart, StreamTextParams, ToolCallPart, ToolDefinition, WarningEvent

# --- the body ---------------------------------------------------------------------------


def merge(into: dict[str, Any], extra: Mapping[str, Any]) -> None:
    """``extra`` over ``into``, in place: where both hold an object they merge key by key (at every depth),
    any other value replaces, and ``null`` deletes the key. What is taken from ``extra`` is copied where it is
    an object, so merging never changes ``extra`` (a provider's ``extra_body`` serves every request)."""
    for key, value in extra.items():
        if value is None:
            into.pop(key, None)
        elif isinstance(value, dict):
            target = into.get(key)
            if not isinstance(target, dict):
                target = into[key] = {}
            merge(target, value)
        else:
            into[key] = value


ROUTING_OPTIONS = frozenset({"api"})
"""``provider_options`` the sidecar itself reads to route a request (``providers.routing``): never sent, as the
APIs refuse parameters they do not know"""


def merge_options(body: dict[str, Any], provider: Provider, params: StreamTextParams) -> dict[str, Any]:
    """The provider's ``extra_body``, then the request's ``provider_options`` (but the routing fields), merged
    over the body the protocol built (the rule of ``merge``); returns ``body``."""
    if provider.extra_body:
        merge(body, provider.extra_body)
    if isinstance(params.provider_options, dict):
        merge(body, {k: v for k, v in params.provider_options.items() if k not in ROUTING_OPTIONS})
    return body


def given(params: StreamTextParams, names: Mapping[str, str]) -> dict[str, Any]:
    """The plain settings the request gave, under the API's names: ``{"top_p": "topP"}`` -> ``{"topP": 0.9}``."""
    out: dict[str, Any] = {}
    for ours, theirs in names.items():
        value = getattr(params, ours)
        if value is not msgspec.UNSET:
            out[theirs] = value
    return out


def function_tools(tools: list[ToolDefinition]) -> list[dict[str, Any]]:
    """Tools in OpenAI's ``{"type": "function", "function": {...}}`` shape (Ollama and Cohere take it too)."""
    return [
        {
            "type": "function",
            "function": {
                "name": t.name,
                **({"description": t.description} if isinstance(t.description, str) else {}),
                "parameters": t.parameters,
            },
        }
        for t in tools
    ]


def function_calls(content: list[ContentPart]) -> list[dict[str, Any]]:
    """An assistant message's tool calls in OpenAI's shape (the arguments as JSON text), as Cohere takes them too."""
    return [
        {
            "id": p.id,
            "type": "function",
            "function": {"name": p.name, "arguments": msgspec.json.encode(p.arguments).decode()},
        }
        for p in content
        if isinstance(p, ToolCallPart)
    ]


# --- headers ----------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyHeader:
    """How a protocol sends the API key: the header's name, and what goes before the key."""

    name: str
    prefix: str = ""


BEARER = KeyHeader("authorization", "Bearer ")


def json_headers(
    provider: Provider,
    api_key: str | None,
    accept: str,
    key: KeyHeader = BEARER,
    fixed: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """JSON in, ``accept`` out, the protocol's ``fixed`` headers, the provider's own headers (which may
    replace those), and the key in its header when there is one."""
    headers = {"content-type": "application/json", "accept": accept, **(fixed or {}), **provider.headers}
    if api_key:
        headers[key.name] = key.prefix + api_key
    return headers


# --- images -----------------------------------------------------------------------------


def parse_data_url(url: str) -> tuple[str, str] | None:
    """``data:image/png;base64,AAAA`` -> (``image/png``, ``AAAA``); the media type is ``""`` when the URL
    names none. None for anything that is not a base64 data: URL."""
    if not url.startswith("data:") or ";base64," not in url:
        return None
    head, data = url[5:].split(";base64,", 1)
    return head.split(";", 1)[0], data


def image_url(part: ImagePart) -> str:
    """The URL an image part is sent as: its URL, or its data as a data: URL."""
    if isinstance(part.url, str):
        return part.url
    if isinstance(part.data, str):
        return f"data:{part.media_type};base64,{part.data}"
    raise SidecarError("invalid_request", "an image part needs data or url")


# --- settings a protocol cannot send ------------------------------------------------------


def unsupported(protocol: str, *settings: str) -> list[WarningEvent]:
    """One ``warning`` event per setting the request gave that the protocol has no way to send."""
    return [
        WarningEvent(code="unsupported_setting", message=f"{protocol}: {name} is not supported and was not sent")
        for name in settings
    ]


def given_parallel_tool_calls(params: StreamTextParams) -> bool:
    """Whether ``parallel_tool_calls`` was given next to tools (without tools it means nothing anywhere)."""
    return isinstance(params.parallel_tool_calls, bool) and isinstance(params.tools, list) and bool(params.tools)


def item_signature(signature: str | object) -> bool:
    """Whether a reasoning part's signature is an OpenAI Responses reasoning item (a JSON object), which only
    that API can read. Anthropic's and Gemini's signatures are base64 and never start with ``{``; their
    encoders leave such reasoning out, as they do unsigned reasoning (a fallback or a switch of model in the
    middle of a conversation would otherwise send another provider's signature and be refused)."""
    return isinstance(signature, str) and signature.startswith("{")
