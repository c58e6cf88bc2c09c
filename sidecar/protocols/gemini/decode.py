"""Gemini's answers: GenerateContentResponse chunks as contract events, and the model list."""

from __future__ import annotations

from typing import Any

import msgspec

from ...errors import SidecarError
from ...providers.model import Model
from ...types import (
    Event,
    FinishReason,
    ReasoningDeltaEvent,
    ReasoningEndEvent,
    TextDeltaEvent,
    ToolCallDeltaEvent,
    ToolCallEvent,
    ToolCallStartEvent,
    Usage,
)
from ..http_errors import error_fields, upstream_error
from .args import ArgsBuilder, PartialArg
from .errors import error_member, google_error


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def parse_models(body: bytes) -> list[Model]:
    try:
        obj = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return []
    entries = obj.get("models") if isinstance(obj, dict) else None
    out: list[Model] = []
    for e in entries if isinstance(entries, list) else ():
        if not isinstance(e, dict) or not isinstance(e.get("name"), str) or not e["name"]:
            continue
        methods = e.get("supportedGenerationMethods")
        if isinstance(methods, list) and "generateContent" not in methods:
            continue  # embeddings, image and audio-only models: nothing to chat with
        name = e.get("displayName")
        thinking = e.get("thinking")
        out.append(Model(
            e["name"].removeprefix("models/"),
            name=name if isinstance(name, str) else "",
            context_window=_int(e.get("inputTokenLimit")),
            max_output_tokens=_int(e.get("outputTokenLimit")),
            reasoning=thinking if isinstance(thinking, bool) else None,
        ))
    return out


# --- the stream -------------------------------------------------------------------------


class _FunctionCall(msgspec.Struct, rename="camel"):
    name: str | None = None
    id: str | None = None
    args: dict[str, Any] | None = None
    partial_args: list[PartialArg] | None = None
    will_continue: bool = False


class _Part(msgspec.Struct, rename="camel"):
    text: str | None = None
    thought: bool = False
    thought_signature: str | None = None
    function_call: _FunctionCall | None = None


class _Content(msgspec.Struct):
    parts: list[_Part] | None = None


class _Candidate(msgspec.Struct, rename="camel"):
    content: _Content | None = None
    finish_reason: str | None = None
    index: int = 0


class _UsageMetadata(msgspec.Struct, rename="camel"):
    prompt_token_count: int | None = None
    candidates_token_count: int | None = None
    thoughts_token_count: int | None = None
    tool_use_prompt_token_count: int | None = None
    cached_content_token_count: int | None = None
    total_token_count: int | None = None


class _PromptFeedback(msgspec.Struct, rename="camel"):
    block_reason: str | None = None
    block_reason_message: str | None = None


class _Chunk(msgspec.Struct, rename="camel"):
    candidates: list[_Candidate] | None = None
    usage_metadata: _UsageMetadata | None = None
    prompt_feedback: _PromptFeedback | None = None
    error: Any = None


_decode_chunk = msgspec.json.Decoder(_Chunk).decode
_encode = msgspec.json.encode

_FILTERED = ("SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY",
             "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION")
FINISH: dict[str, FinishReason] = {"STOP": "stop", "MAX_TOKENS": "length", **dict.fromkeys(_FILTERED, "content_filter")}


def convert_usage(u: _UsageMetadata) -> Usage | None:
    """None for a chunk whose usageMetadata has no counts yet (streamed calls send only trafficType)."""
    counts = (u.prompt_token_count, u.candidates_token_count, u.thoughts_token_count, u.total_token_count)
    if all(c is None for c in counts):
        return None
    thoughts = u.thoughts_token_count or 0
    usage = Usage(
        input_tokens=(u.prompt_token_count or 0) + (u.tool_use_prompt_token_count or 0),
        output_tokens=(u.candidates_token_count or 0) + thoughts,
    )
    if thoughts:
        usage.reasoning_tokens = thoughts
    if u.cached_content_token_count:
        usage.cached_input_tokens = u.cached_content_token_count
    return usage


class _StreamedCall:
    __slots__ = ("builder", "id", "name")

    def __init__(self, id_: str, name: str) -> None:
        self.id = id_
        self.name = name
        self.builder = ArgsBuilder()


# --- the decoder ------------------------------------------------------------------------


class Decoder:
    """GenerateContentResponse chunks to events. Gemini has no end marker: the finishReason ends a stream."""

    def __init__(self, provider: str = "gemini") -> None:
        self.provider = provider
        self.finish_reason: FinishReason | None = None
        self.usage: Usage | None = None
        self.complete = False
        self._usage_meta: _UsageMetadata | None = None
        self._calls = 0
        """tool calls started so far; also the next one's index"""
        self._streamed: _StreamedCall | None = None
        self._reasoning = False
        self._signature: str | None = None
        """a signature that came on a thought part, sent when its run of thoughts closes"""

    def feed(self, event: str, data: str) -> list[Event]:
        if data == "[DONE]":  # not Gemini's, but a proxy in front of it may add one
            self.complete = True
            return []
        try:
            chunk = _decode_chunk(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            err = error_member(data)
            if err is not None:
                raise self._error(err) from None
            raise SidecarError("protocol_error", f"{self.provider}: unparseable stream chunk ({exc})",
                               provider=self.provider) from None
        if chunk.error is not None:
            raise self._error(chunk.error)
        meta = chunk.usage_metadata
        if meta is not None and meta != self._usage_meta:  # most chunks repeat the last counts
            self._usage_meta = meta
            self.usage = convert_usage(meta) or self.usage
        feedback = chunk.prompt_feedback
        if feedback is not None and feedback.block_reason:
            why = f": {feedback.block_reason_message}" if feedback.block_reason_message else ""
            raise SidecarError("content_filtered", f"{self.provider}: the prompt was blocked "
                               f"({feedback.block_reason}){why}", provider=self.provider)
        out: list[Event] = []
        for candidate in chunk.candidates or ():
            if candidate.index != 0:
                continue
            if candidate.content is not None:
                for part in candidate.content.parts or ():
                    self._part(part, out)
            if candidate.finish_reason:
                finish = FINISH.get(candidate.finish_reason, "other")
                self.finish_reason = "tool_calls" if finish == "stop" and self._calls else finish
        return out

    def end(self) -> list[Event]:
        out: list[Event] = []
        self._finish_streamed(out)  # a streamed call whose closing fragment never came
        self._end_reasoning(out)
        if self.finish_reason == "stop" and self._calls:
            self.finish_reason = "tool_calls"
        return out

    def _error(self, err: Any) -> SidecarError:
        if isinstance(err, dict):
            return google_error(self.provider, None, err)
        code, message = error_fields({"error": err})
        return upstream_error(self.provider, None, code, message)

    def _part(self, part: _Part, out: list[Event]) -> None:
        signature = part.thought_signature or None
        if part.function_call is not None:
            self._function_call(part.function_call, signature, out)
            return
        self._finish_streamed(out)
        if part.thought:
            if self._signature is not None:  # a signed run is over; this part starts the next one
                self._end_reasoning(out)
            if part.text:
                self._reasoning = True
                out.append(ReasoningDeltaEvent(text=part.text))
            self._signature = signature or self._signature
        elif part.text is not None:
            self._end_reasoning(out, signature)
            if part.text:
                out.append(TextDeltaEvent(text=part.text))
        else:  # executableCode, codeExecutionResult, toolCall, toolResponse, inlineData: no contract event
            self._end_reasoning(out)

    def _end_reasoning(self, out: list[Event], signature: str | None = None) -> None:
        """Close the open thought run (with its signature), then hand over the next part's own signature."""
        pending, self._signature = self._signature, None
        if pending is None and self._reasoning:
            pending, signature = signature, None  # the part that ends the thoughts carries their signature
        if self._reasoning or pending:
            out.append(ReasoningEndEvent() if pending is None else ReasoningEndEvent(signature=pending))
            self._reasoning = False
        if signature:
            out.append(ReasoningEndEvent(signature=signature))

    def _start(self, fc: _FunctionCall, name: str, out: list[Event]) -> str:
        index = self._calls
        self._calls += 1
        call_id = fc.id or f"call_{index}"
        out.append(ToolCallStartEvent(tool_call_id=call_id, name=name, index=index))
        return call_id

    def _function_call(self, fc: _FunctionCall, signature: str | None, out: list[Event]) -> None:
        """A whole call, or one piece of a streamed one: {name, willContinue}, {partialArgs}..., {}."""
        if fc.name:
            self._finish_streamed(out)  # a named part always starts a new call
            self._end_reasoning(out, signature)
            call_id = self._start(fc, fc.name, out)
            if not fc.will_continue and not fc.partial_args:
                args = fc.args or {}
                out.append(ToolCallDeltaEvent(tool_call_id=call_id, arguments_delta=_encode(args).decode()))
                out.append(ToolCallEvent(tool_call_id=call_id, name=fc.name, arguments=args))
                return
            self._streamed = _StreamedCall(call_id, fc.name)
        else:
            self._end_reasoning(out, signature)
        call = self._streamed
        if call is None:
            return  # an end marker or fragment with no call open: nothing to add to
        delta = "".join(call.builder.add(arg) for arg in fc.partial_args or ())
        if delta:
            out.append(ToolCallDeltaEvent(tool_call_id=call.id, arguments_delta=delta))
        if not fc.will_continue:
            self._finish_streamed(out)

    def _finish_streamed(self, out: list[Event]) -> None:
        call, self._streamed = self._streamed, None
        if call is None:
            return
        closing = call.builder.finish()
        if closing:
            out.append(ToolCallDeltaEvent(tool_call_id=call.id, arguments_delta=closing))
        out.append(ToolCallEvent(tool_call_id=call.id, name=call.name, arguments=call.builder.args))


class _Values(msgspec.Struct):
    values: list[float]


class _Embeddings(msgspec.Struct):
    embeddings: list[_Values]


def parse_embeddings(body: bytes) -> tuple[list[list[float]], int | None]:
    """``batchEmbedContents``' answer, in the order of its requests; it reports no token count."""
    return [e.values for e in msgspec.json.decode(body, type=_Embeddings).embeddings], None
