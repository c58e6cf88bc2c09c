"""The OpenAI chat-completions protocol, spoken by OpenAI and every compatible server
(Groq, Together, DeepSeek, Mistral, OpenRouter, xAI, LM Studio, vLLM, llama.cpp, ...).

- ``response_format`` goes as OpenAI's own ``response_format`` (``json_schema`` with the schema, not
  ``strict``: strict mode refuses schemas that leave properties optional; add it with provider_options).
- ``reasoning.effort`` is ``reasoning_effort``; ``budget_tokens`` has no chat-completions counterpart
  (it is not sent, and a ``warning`` event says so).
- ``parallel_tool_calls`` is sent only next to tools (OpenAI refuses it without them).
- Cached prompt tokens come back in ``usage.prompt_tokens_details.cached_tokens`` (DeepSeek:
  ``prompt_cache_hit_tokens``) as ``cached_input_tokens``; caching itself is automatic, ``cache`` sends nothing.
- ``provider.extra_body`` and then ``provider_options`` are merged into the body (``toolkit.merge``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

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
    RedactedReasoningEvent,
    StreamTextParams,
    SystemMessage,
    TextDeltaEvent,
    TextPart,
    ToolCallDeltaEvent,
    ToolCallEvent,
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
    BEARER,
    KeyHeader,
    function_calls,
    function_tools,
    given,
    image_url,
    json_headers,
    merge,
    merge_options,
    unsupported,
)

# --- encode -----------------------------------------------------------------------------


def _image_url(part: ImagePart) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": image_url(part)}}


def encode_messages(params: StreamTextParams) -> list[dict[str, Any]]:
    """Chat messages. A tool message can hold only text, so the images of tool results (a screenshot
    tool's) follow in one user message after the run of tool messages, which must stay together."""
    out: list[dict[str, Any]] = []
    tool_images: list[dict[str, Any]] = []
    if isinstance(params.system, str):
        out.append({"role": "system", "content": params.system})
    for msg in params.messages:
        if tool_images and not isinstance(msg, ToolMessage):
            out.append({"role": "user", "content": tool_images})
            tool_images = []
        if isinstance(msg, SystemMessage):
            out.append({"role": "system", "content": msg.content})
        elif isinstance(msg, UserMessage):
            if isinstance(msg.content, str):
                out.append({"role": "user", "content": msg.content})
                continue
            parts: list[dict[str, Any]] = []
            for p in msg.content:
                if isinstance(p, TextPart):
                    parts.append({"type": "text", "text": p.text})
                elif isinstance(p, ImagePart):
                    parts.append(_image_url(p))
                else:
                    kind = p.__struct_config__.tag  # the tag field is not an attribute
                    raise SidecarError("invalid_request", f"a user message cannot hold a {kind} part")
            out.append({"role": "user", "content": parts})
        elif isinstance(msg, AssistantMessage):
            text = text_of(msg.content)
            entry: dict[str, Any] = {"role": "assistant", "content": text}
            if not isinstance(msg.content, str):
                calls = function_calls(msg.content)
                if calls:
                    entry["tool_calls"] = calls
                    entry["content"] = text or None  # null content is only accepted next to tool_calls
            out.append(entry)
        elif isinstance(msg, ToolMessage):
            out.append({"role": "tool", "tool_call_id": msg.tool_call_id, "content": text_of(msg.content)})
            if not isinstance(msg.content, str):
                tool_images += [_image_url(p) for p in msg.content if isinstance(p, ImagePart)]
    if tool_images:
        out.append({"role": "user", "content": tool_images})
    return out


PLAIN = {"temperature": "temperature", "top_p": "top_p", "stop": "stop", "seed": "seed"}
"""the settings sent as they are"""


def encode_body(params: StreamTextParams, provider: Provider, model: str, *, stream: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": encode_messages(params), "stream": stream}
    if stream and provider.stream_usage:
        body["stream_options"] = {"include_usage": True}
    if isinstance(params.tools, list) and params.tools:
        body["tools"] = function_tools(params.tools)
        if isinstance(params.parallel_tool_calls, bool):  # refused by OpenAI when there are no tools
            body["parallel_tool_calls"] = params.parallel_tool_calls
    if isinstance(params.tool_choice, ToolChoiceName):
        body["tool_choice"] = {"type": "function", "function": {"name": params.tool_choice.name}}
    elif isinstance(params.tool_choice, str):
        body["tool_choice"] = params.tool_choice
    body.update(given(params, PLAIN))
    if isinstance(params.max_tokens, int):
        body[provider.max_tokens_field] = params.max_tokens
    rf = params.response_format
    if not isinstance(rf, msgspec.UnsetType) and rf.type != "text":
        if rf.type == "json_schema":
            name = rf.name if isinstance(rf.name, str) else "response"
            schema = rf.schema if isinstance(rf.schema, dict) else {}
            body["response_format"] = {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}
        else:
            body["response_format"] = {"type": "json_object"}
    if not isinstance(params.reasoning, msgspec.UnsetType) and isinstance(params.reasoning.effort, str):
        body["reasoning_effort"] = params.reasoning.effort
    return merge_options(body, provider, params)


def dropped(params: StreamTextParams) -> list[WarningEvent]:
    """The settings the request gave that chat completions cannot carry."""
    budget = params.reasoning.budget_tokens if not isinstance(params.reasoning, msgspec.UnsetType) else None
    return unsupported("openai", "reasoning.budget_tokens") if isinstance(budget, int) else []


AZURE_KEY = KeyHeader("api-key")
"""Azure OpenAI (a provider with an ``api_version``) takes the key in ``api-key``"""


def _headers(provider: Provider, api_key: str | None, accept: str) -> dict[str, str]:
    return json_headers(provider, api_key, accept, AZURE_KEY if provider.api_version else BEARER)


def encode_request(params: StreamTextParams, provider: Provider, model: str, api_key: str | None) -> HttpRequest:
    body = encode_body(params, provider, model)
    if provider.api_version:  # Azure: the deployment is in the path, the model field is not needed
        deployment = quote(model, safe="")
        url = f"{provider.base_url}/deployments/{deployment}/chat/completions?api-version={provider.api_version}"
        body.pop("model", None)
    else:
        url = f"{provider.base_url}/chat/completions"
    headers = _headers(provider, api_key, "text/event-stream")
    return HttpRequest("POST", url, headers, msgspec.json.encode(body), warnings=dropped(params))


def models_request(provider: Provider, api_key: str | None) -> HttpRequest:
    url = f"{provider.base_url}/models"
    if provider.api_version:
        url += f"?api-version={provider.api_version}"
    return HttpRequest("GET", url, _headers(provider, api_key, "application/json"))


class _ModelEntry(msgspec.Struct):
    id: str
    context_length: int | None = None  # OpenRouter
    max_model_len: int | None = None  # vLLM
    context_window: int | None = None  # Groq


class _ModelList(msgspec.Struct):
    data: list[_ModelEntry]


def parse_models(body: bytes) -> list[Model]:
    try:
        entries = msgspec.json.decode(body, type=_ModelList).data
    except (msgspec.DecodeError, msgspec.ValidationError):
        return []
    return [Model(e.id, context_window=e.context_length or e.max_model_len or e.context_window) for e in entries]


def map_http_error(status: int, body: bytes, provider: str) -> SidecarError:
    return upstream_error(provider, status, *error_body(body))


# --- embeddings ---------------------------------------------------------------------------

EMBED_BATCH = 2048
"""OpenAI's limit of inputs per ``/embeddings`` request"""


def embed_request(provider: Provider, model: str, texts: list[str], dimensions: int | None, api_key: str | None,
                  options: dict[str, Any] | None) -> HttpRequest:
    """``POST {base}/embeddings`` (Azure: the deployment's URL); floats, the default format every compatible
    server has; ``options`` (the request's ``provider_options``) are merged over the body."""
    body: dict[str, Any] = {"model": model, "input": texts}
    if dimensions is not None:
        body["dimensions"] = dimensions
    if options:
        merge(body, options)
    if provider.api_version:  # Azure: the deployment is in the path
        deployment = quote(model, safe="")
        url = f"{provider.base_url}/deployments/{deployment}/embeddings?api-version={provider.api_version}"
        body.pop("model", None)
    else:
        url = f"{provider.base_url}/embeddings"
    return HttpRequest("POST", url, _headers(provider, api_key, "application/json"), msgspec.json.encode(body))


class _Embedding(msgspec.Struct):
    embedding: list[float]
    index: int | None = None


class _EmbedUsage(msgspec.Struct):
    prompt_tokens: int | None = None


class _Embeddings(msgspec.Struct):
    data: list[_Embedding]
    usage: _EmbedUsage | None = None


def parse_embeddings(body: bytes) -> tuple[list[list[float]], int | None]:
    answer = msgspec.json.decode(body, type=_Embeddings)
    data = answer.data
    if all(e.index is not None for e in data):
        data = sorted(data, key=lambda e: e.index or 0)
    tokens = answer.usage.prompt_tokens if answer.usage is not None else None
    return [e.embedding for e in data], tokens


# --- decode -----------------------------------------------------------------------------


class _Function(msgspec.Struct):
    name: str | None = None
    arguments: str | None = None


class _ToolCallDelta(msgspec.Struct):
    index: int | None = None
    id: str | None = None
    function: _Function | None = None


class _ReasoningDetail(msgspec.Struct):
    type: str = ""
    signature: str | None = None
    data: str | None = None


class _Delta(msgspec.Struct):
    content: str | list[Any] | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None
    reasoning_details: list[_ReasoningDetail] | None = None
    tool_calls: list[_ToolCallDelta] | None = None
    refusal: str | None = None


class _Choice(msgspec.Struct):
    index: int = 0
    delta: _Delta | None = None
    finish_reason: str | None = None


class _Details(msgspec.Struct):
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None


class _Usage(msgspec.Struct):
    prompt_tokens: int | None = 0
    completion_tokens: int | None = 0
    prompt_tokens_details: _Details | None = None
    completion_tokens_details: _Details | None = None
    prompt_cache_hit_tokens: int | None = None


class _XGroq(msgspec.Struct):
    usage: _Usage | None = None


class _Chunk(msgspec.Struct):
    choices: list[_Choice] | None = None
    usage: _Usage | None = None
    x_groq: _XGroq | None = None
    error: Any = None


_decode_chunk = msgspec.json.Decoder(_Chunk).decode

FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "eos": "stop",
    "end_turn": "stop",
    "length": "length",
    "max_tokens": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


def convert_usage(u: _Usage) -> Usage:
    usage = Usage(input_tokens=u.prompt_tokens or 0, output_tokens=u.completion_tokens or 0)
    details = u.prompt_tokens_details
    cached = (details.cached_tokens if details else None) or u.prompt_cache_hit_tokens
    if cached:
        usage.cached_input_tokens = cached
    if u.completion_tokens_details and u.completion_tokens_details.reasoning_tokens:
        usage.reasoning_tokens = u.completion_tokens_details.reasoning_tokens
    return usage


class _PendingCall:
    __slots__ = ("args", "id", "name", "started")

    def __init__(self, id_: str | None, name: str | None) -> None:
        self.id = id_
        self.name = name
        self.args: list[str] = []
        self.started = False


class Decoder:
    """Chat-completion chunks to events; tool-call fragments are keyed by ``index``."""

    def __init__(self, provider: str = "openai") -> None:
        self.provider = provider
        self.finish_reason: FinishReason | None = None
        self.usage: Usage | None = None
        self.complete = False
        self._calls: dict[int, _PendingCall] = {}
        self._slot_of: dict[int, int] = {}
        """upstream index -> our slot, where a server reused an index for a new call"""
        self._last = -1
        self._reasoning = False
        self._signature: str | None = None

    def feed(self, event: str, data: str) -> list[Event]:
        if data == "[DONE]":
            self.complete = True
            return []
        try:
            chunk = _decode_chunk(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            if event == "error" or data.lstrip().startswith('{"error"'):
                raise self._error(stream_error(data)) from None
            raise SidecarError("protocol_error", f"{self.provider}: unparseable stream chunk ({exc})") from None
        if chunk.error is not None or event == "error":
            raise self._error(chunk.error if chunk.error is not None else stream_error(data))
        out: list[Event] = []
        usage = chunk.usage or (chunk.x_groq.usage if chunk.x_groq else None)
        if usage is not None:
            self.usage = convert_usage(usage)
        for choice in chunk.choices or ():
            if choice.index != 0:
                continue
            delta = choice.delta
            if delta is not None:
                self._delta(delta, out)
            if choice.finish_reason:
                self.finish_reason = FINISH.get(choice.finish_reason, "other")
        return out

    def _error(self, err: Any) -> SidecarError:
        """An error the upstream reported inside the stream (``err`` is the body's ``error`` member)."""
        code, message = error_fields({"error": err})
        status = err.get("status_code") if isinstance(err, dict) else None
        if status is None and isinstance(err, dict) and isinstance(err.get("code"), int):
            status = err["code"]
        return upstream_error(self.provider, status if isinstance(status, int) else None, code, message)

    def _delta(self, delta: _Delta, out: list[Event]) -> None:
        reasoning = delta.reasoning_content or delta.reasoning
        if reasoning:
            self._reasoning = True
            out.append(ReasoningDeltaEvent(text=reasoning))
        if delta.reasoning_details:
            for d in delta.reasoning_details:
                if d.signature:
                    self._signature = d.signature
                if d.type == "reasoning.encrypted" and d.data:
                    out.append(RedactedReasoningEvent(data=d.data))
        content = delta.content
        if isinstance(content, list):
            for part in content:
                self._content_part(part, out)
        elif content:
            self._end_reasoning(out)
            out.append(TextDeltaEvent(text=content))
        if delta.refusal:
            self._end_reasoning(out)
            out.append(TextDeltaEvent(text=delta.refusal))
        if delta.tool_calls:
            self._end_reasoning(out)
            for tc in delta.tool_calls:
                self._tool_fragment(tc, out)

    def _content_part(self, part: Any, out: list[Event]) -> None:
        """Mistral's content arrays: text parts and thinking parts."""
        if not isinstance(part, dict):
            return
        if part.get("type") == "text" and part.get("text"):
            self._end_reasoning(out)
            out.append(TextDeltaEvent(text=part["text"]))
        elif part.get("type") == "thinking":
            for t in part.get("thinking") or ():
                if isinstance(t, dict) and t.get("text"):
                    self._reasoning = True
                    out.append(ReasoningDeltaEvent(text=t["text"]))

    def _slot(self, tc: _ToolCallDelta) -> int:
        """Which call a fragment belongs to: its ``index``, unless the server sends none or reuses one."""
        named = bool(tc.id or (tc.function and tc.function.name))
        if tc.index is None:
            last = self._calls.get(self._last)
            if last is not None and (not named or (tc.id is not None and tc.id == last.id)):
                return self._last  # a continuation of the call before
        else:
            slot = self._slot_of.get(tc.index, tc.index)
            known = self._calls.get(slot)
            if known is None or not tc.id or known.id is None or known.id == tc.id:
                return slot
        # a new call: no index at all (Mistral), or an index reused for another id (Ollama's /v1)
        slot = max(self._calls, default=-1) + 1
        if tc.index is not None:
            self._slot_of[tc.index] = slot
        return slot

    def _tool_fragment(self, tc: _ToolCallDelta, out: list[Event]) -> None:
        index = self._last = self._slot(tc)
        fn = tc.function
        call = self._calls.get(index)
        if call is None:
            call = self._calls[index] = _PendingCall(tc.id, fn.name if fn else None)
        else:
            call.id = call.id or tc.id
            call.name = call.name or (fn.name if fn else None)
        if fn and fn.arguments:
            call.args.append(fn.arguments)
        if not call.started and call.name:
            call.started = True
            call.id = call.id or f"call_{index}"
            out.append(ToolCallStartEvent(tool_call_id=call.id, name=call.name, index=index))
            if call.args:
                out.append(ToolCallDeltaEvent(tool_call_id=call.id, arguments_delta="".join(call.args)))
        elif call.started and fn and fn.arguments:
            assert call.id is not None
            out.append(ToolCallDeltaEvent(tool_call_id=call.id, arguments_delta=fn.arguments))

    def _end_reasoning(self, out: list[Event]) -> None:
        if self._reasoning:
            self._reasoning = False
            sig, self._signature = self._signature, None
            out.append(ReasoningEndEvent() if sig is None else ReasoningEndEvent(signature=sig))

    def end(self) -> list[Event]:
        out: list[Event] = []
        self._end_reasoning(out)
        for index in sorted(self._calls):
            call = self._calls[index]
            if not call.started:  # never named: nothing the caller could run
                continue
            assert call.id is not None and call.name is not None
            out.append(tool_call_event(call.id, call.name, "".join(call.args)))
        self._calls.clear()
        self._slot_of.clear()
        if out and self.finish_reason is None and any(isinstance(e, ToolCallEvent) for e in out):
            self.finish_reason = "tool_calls"
        return out


PROTOCOL = WireProtocol(
    name="openai",
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
