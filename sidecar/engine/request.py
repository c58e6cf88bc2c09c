"""A request as ``prepare`` left it (resolved, checked, encoded once), and what one run of it has done so far."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ..framing import ReadLimits, pieces, too_large
from ..protocols.base import WireProtocol
from ..providers import Provider
from ..types import (
    DoneEvent,
    Event,
    ReasoningDeltaEvent,
    ReasoningEndEvent,
    RedactedReasoningEvent,
    StreamTextParams,
    TextDeltaEvent,
    ToolCallDeltaEvent,
    ToolCallStartEvent,
    Usage,
    WarningEvent,
)

Emit = Callable[[Event], Awaitable[None]]

_FIRST_OUTPUT = (TextDeltaEvent, ReasoningDeltaEvent, ReasoningEndEvent, ToolCallStartEvent, RedactedReasoningEvent)


@dataclass
class Options:
    """The engine-wide settings the transports read (set by the CLI: the app's trusted side)."""

    read_limits: ReadLimits = field(default_factory=ReadLimits)
    """how much of one upstream event or body is read, and of one delta written"""
    log_requests: bool = False
    """log each attempt and each finished request (never headers, keys or content)"""


@dataclass
class Prepared:
    """A request checked, resolved and encoded: retries send ``request`` as it is; a fallback prepares its own."""

    params: StreamTextParams
    provider: Provider
    model: str
    api_key: str | None
    protocol: WireProtocol | None = None
    """the wire protocol that encoded ``request`` and decodes the answer (None: the transport has none)"""
    request: Any = None
    """what the transport sends: an HttpRequest, a ProcessRequest, a LocalRequest, or the transport's own"""
    warnings: list[WarningEvent] = field(default_factory=list)
    """settings the protocol dropped while encoding: sent right after ``start``"""

    @property
    def model_ref(self) -> str:
        return f"{self.provider.id}:{self.model}"


class RunState:
    """What one request has done so far, across its retries and fallbacks; every event passes ``emit``."""

    def __init__(self, emit: Emit, started: float, limits: ReadLimits) -> None:
        self._emit = emit
        self._max_delta = limits.max_delta_bytes
        self._short = limits.max_delta_bytes // 4
        """characters that can never take more than max_delta_bytes in UTF-8"""
        self._max_answer = limits.max_body_bytes
        self._answer = 0
        """characters of text, reasoning and tool-call arguments so far: collectors (complete_chat, the
        agent loop, a JSON answer, the decoders' tool calls) hold them all"""
        self.upstream = ""
        """the provider of the current attempt"""
        self.started = started
        self.started_at = time.time()
        self.output = False
        """something the user may have seen was sent: from here on nothing is retried"""
        self.ttft: float | None = None
        self.retries = 0

    async def emit(self, event: Event) -> None:
        """Every event of a request passes here; a long delta goes out as several (no giant stdout line)."""
        if not self.output and isinstance(event, _FIRST_OUTPUT):
            self.output = True
            self.ttft = (time.perf_counter() - self.started) * 1000
        kind = type(event)
        if kind is TextDeltaEvent or kind is ReasoningDeltaEvent or kind is ToolCallDeltaEvent:
            field = "arguments_delta" if kind is ToolCallDeltaEvent else "text"
            text: str = getattr(event, field)
            self._answer += len(text)
            if len(text) > self._short or self._answer > self._max_answer:
                await self._emit_long(event, field, text)
                return
        await self._emit(event)

    async def _emit_long(self, event: Event, field: str, text: str) -> None:
        if self._answer > self._max_answer:
            raise too_large(self.upstream, "the answer", self._max_answer, "max_body_bytes", self.upstream)
        for piece in pieces(text, self._max_delta):
            await self._emit(msgspec.structs.replace(event, **{field: piece}))

    def latency_ms(self) -> float:
        return round((time.perf_counter() - self.started) * 1000, 3)

    def done(self, finish: Any, usage: Usage, target: Prepared) -> DoneEvent:
        done = DoneEvent(finish_reason=finish, usage=usage, model=target.model_ref, latency_ms=self.latency_ms())
        if self.ttft is not None:
            done.ttft_ms = round(self.ttft, 3)
        return done
