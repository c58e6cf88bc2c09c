"""The tool loop: the sidecar runs a conversation step after step while the model calls tools,
and the frontend only runs the tools (``llm_chat_loop_start`` / ``llm_submit_tool_results``).

Each step is one ``Engine.stream`` (retries and fallbacks included) whose events go out on the
loop's one stream, numbered by one ``EventSink``; the steps' own ``done`` events are kept back and
the loop ends with exactly one terminal event of its own. The conversation is rebuilt here, not in
the protocols: each step's events become an assistant message (``Collector``'s parts: reasoning
with its signature, redacted reasoning, text, tool calls) followed by one ``tool`` message per
result, in the order of the calls, so every protocol's encoder sends it back the way it expects.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass, field

import anyio
import msgspec

from .context.plan import apply_compaction
from .engine import Emit, Engine, EventSink, Prepared
from .engine.collect import Collector
from .errors import SidecarError
from .types import (
    AssistantMessage,
    ChatLoopParams,
    CompactedEvent,
    DoneEvent,
    ErrorEvent,
    ErrorInfo,
    Event,
    FinishReason,
    ImagePart,
    LoopMessages,
    LoopState,
    Message,
    StepStartEvent,
    StreamTextParams,
    SubmitToolResultsParams,
    SubmitToolResultsResult,
    TextPart,
    ToolCallDeltaEvent,
    ToolCallEvent,
    ToolCallPart,
    ToolCallRequest,
    ToolCallsRequestedEvent,
    ToolCallStartEvent,
    ToolMessage,
    Usage,
)

log = logging.getLogger("sidecar.loop")

KEEP_ENDED = 50
"""ended loops kept so their conversation can still be fetched; the oldest goes first"""
_ENDED: frozenset[LoopState] = frozenset({"done", "error", "cancelled"})
_LOOP_FIELDS = frozenset(ChatLoopParams.__struct_fields__) - frozenset(StreamTextParams.__struct_fields__)
"""what ChatLoopParams adds; the rest is each step's StreamTextParams"""


@dataclass(eq=False)
class Loop:
    """One tool loop: its conversation so far and where it stands."""

    loop_id: str
    stream_id: str
    params: StreamTextParams
    """the request of every step, but for its messages"""
    max_steps: int
    tool_timeout_ms: int
    scope: anyio.CancelScope
    """the stream id's reserved scope: llm_abort_stream cancels the whole loop"""
    first: Prepared | None
    """step 1's request, prepared before the response; later steps prepare their own"""
    messages: list[Message]
    state: LoopState = "running"
    step: int = 0
    pending: list[ToolCallPart] = field(default_factory=list)
    results: list[ToolMessage] | None = None
    results_in: anyio.Event = field(default_factory=anyio.Event)
    error: ErrorInfo | None = None


class LoopManager:
    """Owns the loops: starts them, takes tool results, and remembers the last ended ones."""

    def __init__(self, engine: Engine, keep: int = KEEP_ENDED) -> None:
        self.engine = engine
        self.keep = keep
        self._loops: dict[str, Loop] = {}
        self._ended: deque[str] = deque()

    # --- starting ------------------------------------------------------------------

    async def open(self, params: ChatLoopParams) -> Loop:
        """Check and prepare step 1, so what fails before the network is the RPC error and no
        event is sent; reserves the stream id, so abort works from here on."""
        fields = {k: v for k, v in msgspec.structs.asdict(params).items() if k not in _LOOP_FIELDS}
        request = StreamTextParams(**fields)
        stream_id, scope, prepared = await self.engine.open(params.stream_id, request)
        # later steps go to the same model even if the active provider changes meanwhile
        request = msgspec.structs.replace(request, model=prepared.model_ref)
        loop = Loop(
            loop_id=uuid.uuid4().hex, stream_id=stream_id, params=request, max_steps=params.max_steps,
            tool_timeout_ms=params.tool_timeout_ms, scope=scope, first=prepared, messages=list(params.messages),
        )
        self._loops[loop.loop_id] = loop
        return loop

    async def run(self, loop: Loop, sink: EventSink, input_closed: anyio.Event) -> None:
        """Run the loop (its events wait for the start response, see EventSink); always ends with
        exactly one terminal event, on abort and shutdown too."""

        async def end(outcome: DoneEvent | SidecarError) -> None:
            terminal = ErrorEvent(error=outcome.info) if isinstance(outcome, SidecarError) else outcome
            self._end(loop, terminal)  # before the event goes out: a client that sees it sees the end state
            await sink.emit(terminal)

        await self.engine.streams.run_to_terminal(
            loop.stream_id, loop.scope, lambda: self._steps(loop, sink.emit, input_closed), end, "tool loop")

    async def _steps(self, loop: Loop, emit: Emit, input_closed: anyio.Event) -> DoneEvent:
        started = time.perf_counter()
        usage = Usage()
        ttft: float | None = None
        while True:
            loop.step += 1
            step_started = time.perf_counter()
            await emit(StepStartEvent(step=loop.step))
            prepared = loop.first or await self.engine.prepare(
                msgspec.structs.replace(loop.params, messages=list(loop.messages)))
            loop.first = None  # nothing (no key) is held while waiting for tools
            collector = Collector()
            used = _tool_call_ids(loop.messages)
            renamed: dict[str, str] = {}

            async def both(
                event: Event,
                collector: Collector = collector,
                used: set[str] = used,
                renamed: dict[str, str] = renamed,
            ) -> None:
                if isinstance(event, ToolCallStartEvent | ToolCallDeltaEvent | ToolCallEvent):
                    _unique_id(event, used, renamed, loop.step)
                elif isinstance(event, CompactedEvent):  # later steps send the compacted conversation too
                    loop.messages[:] = apply_compaction(loop.messages, event.removed_messages, event.summary)
                await collector.add(event)
                await emit(event)

            done = await self.engine.stream(prepared, both, stream_id=loop.stream_id)
            _add_usage(usage, done.usage)
            if ttft is None and isinstance(done.ttft_ms, float | int):
                ttft = (step_started - started) * 1000 + done.ttft_ms
            parts = collector.result(done).parts
            loop.messages.append(AssistantMessage(content=parts))
            calls = [p for p in parts if isinstance(p, ToolCallPart)]
            finish: FinishReason = done.finish_reason
            if not calls or loop.step >= loop.max_steps:
                if calls:
                    finish = "max_steps"
                end = DoneEvent(finish_reason=finish, usage=usage, model=done.model,
                                latency_ms=round((time.perf_counter() - started) * 1000, 3))
                if ttft is not None:
                    end.ttft_ms = round(ttft, 3)
                return end
            loop.messages += await self._wait_for_results(loop, calls, emit, input_closed)

    async def _wait_for_results(
        self, loop: Loop, calls: list[ToolCallPart], emit: Emit, input_closed: anyio.Event
    ) -> list[ToolMessage]:
        loop.pending, loop.results, loop.results_in = calls, None, anyio.Event()
        loop.state = "waiting_for_tools"  # before the event: an answer may come as soon as it is read
        await emit(ToolCallsRequestedEvent(loop_id=loop.loop_id, step=loop.step, calls=[
            ToolCallRequest(tool_call_id=c.id, name=c.name, arguments=c.arguments) for c in calls]))
        with anyio.move_on_after(loop.tool_timeout_ms / 1000):
            await _first_of(loop.results_in, input_closed)
        if loop.results is None:  # a submit that came in the same instant as the deadline still counts
            if input_closed.is_set():
                raise SidecarError("cancelled", "stdin closed while the tool loop waited for tool results")
            raise SidecarError("timeout", f"no tool results within {loop.tool_timeout_ms} ms")
        return loop.results

    def _end(self, loop: Loop, terminal: Event) -> None:
        loop.first = None
        loop.pending = []
        if isinstance(terminal, ErrorEvent):
            loop.error = terminal.error
            loop.state = "cancelled" if terminal.error.code == "cancelled" else "error"
        else:
            loop.state = "done"
        self._ended.append(loop.loop_id)
        while len(self._ended) > self.keep:
            self._loops.pop(self._ended.popleft(), None)

    # --- the frontend's side -----------------------------------------------------------

    def _get(self, loop_id: str) -> Loop:
        loop = self._loops.get(loop_id)
        if loop is None:
            raise SidecarError("not_found", f"no tool loop {loop_id!r} (unknown, or ended long ago)")
        return loop

    def submit(self, params: SubmitToolResultsParams) -> SubmitToolResultsResult:
        """Take all results of the step at once, or refuse them all, saying why."""
        loop = self._get(params.loop_id)
        if loop.state in _ENDED:
            raise SidecarError("invalid_request", f"tool loop {loop.loop_id!r} has ended ({loop.state})")
        if loop.state != "waiting_for_tools":
            raise SidecarError("invalid_request",
                               f"tool loop {loop.loop_id!r} is not waiting for tool results (step {loop.step} runs)")
        expected = [c.id for c in loop.pending]
        given: dict[str, ToolMessage] = {}
        for r in params.results:
            if r.tool_call_id in given:
                raise SidecarError("invalid_request", f"two results for tool call {r.tool_call_id!r}")
            if r.tool_call_id not in expected:
                raise SidecarError("invalid_request", f"tool call {r.tool_call_id!r} is not one this step asked for "
                                   f"(expected {', '.join(expected)})")
            if not isinstance(r.content, str):
                for p in r.content:
                    if not isinstance(p, TextPart | ImagePart):
                        kind = p.__struct_config__.tag  # the tag field is not an attribute
                        raise SidecarError("invalid_request", f"a tool result can hold text and images, not {kind}")
            given[r.tool_call_id] = ToolMessage(tool_call_id=r.tool_call_id, content=r.content, is_error=r.is_error)
        missing = [i for i in expected if i not in given]
        if missing:
            raise SidecarError("invalid_request", f"missing results for tool call(s) {', '.join(missing)}: "
                               "submit the results of all calls of the step at once")
        loop.results = [given[i] for i in expected]
        loop.pending = []
        loop.state = "running"
        loop.results_in.set()
        return SubmitToolResultsResult(accepted=True)

    def messages(self, loop_id: str) -> LoopMessages:
        loop = self._get(loop_id)
        out = LoopMessages(loop_id=loop.loop_id, stream_id=loop.stream_id, messages=list(loop.messages),
                           state=loop.state, step=loop.step)
        if loop.state == "waiting_for_tools":
            out.pending_tool_calls = [
                ToolCallRequest(tool_call_id=c.id, name=c.name, arguments=c.arguments) for c in loop.pending]
        if loop.error is not None:
            out.error = loop.error
        return out


async def _first_of(*events: anyio.Event) -> None:
    """Wait until any of ``events`` is set."""
    async with anyio.create_task_group() as tg:

        async def wait(event: anyio.Event) -> None:
            await event.wait()
            tg.cancel_scope.cancel()

        for event in events:
            tg.start_soon(wait, event)


def _add_usage(total: Usage, step: Usage) -> None:
    """Sum a step into the loop's usage; an optional count appears once any step reports it."""
    total.input_tokens += step.input_tokens
    total.output_tokens += step.output_tokens
    for name in ("reasoning_tokens", "cached_input_tokens", "cache_creation_tokens"):
        value = getattr(step, name)
        if isinstance(value, int):
            before = getattr(total, name)
            setattr(total, name, (before if isinstance(before, int) else 0) + value)
    if step.estimated is True:  # one counted step makes the sum a count too
        total.estimated = True
    if isinstance(step.cost_usd, float | int):  # the provider's own costs add up (Claude Code reports them)
        total.cost_usd = (total.cost_usd if isinstance(total.cost_usd, float | int) else 0.0) + step.cost_usd


def _tool_call_ids(messages: list[Message]) -> set[str]:
    return {
        p.id
        for m in messages
        if isinstance(m, AssistantMessage) and not isinstance(m.content, str)
        for p in m.content
        if isinstance(p, ToolCallPart)
    }


def _unique_id(
    event: ToolCallStartEvent | ToolCallDeltaEvent | ToolCallEvent, used: set[str], renamed: dict[str, str], step: int
) -> None:
    """Keep tool-call ids unique across the loop's steps: providers that give none (Gemini, Ollama) number
    each response's calls from ``call_0`` again, and one stream and one conversation must not repeat an id."""
    if isinstance(event, ToolCallStartEvent) and event.tool_call_id in used:
        fresh, n = f"{event.tool_call_id}_s{step}", 1
        while fresh in used:
            n += 1
            fresh = f"{event.tool_call_id}_s{step}_{n}"
        renamed[event.tool_call_id] = fresh
    event.tool_call_id = renamed.get(event.tool_call_id, event.tool_call_id)
    if isinstance(event, ToolCallStartEvent):
        used.add(event.tool_call_id)
