"""Cohere's v2 chat API: ``POST /v2/chat`` with ``stream: true``, server-sent events whose JSON
``type`` names the event (message-start, content-*, tool-plan-delta, tool-call-*, citation-*,
message-end).

The tool plan (``tool-plan-delta``: "I will use the weather tool to ...") is relayed as reasoning:
it is the model's reasoning about the calls, not part of the answer (the contract's text deltas
must add up to the answer), and an app that keeps it as a reasoning part sends it back, where
Cohere wants it, as the ``tool_plan`` of the assistant message holding the calls.

``response_format`` is Cohere's own (``json_object`` with the schema as ``json_schema``); ``reasoning`` is
``thinking`` (a ``token_budget`` when given; an effort level has no counterpart). Cohere has no switch for
parallel tool calls. What is not sent (``parallel_tool_calls``, ``reasoning.effort``) is named in a ``warning``
event. Images go as ``image_url`` items (a URL, or base64 as a data: URL). ``provider.extra_body`` and then
``provider_options`` are merged into the body (``toolkit.merge``).
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from ..errors import SidecarError
from ..providers.model import Model, Provider
from ..types import (
    AssistantMessage,
    Event,
    FinishReason,
    ImagePart,
    ReasoningDeltaEvent,
    ReasoningEndEvent,
    ReasoningPart,
    StreamTextParams,
    SystemMessage,
    TextDeltaEvent,
    TextPart,
    ToolCallDeltaEvent,
    ToolCallStartEvent,
    ToolChoiceName,
    ToolMessage,
    Usage,
    UserMessage,
    WarningEvent,
)
from .base import HttpRequest, WireProtocol, text_of, tool_call_event
from .http_errors import error_body, error_fields, stream_error, upstream_error
from .toolkit import (
    function_calls,
    function_tools,
    given,
    given_parallel_tool_calls,
    image_url,
    json_headers,
    merge,
    merge_options,
    unsupported,
)

# --- encode -----------------------------------------------------------------------------


def _image_url(part: ImagePart) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": image_url(part)}}


def _user(msg: UserMessage) -> dict[str, Any]:
    """Plain text as a string; a content array only when there are images (vision models)."""
    if isinstance(msg.content, str):
        return {"role": "user", "content": msg.content}
    parts: list[dict[str, Any]] = []
    for p in msg.content:
        if isinstance(p, TextPart):
            parts.append({"type": "text", "text": p.text})
        elif isinstance(p, ImagePart):
            parts.append(_image_url(p))
        else:
            kind = p.__struct_config__.tag  # the tag field is not an attribute
            raise SidecarError("invalid_request", f"a user message cannot hold a {kind} part")
    if any(p["type"] == "image_url" for p in parts):
        return {"role": "user", "content": parts}
    return {"role": "user", "content": text_of(msg.content)}


def _assistant(msg: AssistantMessage) -> dict[str, Any]:
    """Reasoning goes back as ``tool_plan`` next to tool calls (what the decoder made of the plan),
    and as a ``thinking`` content item otherwise."""
    if isinstance(msg.content, str):
        return {"role": "assistant", "content": msg.content}
    text = text_of(msg.content)
    reasoning = "".join(p.text for p in msg.content if isinstance(p, ReasoningPart))
    calls = function_calls(msg.content)
    entry: dict[str, Any] = {"role": "assistant"}
    if calls:
        if reasoning:
            entry["tool_plan"] = reasoning
        entry["tool_calls"] = calls
        if text:
            entry["content"] = text
    elif reasoning:
        entry["content"] = [{"type": "thinking", "thinking": reasoning}, {"type": "text", "text": text}]
    else:
        entry["content"] = text
    return entry


def encode_messages(params: StreamTextParams) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if isinstance(params.system, str):
        out.append({"role": "system", "content": params.system})
    for msg in params.messages:
        if isinstance(msg, SystemMessage):
            out.append({"role": "system", "content": msg.content})
        elif isinstance(msg, UserMessage):
            out.append(_user(msg))
        elif isinstance(msg, AssistantMessage):
            out.append(_assistant(msg))
        elif isinstance(msg, ToolMessage):
            out.append({"role": "tool", "tool_call_id": msg.tool_call_id, "content": text_of(msg.content)})
    return out


def _tools(params: StreamTextParams, body: dict[str, Any]) -> None:
    """v2 function tools. ``tool_choice`` is REQUIRED/NONE; a named tool is REQUIRED with only that tool."""
    if not isinstance(params.tools, list) or not params.tools:
        return
    tools = params.tools
    choice = params.tool_choice
    if isinstance(choice, ToolChoiceName):
        tools = [t for t in tools if t.name == choice.name]
        body["tool_choice"] = "REQUIRED"
    elif choice in ("required", "none"):
        body["tool_choice"] = choice.upper()
    body["tools"] = function_tools(tools)


PLAIN = {"temperature": "temperature", "top_p": "p", "max_tokens": "max_tokens", "stop": "stop_sequences",
         "seed": "seed"}
"""the settings sent as they are, under Cohere's names"""


def encode_body(params: StreamTextParams, provider: Provider, model: str, *, stream: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": encode_messages(params), "stream": stream}
    _tools(params, body)
    body.update(given(params, PLAIN))
    rf = params.response_format
    if not isinstance(rf, msgspec.UnsetType) and rf.type != "text":
        body["response_format"] = {"type": "json_object"}
        if rf.type == "json_schema" and isinstance(rf.schema, dict):
            body["response_format"]["json_schema"] = rf.schema
    if not isinstance(params.reasoning, msgspec.UnsetType):
        # Cohere has a budget, not effort levels: effort alone just turns thinking on
        thinking: dict[str, Any] = {"type": "enabled"}
        if isinstance(params.reasoning.budget_tokens, int):
            thinking["token_budget"] = params.reasoning.budget_tokens
        body["thinking"] = thinking
    return merge_options(body, provider, params)


def dropped(params: StreamTextParams) -> list[WarningEvent]:
    """The settings the request gave that Cohere has no switch for (an effort level: thinking is on, at
    Cohere's own depth)."""
    names = ["parallel_tool_calls"] if given_parallel_tool_calls(params) else []
    if not isinstance(params.reasoning, msgspec.UnsetType) and isinstance(params.reasoning.effort, str):
        names.append("reasoning.effort")
    return unsupported("cohere", *names)


def encode_request(params: StreamTextParams, provider: Provider, model: str, api_key: str | None) -> HttpRequest:
    body = encode_body(params, provider, model)
    headers = json_headers(provider, api_key, "text/event-stream")
    return HttpRequest("POST", f"{provider.base_url}/v2/chat", headers, msgspec.json.encode(body),
                       warnings=dropped(params))


MODELS_QUERY = "endpoint=chat&page_size=1000"
"""chat models only (the list also holds embed and rerank models), and all of them: a page is 20 by default"""


def models_request(provider: Provider, api_key: str | None) -> HttpRequest:
    url = f"{provider.base_url}/v1/models?{MODELS_QUERY}"
    return HttpRequest("GET", url, json_headers(provider, api_key, "application/json"))


class _ModelEntry(msgspec.Struct):
    name: str = ""
    endpoints: list[str] | None = None
    context_length: float | None = None
    features: list[str] | None = None


class _ModelList(msgspec.Struct):
    models: list[_ModelEntry] | None = None


def parse_models(body: bytes) -> list[Model]:
    try:
        entries = msgspec.json.decode(body, type=_ModelList).models or []
    except (msgspec.DecodeError, msgspec.ValidationError):
        return []
    out = []
    for e in entries:
        if not e.name or (e.endpoints is not None and "chat" not in e.endpoints):
            continue  # a server that ignored the endpoint filter
        features = e.features or ()
        out.append(Model(
            e.name,
            context_window=int(e.context_length) if e.context_length else None,
            tools=True if "tools" in features else None,
            vision=True if "vision" in features else None,
            reasoning=True if "reasoning" in features else None,
        ))
    return out


def map_http_error(status: int, body: bytes, provider: str) -> SidecarError:
    """Cohere's error bodies are ``{"message": "..."}`` (sometimes with an ``id``)."""
    err = upstream_error(provider, status, *error_body(body))
    if status == 499:  # Cohere's "request cancelled" / "streaming error": its docs say try again
        return SidecarError("upstream_unavailable", err.info.message, provider=provider, status=status)
    return err


# --- embeddings ---------------------------------------------------------------------------

EMBED_BATCH = 96
"""Cohere's limit of texts per ``/v2/embed`` request"""
INPUT_TYPE = "search_document"
"""what the texts are for, which v3+ models require: documents to search (override with provider_options
``{"input_type": "search_query"}`` for queries, or ``classification`` / ``clustering``)"""


def embed_request(provider: Provider, model: str, texts: list[str], dimensions: int | None, api_key: str | None,
                  options: dict[str, Any] | None) -> HttpRequest:
    """``POST {base}/v2/embed`` for float vectors; ``options`` are merged over the body."""
    body: dict[str, Any] = {"model": model, "texts": texts, "input_type": INPUT_TYPE, "embedding_types": ["float"]}
    if dimensions is not None:
        body["output_dimension"] = dimensions
    if options:
        merge(body, options)
    return HttpRequest("POST", f"{provider.base_url}/v2/embed", json_headers(provider, api_key, "application/json"),
                       msgspec.json.encode(body))


class _EmbedFloats(msgspec.Struct):
    floats: list[list[float]] = msgspec.field(name="float")


class _BilledUnits(msgspec.Struct):
    input_tokens: int | None = None


class _EmbedMeta(msgspec.Struct):
    billed_units: _BilledUnits | None = None


class _Embeddings(msgspec.Struct):
    embeddings: _EmbedFloats
    meta: _EmbedMeta | None = None


def parse_embeddings(body: bytes) -> tuple[list[list[float]], int | None]:
    answer = msgspec.json.decode(body, type=_Embeddings)
    billed = answer.meta.billed_units if answer.meta is not None else None
    return answer.embeddings.floats, billed.input_tokens if billed is not None else None


# --- decode -----------------------------------------------------------------------------


class _Content(msgspec.Struct):
    type: str | None = None
    text: str | None = None
    thinking: str | None = None


class _Function(msgspec.Struct):
    name: str | None = None
    arguments: str | None = None


class _ToolCall(msgspec.Struct):
    id: str | None = None
    function: _Function | None = None


class _Message(msgspec.Struct):
    content: _Content | list[Any] | None = None
    """one item in content-* events; message-start carries an (empty) list"""
    tool_plan: str | None = None
    tool_calls: _ToolCall | list[Any] | None = None
    """one call in tool-call-* events; message-start carries an (empty) list"""


class _Tokens(msgspec.Struct):
    input_tokens: float | None = None
    output_tokens: float | None = None


class _Usage(msgspec.Struct):
    tokens: _Tokens | None = None
    billed_units: _Tokens | None = None
    cached_tokens: float | None = None


class _Delta(msgspec.Struct):
    message: _Message | None = None
    finish_reason: str | None = None
    usage: _Usage | None = None
    error: str | None = None


class _Event(msgspec.Struct):
    type: str | None = None
    index: int | None = None
    delta: _Delta | None = None
    message: Any = None
    """only in an error object sent in place of an event"""


_decode_event = msgspec.json.Decoder(_Event).decode

FINISH: dict[str, FinishReason] = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "TOOL_CALL": "tool_calls",
    "ERROR_TOXIC": "content_filter",
    "ERROR_LIMIT": "length",
}


def convert_usage(u: _Usage) -> Usage | None:
    """Real token counts (``tokens``) when present, else the billed ones."""
    counts = u.tokens or u.billed_units
    if counts is None:
        return None
    usage = Usage(input_tokens=int(counts.input_tokens or 0), output_tokens=int(counts.output_tokens or 0))
    if u.cached_tokens:
        usage.cached_input_tokens = int(u.cached_tokens)
    return usage


class _PendingCall:
    __slots__ = ("args", "id", "name")

    def __init__(self, id_: str, name: str) -> None:
        self.id = id_
        self.name = name
        self.args: list[str] = []


class Decoder:
    """Cohere v2 stream events to contract events. Tool calls are keyed by the event's ``index``
    and finished at their ``tool-call-end``; ``message-end`` is the end-of-stream marker."""

    def __init__(self, provider: str = "cohere") -> None:
        self.provider = provider
        self.finish_reason: FinishReason | None = None
        self.usage: Usage | None = None
        self.complete = False
        self._reasoning = False
        self._calls: dict[int, _PendingCall] = {}
        self._last = -1

    def feed(self, event: str, data: str) -> list[Event]:
        if data == "[DONE]":
            self.complete = True
            return []
        try:
            ev = _decode_event(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            if event == "error" or data.lstrip().startswith(("{\"message\"", "{\"error\"")):
                raise self._error(stream_error(data)) from None
            raise SidecarError("protocol_error", f"{self.provider}: unparseable stream event ({exc})") from None
        kind = ev.type or event
        if kind == "error" or (ev.type is None and ev.delta is None and ev.message is not None):
            raise self._error(stream_error(data))
        out: list[Event] = []
        delta = ev.delta
        msg = delta.message if delta else None
        if kind in ("content-start", "content-delta"):
            content = msg.content if msg and isinstance(msg.content, _Content) else None
            if content is not None:
                self._content(content, out)
        elif kind == "content-end":
            self._end_reasoning(out)
        elif kind == "tool-plan-delta":
            if msg and msg.tool_plan:
                self._reasoning = True
                out.append(ReasoningDeltaEvent(text=msg.tool_plan))
        elif kind == "tool-call-start":
            self._end_reasoning(out)
            self._call_start(ev.index, msg, out)
        elif kind == "tool-call-delta":
            self._call_delta(ev.index, msg, out)
        elif kind == "tool-call-end":
            self._call_end(self._slot(ev.index), out)
        elif kind == "message-end":
            self._message_end(delta)
        # message-start, citation-start/-end, debug and unknown events carry nothing to relay
        return out

    def _content(self, content: _Content, out: list[Event]) -> None:
        if content.thinking:
            self._reasoning = True
            out.append(ReasoningDeltaEvent(text=content.thinking))
        elif content.text:
            self._end_reasoning(out)
            out.append(TextDeltaEvent(text=content.text))

    def _slot(self, index: int | None) -> int:
        return self._last if index is None else index

    def _call_start(self, index: int | None, msg: _Message | None, out: list[Event]) -> None:
        tc = msg.tool_calls if msg and isinstance(msg.tool_calls, _ToolCall) else _ToolCall()
        fn = tc.function or _Function()
        slot = self._last = index if index is not None else max(self._calls, default=-1) + 1
        if slot in self._calls:  # an index reused without an end: finish the older call first
            self._call_end(slot, out)
        call = self._calls[slot] = _PendingCall(tc.id or f"call_{uuid.uuid4().hex[:24]}", fn.name or "")
        out.append(ToolCallStartEvent(tool_call_id=call.id, name=call.name, index=slot))
        if fn.arguments:
            call.args.append(fn.arguments)
            out.append(ToolCallDeltaEvent(tool_call_id=call.id, arguments_delta=fn.arguments))

    def _call_delta(self, index: int | None, msg: _Message | None, out: list[Event]) -> None:
        call = self._calls.get(self._slot(index))
        tc = msg.tool_calls if msg and isinstance(msg.tool_calls, _ToolCall) else None
        fragment = tc.function.arguments if tc and tc.function else None
        if call is not None and fragment:
            call.args.append(fragment)
            out.append(ToolCallDeltaEvent(tool_call_id=call.id, arguments_delta=fragment))

    def _call_end(self, slot: int, out: list[Event]) -> None:
        call = self._calls.pop(slot, None)
        if call is not None:
            raw = "".join(call.args)
            # Cohere sends "null" for a tool that takes no arguments
            out.append(tool_call_event(call.id, call.name, "" if raw.strip() == "null" else raw))

    def _message_end(self, delta: _Delta | None) -> None:
        self.complete = True
        reason = delta.finish_reason if delta else None
        if reason == "ERROR":
            message = (delta.error if delta else None) or "the model failed while generating"
            raise upstream_error(self.provider, None, "", message)
        self.finish_reason = FINISH.get(reason, "other") if reason else "stop"
        if delta and delta.usage:
            self.usage = convert_usage(delta.usage)

    def _error(self, err: Any) -> SidecarError:
        code, message = error_fields({"error": err})
        return upstream_error(self.provider, None, code, message)

    def _end_reasoning(self, out: list[Event]) -> None:
        if self._reasoning:
            self._reasoning = False
            out.append(ReasoningEndEvent())

    def end(self) -> list[Event]:
        out: list[Event] = []
        self._end_reasoning(out)
        for slot in sorted(self._calls):
            self._call_end(slot, out)
        return out


PROTOCOL = WireProtocol(
    name="cohere",
    framing="sse",
    encode_request=encode_request,
    new_decoder=Decoder,
    map_http_error=map_http_error,
    models_request=models_request,
    parse_models=parse_models,
    embed_request=embed_request,
    parse_embeddings=parse_embeddings,
    embed_batch=EMBED_BATCH,
)
