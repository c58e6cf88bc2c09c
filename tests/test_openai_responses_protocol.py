"""The ``openai-responses`` protocol's encoder and decoder, pure, over every recorded Responses stream.

Decoder expectations are read off the recordings by hand (literals here) or worked out from their payloads with
the stdlib ``json`` module, never with the code under test. Streams no recording has (parallel calls, a refusal,
``response.incomplete``, ``response.failed`` alone, an ``error`` with its fields at the top) are written out by hand
below, in the event shapes of the recordings, and marked as such.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from decoding import Run, feed
from harness import FIXTURES, fixture_payloads

from sidecar.errors import SidecarError
from sidecar.protocols import get_protocol
from sidecar.protocols.openai_responses import Decoder, encode_body, encode_request
from sidecar.providers.model import Model, Provider
from sidecar.types import (
    AssistantMessage,
    Event,
    ImagePart,
    ReasoningDeltaEvent,
    ReasoningEndEvent,
    ReasoningOptions,
    ReasoningPart,
    RedactedReasoningPart,
    ResponseFormat,
    StreamTextParams,
    SystemMessage,
    TextDeltaEvent,
    TextPart,
    ToolCallDeltaEvent,
    ToolCallEvent,
    ToolCallPart,
    ToolCallStartEvent,
    ToolChoiceName,
    ToolDefinition,
    ToolMessage,
    UserMessage,
)

RESPONSES_FIXTURES = sorted(f"openai-responses/{p.name}" for p in (FIXTURES / "openai-responses").iterdir())
OTHER_SERVERS = ["openrouter/responses-reasoning-text.sse", "deepseek/responses-function-call.sse",
                 "lmstudio/responses-tool-call.chunks.txt", "xai/responses-text-reasoning.chunks.txt",
                 "xai/responses-web-search.chunks.txt"]
"""the same API from other servers (OpenRouter, DeepSeek, LM Studio, xAI)"""


def messages(name: str) -> list[tuple[str, str]]:
    """(event name, data) as the wire has them: the recorded ``event:`` lines (``.sse``); for ``.chunks.txt``
    the event is the JSON ``type``, as the recordings' INDEX says to rebuild it."""
    if name.endswith(".chunks.txt"):
        return [(json.loads(p)["type"], p) for p in fixture_payloads(name)]
    out = []
    for block in (FIXTURES / name).read_text().replace("\r\n", "\n").split("\n\n"):
        lines = block.split("\n")
        event = next((ln[6:].strip() for ln in lines if ln.startswith("event:")), "")
        data = "\n".join(ln[5:].lstrip(" ") for ln in lines if ln.startswith("data:"))
        if data:
            out.append((event, data))
    return out


def payloads(name: str) -> list[dict[str, Any]]:
    return [json.loads(d) for _, d in messages(name) if d != "[DONE]"]


def run(name: str) -> Run:
    return feed(Decoder("openai"), messages(name))


def of(events: list[Event], kind: type) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def text(events: list[Event]) -> str:
    return "".join(e.text for e in of(events, TextDeltaEvent))


def reasoning(events: list[Event]) -> str:
    return "".join(e.text for e in of(events, ReasoningDeltaEvent))


def check_calls(events: list[Event]) -> None:
    """Every tool_call_start has exactly one tool_call, and its deltas add up to the arguments."""
    starts = of(events, ToolCallStartEvent)
    finals = of(events, ToolCallEvent)
    assert sorted(s.tool_call_id for s in starts) == sorted(f.tool_call_id for f in finals)
    for f in finals:
        deltas = [d for d in of(events, ToolCallDeltaEvent) if d.tool_call_id == f.tool_call_id]
        streamed = "".join(d.arguments_delta for d in deltas)
        assert json.loads(streamed) == f.arguments


def test_the_listing_covers_every_recording() -> None:
    assert len(RESPONSES_FIXTURES) == 12


@pytest.mark.parametrize("name", RESPONSES_FIXTURES + OTHER_SERVERS)
def test_every_recording_decodes_to_its_completed_answer(name: str) -> None:
    """Text equals what the stream's own ``output_text.done`` events say; usage is the last response's."""
    r = run(name)
    done_texts = [p["text"] for p in payloads(name) if p["type"] == "response.output_text.done"]
    if name.endswith("error-insufficient-quota.chunks.txt"):
        assert r.error is not None
        return
    assert r.error is None, r.error
    assert r.decoder.complete
    assert text(r.events) == "".join(done_texts)
    final = [p["response"] for p in payloads(name) if p["type"] == "response.completed"][-1]
    usage = r.decoder.usage
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens) == (final["usage"]["input_tokens"],
                                                         final["usage"]["output_tokens"])
    calls = [it for it in final["output"] if it["type"] == "function_call"]
    assert [c.tool_call_id for c in of(r.events, ToolCallEvent)] == [c["call_id"] for c in calls]
    assert r.decoder.finish_reason == ("tool_calls" if calls else "stop")
    check_calls(r.events)
    # a reasoning item finishes with a reasoning_end carrying it, as output_item.done had it
    done_reasoning = [p["item"] for p in payloads(name)
                      if p["type"] == "response.output_item.done" and p["item"]["type"] == "reasoning"]
    assert [json.loads(e.signature) for e in of(r.events, ReasoningEndEvent)] == done_reasoning


def test_text_stream() -> None:
    r = run("openai-responses/text-event-lines.sse")
    assert [e.text for e in r.events] == ["The", " capital", " of", " France", " is", " Paris", "."]
    assert r.decoder.finish_reason == "stop"
    usage = r.decoder.usage
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens, usage.cached_input_tokens, usage.reasoning_tokens) == (
        278, 9, msgspec.UNSET, msgspec.UNSET)  # 0 cached, 0 reasoning: not reported


def test_function_call() -> None:
    r = run("openai-responses/function-call.sse")
    start, *deltas, final = r.events
    assert start == ToolCallStartEvent(tool_call_id="call_kL0PCQV7M2WMoVX8V8OtYSAL", name="get_capital", index=0)
    assert [d.arguments_delta for d in deltas] == ['{"', "country", '":"', "France", '"}']
    assert final == ToolCallEvent(tool_call_id="call_kL0PCQV7M2WMoVX8V8OtYSAL", name="get_capital",
                                  arguments={"country": "France"})
    assert r.decoder.finish_reason == "tool_calls"
    assert r.decoder.usage is not None and r.decoder.usage.input_tokens == 255


def test_reasoning_summary_and_encrypted_item() -> None:
    name = "openai-responses/reasoning-summary-code-interpreter.sse"
    r = run(name)
    (end,) = of(r.events, ReasoningEndEvent)
    item = json.loads(end.signature)
    # read off the file: the added item's encrypted_content begins gAAAAABow1Cb52ic, the finished one gAAAAABow1Cfw
    assert item["id"] == "rs_68c3509b2ee0819eba32735182d275ad0f2d670b80edc507"
    assert item["encrypted_content"].startswith("gAAAAABow1CfwMTF6GjgPzWVr8oKbF")
    assert len(item["encrypted_content"]) == 1764
    # byte for byte what the stream carried in output_item.done
    done_line = next(ln for ln in (FIXTURES / name).read_text().splitlines()
                     if ln.startswith('data: {"type":"response.output_item.done"') and '"type":"reasoning"' in ln)
    assert f'"item":{end.signature}' in done_line
    assert reasoning(r.events).startswith("**Calculating a large integer**\n\nI need to compute")
    assert reasoning(r.events) == item["summary"][0]["text"]
    # reasoning ends before the answer starts
    first_text = next(i for i, e in enumerate(r.events) if isinstance(e, TextDeltaEvent))
    assert r.events.index(end) < first_text
    assert text(r.events).startswith("123456^123 equals:\n18030210630404480750814092786593857280734")
    usage = r.decoder.usage
    assert usage is not None
    assert (usage.input_tokens, usage.cached_input_tokens, usage.output_tokens, usage.reasoning_tokens) == (
        3727, 3200, 347, 128)
    assert not of(r.events, ToolCallStartEvent)  # code interpreter ran at OpenAI: nothing for the app to run


def test_two_reasoning_items_keep_their_finished_encryption() -> None:
    r = run("openai-responses/mcp-call.sse")
    ends = of(r.events, ReasoningEndEvent)
    got = [(json.loads(e.signature)["id"], json.loads(e.signature)["encrypted_content"][:30]) for e in ends]
    assert got == [("rs_00b9cc7a23d047270068faa0e4cd5c819f8855c183ff0fe957", "gAAAAABo-qDma-ZMjX6meVDoCLYMqg"),
                   ("rs_00b9cc7a23d047270068faa0f4ff54819f9fb9ff25bebe7f5f", "gAAAAABo-qD2WTMmhASwWVtFPlo7IL")]
    assert not of(r.events, ToolCallStartEvent)  # the MCP call ran at OpenAI
    assert r.decoder.usage is not None and r.decoder.usage.reasoning_tokens == 256


def test_stream_error_event_with_the_fields_inside_error() -> None:
    r = run("openai-responses/error-insufficient-quota.chunks.txt")
    assert r.error is not None and r.error_at == 2  # the `error` event, before response.failed
    info = r.error.info
    assert info.code == "rate_limited" and info.retryable is False  # out of credit: waiting will not help
    assert info.message.startswith("openai: You exceeded your current quota")
    assert info.status is msgspec.UNSET


def test_arguments_only_in_the_done_event() -> None:
    r = run("lmstudio/responses-tool-call.chunks.txt")
    (start,) = of(r.events, ToolCallStartEvent)
    assert (start.tool_call_id, start.name) == ("call_2025306790300011", "weather")
    assert [d.arguments_delta for d in of(r.events, ToolCallDeltaEvent)] == ['{"location":"San Francisco"}']
    assert of(r.events, ToolCallEvent)[0].arguments == {"location": "San Francisco"}
    assert text(r.events) == "I'll get the current weather information for San Francisco for you."
    assert reasoning(r.events).startswith("The user is asking for the weather in San Francisco.")


def test_openrouter_ends_with_done() -> None:
    r = feed(Decoder("openrouter"), messages("openrouter/responses-reasoning-text.sse"))
    assert r.decoder.complete and text(r.events) == "4"
    assert r.decoder.usage is not None and r.decoder.usage.reasoning_tokens == 22


def test_a_resumed_stream_without_response_created() -> None:
    r = run("openai-responses/background-resume-starting-after.sse")
    assert text(r.events) == "2 + 2 equals 4."


@pytest.mark.parametrize("name", ["openai-responses/apply-patch.chunks.txt",
                                  "openai-responses/custom-tool-input-delta.chunks.txt",
                                  "openai-responses/mcp-approval-request.chunks.txt"])
def test_server_side_and_custom_items_are_skipped(name: str) -> None:
    r = run(name)
    assert r.error is None
    assert not of(r.events, ToolCallStartEvent) and not of(r.events, TextDeltaEvent)
    assert r.decoder.finish_reason == "stop"


# --- streams no recording has: written out by hand (NOT recorded), in the recordings' event shapes -------------


def wire(*events: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["type"], json.dumps(e, separators=(",", ":"))) for e in events]


USAGE = {"input_tokens": 40, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 12,
         "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 52}


def fc(index: int, item_id: str, call_id: str, name: str, args: str, status: str) -> dict[str, Any]:
    return {"type": "function_call", "id": item_id, "call_id": call_id, "name": name, "arguments": args,
            "status": status}


def test_parallel_calls_hand_written() -> None:
    events = wire(
        {"type": "response.output_item.added", "output_index": 0,
         "item": fc(0, "fc_a", "call_A", "get_weather", "", "in_progress")},
        {"type": "response.output_item.added", "output_index": 1,
         "item": fc(1, "fc_b", "call_B", "get_time", "", "in_progress")},
        {"type": "response.function_call_arguments.delta", "item_id": "fc_b", "output_index": 1, "delta": '{"tz":'},
        {"type": "response.function_call_arguments.delta", "item_id": "fc_a", "output_index": 0, "delta": '{"city"'},
        {"type": "response.function_call_arguments.delta", "item_id": "fc_a", "output_index": 0, "delta": ':"Oslo"}'},
        {"type": "response.function_call_arguments.delta", "item_id": "fc_b", "output_index": 1, "delta": '"CET"}'},
        {"type": "response.output_item.done", "output_index": 0,
         "item": fc(0, "fc_a", "call_A", "get_weather", '{"city":"Oslo"}', "completed")},
        {"type": "response.output_item.done", "output_index": 1,
         "item": fc(1, "fc_b", "call_B", "get_time", '{"tz":"CET"}', "completed")},
        {"type": "response.completed", "response": {"status": "completed", "usage": USAGE}},
    )
    r = feed(Decoder(), events)
    assert [(s.tool_call_id, s.name, s.index) for s in of(r.events, ToolCallStartEvent)] == [
        ("call_A", "get_weather", 0), ("call_B", "get_time", 1)]
    assert [(c.tool_call_id, c.arguments) for c in of(r.events, ToolCallEvent)] == [
        ("call_A", {"city": "Oslo"}), ("call_B", {"tz": "CET"})]
    check_calls(r.events)
    assert r.decoder.finish_reason == "tool_calls"


def test_refusal_hand_written() -> None:
    events = wire(
        {"type": "response.output_item.added", "output_index": 0,
         "item": {"type": "message", "id": "msg_1", "status": "in_progress", "role": "assistant", "content": []}},
        {"type": "response.refusal.delta", "item_id": "msg_1", "output_index": 0, "content_index": 0,
         "delta": "I can't help"},
        {"type": "response.refusal.delta", "item_id": "msg_1", "output_index": 0, "content_index": 0,
         "delta": " with that."},
        {"type": "response.refusal.done", "item_id": "msg_1", "output_index": 0, "content_index": 0,
         "refusal": "I can't help with that."},
        {"type": "response.completed", "response": {"status": "completed", "usage": USAGE}},
    )
    r = feed(Decoder(), events)
    assert text(r.events) == "I can't help with that."  # the .done repeats it: not relayed twice
    assert r.decoder.finish_reason == "content_filter"


@pytest.mark.parametrize(("reason", "finish"), [("max_output_tokens", "length"), ("content_filter", "content_filter"),
                                                 ("something_new", "other")])
def test_incomplete_hand_written(reason: str, finish: str) -> None:
    events = wire(
        {"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "content_index": 0,
         "delta": "The answer is"},
        {"type": "response.incomplete", "response": {"status": "incomplete", "incomplete_details": {"reason": reason},
                                                     "usage": {**USAGE, "output_tokens": 16}}},
    )
    r = feed(Decoder(), events)
    assert r.error is None and r.decoder.complete
    assert text(r.events) == "The answer is"
    assert r.decoder.finish_reason == finish
    assert r.decoder.usage is not None and r.decoder.usage.output_tokens == 16


def test_failed_without_an_error_event_hand_written() -> None:
    events = wire({"type": "response.failed", "response": {
        "status": "failed", "error": {"code": "server_error", "message": "The server had an error"}}})
    r = feed(Decoder(), events)
    assert r.error is not None and r.error.info.code == "upstream_unavailable"
    assert r.error.info.message == "openai: The server had an error"


def test_error_event_with_the_fields_at_the_top_hand_written() -> None:
    r = feed(Decoder(), wire({"type": "error", "code": "rate_limit_exceeded", "message": "Rate limit reached",
                              "param": None, "sequence_number": 2}))
    assert r.error is not None and r.error.info.code == "rate_limited"
    assert r.error.info.message == "openai: Rate limit reached"


def test_unparseable_bytes_are_a_protocol_error() -> None:
    r = feed(Decoder(), [("response.output_text.delta", "{not json")])
    assert r.error is not None and r.error.info.code == "protocol_error"


def test_a_stream_cut_before_the_item_finished_still_completes_its_call() -> None:
    r = feed(Decoder(), wire(
        {"type": "response.output_item.added", "output_index": 0,
         "item": fc(0, "fc_a", "call_A", "f", "", "in_progress")},
        {"type": "response.function_call_arguments.delta", "item_id": "fc_a", "output_index": 0, "delta": '{"a":1}'}))
    assert of(r.events, ToolCallEvent) == [ToolCallEvent(tool_call_id="call_A", name="f", arguments={"a": 1})]
    assert not r.decoder.complete


# --- encode ---------------------------------------------------------------------------------------------------

OPENAI = Provider(id="openai", name="OpenAI", protocol="openai", base_url="https://api.openai.com/v1",
                  models=(Model("gpt-5-pro", reasoning=True, api="responses"), Model("gpt-4.1")))
REASONING_ITEM = ('{"id":"rs_1","type":"reasoning","encrypted_content":"gAAAA\\u00e9+/=","summary":'
                  '[{"type":"summary_text","text":"Thinking."}]}')


def body_of(params: StreamTextParams, provider: Provider = OPENAI, model: str = "gpt-5-pro") -> dict[str, Any]:
    req = encode_request(params, provider, model, "sk-test")
    assert req.body is not None
    out: dict[str, Any] = json.loads(req.body)
    return out


def test_a_conversation_with_a_tool_turn() -> None:
    params = StreamTextParams(
        system="Be brief.",
        messages=[
            SystemMessage(content="Use metric units."),
            UserMessage(content=[TextPart(text="Weather in Oslo?"),
                                 ImagePart(media_type="image/png", data="iVBORw0KGgo=")]),
            AssistantMessage(content=[
                ReasoningPart(text="Thinking.", signature=REASONING_ITEM),
                TextPart(text="Checking."),
                ToolCallPart(id="call_1", name="weather", arguments={"city": "Oslo"}),
            ]),
            ToolMessage(tool_call_id="call_1", content="12 C"),
        ],
        tools=[ToolDefinition(name="weather", description="Weather now",
                              parameters={"type": "object", "properties": {"city": {"type": "string"}}})],
        tool_choice="auto", parallel_tool_calls=False, max_tokens=500, temperature=0.2,
        reasoning=ReasoningOptions(effort="high"),
    )
    body = body_of(params)
    assert body == {
        "model": "gpt-5-pro",
        "instructions": "Be brief.",
        "input": [
            {"role": "system", "content": "Use metric units."},
            {"role": "user", "content": [
                {"type": "input_text", "text": "Weather in Oslo?"},
                {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "auto"}]},
            {"id": "rs_1", "type": "reasoning", "encrypted_content": "gAAAA\u00e9+/=",
             "summary": [{"type": "summary_text", "text": "Thinking."}]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
            {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": '{"city":"Oslo"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "12 C"},
        ],
        "tools": [{"type": "function", "name": "weather", "description": "Weather now",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": False}],
        "parallel_tool_calls": False,
        "tool_choice": "auto",
        "temperature": 0.2,
        "max_output_tokens": 500,
        "reasoning": {"effort": "high", "summary": "auto"},
        "store": False,
        "include": ["reasoning.encrypted_content"],
        "stream": True,
    }


def test_the_reasoning_item_goes_back_byte_for_byte() -> None:
    params = StreamTextParams(messages=[
        UserMessage(content="hi"),
        AssistantMessage(content=[ReasoningPart(text="", signature=REASONING_ITEM), TextPart(text="Hello")]),
        UserMessage(content="again")])
    raw = encode_request(params, OPENAI, "gpt-5-pro", None).body
    assert raw is not None and REASONING_ITEM.encode() in raw  # the escape \u00e9 too: not re-encoded


def test_reasoning_from_elsewhere_is_not_sent() -> None:
    params = StreamTextParams(messages=[
        UserMessage(content="hi"),
        AssistantMessage(content=[ReasoningPart(text="hm", signature="EqQBCkYIBxgCKkBanthropic-signature"),
                                  RedactedReasoningPart(data="opaque"),
                                  ReasoningPart(text="no signature"), TextPart(text="Hello")]),
        UserMessage(content="again")])
    assert body_of(params)["input"][1] == {"type": "message", "role": "assistant",
                                           "content": [{"type": "output_text", "text": "Hello"}]}
    assert len(body_of(params)["input"]) == 3


def test_an_output_without_its_call_is_refused_before_the_network() -> None:
    params = StreamTextParams(messages=[UserMessage(content="hi"), ToolMessage(tool_call_id="call_9", content="x")])
    with pytest.raises(SidecarError) as exc:
        encode_request(params, OPENAI, "gpt-5-pro", None)
    assert exc.value.info.code == "invalid_request" and "call_9" in exc.value.info.message
    # with the conversation stored at OpenAI the app may be continuing a stored one (previous_response_id)
    stored = msgspec.structs.replace(params, provider_options={"store": True, "previous_response_id": "resp_1"})
    body = body_of(stored)
    assert body["store"] is True and "include" not in body and body["previous_response_id"] == "resp_1"


def test_routing_field_is_never_sent_and_options_merge() -> None:
    params = StreamTextParams(messages=[UserMessage(content="hi")],
                              provider_options={"api": "responses", "service_tier": "flex"})
    body = body_of(params)
    assert "api" not in body and body["service_tier"] == "flex"


def test_choices_and_formats() -> None:
    base = StreamTextParams(messages=[UserMessage(content="hi")],
                            tools=[ToolDefinition(name="f", parameters={"type": "object"})])
    named = body_of(msgspec.structs.replace(base, tool_choice=ToolChoiceName(name="f")))
    assert named["tool_choice"] == {"type": "function", "name": "f"}
    assert "parallel_tool_calls" not in named
    js = body_of(msgspec.structs.replace(base, response_format=ResponseFormat(
        type="json_schema", name="city", schema={"type": "object"})))
    assert js["text"] == {"format": {"type": "json_schema", "name": "city", "schema": {"type": "object"},
                                     "strict": False}}
    jo = body_of(msgspec.structs.replace(base, response_format=ResponseFormat(type="json_object")))
    assert jo["text"] == {"format": {"type": "json_object"}}
    assert "reasoning" not in jo  # asked for only when the request gives it


def test_encrypted_reasoning_is_not_asked_of_a_model_the_catalog_says_does_not_reason() -> None:
    params = StreamTextParams(messages=[UserMessage(content="hi")])
    assert "include" not in body_of(params, model="gpt-4.1")
    assert body_of(params, model="some-new-model")["include"] == ["reasoning.encrypted_content"]  # unknown: asked


def test_settings_without_a_responses_field_are_warned_about() -> None:
    params = StreamTextParams(messages=[UserMessage(content="hi")], stop=["\n"], seed=3,
                              reasoning=ReasoningOptions(budget_tokens=1000))
    req = encode_request(params, OPENAI, "gpt-5-pro", None)
    assert [w.message for w in req.warnings] == [
        "openai-responses: stop is not supported and was not sent",
        "openai-responses: seed is not supported and was not sent",
        "openai-responses: reasoning.budget_tokens is not supported and was not sent"]
    body = json.loads(req.body or b"")
    assert "stop" not in body and "seed" not in body and body["reasoning"] == {"summary": "auto"}


def test_urls_and_key_headers() -> None:
    params = StreamTextParams(messages=[UserMessage(content="hi")])
    req = encode_request(params, OPENAI, "gpt-5-pro", "sk-test")
    assert (req.method, req.url) == ("POST", "https://api.openai.com/v1/responses")
    assert req.headers["authorization"] == "Bearer sk-test" and req.headers["accept"] == "text/event-stream"
    azure = Provider(id="azure-openai", name="Azure", protocol="openai", api_version="2024-10-21",
                     base_url="https://res.openai.azure.com/openai", responses_path="/v1/responses")
    req = encode_request(params, azure, "my-deployment", "azure-key")
    assert req.url == "https://res.openai.azure.com/openai/v1/responses"
    assert req.headers["api-key"] == "azure-key" and "authorization" not in req.headers
    assert json.loads(req.body or b"")["model"] == "my-deployment"


def test_protocol_is_registered() -> None:
    p = get_protocol("openai-responses")
    assert (p.name, p.framing, p.transport) == ("openai-responses", "sse", "http")


def test_encode_body_leaves_out_instructions_without_a_system_prompt() -> None:
    body = encode_body(StreamTextParams(messages=[UserMessage(content="hi")]), OPENAI, "gpt-5-pro")
    assert "instructions" not in body
    assert body["input"] == [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}]


# --- routing (pure) ---------------------------------------------------------------------------------------------


def test_routing_by_catalog_and_by_request() -> None:
    from sidecar.providers.routing import route

    plain = StreamTextParams(messages=[UserMessage(content="hi")])
    assert route(plain, OPENAI, "gpt-5-pro").protocol == "openai-responses"  # the catalog's api
    assert route(plain, OPENAI, "gpt-4.1").protocol == "openai"
    asked = msgspec.structs.replace(plain, provider_options={"api": "responses"})
    assert route(asked, OPENAI, "gpt-4.1").protocol == "openai-responses"
    chat = msgspec.structs.replace(plain, provider_options={"api": "chat"})
    assert route(chat, OPENAI, "gpt-5-pro").protocol == "openai"
    custom = Provider(id="r", name="R", protocol="openai-responses", base_url="http://127.0.0.1:1/v1")
    assert route(chat, custom, "m").protocol == "openai" and route(plain, custom, "m") is custom
    gemini = Provider(id="g", name="G", protocol="gemini", base_url="http://127.0.0.1:1")
    assert route(asked, gemini, "m") is gemini  # means nothing elsewhere (a fallback keeps the options)
    with pytest.raises(SidecarError) as exc:
        route(msgspec.structs.replace(plain, provider_options={"api": 1}), gemini, "m")
    assert exc.value.info.code == "invalid_request"
