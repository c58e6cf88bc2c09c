"""The Gemini protocol module: the decoder over every recorded Gemini stream, hand-made streams for each
finish reason and error, the request encoder, the model list and the HTTP error mapping.

Expectations for the recordings are worked out here from the payloads with the stdlib ``json`` module
(or read off the files by hand), never with the code under test. Request bodies are written out in the
shape Google's API reference documents.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
from decoding import Run, feed
from harness import FIXTURES, fixture_payloads

from sidecar.errors import SidecarError
from sidecar.protocols import get_protocol
from sidecar.protocols.gemini import (
    SKIP_SIGNATURE,
    Decoder,
    encode_request,
    gemini_schema,
    map_http_error,
    models_request,
    parse_json_path,
    parse_models,
)
from sidecar.providers import Provider
from sidecar.providers.catalog import BUILTIN
from sidecar.types import (
    Event,
    ReasoningDeltaEvent,
    ReasoningEndEvent,
    StreamTextParams,
    TextDeltaEvent,
    ToolCallDeltaEvent,
    ToolCallEvent,
    ToolCallStartEvent,
)

GEMINI = next(p for p in BUILTIN if p.id == "gemini")
GEMINI_FIXTURES = sorted(p.name for p in (FIXTURES / "gemini").iterdir() if p.is_file())


def test_the_fixture_listing() -> None:
    assert len(GEMINI_FIXTURES) >= 14
    assert "function-call.sse" in GEMINI_FIXTURES
    assert "vertex-streamed-function-call-args-nested.chunks.txt" in GEMINI_FIXTURES
    assert not any("interactions" in n for n in GEMINI_FIXTURES)


def test_module_exposes_the_protocol() -> None:
    protocol = get_protocol("gemini")
    assert (protocol.name, protocol.framing) == ("gemini", "sse")
    assert protocol.new_decoder("x").provider == "x"  # type: ignore[attr-defined]


# --- reading a recording as the engine sees it ----------------------------------------------------


def wire_messages(name: str) -> list[str]:
    """The data of every SSE message: ``.sse`` read as recorded (CRLF framing), ``.chunks.txt`` per line."""
    path = FIXTURES / "gemini" / name
    if name.endswith(".chunks.txt"):
        return [line for line in path.read_text().splitlines() if line.strip()]
    raw = path.read_bytes().decode()
    assert "\r\n\r\n" in raw, "Gemini frames its events with CRLF CRLF"
    out = []
    for block in raw.split("\r\n\r\n"):
        data = [ln[5:].lstrip(" ") for ln in block.split("\r\n") if ln.startswith("data:")]
        if data:
            out.append("\n".join(data))
    assert out == fixture_payloads(f"gemini/{name}")  # the same payloads the shared harness reads
    return out


def run_messages(messages: list[str], provider: str = "gemini") -> Run:
    return feed(Decoder(provider), (("", m) for m in messages))


def run_chunks(*chunks: dict[str, Any] | str) -> Run:
    return run_messages([c if isinstance(c, str) else json.dumps(c) for c in chunks])


def of(events: list[Event], kind: type) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def text(events: list[Event]) -> str:
    return "".join(e.text for e in of(events, TextDeltaEvent))


def reasoning(events: list[Event]) -> str:
    return "".join(e.text for e in of(events, ReasoningDeltaEvent))


def deltas(events: list[Event], call_id: str) -> str:
    return "".join(d.arguments_delta for d in of(events, ToolCallDeltaEvent) if d.tool_call_id == call_id)


# --- what a recording says, worked out with json -----------------------------------------------------


def _path(json_path: str) -> list[str | int]:
    assert json_path.startswith("$")
    return [int(i) if i else k for k, i in re.findall(r"\.([^.\[]+)|\[(\d+)\]", json_path)]


def _assign(root: dict[str, Any], path: list[str | int], value: Any, append: bool) -> None:
    node: Any = root
    for seg, nxt in itertools.pairwise(path):
        if isinstance(node, list):
            while len(node) <= seg:  # type: ignore[operator]
                node.append(None)
            if node[seg] is None:  # type: ignore[index]
                node[seg] = [] if isinstance(nxt, int) else {}  # type: ignore[index]
            node = node[seg]  # type: ignore[index]
        else:
            node = node.setdefault(seg, [] if isinstance(nxt, int) else {})
    last = path[-1]
    if isinstance(node, list):
        while len(node) <= last:  # type: ignore[operator]
            node.append(None)
    if append and isinstance(value, str) and isinstance(node[last], str):  # type: ignore[index]
        node[last] += value  # type: ignore[index]
    else:
        node[last] = value  # type: ignore[index]


@dataclass
class Expected:
    text: str = ""
    reasoning: str = ""
    signatures: list[str] = field(default_factory=list)
    """thoughtSignatures of the parts the contract carries (text, thought and functionCall parts)"""
    calls: list[dict[str, Any]] = field(default_factory=list)
    """{"id", "name", "args"} in order"""
    finish: str | None = None
    usage: dict[str, Any] | None = None


FINISH = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter",
          "BLOCKLIST": "content_filter", "PROHIBITED_CONTENT": "content_filter", "SPII": "content_filter"}


def expected_of(messages: list[str]) -> Expected:
    exp = Expected()
    streaming: dict[str, Any] | None = None
    open_string: list[str | int] | None = None
    for data in messages:
        obj = json.loads(data)
        for cand in obj.get("candidates") or []:
            for part in (cand.get("content") or {}).get("parts") or []:
                if "thoughtSignature" in part and ("text" in part or "functionCall" in part):
                    exp.signatures.append(part["thoughtSignature"])
                fc = part.get("functionCall")
                if fc is None:
                    streaming = None
                    if part.get("thought"):
                        exp.reasoning += part.get("text", "")
                    elif "text" in part:
                        exp.text += part["text"]
                    continue
                if fc.get("name"):
                    call = {"id": fc.get("id") or f"call_{len(exp.calls)}", "name": fc["name"],
                            "args": fc.get("args") or {}}
                    exp.calls.append(call)
                    streaming = call if fc.get("willContinue") or fc.get("partialArgs") else None
                for arg in fc.get("partialArgs") or []:
                    assert streaming is not None
                    path = _path(arg["jsonPath"])
                    kinds = [k for k in ("stringValue", "numberValue", "boolValue", "nullValue") if k in arg]
                    value = None if kinds == ["nullValue"] else arg[kinds[0]]
                    _assign(streaming["args"], path, value, append=path == open_string)
                    open_string = path if "stringValue" in arg and arg.get("willContinue") else None
                if not fc.get("willContinue"):
                    streaming = None
            if cand.get("finishReason"):
                exp.finish = cand["finishReason"]
        usage = obj.get("usageMetadata") or {}
        if "totalTokenCount" in usage:
            exp.usage = usage
    return exp


# --- the contract's rules for a decoded stream -----------------------------------------------------


def check_invariants(events: list[Event], *, ended: bool = True) -> None:
    starts = [(i, e) for i, e in enumerate(events) if isinstance(e, ToolCallStartEvent)]
    calls = [(i, e) for i, e in enumerate(events) if isinstance(e, ToolCallEvent)]
    start_ids = [s.tool_call_id for _, s in starts]
    assert len(set(start_ids)) == len(start_ids), "one start per tool call"
    if ended:
        assert sorted(start_ids) == sorted(c.tool_call_id for _, c in calls), "each start has one tool_call"
    for pos, s in starts:
        mine = [(i, c) for i, c in calls if c.tool_call_id == s.tool_call_id]
        assert len(mine) <= 1
        end = mine[0][0] if mine else len(events)
        assert all(c.name == s.name and i > pos for i, c in mine)
        for i, d in enumerate(events):
            if isinstance(d, ToolCallDeltaEvent) and d.tool_call_id == s.tool_call_id:
                assert pos < i < end
    assert [s.index for _, s in starts] == list(range(len(starts))), "indexes count 0, 1, 2, ..."
    # a reasoning_end closes a run of reasoning_delta, or stands alone carrying a signature
    open_ = False
    for e in events:
        if isinstance(e, ReasoningDeltaEvent):
            open_ = True
        elif isinstance(e, ReasoningEndEvent):
            assert open_ or isinstance(e.signature, str), "a reasoning_end with nothing to close or carry"
            open_ = False
        elif isinstance(e, TextDeltaEvent | ToolCallStartEvent | ToolCallDeltaEvent | ToolCallEvent):
            assert not open_, f"{type(e).__name__} before reasoning_end"
    assert not (ended and open_), "reasoning left open at the end"


def compact(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


# --- every recording -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", GEMINI_FIXTURES)
def test_recorded_stream(name: str) -> None:
    messages = wire_messages(name)
    exp = expected_of(messages)
    run = run_messages(messages)
    assert run.error is None, run.error and run.error.info
    events = run.events
    check_invariants(events)

    assert text(events) == exp.text
    assert reasoning(events) == exp.reasoning
    got = [(c.tool_call_id, c.name, c.arguments) for c in of(events, ToolCallEvent)]
    assert got == [(c["id"], c["name"], c["args"]) for c in exp.calls]
    assert all(c.arguments_raw is msgspec.UNSET for c in of(events, ToolCallEvent))
    assert [(s.tool_call_id, s.name) for s in of(events, ToolCallStartEvent)] == [(c["id"], c["name"]) for c in
                                                                                   exp.calls]
    for c in exp.calls:  # the fragments concatenate to the arguments' JSON
        assert deltas(events, c["id"]) == compact(c["args"])
        assert json.loads(deltas(events, c["id"])) == c["args"]

    # every signature the upstream put on a text, thought or functionCall part, in order, and no other
    ends = of(events, ReasoningEndEvent)
    assert [e.signature for e in ends if isinstance(e.signature, str)] == exp.signatures
    if exp.reasoning:
        assert ends and events.index(ends[0]) > events.index(of(events, ReasoningDeltaEvent)[-1])
    else:
        assert all(isinstance(e.signature, str) for e in ends)
    # a functionCall's signature comes right before its tool_call_start
    for i, e in enumerate(events):
        if isinstance(e, ReasoningEndEvent) and i + 1 < len(events) and isinstance(events[i + 1], ToolCallStartEvent):
            assert isinstance(e.signature, str)

    assert exp.finish is not None, "every recording ends with a finishReason"
    finish = FINISH.get(exp.finish, "other")
    assert run.decoder.finish_reason == ("tool_calls" if finish == "stop" and exp.calls else finish)
    assert run.decoder.complete is False, "Gemini has no end marker"

    assert exp.usage is not None
    u = run.decoder.usage
    assert u is not None
    assert u.input_tokens == exp.usage["promptTokenCount"] + exp.usage.get("toolUsePromptTokenCount", 0)
    thoughts = exp.usage.get("thoughtsTokenCount", 0)
    assert u.output_tokens == exp.usage.get("candidatesTokenCount", 0) + thoughts
    assert u.input_tokens + u.output_tokens == exp.usage["totalTokenCount"]
    assert (u.reasoning_tokens or 0) == thoughts
    assert (u.cached_input_tokens or 0) == exp.usage.get("cachedContentTokenCount", 0)
    assert u.cache_creation_tokens is msgspec.UNSET


# --- hand-checked values from single recordings -----------------------------------------------------------


def run_fixture(name: str) -> Run:
    return run_messages(wire_messages(name))


def test_text_literal() -> None:
    run = run_fixture("text.sse")
    assert [e.text for e in of(run.events, TextDeltaEvent)] == ["The", " capital of France", " is Paris.\n"]
    assert run.decoder.finish_reason == "stop"
    assert run.decoder.usage is not None
    assert (run.decoder.usage.input_tokens, run.decoder.usage.output_tokens) == (13, 8)  # the last chunk's
    assert run.decoder.usage.reasoning_tokens is msgspec.UNSET


def test_function_call_literal() -> None:
    run = run_fixture("function-call.sse")
    assert [type(e) for e in run.events] == [ToolCallStartEvent, ToolCallDeltaEvent, ToolCallEvent]
    start, delta, call = run.events
    assert (start.tool_call_id, start.name, start.index) == ("call_0", "get_capital", 0)
    assert delta.arguments_delta == '{"country":"France"}'
    assert (call.tool_call_id, call.name, call.arguments) == ("call_0", "get_capital", {"country": "France"})
    assert run.decoder.finish_reason == "tool_calls"  # Gemini says STOP
    assert run.decoder.usage is not None
    assert (run.decoder.usage.input_tokens, run.decoder.usage.output_tokens) == (52, 5)


def test_function_call_thought_signature_literal() -> None:
    run = run_fixture("function-call-thought-signature.sse")
    kinds = [type(e) for e in run.events]
    assert kinds == [ReasoningEndEvent, ToolCallStartEvent, ToolCallDeltaEvent, ToolCallEvent]
    end = run.events[0]
    assert isinstance(end.signature, str) and end.signature.startswith("EpwICpkIAXLI2nxl")
    assert end.signature.endswith("onoBDAXOk15QuFyU=")
    assert run.events[3].name == "get_country" and run.events[3].arguments == {}
    u = run.decoder.usage
    assert u is not None
    assert (u.input_tokens, u.output_tokens, u.reasoning_tokens) == (29, 212, 202)


def test_thought_parts_literal() -> None:
    run = run_fixture("thought-parts.sse")
    assert reasoning(run.events).startswith("**Clarifying User Goals**")
    assert text(run.events).startswith("This is a great question! Safely crossing the street")
    kinds = [type(e) for e in run.events]
    end_at = kinds.index(ReasoningEndEvent)
    assert kinds.count(ReasoningEndEvent) == 1
    assert set(kinds[:end_at]) == {ReasoningDeltaEvent} and end_at == 4
    assert kinds[end_at + 1] is TextDeltaEvent
    signature = run.events[end_at].signature
    assert isinstance(signature, str) and signature.startswith("CiIB0e2Kb6Syj1a961EfbWv4W5C8RgAA")
    u = run.decoder.usage
    assert u is not None
    assert (u.input_tokens, u.output_tokens, u.reasoning_tokens) == (34, 469 + 787, 787)


def test_text_then_trailing_signature_literal() -> None:
    run = run_fixture("text-thought-signature.chunks.txt")
    assert text(run.events) == 'There are **3** "r"s in strawberry.\n\nSt**r**awbe**rr**y'
    assert [type(e) for e in run.events] == [TextDeltaEvent, TextDeltaEvent, ReasoningEndEvent]
    assert run.decoder.usage is not None and run.decoder.usage.reasoning_tokens == 302


def test_streamed_arguments_literal() -> None:
    run = run_fixture("streamed-function-call-args.chunks.txt")
    assert [(c.tool_call_id, c.name, c.arguments) for c in of(run.events, ToolCallEvent)] == [
        ("call_0", "getWeather", {"location": "Boston"}),
        ("call_1", "getWeather", {"location": "San Francisco"}),
    ]
    assert [d.arguments_delta for d in of(run.events, ToolCallDeltaEvent) if d.tool_call_id == "call_0"] == [
        '{"location":"Boston', '"', "}",
    ]
    assert run.decoder.finish_reason == "tool_calls"


def test_no_args_and_parallel_streamed_calls_literal() -> None:
    run = run_fixture("thought-and-no-args-function-calls.chunks.txt")
    assert [(s.tool_call_id, s.name, s.index) for s in of(run.events, ToolCallStartEvent)] == [
        ("call_0", "read_theme", 0), ("call_1", "read_screen", 1), ("call_2", "read_screen", 2),
        ("call_3", "read_screen", 3),
    ]
    assert [c.arguments for c in of(run.events, ToolCallEvent)] == [{}, {"id": "A"}, {"id": "B"}, {"id": "C"}]
    kinds = [type(e) for e in run.events]
    # the thought summary is closed by the signature that came on read_theme's part
    assert kinds[:3] == [ReasoningDeltaEvent, ReasoningEndEvent, ToolCallStartEvent]
    assert isinstance(run.events[1].signature, str) and run.events[1].signature.startswith("AY89a18a8/Loc2wl")


def test_nested_streamed_arguments_literal() -> None:
    run = run_fixture("vertex-streamed-function-call-args-nested.chunks.txt")
    [call] = of(run.events, ToolCallEvent)
    recipe = call.arguments["recipe"]
    assert recipe["name"] == "Lasagna"
    assert len(recipe["ingredients"]) == 10
    assert recipe["ingredients"][0] == {"amount": "16 oz", "name": "Lasagna noodles"}
    assert recipe["ingredients"][9] == {"amount": "1/2 tsp", "name": "Pepper"}
    assert recipe["steps"][0] == "Preheat oven to 375°F (190°C)."
    assert recipe["steps"][1] == "Cook lasagna noodles according to package directions, drain and set aside."
    assert recipe["steps"][4] == "In a 9x13 baking dish, spread a thin layer of meat sauce."
    assert len(recipe["steps"]) == 10
    assert len(of(run.events, ToolCallDeltaEvent)) > 20, "the arguments go out as they grow"


def test_builtin_tool_parts_do_not_break_the_stream() -> None:
    run = run_fixture("code-execution.sse")
    assert text(run.events) == "The result of $65465 - 6544 \\times 65464 - 6 + 1.02255$ is **-428,330,955.97745**."
    assert of(run.events, ToolCallStartEvent) == []
    u = run.decoder.usage
    assert u is not None
    assert (u.input_tokens, u.output_tokens, u.reasoning_tokens) == (147 + 360, 108 + 168, 168)
    run = run_fixture("builtin-tool-call-parts.sse")
    assert text(run.events) == '{\n  "city": "Mexico City",\n  "country": "Mexico"\n} '
    assert len(of(run.events, ReasoningEndEvent)) == 1  # the toolCall/toolResponse signatures go with them


def test_grounding_literal() -> None:
    run = run_fixture("google-search-grounding.sse")
    assert text(run.events).startswith("### Weather in San Francisco is Mild and Partly Cloudy Today")
    assert run.decoder.finish_reason == "stop"
    assert run.decoder.usage is not None
    assert (run.decoder.usage.input_tokens, run.decoder.usage.output_tokens) == (17 + 102, 241 + 412)


# --- hand-made streams ---------------------------------------------------------------------------------


def chunk(*parts: dict[str, Any], finish: str | None = None, usage: dict[str, Any] | None = None,
          index: int = 0) -> dict[str, Any]:
    cand: dict[str, Any] = {"content": {"parts": list(parts), "role": "model"}, "index": index}
    if finish:
        cand["finishReason"] = finish
    out: dict[str, Any] = {"candidates": [cand], "modelVersion": "gemini-test", "responseId": "r1"}
    if usage:
        out["usageMetadata"] = usage
    return out


def fc(**fields: Any) -> dict[str, Any]:
    return {"functionCall": fields}


def pa(path: str, **value: Any) -> dict[str, Any]:
    return {"jsonPath": path, **value}


@pytest.mark.parametrize(("reason", "finish"), [
    ("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"), ("RECITATION", "content_filter"),
    ("BLOCKLIST", "content_filter"), ("PROHIBITED_CONTENT", "content_filter"), ("SPII", "content_filter"),
    ("IMAGE_SAFETY", "content_filter"), ("LANGUAGE", "other"), ("OTHER", "other"),
    ("MALFORMED_FUNCTION_CALL", "other"), ("FINISH_REASON_UNSPECIFIED", "other"), ("SOMETHING_NEW", "other"),
])
def test_finish_reasons(reason: str, finish: str) -> None:
    run = run_chunks(chunk({"text": "x"}), {"candidates": [{"finishReason": reason, "index": 0}]})
    assert run.error is None
    assert run.decoder.finish_reason == finish
    assert text(run.events) == "x"


def test_finish_stop_after_a_function_call_is_tool_calls() -> None:
    run = run_chunks(chunk(fc(name="f", args={"a": 1})), chunk({"text": ""}, finish="STOP"))
    assert run.decoder.finish_reason == "tool_calls"


def test_finish_max_tokens_after_a_function_call_stays_length() -> None:
    run = run_chunks(chunk(fc(name="f", args={})), chunk(finish="MAX_TOKENS"))
    assert run.decoder.finish_reason == "length"


def test_no_finish_reason_leaves_it_unset() -> None:
    # the engine reports such a stream as network_error: the connection closed before its end
    run = run_chunks(chunk({"text": "partial"}))
    assert run.decoder.finish_reason is None and run.decoder.complete is False


def test_blocked_prompt() -> None:
    blocked = {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
               "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9}, "modelVersion": "gemini-test"}
    run = run_chunks(blocked)
    assert run.error is not None
    info = run.error.info
    assert (info.code, info.retryable, info.provider) == ("content_filtered", False, "gemini")
    assert "PROHIBITED_CONTENT" in info.message and info.status is msgspec.UNSET


def test_blocked_prompt_with_a_message() -> None:
    run = run_chunks({"promptFeedback": {"blockReason": "SAFETY", "blockReasonMessage": "Unsafe prompt."}})
    assert run.error is not None
    assert run.error.info.code == "content_filtered"
    assert "Unsafe prompt." in run.error.info.message


def test_prompt_feedback_without_block_is_fine() -> None:
    run = run_chunks({"promptFeedback": {"safetyRatings": []}, **chunk({"text": "ok"}, finish="STOP")})
    assert run.error is None and text(run.events) == "ok"


@pytest.mark.parametrize(("err", "code", "status", "retryable"), [
    ({"code": 500, "message": "An internal error has occurred.", "status": "INTERNAL"},
     "upstream_unavailable", 500, True),
    ({"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"},
     "upstream_unavailable", 503, True),
    ({"code": 429, "message": "Resource exhausted.", "status": "RESOURCE_EXHAUSTED"}, "rate_limited", 429, True),
    ({"message": "stream broke"}, "upstream_unavailable", None, True),
])
def test_error_in_the_stream(err: dict[str, Any], code: str, status: int | None, retryable: bool) -> None:
    run = run_chunks(chunk({"text": "Hel"}), {"error": err})
    assert text(run.events) == "Hel"
    assert run.error is not None
    info = run.error.info
    assert (info.code, info.retryable, info.provider) == (code, retryable, "gemini")
    assert info.status == (msgspec.UNSET if status is None else status)
    assert info.message == f"gemini: {err['message']}"


def test_error_in_an_array() -> None:
    run = run_chunks('[{"error": {"code": 500, "message": "Internal error", "status": "INTERNAL"}}]')
    assert run.error is not None and run.error.info.code == "upstream_unavailable"


@pytest.mark.parametrize("garbage", ["not json", '{"candidates": 5}', "[1, 2]"])
def test_garbage_is_a_protocol_error(garbage: str) -> None:
    run = run_chunks(garbage)
    assert run.error is not None
    assert run.error.info.code == "protocol_error"
    assert run.error.info.provider == "gemini"


def test_done_marker_from_a_proxy_completes() -> None:
    run = run_chunks(chunk({"text": "a"}, finish="STOP"), "[DONE]")
    assert run.decoder.complete is True


def test_other_candidates_are_ignored() -> None:
    two = {"candidates": [{"content": {"parts": [{"text": "B"}]}, "index": 1, "finishReason": "MAX_TOKENS"},
                          {"content": {"parts": [{"text": "A"}]}, "index": 0}]}
    run = run_chunks(two, chunk(finish="STOP"))
    assert text(run.events) == "A" and run.decoder.finish_reason == "stop"


def test_candidate_without_content_and_empty_parts() -> None:
    run = run_chunks({"candidates": [{"index": 0}]}, chunk(), chunk({"text": ""}, finish="STOP"))
    assert run.events == [] and run.decoder.finish_reason == "stop"


def test_usage_with_cache_and_tool_prompt() -> None:
    usage = {"promptTokenCount": 1000, "cachedContentTokenCount": 800, "toolUsePromptTokenCount": 50,
             "candidatesTokenCount": 30, "thoughtsTokenCount": 20, "totalTokenCount": 1100}
    run = run_chunks(chunk({"text": "a"}, finish="STOP", usage=usage))
    u = run.decoder.usage
    assert u is not None
    assert (u.input_tokens, u.output_tokens, u.reasoning_tokens, u.cached_input_tokens) == (1050, 50, 20, 800)


def test_usage_without_counts_keeps_the_last_real_one() -> None:
    run = run_chunks(chunk({"text": "a"}, usage={"promptTokenCount": 4, "candidatesTokenCount": 1,
                                                 "totalTokenCount": 5}),
                     chunk(finish="STOP", usage={"trafficType": "ON_DEMAND"}))
    assert run.decoder.usage is not None
    assert (run.decoder.usage.input_tokens, run.decoder.usage.output_tokens) == (4, 1)


def test_no_usage_at_all() -> None:
    assert run_chunks(chunk({"text": "a"}, finish="STOP")).decoder.usage is None


def test_gemini_3_call_ids_are_kept() -> None:
    run = run_chunks(chunk(fc(id="fc_abc", name="a", args={"x": 1}), fc(name="b", args={})), chunk(finish="STOP"))
    assert [(s.tool_call_id, s.index) for s in of(run.events, ToolCallStartEvent)] == [("fc_abc", 0), ("call_1", 1)]


def test_thoughts_then_signed_text() -> None:
    run = run_chunks(
        chunk({"text": "plan", "thought": True}),
        chunk({"text": " more", "thought": True}),
        chunk({"text": "Answer", "thoughtSignature": "sig-1"}),
        chunk({"text": "."}, finish="STOP"),
    )
    check_invariants(run.events)
    assert [type(e) for e in run.events] == [
        ReasoningDeltaEvent, ReasoningDeltaEvent, ReasoningEndEvent, TextDeltaEvent, TextDeltaEvent,
    ]
    assert run.events[2].signature == "sig-1"


def test_thoughts_closed_by_unsigned_text() -> None:
    run = run_chunks(chunk({"text": "plan", "thought": True}), chunk({"text": "A"}, finish="STOP"))
    assert [type(e) for e in run.events] == [ReasoningDeltaEvent, ReasoningEndEvent, TextDeltaEvent]
    assert run.events[1].signature is msgspec.UNSET


def test_signed_thought_part_keeps_its_signature() -> None:
    run = run_chunks(
        chunk({"text": "t1", "thought": True, "thoughtSignature": "s-thought"}),
        chunk({"text": "t2", "thought": True}),
        chunk({"text": "A", "thoughtSignature": "s-text"}, finish="STOP"),
    )
    check_invariants(run.events)
    ends = of(run.events, ReasoningEndEvent)
    assert [e.signature for e in ends] == ["s-thought", "s-text"]
    kinds = [type(e) for e in run.events]
    assert kinds == [ReasoningDeltaEvent, ReasoningEndEvent, ReasoningDeltaEvent, ReasoningEndEvent, TextDeltaEvent]


def test_reasoning_only_stream_is_closed_at_the_end() -> None:
    run = run_chunks(chunk({"text": "hmm", "thought": True}, finish="MAX_TOKENS"))
    assert [type(e) for e in run.events] == [ReasoningDeltaEvent, ReasoningEndEvent]
    assert run.decoder.finish_reason == "length"


def test_thoughts_then_signed_call_in_one_chunk() -> None:
    run = run_chunks(chunk({"text": "use f", "thought": True}, {**fc(name="f", args={}), "thoughtSignature": "s"},
                           finish="STOP"))
    assert [type(e) for e in run.events] == [
        ReasoningDeltaEvent, ReasoningEndEvent, ToolCallStartEvent, ToolCallDeltaEvent, ToolCallEvent,
    ]
    assert run.events[1].signature == "s"


def test_streamed_call_with_every_value_kind() -> None:
    run = run_chunks(
        chunk(fc(name="set", willContinue=True)),
        chunk(fc(partialArgs=[pa("$.name", stringValue="li", willContinue=True)], willContinue=True)),
        chunk(fc(partialArgs=[pa("$.name", stringValue="ght \"1\"", willContinue=True)], willContinue=True)),
        chunk(fc(partialArgs=[pa("$.name", stringValue="")], willContinue=True)),
        chunk(fc(partialArgs=[pa("$.level", numberValue=0.5), pa("$.on", boolValue=True)], willContinue=True)),
        chunk(fc(partialArgs=[pa("$.room", nullValue="NULL_VALUE")], willContinue=True)),
        chunk(fc(partialArgs=[pa("$.tags[0]", stringValue="a"), pa("$.tags[1]", stringValue="b")],
                 willContinue=True)),
        chunk(fc(partialArgs=[pa("$.pos.x", numberValue=3), pa("$.pos.y", numberValue=-4)], willContinue=True)),
        chunk(fc()),
        chunk({"text": ""}, finish="STOP"),
    )
    check_invariants(run.events)
    want = {"name": 'light "1"', "level": 0.5, "on": True, "room": None, "tags": ["a", "b"],
            "pos": {"x": 3, "y": -4}}
    [call] = of(run.events, ToolCallEvent)
    assert call.arguments == want
    assert deltas(run.events, "call_0") == compact(want)
    assert run.decoder.finish_reason == "tool_calls"


def test_streamed_call_without_its_closing_part_ends_at_the_end() -> None:
    run = run_chunks(
        chunk({**fc(name="writeItems", willContinue=True), "thoughtSignature": "s"}),
        chunk(fc(partialArgs=[pa("$.ops[0].action", stringValue="add", willContinue=True)], willContinue=True)),
        chunk(fc(partialArgs=[pa("$.ops[0].action", stringValue="")], willContinue=True)),
        chunk(fc(partialArgs=[pa("$.ops[0].price", numberValue=0.5)], willContinue=True)),
        chunk(fc(partialArgs=[pa("$.ops[1].action", stringValue="add", willContinue=True)], willContinue=True)),
        chunk(fc(partialArgs=[pa("$.ops[1].price", numberValue=0.3)])),  # no willContinue: the call is over
        chunk({"text": ""}, finish="STOP"),
    )
    check_invariants(run.events)
    [call] = of(run.events, ToolCallEvent)
    want = {"ops": [{"action": "add", "price": 0.5}, {"action": "add", "price": 0.3}]}
    assert call.arguments == want
    assert deltas(run.events, "call_0") == compact(want)


def test_streamed_call_still_open_when_the_stream_ends() -> None:
    run = run_chunks(
        chunk(fc(name="f", willContinue=True)),
        chunk(fc(partialArgs=[pa("$.q", stringValue="abc", willContinue=True)], willContinue=True),
              finish="STOP"),
    )
    check_invariants(run.events)
    [call] = of(run.events, ToolCallEvent)
    assert call.arguments == {"q": "abc"}
    assert deltas(run.events, "call_0") == '{"q":"abc"}'
    assert run.decoder.finish_reason == "tool_calls"


def test_streamed_call_without_arguments() -> None:
    run = run_chunks(chunk(fc(name="ping", willContinue=True)), chunk(fc()), chunk(finish="STOP"))
    [call] = of(run.events, ToolCallEvent)
    assert call.arguments == {} and deltas(run.events, "call_0") == "{}"


def test_streamed_arguments_out_of_order_still_give_the_right_object() -> None:
    run = run_chunks(
        chunk(fc(name="f", willContinue=True)),
        chunk(fc(partialArgs=[pa("$.a.x", numberValue=1)], willContinue=True)),
        chunk(fc(partialArgs=[pa("$.b", numberValue=2)], willContinue=True)),
        chunk(fc(partialArgs=[pa("$.a.y", numberValue=3)], willContinue=True)),  # back into a closed object
        chunk(fc()),
        chunk(finish="STOP"),
    )
    check_invariants(run.events)
    [call] = of(run.events, ToolCallEvent)
    assert call.arguments == {"a": {"x": 1, "y": 3}, "b": 2}
    assert deltas(run.events, "call_0") == '{"a":{"x":1},"b":2', "the preview stops where it could not go on"


def test_strings_keep_growing_after_the_preview_stopped() -> None:
    run = run_chunks(
        chunk(fc(name="f", willContinue=True)),
        chunk(fc(partialArgs=[pa("$.a.x", numberValue=1), pa("$.b", numberValue=2)], willContinue=True)),
        chunk(fc(partialArgs=[pa("$.a.s", stringValue="he", willContinue=True)], willContinue=True)),
        chunk(fc(partialArgs=[pa("$.a.s", stringValue="llo", willContinue=True)], willContinue=True)),
        chunk(fc(partialArgs=[pa("$.a.s", stringValue="")], willContinue=True)),
        chunk(fc(partialArgs=[pa("$.c", stringValue="new")])),
        chunk(finish="STOP"),
    )
    check_invariants(run.events)
    [call] = of(run.events, ToolCallEvent)
    assert call.arguments == {"a": {"x": 1, "s": "hello"}, "b": 2, "c": "new"}
    assert deltas(run.events, "call_0") == '{"a":{"x":1},"b":2'


def test_a_string_sent_again_whole_replaces_it() -> None:
    run = run_chunks(
        chunk(fc(name="f", willContinue=True)),
        chunk(fc(partialArgs=[pa("$.s", stringValue="draft")], willContinue=True)),
        chunk(fc(partialArgs=[pa("$.s", stringValue="final")], willContinue=True)),
        chunk(fc()),
        chunk(finish="STOP"),
    )
    [call] = of(run.events, ToolCallEvent)
    assert call.arguments == {"s": "final"}


def test_text_after_a_streamed_call_closes_it() -> None:
    run = run_chunks(chunk(fc(name="f", willContinue=True)), chunk({"text": "done"}, finish="STOP"))
    check_invariants(run.events)
    kinds = [type(e) for e in run.events]
    assert kinds.index(ToolCallEvent) < kinds.index(TextDeltaEvent)


def test_stray_end_marker_is_ignored() -> None:
    run = run_chunks(chunk(fc()), chunk(fc(partialArgs=[pa("$.a", numberValue=1)])), chunk({"text": "x"},
                                                                                          finish="STOP"))
    assert text(run.events) == "x" and of(run.events, ToolCallEvent) == []


@pytest.mark.parametrize(("path", "segments"), [
    ("$.a", ("a",)), ("$.a.b[0].c", ("a", "b", 0, "c")), ("$.steps[10]", ("steps", 10)),
    ("$['a b'].c", ("a b", "c")), ('$["x"]', ("x",)), ("$", ()), ("a.b", None), ("$.a[", None),
])
def test_json_paths(path: str, segments: tuple[Any, ...] | None) -> None:
    assert parse_json_path(path) == segments


# --- the request ---------------------------------------------------------------------------------------------

HI = [{"role": "user", "content": "hi"}]
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()
KEY = "AIzaSyTest-0123456789abcdefghijklmnop"


def params(**fields: Any) -> StreamTextParams:
    fields.setdefault("messages", HI)
    return msgspec.convert(fields, StreamTextParams)


def body(provider: Provider = GEMINI, model: str = "gemini-2.5-flash", **fields: Any) -> dict[str, Any]:
    req = encode_request(params(**fields), provider, model, KEY)
    assert req.body is not None
    decoded: dict[str, Any] = json.loads(req.body)
    return decoded


def test_request_line_and_headers() -> None:
    req = encode_request(params(), GEMINI, "gemini-2.5-pro", KEY)
    assert req.method == "POST"
    assert req.url == ("https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro"
                       ":streamGenerateContent?alt=sse")
    assert req.headers["x-goog-api-key"] == KEY
    assert KEY not in req.url and "key=" not in req.url
    assert req.headers["content-type"] == "application/json"
    assert req.headers["accept"] == "text/event-stream"
    assert not any(k.lower() == "authorization" for k in req.headers)


def test_model_paths() -> None:
    base = GEMINI.base_url
    assert encode_request(params(), GEMINI, "models/gemini-2.5-pro", KEY).url.startswith(
        f"{base}/models/gemini-2.5-pro:streamGenerateContent")
    assert encode_request(params(), GEMINI, "tunedModels/my-model-1", KEY).url.startswith(
        f"{base}/tunedModels/my-model-1:streamGenerateContent")
    assert encode_request(params(), GEMINI, "a b?c", KEY).url.startswith(f"{base}/models/a%20b%3Fc:stream")


def test_no_key_no_header_and_provider_headers() -> None:
    custom = Provider(id="gem", name="G", protocol="gemini", base_url="http://127.0.0.1:9/v1beta",
                      headers={"x-goog-user-project": "proj-1"})
    req = encode_request(params(), custom, "gemini-2.5-flash", None)
    assert "x-goog-api-key" not in req.headers
    assert req.headers["x-goog-user-project"] == "proj-1"
    assert req.url == "http://127.0.0.1:9/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"


def test_minimal_body() -> None:
    assert body() == {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}


def test_system_param_and_system_messages() -> None:
    b = body(system="Be brief.", messages=[
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "hi"},
        {"role": "system", "content": "Never use emoji."},
    ])
    assert b["systemInstruction"] == {"parts": [{"text": "Be brief."}, {"text": "Answer in French."},
                                                {"text": "Never use emoji."}]}
    assert b["contents"] == [{"role": "user", "parts": [{"text": "hi"}]}]


def test_roles_and_merging_of_neighbours() -> None:
    b = body(messages=[
        {"role": "user", "content": "one"},
        {"role": "user", "content": "two"},
        {"role": "assistant", "content": "reply"},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": [{"type": "text", "text": "three"}]},
    ])
    assert b["contents"] == [
        {"role": "user", "parts": [{"text": "one"}, {"text": "two"}]},
        {"role": "model", "parts": [{"text": "reply"}]},
        {"role": "user", "parts": [{"text": "three"}]},
    ]


def test_only_system_messages_is_refused() -> None:
    with pytest.raises(SidecarError) as err:
        body(messages=[{"role": "system", "content": "x"}])
    assert err.value.info.code == "invalid_request"


def test_user_text_and_images() -> None:
    b = body(messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is in these?"},
        {"type": "image", "media_type": "image/png", "data": PNG},
        {"type": "image", "media_type": "image/jpeg", "url": "https://img.example/cat.jpg"},
        {"type": "image", "media_type": "image/webp", "url": f"data:image/gif;base64,{PNG}"},
    ]}])
    assert b["contents"] == [{"role": "user", "parts": [
        {"text": "What is in these?"},
        {"inlineData": {"mimeType": "image/png", "data": PNG}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://img.example/cat.jpg"}},
        {"inlineData": {"mimeType": "image/gif", "data": PNG}},
    ]}]


def test_image_without_data_or_url_is_refused() -> None:
    with pytest.raises(SidecarError) as err:
        body(messages=[{"role": "user", "content": [{"type": "image", "media_type": "image/png"}]}])
    assert err.value.info.code == "invalid_request"


def test_user_tool_call_part_is_refused() -> None:
    with pytest.raises(SidecarError) as err:
        body(messages=[{"role": "user", "content": [{"type": "tool_call", "id": "c", "name": "f", "arguments": {}}]}])
    assert err.value.info.code == "invalid_request" and "tool_call" in err.value.info.message


def test_tool_calls_and_results_with_name_lookup() -> None:
    b = body(messages=[
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_call", "id": "call_0", "name": "get_weather", "arguments": {"city": "Paris"}},
            {"type": "tool_call", "id": "call_1", "name": "get_time", "arguments": {"city": "Rome", "n": [1, 2]}},
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "12:00"},
        {"role": "tool", "tool_call_id": "call_0", "content": [
            {"type": "text", "text": "18C, "}, {"type": "text", "text": "sunny"},
            {"type": "image", "media_type": "image/png", "data": PNG},
        ]},
        {"role": "user", "content": "Thanks. And Oslo?"},
        {"role": "assistant", "content": [
            {"type": "tool_call", "id": "call_0", "name": "get_forecast", "arguments": {}}]},
        {"role": "tool", "tool_call_id": "call_0", "content": "snow", "is_error": True},
    ])
    user, model, results, model2, result2 = b["contents"]
    assert user == {"role": "user", "parts": [{"text": "Weather in Paris and Rome?"}]}
    assert model == {"role": "model", "parts": [
        {"text": "Checking."},
        {"functionCall": {"id": "call_0", "name": "get_weather", "args": {"city": "Paris"}}},
        {"functionCall": {"id": "call_1", "name": "get_time", "args": {"city": "Rome", "n": [1, 2]}}},
    ]}
    # parallel results go back in one user turn, each named after its call; text wrapped in an object
    assert results == {"role": "user", "parts": [
        {"functionResponse": {"id": "call_1", "name": "get_time", "response": {"content": "12:00"}}},
        {"functionResponse": {"id": "call_0", "name": "get_weather", "response": {"content": "18C, sunny"}}},
        {"inlineData": {"mimeType": "image/png", "data": PNG}},
        {"text": "Thanks. And Oslo?"},
    ]}
    assert model2 == {"role": "model", "parts": [
        {"functionCall": {"id": "call_0", "name": "get_forecast", "args": {}}}]}
    # the same id in a later turn names the later call
    assert result2 == {"role": "user", "parts": [
        {"functionResponse": {"id": "call_0", "name": "get_forecast", "response": {"error": "snow"}}}]}


def test_tool_result_for_an_unknown_call_is_refused() -> None:
    with pytest.raises(SidecarError) as err:
        body(messages=[HI[0], {"role": "tool", "tool_call_id": "nope", "content": "x"}])
    assert err.value.info.code == "invalid_request" and "nope" in err.value.info.message


def test_tools_and_schema_subset() -> None:
    tools = [
        {"name": "get_weather", "description": "Weather for a city", "parameters": {
            "$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "additionalProperties": False,
            "properties": {
                "city": {"type": "string", "description": "City name", "minLength": 1},
                "units": {"type": ["string", "null"], "enum": ["c", "f"]},
                "days": {"type": "array", "items": {"type": "integer", "minimum": 1, "exclusiveMaximum": 9}},
                "kind": {"const": "daily"},
                "when": {"anyOf": [{"type": "string", "format": "date"}, {"type": "null"}]},
            },
            "required": ["city"]}},
        {"name": "ping", "parameters": {"type": "object", "properties": {}}},
    ]
    b = body(tools=tools, tool_choice="auto")
    assert b["tools"] == [{"functionDeclarations": [
        {"name": "get_weather", "description": "Weather for a city", "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name", "minLength": 1},
                "units": {"nullable": True, "type": "string", "enum": ["c", "f"]},
                "days": {"type": "array", "items": {"type": "integer", "minimum": 1}},
                "kind": {"enum": ["daily"]},
                "when": {"nullable": True, "type": "string", "format": "date"},
            },
            "required": ["city"]}},
        {"name": "ping"},
    ]}]
    assert b["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}


def test_schema_with_several_types() -> None:
    assert gemini_schema({"type": ["string", "integer"]}) == {"anyOf": [{"type": "string"}, {"type": "integer"}]}
    assert gemini_schema({"oneOf": [{"type": "string"}, {"type": "number"}]}) == {
        "anyOf": [{"type": "string"}, {"type": "number"}]}


@pytest.mark.parametrize(("choice", "config"), [
    ("auto", {"mode": "AUTO"}), ("none", {"mode": "NONE"}), ("required", {"mode": "ANY"}),
    ({"name": "get_weather"}, {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}),
])
def test_tool_choice(choice: Any, config: dict[str, Any]) -> None:
    assert body(tool_choice=choice)["toolConfig"] == {"functionCallingConfig": config}


def test_no_tools_key_for_an_empty_list() -> None:
    assert "tools" not in body(tools=[])


def test_generation_config() -> None:
    b = body(temperature=0.2, top_p=0.9, max_tokens=256, stop=["END", "STOP"], seed=7)
    assert b["generationConfig"] == {"temperature": 0.2, "topP": 0.9, "maxOutputTokens": 256,
                                     "stopSequences": ["END", "STOP"], "seed": 7}


def test_response_formats() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": False}
    assert body(response_format={"type": "json_schema", "name": "r", "schema": schema})["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseSchema": {"type": "object", "properties": {"a": {"type": "integer"}}},
    }
    assert body(response_format={"type": "json_object"})["generationConfig"] == {
        "responseMimeType": "application/json"}
    assert "generationConfig" not in body(response_format={"type": "text"})


@pytest.mark.parametrize(("reasoning", "thinking"), [
    ({"effort": "low"}, {"includeThoughts": True, "thinkingBudget": 1024}),
    ({"effort": "medium"}, {"includeThoughts": True, "thinkingBudget": 8192}),
    ({"effort": "high"}, {"includeThoughts": True, "thinkingBudget": 24576}),
    ({"budget_tokens": 3000, "effort": "low"}, {"includeThoughts": True, "thinkingBudget": 3000}),
    ({"budget_tokens": 0}, {"includeThoughts": True, "thinkingBudget": 0}),
    ({}, {"includeThoughts": True}),
])
def test_reasoning(reasoning: dict[str, Any], thinking: dict[str, Any]) -> None:
    assert body(reasoning=reasoning)["generationConfig"] == {"thinkingConfig": thinking}


def test_extra_body_then_provider_options_merged_last() -> None:
    custom = Provider(id="g", name="G", protocol="gemini", base_url="https://g.example/v1beta",
                      extra_body={"safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "OFF"}],
                                  "generationConfig": {"topK": 10, "temperature": 1.0}})
    b = body(custom, temperature=0.5, provider_options={"generationConfig": {"topK": 3}, "cachedContent": "c/1"})
    assert b["generationConfig"] == {"temperature": 1.0, "topK": 3}
    assert b["safetySettings"] == [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "OFF"}]
    assert b["cachedContent"] == "c/1"


# --- thought signatures sent back -------------------------------------------------------------------------

SIG_CALL = "EpwICpkIAXLI2nxlU6gsWZaZ"
SIG_TEXT = "EpAICo0IAb4+9vuku3oDHR5E"


def model_parts(content: list[dict[str, Any]], model: str = "gemini-2.5-flash") -> list[dict[str, Any]]:
    b = body(model=model, messages=[HI[0], {"role": "assistant", "content": content}])
    parts: list[dict[str, Any]] = b["contents"][1]["parts"]
    return parts


def test_signature_goes_back_on_its_function_call_in_either_order() -> None:
    call = {"type": "tool_call", "id": "call_0", "name": "get_country", "arguments": {}}
    sig = {"type": "reasoning", "text": "", "signature": SIG_CALL}
    want = [{"text": "Let me look."}, {"functionCall": {"id": "call_0", "name": "get_country", "args": {}},
                                        "thoughtSignature": SIG_CALL}]
    stream_order = [{"type": "text", "text": "Let me look."}, sig, call]
    complete_chat_order = [sig, {"type": "text", "text": "Let me look."}, call]  # reasoning parts come first
    assert model_parts(stream_order) == want
    assert model_parts(complete_chat_order) == want


def test_a_responses_reasoning_item_is_not_sent_as_a_thought_signature() -> None:
    """After a fallback from OpenAI's Responses API, its reasoning item (a JSON object) is no Gemini signature."""
    item = '{"type":"reasoning","id":"rs_1","summary":[],"encrypted_content":"gAAAAB"}'
    parts = model_parts([
        {"type": "reasoning", "text": "", "signature": item},
        {"type": "text", "text": "Let me look."},
    ])
    assert parts == [{"text": "Let me look."}]


def test_thought_text_and_signature_before_parallel_calls() -> None:
    parts = model_parts([
        {"type": "reasoning", "text": "two lookups", "signature": SIG_CALL},
        {"type": "tool_call", "id": "a", "name": "f", "arguments": {"x": 1}},
        {"type": "tool_call", "id": "b", "name": "f", "arguments": {"x": 2}},
    ])
    assert parts == [
        {"text": "two lookups", "thought": True},
        {"functionCall": {"id": "a", "name": "f", "args": {"x": 1}}, "thoughtSignature": SIG_CALL},
        {"functionCall": {"id": "b", "name": "f", "args": {"x": 2}}},  # only the first call of a step is signed
    ]


def test_text_signature_goes_on_the_text() -> None:
    sig = {"type": "reasoning", "text": "", "signature": SIG_TEXT}
    text_part = {"type": "text", "text": "There are 3."}
    assert model_parts([text_part, sig]) == [{"text": "There are 3.", "thoughtSignature": SIG_TEXT}]
    assert model_parts([sig, text_part]) == [{"text": "There are 3.", "thoughtSignature": SIG_TEXT}]


def test_text_and_call_signatures_both_placed() -> None:
    parts = model_parts([
        {"type": "reasoning", "text": "", "signature": SIG_TEXT},
        {"type": "reasoning", "text": "", "signature": SIG_CALL},
        {"type": "text", "text": "Checking."},
        {"type": "tool_call", "id": "c", "name": "f", "arguments": {}},
    ])
    assert parts == [{"text": "Checking.", "thoughtSignature": SIG_TEXT},
                     {"functionCall": {"id": "c", "name": "f", "args": {}}, "thoughtSignature": SIG_CALL}]


def test_signature_with_only_thoughts_stays_on_the_thought() -> None:
    assert model_parts([{"type": "reasoning", "text": "hm", "signature": "s"}]) == [
        {"text": "hm", "thought": True, "thoughtSignature": "s"}]


def test_redacted_reasoning_is_left_out() -> None:
    assert model_parts([{"type": "redacted_reasoning", "data": "QUJD"}, {"type": "text", "text": "a"}]) == [
        {"text": "a"}]


def test_gemini_3_unsigned_call_gets_the_documented_stand_in() -> None:
    content = [{"type": "tool_call", "id": "a", "name": "f", "arguments": {}},
               {"type": "tool_call", "id": "b", "name": "g", "arguments": {}}]
    parts = model_parts(content, model="gemini-3-pro-preview")
    assert parts[0]["thoughtSignature"] == SKIP_SIGNATURE
    assert "thoughtSignature" not in parts[1]
    assert all("thoughtSignature" not in p for p in model_parts(content, model="gemini-2.5-pro"))
    signed = [{"type": "reasoning", "text": "", "signature": SIG_CALL}, *content]
    assert model_parts(signed, model="gemini-3-pro-preview")[0]["thoughtSignature"] == SIG_CALL


def test_decoded_signatures_round_trip() -> None:
    """A recorded Gemini 3 answer, kept as the client keeps it, goes back with the signature on the call."""
    run = run_fixture("function-call-thought-signature.sse")
    [end] = of(run.events, ReasoningEndEvent)
    [call] = of(run.events, ToolCallEvent)
    parts = model_parts([{"type": "reasoning", "text": "", "signature": end.signature},
                         {"type": "tool_call", "id": call.tool_call_id, "name": call.name,
                          "arguments": call.arguments}], model="gemini-3-pro-preview")
    [part] = parts
    assert part["functionCall"]["name"] == "get_country"
    assert part["thoughtSignature"] == expected_of(wire_messages("function-call-thought-signature.sse")).signatures[0]


# --- the model list -------------------------------------------------------------------------------------


def test_models_request() -> None:
    req = models_request(GEMINI, KEY)
    assert req.method == "GET"
    assert req.url == "https://generativelanguage.googleapis.com/v1beta/models?pageSize=1000"
    assert req.headers["x-goog-api-key"] == KEY and KEY not in req.url
    assert req.body is None


def test_parse_models() -> None:
    listing = {"models": [
        {"name": "models/gemini-2.5-pro", "version": "2.5", "displayName": "Gemini 2.5 Pro",
         "inputTokenLimit": 1048576, "outputTokenLimit": 65536,
         "supportedGenerationMethods": ["generateContent", "countTokens", "createCachedContent"], "thinking": True},
        {"name": "models/text-embedding-004", "displayName": "Text Embedding 004",
         "inputTokenLimit": 2048, "outputTokenLimit": 1, "supportedGenerationMethods": ["embedContent"]},
        {"name": "models/gemma-3-27b-it", "inputTokenLimit": 131072},
        {"displayName": "no name"},
        "junk",
    ], "nextPageToken": "x"}
    models = parse_models(json.dumps(listing).encode())
    assert [(m.id, m.name, m.context_window, m.max_output_tokens, m.reasoning) for m in models] == [
        ("gemini-2.5-pro", "Gemini 2.5 Pro", 1048576, 65536, True),
        ("gemma-3-27b-it", "", 131072, None, None),
    ]


@pytest.mark.parametrize("raw", [b"", b"not json", b"[]", b'{"models": 5}', b"{}"])
def test_parse_models_never_raises(raw: bytes) -> None:
    assert parse_models(raw) == []


# --- HTTP errors ------------------------------------------------------------------------------------------


def google_body(code: int, message: str, status: str, details: list[dict[str, Any]] | None = None) -> bytes:
    err: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details is not None:
        err["details"] = details
    return json.dumps({"error": err}).encode()


BAD_KEY = google_body(400, "API key not valid. Please pass a valid API key.", "INVALID_ARGUMENT", [
    {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
     "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}])
PER_MINUTE = google_body(429, "You exceeded your current quota, please check your plan and billing details.",
                         "RESOURCE_EXHAUSTED", [
    {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [
        {"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
         "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "quotaValue": "10"}]},
    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "13s"}])
PER_DAY = google_body(429, "You exceeded your current quota.", "RESOURCE_EXHAUSTED", [
    {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [
        {"quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier", "quotaValue": "250"}]}])


@pytest.mark.parametrize(("status", "raw", "code", "retryable"), [
    (400, BAD_KEY, "authentication_failed", False),
    (400, google_body(400, "API key expired. Please renew the API key.", "INVALID_ARGUMENT"),
     "authentication_failed", False),
    (403, google_body(403, "Method doesn't allow unregistered callers (callers without established identity).",
                      "PERMISSION_DENIED"), "authentication_failed", False),
    (401, google_body(401, "Request had invalid authentication credentials.", "UNAUTHENTICATED"),
     "authentication_failed", False),
    (403, google_body(403, "Permission denied on resource project x.", "PERMISSION_DENIED"),
     "permission_denied", False),
    (400, google_body(400, "User location is not supported for the API use.", "FAILED_PRECONDITION"),
     "permission_denied", False),
    (429, PER_MINUTE, "rate_limited", True),
    (429, PER_DAY, "rate_limited", False),
    (404, google_body(404, "models/gemini-9 is not found for API version v1beta, or is not supported for "
                           "generateContent.", "NOT_FOUND"), "unknown_model", False),
    (404, google_body(404, "Requested entity was not found.", "NOT_FOUND"), "not_found", False),
    (400, google_body(400, "Invalid JSON payload received. Unknown name \"foo\".", "INVALID_ARGUMENT"),
     "invalid_request", False),
    (400, google_body(400, "The input token count (1200000) exceeds the maximum number of tokens allowed "
                           "(1048576).", "INVALID_ARGUMENT"), "context_length_exceeded", False),
    (503, google_body(503, "The model is overloaded. Please try again later.", "UNAVAILABLE"),
     "upstream_unavailable", True),
    (500, google_body(500, "An internal error has occurred.", "INTERNAL"), "upstream_unavailable", True),
    (504, google_body(504, "Deadline expired before operation could complete.", "DEADLINE_EXCEEDED"),
     "timeout", True),
])
def test_map_http_error(status: int, raw: bytes, code: str, retryable: bool) -> None:
    info = map_http_error(status, raw, "gemini").info
    assert (info.code, info.status, info.retryable, info.provider) == (code, status, retryable, "gemini")
    assert info.message == "gemini: " + json.loads(raw)["error"]["message"]


def test_error_wrapped_in_an_array() -> None:
    raw = b"[" + google_body(429, "Resource has been exhausted.", "RESOURCE_EXHAUSTED") + b"]"
    assert map_http_error(429, raw, "gemini").info.code == "rate_limited"


def test_error_without_google_shape() -> None:
    info = map_http_error(502, b"<html>Bad Gateway</html>", "gemini").info
    assert (info.code, info.status) == ("upstream_unavailable", 502)
    assert "Bad Gateway" in info.message
    assert map_http_error(400, b'{"message": "bad"}', "gemini").info.code == "invalid_request"


def test_error_without_a_message_names_the_status() -> None:
    info = map_http_error(503, json.dumps({"error": {"code": 503, "status": "UNAVAILABLE"}}).encode(), "g").info
    assert info.message == "g: UNAVAILABLE"


def test_long_error_messages_are_cut() -> None:
    info = map_http_error(400, google_body(400, "x" * 2000, "INVALID_ARGUMENT"), "gemini").info
    assert len(info.message) < 600 and info.message.endswith("…")
