"""The Anthropic Messages protocol: the decoder over every recorded stream and hand-made events, the
request body field by field, and the HTTP error mapping.

Expectations are worked out here from the recorded payloads with the stdlib ``json`` module, or read
off the files by hand and written out, never with the code under test.
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
from sidecar.protocols.anthropic import (
    PROTOCOL,
    Decoder,
    encode_request,
    map_http_error,
    models_request,
    parse_models,
)
from sidecar.providers import Model, Provider
from sidecar.providers.catalog import BUILTIN
from sidecar.types import (
    Event,
    ReasoningDeltaEvent,
    ReasoningEndEvent,
    RedactedReasoningEvent,
    StreamTextParams,
    TextDeltaEvent,
    ToolCallDeltaEvent,
    ToolCallEvent,
    ToolCallStartEvent,
)

ANTHROPIC = next(p for p in BUILTIN if p.id == "anthropic")
FILES = sorted(p.name for p in (FIXTURES / "anthropic").iterdir() if p.is_file())
CLIENT_TOOL_BLOCKS = ("tool_use",)
FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
          "refusal": "content_filter"}


def test_every_recording_is_listed() -> None:
    assert len(FILES) >= 17
    assert {"text.chunks.txt", "thinking-signature.sse", "parallel-tool-use.chunks.txt",
            "redacted-thinking.sse", "midstream-api-error-excerpt.sse"} <= set(FILES)


def test_the_module_is_the_registered_protocol() -> None:
    assert get_protocol("anthropic") is PROTOCOL
    assert (PROTOCOL.name, PROTOCOL.framing) == ("anthropic", "sse")


# --- reading a recording as the engine sees it -----------------------------------------------


def wire_messages(name: str) -> list[tuple[str, str]]:
    """(event name, data) per SSE message, as httpx-sse hands them over."""
    path = FIXTURES / "anthropic" / name
    if name.endswith(".chunks.txt"):  # payloads only: the wire has `event: <type>` before each
        return [(json.loads(line)["type"], line) for line in fixture_payloads(f"anthropic/{name}")]
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
    assert [d for _, d in out] == fixture_payloads(f"anthropic/{name}")
    assert all(event == json.loads(data)["type"] for event, data in out), "event line = JSON type"
    return out


def run_messages(messages: list[tuple[str, str]], provider: str = "anthropic") -> Run:
    return feed(Decoder(provider), messages)


def run_events(*payloads: dict[str, Any] | str) -> Run:
    msgs = []
    for p in payloads:
        data = p if isinstance(p, str) else json.dumps(p)
        msgs.append((json.loads(data).get("type", "") if data.startswith("{") else "", data))
    return run_messages(msgs)


# --- what a recording says, worked out with json ----------------------------------------------


@dataclass
class Expected:
    text: str = ""
    reasoning: list[str] = field(default_factory=list)
    """per thinking block"""
    signatures: list[str] = field(default_factory=list)
    redacted: list[str] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    """client tool calls in block order: index, id, name, args (raw text)"""
    server_blocks: int = 0
    stop_reason: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    """the upstream's counts, message_start's overwritten by message_delta's"""
    done: bool = False
    error_at: int | None = None
    error: dict[str, Any] | None = None


def expected_of(messages: list[tuple[str, str]]) -> Expected:
    exp = Expected()
    blocks: dict[int, dict[str, Any]] = {}
    for i, (_, data) in enumerate(messages):
        obj = json.loads(data)
        kind = obj["type"]
        if kind == "error":
            exp.error_at, exp.error = i, obj["error"]
            break
        if kind == "message_start":
            exp.usage.update({k: v for k, v in obj["message"]["usage"].items() if isinstance(v, int)})
        elif kind == "content_block_start":
            b = obj["content_block"]
            blocks[obj["index"]] = {"type": b["type"], "args": "", "sig": b.get("signature", ""), "think": ""}
            if b["type"] == "text":
                exp.text += b["text"]
            elif b["type"] == "redacted_thinking":
                exp.redacted.append(b["data"])
            elif b["type"] == "tool_use":
                exp.calls.append({"index": obj["index"], "id": b["id"], "name": b["name"]})
            elif b["type"] not in ("thinking",):
                exp.server_blocks += 1
        elif kind == "content_block_delta":
            d, b = obj["delta"], blocks.setdefault(obj["index"], {"type": "?", "args": "", "sig": "", "think": ""})
            if d["type"] == "text_delta":
                exp.text += d["text"]
            elif d["type"] == "thinking_delta":
                b["think"] += d["thinking"]
            elif d["type"] == "signature_delta":
                b["sig"] = d["signature"]
            elif d["type"] == "input_json_delta":
                b["args"] += d["partial_json"]
        elif kind == "content_block_stop":
            b = blocks[obj["index"]]
            if b["type"] == "thinking":
                exp.reasoning.append(b["think"])
                exp.signatures.append(b["sig"])
            for call in exp.calls:
                if call["index"] == obj["index"]:
                    call["args"] = b["args"]
        elif kind == "message_delta":
            exp.stop_reason = obj["delta"].get("stop_reason") or exp.stop_reason
            exp.usage.update({k: v for k, v in (obj.get("usage") or {}).items() if isinstance(v, int)})
            details = (obj.get("usage") or {}).get("output_tokens_details") or {}
            if "thinking_tokens" in details:
                exp.usage["thinking_tokens"] = details["thinking_tokens"]
        elif kind == "message_stop":
            exp.done = True
            break
    return exp


def _n(value: Any) -> int:
    return 0 if value is msgspec.UNSET or value is None else int(value)


def of(events: list[Event], kind: type) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def text(events: list[Event]) -> str:
    return "".join(e.text for e in of(events, TextDeltaEvent))


def reasoning(events: list[Event]) -> str:
    return "".join(e.text for e in of(events, ReasoningDeltaEvent))


def check_invariants(events: list[Event], *, ended: bool = True) -> None:
    """Each tool call: start, its deltas, then exactly one tool_call; reasoning closed before other output."""
    starts = [(i, e) for i, e in enumerate(events) if isinstance(e, ToolCallStartEvent)]
    calls = [(i, e) for i, e in enumerate(events) if isinstance(e, ToolCallEvent)]
    ids = [s.tool_call_id for _, s in starts]
    assert len(set(ids)) == len(ids)
    if ended:
        assert sorted(ids) == sorted(c.tool_call_id for _, c in calls)
    for pos, s in starts:
        mine = [i for i, c in calls if c.tool_call_id == s.tool_call_id]
        end = mine[0] if mine else len(events)
        assert all(i > pos for i in mine) and len(mine) <= 1
        assert all(pos < i < end for i, d in enumerate(events)
                   if isinstance(d, ToolCallDeltaEvent) and d.tool_call_id == s.tool_call_id)
    open_ = False
    for e in events:
        if isinstance(e, ReasoningDeltaEvent):
            open_ = True
        elif isinstance(e, ReasoningEndEvent):
            open_ = False
        elif isinstance(e, TextDeltaEvent | ToolCallStartEvent | RedactedReasoningEvent):
            assert not open_, f"{type(e).__name__} before reasoning_end"
    assert not (ended and open_)


# --- every recording --------------------------------------------------------------------------


@pytest.mark.parametrize("name", FILES)
def test_recorded_stream(name: str) -> None:
    messages = wire_messages(name)
    exp = expected_of(messages)
    run = run_messages(messages)
    events = run.events
    check_invariants(events, ended=run.error is None)
    assert text(events) == exp.text

    if exp.error is not None:
        assert run.error is not None and run.error_at == exp.error_at
        assert exp.error["message"] in run.error.info.message
        assert run.error.info.code not in ("protocol_error", "internal")
        return
    assert run.error is None, run.error and run.error.info
    assert run.decoder.complete is exp.done

    # reasoning: one reasoning_end per thinking block, carrying that block's signature
    ends = of(events, ReasoningEndEvent)
    assert reasoning(events) == "".join(exp.reasoning)
    assert [_s(e.signature) for e in ends] == exp.signatures
    assert [e.data for e in of(events, RedactedReasoningEvent)] == exp.redacted

    # client tool calls only, at the block index, with parsed arguments; server tools give none
    starts = of(events, ToolCallStartEvent)
    assert [(s.tool_call_id, s.name, s.index) for s in starts] == [(c["id"], c["name"], c["index"]) for c in exp.calls]
    got = [(c.tool_call_id, c.name, c.arguments) for c in of(events, ToolCallEvent)]
    assert got == [(c["id"], c["name"], json.loads(c["args"]) if c["args"] else {}) for c in exp.calls]
    for c in exp.calls:
        frags = [d.arguments_delta for d in of(events, ToolCallDeltaEvent) if d.tool_call_id == c["id"]]
        assert "".join(frags) == c["args"]

    assert run.decoder.finish_reason == FINISH.get(exp.stop_reason or "", "other")

    u = run.decoder.usage
    assert u is not None
    cached, created = exp.usage.get("cache_read_input_tokens", 0), exp.usage.get("cache_creation_input_tokens", 0)
    assert u.input_tokens == exp.usage["input_tokens"] + cached + created
    assert u.output_tokens == exp.usage["output_tokens"]
    assert _n(u.cached_input_tokens) == cached
    assert _n(u.cache_creation_tokens) == created
    assert _n(u.reasoning_tokens) == exp.usage.get("thinking_tokens", 0)


def _s(value: Any) -> str:
    return "" if value is msgspec.UNSET else str(value)


# --- hand-read values from single recordings ----------------------------------------------------


def test_text_literal() -> None:
    run = run_messages(wire_messages("text.chunks.txt"))
    assert text(run.events) == ("Hello! I'm doing well, thank you for asking. How are you doing today? "
                                "Is there anything I can help you with?")
    assert run.decoder.finish_reason == "stop" and run.decoder.complete
    assert run.decoder.usage is not None
    assert (run.decoder.usage.input_tokens, run.decoder.usage.output_tokens) == (12, 30)


def test_parallel_tool_use_literal() -> None:
    run = run_messages(wire_messages("parallel-tool-use.chunks.txt"))
    assert [(s.tool_call_id, s.name, s.index) for s in of(run.events, ToolCallStartEvent)] == [
        ("toolu_01LtEf4h1QW7KCKLsYMuhTNB", "searchDocs", 0),
        ("toolu_016tfZE7otAFSBjhc67wu189", "searchDocs", 1),
        ("toolu_01XkU35z8BVWqqc9tijDuLrA", "searchDocs", 2),
    ]
    assert [c.arguments for c in of(run.events, ToolCallEvent)] == [
        {"query": "alpha"}, {"query": "beta"}, {"query": "gamma"},
    ]
    # each call is completed at its own block stop, before the next block starts
    kinds = [type(e).__name__ for e in run.events]
    assert kinds == ["ToolCallStartEvent", "ToolCallDeltaEvent", "ToolCallDeltaEvent", "ToolCallEvent"] * 3
    assert run.decoder.finish_reason == "tool_calls"
    assert run.decoder.usage is not None
    assert (run.decoder.usage.input_tokens, run.decoder.usage.output_tokens) == (798, 110)


def test_tool_use_event_lines_literal() -> None:
    run = run_messages(wire_messages("tool-use-event-lines.sse"))
    [call] = of(run.events, ToolCallEvent)
    assert (call.tool_call_id, call.name, call.arguments) == (
        "toolu_01TyLXoWW1gujar8anh7KHHN", "createIssue", {"title": "Reproduce issue 13057"})


def test_tool_without_arguments_is_an_empty_object() -> None:
    run = run_messages(wire_messages("tool-use-no-args.chunks.txt"))
    assert text(run.events) == "I'll update the issue list for you."
    [start] = of(run.events, ToolCallStartEvent)
    assert (start.tool_call_id, start.name, start.index) == ("toolu_01QE1WLsSVp5hy5Q3GmGTmjP", "updateIssueList", 1)
    [call] = of(run.events, ToolCallEvent)
    assert call.arguments == {} and call.arguments_raw is msgspec.UNSET
    assert of(run.events, ToolCallDeltaEvent) == [], "the one fragment is empty"


def test_thinking_signature_literal() -> None:
    run = run_messages(wire_messages("thinking-signature.sse"))
    assert reasoning(run.events) == (
        "This is a straightforward question about pedestrian safety. I should provide clear, helpful advice "
        "about how to safely cross a street. This is basic safety information that could help prevent accidents.")
    [end] = of(run.events, ReasoningEndEvent)
    assert isinstance(end.signature, str)
    assert end.signature.startswith("EvMCCkYICxgCKkCHP2cSuEdcJK/0rFwqES/ecn+Vur")
    assert end.signature.endswith("jfQYAQ==")
    assert text(run.events).startswith("Here are the basic steps for safely crossing the street:")
    assert run.decoder.usage is not None
    assert (run.decoder.usage.input_tokens, run.decoder.usage.output_tokens) == (43, 282)


def test_signature_only_thinking_block_still_ends_with_its_signature() -> None:
    run = run_messages(wire_messages("thinking-omitted-signature-only.chunks.txt"))
    assert of(run.events, ReasoningDeltaEvent) == []
    [end] = of(run.events, ReasoningEndEvent)
    assert isinstance(end.signature, str) and end.signature.startswith("EsECCokBCBAYAipA9i3HF1aHpQITkdN8")
    assert run.events.index(end) < run.events.index(of(run.events, TextDeltaEvent)[0])
    assert run.decoder.usage is not None and run.decoder.usage.reasoning_tokens == 62


def test_redacted_thinking_literal() -> None:
    run = run_messages(wire_messages("redacted-thinking.sse"))
    data = [e.data for e in of(run.events, RedactedReasoningEvent)]
    assert len(data) == 2
    assert data[0].startswith("EqkECkYIBxgCKkA8AZ4noDfV5VcOJe/p3JTRB6Xz5297") and data[1].startswith("EtgBCkYIBxgC")
    assert of(run.events, ReasoningEndEvent) == []
    assert text(run.events).startswith("I notice that you've sent what appears to be some kind of test string")


def test_cache_read_usage_literal() -> None:
    run = run_messages(wire_messages("cache-read-usage.chunks.txt"))
    u = run.decoder.usage
    assert u is not None
    # input_tokens 3 uncached + 18639 read from the cache: all the input, with the cached part beside it
    assert (u.input_tokens, u.cached_input_tokens, u.output_tokens) == (18642, 18639, 1)
    assert u.cache_creation_tokens is msgspec.UNSET
    assert run.decoder.finish_reason == "length"  # stop_reason max_tokens
    assert text(run.events) == "OK"


def test_message_delta_input_tokens_win() -> None:
    run = run_messages(wire_messages("message-delta-input-tokens.chunks.txt"))
    assert run.decoder.usage is not None
    assert (run.decoder.usage.input_tokens, run.decoder.usage.output_tokens) == (61, 2)
    assert text(run.events) == "pong"


def test_refusal_literal() -> None:
    run = run_messages(wire_messages("refusal-stop-details.chunks.txt"))
    assert run.events == []
    assert run.decoder.finish_reason == "content_filter"
    assert run.decoder.usage is not None and run.decoder.usage.output_tokens == 5


@pytest.mark.parametrize(
    ("name", "opening"),
    [
        ("web-search-citations.sse", "Let me search for more specific breaking news stories"),
        ("web-fetch.chunks.txt", "I'll fetch the content from that Wikipedia page"),
        ("code-execution-thinking.sse", "I'll calculate that expression for you right away!"),
        ("mcp-tool-use.sse", "**Pydantic-AI** is a framework"),
        ("compaction.sse", "Hello! "),
    ],
)
def test_server_side_blocks_give_text_only(name: str, opening: str) -> None:
    run = run_messages(wire_messages(name))
    assert run.error is None and run.decoder.complete
    assert text(run.events).startswith(opening)
    assert of(run.events, ToolCallStartEvent) == [] and of(run.events, ToolCallEvent) == []
    assert run.decoder.finish_reason == "stop"


def test_midstream_api_error_literal() -> None:
    run = run_messages(wire_messages("midstream-api-error-excerpt.sse"), provider="acme")
    assert text(run.events) == "d with a replacement character ("
    assert run.error is not None and run.error_at == 2
    info = run.error.info
    assert (info.code, info.retryable, info.provider) == ("upstream_unavailable", True, "acme")
    assert info.message == "acme: Internal server error"
    assert info.status is msgspec.UNSET, "the HTTP status was 200"


# --- hand-made streams ------------------------------------------------------------------------------


def start(input_tokens: int = 10, **usage: int) -> dict[str, Any]:
    return {"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": "claude-test",
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": 1, **usage}}}


def block(index: int, **content_block: Any) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": content_block}


def delta(index: int, **d: Any) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": d}


def stop(index: int) -> dict[str, Any]:
    return {"type": "content_block_stop", "index": index}


def message_delta(reason: str | None, output_tokens: int = 5, **usage: int) -> dict[str, Any]:
    return {"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": None},
            "usage": {"output_tokens": output_tokens, **usage}}


MESSAGE_STOP = {"type": "message_stop"}


@pytest.mark.parametrize(
    ("reason", "ours"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "other"),
        ("model_context_window_exceeded", "length"),
        ("something_new", "other"),
    ],
)
def test_stop_reason_mapping(reason: str, ours: str) -> None:
    run = run_events(start(), block(0, type="text", text=""), delta(0, type="text_delta", text="hi"), stop(0),
                     message_delta(reason), MESSAGE_STOP)
    assert run.decoder.finish_reason == ours
    assert run.decoder.complete


@pytest.mark.parametrize(
    ("error_type", "message", "code", "retryable"),
    [
        ("overloaded_error", "Overloaded", "upstream_unavailable", True),
        ("api_error", "Internal server error", "upstream_unavailable", True),
        ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit", "rate_limited", True),
        ("authentication_error", "invalid x-api-key", "authentication_failed", False),
        ("permission_error", "Your API key does not have permission to use the specified resource.",
         "permission_denied", False),
        ("billing_error", "Your credit balance is too low", "permission_denied", False),
        ("not_found_error", "The requested resource could not be found.", "not_found", False),
        ("invalid_request_error", "messages: text content blocks must be non-empty", "invalid_request", False),
        ("invalid_request_error", "prompt is too long: 208367 tokens > 200000 maximum", "context_length_exceeded",
         False),
        ("request_too_large", "Request exceeds the maximum allowed number of bytes.", "invalid_request", False),
        ("timeout_error", "Request timed out", "timeout", True),
    ],
)
def test_error_event_mid_stream(error_type: str, message: str, code: str, retryable: bool) -> None:
    error = {"type": "error", "error": {"type": error_type, "message": message}}
    run = run_events(start(), block(0, type="text", text=""), delta(0, type="text_delta", text="partial"), error,
                     stop(0), message_delta("end_turn"), MESSAGE_STOP)
    assert text(run.events) == "partial"
    assert run.error is not None and run.error_at == 3
    info = run.error.info
    assert (info.code, info.retryable, info.provider) == (code, retryable, "anthropic")
    assert info.message == f"anthropic: {message}"
    assert info.status is msgspec.UNSET


def test_error_event_with_padding_and_an_unparseable_body() -> None:
    padded = '{"type":"error","error":{"details":null,"type":"overloaded_error","message":"Overloaded"}      }'
    with pytest.raises(SidecarError) as err:
        Decoder("anthropic").feed("error", padded)
    assert err.value.info.code == "upstream_unavailable"
    with pytest.raises(SidecarError) as err:
        Decoder("anthropic").feed("error", "upstream exploded")
    assert (err.value.info.code, err.value.info.message) == ("upstream_unavailable", "anthropic: upstream exploded")


@pytest.mark.parametrize("data", ["not json", "{", "[1, 2]", '"text"', '{"type": "content_block_delta", "index": "x"}'])
def test_garbage_is_a_protocol_error(data: str) -> None:
    with pytest.raises(SidecarError) as err:
        Decoder("acme").feed("content_block_delta", data)
    assert err.value.info.code == "protocol_error"
    assert "acme" in err.value.info.message


@pytest.mark.parametrize("ping", ['{"type": "ping"}', '{"type":"ping"}', '{ "type" :  "ping" }     '])
def test_pings_and_unknown_events_say_nothing(ping: str) -> None:
    decoder = Decoder()
    assert decoder.feed("ping", ping) == []
    assert decoder.feed("future_event", '{"type": "future_event", "stuff": [1, 2]}') == []
    assert not decoder.complete and decoder.finish_reason is None


def test_padded_data_decodes() -> None:
    decoder = Decoder()
    decoder.feed("content_block_start", '{"type":"content_block_start","index":0,"content_block":{"type":"text",'
                                        '"text":""}          }')
    [ev] = decoder.feed("content_block_delta", '{"type":"content_block_delta","index":0,"delta":{"type":'
                                               '"text_delta","text":"x"}             }')
    assert isinstance(ev, TextDeltaEvent) and ev.text == "x"


def test_thinking_then_tool_call_with_streamed_arguments() -> None:
    run = run_events(
        start(),
        block(0, type="thinking", thinking="", signature=""),
        delta(0, type="thinking_delta", thinking="Use the "),
        delta(0, type="thinking_delta", thinking="tool."),
        delta(0, type="signature_delta", signature="sig-abc"),
        stop(0),
        block(1, type="tool_use", id="toolu_1", name="lookup", input={}),
        delta(1, type="input_json_delta", partial_json=""),
        delta(1, type="input_json_delta", partial_json='{"q": '),
        delta(1, type="input_json_delta", partial_json='"life"}'),
        stop(1),
        message_delta("tool_use", 42),
        MESSAGE_STOP,
    )
    check_invariants(run.events)
    assert [type(e).__name__ for e in run.events] == [
        "ReasoningDeltaEvent", "ReasoningDeltaEvent", "ReasoningEndEvent",
        "ToolCallStartEvent", "ToolCallDeltaEvent", "ToolCallDeltaEvent", "ToolCallEvent",
    ]
    assert of(run.events, ReasoningEndEvent)[0].signature == "sig-abc"
    assert of(run.events, ToolCallStartEvent)[0].index == 1
    [call] = of(run.events, ToolCallEvent)
    assert (call.tool_call_id, call.name, call.arguments) == ("toolu_1", "lookup", {"q": "life"})
    assert run.decoder.finish_reason == "tool_calls"


def test_two_thinking_blocks_each_keep_their_signature() -> None:
    run = run_events(
        start(),
        block(0, type="thinking", thinking="", signature=""), delta(0, type="thinking_delta", thinking="a"),
        delta(0, type="signature_delta", signature="s1"), stop(0),
        block(1, type="tool_use", id="t1", name="f", input={}), stop(1),
        block(2, type="thinking", thinking="", signature=""), delta(2, type="thinking_delta", thinking="b"),
        delta(2, type="signature_delta", signature="s2"), stop(2),
        block(3, type="text", text=""), delta(3, type="text_delta", text="ok"), stop(3),
        message_delta("end_turn"), MESSAGE_STOP,
    )
    check_invariants(run.events)
    assert [e.signature for e in of(run.events, ReasoningEndEvent)] == ["s1", "s2"]


def test_server_tool_use_gives_no_tool_call() -> None:
    run = run_events(
        start(),
        block(0, type="server_tool_use", id="srvtoolu_1", name="web_search", input={}),
        delta(0, type="input_json_delta", partial_json='{"query": "x"}'), stop(0),
        block(1, type="web_search_tool_result", tool_use_id="srvtoolu_1", content=[{"type": "web_search_result"}]),
        stop(1),
        block(2, type="text", text="", citations=[]),
        delta(2, type="citations_delta", citation={"type": "web_search_result_location", "cited_text": "c"}),
        delta(2, type="text_delta", text="Found it."), stop(2),
        block(3, type="mcp_tool_use", id="mcptoolu_1", name="ask", server_name="wiki", input={}),
        delta(3, type="input_json_delta", partial_json="{}"), stop(3),
        block(4, type="some_future_block", payload={"x": 1}), delta(4, type="future_delta", x=1), stop(4),
        message_delta("end_turn"), MESSAGE_STOP,
    )
    assert [type(e) for e in run.events] == [TextDeltaEvent]
    assert text(run.events) == "Found it."
    assert run.decoder.finish_reason == "stop"


def test_whole_input_in_the_block_start_is_used() -> None:
    # a compatible server that sends the input at once, with no input_json_delta
    run = run_events(start(), block(0, type="tool_use", id="t1", name="f", input={"a": 1}), stop(0),
                     message_delta("tool_use"), MESSAGE_STOP)
    [call] = of(run.events, ToolCallEvent)
    assert call.arguments == {"a": 1}


def test_invalid_arguments_are_kept_raw() -> None:
    run = run_events(start(), block(0, type="tool_use", id="t1", name="f", input={}),
                     delta(0, type="input_json_delta", partial_json='{"a": '), stop(0), message_delta("tool_use"),
                     MESSAGE_STOP)
    [call] = of(run.events, ToolCallEvent)
    assert (call.arguments, call.arguments_raw) == ({}, '{"a": ')


def test_blocks_left_open_are_closed_by_end() -> None:
    # message_delta came but no block stops and no message_stop: the engine still calls end()
    run = run_events(start(), block(0, type="thinking", thinking="", signature=""),
                     delta(0, type="thinking_delta", thinking="hm"), delta(0, type="signature_delta", signature="s"),
                     block(1, type="tool_use", id="t1", name="f", input={}),
                     delta(1, type="input_json_delta", partial_json='{"x": 2}'), message_delta("tool_use"))
    assert not run.decoder.complete
    check_invariants(run.events)
    assert of(run.events, ReasoningEndEvent)[0].signature == "s"
    assert of(run.events, ToolCallEvent)[0].arguments == {"x": 2}


def test_a_cut_stream_has_no_finish_reason() -> None:
    run = run_events(start(), block(0, type="text", text=""), delta(0, type="text_delta", text="cut"))
    assert run.decoder.finish_reason is None and not run.decoder.complete
    assert text(run.events) == "cut"


def test_nothing_after_message_stop_is_read() -> None:
    run = run_events(start(), message_delta("end_turn"), MESSAGE_STOP,
                     block(0, type="text", text=""), delta(0, type="text_delta", text="late"))
    assert run.events == [] and run.decoder.complete


def test_usage_cache_creation_and_read() -> None:
    run = run_events(start(7, cache_creation_input_tokens=100, cache_read_input_tokens=50),
                     message_delta("end_turn", 9), MESSAGE_STOP)
    u = run.decoder.usage
    assert u is not None
    assert (u.input_tokens, u.output_tokens, u.cached_input_tokens, u.cache_creation_tokens) == (157, 9, 50, 100)


def test_usage_without_message_delta_keeps_message_start() -> None:
    run = run_events(start(12), MESSAGE_STOP)
    assert run.decoder.usage is not None
    assert (run.decoder.usage.input_tokens, run.decoder.usage.output_tokens) == (12, 1)


# --- the request ------------------------------------------------------------------------------------

HI = [{"role": "user", "content": "hi"}]
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()
CUSTOM = Provider(id="anth", name="A", protocol="anthropic", base_url="http://127.0.0.1:9")


def params(**fields: Any) -> StreamTextParams:
    fields.setdefault("messages", HI)
    return msgspec.convert(fields, StreamTextParams)


def body(provider: Provider = ANTHROPIC, model: str = "claude-sonnet-4-5", **fields: Any) -> dict[str, Any]:
    req = encode_request(params(**fields), provider, model, "sk-ant-test")
    assert req.body is not None
    decoded: dict[str, Any] = json.loads(req.body)
    return decoded


def test_request_line_and_headers() -> None:
    req = encode_request(params(), ANTHROPIC, "claude-sonnet-4-5", "sk-ant-123")
    assert (req.method, req.url) == ("POST", "https://api.anthropic.com/v1/messages")
    assert req.headers["x-api-key"] == "sk-ant-123"
    assert req.headers["anthropic-version"] == "2023-06-01"
    assert req.headers["content-type"] == "application/json"
    assert req.headers["accept"] == "text/event-stream"
    assert not any(k.lower() == "authorization" for k in req.headers)


def test_no_key_no_key_header_and_provider_headers_kept() -> None:
    p = Provider(id="gw", name="GW", protocol="anthropic", base_url="https://gw.example/anthropic/",
                 headers={"anthropic-beta": "interleaved-thinking-2025-05-14"})
    req = encode_request(params(), p, "m", None)
    assert req.url == "https://gw.example/anthropic/v1/messages"
    assert "x-api-key" not in req.headers
    assert req.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"


def test_base_url_already_ending_in_v1_is_not_doubled() -> None:
    p = Provider(id="gw", name="GW", protocol="anthropic", base_url="https://gw.example/v1")
    assert encode_request(params(), p, "m", "k").url == "https://gw.example/v1/messages"


def test_minimal_body() -> None:
    assert body() == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 16384,  # the catalog's 64000, capped
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
    }


def test_max_tokens_defaults() -> None:
    assert body(CUSTOM, "claude-unknown")["max_tokens"] == 8192
    small = Provider(id="s", name="S", protocol="anthropic", base_url="https://x",
                     models=(Model("tiny", max_output_tokens=4096),))
    assert body(small, "tiny")["max_tokens"] == 4096
    assert body(max_tokens=300)["max_tokens"] == 300


def test_thinking_from_budget_and_effort() -> None:
    b = body(reasoning={"budget_tokens": 10000})
    assert b["thinking"] == {"type": "enabled", "budget_tokens": 10000}
    assert b["max_tokens"] == 10000 + 16384 and b["max_tokens"] > 10000
    for effort, budget in (("low", 2048), ("medium", 8192), ("high", 16384)):
        b = body(reasoning={"effort": effort})
        assert b["thinking"] == {"type": "enabled", "budget_tokens": budget}
        assert b["max_tokens"] > budget
    assert body(reasoning={})["thinking"]["budget_tokens"] == 8192


def test_default_max_tokens_stays_within_the_model_limit_but_above_the_budget() -> None:
    # claude-opus-4-1 has 32000 output tokens in the catalog
    assert body(model="claude-opus-4-1", reasoning={"budget_tokens": 20000})["max_tokens"] == 32000
    b = body(model="claude-opus-4-1", reasoning={"budget_tokens": 40000})
    assert b["max_tokens"] == 40001, "a budget over the limit still gets max_tokens above it; the API decides"
    assert body(CUSTOM, "x", reasoning={"budget_tokens": 2000})["max_tokens"] == 2000 + 8192


def test_given_max_tokens_caps_an_effort_budget() -> None:
    b = body(max_tokens=4000, reasoning={"effort": "high"})
    assert (b["max_tokens"], b["thinking"]["budget_tokens"]) == (4000, 3999)


@pytest.mark.parametrize("fields", [
    {"max_tokens": 5000, "reasoning": {"budget_tokens": 5000}},
    {"max_tokens": 1000, "reasoning": {"effort": "low"}},
])
def test_max_tokens_that_leaves_no_room_for_thinking(fields: dict[str, Any]) -> None:
    with pytest.raises(SidecarError) as err:
        body(**fields)
    assert err.value.info.code == "invalid_request"
    assert "thinking budget" in err.value.info.message


def test_system_param_and_system_messages_go_top_level() -> None:
    b = body(system="Be brief.", messages=[
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "hi"},
        {"role": "system", "content": "Never use emoji."},
    ])
    assert b["system"] == "Be brief.\n\nAnswer in French.\n\nNever use emoji."
    assert b["messages"] == [{"role": "user", "content": "hi"}]
    assert "system" not in body()


def test_images() -> None:
    b = body(messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is in these?"},
        {"type": "image", "media_type": "image/png", "data": PNG},
        {"type": "image", "media_type": "image/jpeg", "url": "https://example.com/cat.jpg"},
        {"type": "image", "media_type": "image/png", "url": f"data:image/webp;base64,{PNG}"},
        {"type": "image", "media_type": "application/pdf", "data": "JVBERi0="},
    ]}])
    assert b["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "What is in these?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/webp", "data": PNG}},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}},
    ]}]


def test_image_without_data_or_url() -> None:
    with pytest.raises(SidecarError) as err:
        body(messages=[{"role": "user", "content": [{"type": "image", "media_type": "image/png"}]}])
    assert err.value.info.code == "invalid_request"


def test_tool_round_trip() -> None:
    b = body(
        tools=[
            {"name": "get_weather", "description": "Weather for a city",
             "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
            {"name": "now", "parameters": {"type": "object", "properties": {}}},
        ],
        tool_choice="auto",
        messages=[
            {"role": "user", "content": "Weather in Paris and the time?"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_call", "id": "toolu_a", "name": "get_weather", "arguments": {"city": "Paris"}},
                {"type": "tool_call", "id": "toolu_b", "name": "now", "arguments": {}},
            ]},
            {"role": "tool", "tool_call_id": "toolu_a", "content": "18°C, cloudy"},
            {"role": "tool", "tool_call_id": "toolu_b", "content": "clock broken", "is_error": True},
            {"role": "user", "content": "Thanks. Also a picture?"},
        ],
    )
    assert b["tools"] == [
        {"name": "get_weather", "description": "Weather for a city",
         "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert b["tool_choice"] == {"type": "auto"}
    assert b["messages"] == [
        {"role": "user", "content": "Weather in Paris and the time?"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_b", "name": "now", "input": {}},
        ]},
        {"role": "user", "content": [  # both results, then the user's words, in one user turn
            {"type": "tool_result", "tool_use_id": "toolu_a", "content": "18°C, cloudy"},
            {"type": "tool_result", "tool_use_id": "toolu_b", "content": "clock broken", "is_error": True},
            {"type": "text", "text": "Thanks. Also a picture?"},
        ]},
    ]


def test_tool_result_with_parts_and_empty_result() -> None:
    b = body(messages=[
        {"role": "user", "content": "draw"},
        {"role": "assistant", "content": [{"type": "tool_call", "id": "t1", "name": "draw", "arguments": {}}]},
        {"role": "tool", "tool_call_id": "t1", "content": [
            {"type": "text", "text": "here"}, {"type": "image", "media_type": "image/png", "data": PNG}]},
        {"role": "assistant", "content": [{"type": "tool_call", "id": "t2", "name": "noop", "arguments": {}}]},
        {"role": "tool", "tool_call_id": "t2", "content": "", "is_error": False},
    ])
    assert b["messages"][2] == {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [
        {"type": "text", "text": "here"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
    ]}]}
    assert b["messages"][4] == {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t2"}]}


@pytest.mark.parametrize(("choice", "wire"), [
    ("auto", {"type": "auto"}),
    ("none", {"type": "none"}),
    ("required", {"type": "any"}),
    ({"name": "get_weather"}, {"type": "tool", "name": "get_weather"}),
])
def test_tool_choice(choice: Any, wire: dict[str, Any]) -> None:
    tools = [{"name": "get_weather", "parameters": {"type": "object"}}]
    assert body(tools=tools, tool_choice=choice)["tool_choice"] == wire


def test_tool_choice_without_tools_is_not_sent() -> None:
    assert "tool_choice" not in body(tool_choice="required")


def test_reasoning_parts_go_back_unchanged() -> None:
    b = body(messages=[
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": [
            {"type": "reasoning", "text": "Let me think.", "signature": "EvMCCkYICxgCKkCH=="},
            {"type": "reasoning", "text": "", "signature": "EsECCokBCBAYAipA=="},
            {"type": "redacted_reasoning", "data": "EqkECkYIBxgCKkA8"},
            {"type": "reasoning", "text": "no signature: another provider's"},
            {"type": "reasoning", "text": "an OpenAI Responses item",
             "signature": '{"type":"reasoning","id":"rs_1","summary":[],"encrypted_content":"gAAAAB"}'},
            {"type": "text", "text": "Answer."},
            {"type": "tool_call", "id": "t1", "name": "f", "arguments": {"a": [1, {"b": None}]}},
        ]},
        {"role": "tool", "tool_call_id": "t1", "content": "ok"},
    ])
    assert b["messages"][1] == {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "Let me think.", "signature": "EvMCCkYICxgCKkCH=="},
        {"type": "thinking", "thinking": "", "signature": "EsECCokBCBAYAipA=="},
        {"type": "redacted_thinking", "data": "EqkECkYIBxgCKkA8"},
        {"type": "text", "text": "Answer."},
        {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": [1, {"b": None}]}},
    ]}


def test_assistant_text_string_and_empty_parts() -> None:
    b = body(messages=[
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "assistant", "content": [{"type": "text", "text": ""}]},  # nothing to send: left out
        {"role": "user", "content": [{"type": "text", "text": "c"}]},
    ])
    assert b["messages"] == [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ]


@pytest.mark.parametrize(("role", "part"), [
    ("user", {"type": "tool_call", "id": "x", "name": "f", "arguments": {}}),
    ("user", {"type": "reasoning", "text": "t", "signature": "s"}),
    ("assistant", {"type": "image", "media_type": "image/png", "data": "AA=="}),
])
def test_parts_a_role_cannot_hold(role: str, part: dict[str, Any]) -> None:
    with pytest.raises(SidecarError) as err:
        body(messages=[{"role": "user", "content": "x"}, {"role": role, "content": [part]}])
    assert err.value.info.code == "invalid_request"


def test_sampling_options() -> None:
    b = body(temperature=0.2, top_p=0.9, stop=["END", "###"], seed=7,
             response_format={"type": "json_object"})
    assert (b["temperature"], b["top_p"], b["stop_sequences"]) == (0.2, 0.9, ["END", "###"])
    assert "seed" not in b and "stop" not in b and "response_format" not in b


def test_cache_breakpoints() -> None:
    b = body(
        cache=True, system="You are a librarian.",
        tools=[{"name": "a", "parameters": {"type": "object"}}, {"name": "b", "parameters": {"type": "object"}}],
        messages=[
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "reply"},
            {"role": "user", "content": [{"type": "text", "text": "second"},
                                         {"type": "image", "media_type": "image/png", "data": PNG}]},
        ],
    )
    eph = {"type": "ephemeral"}
    assert b["system"] == [{"type": "text", "text": "You are a librarian.", "cache_control": eph}]
    assert "cache_control" not in b["tools"][0] and b["tools"][1]["cache_control"] == eph
    assert b["messages"][0] == {"role": "user", "content": "first"}
    assert "cache_control" not in b["messages"][2]["content"][0]
    assert b["messages"][2]["content"][1]["cache_control"] == eph
    assert json.dumps(b).count('"cache_control"') == 3, "Anthropic allows at most 4 breakpoints"


def test_cache_breakpoint_on_a_plain_last_user_message_and_a_tool_result() -> None:
    b = body(cache=True)
    assert b["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}]
    b = body(cache=True, messages=[
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": [{"type": "tool_call", "id": "t", "name": "f", "arguments": {}}]},
        {"role": "tool", "tool_call_id": "t", "content": "r"},
    ])
    assert b["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "t", "content": "r", "cache_control": {"type": "ephemeral"}}]
    assert "system" not in b and "tools" not in b
    assert "cache_control" not in json.dumps(body(cache=False, system="s"))


def test_extra_body_then_provider_options_win() -> None:
    p = Provider(id="gw", name="GW", protocol="anthropic", base_url="https://gw.example",
                 extra_body={"metadata": {"user_id": "u1"}, "top_k": 5})
    b = body(p, "m", provider_options={"top_k": 10, "stream": True, "service_tier": "auto"})
    assert (b["metadata"], b["top_k"], b["service_tier"]) == ({"user_id": "u1"}, 10, "auto")


# --- models and errors ---------------------------------------------------------------------------


def test_models_request_and_parse() -> None:
    req = models_request(ANTHROPIC, "sk-ant-probe")
    assert req.method == "GET"
    assert req.url.split("?")[0] == "https://api.anthropic.com/v1/models"
    assert req.headers["x-api-key"] == "sk-ant-probe" and req.headers["anthropic-version"] == "2023-06-01"
    assert req.body is None
    answer = {"data": [
        {"type": "model", "id": "claude-sonnet-4-5-20250929", "display_name": "Claude Sonnet 4.5",
         "created_at": "2025-09-29T00:00:00Z"},
        {"type": "model", "id": "claude-haiku-4-5"},
        {"type": "model", "display_name": "no id"},
        "junk",
    ], "has_more": False, "first_id": "claude-sonnet-4-5-20250929", "last_id": "claude-haiku-4-5"}
    assert parse_models(json.dumps(answer).encode()) == [
        Model("claude-sonnet-4-5-20250929", name="Claude Sonnet 4.5"), Model("claude-haiku-4-5")]
    assert parse_models(b"not json") == [] and parse_models(b"[1]") == [] and parse_models(b'{"data": 3}') == []


def anthropic_error(error_type: str, message: str) -> bytes:
    return json.dumps({"type": "error", "error": {"type": error_type, "message": message},
                       "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"}).encode()


@pytest.mark.parametrize(
    ("status", "error_type", "message", "code", "retryable"),
    [
        (529, "overloaded_error", "Overloaded", "upstream_unavailable", True),
        (500, "api_error", "Internal server error", "upstream_unavailable", True),
        (429, "rate_limit_error", "This request would exceed your rate limit", "rate_limited", True),
        (401, "authentication_error", "invalid x-api-key", "authentication_failed", False),
        (403, "permission_error", "not allowed", "permission_denied", False),
        (404, "not_found_error", "model: claude-nope", "unknown_model", False),
        (400, "invalid_request_error", "prompt is too long: 208367 tokens > 200000 maximum",
         "context_length_exceeded", False),
        (400, "invalid_request_error",
         "input length and `max_tokens` exceed context limit: 197626 + 8192 > 200000, decrease input length "
         "or `max_tokens` and try again", "context_length_exceeded", False),
        (400, "invalid_request_error", "max_tokens: Field required", "invalid_request", False),
        (413, "request_too_large", "Request exceeds the maximum allowed number of bytes.", "invalid_request", False),
    ],
)
def test_map_http_error(status: int, error_type: str, message: str, code: str, retryable: bool) -> None:
    info = map_http_error(status, anthropic_error(error_type, message), "anthropic").info
    assert (info.code, info.status, info.retryable, info.provider) == (code, status, retryable, "anthropic")
    assert info.message == f"anthropic: {message}"


def test_map_http_error_without_json() -> None:
    info = map_http_error(529, b"<html>overloaded</html>", "anthropic").info
    assert (info.code, info.status) == ("upstream_unavailable", 529)
    assert map_http_error(502, b"", "anthropic").info.message == "anthropic: HTTP 502"
