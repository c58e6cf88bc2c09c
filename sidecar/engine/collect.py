"""A stream's events collected into one ``complete_chat`` result (also each tool-loop step's message)."""

from __future__ import annotations

from ..types import (
    CompactedEvent,
    CompleteChatResult,
    ContentPart,
    DoneEvent,
    Event,
    ReasoningDeltaEvent,
    ReasoningEndEvent,
    ReasoningPart,
    RedactedReasoningEvent,
    RedactedReasoningPart,
    TextDeltaEvent,
    TextPart,
    ToolCallEvent,
    ToolCallPart,
)


class Collector:
    """Events to a complete_chat result; text is collected in a list, joined once."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.parts: list[ContentPart] = []
        self.compacted: list[CompactedEvent] = []

    async def add(self, event: Event) -> None:
        if isinstance(event, TextDeltaEvent):
            self.text.append(event.text)
        elif isinstance(event, ReasoningDeltaEvent):
            self.reasoning.append(event.text)
        elif isinstance(event, ReasoningEndEvent):
            self._flush_reasoning(event.signature if isinstance(event.signature, str) else None)
        elif isinstance(event, RedactedReasoningEvent):
            self.parts.append(RedactedReasoningPart(data=event.data))
        elif isinstance(event, ToolCallEvent):
            self.parts.append(ToolCallPart(id=event.tool_call_id, name=event.name, arguments=event.arguments))
        elif isinstance(event, CompactedEvent):
            self.compacted.append(event)

    def _flush_reasoning(self, signature: str | None) -> None:
        if self.reasoning or signature:
            part = ReasoningPart(text="".join(self.reasoning))
            if signature:
                part.signature = signature
            self.parts.append(part)
            self.reasoning.clear()

    def result(self, done: DoneEvent) -> CompleteChatResult:
        self._flush_reasoning(None)
        content = "".join(self.text)
        parts: list[ContentPart] = [p for p in self.parts if isinstance(p, ReasoningPart | RedactedReasoningPart)]
        if content:
            parts.append(TextPart(text=content))
        parts += [p for p in self.parts if isinstance(p, ToolCallPart)]
        result = CompleteChatResult(
            content=content, parts=parts, finish_reason=done.finish_reason, usage=done.usage, model=done.model,
            provider_metadata=done.provider_metadata,
        )
        if self.compacted:
            result.compacted = self.compacted
        return result
