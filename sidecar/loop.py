"""The tool loop: the sidecar runs a conversation step after step while the model calls tools,
and the frontend only runs the tools (``llm_chat_loop_start`` / ``llm_submit_tool_results``).

Each step is one ``Engine.stream`` (retries and fallbacks included) whose events go out on the
loop's one stream, numbered by one ``EventSink``; the steps' own ``done`` events are kept back and
the loop ends with exactly one terminal event of its own. The conversation is rebuilt here, not in
the protocols: each step's events become an assistant message (``Collector``'s parts: reasoning
with its signature, redacted reasoning, text, tool calls) followed by one ``tool`` message per
result, in the order of the calls, so every protocol's encoder sends it back the way it expects.

With ``mcp_servers``, the servers' tools are offered beside the app's (``<server>__<tool>``) and the sidecar
calls them itself: a step's MCP calls (after ``tool_approval_requested`` and ``llm_submit_tool_approval`` when
approval is asked) run while its app calls wait for ``llm_submit_tool_results``; the step goes on when all
are done. Each MCP result, a failure (the server died, timed out) or a denial included, goes back to the
model as that call's tool result and out as a ``tool_result`` event; an abort cancels the calls in flight
(the servers get ``notifications/cancelled``).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio
import msgspec
from msgspec import UNSET

from .context.plan import apply_compaction
from .engine import Emit, Engine, EventSink, Prepared
from .engine.collect import Collector
from .errors import SidecarError
from .mcp.tools import Approval, McpTool, needs_approval, offer, preview, result_parts
from .types import (
    ApprovalCall,
    AssistantMessage,
    ChatLoopParams,
    CompactedEvent,
    ContentPart,
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
    SubmitToolApprovalParams,
    SubmitToolApprovalResult,
    SubmitToolResultsParams,
    SubmitToolResultsResult,
    TextPart,
    ToolApprovalDecision,
    ToolApprovalRequestedEvent,
    ToolCallDeltaEvent,
    ToolCallEvent,
    ToolCallPart,
    ToolCallRequest,
    ToolCallsRequestedEvent,
    ToolCallStartEvent,
    ToolMessage,
    ToolResultEvent,
    Usage,
)

if TYPE_CHECKING:
    from .mcp.servers import McpHost

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
    mcp_tools: dict[str, McpTool] = field(default_factory=dict)
    """the MCP tools offered, by the name the model calls them"""
    approval: Approval | dict[str, Approval] | None = None
    mcp_call_timeout_ms: int = 60_000
    asking: list[ApprovalCall] = field(default_factory=list)
    """MCP calls waiting for llm_submit_tool_approval"""
    decisions: dict[str, ToolApprovalDecision] | None = None
    decided: anyio.Event = field(default_factory=anyio.Event)


def _one_each(expected: list[str], ids: list[str], what: str, asked: str, at_once: str) -> None:
    """Answers (results, decisions) come one per awaited call, for all of them at once: else invalid_request."""
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            raise SidecarError("invalid_request", f"two {what} for tool call {i!r}")
        if i not in expected:
            raise SidecarError("invalid_request", f"tool call {i!r} is not {asked} (expected {', '.join(expected)})")
        seen.add(i)
    missing = [i for i in expected if i not in seen]
    if missing:
        raise SidecarError("invalid_request", f"missing {what} for tool call(s) {', '.join(missing)}: {at_once}")


class LoopManager:
    """Owns the loops: starts them, takes tool results, and remembers the last ended ones."""

    def __init__(self, engine: Engine, mcp: McpHost | None = None, keep: int = KEEP_ENDED) -> None:
        self.engine = engine
        self.mcp = mcp
        self.keep = keep
        self._loops: dict[str, Loop] = {}
        self._ended: deque[str] = deque()

    # --- starting ------------------------------------------------------------------

    async def open(self, params: ChatLoopParams) -> Loop:
        """Check and prepare step 1, so what fails before the network is the RPC error and no
        event is sent; reserves the stream id, so abort works from here on."""
        fields = {k: v for k, v in msgspec.structs.asdict(params).items() if k not in _LOOP_FIELDS}
        request = StreamTextParams(**fields)
        mcp_tools: dict[str, McpTool] = {}
        if isinstance(params.mcp_servers, list) and params.mcp_servers:
            if self.mcp is None:
                raise SidecarError("internal", "this sidecar runs no MCP servers")
            app_tools = request.tools if isinstance(request.tools, list) else []
            mcp_tools = offer(await self.mcp.tools(params.mcp_servers), app_tools)
            request.tools = [*app_tools, *(t.definition for t in mcp_tools.values())]
        stream_id, scope, prepared = await self.engine.open(params.stream_id, request)
        # later steps go to the same model even if the active provider changes meanwhile
        request = msgspec.structs.replace(request, model=prepared.model_ref)
        loop = Loop(
            loop_id=uuid.uuid4().hex, stream_id=stream_id, params=request, max_steps=params.max_steps,
            tool_timeout_ms=params.tool_timeout_ms, scope=scope, first=prepared, messages=list(params.messages),
            mcp_tools=mcp_tools, approval=params.tool_approval if params.tool_approval is not UNSET else None,
            mcp_call_timeout_ms=params.mcp_call_timeout_ms,
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
            loop.messages += await self._tool_results(loop, calls, emit, input_closed)

    async def _tool_results(
        self, loop: Loop, calls: list[ToolCallPart], emit: Emit, input_closed: anyio.Event
    ) -> list[ToolMessage]:
        """The results of a step's calls, in their order: the app's from the frontend, the MCP ones run here."""
        ours = [c for c in calls if c.name in loop.mcp_tools]
        if not ours:
            return await self._wait_for_results(loop, calls, emit, input_closed)
        theirs = [c for c in calls if c.name not in loop.mcp_tools]
        asking = [c for c in ours if needs_approval(loop.approval, *_server_tool(loop, c))]
        done: dict[str, ToolMessage] = {}
        failed: list[SidecarError] = []
        if asking:  # first: nothing that needs approval runs before the frontend has been asked
            loop.asking = [ApprovalCall(id=c.id, server=s, name=n, arguments=c.arguments)
                           for c in asking for s, n in [_server_tool(loop, c)]]
            loop.decisions, loop.decided = None, anyio.Event()
            _waiting_state(loop)
            await emit(ToolApprovalRequestedEvent(loop_id=loop.loop_id, step=loop.step, calls=list(loop.asking)))

        async with anyio.create_task_group() as tg:

            async def guarded(fn: Callable[[], Awaitable[None]]) -> None:
                try:
                    await fn()
                except SidecarError as exc:  # the loop ends with it (the group's other tasks are cancelled)
                    failed.append(exc)
                    tg.cancel_scope.cancel()

            async def app_results() -> None:
                for message in await self._wait_for_results(loop, theirs, emit, input_closed):
                    done[message.tool_call_id] = message

            async def approved_then_run() -> None:
                decisions = await self._wait_for_approval(loop, input_closed)
                for call in asking:
                    decision = decisions[call.id]
                    if decision.approved:
                        tg.start_soon(self._call_mcp, loop, call, emit, done)
                    else:
                        reason = f": {decision.reason}" if isinstance(decision.reason, str) and decision.reason else ""
                        await self._mcp_result(loop, call, emit, done, f"The user denied this tool call{reason}", True)

            if theirs:
                tg.start_soon(guarded, app_results)
            for call in ours:
                if call not in asking:
                    tg.start_soon(self._call_mcp, loop, call, emit, done)
            if asking:
                tg.start_soon(guarded, approved_then_run)
        if failed:
            raise failed[0]
        return [done[c.id] for c in calls]

    async def _wait_for_approval(self, loop: Loop, input_closed: anyio.Event) -> dict[str, ToolApprovalDecision]:
        with anyio.move_on_after(loop.tool_timeout_ms / 1000):
            await _first_of(loop.decided, input_closed)
        if loop.decisions is None:
            if input_closed.is_set():
                raise SidecarError("cancelled", "stdin closed while the tool loop waited for tool approval")
            raise SidecarError("timeout", f"no tool approval within {loop.tool_timeout_ms} ms")
        return loop.decisions

    async def _call_mcp(self, loop: Loop, call: ToolCallPart, emit: Emit, done: dict[str, ToolMessage]) -> None:
        """One MCP tool call; what goes wrong (the server died, timed out, refused) is its error result."""
        assert self.mcp is not None
        server, name = _server_tool(loop, call)
        try:
            result = await self.mcp.get(server).call(name, call.arguments, loop.mcp_call_timeout_ms)
        except SidecarError as exc:
            await self._mcp_result(loop, call, emit, done, exc.info.message, True)
            return
        parts = result_parts(result.content, result.structured_content)
        await self._mcp_result(loop, call, emit, done, parts or "", bool(result.is_error))

    async def _mcp_result(self, loop: Loop, call: ToolCallPart, emit: Emit, done: dict[str, ToolMessage],
                          content: str | list[ContentPart], is_error: bool) -> None:
        message = ToolMessage(tool_call_id=call.id, content=content)
        if is_error:
            message.is_error = True
        done[call.id] = message
        server, name = _server_tool(loop, call)
        await emit(ToolResultEvent(call_id=call.id, server=server, name=name, is_error=is_error,
                                   preview=preview(content)))

    async def _wait_for_results(
        self, loop: Loop, calls: list[ToolCallPart], emit: Emit, input_closed: anyio.Event
    ) -> list[ToolMessage]:
        loop.pending, loop.results, loop.results_in = calls, None, anyio.Event()
        _waiting_state(loop)  # before the event: an answer may come as soon as it is read
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
        loop.asking = []
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
        _one_each(expected, [r.tool_call_id for r in params.results], "results", "one this step asked for",
                  "submit the results of all calls of the step at once")
        for r in params.results:
            if not isinstance(r.content, str):
                for p in r.content:
                    if not isinstance(p, TextPart | ImagePart):
                        kind = p.__struct_config__.tag  # the tag field is not an attribute
                        raise SidecarError("invalid_request", f"a tool result can hold text and images, not {kind}")
        given = {r.tool_call_id: ToolMessage(tool_call_id=r.tool_call_id, content=r.content, is_error=r.is_error)
                 for r in params.results}
        loop.results = [given[i] for i in expected]
        loop.pending = []
        _waiting_state(loop)
        loop.results_in.set()
        return SubmitToolResultsResult(accepted=True)

    def approve(self, params: SubmitToolApprovalParams) -> SubmitToolApprovalResult:
        """Take a decision for every call of the step's tool_approval_requested at once, or refuse them all."""
        loop = self._get(params.loop_id)
        if loop.state in _ENDED:
            raise SidecarError("invalid_request", f"tool loop {loop.loop_id!r} has ended ({loop.state})")
        if not loop.asking:
            raise SidecarError("invalid_request", f"tool loop {loop.loop_id!r} is not waiting for tool approval")
        _one_each([c.id for c in loop.asking], [d.id for d in params.decisions], "decisions", "one awaiting approval",
                  "decide on all calls of the step at once")
        loop.decisions = {d.id: d for d in params.decisions}
        loop.asking = []
        _waiting_state(loop)
        loop.decided.set()
        return SubmitToolApprovalResult(accepted=True)

    def messages(self, loop_id: str) -> LoopMessages:
        loop = self._get(loop_id)
        out = LoopMessages(loop_id=loop.loop_id, stream_id=loop.stream_id, messages=list(loop.messages),
                           state=loop.state, step=loop.step)
        if loop.state == "waiting_for_tools":
            out.pending_tool_calls = [
                ToolCallRequest(tool_call_id=c.id, name=c.name, arguments=c.arguments) for c in loop.pending]
        if loop.error is not None:
            out.error = loop.error
        if loop.asking:
            out.pending_approvals = list(loop.asking)
        return out


def _waiting_state(loop: Loop) -> None:
    """What a running loop waits for: the app's tool results first, then an approval, else nothing."""
    if loop.state not in _ENDED:
        loop.state = "waiting_for_tools" if loop.pending else "waiting_for_approval" if loop.asking else "running"


def _server_tool(loop: Loop, call: ToolCallPart) -> tuple[str, str]:
    tool = loop.mcp_tools[call.name]
    return tool.server, tool.name


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
