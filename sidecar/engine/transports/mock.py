"""The mock transport: the built-in offline provider, deterministic replies, no key, no network.

``echo`` streams the last user message back. ``script`` plays back ``provider_options.script``, a
list of steps, one step per request: step ``n`` answers a conversation that already holds ``n``
assistant turns. Counting the turns in the request (instead of keeping a cursor in the sidecar) keeps
the mock stateless: a tool loop advances because each step's answer becomes an assistant turn of the
next request, a chat advances the same way, ``complete_chat`` and retries play the step the
conversation is at, and two conversations on one script never disturb each other. Past the end of the
script the answer is empty with ``finish_reason: "stop"``, so a tool loop ends when its script does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Any

import anyio
import msgspec
from msgspec import Meta, Struct

from ...errors import SidecarError
from ...policy import Policy
from ...protocols.base import text_of
from ...providers import Model, Provider
from ...types import (
    AssistantMessage,
    DoneEvent,
    ErrorCode,
    Event,
    FinishReason,
    ReasoningDeltaEvent,
    ReasoningEndEvent,
    StreamTextParams,
    TextDeltaEvent,
    ToolCallDeltaEvent,
    ToolCallEvent,
    ToolCallStartEvent,
    Usage,
    UsageEvent,
    UserMessage,
)
from ..request import Prepared, RunState

MODELS = ("echo", "script")
CHUNK = 4
"""characters per delta when a text is given as one string"""
MAX_DELAY_MS = 10_000


# --- the script, as the request carries it in provider_options.script -------------------------


class ScriptToolCall(Struct, forbid_unknown_fields=True):
    name: str
    arguments: dict[str, Any] = {}
    id: str | None = None
    """default ``mock_<step>_<n>``"""


class ScriptError(Struct, forbid_unknown_fields=True):
    code: ErrorCode
    message: str
    retryable: bool | None = None
    """default: as the sidecar's own errors of that code (rate_limited, timeout, ... are retryable)"""


class ScriptStep(Struct, forbid_unknown_fields=True):
    """One answer. Streams reasoning, then text, then tool calls, then ends in ``error`` if there is one."""

    text: str | list[str] = ""
    """a string goes out a few characters per delta; a list, one delta per item"""
    reasoning: str | list[str] = ""
    tool_calls: list[ScriptToolCall] = []
    usage: Usage | None = None
    """default: about 4 characters a token, prompt and answer"""
    finish_reason: FinishReason | None = None
    """default: tool_calls when the step calls tools, else stop"""
    delay_ms: Annotated[float, Meta(ge=0, le=MAX_DELAY_MS)] = 0
    """wait before each streamed event"""
    error: ScriptError | None = None


Script = list[ScriptStep]


# --- the transport ----------------------------------------------------------------------


class MockTransport:
    """Plays a reply computed from the request: the script is checked (and an unknown model refused) in
    ``encode``, so a bad one is the RPC error."""

    async def check(self, provider: Provider) -> None:
        pass

    def encode(self, params: StreamTextParams, provider: Provider, model: str, api_key: str | None) -> Prepared:
        check(params, model)
        return Prepared(params, provider, model, None)

    async def attempt(self, target: Prepared, run: RunState, policy: Policy) -> DoneEvent:
        answer = reply(target.params, target.model)
        for event in answer.events:
            if answer.delay_s:
                await anyio.sleep(answer.delay_s)
            await run.emit(event)
        if answer.error is not None:
            raise answer.error
        await run.emit(UsageEvent(**msgspec.structs.asdict(answer.usage)))
        return run.done(answer.finish_reason, answer.usage, target)

    async def models(self, provider: Provider, api_key: str | None, timeout: float) -> list[Model]:
        return []

    async def aclose(self) -> None:
        pass


# --- what the transport plays ------------------------------------------------------------


@dataclass
class Reply:
    """One request's answer: its events in order, then either ``error`` or done with ``finish_reason``."""

    events: list[Event] = field(default_factory=list)
    finish_reason: FinishReason = "stop"
    usage: Usage = field(default_factory=Usage)
    delay_s: float = 0.0
    """wait before each event"""
    error: SidecarError | None = None


def check(params: StreamTextParams, model: str) -> None:
    """What is refused before any event: an unknown model, a script that is missing or malformed."""
    if model not in MODELS:
        raise SidecarError("unknown_model", f"mock has no model {model!r} (it has {', '.join(MODELS)})",
                           provider="mock")
    if model == "script":
        _script(params)


def reply(params: StreamTextParams, model: str) -> Reply:
    if model == "script":
        return _play(params, _script(params))
    return _echo(params)


def _echo(params: StreamTextParams) -> Reply:
    """The last user message's text, a few characters per delta."""
    last = next((m for m in reversed(params.messages) if isinstance(m, UserMessage)), None)
    text = text_of(last.content) if last else ""
    events: list[Event] = [TextDeltaEvent(text=c) for c in _chunks(text)]
    delay = _option(params, "chunk_delay_ms")
    return Reply(events, "stop", Usage(input_tokens=_prompt_tokens(params), output_tokens=_tokens(text)), delay / 1000)


def _script(params: StreamTextParams) -> Script:
    opts = params.provider_options if isinstance(params.provider_options, dict) else {}
    if "script" not in opts:
        raise SidecarError("invalid_request", "mock:script plays provider_options.script, a list of steps "
                           "(text, reasoning, tool_calls, usage, finish_reason, delay_ms, error); none was given",
                           provider="mock")
    try:
        return msgspec.convert(opts["script"], Script)
    except msgspec.ValidationError as exc:
        # msgspec says "... - at `$[0].text`"; name the path from the request's root instead
        message = str(exc).replace("`$", "`provider_options.script")
        if "`provider_options.script" not in message:
            message += " - at `provider_options.script`"
        raise SidecarError("invalid_request", f"mock:script: {message}", provider="mock") from None


def _play(params: StreamTextParams, script: Script) -> Reply:
    index = sum(isinstance(m, AssistantMessage) for m in params.messages)
    if index >= len(script):
        return Reply(usage=Usage(input_tokens=_prompt_tokens(params)))
    step = script[index]
    events: list[Event] = []
    reasoning = _deltas(step.reasoning)
    events += [ReasoningDeltaEvent(text=t) for t in reasoning]
    if reasoning:
        events.append(ReasoningEndEvent())
    text = _deltas(step.text)
    events += [TextDeltaEvent(text=t) for t in text]
    out_chars = len("".join(reasoning)) + len("".join(text))
    for n, call in enumerate(step.tool_calls):
        call_id = call.id or f"mock_{index}_{n}"
        raw = msgspec.json.encode(call.arguments).decode()
        out_chars += len(call.name) + len(raw)
        events.append(ToolCallStartEvent(tool_call_id=call_id, name=call.name, index=n))
        events += [ToolCallDeltaEvent(tool_call_id=call_id, arguments_delta=c) for c in _chunks(raw)]
        events.append(ToolCallEvent(tool_call_id=call_id, name=call.name, arguments=call.arguments))
    finish: FinishReason = step.finish_reason or ("tool_calls" if step.tool_calls else "stop")
    usage = step.usage or Usage(input_tokens=_prompt_tokens(params), output_tokens=math.ceil(out_chars / 4))
    error = None
    if step.error is not None:
        error = SidecarError(step.error.code, step.error.message, provider="mock", retryable=step.error.retryable)
    return Reply(events, finish, usage, step.delay_ms / 1000, error)


# --- helpers ----------------------------------------------------------------------------


def _chunks(text: str) -> list[str]:
    return [text[i : i + CHUNK] for i in range(0, len(text), CHUNK)]


def _deltas(value: str | list[str]) -> list[str]:
    return _chunks(value) if isinstance(value, str) else [t for t in value if t]


def _tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def _prompt_tokens(params: StreamTextParams) -> int:
    return _tokens("".join(text_of(m.content) for m in params.messages if hasattr(m, "content")))


def _option(params: StreamTextParams, name: str) -> float:
    opts = params.provider_options
    value = opts.get(name, 0) if isinstance(opts, dict) else 0
    return min(max(float(value), 0.0), MAX_DELAY_MS) if isinstance(value, int | float) else 0.0
