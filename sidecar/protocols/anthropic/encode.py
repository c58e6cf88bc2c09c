"""Anthropic requests: the Messages API body (``POST {base_url}/v1/messages``) and the model list."""

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
from ..base import HttpRequest
from ..toolkit import KeyHeader, item_signature, json_headers, merge_options, parse_data_url, unsupported

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 8192
"""max_tokens for a model the catalog does not know (Anthropic requires the field)"""
MAX_DEFAULT_MAX_TOKENS = 16_384
"""cap on the catalog's max_output_tokens used as the default: room for a long answer, without
claiming a model's whole output window (64k for some) on every request"""
MIN_THINKING_BUDGET = 1024
"""Anthropic's lower bound for ``budget_tokens``"""
EFFORT_BUDGET = {"low": 2048, "medium": 8192, "high": 16_384}
TOOL_CHOICE = {"auto": "auto", "none": "none", "required": "any"}
JSON_TOOL = "json_response"
"""the tool whose input is the answer when response_format asks for JSON (module docstring)"""


def _cache_control() -> dict[str, str]:
    """A fresh breakpoint marker each time: the body is the caller's to change."""
    return {"type": "ephemeral"}



def _source(part: ImagePart) -> dict[str, Any]:
    """Base64 data when there is some (nothing to fetch), else the URL; a data: URL is unpacked."""
    if isinstance(part.data, str):
        return {"type": "base64", "media_type": part.media_type, "data": part.data}
    if isinstance(part.url, str):
        inline = parse_data_url(part.url)
        if inline is not None:
            return {"type": "base64", "media_type": inline[0] or part.media_type, "data": inline[1]}
        return {"type": "url", "url": part.url}
    raise SidecarError("invalid_request", "an image part needs data or url")


def _image(part: ImagePart) -> dict[str, Any]:
    """An image block; a PDF goes in a document block, which takes the same source."""
    kind = "document" if part.media_type == "application/pdf" else "image"
    return {"type": kind, "source": _source(part)}


def _kind(part: ContentPart) -> str:
    tag = part.__struct_config__.tag  # the tag field is not an attribute
    return str(tag)


def _user_blocks(content: str | list[ContentPart], role: str) -> list[dict[str, Any]]:
    """Text and images: what a user turn or a tool result can hold."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for p in content:
        if isinstance(p, TextPart):
            if p.text:  # Anthropic refuses empty text blocks
                blocks.append({"type": "text", "text": p.text})
        elif isinstance(p, ImagePart):
            blocks.append(_image(p))
        else:
            raise SidecarError("invalid_request", f"a {role} message cannot hold a {_kind(p)} part")
    return blocks


def _assistant_blocks(content: str | list[ContentPart]) -> list[dict[str, Any]]:
    """In the order given; thinking blocks go back exactly as they came, signature and all."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for p in content:
        if isinstance(p, TextPart):
            if p.text:
                blocks.append({"type": "text", "text": p.text})
        elif isinstance(p, ToolCallPart):
            blocks.append({"type": "tool_use", "id": p.id, "name": p.name, "input": p.arguments})
        elif isinstance(p, ReasoningPart):
            if isinstance(p.signature, str) and p.signature and not item_signature(p.signature):
                # even with empty text: the signature is the point
                blocks.append({"type": "thinking", "thinking": p.text, "signature": p.signature})
        elif isinstance(p, RedactedReasoningPart):
            blocks.append({"type": "redacted_thinking", "data": p.data})
        else:
            raise SidecarError("invalid_request", f"an assistant message cannot hold a {_kind(p)} part")
    return blocks


def _tool_result(msg: ToolMessage) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": msg.tool_call_id}
    if isinstance(msg.content, str):
        if msg.content:
            block["content"] = msg.content
    else:
        parts = _user_blocks(msg.content, "tool")
        if parts:
            block["content"] = parts
    if msg.is_error is True:
        block["is_error"] = True
    return block


def encode_messages(params: StreamTextParams) -> tuple[list[str], list[dict[str, Any]]]:
    """(system texts, messages). Consecutive turns of one role become one message, so consecutive
    tool results (and a user message right after them) share the user turn Anthropic expects."""
    system = [params.system] if isinstance(params.system, str) and params.system else []
    turns: list[dict[str, Any]] = []

    def push(role: str, blocks: list[dict[str, Any]]) -> None:
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += blocks
        else:
            turns.append({"role": role, "content": blocks})

    for msg in params.messages:
        if isinstance(msg, SystemMessage):
            if msg.content:
                system.append(msg.content)
        elif isinstance(msg, UserMessage):
            push("user", _user_blocks(msg.content, "user"))
        elif isinstance(msg, ToolMessage):
            push("user", [_tool_result(msg)])
        elif isinstance(msg, AssistantMessage):
            blocks = _assistant_blocks(msg.content)
            if blocks:  # an empty assistant turn is refused; leaving it out loses nothing
                push("assistant", blocks)
    for turn in turns:  # plain text stays a plain string: the shape every compatible server takes
        blocks = turn["content"]
        if len(blocks) == 1 and blocks[0]["type"] == "text":
            turn["content"] = blocks[0]["text"]
        elif not blocks:
            turn["content"] = ""
    return system, turns


def _mark_last_user_turn(turns: list[dict[str, Any]]) -> None:
    for turn in reversed(turns):
        if turn["role"] != "user":
            continue
        if isinstance(turn["content"], str):
            if turn["content"]:
                turn["content"] = [{"type": "text", "text": turn["content"], "cache_control": _cache_control()}]
        elif turn["content"]:
            turn["content"][-1]["cache_control"] = _cache_control()
        return


def _catalog_max_output(provider: Provider, model: str) -> int | None:
    for m in provider.models:
        if m.id == model:
            return m.max_output_tokens
    return None


def _thinking_budget(params: StreamTextParams) -> tuple[int | None, bool]:
    """(budget, whether the caller gave the number itself)."""
    r = params.reasoning
    if isinstance(r, msgspec.UnsetType):
        return None, False
    if isinstance(r.budget_tokens, int):
        return r.budget_tokens, True
    return EFFORT_BUDGET[r.effort if isinstance(r.effort, str) else "medium"], False


def _limits(params: StreamTextParams, provider: Provider, model: str) -> tuple[int, int | None]:
    """(max_tokens, thinking budget). Anthropic needs max_tokens, and a budget below it.

    A given max_tokens is the cap on everything generated, thinking included (Anthropic's meaning); an
    effort-derived budget is lowered to fit under it. The default leaves the answer its own room on
    top of the budget, within the model's output limit when the catalog knows it.
    """
    budget, explicit = _thinking_budget(params)
    if isinstance(params.max_tokens, int):
        max_tokens = params.max_tokens
        if budget is not None and budget >= max_tokens:
            if explicit or max_tokens <= MIN_THINKING_BUDGET:
                raise SidecarError(
                    "invalid_request",
                    f"max_tokens ({max_tokens}) must exceed the thinking budget ({budget}); Anthropic's "
                    f"smallest budget is {MIN_THINKING_BUDGET}",
                )
            budget = max_tokens - 1
        return max_tokens, budget
    limit = _catalog_max_output(provider, model)
    base = min(limit, MAX_DEFAULT_MAX_TOKENS) if limit else DEFAULT_MAX_TOKENS
    if budget is None:
        return base, None
    max_tokens = budget + base
    if limit and max_tokens > limit:
        max_tokens = max(limit, budget + 1)
    return max_tokens, budget


def wants_json(params: StreamTextParams) -> bool:
    rf = params.response_format
    return not isinstance(rf, msgspec.UnsetType) and rf.type != "text"


def _json_tool(params: StreamTextParams) -> dict[str, Any]:
    """The tool that carries a JSON answer: its input schema is the answer's."""
    rf = params.response_format
    assert not isinstance(rf, msgspec.UnsetType)
    schema: dict[str, Any] = {"type": "object"}
    if rf.type == "json_schema" and isinstance(rf.schema, dict):
        kind = rf.schema.get("type", "object")
        if kind != "object":
            raise SidecarError(
                "invalid_request",
                f"response_format: Anthropic answers JSON through a tool call, whose input is always an object; "
                f"the schema's type must be 'object', not {kind!r}",
            )
        schema = {"type": "object", **rf.schema}
    what = f" ({rf.name})" if isinstance(rf.name, str) and rf.name else ""
    return {"name": JSON_TOOL, "input_schema": schema,
            "description": f"Give your final answer{what} by calling this tool: its input is the answer."}


def _tool_choice(params: StreamTextParams, json_mode: bool, user_tools: bool, thinking: bool) -> dict[str, Any] | None:
    """Anthropic's tool_choice; ``None``: leave it out (the API's default, auto)."""
    choice = params.tool_choice
    wire: dict[str, Any] | None = None
    if isinstance(choice, ToolChoiceName):
        wire = {"type": "tool", "name": choice.name}
    elif json_mode:
        if thinking:
            wire = {"type": "auto"}  # forced tool use is refused with thinking
        elif user_tools and choice != "none":
            wire = {"type": "any"}  # call a tool, or answer through the JSON tool
        else:
            wire = {"type": "tool", "name": JSON_TOOL}
    elif isinstance(choice, str):
        wire = {"type": TOOL_CHOICE[choice]}
    if params.parallel_tool_calls is False and (wire is None or wire["type"] != "none"):
        wire = {"type": "auto"} if wire is None else wire
        wire["disable_parallel_tool_use"] = True
    return wire


def encode_body(params: StreamTextParams, provider: Provider, model: str, *, stream: bool = True) -> dict[str, Any]:
    system, messages = encode_messages(params)
    max_tokens, budget = _limits(params, provider, model)
    cache = params.cache is True
    body: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "messages": messages}
    if system:
        text = "\n\n".join(system)
        body["system"] = [{"type": "text", "text": text, "cache_control": _cache_control()}] if cache else text
    json_mode = wants_json(params)
    tools: list[dict[str, Any]] = [
        {
            "name": t.name,
            **({"description": t.description} if isinstance(t.description, str) else {}),
            "input_schema": t.parameters,
        }
        for t in (params.tools if isinstance(params.tools, list) else ())
    ]
    user_tools = bool(tools)
    if json_mode:
        if any(t["name"] == JSON_TOOL for t in tools):
            raise SidecarError("invalid_request", f"a tool named {JSON_TOOL!r} clashes with response_format's "
                                                  "(Anthropic gets JSON through a tool of that name)")
        tools.append(_json_tool(params))
    if tools:
        if cache:
            tools[-1]["cache_control"] = _cache_control()
        body["tools"] = tools
        choice = _tool_choice(params, json_mode, user_tools, budget is not None)
        if choice is not None:
            body["tool_choice"] = choice
    if cache:
        _mark_last_user_turn(messages)
    if budget is not None:
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    if isinstance(params.temperature, float | int):
        body["temperature"] = params.temperature
    if isinstance(params.top_p, float | int):
        body["top_p"] = params.top_p
    if isinstance(params.stop, list) and params.stop:
        body["stop_sequences"] = params.stop
    body["stream"] = stream
    return merge_options(body, provider, params)


def dropped(params: StreamTextParams) -> list[WarningEvent]:
    """The settings the request gave that the Messages API has no counterpart for."""
    return unsupported("anthropic", "seed") if isinstance(params.seed, int) else []


def api_root(provider: Provider) -> str:
    """The API root with its version: ``https://api.anthropic.com`` -> ``.../v1`` (also taken as given)."""
    base = provider.base_url.rstrip("/")
    return base if base.endswith("/v1") else f"{base}/v1"


KEY = KeyHeader("x-api-key")


def _headers(provider: Provider, api_key: str | None, accept: str) -> dict[str, str]:
    return json_headers(provider, api_key, accept, KEY, {"anthropic-version": API_VERSION})


def encode_request(params: StreamTextParams, provider: Provider, model: str, api_key: str | None) -> HttpRequest:
    body = encode_body(params, provider, model)
    headers = _headers(provider, api_key, "text/event-stream")
    return HttpRequest("POST", f"{api_root(provider)}/messages", headers, msgspec.json.encode(body),
                       warnings=dropped(params))


def models_request(provider: Provider, api_key: str | None) -> HttpRequest:
    """One page of up to 1000 models: the whole list (the API's default page is 20)."""
    headers = _headers(provider, api_key, "application/json")
    return HttpRequest("GET", f"{api_root(provider)}/models?limit=1000", headers)

