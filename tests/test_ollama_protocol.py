"""The Ollama native protocol: the NDJSON decoder driven line by line as ``Engine.stream`` drives it,
the ``/api/chat`` request, the model list and the HTTP error mapping.

Expectations are worked out here from the recorded lines with the stdlib ``json`` module, or read off
the files by hand; the request bodies are written out in the shape Ollama's API docs give.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
from decoding import Run, feed
from harness import FIXTURES

from sidecar.errors import SidecarError
from sidecar.protocols import get_protocol
from sidecar.protocols.ollama import (
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

OLLAMA = next(p for p in BUILTIN if p.id == "ollama")
HOSTED = Provider(id="ollama-cloud", name="Ollama Cloud", protocol="ollama", base_url="https://ollama.example",
                  headers={"x-team": "blue"})
OLLAMA_FIXTURES = sorted(p.name for p in (FIXTURES / "ollama").iterdir() if p.is_file())


# --- reading a recording as the engine sees it -----------------------------------------------------


def wire_lines(name: str) -> list[str]:
    """The non-blank lines the engine hands over; the single-object ``.json`` example is one line."""
    raw = (FIXTURES / "ollama" / name).read_text()
    if name.endswith(".json"):
        return [raw]  # pretty-printed in the docs; on the wire it is one compact line
    return [line for line in raw.splitlines() if line.strip()]


def run_lines(lines: list[str], provider: str = "ollama") -> Run:
    return feed(Decoder(provider), (("", line) for line in lines))


def run_objects(*objs: dict[str, Any]) -> Run:
    return run_lines([json.dumps(o) for o in objs])


def chunk(content: str = "", *, thinking: str | None = None, tool_calls: list[Any] | None = None,
          done: bool = False, **extra: Any) -> dict[str, Any]:
    """One /api/chat stream line as Ollama writes it."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking is not None:
        message["thinking"] = thinking
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    return {"model": "qwen3", "created_at": "2025-07-07T20:22:19.184789Z", "message": message, "done": done,
            **extra}


def final(reason: str | None = "stop", prompt: int | None = 26, completion: int | None = 282) -> dict[str, Any]:
    extra: dict[str, Any] = {"total_duration": 4883583458, "load_duration": 1334875}
    if reason is not None:
        extra["done_reason"] = reason
    if prompt is not None:
        extra["prompt_eval_count"] = prompt
    if completion is not None:
        extra["eval_count"] = completion
    return chunk(done=True, **extra)


# --- what a recording says, worked out with json --------------------------------------------------


@dataclass
class Expected:
    text: str = ""
    reasoning: str = ""
    calls: list[tuple[str, Any]] = field(default_factory=list)
    done: bool = False
    done_reason: str | None = None
    counts: tuple[int, int] | None = None
    error_at: int | None = None
    error: str | None = None


def expected_of(lines: list[str]) -> Expected:
    exp = Expected()
    for i, line in enumerate(lines):
        obj = json.loads(line)
        if "error" in obj:
            exp.error_at, exp.error = i, obj["error"]
            break
        msg = obj.get("message") or {}
        exp.text += msg.get("content") or obj.get("response") or ""
        exp.reasoning += msg.get("thinking") or obj.get("thinking") or ""
        exp.calls += [(tc["function"]["name"], tc["function"]["arguments"]) for tc in msg.get("tool_calls") or []]
        if obj.get("done"):
            exp.done, exp.done_reason = True, obj.get("done_reason")
            if "prompt_eval_count" in obj or "eval_count" in obj:
                exp.counts = (obj.get("prompt_eval_count", 0), obj.get("eval_count", 0))
            break
    return exp


def of(events: list[Event], kind: type) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def text(events: list[Event]) -> str:
    return "".join(e.text for e in of(events, TextDeltaEvent))


def reasoning(events: list[Event]) -> str:
    return "".join(e.text for e in of(events, ReasoningDeltaEvent))


def check_invariants(events: list[Event]) -> None:
    """Each call: start, its argument deltas, then exactly one tool_call; reasoning closed before output."""
    starts: list[ToolCallStartEvent] = of(events, ToolCallStartEvent)
    ids = [s.tool_call_id for s in starts]
    assert len(set(ids)) == len(ids), "tool call ids are distinct"
    assert [s.index for s in starts] == list(range(len(starts)))
    for s in starts:
        mine = [i for i, e in enumerate(events) if getattr(e, "tool_call_id", None) == s.tool_call_id]
        assert events[mine[0]] is s
        last = events[mine[-1]]
        assert isinstance(last, ToolCallEvent)
        assert last.name == s.name
        assert sum(isinstance(events[i], ToolCallEvent) for i in mine) == 1
    open_ = False
    for e in events:
        if isinstance(e, ReasoningDeltaEvent):
            open_ = True
        elif isinstance(e, ReasoningEndEvent):
            assert open_
            open_ = False
        elif isinstance(e, TextDeltaEvent | ToolCallStartEvent):
            assert not open_, "reasoning_end comes before any other output"


# --- every recording ----------------------------------------------------------------------------


def test_the_fixture_listing() -> None:
    assert OLLAMA_FIXTURES == [
        "chat-tool-call-chunk.json", "generate-midstream-error.ndjson", "generate-stream.ndjson",
    ]


@pytest.mark.parametrize("name", OLLAMA_FIXTURES)
def test_recorded_stream(name: str) -> None:
    lines = wire_lines(name)
    exp = expected_of(lines)
    run = run_lines(lines)

    if exp.error_at is not None:
        assert run.error is not None and run.error_at == exp.error_at
        assert exp.error is not None and exp.error in run.error.info.message
        assert run.error.info.provider == "ollama"
        assert run.error.info.code not in ("protocol_error", "internal")
    else:
        assert run.error is None
        assert run.decoder.complete is exp.done
        check_invariants(run.events)

    assert text(run.events) == exp.text
    assert reasoning(run.events) == exp.reasoning
    got = [(c.name, c.arguments) for c in of(run.events, ToolCallEvent)]
    assert got == exp.calls
    for s in of(run.events, ToolCallStartEvent):
        streamed = "".join(d.arguments_delta for d in of(run.events, ToolCallDeltaEvent)
                           if d.tool_call_id == s.tool_call_id)
        assert json.loads(streamed) == dict(exp.calls)[s.name]
    if exp.error_at is not None:
        return

    if not exp.done:
        assert run.decoder.finish_reason is None  # the engine reports a cut stream as network_error
    elif exp.calls and exp.done_reason in (None, "stop"):
        assert run.decoder.finish_reason == "tool_calls"
    else:
        assert run.decoder.finish_reason == {"stop": "stop", "length": "length", None: "stop"}.get(
            exp.done_reason, "other")
    if exp.counts is None:
        assert run.decoder.usage is None
    else:
        assert run.decoder.usage is not None
        assert (run.decoder.usage.input_tokens, run.decoder.usage.output_tokens) == exp.counts


# --- hand-checked values from the recordings ------------------------------------------------------


def test_tool_call_chunk_literal() -> None:
    run = run_lines(wire_lines("chat-tool-call-chunk.json"))
    start, delta, call = run.events
    assert isinstance(start, ToolCallStartEvent) and (start.name, start.index) == ("get_weather", 0)
    assert start.tool_call_id.startswith("call_") and len(start.tool_call_id) > len("call_")
    assert isinstance(delta, ToolCallDeltaEvent) and delta.tool_call_id == start.tool_call_id
    assert json.loads(delta.arguments_delta) == {"city": "Tokyo"}
    assert isinstance(call, ToolCallEvent)
    assert (call.tool_call_id, call.name, call.arguments) == (start.tool_call_id, "get_weather", {"city": "Tokyo"})
    assert call.arguments_raw is msgspec.UNSET
    assert not run.decoder.complete and run.decoder.usage is None


def test_generate_stream_literal() -> None:
    # /api/generate, not /api/chat: its text is in "response", which the decoder reads too
    run = run_lines(wire_lines("generate-stream.ndjson"))
    assert text(run.events) == "That's a fantastic question!"
    assert len(of(run.events, TextDeltaEvent)) == 7
    assert run.decoder.complete and run.decoder.finish_reason == "stop"
    assert run.decoder.usage is None  # this example carries no counts


def test_midstream_error_literal() -> None:
    run = run_lines(wire_lines("generate-midstream-error.ndjson"))
    assert text(run.events) == " Yes.Ican"
    assert run.error is not None and run.error_at == 4
    info = run.error.info
    assert info.code == "upstream_unavailable" and info.retryable is True
    assert info.message == "ollama: an error was encountered while running the model"
    assert info.status is msgspec.UNSET  # the HTTP status was 200 and stays out of it
    assert info.provider == "ollama"


# --- hand-made streams ---------------------------------------------------------------------------


def test_thinking_then_content_then_tool_calls_then_done() -> None:
    run = run_objects(
        chunk(thinking="The user wants "),
        chunk(thinking="the weather."),
        chunk("Let me "),
        chunk("check."),
        chunk(tool_calls=[{"function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}},
                          {"function": {"index": 1, "name": "get_time", "arguments": {}}}]),
        final("stop", prompt=12, completion=34),
    )
    assert run.error is None
    check_invariants(run.events)
    kinds = [type(e).__name__ for e in run.events]
    assert kinds == [
        "ReasoningDeltaEvent", "ReasoningDeltaEvent", "ReasoningEndEvent", "TextDeltaEvent", "TextDeltaEvent",
        "ToolCallStartEvent", "ToolCallDeltaEvent", "ToolCallEvent",
        "ToolCallStartEvent", "ToolCallDeltaEvent", "ToolCallEvent",
    ]
    assert reasoning(run.events) == "The user wants the weather."
    assert text(run.events) == "Let me check."
    calls = of(run.events, ToolCallEvent)
    assert [(c.name, c.arguments) for c in calls] == [("get_weather", {"city": "Paris", "days": 2}),
                                                      ("get_time", {})]
    assert [s.index for s in of(run.events, ToolCallStartEvent)] == [0, 1]
    assert calls[0].tool_call_id != calls[1].tool_call_id
    assert [json.loads(d.arguments_delta) for d in of(run.events, ToolCallDeltaEvent)] == [
        {"city": "Paris", "days": 2}, {}]
    assert run.decoder.complete
    assert run.decoder.finish_reason == "tool_calls"  # Ollama says "stop" after a tool call
    assert run.decoder.usage is not None
    assert (run.decoder.usage.input_tokens, run.decoder.usage.output_tokens) == (12, 34)
    assert run.decoder.usage.cached_input_tokens is msgspec.UNSET


def test_generated_ids_differ_between_streams() -> None:
    call = {"function": {"name": "f", "arguments": {}}}
    a = of(run_objects(chunk(tool_calls=[call]), final()).events, ToolCallEvent)[0].tool_call_id
    b = of(run_objects(chunk(tool_calls=[call]), final()).events, ToolCallEvent)[0].tool_call_id
    assert a != b, "ids stay unique across the turns of a conversation"


def test_server_tool_call_id_is_kept() -> None:
    run = run_objects(chunk(tool_calls=[{"id": "call_srv1", "function": {"name": "f", "arguments": {"a": 1}}}]),
                      final())
    [call] = of(run.events, ToolCallEvent)
    assert (call.tool_call_id, call.arguments) == ("call_srv1", {"a": 1})


def test_string_and_missing_arguments() -> None:
    run = run_objects(chunk(tool_calls=[{"function": {"name": "f", "arguments": '{"q": "x"}'}},
                                        {"function": {"name": "g"}},
                                        {"function": {"name": "h", "arguments": "not json"}},
                                        {"function": {"arguments": {}}}]),
                      final())
    check_invariants(run.events)
    calls = of(run.events, ToolCallEvent)
    assert [(c.name, c.arguments) for c in calls] == [("f", {"q": "x"}), ("g", {}), ("h", {})]
    assert calls[2].arguments_raw == "not json"
    assert len(of(run.events, ToolCallStartEvent)) == 3, "a call without a name is dropped"


@pytest.mark.parametrize(("reason", "finish"), [("stop", "stop"), ("length", "length"), (None, "stop"),
                                                ("load", "other"), ("unload", "other")])
def test_done_reason(reason: str | None, finish: str) -> None:
    run = run_objects(chunk("hi"), final(reason))
    assert run.decoder.complete and run.decoder.finish_reason == finish


def test_length_after_a_tool_call_stays_length() -> None:
    run = run_objects(chunk(tool_calls=[{"function": {"name": "f", "arguments": {}}}]), final("length"))
    assert run.decoder.finish_reason == "length"


def test_missing_counts() -> None:
    run = run_objects(chunk("hi"), final(prompt=None, completion=None))
    assert run.decoder.usage is None
    run = run_objects(chunk("hi"), final(prompt=None, completion=5))  # a cached prompt: no prompt count
    assert run.decoder.usage is not None
    assert (run.decoder.usage.input_tokens, run.decoder.usage.output_tokens) == (0, 5)


def test_reasoning_closed_at_the_end() -> None:
    run = run_objects(chunk(thinking="hmm"), final("length"))
    assert [type(e) for e in run.events] == [ReasoningDeltaEvent, ReasoningEndEvent]
    assert run.events[1] == ReasoningEndEvent()


def test_reasoning_closed_before_a_tool_call() -> None:
    run = run_objects(chunk(thinking="plan", tool_calls=[{"function": {"name": "f", "arguments": {}}}]), final())
    assert [type(e) for e in run.events] == [ReasoningDeltaEvent, ReasoningEndEvent, ToolCallStartEvent,
                                             ToolCallDeltaEvent, ToolCallEvent]


def test_lines_after_done_are_not_read() -> None:
    run = run_objects(chunk("a"), final(), chunk("b"))
    assert text(run.events) == "a"


@pytest.mark.parametrize(
    ("line", "code"),
    [
        ({"error": "model runner has unexpectedly stopped, this may be due to resource limitations"},
         "upstream_unavailable"),
        ({"error": "input length exceeds maximum context length"}, "context_length_exceeded"),
        ({"error": {"message": "rate limit exceeded", "type": "rate_limit"}}, "rate_limited"),
    ],
)
def test_error_line_mid_stream(line: dict[str, Any], code: str) -> None:
    run = run_lines([json.dumps(chunk("Hel")), json.dumps(chunk("lo")), json.dumps(line)])
    assert text(run.events) == "Hello"
    assert run.error is not None and run.error_at == 2
    assert run.error.info.code == code
    assert run.error.info.provider == "ollama"


def test_unparseable_line_is_a_protocol_error() -> None:
    run = run_lines([json.dumps(chunk("a")), "<html>oops</html>"])
    assert run.error is not None and run.error.info.code == "protocol_error"
    assert run.error_at == 1


def test_provider_id_in_errors() -> None:
    run = run_lines(['{"error": "boom"}'], provider="my-ollama")
    assert run.error is not None and run.error.info.message == "my-ollama: boom"


# --- the request ------------------------------------------------------------------------------

HI = [{"role": "user", "content": "hi"}]
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def params(**fields: Any) -> StreamTextParams:
    fields.setdefault("messages", HI)
    return msgspec.convert(fields, StreamTextParams)


def body(provider: Provider = OLLAMA, model: str = "llama3.2:3b", **fields: Any) -> dict[str, Any]:
    req = encode_request(params(**fields), provider, model, None)
    assert req.body is not None
    decoded: dict[str, Any] = json.loads(req.body)
    return decoded


def test_protocol_shape() -> None:
    assert get_protocol("ollama") is PROTOCOL
    assert (PROTOCOL.name, PROTOCOL.framing) == ("ollama", "ndjson")


def test_request_line_and_headers_without_a_key() -> None:
    req = encode_request(params(), OLLAMA, "llama3.2:3b", None)
    assert (req.method, req.url) == ("POST", "http://127.0.0.1:11434/api/chat")
    assert req.headers["content-type"] == "application/json"
    assert req.headers["accept"] == "application/x-ndjson"
    assert not any(k.lower() == "authorization" for k in req.headers)


def test_bearer_only_with_a_key_and_provider_headers() -> None:
    req = encode_request(params(), HOSTED, "gpt-oss:120b", "ok-key-123")
    assert req.url == "https://ollama.example/api/chat"
    assert req.headers["authorization"] == "Bearer ok-key-123"
    assert req.headers["x-team"] == "blue"


def test_minimal_body() -> None:
    assert body() == {"model": "llama3.2:3b", "messages": [{"role": "user", "content": "hi"}], "stream": True}


def test_system_and_history() -> None:
    b = body(system="Be brief.", messages=[
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "salut"},
        {"role": "user", "content": [{"type": "text", "text": "and "}, {"type": "text", "text": "again"}]},
    ])
    assert b["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "salut"},
        {"role": "user", "content": "and again"},
    ]


def test_images_as_a_base64_list() -> None:
    b = body(messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is in these?"},
        {"type": "image", "media_type": "image/png", "data": PNG},
        {"type": "image", "media_type": "image/png", "url": "data:image/png;base64," + PNG},
    ]}])
    assert b["messages"] == [{"role": "user", "content": "What is in these?", "images": [PNG, PNG]}]


def test_image_url_is_refused() -> None:
    with pytest.raises(SidecarError) as err:
        body(messages=[{"role": "user", "content": [
            {"type": "image", "media_type": "image/jpeg", "url": "https://img.example/cat.jpg"}]}])
    assert err.value.info.code == "invalid_request"


def test_user_tool_call_part_is_refused() -> None:
    with pytest.raises(SidecarError) as err:
        body(messages=[{"role": "user", "content": [{"type": "tool_call", "id": "c", "name": "f", "arguments": {}}]}])
    assert err.value.info.code == "invalid_request" and "tool_call" in err.value.info.message


def test_assistant_tool_calls_thinking_and_tool_results() -> None:
    b = body(messages=[
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": [
            {"type": "reasoning", "text": "two lookups"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}},
            {"type": "tool_call", "id": "call_2", "name": "get_time", "arguments": {"tz": "Europe/Rome", "n": 2}},
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C, sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "14:00"}]},
        {"role": "tool", "tool_call_id": "call_unknown", "content": "?"},
    ])
    _, assistant, tool1, tool2, tool3 = b["messages"]
    assert assistant == {
        "role": "assistant",
        "content": "Checking.",
        "thinking": "two lookups",
        "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
            {"function": {"name": "get_time", "arguments": {"tz": "Europe/Rome", "n": 2}}},
        ],
    }
    assert isinstance(assistant["tool_calls"][0]["function"]["arguments"], dict), "an object, not a string"
    assert tool1 == {"role": "tool", "content": "18C, sunny", "tool_name": "get_weather"}
    assert tool2 == {"role": "tool", "content": "14:00", "tool_name": "get_time"}
    assert tool3 == {"role": "tool", "content": "?"}


def test_tools_in_function_format() -> None:
    b = body(tools=[{"name": "get_weather", "description": "Weather for a city", "parameters": WEATHER},
                    {"name": "now", "parameters": {"type": "object", "properties": {}}}])
    assert b["tools"] == [
        {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                          "parameters": WEATHER}},
        {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}},
    ]
    assert "tool_choice" not in b


def test_tool_choice_none_sends_no_tools() -> None:
    assert "tools" not in body(tools=[{"name": "f", "parameters": {"type": "object"}}], tool_choice="none")
    assert "tools" in body(tools=[{"name": "f", "parameters": {"type": "object"}}], tool_choice="required")


def test_options() -> None:
    b = body(temperature=0.2, top_p=0.9, max_tokens=128, stop=["\n\n"], seed=42)
    assert b["options"] == {"temperature": 0.2, "top_p": 0.9, "num_predict": 128, "stop": ["\n\n"], "seed": 42}
    for key in ("temperature", "top_p", "max_tokens", "stop", "seed"):
        assert key not in b, "sampling settings go inside options"


def test_nothing_unset_is_sent() -> None:
    b = body()
    for key in ("options", "tools", "format", "think"):
        assert key not in b


def test_format() -> None:
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}
    assert body(response_format={"type": "json_object"})["format"] == "json"
    assert body(response_format={"type": "json_schema", "schema": schema})["format"] == schema
    assert body(response_format={"type": "json_schema"})["format"] == "json"
    assert "format" not in body(response_format={"type": "text"})


@pytest.mark.parametrize(("reasoning", "think"), [({}, True), ({"budget_tokens": 2048}, True),
                                                  ({"effort": "low"}, "low"), ({"effort": "high"}, "high")])
def test_think(reasoning: dict[str, Any], think: Any) -> None:
    assert body(reasoning=reasoning)["think"] == think


def test_extra_body_then_provider_options_merged_last() -> None:
    provider = Provider(id="oll", name="O", protocol="ollama", base_url="http://10.0.0.2:11434",
                        extra_body={"keep_alive": "10m", "options": {"num_ctx": 8192, "temperature": 0.9}})
    b = body(provider, temperature=0.5, max_tokens=64,
             provider_options={"keep_alive": -1, "options": {"top_k": 20}, "think": False})
    assert b["keep_alive"] == -1  # provider_options win
    assert b["think"] is False
    # options merge instead of replacing: extra_body over the params, provider_options over both
    assert b["options"] == {"temperature": 0.9, "num_predict": 64, "num_ctx": 8192, "top_k": 20}


# --- model list and HTTP errors ----------------------------------------------------------------------

TAGS = {"models": [
    {"name": "llama3.2:3b", "model": "llama3.2:3b", "modified_at": "2025-05-04T17:37:44.706015396-07:00",
     "size": 2019393189, "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
     "details": {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
                 "parameter_size": "3.2B", "quantization_level": "Q4_K_M"}},
    {"name": "deepseek-r1:latest", "model": "deepseek-r1:latest", "size": 4683075271},
    {"model": "only-model-field:1b"},
    {"details": {}},
]}


def test_models_request() -> None:
    req = models_request(OLLAMA, None)
    assert (req.method, req.url, req.body) == ("GET", "http://127.0.0.1:11434/api/tags", None)
    assert "authorization" not in req.headers
    assert models_request(HOSTED, "k-1").headers["authorization"] == "Bearer k-1"


def test_parse_models() -> None:
    models = parse_models(json.dumps(TAGS).encode())
    assert [m.id for m in models] == ["llama3.2:3b", "deepseek-r1:latest", "only-model-field:1b"]
    assert parse_models(b'{"models": []}') == []
    assert parse_models(b"Ollama is running") == []
    assert parse_models(b'{"models": null}') == []


@pytest.mark.parametrize(
    ("status", "payload", "code", "retryable"),
    [
        (404, {"error": "model 'llama9' not found"}, "unknown_model", False),
        (404, {"error": "model \"llama3\" not found, try pulling it first"}, "unknown_model", False),
        (400, {"error": "registry.ollama.ai/library/gemma:2b does not support tools"}, "invalid_request", False),
        (401, {"error": "unauthorized"}, "authentication_failed", False),
        (429, {"error": "you have reached your hourly usage limit"}, "rate_limited", True),
        (500, {"error": "llama runner process has terminated: exit status 2"}, "upstream_unavailable", True),
    ],
)
def test_map_http_error(status: int, payload: dict[str, Any], code: str, retryable: bool) -> None:
    info = map_http_error(status, json.dumps(payload).encode(), "ollama").info
    assert (info.code, info.retryable, info.status, info.provider) == (code, retryable, status, "ollama")
    assert info.message == f"ollama: {payload['error']}"


def test_map_http_error_non_json() -> None:
    info = map_http_error(502, b"Bad Gateway\n", "oll").info
    assert (info.code, info.message, info.status) == ("upstream_unavailable", "oll: Bad Gateway", 502)
