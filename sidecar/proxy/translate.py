"""OpenAI chat-completions bodies to the contract's StreamTextParams, and contract events back to
OpenAI chunks and bodies. Pure: no I/O, so every mapping is testable on its own."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal, TypeVar

import msgspec
from msgspec import Struct

from ..errors import SidecarError
from ..types import (
    AssistantMessage,
    CompleteChatResult,
    ContentPart,
    ErrorInfo,
    Event,
    ImagePart,
    Message,
    ReasoningDeltaEvent,
    ReasoningOptions,
    ReasoningPart,
    ResponseFormat,
    StreamTextParams,
    SystemMessage,
    TextDeltaEvent,
    TextPart,
    ToolCallDeltaEvent,
    ToolCallEvent,
    ToolCallPart,
    ToolCallStartEvent,
    ToolChoiceName,
    ToolDefinition,
    ToolMessage,
    Usage,
    UserMessage,
)

# --- the request -------------------------------------------------------------------------------
# Lenient Structs: unknown fields are ignored (clients send many we have no use for), types are checked.


class _Function(Struct):
    name: str
    arguments: str | dict[str, Any] = ""


class _ToolCall(Struct):
    function: _Function
    id: str = ""
    type: str = "function"


class _ToolFunction(Struct):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


class _Tool(Struct):
    function: _ToolFunction
    type: str = "function"


class _NamedChoice(Struct):
    function: _Function | None = None
    type: str = "function"


class _JsonSchema(Struct):
    name: str | None = None
    schema: dict[str, Any] | None = None


class _ResponseFormat(Struct):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: _JsonSchema | None = None


class _StreamOptions(Struct):
    include_usage: bool = False


class _Message(Struct):
    role: str
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[_ToolCall] | None = None
    tool_call_id: str | None = None


class ChatRequest(Struct):
    """The fields of an OpenAI ``/v1/chat/completions`` body the proxy understands."""

    model: str
    messages: list[_Message]
    stream: bool | None = False
    stream_options: _StreamOptions | None = None
    tools: list[_Tool] | None = None
    tool_choice: str | _NamedChoice | None = None
    parallel_tool_calls: bool | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    response_format: _ResponseFormat | None = None
    reasoning_effort: str | None = None
    n: int | None = None

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


_decoder = msgspec.json.Decoder(ChatRequest)
T = TypeVar("T")
NESTED_TOO_DEEPLY = "the request body is nested too deeply"


def parse_request(body: bytes) -> ChatRequest:
    return decode_body(_decoder, body)


def decode_body(decoder: msgspec.json.Decoder[T], body: bytes) -> T:
    """Decode and type-check a body; a bad one is ``invalid_request`` naming the field."""
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise SidecarError("invalid_request", f"invalid request body: {exc}") from None
    except msgspec.DecodeError:
        raise SidecarError("invalid_request", "the request body is not valid JSON") from None
    except RecursionError:
        raise SidecarError("invalid_request", NESTED_TOO_DEEPLY) from None


def to_params(req: ChatRequest) -> StreamTextParams:
    """The contract's request for an OpenAI one; what the contract cannot express is refused, not dropped."""
    if req.n not in (None, 1):
        raise SidecarError("invalid_request", "n other than 1 is not supported")
    if ":" not in req.model:
        raise SidecarError("unknown_model", f"model must be 'provider:model', got {req.model!r}")
    params = StreamTextParams(messages=[_message(m, i) for i, m in enumerate(req.messages)], model=req.model)
    if req.tools:
        params.tools = [_tool(t) for t in req.tools]
    if req.tool_choice is not None:
        params.tool_choice = _tool_choice(req.tool_choice)
    if req.parallel_tool_calls is not None:
        params.parallel_tool_calls = req.parallel_tool_calls
    if req.temperature is not None:
        params.temperature = req.temperature
    if req.top_p is not None:
        params.top_p = req.top_p
    max_tokens = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    if max_tokens is not None:
        params.max_tokens = max_tokens
    if req.stop is not None:
        params.stop = [req.stop] if isinstance(req.stop, str) else list(req.stop)
    if req.seed is not None:
        params.seed = req.seed
    if req.response_format is not None and req.response_format.type != "text":
        fmt = ResponseFormat(type=req.response_format.type)
        js = req.response_format.json_schema
        if js is not None:
            if js.schema is not None:
                fmt.schema = js.schema
            if js.name is not None:
                fmt.name = js.name
        params.response_format = fmt
    if req.reasoning_effort is not None:
        effort = {"minimal": "low", "low": "low", "medium": "medium", "high": "high"}.get(req.reasoning_effort)
        if effort is not None:
            params.reasoning = ReasoningOptions(effort=effort)  # type: ignore[arg-type]
        elif req.reasoning_effort != "none":
            raise SidecarError("invalid_request", f"unknown reasoning_effort {req.reasoning_effort!r}")
    return params


def _message(m: _Message, i: int) -> Message:
    where = f"messages[{i}]"
    if m.role in ("system", "developer"):
        return SystemMessage(content=_text_only(m.content, where))
    if m.role == "user":
        return UserMessage(content=_parts(m.content, where))
    if m.role == "assistant":
        parts: list[ContentPart] = []
        text = _text_only(m.content, where)
        if text:
            parts.append(TextPart(text=text))
        for call in m.tool_calls or ():
            parts.append(ToolCallPart(id=call.id, name=call.function.name, arguments=_arguments(call.function)))
        if not m.tool_calls:
            return AssistantMessage(content=text)
        return AssistantMessage(content=parts)
    if m.role == "tool":
        if not m.tool_call_id:
            raise SidecarError("invalid_request", f"{where}: a tool message needs tool_call_id")
        return ToolMessage(tool_call_id=m.tool_call_id, content=_parts(m.content, where))
    raise SidecarError("invalid_request", f"{where}: role {m.role!r} is not supported")


def _text_only(content: str | list[dict[str, Any]] | None, where: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for part in content:
        kind = part.get("type")
        if kind in ("text", "refusal") and isinstance(part.get(kind), str):
            texts.append(part[kind])
        else:
            raise SidecarError("invalid_request", f"{where}: content part {kind!r} is not allowed here")
    return "".join(texts)


def _parts(content: str | list[dict[str, Any]] | None, where: str) -> str | list[ContentPart]:
    if content is None or isinstance(content, str):
        return content or ""
    out: list[ContentPart] = []
    for part in content:
        kind = part.get("type")
        if kind == "text" and isinstance(part.get("text"), str):
            out.append(TextPart(text=part["text"]))
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str):
                raise SidecarError("invalid_request", f"{where}: image_url needs a url")
            out.append(_image(url, where))
        else:
            raise SidecarError("invalid_request", f"{where}: content part {kind!r} is not supported")
    return out


def _image(url: str, where: str) -> ImagePart:
    if url.startswith("data:"):
        head, sep, data = url[5:].partition(",")
        media_type, _, encoding = head.partition(";")
        if not sep or encoding != "base64":
            raise SidecarError("invalid_request", f"{where}: an image data URL must be base64")
        return ImagePart(media_type=media_type or "image/png", data=data)
    ext = url.split("?", 1)[0].rsplit(".", 1)[-1].lower()
    media = {"png": "image/png", "gif": "image/gif", "webp": "image/webp"}.get(ext, "image/jpeg")
    return ImagePart(media_type=media, url=url)


def _arguments(fn: _Function) -> dict[str, Any]:
    if isinstance(fn.arguments, dict):
        return fn.arguments
    if not fn.arguments.strip():
        return {}
    try:
        value = json.loads(fn.arguments)
    except ValueError:
        raise SidecarError("invalid_request", f"tool call {fn.name!r}: arguments are not JSON") from None
    if not isinstance(value, dict):
        raise SidecarError("invalid_request", f"tool call {fn.name!r}: arguments must be a JSON object")
    return value


def _tool(t: _Tool) -> ToolDefinition:
    if t.type != "function":
        raise SidecarError("invalid_request", f"tool type {t.type!r} is not supported")
    tool = ToolDefinition(name=t.function.name, parameters=t.function.parameters or {"type": "object",
                                                                                      "properties": {}})
    if t.function.description:
        tool.description = t.function.description
    return tool


def _tool_choice(choice: str | _NamedChoice) -> Literal["auto", "none", "required"] | ToolChoiceName:
    if isinstance(choice, str):
        if choice in ("auto", "none", "required"):
            return choice  # type: ignore[return-value]
        raise SidecarError("invalid_request", f"unknown tool_choice {choice!r}")
    if choice.function is None:
        raise SidecarError("invalid_request", "tool_choice needs function.name")
    return ToolChoiceName(name=choice.function.name)


# --- the answer ----------------------------------------------------------------------------------

FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_calls", "content_filter": "content_filter"}


def finish_reason(reason: str) -> str:
    """The contract's ``other`` and ``max_steps`` have no OpenAI name: the answer simply stopped."""
    return FINISH.get(reason, "stop")


def openai_usage(usage: Usage) -> dict[str, Any]:
    out: dict[str, Any] = {"prompt_tokens": usage.input_tokens, "completion_tokens": usage.output_tokens,
                           "total_tokens": usage.input_tokens + usage.output_tokens}
    if isinstance(usage.cached_input_tokens, int):
        out["prompt_tokens_details"] = {"cached_tokens": usage.cached_input_tokens}
    if isinstance(usage.reasoning_tokens, int):
        out["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    return out


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


class ChunkWriter:
    """Contract events to ``chat.completion.chunk`` payloads (dicts), one stream's state.

    The first payload always has a non-empty ``choices`` (the role); OpenAI's tool-call indexes
    count the calls from 0, whatever index the upstream gave them.
    """

    def __init__(self, model: str, include_usage: bool) -> None:
        self.id = completion_id()
        self.created = int(time.time())
        self.model = model
        self.include_usage = include_usage
        self._calls: dict[str, tuple[int, bool]] = {}
        """tool_call_id -> (OpenAI index, whether an argument fragment was sent)"""

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    def role(self) -> dict[str, Any]:
        return self._chunk({"role": "assistant", "content": ""})

    def event(self, event: Event) -> dict[str, Any] | None:
        if isinstance(event, TextDeltaEvent):
            return self._chunk({"content": event.text}) if event.text else None
        if isinstance(event, ReasoningDeltaEvent):
            return self._chunk({"reasoning_content": event.text}) if event.text else None
        if isinstance(event, ToolCallStartEvent):
            return self._start(event.tool_call_id, event.name)
        if isinstance(event, ToolCallDeltaEvent):
            if event.tool_call_id not in self._calls or not event.arguments_delta:
                return None
            index, _ = self._calls[event.tool_call_id]
            self._calls[event.tool_call_id] = (index, True)
            return self._chunk({"tool_calls": [{"index": index, "function": {"arguments": event.arguments_delta}}]})
        if isinstance(event, ToolCallEvent):
            first = None
            if event.tool_call_id not in self._calls:
                first = self._start(event.tool_call_id, event.name)
            index, sent = self._calls[event.tool_call_id]
            if sent:
                return first
            # the upstream gave no fragments (whole arguments at once): send them as one
            args = event.arguments_raw if isinstance(event.arguments_raw, str) else json.dumps(event.arguments)
            self._calls[event.tool_call_id] = (index, True)
            if first is not None:
                first["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] = args
                return first
            return self._chunk({"tool_calls": [{"index": index, "function": {"arguments": args}}]})
        return None

    def _start(self, call_id: str, name: str) -> dict[str, Any]:
        index = len(self._calls)
        self._calls[call_id] = (index, False)
        return self._chunk({"tool_calls": [{"index": index, "id": call_id, "type": "function",
                                            "function": {"name": name, "arguments": ""}}]})

    def finish(self, reason: str, usage: Usage) -> list[dict[str, Any]]:
        """The chunk with the finish_reason, then (when asked for) the usage chunk with empty choices."""
        out = [self._chunk({}, finish_reason(reason))]
        if self.include_usage:
            out.append({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                        "model": self.model, "choices": [], "usage": openai_usage(usage)})
        return out


def completion_body(result: CompleteChatResult) -> dict[str, Any]:
    """A non-streaming ``chat.completion`` from a complete_chat result."""
    calls = [{"id": p.id, "type": "function", "function": {"name": p.name, "arguments": json.dumps(p.arguments)}}
             for p in result.parts if isinstance(p, ToolCallPart)]
    message: dict[str, Any] = {"role": "assistant", "content": result.content or (None if calls else ""),
                               "refusal": None}
    if calls:
        message["tool_calls"] = calls
    reasoning = "".join(p.text for p in result.parts if isinstance(p, ReasoningPart))
    if reasoning:
        message["reasoning_content"] = reasoning
    return {"id": completion_id(), "object": "chat.completion", "created": int(time.time()), "model": result.model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": finish_reason(result.finish_reason)}],
            "usage": openai_usage(result.usage)}


# --- errors ----------------------------------------------------------------------------------------

STATUS = {
    "invalid_request": 400, "context_length_exceeded": 400, "content_filtered": 400,
    "authentication_failed": 401, "missing_api_key": 401, "permission_denied": 403,
    "unknown_model": 404, "unknown_provider": 404, "not_found": 404, "rate_limited": 429,
    "upstream_unavailable": 503, "timeout": 504, "network_error": 502, "protocol_error": 502,
    "cancelled": 499, "keyring_unavailable": 500, "internal": 500,
}
_TYPE = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
         404: "not_found_error", 413: "invalid_request_error", 429: "rate_limit_error"}


def error_status(info: ErrorInfo) -> int:
    return STATUS.get(info.code, 500)


def error_body(code: str, message: str, status: int) -> dict[str, Any]:
    """OpenAI's error shape; ``code`` is the contract's error code (``model_not_found`` for a model)."""
    wire_code = "model_not_found" if code == "unknown_model" else code
    return {"error": {"message": message, "type": _TYPE.get(status, "api_error"), "param": None, "code": wire_code}}


def encode(payload: Any) -> bytes:
    return msgspec.json.encode(payload)


def sse(payload: Any) -> bytes:
    return b"data: " + msgspec.json.encode(payload) + b"\n\n"

