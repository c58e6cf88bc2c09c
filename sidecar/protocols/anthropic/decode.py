"""Anthropic's answers: the Messages API stream, as contract events, and the model list."""

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
    RedactedReasoningEvent,
    TextDeltaEvent,
    ToolCallDeltaEvent,
    ToolCallEvent,
    ToolCallStartEvent,
    Usage,
)
from ..base import tool_call_event
from ..http_errors import error_fields, stream_error
from .errors import anthropic_error


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
                raise self._stream_error(stream_error(data)) from None
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
            raise self._stream_error(ev.error if ev.error is not None else stream_error(data))
        # ping, and event types added later: nothing to say
        return out

    def _stream_error(self, err: Any) -> SidecarError:
        code, message = error_fields({"error": err})
        return anthropic_error(self.provider, None, code, message or "error in the stream")

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

