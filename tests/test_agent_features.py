"""Agent features on every protocol: parallel tool calls, reasoning options and signatures, prompt caching,
structured output (Anthropic's through a forced tool), images, and the engine's checks around them
(the JSON answer validated against the schema, images refused for a model without vision).

Unit tests encode and decode directly; the end-to-end tests at the bottom run the real sidecar process
against the harness's loopback upstream. Expected bodies are written out by hand in each API's documented shape.
"""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest
from conftest import register_upstream
from harness import Reply, Sidecar, Upstream, check_stream_invariants, sse, text_of

from sidecar.checks import JsonAnswer, check_request
from sidecar.errors import SidecarError
from sidecar.protocols import get_protocol
from sidecar.protocols.anthropic import JSON_TOOL, Decoder
from sidecar.providers import Provider
from sidecar.providers.catalog import BUILTIN
from sidecar.types import (
    Event,
    StreamTextParams,
    TextDeltaEvent,
    ToolCallDeltaEvent,
    ToolCallEvent,
    ToolCallStartEvent,
)

CATALOG = {p.id: p for p in BUILTIN}
MODEL = {"openai": "gpt-4o", "anthropic": "claude-sonnet-4-5", "gemini": "gemini-2.5-flash", "ollama": "llama3.2",
         "cohere": "command-a-03-2025", "deepseek": "deepseek-reasoner"}
PROTOCOLS = ("openai", "anthropic", "gemini", "ollama", "cohere")
HI = [{"role": "user", "content": "hi"}]
TOOLS = [{"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
         {"name": "get_time", "parameters": {"type": "object"}}]
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()
SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"]}


def params(**fields: Any) -> StreamTextParams:
    fields.setdefault("messages", HI)
    return msgspec.convert(fields, StreamTextParams)


def body(provider_id: str, **fields: Any) -> dict[str, Any]:
    """The request body as it goes on the wire for a built-in provider."""
    provider = CATALOG[provider_id]
    req = get_protocol(provider.protocol).encode_request(params(**fields), provider, MODEL[provider_id], "k-test")
    assert req.body is not None
    decoded: dict[str, Any] = json.loads(req.body)
    return decoded


def refused(provider_id: str, **fields: Any) -> SidecarError:
    with pytest.raises(SidecarError) as err:
        body(provider_id, **fields)
    return err.value


# --- parallel tool calls ---------------------------------------------------------------------------


def test_openai_parallel_tool_calls_only_next_to_tools() -> None:
    assert body("openai", tools=TOOLS, parallel_tool_calls=False)["parallel_tool_calls"] is False
    assert body("openai", tools=TOOLS, parallel_tool_calls=True)["parallel_tool_calls"] is True
    assert "parallel_tool_calls" not in body("openai", tools=TOOLS)
    assert "parallel_tool_calls" not in body("openai", parallel_tool_calls=False), "OpenAI refuses it without tools"
    assert body("deepseek", tools=TOOLS, parallel_tool_calls=False)["parallel_tool_calls"] is False


@pytest.mark.parametrize(("choice", "wire"), [
    (None, {"type": "auto", "disable_parallel_tool_use": True}),
    ("auto", {"type": "auto", "disable_parallel_tool_use": True}),
    ("required", {"type": "any", "disable_parallel_tool_use": True}),
    ({"name": "get_time"}, {"type": "tool", "name": "get_time", "disable_parallel_tool_use": True}),
    ("none", {"type": "none"}),  # nothing to disable: no tool is called at all
])
def test_anthropic_disable_parallel_tool_use(choice: Any, wire: dict[str, Any]) -> None:
    fields: dict[str, Any] = {"tools": TOOLS, "parallel_tool_calls": False}
    if choice is not None:
        fields["tool_choice"] = choice
    assert body("anthropic", **fields)["tool_choice"] == wire


def test_anthropic_parallel_allowed_is_the_default() -> None:
    assert "tool_choice" not in body("anthropic", tools=TOOLS, parallel_tool_calls=True)
    assert body("anthropic", tools=TOOLS, tool_choice="required", parallel_tool_calls=True)["tool_choice"] == {
        "type": "any"}
    assert "tool_choice" not in body("anthropic", parallel_tool_calls=False), "no tools, no tool_choice"


@pytest.mark.parametrize("provider_id", ["gemini", "ollama", "cohere"])
def test_protocols_without_a_parallel_switch_send_nothing(provider_id: str) -> None:
    for value in (True, False):
        assert body(provider_id, tools=TOOLS, parallel_tool_calls=value) == body(provider_id, tools=TOOLS)


# --- reasoning ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("provider_id", "reasoning", "key", "wire"), [
    ("openai", {"effort": "high"}, "reasoning_effort", "high"),
    ("deepseek", {"effort": "low"}, "reasoning_effort", "low"),
    ("anthropic", {"budget_tokens": 4000}, "thinking", {"type": "enabled", "budget_tokens": 4000}),
    ("anthropic", {"effort": "low"}, "thinking", {"type": "enabled", "budget_tokens": 2048}),
    ("gemini", {"budget_tokens": 4000}, "generationConfig",
     {"thinkingConfig": {"includeThoughts": True, "thinkingBudget": 4000}}),
    ("gemini", {"effort": "medium"}, "generationConfig",
     {"thinkingConfig": {"includeThoughts": True, "thinkingBudget": 8192}}),
    ("ollama", {"effort": "high"}, "think", "high"),
    ("ollama", {}, "think", True),
    ("cohere", {"budget_tokens": 3000}, "thinking", {"type": "enabled", "token_budget": 3000}),
    ("cohere", {"effort": "high"}, "thinking", {"type": "enabled"}),
])
def test_reasoning_options_per_protocol(provider_id: str, reasoning: dict[str, Any], key: str, wire: Any) -> None:
    assert body(provider_id, reasoning=reasoning)[key] == wire


def test_anthropic_thinking_and_redacted_thinking_go_back_unchanged_next_to_a_json_answer() -> None:
    history = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": [
            {"type": "reasoning", "text": "Think.", "signature": "sig-1=="},
            {"type": "redacted_reasoning", "data": "EqkECkYIBxgCKkA8"},
            {"type": "tool_call", "id": "t1", "name": "get_time", "arguments": {}},
        ]},
        {"role": "tool", "tool_call_id": "t1", "content": "noon"},
    ]
    b = body("anthropic", messages=history, tools=TOOLS, reasoning={"budget_tokens": 2000},
             response_format={"type": "json_object"})
    assert b["messages"][1]["content"] == [
        {"type": "thinking", "thinking": "Think.", "signature": "sig-1=="},
        {"type": "redacted_thinking", "data": "EqkECkYIBxgCKkA8"},
        {"type": "tool_use", "id": "t1", "name": "get_time", "input": {}},
    ]


# --- prompt caching --------------------------------------------------------------------------------


def test_anthropic_cache_breakpoints_with_the_json_tool() -> None:
    b = body("anthropic", cache=True, system="sys", tools=TOOLS, response_format={"type": "json_object"},
             messages=[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                       {"role": "user", "content": "c"}])
    eph = {"type": "ephemeral"}
    assert b["system"] == [{"type": "text", "text": "sys", "cache_control": eph}]
    assert [t["name"] for t in b["tools"]] == ["get_weather", "get_time", JSON_TOOL]
    assert [t.get("cache_control") for t in b["tools"]] == [None, None, eph], "the last tool closes the prefix"
    assert b["messages"][2] == {"role": "user", "content": [{"type": "text", "text": "c", "cache_control": eph}]}
    assert b["messages"][0] == {"role": "user", "content": "a"}
    assert json.dumps(b).count("cache_control") == 3


@pytest.mark.parametrize("provider_id", ["openai", "deepseek", "gemini", "ollama", "cohere"])
def test_cache_flag_adds_nothing_where_caching_is_automatic(provider_id: str) -> None:
    assert body(provider_id, cache=True) == body(provider_id)


def test_openai_and_deepseek_cached_tokens_come_back_as_usage() -> None:
    openai = get_protocol("openai")
    chunks = [
        {"choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}]},
        {"choices": [], "usage": {"prompt_tokens": 2006, "completion_tokens": 300,
                                  "prompt_tokens_details": {"cached_tokens": 1920}}},
    ]
    decoder = openai.new_decoder("openai")
    for c in chunks:
        decoder.feed("", json.dumps(c))
    assert decoder.usage is not None and decoder.usage.cached_input_tokens == 1920
    decoder = openai.new_decoder("deepseek")
    decoder.feed("", json.dumps({"choices": [], "usage": {
        "prompt_tokens": 50, "completion_tokens": 5, "prompt_cache_hit_tokens": 32, "prompt_cache_miss_tokens": 18}}))
    assert decoder.usage is not None and decoder.usage.cached_input_tokens == 32


# --- structured output: the native form per protocol -----------------------------------------------


def test_response_format_json_schema_per_protocol() -> None:
    rf = {"type": "json_schema", "name": "person", "schema": SCHEMA}
    assert body("openai", response_format=rf)["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA}}
    assert body("deepseek", response_format=rf)["response_format"]["type"] == "json_schema"
    gen = body("gemini", response_format=rf)["generationConfig"]
    assert gen == {"responseMimeType": "application/json", "responseSchema": SCHEMA}
    assert body("ollama", response_format=rf)["format"] == SCHEMA
    assert body("cohere", response_format=rf)["response_format"] == {"type": "json_object", "json_schema": SCHEMA}
    anth = body("anthropic", response_format=rf)
    assert anth["tools"] == [{"name": JSON_TOOL, "input_schema": SCHEMA,
                              "description": "Give your final answer (person) by calling this tool: its input is "
                                             "the answer."}]
    assert anth["tool_choice"] == {"type": "tool", "name": JSON_TOOL}
    assert "response_format" not in anth


def test_response_format_json_object_per_protocol() -> None:
    rf = {"type": "json_object"}
    assert body("openai", response_format=rf)["response_format"] == {"type": "json_object"}
    assert body("gemini", response_format=rf)["generationConfig"] == {"responseMimeType": "application/json"}
    assert body("ollama", response_format=rf)["format"] == "json"
    assert body("cohere", response_format=rf)["response_format"] == {"type": "json_object"}
    anth = body("anthropic", response_format=rf)
    assert [(t["name"], t["input_schema"]) for t in anth["tools"]] == [(JSON_TOOL, {"type": "object"})]
    assert anth["tool_choice"] == {"type": "tool", "name": JSON_TOOL}


@pytest.mark.parametrize("provider_id", PROTOCOLS)
def test_response_format_text_sends_nothing(provider_id: str) -> None:
    assert body(provider_id, response_format={"type": "text"}) == body(provider_id)


def test_anthropic_json_tool_next_to_the_callers_tools() -> None:
    rf = {"type": "json_schema", "schema": SCHEMA}
    b = body("anthropic", tools=TOOLS, response_format=rf)
    assert [t["name"] for t in b["tools"]] == ["get_weather", "get_time", JSON_TOOL]
    assert b["tool_choice"] == {"type": "any"}, "call a tool, or answer through the JSON tool"
    assert body("anthropic", tools=TOOLS, response_format=rf, tool_choice="none")["tool_choice"] == {
        "type": "tool", "name": JSON_TOOL}
    assert body("anthropic", tools=TOOLS, response_format=rf, tool_choice={"name": "get_time"})["tool_choice"] == {
        "type": "tool", "name": "get_time"}
    assert body("anthropic", response_format=rf, parallel_tool_calls=False)["tool_choice"] == {
        "type": "tool", "name": JSON_TOOL, "disable_parallel_tool_use": True}


def test_anthropic_json_tool_with_thinking_is_not_forced() -> None:
    b = body("anthropic", response_format={"type": "json_schema", "schema": SCHEMA}, reasoning={"effort": "low"})
    assert b["tool_choice"] == {"type": "auto"}, "Anthropic refuses a forced tool choice with thinking"
    assert b["thinking"]["type"] == "enabled"


def test_anthropic_json_schema_without_a_type_is_an_object() -> None:
    b = body("anthropic", response_format={"type": "json_schema", "schema": {"properties": {"a": {}}}})
    assert b["tools"][0]["input_schema"] == {"type": "object", "properties": {"a": {}}}


def test_anthropic_refuses_what_a_tool_cannot_carry() -> None:
    err = refused("anthropic", response_format={"type": "json_schema", "schema": {"type": "array"}})
    assert err.info.code == "invalid_request" and "'object'" in err.info.message
    clash = [{"name": JSON_TOOL, "parameters": {"type": "object"}}]
    err = refused("anthropic", tools=clash, response_format={"type": "json_object"})
    assert err.info.code == "invalid_request" and JSON_TOOL in err.info.message


# --- structured output: Anthropic's forced tool back to text --------------------------------------


def feed(decoder: Decoder, *payloads: dict[str, Any]) -> list[Event]:
    out: list[Event] = []
    for p in payloads:
        out += decoder.feed(p["type"], json.dumps(p))
    return out + decoder.end()


def block_start(index: int, **block: Any) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": block}


def block_delta(index: int, **d: Any) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": d}


def stop(reason: str) -> list[dict[str, Any]]:
    return [{"type": "message_delta", "delta": {"stop_reason": reason}, "usage": {"output_tokens": 9}},
            {"type": "message_stop"}]


START = {"type": "message_start", "message": {"usage": {"input_tokens": 5, "output_tokens": 1}}}
JSON_CALL = [
    block_start(0, type="tool_use", id="toolu_1", name=JSON_TOOL, input={}),
    block_delta(0, type="input_json_delta", partial_json=""),
    block_delta(0, type="input_json_delta", partial_json='{"name": "Ada", '),
    block_delta(0, type="input_json_delta", partial_json='"age": 36}'),
    {"type": "content_block_stop", "index": 0},
]


def json_decoder() -> Decoder:
    decoder = get_protocol("anthropic").decoder_for("anth", params(response_format={"type": "json_object"}))
    assert isinstance(decoder, Decoder)
    return decoder


def test_the_json_tool_call_is_text() -> None:
    decoder = json_decoder()
    events = feed(decoder, START, *JSON_CALL, *stop("tool_use"))
    assert all(type(e) is TextDeltaEvent for e in events)
    assert "".join(e.text for e in events if isinstance(e, TextDeltaEvent)) == '{"name": "Ada", "age": 36}'
    assert decoder.finish_reason == "stop", "the only call was the answer"


def test_a_whole_json_input_in_the_block_start_is_text() -> None:
    decoder = json_decoder()
    events = feed(decoder, START, block_start(0, type="tool_use", id="t", name=JSON_TOOL, input={"a": [1, 2]}),
                  {"type": "content_block_stop", "index": 0}, *stop("tool_use"))
    assert [e.text for e in events if isinstance(e, TextDeltaEvent)] == ['{"a":[1,2]}']


def test_words_around_the_json_answer_are_dropped() -> None:
    decoder = json_decoder()
    events = feed(decoder, START, block_start(0, type="text", text=""),
                  block_delta(0, type="text_delta", text="Here it is:"), {"type": "content_block_stop", "index": 0},
                  *[{**p, "index": 1} for p in JSON_CALL],
                  block_start(2, type="text", text=""), block_delta(2, type="text_delta", text=" Done."),
                  {"type": "content_block_stop", "index": 2}, *stop("tool_use"))
    assert "".join(e.text for e in events if isinstance(e, TextDeltaEvent)) == '{"name": "Ada", "age": 36}'


def test_json_mode_text_without_the_tool_is_the_answer() -> None:
    decoder = json_decoder()
    events = feed(decoder, START, block_start(0, type="text", text=""),
                  block_delta(0, type="text_delta", text='{"a": '), block_delta(0, type="text_delta", text="1}"),
                  {"type": "content_block_stop", "index": 0}, *stop("end_turn"))
    assert "".join(e.text for e in events if isinstance(e, TextDeltaEvent)) == '{"a": 1}'
    assert decoder.finish_reason == "stop"


def test_json_mode_keeps_real_tool_calls() -> None:
    decoder = json_decoder()
    events = feed(decoder, START,
                  block_start(0, type="tool_use", id="toolu_w", name="get_weather", input={}),
                  block_delta(0, type="input_json_delta", partial_json='{"city": "Oslo"}'),
                  {"type": "content_block_stop", "index": 0}, *stop("tool_use"))
    assert [type(e) for e in events] == [ToolCallStartEvent, ToolCallDeltaEvent, ToolCallEvent]
    assert decoder.finish_reason == "tool_calls"


def test_without_response_format_the_tool_named_json_response_is_a_tool() -> None:
    decoder = get_protocol("anthropic").decoder_for("anth", params())
    events = feed(decoder, START, *JSON_CALL, *stop("tool_use"))
    assert [type(e) for e in events][:2] == [ToolCallStartEvent, ToolCallDeltaEvent]
    assert decoder.finish_reason == "tool_calls"


@pytest.mark.parametrize("name", ["openai", "gemini", "ollama", "cohere"])
def test_other_protocols_decode_as_before(name: str) -> None:
    protocol = get_protocol(name)
    assert type(protocol.decoder_for("p", params(response_format={"type": "json_object"}))) is type(
        protocol.new_decoder("p"))


# --- images ---------------------------------------------------------------------------------------

IMAGES = [{"type": "text", "text": "What is this?"},
          {"type": "image", "media_type": "image/png", "data": PNG},
          {"type": "image", "media_type": "image/jpeg", "url": "https://example.com/cat.jpg"}]


def test_images_base64_and_url_per_protocol() -> None:
    msgs = [{"role": "user", "content": IMAGES}]
    assert body("openai", messages=msgs)["messages"][0]["content"][1:] == [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]
    assert body("anthropic", messages=msgs)["messages"][0]["content"][1:] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}]
    assert body("gemini", messages=msgs)["contents"][0]["parts"][1:] == [
        {"inlineData": {"mimeType": "image/png", "data": PNG}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/cat.jpg"}}]
    assert body("cohere", messages=msgs)["messages"][0]["content"][1:] == [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]
    assert body("ollama", messages=[{"role": "user", "content": IMAGES[:2]}])["messages"][0] == {
        "role": "user", "content": "What is this?", "images": [PNG]}


def test_ollama_refuses_an_image_url_clearly() -> None:
    err = refused("ollama", messages=[{"role": "user", "content": IMAGES}])
    assert err.info.code == "invalid_request" and "URL" in err.info.message


def test_openai_tool_result_images_follow_the_tool_messages() -> None:
    msgs = [
        {"role": "user", "content": "look"},
        {"role": "assistant", "content": [{"type": "tool_call", "id": "a", "name": "shot", "arguments": {}},
                                          {"type": "tool_call", "id": "b", "name": "shot", "arguments": {}}]},
        {"role": "tool", "tool_call_id": "a", "content": [{"type": "text", "text": "screen 1"}, IMAGES[1]]},
        {"role": "tool", "tool_call_id": "b", "content": [IMAGES[2]]},
        {"role": "user", "content": "and?"},
    ]
    out = body("openai", messages=msgs)["messages"]
    assert [m["role"] for m in out] == ["user", "assistant", "tool", "tool", "user", "user"]
    assert out[2] == {"role": "tool", "tool_call_id": "a", "content": "screen 1"}
    assert out[4] == {"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]}
    last = body("openai", messages=msgs[:3])["messages"]
    assert [m["role"] for m in last] == ["user", "assistant", "tool", "user"]


# --- the engine's checks ----------------------------------------------------------------------------


def test_images_refused_for_a_model_without_vision() -> None:
    with_image = params(messages=[{"role": "user", "content": IMAGES}])
    for provider_id, model in (("deepseek", "deepseek-chat"), ("groq", "llama-3.1-8b-instant")):
        with pytest.raises(SidecarError) as err:
            check_request(with_image, CATALOG[provider_id], model)
        assert err.value.info.code == "invalid_request"
        assert f"{provider_id}:{model}" in err.value.info.message and "image" in err.value.info.message
    check_request(params(), CATALOG["deepseek"], "deepseek-chat")  # no image: fine
    check_request(with_image, CATALOG["openai"], "gpt-4o")  # vision
    check_request(with_image, CATALOG["deepseek"], "deepseek-v9")  # not in the catalog: let through
    check_request(with_image, CATALOG["mistral"], "mistral-large-latest")  # vision unknown: let through
    custom = Provider(id="mine", name="Mine", protocol="openai", base_url="http://x", is_custom=True)
    check_request(with_image, custom, "deepseek-chat")
    tool_image = params(messages=[
        {"role": "assistant", "content": [{"type": "tool_call", "id": "a", "name": "shot", "arguments": {}}]},
        {"role": "tool", "tool_call_id": "a", "content": [IMAGES[1]]}])
    with pytest.raises(SidecarError):
        check_request(tool_image, CATALOG["deepseek"], "deepseek-chat")


def test_catalog_vision_false_only_where_known() -> None:
    no_vision = {f"{p.id}:{m.id}" for p in BUILTIN for m in p.models if m.vision is False}
    assert {"deepseek:deepseek-chat", "deepseek:deepseek-reasoner", "groq:llama-3.1-8b-instant",
            "groq:llama-3.3-70b-versatile"} <= no_vision
    assert not any(m.vision is False for m in CATALOG["mistral"].models), "the -latest aliases can gain vision"


def test_an_invalid_schema_is_refused_before_the_network() -> None:
    bad = params(response_format={"type": "json_schema", "schema": {"type": "objekt"}})
    with pytest.raises(SidecarError) as err:
        check_request(bad, CATALOG["openai"], "gpt-4o")
    assert err.value.info.code == "invalid_request" and "response_format.schema" in err.value.info.message


def answer(rf: dict[str, Any], text: str, finish: Any = "stop") -> SidecarError | None:
    check = JsonAnswer.wanted(params(response_format=rf))
    assert check is not None
    check.parts += [text[: len(text) // 2], text[len(text) // 2:]]
    try:
        check.verify(finish, "loopback")
    except SidecarError as exc:
        return exc
    return None


def test_json_answer_checks() -> None:
    schema = {"type": "json_schema", "schema": {
        "type": "object", "properties": {"items": {"type": "array", "items": {
            "type": "object", "properties": {"price": {"type": "number"}}}}}}}
    assert JsonAnswer.wanted(params()) is None
    assert JsonAnswer.wanted(params(response_format={"type": "text"})) is None
    assert answer(schema, '{"items": [{"price": 1}, {"price": 2.5}]}') is None
    err = answer(schema, '{"items": [{"price": 1}, {"price": "cheap"}]}')
    assert err is not None and err.info.code == "protocol_error" and err.info.retryable is False
    assert "$.items[1].price" in err.info.message and "'cheap' is not of type 'number'" in err.info.message
    assert err.info.provider == "loopback"
    err = answer({"type": "json_object"}, "Sure! {")
    assert err is not None and err.info.code == "protocol_error" and "not valid JSON" in err.info.message
    assert answer({"type": "json_object"}, " [1, 2] ") is None, "json_object: any JSON"
    assert answer({"type": "json_schema"}, '"x"') is None, "no schema: any JSON"
    err = answer({"type": "json_object"}, '{"a": ', "length")
    assert err is not None and "token limit" in err.info.message
    err = answer({"type": "json_object"}, "")
    assert err is not None and "empty" in err.info.message
    assert answer({"type": "json_object"}, "", "tool_calls") is None, "a tool step is not the answer"
    assert answer({"type": "json_object"}, "I can't", "content_filter") is None


# --- end to end: the real process, the loopback upstream --------------------------------------------


def openai_text(*pieces: str) -> list[bytes]:
    chunks: list[dict[str, Any]] = [{"choices": [{"index": 0, "delta": {"content": p}}]} for p in pieces]
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                   "usage": {"prompt_tokens": 9, "completion_tokens": 4}})
    return sse(chunks)


def start_stream(sc: Sidecar, request: dict[str, Any]) -> list[dict[str, Any]]:
    sid = f"af-{uuid.uuid4().hex[:10]}"
    assert sc.call("llm_stream_text", {**request, "stream_id": sid, "retry": {"max_retries": 0}}) == {
        "stream_id": sid}
    events = sc.wait_stream_end(sid)
    check_stream_invariants(events)
    return events


def test_json_schema_answers_end_to_end(sidecar: Sidecar, upstream: Upstream) -> None:
    register_upstream(sidecar, upstream)
    rf = {"type": "json_schema", "name": "person", "schema": SCHEMA}
    upstream.replies["good"] = Reply(chunks=openai_text('{"name": ', '"Ada", "age": 36}'))
    events = start_stream(sidecar, {"model": "loopback:good", "messages": HI, "response_format": rf})
    assert [e["type"] for e in events] == ["start", "text_delta", "text_delta", "usage", "done"]
    assert json.loads(text_of(events)) == {"name": "Ada", "age": 36}
    sent = upstream.seen[-1].body
    assert sent["response_format"] == {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA}}

    upstream.replies["bad"] = Reply(chunks=openai_text('{"name": "Ada", ', '"age": "old"}'))
    events = start_stream(sidecar, {"model": "loopback:bad", "messages": HI, "response_format": rf})
    assert [e["type"] for e in events] == ["start", "text_delta", "text_delta", "usage", "error"]
    err = events[-1]["error"]
    assert (err["code"], err["retryable"], err["provider"]) == ("protocol_error", False, "loopback")
    assert "$.age" in err["message"] and "'old' is not of type 'integer'" in err["message"]

    resp = sidecar.request("complete_chat", {"model": "loopback:bad", "messages": HI, "response_format": rf,
                                             "retry": {"max_retries": 0}})
    assert resp["error"]["code"] == -32000
    assert resp["error"]["data"]["code"] == "protocol_error" and "$.age" in resp["error"]["message"]
    result = sidecar.call("complete_chat", {"model": "loopback:good", "messages": HI, "response_format": rf})
    assert json.loads(result["content"]) == {"name": "Ada", "age": 36}

    upstream.replies["prose"] = Reply(chunks=openai_text("Sure! Here you go."))
    events = start_stream(sidecar, {"model": "loopback:prose", "messages": HI,
                                    "response_format": {"type": "json_object"}})
    assert events[-1]["error"]["code"] == "protocol_error" and "not valid JSON" in events[-1]["error"]["message"]

    before = len(upstream.seen)
    resp = sidecar.request("llm_stream_text", {"model": "loopback:good", "messages": HI, "response_format": {
        "type": "json_schema", "schema": {"type": "objekt"}}})
    assert resp["error"]["data"]["code"] == "invalid_request" and len(upstream.seen) == before


def anthropic_frames(*payloads: dict[str, Any]) -> list[bytes]:
    return [f"event: {p['type']}\ndata: {json.dumps(p)}\n\n".encode() for p in payloads]


def test_anthropic_forced_tool_json_is_text_end_to_end(sidecar: Sidecar, upstream: Upstream) -> None:
    sidecar.call("llm_register_custom_provider", {
        "id": "anth", "name": "A", "protocol": "anthropic", "base_url": f"http://127.0.0.1:{upstream.port}",
        "requires_api_key": False})
    upstream.replies["claude-json"] = Reply(chunks=anthropic_frames(START, *JSON_CALL, *stop("tool_use")))
    rf = {"type": "json_schema", "name": "person", "schema": SCHEMA}
    events = start_stream(sidecar, {"model": "anth:claude-json", "messages": HI, "response_format": rf})
    assert [e["type"] for e in events] == ["start", "text_delta", "text_delta", "usage", "done"]
    assert json.loads(text_of(events)) == {"name": "Ada", "age": 36}
    assert events[-1]["finish_reason"] == "stop"
    sent = upstream.seen[-1].body
    assert [t["name"] for t in sent["tools"]] == [JSON_TOOL] and sent["tools"][0]["input_schema"] == SCHEMA
    assert sent["tool_choice"] == {"type": "tool", "name": JSON_TOOL}

    result = sidecar.call("complete_chat", {"model": "anth:claude-json", "messages": HI, "response_format": rf})
    assert json.loads(result["content"]) == {"name": "Ada", "age": 36}
    assert result["parts"] == [{"type": "text", "text": result["content"]}] and result["finish_reason"] == "stop"


def test_images_for_a_model_without_vision_are_refused_before_the_network(data_dir: Path, upstream: Upstream) -> None:
    sc = Sidecar(data_dir, "--base-url", f"deepseek={upstream.base_url}",
                 env={"DEEPSEEK_API_KEY": "sk-deepseek-test-0123456789"})
    try:
        sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
        msgs = [{"role": "user", "content": IMAGES}]
        for method in ("llm_stream_text", "complete_chat"):
            resp = sc.request(method, {"model": "deepseek:deepseek-chat", "messages": msgs})
            assert resp["error"]["code"] == -32000
            data = resp["error"]["data"]
            assert (data["code"], data["provider"]) == ("invalid_request", "deepseek")
            assert "deepseek:deepseek-chat" in resp["error"]["message"]
        assert upstream.seen == [], "no request went upstream"
        assert not any(m.get("method", "").startswith("llm-stream-") for m in sc.messages), "and no stream began"

        upstream.replies["deepseek-chat"] = Reply(chunks=openai_text("ok"))
        result = sc.call("complete_chat", {"model": "deepseek:deepseek-chat", "messages": HI})
        assert result["content"] == "ok" and len(upstream.seen) == 1, "the same model without images goes through"
    finally:
        sc.kill()
