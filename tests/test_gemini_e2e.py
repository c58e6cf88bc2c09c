"""Gemini through the real sidecar process, against a loopback upstream that replays Gemini's SSE.

The provider is a custom one (protocol ``gemini``) whose key comes from the environment; the upstream is
the harness's HTTP server on 127.0.0.1, answering by request path. Expected values come from the recorded
streams, read with the stdlib ``json`` module (``expected_of`` in test_gemini_protocol), or by hand.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import ModuleSidecar
from harness import FIXTURES, Reply, Sidecar, Upstream, check_stream_invariants, fixture_body, text_of
from test_gemini_protocol import FINISH, compact, expected_of, wire_messages

KEY = "AIzaSyE2E-0123456789abcdefSECRETKEY"
MSGS = [{"role": "user", "content": "hi"}]
GEMINI_FIXTURES = sorted(p.name for p in (FIXTURES / "gemini").iterdir() if p.is_file())


# --- one sidecar for the module (with the key in its environment), one upstream per test ---------------


@pytest.fixture
def sidecar(module_sidecar: ModuleSidecar) -> Iterator[Sidecar]:
    sc = module_sidecar.get("--allow-env", "MY_GEM_KEY=127.0.0.1", env={"MY_GEM_KEY": KEY})
    yield sc
    assert sc.bad_lines == [], "stdout carried a line that is not JSON"


@pytest.fixture
def upstream(module_sidecar: ModuleSidecar, sidecar: Sidecar) -> Upstream:
    server = module_sidecar.upstream()
    sidecar.call("llm_register_custom_provider", {
        "id": "gem", "name": "G", "protocol": "gemini", "base_url": f"http://127.0.0.1:{server.port}/v1beta",
        "api_key_env": "MY_GEM_KEY",
    })
    return server


# --- helpers ------------------------------------------------------------------------------------------


def path_of(model: str) -> str:
    return f"/v1beta/models/{model}:streamGenerateContent?alt=sse"


def gemini_sse(payloads: list[str | dict[str, Any]]) -> list[bytes]:
    """Frames as Gemini sends them: ``data:`` lines only, CRLF CRLF between events, no end marker."""
    return [b"data: " + (p if isinstance(p, str) else json.dumps(p)).encode() + b"\r\n\r\n" for p in payloads]


def recorded(name: str) -> list[bytes]:
    """A recording on the wire: ``.sse`` byte for byte (in odd-sized pieces), ``.chunks.txt`` reframed."""
    if name.endswith(".sse"):
        return fixture_body(f"gemini/{name}")
    return gemini_sse(list(wire_messages(name)))


def json_reply(status: int, obj: Any) -> Reply:
    return Reply(status=status, chunks=[json.dumps(obj).encode()], headers={"content-type": "application/json"})


def run(sc: Sidecar, model: str, **params: Any) -> list[dict[str, Any]]:
    stream_id = f"gem-{uuid.uuid4().hex[:10]}"
    result = sc.call("llm_stream_text", {"model": f"gem:{model}", "messages": MSGS, "stream_id": stream_id,
                                         **params})
    assert result["stream_id"] == stream_id
    sc.wait_stream_end(stream_id)
    sc.call("sidecar_info")  # a round trip: anything wrongly sent after the terminal event is read by now
    events = sc.events(stream_id)
    check_stream_invariants(events)
    assert events[0]["type"] == "start" and events[0]["model"] == f"gem:{model}"
    return events


def only_error(events: list[dict[str, Any]]) -> dict[str, Any]:
    assert [e["type"] for e in events] == ["start", "error"], events
    error: dict[str, Any] = events[-1]["error"]
    return error


def assert_no_key_fragment(text: str) -> None:
    for i in range(len(KEY) - 7):
        assert KEY[i:i + 8] not in text, f"part of the key leaked: {KEY[i:i + 8]!r}"


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


# --- recorded streams, end to end ------------------------------------------------------------------------


@pytest.mark.parametrize("name", GEMINI_FIXTURES)
def test_recorded_stream_end_to_end(sidecar: Sidecar, upstream: Upstream, name: str) -> None:
    upstream.replies[path_of("rec")] = Reply(chunks=recorded(name))
    exp = expected_of(wire_messages(name))
    events = run(sidecar, "rec")

    assert text_of(events) == exp.text
    assert "".join(e["text"] for e in events if e["type"] == "reasoning_delta") == exp.reasoning
    calls = [(e["tool_call_id"], e["name"], e["arguments"]) for e in events if e["type"] == "tool_call"]
    assert calls == [(c["id"], c["name"], c["args"]) for c in exp.calls]
    for index, c in enumerate(exp.calls):
        mine = [e for e in events if e.get("tool_call_id") == c["id"]]
        assert mine[0]["type"] == "tool_call_start" and mine[0]["index"] == index
        assert mine[-1]["type"] == "tool_call" and types(mine).count("tool_call") == 1
        assert "".join(e["arguments_delta"] for e in mine if e["type"] == "tool_call_delta") == compact(c["args"])
    signatures = [e["signature"] for e in events if e["type"] == "reasoning_end" and "signature" in e]
    assert signatures == exp.signatures

    assert exp.finish is not None and exp.usage is not None
    finish = FINISH.get(exp.finish, "other")
    done = events[-1]
    assert done["type"] == "done", done
    assert done["finish_reason"] == ("tool_calls" if finish == "stop" and exp.calls else finish)
    assert done["model"] == "gem:rec"
    [usage] = [e for e in events if e["type"] == "usage"]
    for got in (usage, done["usage"]):
        assert got["input_tokens"] == exp.usage["promptTokenCount"] + exp.usage.get("toolUsePromptTokenCount", 0)
        assert got["input_tokens"] + got["output_tokens"] == exp.usage["totalTokenCount"]
        assert got.get("reasoning_tokens", 0) == exp.usage.get("thoughtsTokenCount", 0)


# --- the request on the wire ---------------------------------------------------------------------------------


def test_request_sent_upstream(sidecar: Sidecar, upstream: Upstream) -> None:
    upstream.replies[path_of("gemini-2.5-flash")] = Reply(chunks=recorded("text.sse"))
    tools = [{"name": "get_weather", "description": "Weather for a city",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
    events = run(sidecar, "gemini-2.5-flash", system="Be brief.", temperature=0.3, max_tokens=50, tools=tools,
                 tool_choice="required", reasoning={"effort": "low"}, provider_options={"safetySettings": []})
    assert text_of(events) == "The capital of France is Paris.\n"

    [seen] = upstream.seen
    assert seen.method == "POST"
    assert seen.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert seen.headers["x-goog-api-key"] == KEY
    assert "key=" not in seen.path and KEY not in seen.path
    assert "authorization" not in seen.headers
    assert seen.headers["content-type"].startswith("application/json")
    assert seen.body == {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "tools": [{"functionDeclarations": tools}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
        "generationConfig": {"temperature": 0.3, "maxOutputTokens": 50,
                             "thinkingConfig": {"includeThoughts": True, "thinkingBudget": 1024}},
        "safetySettings": [],
    }


# --- event shapes ---------------------------------------------------------------------------------------------


def test_text_stream(sidecar: Sidecar, upstream: Upstream) -> None:
    upstream.replies[path_of("g-text")] = Reply(chunks=recorded("text.sse"))
    events = run(sidecar, "g-text")
    assert types(events) == ["start", "text_delta", "text_delta", "text_delta", "usage", "done"]
    assert [e["seq"] for e in events] == list(range(6))
    assert text_of(events) == "The capital of France is Paris.\n"
    done = events[-1]
    assert done["finish_reason"] == "stop"
    assert done["usage"] == {"input_tokens": 13, "output_tokens": 8}
    assert isinstance(done["latency_ms"], int | float)


def test_function_call(sidecar: Sidecar, upstream: Upstream) -> None:
    upstream.replies[path_of("g-call")] = Reply(chunks=recorded("function-call.sse"))
    events = run(sidecar, "g-call")
    assert types(events) == ["start", "tool_call_start", "tool_call_delta", "tool_call", "usage", "done"]
    start, delta, call = events[1:4]
    assert (start["tool_call_id"], start["name"], start["index"]) == ("call_0", "get_capital", 0)
    assert json.loads(delta["arguments_delta"]) == {"country": "France"}
    assert (call["tool_call_id"], call["name"], call["arguments"]) == ("call_0", "get_capital", {"country": "France"})
    assert events[-1]["finish_reason"] == "tool_calls"


def test_thoughts_with_a_signature(sidecar: Sidecar, upstream: Upstream) -> None:
    upstream.replies[path_of("g-think")] = Reply(chunks=recorded("thought-parts.sse"))
    events = run(sidecar, "g-think")
    kinds = types(events)
    assert kinds.count("reasoning_end") == 1
    end = kinds.index("reasoning_end")
    assert set(kinds[1:end]) == {"reasoning_delta"}
    assert kinds[end + 1] == "text_delta"
    assert events[end]["signature"].startswith("CiIB0e2Kb6Syj1a961EfbWv4W5C8RgAA")
    assert events[-1]["usage"]["reasoning_tokens"] == 787


def test_streamed_arguments(sidecar: Sidecar, upstream: Upstream) -> None:
    upstream.replies[path_of("g-stream")] = Reply(chunks=recorded("thought-and-no-args-function-calls.chunks.txt"))
    events = run(sidecar, "g-stream")
    calls = [(e["tool_call_id"], e["name"], e["arguments"]) for e in events if e["type"] == "tool_call"]
    assert calls == [("call_0", "read_theme", {}), ("call_1", "read_screen", {"id": "A"}),
                     ("call_2", "read_screen", {"id": "B"}), ("call_3", "read_screen", {"id": "C"})]
    assert events[-1]["finish_reason"] == "tool_calls"


# --- errors ---------------------------------------------------------------------------------------------------


def test_rate_limited(sidecar: Sidecar, upstream: Upstream) -> None:
    upstream.replies[path_of("g-429")] = json_reply(429, {"error": {
        "code": 429, "message": "You exceeded your current quota, please check your plan and billing details.",
        "status": "RESOURCE_EXHAUSTED", "details": [
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [
                {"quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "quotaValue": "10"}]},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "13s"}]}})
    error = only_error(run(sidecar, "g-429", retry={"max_retries": 0}))
    assert (error["code"], error["status"], error["retryable"], error["provider"]) == ("rate_limited", 429, True,
                                                                                         "gem")
    assert error["message"].startswith("gem: You exceeded your current quota")


def test_bad_key_is_authentication_failed_and_not_echoed(sidecar: Sidecar, upstream: Upstream) -> None:
    upstream.replies[path_of("g-key")] = json_reply(400, {"error": {
        "code": 400, "message": f"API key not valid. Please pass a valid API key. ({KEY})",
        "status": "INVALID_ARGUMENT", "details": [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]}})
    error = only_error(run(sidecar, "g-key"))
    assert (error["code"], error["status"], error["retryable"]) == ("authentication_failed", 400, False)
    assert_no_key_fragment(b"".join(sidecar.raw_lines).decode())


def test_unknown_model(sidecar: Sidecar, upstream: Upstream) -> None:
    upstream.replies[path_of("gemini-9")] = json_reply(404, {"error": {
        "code": 404, "message": "models/gemini-9 is not found for API version v1beta, or is not supported for "
                                "generateContent. Call ListModels to see the list of available models.",
        "status": "NOT_FOUND"}})
    assert only_error(run(sidecar, "gemini-9"))["code"] == "unknown_model"


def test_blocked_prompt(sidecar: Sidecar, upstream: Upstream) -> None:
    upstream.replies[path_of("g-block")] = Reply(chunks=gemini_sse([{
        "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
        "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9}, "modelVersion": "gemini-2.5-flash"}]))
    error = only_error(run(sidecar, "g-block"))
    assert (error["code"], error["retryable"]) == ("content_filtered", False)
    assert "PROHIBITED_CONTENT" in error["message"]


def test_error_inside_the_stream(sidecar: Sidecar, upstream: Upstream) -> None:
    upstream.replies[path_of("g-mid")] = Reply(chunks=gemini_sse([
        {"candidates": [{"content": {"parts": [{"text": "Hel"}], "role": "model"}, "index": 0}]},
        {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}},
    ]))
    events = run(sidecar, "g-mid")
    assert types(events) == ["start", "text_delta", "error"]
    assert events[-1]["error"]["code"] == "upstream_unavailable"


def test_stream_without_a_finish_reason_is_a_network_error(sidecar: Sidecar, upstream: Upstream) -> None:
    partial = gemini_sse([{"candidates": [{"content": {"parts": [{"text": "The"}], "role": "model"}}]}])
    upstream.replies[path_of("g-cut")] = Reply(chunks=partial)
    events = run(sidecar, "g-cut")
    assert types(events) == ["start", "text_delta", "error"]
    assert events[-1]["error"]["code"] == "network_error"


# --- complete_chat, and its parts sent back -------------------------------------------------------------------


def test_complete_chat(sidecar: Sidecar, upstream: Upstream) -> None:
    upstream.replies[path_of("g-cc")] = Reply(chunks=recorded("thought-parts.sse"))
    exp = expected_of(wire_messages("thought-parts.sse"))
    result = sidecar.call("complete_chat", {"model": "gem:g-cc", "messages": MSGS})
    assert result["content"] == exp.text
    assert result["parts"] == [
        {"type": "reasoning", "text": exp.reasoning, "signature": exp.signatures[0]},
        {"type": "text", "text": exp.text},
    ]
    assert result["finish_reason"] == "stop"
    assert result["usage"] == {"input_tokens": 34, "output_tokens": 469 + 787, "reasoning_tokens": 787}
    assert result["model"] == "gem:g-cc"


def test_complete_chat_parts_go_back_with_their_signature(sidecar: Sidecar, upstream: Upstream) -> None:
    model = "gemini-3-pro-preview"
    upstream.replies[path_of(model)] = Reply(chunks=recorded("function-call-thought-signature.sse"))
    first = sidecar.call("complete_chat", {"model": f"gem:{model}", "messages": MSGS})
    signature = expected_of(wire_messages("function-call-thought-signature.sse")).signatures[0]
    assert first["finish_reason"] == "tool_calls"
    assert first["parts"] == [
        {"type": "reasoning", "text": "", "signature": signature},
        {"type": "tool_call", "id": "call_0", "name": "get_country", "arguments": {}},
    ]

    upstream.replies[path_of(model)] = Reply(chunks=recorded("text.sse"))
    messages = [*MSGS, {"role": "assistant", "content": first["parts"]},
                {"role": "tool", "tool_call_id": "call_0", "content": "France"}]
    second = sidecar.call("complete_chat", {"model": f"gem:{model}", "messages": messages})
    assert second["content"] == "The capital of France is Paris.\n"
    assert upstream.seen[-1].body["contents"] == [
        {"role": "user", "parts": [{"text": "hi"}]},
        {"role": "model", "parts": [{"functionCall": {"id": "call_0", "name": "get_country", "args": {}},
                                     "thoughtSignature": signature}]},
        {"role": "user", "parts": [{"functionResponse": {"id": "call_0", "name": "get_country",
                                                         "response": {"content": "France"}}}]},
    ]


# --- the model list ---------------------------------------------------------------------------------------------


def test_connection_test_and_model_list(sidecar: Sidecar, upstream: Upstream) -> None:
    upstream.replies["/v1beta/models?pageSize=1000"] = json_reply(200, {"models": [
        {"name": "models/gemini-2.5-pro", "displayName": "Gemini 2.5 Pro", "inputTokenLimit": 1048576,
         "outputTokenLimit": 65536, "supportedGenerationMethods": ["generateContent", "countTokens"],
         "thinking": True},
        {"name": "models/embedding-001", "supportedGenerationMethods": ["embedContent"]},
    ]})
    result = sidecar.call("test_provider_connection", {"provider": "gem"})
    assert result["ok"] is True, result
    seen = upstream.seen[-1]
    assert (seen.method, seen.path) == ("GET", "/v1beta/models?pageSize=1000")
    assert seen.headers["x-goog-api-key"] == KEY

    models = sidecar.call("llm_list_available_models", {"provider": "gem", "refresh": True})
    assert [m["id"] for m in models] == ["gem:gemini-2.5-pro"]
    assert models[0]["name"] == "Gemini 2.5 Pro"
    assert models[0]["context_window"] == 1048576 and models[0]["max_output_tokens"] == 65536


def test_connection_test_with_a_bad_key(sidecar: Sidecar, upstream: Upstream) -> None:
    upstream.replies["/v1beta/models?pageSize=1000"] = json_reply(400, {"error": {
        "code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT"}})
    result = sidecar.call("test_provider_connection", {"provider": "gem", "api_key": "AIza-wrong-0123456789xyz"})
    assert result["ok"] is False
    assert (result["error"]["code"], result["error"]["status"]) == ("authentication_failed", 400)
    assert upstream.seen[-1].headers["x-goog-api-key"] == "AIza-wrong-0123456789xyz"
