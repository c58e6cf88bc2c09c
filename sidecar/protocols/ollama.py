"""Ollama's native chat API: ``POST /api/chat`` streaming NDJSON, one JSON object per line.

Chosen over Ollama's OpenAI-compatible ``/v1`` because only the native API takes ``think``,
``format`` as a JSON schema and every runtime ``options`` knob (``num_ctx``, ``top_k``, ...),
and because its tool calls arrive whole, with ``arguments`` as an object.

``response_format`` is ``format`` (the schema itself, or ``"json"``); ``reasoning`` is ``think`` (the
effort level, which gpt-oss takes, or ``true``). Ollama has no tool_choice (``none`` is honoured by
sending no tools; ``required`` and a named tool cannot be said), no switch for parallel tool calls and no
thinking budget (``budget_tokens`` alone is ``think: true``): a ``warning`` event names each setting not
sent. Images go as base64 only (Ollama fetches no URL). ``provider.extra_body`` and then
``provider_options`` are merged into the body (``toolkit.merge``: ``{"options": {"num_ctx": 8192}}`` adds
to the options built from the params).
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
    ToolCallEvent,
    ToolCallPart,
    ToolCallStartEvent,
    ToolChoiceName,
    ToolMessage,
    Usage,
    UserMessage,
    WarningEvent,
)
from .base import HttpRequest, WireProtocol, text_of, tool_call_event
from .http_errors import error_body, error_fields, upstream_error
from .toolkit import (
    function_tools,
    given,
    given_parallel_tool_calls,
    json_headers,
    merge,
    merge_options,
    parse_data_url,
    unsupported,
)

# --- encode -----------------------------------------------------------------------------


def _image_data(part: ImagePart) -> str:
    """Ollama takes raw base64 only: it never fetches a URL, so a plain URL is refused up front."""
    if isinstance(part.data, str):
        return part.data
    inline = parse_data_url(part.url) if isinstance(part.url, str) else None
    if inline is not None:
        return inline[1]
    raise SidecarError("invalid_request", "ollama needs image data (base64), not an image URL")


def encode_messages(params: StreamTextParams) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    tool_names: dict[str, str] = {}
    """tool_call_id -> tool name: Ollama matches a tool result to its call by ``tool_name``"""
    if isinstance(params.system, str):
        out.append({"role": "system", "content": params.system})
    for msg in params.messages:
        if isinstance(msg, SystemMessage):
            out.append({"role": "system", "content": msg.content})
        elif isinstance(msg, UserMessage):
            entry: dict[str, Any] = {"role": "user", "content": text_of(msg.content)}
            if not isinstance(msg.content, str):
                images: list[str] = []
                for p in msg.content:
                    if isinstance(p, ImagePart):
                        images.append(_image_data(p))
                    elif not isinstance(p, TextPart):
                        kind = p.__struct_config__.tag  # the tag field is not an attribute
                        raise SidecarError("invalid_request", f"a user message cannot hold a {kind} part")
                if images:
                    entry["images"] = images
            out.append(entry)
        elif isinstance(msg, AssistantMessage):
            entry = {"role": "assistant", "content": text_of(msg.content)}
            if not isinstance(msg.content, str):
                thinking = "".join(p.text for p in msg.content if isinstance(p, ReasoningPart))
                if thinking:
                    entry["thinking"] = thinking
                calls = []
                for p in msg.content:
                    if isinstance(p, ToolCallPart):
                        tool_names[p.id] = p.name
                        calls.append({"function": {"name": p.name, "arguments": p.arguments}})
                if calls:
                    entry["tool_calls"] = calls
            out.append(entry)
        elif isinstance(msg, ToolMessage):
            entry = {"role": "tool", "content": text_of(msg.content)}
            if msg.tool_call_id in tool_names:
                entry["tool_name"] = tool_names[msg.tool_call_id]
            out.append(entry)
    return out


OPTIONS = {"temperature": "temperature", "top_p": "top_p", "stop": "stop", "seed": "seed", "max_tokens": "num_predict"}
"""the settings that go in ``options``, under Ollama's names"""


def encode_body(params: StreamTextParams, provider: Provider, model: str, *, stream: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": encode_messages(params), "stream": stream}
    # Ollama has no tool_choice: "none" is honoured by sending no tools; "required" and a named
    # tool cannot be expressed and leave the choice to the model.
    if isinstance(params.tools, list) and params.tools and params.tool_choice != "none":
        body["tools"] = function_tools(params.tools)
    options = given(params, OPTIONS)
    if options:
        body["options"] = options
    rf = params.response_format
    if not isinstance(rf, msgspec.UnsetType) and rf.type != "text":
        body["format"] = rf.schema if rf.type == "json_schema" and isinstance(rf.schema, dict) else "json"
    if not isinstance(params.reasoning, msgspec.UnsetType):
        effort = params.reasoning.effort
        body["think"] = effort if isinstance(effort, str) else True
    return merge_options(body, provider, params)


def dropped(params: StreamTextParams) -> list[WarningEvent]:
    """The settings the request gave that Ollama's chat API cannot express."""
    names = []
    tools = isinstance(params.tools, list) and bool(params.tools)
    if tools and isinstance(params.tool_choice, ToolChoiceName):
        names.append("tool_choice (a named tool)")
    elif tools and params.tool_choice == "required":
        names.append("tool_choice 'required'")
    if given_parallel_tool_calls(params):
        names.append("parallel_tool_calls")
    if not isinstance(params.reasoning, msgspec.UnsetType) and isinstance(params.reasoning.budget_tokens, int):
        names.append("reasoning.budget_tokens")
    return unsupported("ollama", *names)


def encode_request(params: StreamTextParams, provider: Provider, model: str, api_key: str | None) -> HttpRequest:
    body = encode_body(params, provider, model)
    # a local Ollama takes no key; ollama.com and proxies in front of one take a Bearer
    headers = json_headers(provider, api_key, "application/x-ndjson")
    return HttpRequest("POST", f"{provider.base_url}/api/chat", headers, msgspec.json.encode(body),
                       warnings=dropped(params))


def models_request(provider: Provider, api_key: str | None) -> HttpRequest:
    """``/api/tags``: the models pulled on this server."""
    return HttpRequest("GET", f"{provider.base_url}/api/tags", json_headers(provider, api_key, "application/json"))


class _ModelEntry(msgspec.Struct):
    name: str = ""
    model: str = ""
    """the same as ``name`` on current servers; older ones sent only one of them"""


class _ModelList(msgspec.Struct):
    models: list[_ModelEntry] | None = None


def parse_models(body: bytes) -> list[Model]:
    try:
        entries = msgspec.json.decode(body, type=_ModelList).models or []
    except (msgspec.DecodeError, msgspec.ValidationError):
        return []
    return [Model(e.name or e.model) for e in entries if e.name or e.model]


def map_http_error(status: int, body: bytes, provider: str) -> SidecarError:
    """Ollama's error bodies are ``{"error": "..."}``; a 404 "model 'x' not found" is unknown_model."""
    return upstream_error(provider, status, *error_body(body))


# --- embeddings ---------------------------------------------------------------------------

EMBED_BATCH = 64
"""texts per ``/api/embed`` request: Ollama has no limit of its own, but it embeds a batch in one go, so a
smaller one keeps each request short (well inside the timeouts) and its answer small"""


def embed_request(provider: Provider, model: str, texts: list[str], dimensions: int | None, api_key: str | None,
                  options: dict[str, Any] | None) -> HttpRequest:
    """``POST {base}/api/embed``; ``options`` are merged over the body (e.g. ``{"truncate": false}``)."""
    body: dict[str, Any] = {"model": model, "input": texts}
    if dimensions is not None:
        body["dimensions"] = dimensions
    if options:
        merge(body, options)
    return HttpRequest("POST", f"{provider.base_url}/api/embed", json_headers(provider, api_key, "application/json"),
                       msgspec.json.encode(body))


class _Embeddings(msgspec.Struct):
    embeddings: list[list[float]]
    prompt_eval_count: int | None = None


def parse_embeddings(body: bytes) -> tuple[list[list[float]], int | None]:
    answer = msgspec.json.decode(body, type=_Embeddings)
    return answer.embeddings, answer.prompt_eval_count


# --- decode -----------------------------------------------------------------------------


class _Function(msgspec.Struct):
    name: str = ""
    arguments: Any = None
    """an object on Ollama's wire; a string is tolerated (proxies that re-encode it)"""


class _ToolCall(msgspec.Struct):
    function: _Function | None = None
    id: str | None = None
    """sent by recent servers only"""


class _Message(msgspec.Struct):
    content: str | None = None
    thinking: str | None = None
    tool_calls: list[_ToolCall] | None = None


class _Chunk(msgspec.Struct):
    message: _Message | None = None
    response: str | None = None
    """``/api/generate``'s text field: read too, so either endpoint decodes"""
    thinking: str | None = None
    """``/api/generate``'s thinking field"""
    done: bool = False
    done_reason: str | None = None
    prompt_eval_count: int | None = None
    eval_count: int | None = None
    error: Any = None


_decode_chunk = msgspec.json.Decoder(_Chunk).decode

FINISH: dict[str, FinishReason] = {"stop": "stop", "length": "length"}


class Decoder:
    """NDJSON chat chunks to events. Tool calls arrive whole, so each one is started, streamed as one
    argument delta and finished in the same line; Ollama gives no id (old servers), so ids are generated."""

    def __init__(self, provider: str = "ollama") -> None:
        self.provider = provider
        self.finish_reason: FinishReason | None = None
        self.usage: Usage | None = None
        self.complete = False
        self._reasoning = False
        self._calls = 0

    def feed(self, event: str, data: str) -> list[Event]:
        try:
            chunk = _decode_chunk(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise SidecarError("protocol_error", f"{self.provider}: unparseable stream line ({exc})") from None
        if chunk.error is not None:
            code, message = error_fields({"error": chunk.error})
            raise upstream_error(self.provider, None, code, message)
        out: list[Event] = []
        msg = chunk.message
        thinking = (msg.thinking if msg else None) or chunk.thinking
        if thinking:
            self._reasoning = True
            out.append(ReasoningDeltaEvent(text=thinking))
        text = (msg.content if msg else None) or chunk.response
        if text:
            self._end_reasoning(out)
            out.append(TextDeltaEvent(text=text))
        if msg and msg.tool_calls:
            self._end_reasoning(out)
            for tc in msg.tool_calls:
                self._tool_call(tc, out)
        if chunk.done:
            self.complete = True
            self._finish(chunk)
        return out

    def _tool_call(self, tc: _ToolCall, out: list[Event]) -> None:
        fn = tc.function
        if fn is None or not fn.name:
            return  # nothing the caller could run
        index, self._calls = self._calls, self._calls + 1
        call_id = tc.id or f"call_{uuid.uuid4().hex[:24]}"
        out.append(ToolCallStartEvent(tool_call_id=call_id, name=fn.name, index=index))
        args = fn.arguments
        if isinstance(args, dict):
            raw = msgspec.json.encode(args).decode()
            out.append(ToolCallDeltaEvent(tool_call_id=call_id, arguments_delta=raw))
            out.append(ToolCallEvent(tool_call_id=call_id, name=fn.name, arguments=args))
            return
        raw = args if isinstance(args, str) else ("" if args is None else msgspec.json.encode(args).decode())
        if raw:
            out.append(ToolCallDeltaEvent(tool_call_id=call_id, arguments_delta=raw))
        out.append(tool_call_event(call_id, fn.name, raw))

    def _finish(self, chunk: _Chunk) -> None:
        """The last line: why it stopped (a call made means tool_calls, whatever ``done_reason`` says:
        Ollama reports "stop" there) and the token counts."""
        reason = chunk.done_reason
        if self._calls and reason in (None, "stop"):
            self.finish_reason = "tool_calls"
        elif reason is None:
            self.finish_reason = "stop"  # servers before done_reason existed
        else:
            self.finish_reason = FINISH.get(reason, "other")
        if chunk.prompt_eval_count is not None or chunk.eval_count is not None:
            self.usage = Usage(input_tokens=chunk.prompt_eval_count or 0, output_tokens=chunk.eval_count or 0)

    def _end_reasoning(self, out: list[Event]) -> None:
        if self._reasoning:
            self._reasoning = False
            out.append(ReasoningEndEvent())

    def end(self) -> list[Event]:
        out: list[Event] = []
        self._end_reasoning(out)
        return out


PROTOCOL = WireProtocol(
    name="ollama",
    framing="ndjson",
    encode_request=encode_request,
    new_decoder=Decoder,
    map_http_error=map_http_error,
    models_request=models_request,
    parse_models=parse_models,
    embed_request=embed_request,
    parse_embeddings=parse_embeddings,
    embed_batch=EMBED_BATCH,
)
