"""The Anthropic Messages API (``POST {base_url}/v1/messages``, streamed as SSE with ``event:`` lines).

Choices where the API allows several readings:

- Usage: Anthropic's ``input_tokens`` leaves out the tokens read from or written to the prompt cache;
  the contract's ``input_tokens`` is every input token (as OpenAI's ``prompt_tokens`` is), so it is the
  sum ``input_tokens + cache_read_input_tokens + cache_creation_input_tokens``, with the two cache
  counts also reported on their own (``cached_input_tokens``, ``cache_creation_tokens``). A count in
  ``message_delta`` replaces the one from ``message_start`` (they are cumulative there), as the
  official SDK does.
- Server-side blocks (``server_tool_use``, ``web_search_tool_result``, ``web_fetch_tool_result``,
  ``mcp_tool_use``, ``mcp_tool_result``, code-execution results, ``compaction``, and any block type
  added later) are skipped: Anthropic has already run those tools, the client could not, so they give
  no ``tool_call`` events. The text blocks around them (citations included) are text as usual.
- ``pause_turn`` and unknown stop reasons finish as ``other``; ``model_context_window_exceeded``
  is a length limit (``length``).
- Reasoning parts without a signature are not sent back: Anthropic refuses a thinking block whose
  signature it cannot verify (such parts come from another provider's model).
- ``response_format`` (``json_object`` / ``json_schema``): the Messages API has no JSON mode, so the
  answer is asked for as a tool call, Anthropic's documented way to get JSON: one extra tool, ``json_response``,
  whose ``input_schema`` is the schema (``{"type": "object"}`` for json_object; a schema must describe an
  object, as a tool input always is one), chosen with ``tool_choice``. Without other tools it is forced
  (``{"type": "tool"}``); next to the caller's tools the choice is ``any``, so the model either calls one of
  them or answers through ``json_response``; with thinking on it is ``auto`` (Anthropic refuses a forced
  choice then). The decoder (made for the request, ``request_decoder``) turns that call back into text: its
  input's JSON goes out as ``text_delta`` events as it streams, no tool-call events, and a ``tool_use``
  stop with no other call finishes as ``stop``, so the frontend sees the JSON as the answer. Plain text the
  model writes around it (possible only under ``auto``) is held back: dropped once the JSON tool is called,
  relayed at the end otherwise (the engine then validates it like any answer).
- ``parallel_tool_calls: false`` is ``disable_parallel_tool_use`` on the tool choice (``auto`` when none given).
- ``seed`` has no Messages API counterpart and is not sent; ``provider_options`` can add anything the API grows.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..errors import SidecarError
from ..providers import Model, Provider
from ..types import (
    AssistantMessage,
    ContentPart,
    Event,
    FinishReason,
    ImagePart,
    ReasoningDeltaEvent,
    ReasoningEndEvent,
    ReasoningPart,
    RedactedReasoningEvent,
    RedactedReasoningPart,
    StreamTextParams,
    SystemMessage,
    TextDeltaEvent,
    TextPart,
    ToolCallDeltaEvent,
    ToolCallEvent,
    ToolCallPart,
    ToolCallStartEvent,
    ToolChoiceName,
    ToolMessage,
    Usage,
    UserMessage,
)
from .base import HttpRequest, WireProtocol, tool_call_event
from .http_errors import error_fields, upstream_error

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


# --- encode -----------------------------------------------------------------------------


def _source(part: ImagePart) -> dict[str, Any]:
    """Base64 data when there is some (nothing to fetch), else the URL; a data: URL is unpacked."""
    if isinstance(part.data, str):
        return {"type": "base64", "media_type": part.media_type, "data": part.data}
    if isinstance(part.url, str):
        if part.url.startswith("data:") and ";base64," in part.url:
            head, data = part.url[5:].split(";base64,", 1)
            return {"type": "base64", "media_type": head or part.media_type, "data": data}
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
            if isinstance(p.signature, str) and p.signature:  # even with empty text: the signature is the point
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
    body.update(provider.extra_body)
    if isinstance(params.provider_options, dict):
        body.update(params.provider_options)
    return body


def _root(provider: Provider) -> str:
    """The API root with its version: ``https://api.anthropic.com`` -> ``.../v1`` (also taken as given)."""
    base = provider.base_url.rstrip("/")
    return base if base.endswith("/v1") else f"{base}/v1"


def _headers(provider: Provider, api_key: str | None, accept: str) -> dict[str, str]:
    headers = {"content-type": "application/json", "accept": accept, "anthropic-version": API_VERSION,
               **provider.headers}
    if api_key:
        headers["x-api-key"] = api_key
    return headers


def encode_request(params: StreamTextParams, provider: Provider, model: str, api_key: str | None) -> HttpRequest:
    body = encode_body(params, provider, model)
    headers = _headers(provider, api_key, "text/event-stream")
    return HttpRequest("POST", f"{_root(provider)}/messages", headers, msgspec.json.encode(body))


def models_request(provider: Provider, api_key: str | None) -> HttpRequest:
    """One page of up to 1000 models: the whole list (the API's default page is 20)."""
    return HttpRequest("GET", f"{_root(provider)}/models?limit=1000", _headers(provider, api_key, "application/json"))


def parse_models(body: bytes) -> list[Model]:
    try:
        obj = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return []
    entries = obj.get("data") if isinstance(obj, dict) else None
    out: list[Model] = []
    for e in entries if isinstance(entries, list) else ():
        if isinstance(e, dict) and isinstance(e.get("id"), str) and e["id"]:
            name = e.get("display_name")
            out.append(Model(e["id"], name=name if isinstance(name, str) else ""))
    return out


# Anthropic's error types and the HTTP status each comes with (docs: "Errors"); inside a stream there
# is no status, so the type stands in for it when classifying.
_STATUS_OF_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
_CONTEXT_HINTS = ("prompt is too long", "exceed context limit", "context window")


def _error(provider: str, status: int | None, code: str, message: str) -> SidecarError:
    if any(h in message.lower() for h in _CONTEXT_HINTS):
        code = "context_length_exceeded"  # Anthropic says so in words, under invalid_request_error
    if status is None:  # inside a stream: classify by the type, report no HTTP status (it was 200)
        err = upstream_error(provider, _STATUS_OF_TYPE.get(code), code, message)
        err.info.status = msgspec.UNSET
        return err
    return upstream_error(provider, status, code, message)


def map_http_error(status: int, body: bytes, provider: str) -> SidecarError:
    """``{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}``; 529 is overloaded."""
    try:
        code, message = error_fields(msgspec.json.decode(body))
    except msgspec.DecodeError:
        code, message = "", body.decode("utf-8", "replace").strip()[:200]
    return _error(provider, status, code, message)


# --- decode -----------------------------------------------------------------------------


class _OutputDetails(msgspec.Struct):
    thinking_tokens: int | None = None


class _Usage(msgspec.Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    output_tokens_details: _OutputDetails | None = None


class _Message(msgspec.Struct):
    usage: _Usage | None = None


class _Block(msgspec.Struct):
    """A content_block_start's block; fields of the types not handled here are left undecoded."""

    type: str = ""
    id: str | None = None
    name: str | None = None
    input: Any = None
    text: str | None = None
    thinking: str | None = None
    signature: str | None = None
    data: str | None = None


class _Delta(msgspec.Struct):
    """A content_block_delta's delta, or a message_delta's."""

    type: str | None = None
    text: str | None = None
    partial_json: str | None = None
    thinking: str | None = None
    signature: str | None = None
    stop_reason: str | None = None


class _Event(msgspec.Struct):
    type: str = ""
    index: int | None = None
    message: _Message | None = None
    content_block: _Block | None = None
    delta: _Delta | None = None
    usage: _Usage | None = None
    error: Any = None


_decode_event = msgspec.json.Decoder(_Event).decode

FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


class _Open:
    """A content block between its start and its stop."""

    __slots__ = ("args", "id", "input", "kind", "name", "signature")

    def __init__(self, kind: str, id_: str = "", name: str = "", input_: Any = None) -> None:
        self.kind = kind
        """text, thinking, tool_use, json (the JSON answer's tool), or skip (server-side and unknown blocks)"""
        self.id = id_
        self.name = name
        self.input = input_
        self.args: list[str] = []
        self.signature = ""


class Decoder:
    """Messages API events to contract events. Content blocks are keyed by their ``index``; a tool call
    is announced at its block start and completed, with parsed arguments, at its block stop."""

    def __init__(self, provider: str = "anthropic", *, json_tool: str | None = None) -> None:
        self.provider = provider
        self.finish_reason: FinishReason | None = None
        self.usage: Usage | None = None
        self.complete = False
        self._open: dict[int, _Open] = {}
        self._counts: dict[str, int] = {}
        self._calls = 0
        self._blocks = 0
        """content blocks started so far: the index of one that comes without its own"""
        self._json_tool = json_tool
        """JSON mode: calls of this tool are the answer, relayed as text (module docstring)"""
        self._held: list[str] | None = [] if json_tool else None
        """JSON mode: plain text, held back until it is known whether the JSON tool is called"""
        self._json_called = False

    def feed(self, event: str, data: str) -> list[Event]:
        try:
            ev = _decode_event(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            if event == "error":
                raise self._stream_error(_loose_error(data)) from None
            raise SidecarError("protocol_error", f"{self.provider}: unparseable stream event ({exc})") from None
        kind = ev.type or event
        out: list[Event] = []
        if kind == "content_block_delta":
            self._block_delta(ev, out)
        elif kind == "content_block_start":
            self._block_start(ev, out)
        elif kind == "content_block_stop":
            block = self._open.pop(ev.index if ev.index is not None else -1, None)
            if block is not None:
                self._close(block, out)
        elif kind == "message_start":
            self._add_usage(ev.message.usage if ev.message else None)
        elif kind == "message_delta":
            self._add_usage(ev.usage)
            if ev.delta is not None and ev.delta.stop_reason:
                self.finish_reason = FINISH.get(ev.delta.stop_reason, "other")
                if self.finish_reason == "tool_calls" and self._json_called and not self._calls:
                    self.finish_reason = "stop"  # the only call was the answer
        elif kind == "message_stop":
            self.complete = True
        elif kind == "error" or event == "error":
            raise self._stream_error(ev.error if ev.error is not None else _loose_error(data))
        # ping, and event types added later: nothing to say
        return out

    def _stream_error(self, err: Any) -> SidecarError:
        code, message = error_fields({"error": err})
        return _error(self.provider, None, code, message or "error in the stream")

    def _block_start(self, ev: _Event, out: list[Event]) -> None:
        b, index = ev.content_block, ev.index if ev.index is not None else self._blocks
        self._blocks = index + 1
        if b is None:
            return
        if self._open:  # blocks never interleave: one a server left without its stop ends here
            for i in sorted(self._open):
                self._close(self._open[i], out)
            self._open.clear()
        if b.type == "text":
            self._open[index] = _Open("text")
            if b.text:
                self._text(b.text, out)
        elif b.type == "thinking":
            block = self._open[index] = _Open("thinking")
            block.signature = b.signature or ""
            if b.thinking:
                out.append(ReasoningDeltaEvent(text=b.thinking))
        elif b.type == "redacted_thinking":
            if b.data:
                out.append(RedactedReasoningEvent(data=b.data))
        elif b.type == "tool_use" and self._json_tool is not None and b.name == self._json_tool:
            self._open[index] = _Open("json", input_=b.input)
            self._json_called = True
            if self._held:
                self._held.clear()  # words around the JSON answer are not part of it
        elif b.type == "tool_use":
            call_id = b.id or f"toolu_{index}"
            self._open[index] = _Open("tool_use", call_id, b.name or "", b.input)
            self._calls += 1
            out.append(ToolCallStartEvent(tool_call_id=call_id, name=b.name or "", index=index))
        else:
            self._open[index] = _Open("skip")

    def _block_delta(self, ev: _Event, out: list[Event]) -> None:
        d = ev.delta
        if d is None:
            return
        index = ev.index if ev.index is not None else -1
        block = self._open.get(index)
        if d.type == "text_delta":
            if d.text and (block is None or block.kind != "skip"):
                self._text(d.text, out)
        elif d.type == "thinking_delta":
            if block is None:  # a delta whose start was not seen: still close it with reasoning_end
                block = self._open[index] = _Open("thinking")
            if d.thinking and block.kind == "thinking":
                out.append(ReasoningDeltaEvent(text=d.thinking))
        elif d.type == "signature_delta":
            if block is not None and block.kind == "thinking" and d.signature:
                block.signature = d.signature
        elif d.type == "input_json_delta" and block is not None and d.partial_json:
            if block.kind == "tool_use":
                block.args.append(d.partial_json)
                out.append(ToolCallDeltaEvent(tool_call_id=block.id, arguments_delta=d.partial_json))
            elif block.kind == "json":
                block.args.append(d.partial_json)
                out.append(TextDeltaEvent(text=d.partial_json))
        # citations_delta, compaction_delta, and delta types added later carry no text

    def _text(self, text: str, out: list[Event]) -> None:
        if self._held is None:
            out.append(TextDeltaEvent(text=text))
        elif not self._json_called:
            self._held.append(text)
        # JSON mode, after the JSON answer: nothing else is the answer

    def _close(self, block: _Open, out: list[Event]) -> None:
        if block.kind == "thinking":
            out.append(ReasoningEndEvent(signature=block.signature) if block.signature else ReasoningEndEvent())
        elif block.kind == "json":
            if not block.args:  # nothing streamed: the whole input came in the block start, or none
                out.append(TextDeltaEvent(text=msgspec.json.encode(block.input or {}).decode()))
        elif block.kind == "tool_use":
            if not block.args and isinstance(block.input, dict) and block.input:
                # a whole input in the block start (some compatible servers): nothing was streamed
                out.append(ToolCallEvent(tool_call_id=block.id, name=block.name, arguments=block.input))
            else:
                out.append(tool_call_event(block.id, block.name, "".join(block.args)))

    def _add_usage(self, u: _Usage | None) -> None:
        if u is None:
            return
        c = self._counts
        for name in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"):
            value = getattr(u, name)
            if value is not None:
                c[name] = value
        if u.output_tokens_details is not None and u.output_tokens_details.thinking_tokens is not None:
            c["thinking_tokens"] = u.output_tokens_details.thinking_tokens
        cached, created = c.get("cache_read_input_tokens", 0), c.get("cache_creation_input_tokens", 0)
        usage = Usage(input_tokens=c.get("input_tokens", 0) + cached + created, output_tokens=c.get("output_tokens", 0))
        if cached:
            usage.cached_input_tokens = cached
        if created:
            usage.cache_creation_tokens = created
        if c.get("thinking_tokens"):
            usage.reasoning_tokens = c["thinking_tokens"]
        self.usage = usage

    def end(self) -> list[Event]:
        """Blocks the stream left open (it ended after message_delta without their stops)."""
        out: list[Event] = []
        for index in sorted(self._open):
            self._close(self._open[index], out)
        self._open.clear()
        if self._held:  # JSON mode without the JSON tool: the text is the answer
            out.append(TextDeltaEvent(text="".join(self._held)))
            self._held.clear()
        if self.finish_reason is None and self._calls:
            self.finish_reason = "tool_calls"
        return out


def request_decoder(provider: str, params: StreamTextParams) -> Decoder:
    """The decoder for one request: in JSON mode it relays the JSON tool's input as text."""
    return Decoder(provider, json_tool=JSON_TOOL if wants_json(params) else None)


def _loose_error(data: str) -> Any:
    """The error object of an ``error`` event that is not valid JSON of the expected shape."""
    try:
        obj = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return {"message": data[:200]}
    return obj.get("error", obj) if isinstance(obj, dict) else {"message": str(obj)[:200]}


PROTOCOL = WireProtocol(
    name="anthropic",
    framing="sse",
    encode_request=encode_request,
    new_decoder=Decoder,
    map_http_error=map_http_error,
    models_request=models_request,
    parse_models=parse_models,
    request_decoder=request_decoder,
)
