"""The Responses API's stream (``event: <type>`` + ``data: {"type": <type>, ...}``) as contract events."""

from __future__ import annotations

from typing import Any

import msgspec

from ...errors import SidecarError
from ...types import (
    Event,
    FinishReason,
    ReasoningDeltaEvent,
    ReasoningEndEvent,
    TextDeltaEvent,
    ToolCallDeltaEvent,
    ToolCallStartEvent,
    Usage,
)
from ..base import tool_call_event
from ..http_errors import error_fields, stream_error, upstream_error


class _Item(msgspec.Struct):
    """An output item; only the fields of the kinds handled here."""

    type: str = ""
    id: str | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None


class _Details(msgspec.Struct):
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None


class _Usage(msgspec.Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    input_tokens_details: _Details | None = None
    output_tokens_details: _Details | None = None


class _Incomplete(msgspec.Struct):
    reason: str | None = None


class _Response(msgspec.Struct):
    status: str | None = None
    usage: _Usage | None = None
    incomplete_details: _Incomplete | None = None
    error: Any = None


class _Event(msgspec.Struct):
    type: str = ""
    item: msgspec.Raw = msgspec.Raw()
    """kept as the bytes that came: a reasoning item goes back exactly as received"""
    item_id: str | None = None
    output_index: int | None = None
    summary_index: int | None = None
    content_index: int | None = None
    delta: str | None = None
    text: str | None = None
    refusal: str | None = None
    arguments: str | None = None
    response: _Response | None = None
    error: Any = None
    code: Any = None
    message: Any = None


_decode_event = msgspec.json.Decoder(_Event).decode
_decode_item = msgspec.json.Decoder(_Item).decode

INCOMPLETE: dict[str, FinishReason] = {"max_output_tokens": "length", "content_filter": "content_filter"}
"""``response.incomplete``'s reason -> the finish reason (any other reason is ``other``)"""


def convert_usage(u: _Usage) -> Usage:
    usage = Usage(input_tokens=u.input_tokens or 0, output_tokens=u.output_tokens or 0)
    if u.input_tokens_details is not None and u.input_tokens_details.cached_tokens:
        usage.cached_input_tokens = u.input_tokens_details.cached_tokens
    if u.output_tokens_details is not None and u.output_tokens_details.reasoning_tokens:
        usage.reasoning_tokens = u.output_tokens_details.reasoning_tokens
    return usage


class _Call:
    __slots__ = ("args", "call_id", "name", "streamed")

    def __init__(self, call_id: str, name: str) -> None:
        self.call_id = call_id
        self.name = name
        self.args: list[str] = []
        self.streamed = False


class Decoder:
    """Responses events to contract events. Output items are keyed by their id: a function call is announced by
    ``output_item.added`` and completed by ``output_item.done``; a reasoning item ends (``reasoning_end``, the
    finished item as its signature) at its ``output_item.done``. Server-side tools' items and event types not
    known here are skipped."""

    def __init__(self, provider: str = "openai") -> None:
        self.provider = provider
        self.finish_reason: FinishReason | None = None
        self.usage: Usage | None = None
        self.complete = False
        self._calls: dict[str, _Call] = {}
        """function calls by item id, from their output_item.added to their output_item.done"""
        self._started = 0
        self._called = False
        self._refused = False
        self._reasoning: set[str] = set()
        """reasoning items between their output_item.added and .done"""
        self._streamed: set[tuple[str, str, int]] = set()
        """the parts (kind, item, index) whose text came in deltas: their ``.done`` repeats it"""

    def feed(self, event: str, data: str) -> list[Event]:
        if data == "[DONE]":  # OpenRouter's /responses ends like its chat completions
            self.complete = True
            return []
        try:
            ev = _decode_event(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            if event == "error":
                raise self._error(stream_error(data)) from None
            raise SidecarError("protocol_error", f"{self.provider}: unparseable stream event ({exc})") from None
        kind = ev.type or event
        out: list[Event] = []
        if kind == "response.output_text.delta" or kind == "response.refusal.delta":
            if ev.delta:
                self._refused = self._refused or kind == "response.refusal.delta"
                self._streamed.add(self._part(kind, ev))
                out.append(TextDeltaEvent(text=ev.delta))
        elif kind == "response.output_text.done" or kind == "response.refusal.done":
            whole = ev.text if kind == "response.output_text.done" else ev.refusal
            if whole and self._part(kind, ev) not in self._streamed:  # no deltas came for it: the whole at once
                self._refused = self._refused or kind == "response.refusal.done"
                out.append(TextDeltaEvent(text=whole))
        elif kind == "response.reasoning_summary_text.delta" or kind == "response.reasoning_text.delta":
            if ev.delta:
                if ev.item_id:
                    self._reasoning.add(ev.item_id)
                self._streamed.add(self._part(kind, ev))
                out.append(ReasoningDeltaEvent(text=ev.delta))
        elif kind == "response.reasoning_summary_text.done" or kind == "response.reasoning_text.done":
            if ev.text and self._part(kind, ev) not in self._streamed:
                out.append(ReasoningDeltaEvent(text=ev.text))
        elif kind == "response.reasoning_summary_part.added":
            if ev.summary_index:  # the parts of one summary, a paragraph apart
                out.append(ReasoningDeltaEvent(text="\n\n"))
        elif kind == "response.function_call_arguments.delta":
            call = self._calls.get(ev.item_id or "")
            if call is not None and ev.delta:
                call.args.append(ev.delta)
                call.streamed = True
                out.append(ToolCallDeltaEvent(tool_call_id=call.call_id, arguments_delta=ev.delta))
        elif kind == "response.function_call_arguments.done":
            call = self._calls.get(ev.item_id or "")
            if call is not None and isinstance(ev.arguments, str):
                if not call.streamed and ev.arguments:  # no deltas came (LM Studio): the whole at once
                    out.append(ToolCallDeltaEvent(tool_call_id=call.call_id, arguments_delta=ev.arguments))
                    call.streamed = True
                call.args = [ev.arguments]
        elif kind == "response.output_item.added":
            self._item_added(ev, out)
        elif kind == "response.output_item.done":
            self._item_done(ev, out)
        elif kind == "response.completed":
            self._usage(ev)
            self.complete = True
            self.finish_reason = "tool_calls" if self._called else "content_filter" if self._refused else "stop"
        elif kind == "response.incomplete":
            self._usage(ev)
            self.complete = True
            details = ev.response.incomplete_details if ev.response is not None else None
            self.finish_reason = INCOMPLETE.get(details.reason or "", "other") if details is not None else "other"
        elif kind == "response.failed":
            err = ev.response.error if ev.response is not None else None
            raise self._error(err if err is not None else {"message": "the response failed"})
        elif kind == "error" or event == "error":
            # the error's fields inside an ``error`` object (as recorded) or at the top (as the SDK types it)
            err = ev.error if isinstance(ev.error, dict) else {"code": ev.code, "message": ev.message or ev.error}
            raise self._error(err)
        return out

    @staticmethod
    def _part(kind: str, ev: _Event) -> tuple[str, str, int]:
        """Which text a delta or ``.done`` (of type ``kind``) belongs to: a summary part, or a content part."""
        if "summary" in kind:
            return "summary", ev.item_id or "", ev.summary_index or 0
        return "reasoning" if "reasoning" in kind else "content", ev.item_id or "", ev.content_index or 0

    def _error(self, err: Any) -> SidecarError:
        """An error the upstream reported in the stream (its HTTP status was 200): the code and words decide."""
        code, message = error_fields({"error": err})
        return upstream_error(self.provider, None, code, message or "error in the stream")

    def _usage(self, ev: _Event) -> None:
        if ev.response is not None and ev.response.usage is not None:
            self.usage = convert_usage(ev.response.usage)

    def _item(self, ev: _Event) -> _Item | None:
        if not ev.item:  # none (Raw does not go in a union with None: empty is none)
            return None
        try:
            return _decode_item(ev.item)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise SidecarError("protocol_error", f"{self.provider}: unparseable output item ({exc})") from None

    def _item_added(self, ev: _Event, out: list[Event]) -> None:
        item = self._item(ev)
        if item is None or not item.id:
            return
        if item.type == "function_call":
            self._start_call(item, out)
        elif item.type == "reasoning":
            self._reasoning.add(item.id)

    def _start_call(self, item: _Item, out: list[Event]) -> _Call:
        assert item.id is not None
        call = self._calls[item.id] = _Call(item.call_id or item.id, item.name or "")
        out.append(ToolCallStartEvent(tool_call_id=call.call_id, name=call.name, index=self._started))
        self._started += 1
        if item.arguments:
            call.args.append(item.arguments)
            call.streamed = True
            out.append(ToolCallDeltaEvent(tool_call_id=call.call_id, arguments_delta=item.arguments))
        return call

    def _item_done(self, ev: _Event, out: list[Event]) -> None:
        item = self._item(ev)
        if item is None:
            return
        if item.type == "reasoning":
            # the finished item: its encrypted_content is not the one output_item.added announced
            self._reasoning.discard(item.id or "")
            out.append(ReasoningEndEvent(signature=bytes(ev.item).decode()))
        elif item.type == "function_call" and item.id:
            call = self._calls.pop(item.id, None)
            if call is None:  # its output_item.added was not seen
                call = self._start_call(item, out)
            raw = item.arguments if isinstance(item.arguments, str) else "".join(call.args)
            if not call.streamed and raw:
                out.append(ToolCallDeltaEvent(tool_call_id=call.call_id, arguments_delta=raw))
            self._called = True
            out.append(tool_call_event(call.call_id, call.name, raw))

    def end(self) -> list[Event]:
        """What a stream that stopped early left open: reasoning ends, and calls whose item never finished
        complete with the arguments that came."""
        out: list[Event] = []
        if self._reasoning:
            self._reasoning.clear()
            out.append(ReasoningEndEvent())
        for call in self._calls.values():
            self._called = True
            out.append(tool_call_event(call.call_id, call.name, "".join(call.args)))
        self._calls.clear()
        if self.finish_reason is None and self._called:
            self.finish_reason = "tool_calls"
        return out
