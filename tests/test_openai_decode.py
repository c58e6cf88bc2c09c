"""The OpenAI chat-completions decoder, driven message by message as ``Engine.stream`` drives it.

Every expectation is worked out here from the recorded payloads with the stdlib ``json`` module (or
read off the file by hand), never with the code under test.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest
from decoding import Run, feed
from harness import FIXTURES, fixture_payloads

from sidecar.errors import SidecarError
from sidecar.protocols.openai import Decoder
from sidecar.types import (
    Event,
    ReasoningDeltaEvent,
    ReasoningEndEvent,
    RedactedReasoningEvent,
    TextDeltaEvent,
    ToolCallDeltaEvent,
    ToolCallEvent,
    ToolCallStartEvent,
)

# --- which recordings speak chat completions ------------------------------------------------

PROVIDER_OF_DIR = {
    "openai-chat": "openai",
    "openai-compatible": "local",
    "deepseek": "deepseek",
    "groq": "groq",
    "mistral": "mistral",
    "openrouter": "openrouter",
    "perplexity": "perplexity",
    "xai": "xai",
}


def _is_chat_completions(directory: str, filename: str) -> bool:
    if filename.startswith("responses-"):  # OpenAI Responses-style endpoints of the same providers
        return False
    return directory != "xai" or filename.startswith("chat-")


CHAT_FIXTURES = sorted(
    f"{d}/{p.name}"
    for d in PROVIDER_OF_DIR
    for p in (FIXTURES / d).iterdir()
    if p.is_file() and _is_chat_completions(d, p.name)
)


def test_the_fixture_listing_covers_what_the_brief_names() -> None:
    # a new file in these folders is picked up without touching this test
    assert {n for n in CHAT_FIXTURES if n.startswith("openai-chat/")} == {
        f"openai-chat/{p.name}" for p in (FIXTURES / "openai-chat").iterdir()
    }
    assert len([n for n in CHAT_FIXTURES if n.startswith("openai-chat/")]) >= 7
    assert "xai/responses-text-reasoning.chunks.txt" not in CHAT_FIXTURES
    assert "deepseek/responses-function-call.sse" not in CHAT_FIXTURES
    assert "openrouter/responses-reasoning-text.sse" not in CHAT_FIXTURES
    assert "groq/midstream-error-tool-use-failed.sse" in CHAT_FIXTURES
    assert "perplexity/citations.chunks.txt" in CHAT_FIXTURES


# --- reading a recording as the engine sees it -----------------------------------------------


def wire_messages(name: str) -> list[tuple[str, str]]:
    """(event name, data) of every SSE message, [DONE] included, as httpx-sse would hand them over."""
    path: Path = FIXTURES / name
    if name.endswith(".chunks.txt"):  # payloads only; chat-completions servers end with [DONE]
        return [("", line) for line in fixture_payloads(name)] + [("", "[DONE]")]
    out: list[tuple[str, str]] = []
    for block in path.read_text().replace("\r\n", "\n").split("\n\n"):
        event, data = "", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip(" "))
        if data:
            out.append((event, "\n".join(data)))
    # the same payloads the shared harness reads
    assert [d for _, d in out if d != "[DONE]"] == fixture_payloads(name)
    return out


def run_messages(messages: list[tuple[str, str]], provider: str = "openai") -> Run:
    return feed(Decoder(provider), messages)


def run_fixture(name: str) -> Run:
    return run_messages(wire_messages(name), PROVIDER_OF_DIR[name.split("/")[0]])


def run_chunks(*chunks: dict[str, Any] | str, done: bool = True, provider: str = "openai") -> Run:
    msgs = [("", c if isinstance(c, str) else json.dumps(c)) for c in chunks]
    return run_messages(msgs + ([("", "[DONE]")] if done else []), provider)


# --- what a recording says, worked out with json ----------------------------------------------


@dataclass
class Expected:
    text: str = ""
    reasoning: str = ""
    calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    """upstream index -> {"id", "name", "args"} (args: the raw argument text)"""
    finish: str | None = None
    usage: dict[str, Any] | None = None
    signature: str | None = None
    done: bool = False
    error_at: int | None = None
    error: Any = None


def expected_of(messages: list[tuple[str, str]]) -> Expected:
    exp = Expected()
    for i, (event, data) in enumerate(messages):
        if data == "[DONE]":
            exp.done = True
            break
        obj = json.loads(data)
        if event == "error" or obj.get("error") is not None:
            exp.error_at, exp.error = i, obj["error"]
            break
        for choice in obj.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if isinstance(content, str):
                exp.text += content
            for part in content if isinstance(content, list) else []:
                if part["type"] == "text":
                    exp.text += part["text"]
                elif part["type"] == "thinking":
                    exp.reasoning += "".join(t["text"] for t in part["thinking"] if t["type"] == "text")
            exp.reasoning += delta.get("reasoning_content") or delta.get("reasoning") or ""
            for detail in delta.get("reasoning_details") or []:
                exp.signature = detail.get("signature") or exp.signature
            for tc in delta.get("tool_calls") or []:
                index = tc["index"] if "index" in tc else len(exp.calls)
                call = exp.calls.setdefault(index, {"id": "", "name": "", "args": ""})
                fn = tc.get("function") or {}
                call["id"] = call["id"] or tc.get("id") or ""
                call["name"] = call["name"] or fn.get("name") or ""
                call["args"] += fn.get("arguments") or ""
            if choice.get("finish_reason"):
                exp.finish = choice["finish_reason"]
        usage = obj.get("usage") or (obj.get("x_groq") or {}).get("usage")
        if usage:
            exp.usage = usage
    return exp


FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_calls", "content_filter": "content_filter"}


def _n(value: Any) -> int:
    """A Usage field as a number: left out (UNSET) or null counts as 0."""
    return 0 if value is msgspec.UNSET or value is None else value


def of(events: list[Event], kind: type) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def text(events: list[Event]) -> str:
    return "".join(e.text for e in of(events, TextDeltaEvent))


def reasoning(events: list[Event]) -> str:
    return "".join(e.text for e in of(events, ReasoningDeltaEvent))


# --- the contract's rules for a stream ---------------------------------------------------------


def check_invariants(events: list[Event], *, ended: bool = True) -> None:
    """``ended``: ``end()`` was called (not after an error, where the terminal event cuts the stream)."""
    starts = [(i, e) for i, e in enumerate(events) if isinstance(e, ToolCallStartEvent)]
    calls = [(i, e) for i, e in enumerate(events) if isinstance(e, ToolCallEvent)]
    deltas = [(i, e) for i, e in enumerate(events) if isinstance(e, ToolCallDeltaEvent)]
    start_ids = [s.tool_call_id for _, s in starts]
    assert len(set(start_ids)) == len(start_ids), "one start per tool call"
    if ended:
        assert sorted(start_ids) == sorted(c.tool_call_id for _, c in calls), "each start has one tool_call"
    for pos, s in starts:
        mine = [c for c in calls if c[1].tool_call_id == s.tool_call_id]
        end_pos = mine[0][0] if mine else len(events)
        assert all(c.name == s.name and i > pos for i, c in mine)
        assert all(pos < i < end_pos for i, d in deltas if d.tool_call_id == s.tool_call_id)
    assert {d.tool_call_id for _, d in deltas} <= set(start_ids)
    assert len({s.index for _, s in starts}) == len(starts), "tool call indexes are distinct"
    # reasoning: every run of reasoning_delta is closed by reasoning_end before any other output
    open_ = False
    for e in events:
        if isinstance(e, ReasoningDeltaEvent):
            open_ = True
        elif isinstance(e, ReasoningEndEvent):
            assert open_, "reasoning_end only closes reasoning"
            open_ = False
        elif isinstance(e, TextDeltaEvent | ToolCallStartEvent | ToolCallDeltaEvent | ToolCallEvent):
            assert not open_, f"{type(e).__name__} before reasoning_end"
    assert not (ended and open_), "reasoning left open at the end"


# --- every recording ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CHAT_FIXTURES)
def test_recorded_stream(name: str) -> None:
    messages = wire_messages(name)
    exp = expected_of(messages)
    run = run_fixture(name)
    provider = PROVIDER_OF_DIR[name.split("/")[0]]

    if exp.error_at is not None:
        assert run.error is not None, "an error in the stream must raise"
        assert run.error_at == exp.error_at
        assert run.error.info.provider == provider
        assert exp.error["message"] in run.error.info.message
        assert run.error.info.code not in ("protocol_error", "internal")
    else:
        assert run.error is None, run.error and run.error.info
        assert run.decoder.complete is exp.done

    events = run.events
    check_invariants(events, ended=run.error is None)
    assert text(events) == exp.text
    assert reasoning(events) == exp.reasoning
    if exp.error_at is not None:
        return  # what came before the error was checked; the rest never happens

    # tool calls, in index order, with their parsed arguments
    got = [(c.tool_call_id, c.name, c.arguments) for c in of(events, ToolCallEvent)]
    want = [
        (c["id"], c["name"], json.loads(c["args"]) if c["args"].strip() else {})
        for _, c in sorted(exp.calls.items())
    ]
    assert got == want
    assert all(c.arguments_raw is msgspec.UNSET for c in of(events, ToolCallEvent))
    by_id = {c["id"]: c["args"] for c in exp.calls.values()}
    for s in of(events, ToolCallStartEvent):
        frags = [d.arguments_delta for d in of(events, ToolCallDeltaEvent)
                 if d.tool_call_id == s.tool_call_id]
        assert "".join(frags) == by_id[s.tool_call_id]
    assert [s.tool_call_id for s in of(events, ToolCallStartEvent)] == [c[0] for c in want]

    # reasoning closes once, with the signature the upstream sent
    ends = of(events, ReasoningEndEvent)
    if exp.reasoning:
        assert ends
        assert ends[-1].signature == (exp.signature or msgspec.UNSET)
        first_reasoning = events.index(of(events, ReasoningDeltaEvent)[0])
        first_output = [i for i, e in enumerate(events) if isinstance(e, TextDeltaEvent | ToolCallStartEvent)]
        if first_output:
            assert first_reasoning < events.index(ends[0]) < first_output[0]
    else:
        assert not ends

    finish = FINISH.get(exp.finish, "other") if exp.finish else ("tool_calls" if exp.calls else None)
    assert run.decoder.finish_reason == finish

    if exp.usage is None:
        assert run.decoder.usage is None
    else:
        u = run.decoder.usage
        assert u is not None
        assert u.input_tokens == exp.usage["prompt_tokens"]
        assert u.output_tokens == exp.usage["completion_tokens"]
        details = exp.usage.get("completion_tokens_details") or {}
        assert _n(u.reasoning_tokens) == (details.get("reasoning_tokens") or 0)
        cached = (exp.usage.get("prompt_tokens_details") or {}).get("cached_tokens")
        assert _n(u.cached_input_tokens) == (cached or exp.usage.get("prompt_cache_hit_tokens") or 0)
        assert u.cache_creation_tokens is msgspec.UNSET


# --- hand-checked values from single recordings ------------------------------------------------


def test_parallel_tool_calls_literal() -> None:
    run = run_fixture("openai-chat/parallel-tool-calls.sse")
    starts = of(run.events, ToolCallStartEvent)
    assert [(s.tool_call_id, s.name, s.index) for s in starts] == [
        ("call_3rqTYrA6H21AYUaRGP4F66oq", "get_country", 0),
        ("call_Xw9XMKBJU48kAAd78WgIswDx", "get_product_name", 1),
    ]
    assert [(c.tool_call_id, c.arguments) for c in of(run.events, ToolCallEvent)] == [
        ("call_3rqTYrA6H21AYUaRGP4F66oq", {}),
        ("call_Xw9XMKBJU48kAAd78WgIswDx", {}),
    ]
    assert run.decoder.finish_reason == "tool_calls"
    assert run.decoder.usage is not None
    assert (run.decoder.usage.input_tokens, run.decoder.usage.output_tokens) == (364, 40)
    assert run.decoder.complete


def test_streamed_arguments_literal() -> None:
    run = run_fixture("openai-chat/tool-call-streamed-args.sse")
    [call] = of(run.events, ToolCallEvent)
    assert call.tool_call_id == "call_Vz0Sie91Ap56nH0ThKGrZXT7"
    assert call.name == "get_weather"
    assert call.arguments == {"city": "Mexico City"}
    assert run.decoder.usage is not None
    assert (run.decoder.usage.input_tokens, run.decoder.usage.output_tokens) == (423, 15)
    assert len(of(run.events, ToolCallDeltaEvent)) > 1, "the arguments arrive in fragments"


def test_long_arguments_literal() -> None:
    run = run_fixture("openai-chat/tool-call-long-args.sse")
    [call] = of(run.events, ToolCallEvent)
    assert call.name == "final_result"
    assert call.arguments == {
        "answers": [
            {"label": "Capital of the country", "answer": "Mexico City"},
            {"label": "Weather in the capital", "answer": "Sunny"},
            {"label": "Product Name", "answer": "Pydantic AI"},
        ]
    }
    assert run.decoder.usage is not None
    assert (run.decoder.usage.input_tokens, run.decoder.usage.output_tokens) == (448, 49)


def test_text_usage_chunk_literal() -> None:
    run = run_fixture("openai-chat/text-usage-chunk.sse")
    assert text(run.events) == "The capital of the UK is London."
    assert run.decoder.finish_reason == "stop"
    assert run.decoder.usage is not None
    assert run.decoder.usage.input_tokens == 78
    assert run.decoder.usage.output_tokens == 9
    assert run.decoder.usage.cached_input_tokens is msgspec.UNSET  # cached_tokens is 0 there


def test_text_then_tool_call_literal() -> None:
    run = run_fixture("openai-chat/text-then-tool-call.chunks.txt")
    assert text(run.events) == "PRE_TOOL"
    kinds = [type(e) for e in run.events]
    assert kinds.index(ToolCallStartEvent) > max(i for i, k in enumerate(kinds) if k is TextDeltaEvent)
    [call] = of(run.events, ToolCallEvent)
    assert (call.tool_call_id, call.name, call.arguments) == ("call_NZa7xqfefoaMI2YYHowVXVlU", "weather", {})
    assert run.decoder.usage is not None
    assert (run.decoder.usage.input_tokens, run.decoder.usage.output_tokens) == (58, 12)


def test_azure_content_filter_literal() -> None:
    # first chunk: choices [] with prompt_filter_results and empty id/model
    run = run_fixture("openai-chat/azure-content-filter.chunks.txt")
    assert text(run.events) == "Capital of Denmark."
    assert run.decoder.finish_reason == "stop"
    assert run.decoder.usage is not None
    assert run.decoder.usage.input_tokens == 15
    assert run.decoder.usage.output_tokens == 78
    assert run.decoder.usage.reasoning_tokens == 64


def test_deepseek_reasoner_tool_call_literal() -> None:
    run = run_fixture("deepseek/reasoner-tool-call.chunks.txt")
    [call] = of(run.events, ToolCallEvent)
    assert (call.tool_call_id, call.name) == ("call_00_ioIn7yN9p1ZOMNpDLwd4MgAF", "weather")
    assert call.arguments == {"location": "San Francisco"}
    kinds = [type(e) for e in run.events]
    assert kinds[0] is ReasoningDeltaEvent
    assert kinds.index(ReasoningEndEvent) < kinds.index(ToolCallStartEvent)
    u = run.decoder.usage
    assert u is not None
    assert (u.input_tokens, u.output_tokens, u.reasoning_tokens, u.cached_input_tokens) == (339, 83, 39, 320)


def test_deepseek_reasoning_content_literal() -> None:
    run = run_fixture("deepseek/reasoner-reasoning-content.sse")
    assert reasoning(run.events).startswith("Hmm")
    assert text(run.events).endswith(" today?")
    u = run.decoder.usage
    assert u is not None
    assert (u.input_tokens, u.output_tokens, u.reasoning_tokens) == (6, 212, 198)
    assert u.cached_input_tokens is msgspec.UNSET


def test_groq_x_groq_usage_literal() -> None:
    run = run_fixture("groq/tool-call.chunks.txt")
    [call] = of(run.events, ToolCallEvent)
    assert (call.tool_call_id, call.name, call.arguments) == ("tk85n1k4m", "weather", {})
    assert run.decoder.usage is not None
    assert (run.decoder.usage.input_tokens, run.decoder.usage.output_tokens) == (210, 15)


def test_groq_compound_usage_only_under_x_groq() -> None:
    run = run_fixture("groq/compound-web-search.sse")
    assert run.decoder.usage is not None
    assert (run.decoder.usage.input_tokens, run.decoder.usage.output_tokens) == (5003, 359)
    assert run.decoder.finish_reason == "stop"


def test_groq_reasoning_then_tool_call_literal() -> None:
    run = run_fixture("groq/tool-call-reasoning.sse")
    [call] = of(run.events, ToolCallEvent)
    assert call.tool_call_id == "fc_bfb39741-3748-4def-9886-a93fc9c64a90"
    assert call.name == "get_something_by_name"
    assert call.arguments == {"name": "example"}
    u = run.decoder.usage
    assert u is not None
    assert (u.input_tokens, u.output_tokens, u.reasoning_tokens) == (304, 49, 23)


def test_groq_midstream_error_event() -> None:
    run = run_fixture("groq/midstream-error-tool-use-failed.sse")
    assert run.error is not None
    info = run.error.info
    assert info.code == "invalid_request"
    assert info.status == 400
    assert info.retryable is False
    assert info.provider == "groq"
    assert "Tool call validation failed" in info.message
    assert reasoning(run.events), "the reasoning before the error was delivered"
    assert not run.decoder.complete


def test_groq_midstream_error_tool_choice_required() -> None:
    run = run_fixture("groq/midstream-error-tool-choice-required.sse")
    assert run.error is not None
    assert run.error.info.code == "invalid_request"
    assert run.error.info.status == 400
    assert "Tool choice is required, but model did not call a tool" in run.error.info.message


def test_openrouter_error_chunk() -> None:
    run = run_fixture("openrouter/midstream-error-token-limit.sse")
    assert run.error is not None
    info = run.error.info
    assert info.code == "invalid_request"
    assert info.status == 400  # the error's numeric "code"
    assert info.message == "openrouter: Token limit reached"
    assert info.provider == "openrouter"
    assert reasoning(run.events) == "We need to respond to a greeting. The user"


def test_openrouter_reasoning_signature() -> None:
    run = run_fixture("openrouter/reasoning-details.sse")
    [end] = of(run.events, ReasoningEndEvent)
    assert isinstance(end.signature, str)
    assert end.signature.startswith("Et0BCkgIChACGAIqQA2s7h7tA7IG35fbwVkou9PM2hANVJNUwcEM4q12fTRDK6y3v6YoEvJ")
    assert reasoning(run.events) == "This is a simple arithmetic question. 2+2 equals 4."
    assert text(run.events) == "2 + 2 = 4"
    u = run.decoder.usage
    assert u is not None
    assert (u.input_tokens, u.output_tokens, u.reasoning_tokens) == (43, 36, 13)


def test_mistral_single_chunk_tool_call_literal() -> None:
    # no index, no type: the whole call in one delta with finish_reason and usage
    run = run_fixture("mistral/tool-call-single-chunk.chunks.txt")
    [start] = of(run.events, ToolCallStartEvent)
    assert (start.tool_call_id, start.name, start.index) == ("gSIMJiOkT", "weather", 0)
    [call] = of(run.events, ToolCallEvent)
    assert call.arguments == {"location": "San Francisco"}
    assert run.decoder.usage is not None
    assert (run.decoder.usage.input_tokens, run.decoder.usage.output_tokens) == (124, 22)


def test_mistral_incremental_tool_call_literal() -> None:
    # the second fragment repeats type and sends an empty name
    run = run_fixture("mistral/incremental-tool-call.chunks.txt")
    [call] = of(run.events, ToolCallEvent)
    assert (call.tool_call_id, call.name) == ("chatcmpl-tool-9f149c74c42f265b", "webSearchTool")
    assert call.arguments == {"query": "current Berlin weather"}
    assert run.decoder.usage is not None
    assert run.decoder.usage.cached_input_tokens == 128


def test_magistral_thinking_parts_literal() -> None:
    run = run_fixture("mistral/magistral-thinking-parts.chunks.txt")
    assert reasoning(run.events) == "The user is asking for 2+2. This is basic arithmetic. 2+2=4."
    assert text(run.events) == "2 + 2 = 4"
    assert [type(e) for e in run.events] == [
        ReasoningDeltaEvent, ReasoningDeltaEvent, ReasoningEndEvent, TextDeltaEvent,
    ]
    assert run.decoder.usage is not None
    assert (run.decoder.usage.input_tokens, run.decoder.usage.output_tokens) == (10, 46)


def test_anthropic_compat_first_index_one() -> None:
    run = run_fixture("openai-compatible/anthropic-openai-compat-tool-call.sse")
    assert text(run.events) == "Reading it."
    [start] = of(run.events, ToolCallStartEvent)
    [call] = of(run.events, ToolCallEvent)
    assert start.tool_call_id == call.tool_call_id == "toolu_sanitized"
    assert (call.name, call.arguments) == ("read_file", {"path": "a.txt"})
    assert run.decoder.usage is None  # that server sends no usage chunk
    assert run.decoder.finish_reason == "tool_calls"


def test_alibaba_empty_ids_on_later_fragments() -> None:
    run = run_fixture("openai-compatible/alibaba-qwen-tool-call.chunks.txt")
    [call] = of(run.events, ToolCallEvent)
    assert (call.tool_call_id, call.name) == ("call_eee11723464a4b9eb8cee71d", "weather")
    assert call.arguments == {"location": "San Francisco"}
    assert run.decoder.usage is not None
    assert (run.decoder.usage.input_tokens, run.decoder.usage.output_tokens) == (295, 22)


def test_xai_reasoning_and_cached_literal() -> None:
    run = run_fixture("xai/chat-tool-call.chunks.txt")
    [call] = of(run.events, ToolCallEvent)
    assert (call.tool_call_id, call.name, call.arguments) == (
        "call_55117580", "weather", {"location": "San Francisco"},
    )
    u = run.decoder.usage
    assert u is not None
    assert (u.input_tokens, u.reasoning_tokens, u.cached_input_tokens) == (291, 196, 290)


def test_perplexity_last_usage_wins() -> None:
    run = run_fixture("perplexity/citations.chunks.txt")
    assert run.decoder.usage is not None
    assert (run.decoder.usage.input_tokens, run.decoder.usage.output_tokens) == (10, 336)
    assert text(run.events).startswith("The current")
    assert run.decoder.finish_reason == "stop"


def test_huggingface_null_details() -> None:
    run = run_fixture("openai-compatible/huggingface-router-text.sse")
    assert text(run.events) == "Paris"
    u = run.decoder.usage
    assert u is not None
    assert (u.input_tokens, u.output_tokens) == (40, 2)
    assert u.reasoning_tokens is msgspec.UNSET and u.cached_input_tokens is msgspec.UNSET


# --- hand-made streams ----------------------------------------------------------------------------


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **top: Any) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "delta": delta or {}, "finish_reason": finish}
    return {"id": "chatcmpl-x", "object": "chat.completion.chunk", "choices": [choice], **top}


def tc(index: int | None = None, id: str | None = None, name: str | None = None,
       args: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {} if index is None else {"index": index}
    if id is not None:
        out["id"] = id
        out["type"] = "function"
    fn = {k: v for k, v in (("name", name), ("arguments", args)) if v is not None}
    if fn:
        out["function"] = fn
    return out


def test_parallel_calls_interleaved_by_index() -> None:
    # LiteLLM #7621: fragments of two calls arrive interleaved, some in the same delta
    run = run_chunks(
        chunk({"role": "assistant", "content": None}),
        chunk({"tool_calls": [tc(0, "call_a", "get_weather", "")]}),
        chunk({"tool_calls": [tc(1, "call_b", "get_time", "")]}),
        chunk({"tool_calls": [tc(0, args='{"city": ')]}),
        chunk({"tool_calls": [tc(1, args='{"tz": ')]}),
        chunk({"tool_calls": [tc(1, args='"UTC"}'), tc(0, args='"Paris"}')]}),
        chunk(finish="tool_calls"),
    )
    check_invariants(run.events)
    assert [(s.tool_call_id, s.name, s.index) for s in of(run.events, ToolCallStartEvent)] == [
        ("call_a", "get_weather", 0),
        ("call_b", "get_time", 1),
    ]
    assert [(c.tool_call_id, c.name, c.arguments) for c in of(run.events, ToolCallEvent)] == [
        ("call_a", "get_weather", {"city": "Paris"}),
        ("call_b", "get_time", {"tz": "UTC"}),
    ]
    for cid, raw in (("call_a", '{"city": "Paris"}'), ("call_b", '{"tz": "UTC"}')):
        deltas = [e.arguments_delta for e in of(run.events, ToolCallDeltaEvent) if e.tool_call_id == cid]
        assert "".join(deltas) == raw
    assert run.decoder.finish_reason == "tool_calls"


def test_first_index_one_makes_one_call() -> None:
    run = run_chunks(
        chunk({"content": "Reading"}),
        chunk({"tool_calls": [tc(1, "toolu_1", "read_file", "")]}),
        chunk({"tool_calls": [tc(1, args='{"path": "a.txt"}')]}),
        chunk(finish="tool_calls"),
    )
    check_invariants(run.events)
    assert len(of(run.events, ToolCallStartEvent)) == 1
    [call] = of(run.events, ToolCallEvent)
    assert (call.tool_call_id, call.name, call.arguments) == ("toolu_1", "read_file", {"path": "a.txt"})


def test_arguments_before_the_name_are_not_lost() -> None:
    run = run_chunks(
        chunk({"tool_calls": [tc(0, args='{"q"')]}),
        chunk({"tool_calls": [tc(0, "call_q", "search", ': "x"}')]}),
        chunk(finish="tool_calls"),
    )
    check_invariants(run.events)
    deltas = "".join(e.arguments_delta for e in of(run.events, ToolCallDeltaEvent))
    assert deltas == '{"q": "x"}'
    [call] = of(run.events, ToolCallEvent)
    assert (call.tool_call_id, call.arguments) == ("call_q", {"q": "x"})


def test_reused_index_for_a_new_id_is_a_new_call() -> None:
    # Ollama's /v1 (and some proxies) send index 0 for every parallel call
    run = run_chunks(
        chunk({"tool_calls": [tc(0, "call_1", "read", "")]}),
        chunk({"tool_calls": [tc(0, args='{"path": "a.rs"}')]}),
        chunk({"tool_calls": [tc(0, "call_2", "read", "")]}),
        chunk({"tool_calls": [tc(0, args='{"path": "b.rs"}')]}),
        chunk(finish="tool_calls"),
    )
    check_invariants(run.events)
    assert [(c.tool_call_id, c.arguments) for c in of(run.events, ToolCallEvent)] == [
        ("call_1", {"path": "a.rs"}),
        ("call_2", {"path": "b.rs"}),
    ]
    assert [s.index for s in of(run.events, ToolCallStartEvent)] == [0, 1]


def test_repeated_id_on_every_fragment_is_one_call() -> None:
    run = run_chunks(
        chunk({"tool_calls": [tc(0, "call_1", "read", '{"pa')]}),
        chunk({"tool_calls": [tc(0, "call_1", None, 'th": 1}')]}),
        chunk(finish="tool_calls"),
    )
    check_invariants(run.events)
    [call] = of(run.events, ToolCallEvent)
    assert (call.tool_call_id, call.arguments) == ("call_1", {"path": 1})


def test_calls_without_index_in_one_delta() -> None:
    # Mistral sends whole calls with no index; two in one delta are calls 0 and 1
    run = run_chunks(
        chunk({"tool_calls": [tc(None, "a1", "f", '{"x": 1}'), tc(None, "b2", "g", '{"y": 2}')]},
              finish="tool_calls"),
    )
    check_invariants(run.events)
    assert [(s.tool_call_id, s.index) for s in of(run.events, ToolCallStartEvent)] == [("a1", 0), ("b2", 1)]
    assert [(c.name, c.arguments) for c in of(run.events, ToolCallEvent)] == [
        ("f", {"x": 1}), ("g", {"y": 2}),
    ]


def test_calls_without_index_across_chunks() -> None:
    run = run_chunks(
        chunk({"tool_calls": [tc(None, "a1", "f", '{"x": 1}')]}),
        chunk({"tool_calls": [tc(None, "b2", "g", '{"y": 2}')]}),
        chunk(finish="tool_calls"),
    )
    check_invariants(run.events)
    assert [(c.tool_call_id, c.arguments) for c in of(run.events, ToolCallEvent)] == [
        ("a1", {"x": 1}), ("b2", {"y": 2}),
    ]


def test_invalid_json_arguments_are_kept_raw() -> None:
    run = run_chunks(
        chunk({"tool_calls": [tc(0, "call_1", "f", '{"a": 1')]}),
        chunk(finish="tool_calls"),
    )
    check_invariants(run.events)
    [call] = of(run.events, ToolCallEvent)
    assert call.arguments == {}
    assert call.arguments_raw == '{"a": 1'


def test_arguments_that_are_not_an_object_are_kept_raw() -> None:
    run = run_chunks(chunk({"tool_calls": [tc(0, "call_1", "f", "[1, 2]")]}), chunk(finish="tool_calls"))
    [call] = of(run.events, ToolCallEvent)
    assert (call.arguments, call.arguments_raw) == ({}, "[1, 2]")


@pytest.mark.parametrize("args", ["", None, "   "])
def test_empty_arguments_are_an_empty_object(args: str | None) -> None:
    run = run_chunks(chunk({"tool_calls": [tc(0, "call_1", "no_args", args)]}), chunk(finish="tool_calls"))
    check_invariants(run.events)
    [call] = of(run.events, ToolCallEvent)
    assert call.arguments == {}
    assert call.arguments_raw is msgspec.UNSET


def test_tool_call_without_finish_reason_finishes_as_tool_calls() -> None:
    run = run_chunks(chunk({"tool_calls": [tc(0, "call_1", "f", "{}")]}))
    assert len(of(run.events, ToolCallEvent)) == 1
    assert run.decoder.finish_reason == "tool_calls"


def test_tool_call_events_are_emitted_only_at_the_end() -> None:
    decoder = Decoder("openai")
    evs = decoder.feed("", json.dumps(chunk({"tool_calls": [tc(0, "call_1", "f", '{"a": 2}')]})))
    assert [type(e) for e in evs] == [ToolCallStartEvent, ToolCallDeltaEvent]
    assert decoder.feed("", "[DONE]") == []
    assert decoder.complete
    [call] = decoder.end()
    assert isinstance(call, ToolCallEvent) and call.arguments == {"a": 2}
    assert decoder.end() == [], "end() hands out each pending event once"


@pytest.mark.parametrize(
    ("upstream", "ours"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("tool_calls", "tool_calls"),
        ("content_filter", "content_filter"),
        ("function_call", "tool_calls"),
        ("something_new", "other"),
        ("recitation", "other"),
    ],
)
def test_finish_reason_mapping(upstream: str, ours: str) -> None:
    run = run_chunks(chunk({"content": "hi"}), chunk(finish=upstream))
    assert run.decoder.finish_reason == ours


def test_no_finish_reason_and_no_done() -> None:
    run = run_chunks(chunk({"content": "cut"}), done=False)
    assert run.decoder.finish_reason is None
    assert run.decoder.complete is False
    assert text(run.events) == "cut"


@pytest.mark.parametrize("data", ["not json", "{", '{"choices": "nope"}', "[1, 2]", '"text"', "null"])
def test_garbage_is_a_protocol_error(data: str) -> None:
    with pytest.raises(SidecarError) as err:
        Decoder("acme").feed("", data)
    assert err.value.info.code == "protocol_error"
    assert "acme" in err.value.info.message


def test_usage_with_cached_and_reasoning_tokens() -> None:
    usage = {
        "prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500,
        "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 256, "audio_tokens": 0},
    }
    run = run_chunks(chunk({"content": "ok"}, "stop"), {"choices": [], "usage": usage})
    u = run.decoder.usage
    assert u is not None
    assert (u.input_tokens, u.output_tokens) == (1200, 300)
    assert (u.cached_input_tokens, u.reasoning_tokens) == (1024, 256)


def test_usage_deepseek_cache_hit_without_cached_tokens() -> None:
    usage = {"prompt_tokens": 50, "completion_tokens": 5, "prompt_cache_hit_tokens": 32,
             "prompt_cache_miss_tokens": 18, "prompt_tokens_details": {"audio_tokens": 0}}
    run = run_chunks(chunk({"content": "ok"}, "stop", usage=usage))
    assert run.decoder.usage is not None
    assert run.decoder.usage.cached_input_tokens == 32


def test_usage_under_x_groq() -> None:
    x_groq = {"id": "req_1", "usage": {"queue_time": 0.01, "prompt_tokens": 21, "completion_tokens": 8,
                                       "total_tokens": 29, "total_time": 0.05}}
    run = run_chunks(chunk({"content": "hi"}), chunk(finish="stop", x_groq=x_groq))
    assert run.decoder.usage is not None
    assert (run.decoder.usage.input_tokens, run.decoder.usage.output_tokens) == (21, 8)


def test_usage_null_on_every_chunk_keeps_the_real_one() -> None:
    run = run_chunks(
        chunk({"content": "a"}, usage=None),
        {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1}},
        chunk({}, usage=None),
    )
    assert run.decoder.usage is not None
    assert (run.decoder.usage.input_tokens, run.decoder.usage.output_tokens) == (3, 1)


def test_reasoning_then_text_in_the_same_delta() -> None:
    run = run_chunks(
        chunk({"reasoning_content": "think"}),
        chunk({"reasoning_content": " more", "content": "Answer"}),
        chunk(finish="stop"),
    )
    check_invariants(run.events)
    assert [type(e) for e in run.events] == [
        ReasoningDeltaEvent, ReasoningDeltaEvent, ReasoningEndEvent, TextDeltaEvent,
    ]
    assert reasoning(run.events) == "think more"


def test_reasoning_then_tool_call() -> None:
    run = run_chunks(
        chunk({"reasoning": "plan"}),
        chunk({"tool_calls": [tc(0, "c1", "f", "{}")]}),
        chunk(finish="tool_calls"),
    )
    check_invariants(run.events)
    assert [type(e) for e in run.events] == [
        ReasoningDeltaEvent, ReasoningEndEvent, ToolCallStartEvent, ToolCallDeltaEvent, ToolCallEvent,
    ]


def test_reasoning_only_is_closed_at_the_end() -> None:
    run = run_chunks(chunk({"reasoning_content": "hmm"}), chunk(finish="length"))
    assert [type(e) for e in run.events] == [ReasoningDeltaEvent, ReasoningEndEvent]
    assert run.decoder.finish_reason == "length"


def test_openrouter_encrypted_reasoning_and_signature() -> None:
    run = run_chunks(
        chunk({"reasoning": "a", "reasoning_details": [{"type": "reasoning.text", "text": "a"}]}),
        chunk({"reasoning_details": [{"type": "reasoning.encrypted", "data": "QUJD"}]}),
        chunk({"reasoning_details": [{"type": "reasoning.text", "text": "", "signature": "sig-1"}]}),
        chunk({"content": "done"}, "stop"),
    )
    check_invariants(run.events)
    assert of(run.events, RedactedReasoningEvent)[0].data == "QUJD"
    [end] = of(run.events, ReasoningEndEvent)
    assert end.signature == "sig-1"


def test_refusal_is_text() -> None:
    run = run_chunks(chunk({"refusal": "I can't help with that."}), chunk(finish="stop"))
    assert text(run.events) == "I can't help with that."


def test_other_choices_are_ignored() -> None:
    two = {"choices": [{"index": 1, "delta": {"content": "B"}, "finish_reason": "length"},
                       {"index": 0, "delta": {"content": "A"}, "finish_reason": None}]}
    run = run_chunks(two, chunk(finish="stop"))
    assert text(run.events) == "A"
    assert run.decoder.finish_reason == "stop"


def test_nothing_after_done_is_read() -> None:
    run = run_chunks(chunk({"content": "x"}, "stop"), "[DONE]", chunk({"content": "late"}), done=False)
    assert text(run.events) == "x"
    assert run.decoder.complete


# --- errors the upstream reports inside the stream ---------------------------------------------


def feed_error(event: str, data: str, provider: str = "acme") -> SidecarError:
    with pytest.raises(SidecarError) as err:
        Decoder(provider).feed(event, data)
    return err.value


def test_error_event_with_status_code() -> None:
    data = json.dumps({"error": {"message": "Rate limit reached", "type": "tokens",
                                 "code": "rate_limit_exceeded", "status_code": 429}})
    info = feed_error("error", data).info
    assert (info.code, info.status, info.retryable) == ("rate_limited", 429, True)
    assert info.message == "acme: Rate limit reached"


def test_error_chunk_server_error_without_status() -> None:
    data = json.dumps({"error": {"message": "The server had an error processing your request.",
                                 "type": "server_error"}})
    info = feed_error("", data).info
    assert info.code == "upstream_unavailable"
    assert info.retryable is True
    assert info.status is msgspec.UNSET


def test_error_chunk_with_numeric_code_is_the_status() -> None:
    info = feed_error("", '{"error": {"code": 502, "message": "Provider returned error"}}').info
    assert (info.code, info.status) == ("upstream_unavailable", 502)


def test_error_event_with_plain_text_keeps_the_text() -> None:
    info = feed_error("error", "upstream exploded").info
    assert info.message == "acme: upstream exploded"


def test_error_payload_that_is_not_a_chunk_keeps_message_and_code() -> None:
    # valid JSON, but "choices" has the wrong shape for a chunk
    data = '{"error": {"message": "Internal failure", "type": "server_error"}, "choices": 5}'
    info = feed_error("", data).info
    assert info.message == "acme: Internal failure"
    assert info.code == "upstream_unavailable"


def test_error_event_with_a_bare_message() -> None:
    info = feed_error("error", '{"message": "overloaded, try later"}').info
    assert info.code == "upstream_unavailable"
    assert info.message == "acme: overloaded, try later"


def test_error_string_member() -> None:
    info = feed_error("", '{"error": "model is loading"}').info
    assert info.message == "acme: model is loading"


def test_context_length_error_in_stream() -> None:
    data = json.dumps({"error": {"message": "This model's maximum context length is 8192 tokens.",
                                 "code": "context_length_exceeded"}})
    info = feed_error("", data).info
    assert info.code == "context_length_exceeded"
    assert info.retryable is False
