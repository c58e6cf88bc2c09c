"""Responses API requests: the ``POST {base_url}/responses`` body (``input`` items, tools, reasoning, text
format, store) and the model list (OpenAI's own)."""

from __future__ import annotations

from typing import Any

import msgspec

from ...errors import SidecarError
from ...providers.model import Provider
from ...types import (
    AssistantMessage,
    ContentPart,
    ImagePart,
    ReasoningPart,
    RedactedReasoningPart,
    StreamTextParams,
    SystemMessage,
    TextPart,
    ToolCallPart,
    ToolChoiceName,
    ToolMessage,
    UserMessage,
    WarningEvent,
)
from ..base import HttpRequest, text_of
from ..toolkit import BEARER, KeyHeader, given, image_url, json_headers, merge_options, unsupported

NAME = "openai-responses"
ENCRYPTED_REASONING = "reasoning.encrypted_content"
"""what ``include`` asks for when nothing is stored at OpenAI: reasoning items come back encrypted, to be sent
back on the next step"""
AZURE_KEY = KeyHeader("api-key")
"""Azure (a provider with an ``api_version``) takes the key in ``api-key``"""

PLAIN = {"temperature": "temperature", "top_p": "top_p"}
"""the settings sent as they are"""


def _kind(part: ContentPart) -> str:
    return str(part.__struct_config__.tag)  # the tag field is not an attribute


def _image(part: ImagePart) -> dict[str, Any]:
    """An image as ``input_image``; a PDF as ``input_file`` (a URL, or its data as a data: URL)."""
    if part.media_type == "application/pdf":
        if isinstance(part.data, str):
            return {"type": "input_file", "filename": "document.pdf",
                    "file_data": f"data:application/pdf;base64,{part.data}"}
        return {"type": "input_file", "file_url": image_url(part)}
    return {"type": "input_image", "image_url": image_url(part), "detail": "auto"}


def _user_content(content: str | list[ContentPart], role: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "input_text", "text": content}]
    out: list[dict[str, Any]] = []
    for p in content:
        if isinstance(p, TextPart):
            out.append({"type": "input_text", "text": p.text})
        elif isinstance(p, ImagePart):
            out.append(_image(p))
        else:
            raise SidecarError("invalid_request", f"a {role} message cannot hold a {_kind(p)} part")
    return out


def reasoning_item(part: ReasoningPart) -> msgspec.Raw | None:
    """The reasoning item a part's signature carries, to go back exactly as it came (the bytes the stream had);
    None for reasoning from elsewhere (another provider's signature, or none): the API could not read it."""
    sig = part.signature
    if not isinstance(sig, str) or not sig.startswith("{"):
        return None
    try:
        item = msgspec.json.decode(sig)
    except msgspec.DecodeError:
        return None
    if not isinstance(item, dict) or item.get("type") != "reasoning" or not isinstance(item.get("id"), str):
        return None
    return msgspec.Raw(sig.encode())


def _assistant_items(content: str | list[ContentPart]) -> list[Any]:
    """In the order given: reasoning items as received, text as an assistant message, calls as
    ``function_call`` items (without their ``fc_`` ids, which name stored items)."""
    if isinstance(content, str):
        return [_assistant_text(content)] if content else []
    items: list[Any] = []
    text: list[str] = []

    def flush() -> None:
        if text:
            items.append(_assistant_text("".join(text)))
            text.clear()

    for p in content:
        if isinstance(p, TextPart):
            text.append(p.text)
        elif isinstance(p, ToolCallPart):
            flush()
            items.append({"type": "function_call", "call_id": p.id, "name": p.name,
                          "arguments": msgspec.json.encode(p.arguments).decode()})
        elif isinstance(p, ReasoningPart):
            flush()
            raw = reasoning_item(p)
            if raw is not None:
                items.append(raw)
        elif isinstance(p, RedactedReasoningPart):
            continue  # another provider's: nothing the Responses API could read
        else:
            raise SidecarError("invalid_request", f"an assistant message cannot hold a {_kind(p)} part")
    flush()
    return items


def _assistant_text(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}


def stores(params: StreamTextParams) -> bool:
    """Whether the app asked OpenAI to keep the conversation (``provider_options.store: true``)."""
    opts = params.provider_options
    return isinstance(opts, dict) and opts.get("store") is True


def encode_input(params: StreamTextParams) -> list[Any]:
    """The ``input`` items. A tool message is a ``function_call_output``; its images follow in one user message
    after the run of outputs. Without storage, every output needs its call earlier in ``input`` (the API refuses
    one whose call it cannot see), so that is checked here, before the network."""
    out: list[Any] = []
    calls: set[str] = set()
    tool_images: list[dict[str, Any]] = []
    stored = stores(params)
    for i, msg in enumerate(params.messages):
        if tool_images and not isinstance(msg, ToolMessage):
            out.append({"role": "user", "content": tool_images})
            tool_images = []
        if isinstance(msg, SystemMessage):
            out.append({"role": "system", "content": msg.content})
        elif isinstance(msg, UserMessage):
            out.append({"role": "user", "content": _user_content(msg.content, "user")})
        elif isinstance(msg, AssistantMessage):
            items = _assistant_items(msg.content)
            calls.update(it["call_id"] for it in items if isinstance(it, dict) and it.get("type") == "function_call")
            out += items
        elif isinstance(msg, ToolMessage):
            if msg.tool_call_id not in calls and not stored:
                raise SidecarError(
                    "invalid_request",
                    f"messages[{i}]: tool result {msg.tool_call_id!r} has no tool call of that id in an earlier "
                    "assistant message; the Responses API needs the call next to its output when nothing is stored",
                )
            out.append({"type": "function_call_output", "call_id": msg.tool_call_id, "output": text_of(msg.content)})
            if not isinstance(msg.content, str):
                tool_images += [_image(p) for p in msg.content if isinstance(p, ImagePart)]
    if tool_images:
        out.append({"role": "user", "content": tool_images})
    return out


def _tools(params: StreamTextParams) -> list[dict[str, Any]]:
    """Function tools, ``strict: false``: strict mode (the Responses API's default) refuses schemas that leave
    properties optional."""
    return [
        {
            "type": "function",
            "name": t.name,
            **({"description": t.description} if isinstance(t.description, str) else {}),
            "parameters": t.parameters,
            "strict": False,
        }
        for t in (params.tools if isinstance(params.tools, list) else ())
    ]


def _text_format(params: StreamTextParams) -> dict[str, Any] | None:
    rf = params.response_format
    if isinstance(rf, msgspec.UnsetType) or rf.type == "text":
        return None
    if rf.type == "json_schema":
        name = rf.name if isinstance(rf.name, str) else "response"
        schema = rf.schema if isinstance(rf.schema, dict) else {}
        return {"type": "json_schema", "name": name, "schema": schema, "strict": False}
    return {"type": "json_object"}


def _reasons(params: StreamTextParams, provider: Provider, model: str) -> bool:
    """Whether to ask for encrypted reasoning: unless the catalog knows the model and it does not reason (the
    API refuses the ``include`` for those) and the request asks for no reasoning either."""
    if not isinstance(params.reasoning, msgspec.UnsetType):
        return True
    known = next((m for m in provider.models if m.id == model), None)
    return known is None or known.reasoning is True


def encode_body(params: StreamTextParams, provider: Provider, model: str, *, stream: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model}
    if isinstance(params.system, str) and params.system:
        body["instructions"] = params.system
    body["input"] = encode_input(params)
    tools = _tools(params)
    if tools:
        body["tools"] = tools
        if isinstance(params.parallel_tool_calls, bool):  # means nothing without tools
            body["parallel_tool_calls"] = params.parallel_tool_calls
    if isinstance(params.tool_choice, ToolChoiceName):
        body["tool_choice"] = {"type": "function", "name": params.tool_choice.name}
    elif isinstance(params.tool_choice, str):
        body["tool_choice"] = params.tool_choice
    body.update(given(params, PLAIN))
    if isinstance(params.max_tokens, int):
        body["max_output_tokens"] = params.max_tokens
    fmt = _text_format(params)
    if fmt is not None:
        body["text"] = {"format": fmt}
    if not isinstance(params.reasoning, msgspec.UnsetType):
        reasoning: dict[str, Any] = {}
        if isinstance(params.reasoning.effort, str):
            reasoning["effort"] = params.reasoning.effort
        reasoning["summary"] = "auto"
        body["reasoning"] = reasoning
    body["store"] = False
    if not stores(params) and _reasons(params, provider, model):
        body["include"] = [ENCRYPTED_REASONING]
    body["stream"] = stream
    return merge_options(body, provider, params)


def dropped(params: StreamTextParams) -> list[WarningEvent]:
    """The settings the request gave that the Responses API has no field for."""
    names = []
    if isinstance(params.stop, list) and params.stop:
        names.append("stop")
    if isinstance(params.seed, int):
        names.append("seed")
    if not isinstance(params.reasoning, msgspec.UnsetType) and isinstance(params.reasoning.budget_tokens, int):
        names.append("reasoning.budget_tokens")
    return unsupported(NAME, *names)


def headers(provider: Provider, api_key: str | None, accept: str) -> dict[str, str]:
    return json_headers(provider, api_key, accept, AZURE_KEY if provider.api_version else BEARER)


def encode_request(params: StreamTextParams, provider: Provider, model: str, api_key: str | None) -> HttpRequest:
    """``POST {base_url}{responses_path}``: the model (on Azure, the deployment's name) goes in the body."""
    body = encode_body(params, provider, model)
    url = f"{provider.base_url}{provider.responses_path}"
    return HttpRequest("POST", url, headers(provider, api_key, "text/event-stream"), msgspec.json.encode(body),
                       warnings=dropped(params))
