"""The Cohere v2 protocol: the SSE decoder driven message by message as ``Engine.stream`` drives it,
the ``/v2/chat`` request, the model list and the HTTP error mapping.

Expectations are worked out here from the recorded payloads with the stdlib ``json`` module, or read
off the files by hand; the request bodies are written out in the shape Cohere's v2 API reference gives.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
from decoding import Run, feed
from harness import FIXTURES, fixture_payloads

from sidecar.errors import SidecarError
from sidecar.protocols import get_protocol
from sidecar.protocols.cohere import (
    PROTOCOL,
    Decoder,
    encode_request,
    map_http_error,
    models_request,
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

COHERE = next(p for p in BUILTIN if p.id == "cohere")
COHERE_FIXTURES = sorted(p.name for p in (FIXTURES / "cohere").iterdir() if p.is_file())


# --- reading a recording as the engine sees it -----------------------------------------------------


def wire_messages(name: str, *, named: bool) -> list[tuple[str, str]]:
    """(event name, data) per SSE message. The recordings keep only the data; Cohere's wire also names
    each event after its ``type``, so both ways are fed."""
    payloads = fixture_payloads(f"cohere/{name}")
    return [(json.loads(p)["type"] if named else "", p) for p in payloads]


def run_messages(messages: list[tuple[str, str]], provider: str = "cohere") -> Run:
    return feed(Decoder(provider), messages)


def run_events(*objs: dict[str, Any] | str) -> Run:
    msgs = [("", o) if isinstance(o, str) else (o.get("type", ""), json.dumps(o)) for o in objs]
    return run_messages(msgs)


def run_fixture(name: str) -> Run:
    return run_messages(wire_messages(name, named=True))


# --- building Cohere events by hand -----------------------------------------------------------------

START = {"id": "c9117d7f", "type": "message-start",
         "delta": {"message": {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}}}


def content_start(index: int, kind: str = "text") -> dict[str, Any]:
    return {"type": "content-start", "index": index, "delta": {"message": {"content": {"type": kind, kind: ""}}}}


def content_delta(index: int, value: str, kind: str = "text") -> dict[str, Any]:
    return {"type": "content-delta", "index": index, "delta": {"message": {"content": {kind: value}}}}


def content_end(index: int) -> dict[str, Any]:
    return {"type": "content-end", "index": index}


def plan(text_: str) -> dict[str, Any]:
    return {"type": "tool-plan-delta", "delta": {"message": {"tool_plan": text_}}}


def call_start(index: int, id_: str, name: str, args: str = "") -> dict[str, Any]:
    return {"type": "tool-call-start", "index": index, "delta": {"message": {"tool_calls": {
        "id": id_, "type": "function", "function": {"name": name, "arguments": args}}}}}


def call_delta(index: int, args: str) -> dict[str, Any]:
    return {"type": "tool-call-delta", "index": index,
            "delta": {"message": {"tool_calls": {"function": {"arguments": args}}}}}


def call_end(index: int) -> dict[str, Any]:
    return {"type": "tool-call-end", "index": index}


def message_end(reason: str = "COMPLETE", usage: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    if usage is None:
        usage = {"billed_units": {"input_tokens": 12, "output_tokens": 7},
                 "tokens": {"input_tokens": 507, "output_tokens": 10}, "cached_tokens": 448}
    return {"type": "message-end", "delta": {"finish_reason": reason, "usage": usage, **extra}}


def text_stream(*parts: str, reason: str = "COMPLETE", **end: Any) -> list[dict[str, Any]]:
    return [START, content_start(0), *(content_delta(0, p) for p in parts), content_end(0),
            message_end(reason, **end)]


# --- what a recording says, worked out with json --------------------------------------------------


@dataclass
class Expected:
    text: str = ""
    reasoning: str = ""
    plan: str = ""
    calls: dict[int, dict[str, str]] = field(default_factory=dict)
    finish: str | None = None
    usage: dict[str, Any] | None = None


def expected_of(name: str) -> Expected:
    exp = Expected()
    for raw in fixture_payloads(f"cohere/{name}"):
        obj = json.loads(raw)
        kind, delta = obj["type"], obj.get("delta") or {}
        message = delta.get("message") or {}
        if kind == "content-delta":
            exp.text += message["content"].get("text", "")
            exp.reasoning += message["content"].get("thinking", "")
        elif kind == "tool-plan-delta":
            exp.plan += message["tool_plan"]
        elif kind == "tool-call-start":
            tc = message["tool_calls"]
            exp.calls[obj["index"]] = {"id": tc["id"], "name": tc["function"]["name"],
                                       "args": tc["function"]["arguments"]}
        elif kind == "tool-call-delta":
            exp.calls[obj["index"]]["args"] += message["tool_calls"]["function"]["arguments"]
        elif kind == "message-end":
            exp.finish, exp.usage = delta["finish_reason"], delta["usage"]
    return exp


FINISH = {"COMPLETE": "stop", "STOP_SEQUENCE": "stop", "MAX_TOKENS": "length", "TOOL_CALL": "tool_calls"}


def of(events: list[Event], kind: type) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def text(events: list[Event]) -> str:
    return "".join(e.text for e in of(events, TextDeltaEvent))


def reasoning(events: list[Event]) -> str:
    return "".join(e.text for e in of(events, ReasoningDeltaEvent))


def check_invariants(events: list[Event]) -> None:
    starts: list[ToolCallStartEvent] = of(events, ToolCallStartEvent)
    ids = [s.tool_call_id for s in starts]
    assert len(set(ids)) == len(ids)
    assert sorted(ids) == sorted(c.tool_call_id for c in of(events, ToolCallEvent)), "one tool_call per start"
    for s in starts:
        mine = [i for i, e in enumerate(events) if getattr(e, "tool_call_id", None) == s.tool_call_id]
        assert events[mine[0]] is s and isinstance(events[mine[-1]], ToolCallEvent)
        assert all(isinstance(events[i], ToolCallDeltaEvent) for i in mine[1:-1])
    open_ = False
    for e in events:
        if isinstance(e, ReasoningDeltaEvent):
            open_ = True
        elif isinstance(e, ReasoningEndEvent):
            assert open_
            open_ = False
        elif isinstance(e, TextDeltaEvent | ToolCallStartEvent):
            assert not open_, "reasoning_end comes before any other output"
    assert not open_


# --- every recording ----------------------------------------------------------------------------


def test_the_fixture_listing() -> None:
    assert len(COHERE_FIXTURES) >= 5
    assert {"text.chunks.txt", "tool-call.chunks.txt", "reasoning.chunks.txt"} <= set(COHERE_FIXTURES)


@pytest.mark.parametrize("named", [True, False], ids=["event-names", "data-only"])
@pytest.mark.parametrize("name", COHERE_FIXTURES)
def test_recorded_stream(name: str, named: bool) -> None:
    exp = expected_of(name)
    run = run_messages(wire_messages(name, named=named))
    assert run.error is None, run.error and run.error.info
    assert run.decoder.complete
    check_invariants(run.events)

    assert text(run.events) == exp.text
    # thinking and the tool plan both come out as reasoning, each block closed by one reasoning_end
    assert reasoning(run.events) == exp.reasoning + exp.plan
    assert len(of(run.events, ReasoningEndEvent)) == bool(exp.reasoning) + bool(exp.plan)

    got = [(c.tool_call_id, c.name, c.arguments) for c in of(run.events, ToolCallEvent)]
    want = [(c["id"], c["name"], json.loads(c["args"]) if c["args"] else {}) for _, c in sorted(exp.calls.items())]
    assert got == want
    assert all(c.arguments_raw is msgspec.UNSET for c in of(run.events, ToolCallEvent))
    assert [(s.tool_call_id, s.index) for s in of(run.events, ToolCallStartEvent)] == [
        (c["id"], i) for i, c in sorted(exp.calls.items())]
    for c in exp.calls.values():
        streamed = "".join(d.arguments_delta for d in of(run.events, ToolCallDeltaEvent) if d.tool_call_id == c["id"])
        assert streamed == c["args"]

    assert exp.finish is not None and exp.usage is not None
    assert run.decoder.finish_reason == FINISH[exp.finish]
    u = run.decoder.usage
    assert u is not None
    assert (u.input_tokens, u.output_tokens) == (exp.usage["tokens"]["input_tokens"],
                                                 exp.usage["tokens"]["output_tokens"])
    cached = exp.usage.get("cached_tokens")
    assert u.cached_input_tokens == (cached if cached else msgspec.UNSET)
    assert u.reasoning_tokens is msgspec.UNSET


# --- hand-checked values from the recordings ------------------------------------------------------


def test_text_literal() -> None:
    run = run_fixture("text.chunks.txt")
    assert text(run.events) == "The capital of France is Paris."
    assert [type(e) for e in run.events] == [TextDeltaEvent] * 7
    assert run.decoder.finish_reason == "stop"
    assert run.decoder.usage is not None
    assert (run.decoder.usage.input_tokens, run.decoder.usage.output_tokens) == (507, 10)
    assert run.decoder.usage.cached_input_tokens == 448


def test_reasoning_literal() -> None:
    run = run_fixture("reasoning.chunks.txt")
    assert reasoning(run.events) == (
        "The user is asking for the sum of 2 and 2. Since this is a straightforward arithmetic problem, "
        "I don't need to use any tools. I can calculate the answer directly.")
    assert text(run.events) == "The answer to 2 + 2 is 4."
    kinds = [type(e) for e in run.events]
    assert kinds.count(ReasoningEndEvent) == 1
    assert max(i for i, k in enumerate(kinds) if k is ReasoningDeltaEvent) < kinds.index(ReasoningEndEvent)
    assert kinds.index(ReasoningEndEvent) < kinds.index(TextDeltaEvent)
    assert run.decoder.usage is not None
    assert (run.decoder.usage.input_tokens, run.decoder.usage.output_tokens) == (1394, 54)
    assert run.decoder.usage.cached_input_tokens == 1360


def test_tool_call_literal() -> None:
    run = run_fixture("tool-call.chunks.txt")
    assert text(run.events) == ""
    assert reasoning(run.events) == ("I will use the weather tool to find the weather in San Francisco and the "
                                     "cityAttractions tool to find attractions in San Francisco.")
    assert [(c.tool_call_id, c.name, c.arguments) for c in of(run.events, ToolCallEvent)] == [
        ("weather_e8p4pn45zt0t", "weather", {"location": "San Francisco"}),
        ("cityAttractions_pyxssbwnq9fq", "cityAttractions", {"city": "San Francisco"}),
    ]
    kinds = [type(e) for e in run.events]
    assert kinds.index(ReasoningEndEvent) < kinds.index(ToolCallStartEvent)
    # the first call ends before the second starts
    first_end = kinds.index(ToolCallEvent)
    assert first_end < [i for i, k in enumerate(kinds) if k is ToolCallStartEvent][1]
    assert run.decoder.finish_reason == "tool_calls"
    assert run.decoder.usage is not None
    assert (run.decoder.usage.input_tokens, run.decoder.usage.output_tokens) == (1549, 95)
    assert run.decoder.usage.cached_input_tokens == 1504


def test_empty_tool_call_literal() -> None:
    run = run_fixture("empty-tool-call.chunks.txt")
    [start] = of(run.events, ToolCallStartEvent)
    assert (start.tool_call_id, start.name, start.index) == ("currentTime_y46ar19t5gvw", "currentTime", 0)
    assert of(run.events, ToolCallDeltaEvent) == []
    [call] = of(run.events, ToolCallEvent)
    assert (call.tool_call_id, call.arguments, call.arguments_raw) == ("currentTime_y46ar19t5gvw", {}, msgspec.UNSET)
    assert run.decoder.usage is not None
    assert (run.decoder.usage.input_tokens, run.decoder.usage.output_tokens) == (1445, 43)
    assert run.decoder.usage.cached_input_tokens == 704


def test_citations_literal() -> None:
    run = run_fixture("citations.chunks.txt")
    assert text(run.events) == "The key benefits are automation of tasks."
    assert all(isinstance(e, TextDeltaEvent) for e in run.events), "citation events carry nothing to relay"
    assert run.decoder.usage is not None
    assert (run.decoder.usage.input_tokens, run.decoder.usage.output_tokens) == (1683, 62)
    assert run.decoder.usage.cached_input_tokens is msgspec.UNSET


# --- hand-made streams ---------------------------------------------------------------------------


@pytest.mark.parametrize(("reason", "finish"), [
    ("COMPLETE", "stop"), ("STOP_SEQUENCE", "stop"), ("MAX_TOKENS", "length"), ("TOOL_CALL", "tool_calls"),
    ("ERROR_TOXIC", "content_filter"), ("ERROR_LIMIT", "length"), ("TIMEOUT", "other"),
])
def test_finish_reasons(reason: str, finish: str) -> None:
    run = run_events(*text_stream("Hi", reason=reason))
    assert run.error is None and run.decoder.complete
    assert run.decoder.finish_reason == finish
    assert text(run.events) == "Hi"


def test_finish_reason_error_is_an_error() -> None:
    run = run_events(*text_stream("Par", reason="ERROR", error="internal server error, please try again"))
    assert text(run.events) == "Par"
    assert run.error is not None and run.error_at == 4
    info = run.error.info
    assert info.code == "upstream_unavailable" and info.retryable is True
    assert info.message == "cohere: internal server error, please try again"
    assert info.provider == "cohere" and info.status is msgspec.UNSET


def test_finish_reason_error_without_a_message() -> None:
    run = run_events(*text_stream("x", reason="ERROR"))
    assert run.error is not None and run.error.info.code == "upstream_unavailable"
    assert run.error.info.message.startswith("cohere: ")


def test_usage_falls_back_to_billed_units() -> None:
    run = run_events(*text_stream("x", usage={"billed_units": {"input_tokens": 39, "output_tokens": 27.0}}))
    assert run.decoder.usage is not None
    assert (run.decoder.usage.input_tokens, run.decoder.usage.output_tokens) == (39, 27)
    assert run.decoder.usage.cached_input_tokens is msgspec.UNSET


def test_no_usage() -> None:
    run = run_events(START, content_start(0), content_delta(0, "x"), content_end(0),
                     {"type": "message-end", "delta": {"finish_reason": "COMPLETE"}})
    assert run.decoder.usage is None and run.decoder.finish_reason == "stop"


def test_thinking_plan_calls_text() -> None:
    run = run_events(
        START,
        content_start(0, "thinking"), content_delta(0, "Need the ", "thinking"),
        content_delta(0, "weather.", "thinking"), content_end(0),
        plan("I will call "), plan("weather."),
        call_start(0, "weather_1", "weather", '{"city":'), call_delta(0, ' "Oslo"}'), call_end(0),
        call_start(1, "time_2", "time"), call_end(1),
        message_end("TOOL_CALL", {"tokens": {"input_tokens": 5, "output_tokens": 6}}),
    )
    assert run.error is None
    check_invariants(run.events)
    assert [type(e).__name__ for e in run.events] == [
        "ReasoningDeltaEvent", "ReasoningDeltaEvent", "ReasoningEndEvent",
        "ReasoningDeltaEvent", "ReasoningDeltaEvent", "ReasoningEndEvent",
        "ToolCallStartEvent", "ToolCallDeltaEvent", "ToolCallDeltaEvent", "ToolCallEvent",
        "ToolCallStartEvent", "ToolCallEvent",
    ]
    assert [(c.tool_call_id, c.name, c.arguments) for c in of(run.events, ToolCallEvent)] == [
        ("weather_1", "weather", {"city": "Oslo"}), ("time_2", "time", {})]
    assert run.decoder.finish_reason == "tool_calls"
    assert run.decoder.usage is not None and (run.decoder.usage.input_tokens, run.decoder.usage.output_tokens) == (5, 6)


def test_null_and_malformed_arguments() -> None:
    run = run_events(START, call_start(0, "a", "f", "null"), call_end(0),
                     call_start(1, "b", "g", '{"x": '), call_end(1), message_end("TOOL_CALL"))
    a, b = of(run.events, ToolCallEvent)
    assert (a.arguments, a.arguments_raw) == ({}, msgspec.UNSET)
    assert (b.arguments, b.arguments_raw) == ({}, '{"x": ')


def test_call_without_an_end_is_finished_by_end() -> None:
    run = run_events(START, call_start(0, "a", "f", '{"q": 1}'), message_end("TOOL_CALL"))
    check_invariants(run.events)
    [call] = of(run.events, ToolCallEvent)
    assert (call.tool_call_id, call.arguments) == ("a", {"q": 1})


def test_call_without_an_id_gets_one() -> None:
    event = call_start(0, "x", "f")
    del event["delta"]["message"]["tool_calls"]["id"]
    run = run_events(START, event, call_end(0), message_end("TOOL_CALL"))
    [call] = of(run.events, ToolCallEvent)
    assert call.tool_call_id.startswith("call_") and call.name == "f"


def test_reasoning_open_at_the_end_is_closed() -> None:
    run = run_events(START, content_start(0, "thinking"), content_delta(0, "hmm", "thinking"),
                     message_end("MAX_TOKENS"))
    assert [type(e) for e in run.events] == [ReasoningDeltaEvent, ReasoningEndEvent]
    assert run.decoder.finish_reason == "length"


def test_stream_cut_before_message_end() -> None:
    run = run_events(START, content_start(0), content_delta(0, "par"))
    assert run.error is None
    assert not run.decoder.complete and run.decoder.finish_reason is None  # the engine: network_error
    assert text(run.events) == "par"


def test_unknown_events_are_ignored() -> None:
    run = run_events(START, {"type": "debug", "delta": {"x": 1}}, {"type": "future-event"},
                     *text_stream("ok")[1:])
    assert text(run.events) == "ok" and run.decoder.complete


def test_events_after_message_end_are_not_read() -> None:
    run = run_events(*text_stream("a"), content_delta(0, "b"))
    assert text(run.events) == "a"


@pytest.mark.parametrize(
    ("event", "data", "code"),
    [
        ("error", '{"message": "too many requests, slow down"}', "rate_limited"),
        ("", '{"message": "internal server error"}', "upstream_unavailable"),
        ("error", "stream broke", "upstream_unavailable"),
        ("", '{"type": "error", "message": "rate limit exceeded"}', "rate_limited"),
    ],
)
def test_error_in_the_stream(event: str, data: str, code: str) -> None:
    run = run_messages([("message-start", json.dumps(START)), ("content-start", json.dumps(content_start(0))),
                        ("content-delta", json.dumps(content_delta(0, "Hi"))), (event, data)])
    assert text(run.events) == "Hi"
    assert run.error is not None and run.error_at == 3
    assert run.error.info.code == code and run.error.info.provider == "cohere"


def test_unparseable_event_is_a_protocol_error() -> None:
    run = run_messages([("message-start", json.dumps(START)), ("content-delta", "{not json")])
    assert run.error is not None and run.error.info.code == "protocol_error"


# --- the request ------------------------------------------------------------------------------

HI = [{"role": "user", "content": "hi"}]
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def params(**fields: Any) -> StreamTextParams:
    fields.setdefault("messages", HI)
    return msgspec.convert(fields, StreamTextParams)


def body(provider: Provider = COHERE, model: str = "command-a-03-2025", **fields: Any) -> dict[str, Any]:
    req = encode_request(params(**fields), provider, model, "co-test")
    assert req.body is not None
    decoded: dict[str, Any] = json.loads(req.body)
    return decoded


def test_protocol_shape() -> None:
    assert get_protocol("cohere") is PROTOCOL
    assert (PROTOCOL.name, PROTOCOL.framing) == ("cohere", "sse")


def test_request_line_and_headers() -> None:
    req = encode_request(params(), COHERE, "command-a-03-2025", "co-key-123")
    assert (req.method, req.url) == ("POST", "https://api.cohere.com/v2/chat")
    assert req.headers["authorization"] == "Bearer co-key-123"
    assert req.headers["content-type"] == "application/json"
    assert req.headers["accept"] == "text/event-stream"


def test_custom_base_url_and_headers() -> None:
    provider = Provider(id="co", name="Co", protocol="cohere", base_url="https://cohere.internal",
                        headers={"X-Client-Name": "my-app"})
    req = encode_request(params(), provider, "command-r", "k")
    assert req.url == "https://cohere.internal/v2/chat"
    assert req.headers["X-Client-Name"] == "my-app"


def test_minimal_body() -> None:
    assert body() == {"model": "command-a-03-2025", "messages": [{"role": "user", "content": "hi"}],
                      "stream": True}


def test_system_and_user_messages() -> None:
    b = body(system="Be brief.", messages=[
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": [{"type": "text", "text": "and "}, {"type": "text", "text": "again"}]},
    ])
    assert b["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "and again"},
    ]


def test_user_images() -> None:
    b = body(messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is in these?"},
        {"type": "image", "media_type": "image/png", "data": PNG},
        {"type": "image", "media_type": "image/jpeg", "url": "https://img.example/cat.jpg"},
    ]}])
    assert b["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG}},
        {"type": "image_url", "image_url": {"url": "https://img.example/cat.jpg"}},
    ]}]


def test_bad_user_parts_are_refused() -> None:
    for part in ({"type": "image", "media_type": "image/png"},
                 {"type": "tool_call", "id": "c", "name": "f", "arguments": {}}):
        with pytest.raises(SidecarError) as err:
            body(messages=[{"role": "user", "content": [part]}])
        assert err.value.info.code == "invalid_request"


def test_assistant_tool_calls_plan_and_tool_results() -> None:
    b = body(messages=[
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": [
            {"type": "reasoning", "text": "I will use the weather tool."},
            {"type": "tool_call", "id": "weather_1", "name": "get_weather", "arguments": {"city": "Paris"}},
            {"type": "tool_call", "id": "weather_2", "name": "get_weather", "arguments": {"city": "Rome", "n": 2}},
        ]},
        {"role": "tool", "tool_call_id": "weather_1", "content": "18C, sunny"},
        {"role": "tool", "tool_call_id": "weather_2", "content": [{"type": "text", "text": "22C"}], "is_error": False},
    ])
    _, assistant, tool1, tool2 = b["messages"]
    assert assistant["role"] == "assistant"
    assert assistant["tool_plan"] == "I will use the weather tool."
    assert "content" not in assistant
    calls = assistant["tool_calls"]
    assert [(c["id"], c["type"], c["function"]["name"]) for c in calls] == [
        ("weather_1", "function", "get_weather"), ("weather_2", "function", "get_weather")]
    assert all(isinstance(c["function"]["arguments"], str) for c in calls), "arguments are a JSON string"
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [{"city": "Paris"}, {"city": "Rome", "n": 2}]
    assert tool1 == {"role": "tool", "tool_call_id": "weather_1", "content": "18C, sunny"}
    assert tool2 == {"role": "tool", "tool_call_id": "weather_2", "content": "22C"}


def test_assistant_text_next_to_calls() -> None:
    b = body(messages=[*HI, {"role": "assistant", "content": [
        {"type": "text", "text": "Checking."}, {"type": "tool_call", "id": "c", "name": "f", "arguments": {}}]}])
    assert b["messages"][1] == {"role": "assistant", "content": "Checking.", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}


def test_assistant_thinking_without_calls() -> None:
    b = body(messages=[*HI, {"role": "assistant", "content": [
        {"type": "reasoning", "text": "2+2"}, {"type": "text", "text": "4"}]}, {"role": "user", "content": "ok"}])
    assert b["messages"][1] == {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "2+2"}, {"type": "text", "text": "4"}]}
    b = body(messages=[*HI, {"role": "assistant", "content": "hello"}])
    assert b["messages"][1] == {"role": "assistant", "content": "hello"}


def test_tools() -> None:
    b = body(tools=[{"name": "get_weather", "description": "Weather for a city", "parameters": WEATHER},
                    {"name": "now", "parameters": {"type": "object", "properties": {}}}])
    assert b["tools"] == [
        {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                          "parameters": WEATHER}},
        {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}},
    ]
    assert "tool_choice" not in b
    assert "tools" not in body(tools=[])


@pytest.mark.parametrize(("choice", "sent"), [("auto", None), ("required", "REQUIRED"), ("none", "NONE")])
def test_tool_choice(choice: str, sent: str | None) -> None:
    b = body(tools=[{"name": "f", "parameters": {"type": "object"}}], tool_choice=choice)
    assert b.get("tool_choice") == sent


def test_tool_choice_by_name_keeps_only_that_tool() -> None:
    b = body(tools=[{"name": "a", "parameters": {"type": "object"}}, {"name": "b", "parameters": {"type": "object"}}],
             tool_choice={"name": "b"})
    assert b["tool_choice"] == "REQUIRED"
    assert [t["function"]["name"] for t in b["tools"]] == ["b"]


def test_sampling_parameters() -> None:
    b = body(temperature=0.3, top_p=0.9, max_tokens=256, stop=["END"], seed=7)
    assert {k: b[k] for k in ("temperature", "p", "max_tokens", "stop_sequences", "seed")} == {
        "temperature": 0.3, "p": 0.9, "max_tokens": 256, "stop_sequences": ["END"], "seed": 7}
    assert "top_p" not in b and "stop" not in b


def test_nothing_unset_is_sent() -> None:
    b = body()
    for key in ("temperature", "p", "max_tokens", "stop_sequences", "seed", "tools", "tool_choice",
                "response_format", "thinking"):
        assert key not in b


def test_response_format() -> None:
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}
    assert body(response_format={"type": "json_object"})["response_format"] == {"type": "json_object"}
    assert body(response_format={"type": "json_schema", "schema": schema, "name": "p"})["response_format"] == {
        "type": "json_object", "json_schema": schema}
    assert "response_format" not in body(response_format={"type": "text"})


@pytest.mark.parametrize(("reasoning", "thinking"), [
    ({"budget_tokens": 2048}, {"type": "enabled", "token_budget": 2048}),
    ({"effort": "high"}, {"type": "enabled"}),
    ({}, {"type": "enabled"}),
])
def test_thinking(reasoning: dict[str, Any], thinking: dict[str, Any]) -> None:
    assert body(reasoning=reasoning)["thinking"] == thinking


def test_extra_body_then_provider_options_merged_last() -> None:
    provider = Provider(id="co", name="Co", protocol="cohere", base_url="https://api.cohere.com",
                        extra_body={"safety_mode": "CONTEXTUAL", "k": 40, "temperature": 0.9})
    b = body(provider, temperature=0.2, reasoning={"budget_tokens": 100},
             provider_options={"k": 5, "thinking": {"type": "disabled", "token_budget": None}})
    assert b["safety_mode"] == "CONTEXTUAL"
    assert b["temperature"] == 0.9  # extra_body after the request's own fields
    assert b["k"] == 5  # provider_options last
    assert b["thinking"] == {"type": "disabled"}  # objects merge key by key; null deletes


# --- model list and HTTP errors ----------------------------------------------------------------------

MODELS = {"models": [
    {"name": "command-a-03-2025", "endpoints": ["chat"], "finetuned": False, "context_length": 256000,
     "tokenizer_url": "https://storage.googleapis.com/cohere-public/tokenizers/command-a-03-2025.json",
     "default_endpoints": [], "features": ["json_mode", "json_schema", "safety_modes", "strict_tools", "tools"]},
    {"name": "command-a-vision-07-2025", "endpoints": ["chat"], "context_length": 128000.0,
     "features": ["vision"]},
    {"name": "embed-v4.0", "endpoints": ["embed"], "context_length": 128000},
    {"name": "command-a-reasoning-08-2025", "context_length": 256000, "features": ["reasoning", "tools"]},
    {"endpoints": ["chat"]},
], "next_page_token": ""}


def test_models_request() -> None:
    req = models_request(COHERE, "co-probe")
    assert (req.method, req.body) == ("GET", None)
    assert req.url == "https://api.cohere.com/v1/models?endpoint=chat&page_size=1000"
    assert req.headers["authorization"] == "Bearer co-probe"


def test_parse_models() -> None:
    models = parse_models(json.dumps(MODELS).encode())
    assert [(m.id, m.context_window, m.tools, m.vision, m.reasoning) for m in models] == [
        ("command-a-03-2025", 256000, True, None, None),
        ("command-a-vision-07-2025", 128000, None, True, None),
        ("command-a-reasoning-08-2025", 256000, True, None, True),
    ]
    assert parse_models(b"{}") == [] and parse_models(b"nope") == []


@pytest.mark.parametrize(
    ("status", "message", "code", "retryable"),
    [
        (400, "invalid request: message must be at least 1 token long or tool results must be specified.",
         "invalid_request", False),
        (400, "too many tokens: total number of tokens in the prompt cannot exceed 4081 - received 4292.",
         "context_length_exceeded", False),
        (401, "invalid api token", "authentication_failed", False),
        (402, "Please add a payment method to continue", "permission_denied", False),
        (404, "model 'command-z' not found, make sure the correct model ID was used", "unknown_model", False),
        (429, "You are using a Trial key, which is limited to 10 API calls / minute.", "rate_limited", True),
        (499, "request cancelled", "upstream_unavailable", True),
        (500, "internal server error", "upstream_unavailable", True),
    ],
)
def test_map_http_error(status: int, message: str, code: str, retryable: bool) -> None:
    payload = json.dumps({"id": "8d3e7b1c", "message": message}).encode()
    info = map_http_error(status, payload, "cohere").info
    assert (info.code, info.retryable, info.status, info.provider) == (code, retryable, status, "cohere")
    assert info.message == f"cohere: {message}"


def test_map_http_error_non_json() -> None:
    info = map_http_error(503, b"upstream connect error", "cohere").info
    assert (info.code, info.message, info.status) == ("upstream_unavailable", "cohere: upstream connect error", 503)
