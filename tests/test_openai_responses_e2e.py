"""The ``openai-responses`` protocol end to end: the real sidecar process, the built-in ``openai`` provider pointed
at the harness's loopback upstream by the app's trusted side (``--base-url``), and a custom provider speaking the
protocol; the upstream replays the recorded Responses streams (raw ``.sse`` bodies as recorded, ``.chunks.txt``
rebuilt with their ``event:`` lines). Expected values are read off the recordings by hand or with ``json``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from harness import FIXTURES, Reply, Sidecar, Upstream, check_stream_invariants, fixture_body, fixture_payloads, text_of
from test_loop import Script

KEY = "sk-proj-responses-e2e-0123456789abcdefSECRET"
MSGS = [{"role": "user", "content": "hi"}]
NO_RETRY = {"max_retries": 0}
RECORDINGS = sorted(f"openai-responses/{p.name}" for p in (FIXTURES / "openai-responses").iterdir())


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    server.replies = Script()
    yield server
    server.close()


@pytest.fixture(scope="module")
def sidecar(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    """The catalog's openai and openrouter providers on the loopback upstream, and a custom provider ``resp``
    whose protocol is ``openai-responses``."""
    sc = Sidecar(tmp_path_factory.mktemp("data"), "--base-url", f"openai={upstream.base_url}",
                 "--base-url", f"openrouter=http://127.0.0.1:{upstream.port}/api/v1",
                 "--base-url", f"azure-openai=http://127.0.0.1:{upstream.port}/openai",
                 env={"OPENAI_API_KEY": KEY, "OPENROUTER_API_KEY": KEY, "AZURE_OPENAI_API_KEY": KEY})
    sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
    sc.call("llm_register_custom_provider", {"id": "resp", "name": "R", "protocol": "openai-responses",
                                             "base_url": upstream.base_url, "requires_api_key": False})
    yield sc
    sc.kill()
    assert sc.bad_lines == [], "stdout carried a line that is not JSON"
    assert KEY.encode() not in b"".join(sc.raw_lines), "the key never goes to the frontend"


def body_of(name: str) -> list[bytes]:
    """The wire body: a raw ``.sse`` as recorded; ``.chunks.txt`` with ``event: <type>`` before each payload."""
    if name.endswith(".sse"):
        return fixture_body(name)
    return [f"event: {json.loads(p)['type']}\ndata: {p}\n\n".encode() for p in fixture_payloads(name)]


def frames(*events: dict[str, Any]) -> list[bytes]:
    """Hand-written events (NOT recorded), framed as the recordings are."""
    return [f"event: {e['type']}\ndata: {json.dumps(e, separators=(',', ':'))}\n\n".encode() for e in events]


def payloads(name: str) -> list[dict[str, Any]]:
    return [json.loads(p) for p in fixture_payloads(name)]


def stream(sc: Sidecar, model: str, **params: Any) -> list[dict[str, Any]]:
    sid = f"r-{uuid.uuid4().hex[:10]}"
    sc.call("llm_stream_text", {"stream_id": sid, "model": model, "messages": MSGS, "retry": NO_RETRY, **params})
    events = sc.wait_stream_end(sid)
    sc.call("sidecar_info")  # anything wrongly sent after the terminal event is in by now
    events = sc.events(sid)
    check_stream_invariants(events)
    return events


def seen_for(upstream: Upstream, model: str) -> list[Any]:
    return [s for s in upstream.seen if isinstance(s.body, dict) and s.body.get("model") == model]


def unique(base: str) -> str:
    return f"{base}-{uuid.uuid4().hex[:8]}"


# --- the bars -------------------------------------------------------------------------------------------------


def test_a_responses_only_catalog_model_goes_to_responses(sidecar: Sidecar, upstream: Upstream) -> None:
    name = "openai-responses/reasoning-summary-code-interpreter.sse"
    upstream.replies["gpt-5-pro"] = Reply(chunks=body_of(name))
    events = stream(sidecar, "openai:gpt-5-pro", reasoning={"effort": "high"})
    (seen,) = seen_for(upstream, "gpt-5-pro")
    assert (seen.method, seen.path) == ("POST", "/v1/responses")  # not /v1/chat/completions
    assert seen.headers["authorization"] == f"Bearer {KEY}"
    assert seen.body["stream"] is True and seen.body["store"] is False
    assert seen.body["include"] == ["reasoning.encrypted_content"]
    assert seen.body["reasoning"] == {"effort": "high", "summary": "auto"}
    assert seen.body["input"] == [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}]
    done_text = next(p["text"] for p in payloads(name) if p["type"] == "response.output_text.done")
    assert text_of(events) == done_text
    done = events[-1]
    assert done["type"] == "done" and done["finish_reason"] == "stop" and done["model"] == "openai:gpt-5-pro"
    # read off the recording's response.completed
    assert done["usage"] == {"input_tokens": 3727, "output_tokens": 347, "reasoning_tokens": 128,
                             "cached_input_tokens": 3200}
    (end,) = [e for e in events if e["type"] == "reasoning_end"]
    assert json.loads(end["signature"])["encrypted_content"].startswith("gAAAAABow1CfwMTF6GjgPzWVr8oKbF")


def test_a_two_step_tool_loop_sends_the_reasoning_item_back_unchanged(sidecar: Sidecar, upstream: Upstream) -> None:
    """Step 1 is spliced from recorded events: the reasoning item (added with one encrypted_content, done with
    another) of the code-interpreter recording, then the function call of function-call.sse; step 2 replays the
    text recording."""
    reasoning_src = payloads("openai-responses/reasoning-summary-code-interpreter.sse")
    added = next(p for p in reasoning_src if p["type"] == "response.output_item.added")
    done = next(p for p in reasoning_src if p["type"] == "response.output_item.done")
    assert added["item"]["type"] == done["item"]["type"] == "reasoning"
    call_src = payloads("openai-responses/function-call.sse")
    call_events = [p for p in call_src if p["type"].startswith(("response.output_item", "response.function_call"))]
    completed = {"type": "response.completed", "response": {
        "status": "completed", "output": [done["item"], call_events[-1]["item"]],
        "usage": {"input_tokens": 255, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 16,
                  "output_tokens_details": {"reasoning_tokens": 9}, "total_tokens": 271}}}
    model = "gpt-5-codex"
    upstream.replies[model] = [Reply(chunks=frames(added, done, *call_events, completed)),
                               Reply(chunks=body_of("openai-responses/text-event-lines.sse"))]
    sid = f"loop-{uuid.uuid4().hex[:10]}"
    tools = [{"name": "get_capital", "parameters": {"type": "object", "properties": {"country": {"type": "string"}}}}]
    started = sidecar.call("llm_chat_loop_start", {"model": f"openai:{model}", "messages": MSGS, "tools": tools,
                                                   "retry": NO_RETRY, "stream_id": sid})
    requested = sidecar.wait_for(lambda m: m.get("method") == f"llm-stream-{sid}"
                                 and m["params"]["type"] in ("tool_calls_requested", "error", "done"))["params"]
    assert requested["type"] == "tool_calls_requested", requested
    assert requested["calls"] == [{"tool_call_id": "call_kL0PCQV7M2WMoVX8V8OtYSAL", "name": "get_capital",
                                   "arguments": {"country": "France"}}]
    sidecar.call("llm_submit_tool_results", {"loop_id": started["loop_id"], "results": [
        {"tool_call_id": "call_kL0PCQV7M2WMoVX8V8OtYSAL", "content": "Paris"}]})
    sidecar.wait_stream_end(sid)
    events = sidecar.events(sid)
    check_stream_invariants(events)
    first, second = seen_for(upstream, model)
    assert first.path == second.path == "/v1/responses"
    item = done["item"]
    assert second.body["input"] == [
        {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
        item,
        {"type": "function_call", "call_id": "call_kL0PCQV7M2WMoVX8V8OtYSAL", "name": "get_capital",
         "arguments": '{"country":"France"}'},
        {"type": "function_call_output", "call_id": "call_kL0PCQV7M2WMoVX8V8OtYSAL", "output": "Paris"},
    ]
    assert second.body["input"][1]["encrypted_content"] == done["item"]["encrypted_content"]
    assert added["item"]["encrypted_content"] not in json.dumps(second.body)  # the announced one is not the one
    end = events[-1]
    assert end["type"] == "done" and end["finish_reason"] == "stop"
    assert text_of(events) == "The capital of France is Paris."
    # usage adds up: step 1 (hand-written above) + the text recording's 278 in, 9 out
    assert end["usage"]["input_tokens"] == 255 + 278 and end["usage"]["output_tokens"] == 16 + 9
    assert end["usage"]["reasoning_tokens"] == 9


def test_incomplete_at_max_output_tokens_finishes_as_length(sidecar: Sidecar, upstream: Upstream) -> None:
    model = unique("inc")
    upstream.replies[model] = Reply(chunks=frames(
        {"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "content_index": 0,
         "delta": "The answer is"},
        {"type": "response.incomplete", "response": {"status": "incomplete",
                                                     "incomplete_details": {"reason": "max_output_tokens"},
                                                     "usage": {"input_tokens": 8, "output_tokens": 16}}}))
    events = stream(sidecar, f"resp:{model}", max_tokens=16)
    assert seen_for(upstream, model)[0].body["max_output_tokens"] == 16
    assert text_of(events) == "The answer is"
    assert events[-1]["type"] == "done" and events[-1]["finish_reason"] == "length"
    assert events[-1]["usage"] == {"input_tokens": 8, "output_tokens": 16}


def test_failed_ends_with_a_contract_error(sidecar: Sidecar, upstream: Upstream) -> None:
    model = unique("quota")
    upstream.replies[model] = Reply(chunks=body_of("openai-responses/error-insufficient-quota.chunks.txt"))
    events = stream(sidecar, f"resp:{model}")
    err = events[-1]
    assert err["type"] == "error"
    assert err["error"]["code"] == "rate_limited" and err["error"]["retryable"] is False
    assert "You exceeded your current quota" in err["error"]["message"]

    model = unique("failed")
    upstream.replies[model] = Reply(chunks=frames({"type": "response.failed", "response": {
        "status": "failed", "error": {"code": "server_error", "message": "The server had an error"}}}))
    events = stream(sidecar, f"resp:{model}")
    assert events[-1]["type"] == "error" and events[-1]["error"]["code"] == "upstream_unavailable"


# --- every recording, end to end --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", RECORDINGS)
def test_every_recording_end_to_end(sidecar: Sidecar, upstream: Upstream, name: str) -> None:
    model = unique("rec")
    upstream.replies[model] = Reply(chunks=body_of(name))
    events = stream(sidecar, f"resp:{model}")
    recorded = payloads(name)
    if any(p["type"] == "error" for p in recorded):
        assert events[-1]["type"] == "error"
        return
    final = next(p["response"] for p in recorded if p["type"] == "response.completed")
    assert text_of(events) == "".join(p["text"] for p in recorded if p["type"] == "response.output_text.done")
    done = events[-1]
    assert done["type"] == "done"
    assert (done["usage"]["input_tokens"], done["usage"]["output_tokens"]) == (
        final["usage"]["input_tokens"], final["usage"]["output_tokens"])
    calls = [it["call_id"] for it in final["output"] if it["type"] == "function_call"]
    assert [e["tool_call_id"] for e in events if e["type"] == "tool_call"] == calls
    assert done["finish_reason"] == ("tool_calls" if calls else "stop")


# --- routing -----------------------------------------------------------------------------------------------------


def test_provider_options_api_overrides_per_request(sidecar: Sidecar, upstream: Upstream) -> None:
    text = body_of("openai-responses/text-event-lines.sse")
    upstream.replies["gpt-4.1"] = Reply(chunks=text)
    events = stream(sidecar, "openai:gpt-4.1", provider_options={"api": "responses", "service_tier": "flex"})
    (seen,) = seen_for(upstream, "gpt-4.1")
    assert seen.path == "/v1/responses" and "api" not in seen.body and seen.body["service_tier"] == "flex"
    assert "include" not in seen.body  # the catalog says gpt-4.1 does not reason
    assert text_of(events) == "The capital of France is Paris."

    # and back: a Responses-only model (as the catalog has it) sent to chat completions when the app says so
    upstream.replies["o3-pro"] = Reply(chunks=[
        b'data: {"choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":"stop"}]}\n\n', b"data: [DONE]\n\n"])
    events = stream(sidecar, "openai:o3-pro", provider_options={"api": "chat"})
    (seen,) = seen_for(upstream, "o3-pro")
    assert seen.path == "/v1/chat/completions" and "api" not in seen.body
    assert text_of(events) == "ok"


def test_a_bad_api_value_is_the_rpc_error(sidecar: Sidecar) -> None:
    resp = sidecar.request("llm_stream_text", {"model": "openai:gpt-4.1", "messages": MSGS,
                                               "provider_options": {"api": "assistants"}})
    assert resp["error"]["data"]["code"] == "invalid_request"
    assert "provider_options.api" in resp["error"]["message"]


def test_an_output_without_its_call_is_the_rpc_error(sidecar: Sidecar) -> None:
    resp = sidecar.request("llm_stream_text", {"model": "resp:m", "messages": [
        *MSGS, {"role": "tool", "tool_call_id": "call_x", "content": "42"}]})
    assert resp["error"]["data"]["code"] == "invalid_request" and "call_x" in resp["error"]["message"]


def test_configure_provider_chooses_the_responses_protocol(sidecar: Sidecar, upstream: Upstream) -> None:
    info = sidecar.call("configure_provider", {"id": "openrouter", "protocol": "openai-responses"})
    assert info["protocol"] == "openai-responses"
    try:
        model = "openai/gpt-4o-mini"
        upstream.replies[model] = Reply(chunks=fixture_body("openrouter/responses-reasoning-text.sse"))
        events = stream(sidecar, f"openrouter:{model}")
        (seen,) = seen_for(upstream, model)
        assert seen.path == "/api/v1/responses" and seen.headers["authorization"] == f"Bearer {KEY}"
        assert text_of(events) == "4" and events[-1]["finish_reason"] == "stop"  # the stream ends with [DONE]
    finally:
        back = sidecar.call("configure_provider", {"id": "openrouter", "protocol": None})
        assert back["protocol"] == "openai"
    refused = sidecar.request("configure_provider", {"id": "anthropic", "protocol": "openai-responses"})
    assert refused["error"]["data"]["code"] == "invalid_request"


def test_azure_serves_responses_at_its_v1_path(sidecar: Sidecar, upstream: Upstream) -> None:
    deployment = unique("my-gpt5")
    upstream.replies[deployment] = Reply(chunks=body_of("openai-responses/text-event-lines.sse"))
    events = stream(sidecar, f"azure-openai:{deployment}", provider_options={"api": "responses"})
    (seen,) = seen_for(upstream, deployment)
    assert seen.path == "/openai/v1/responses"  # the deployment goes as the model, no api-version
    assert seen.headers["api-key"] == KEY and "authorization" not in seen.headers
    assert text_of(events) == "The capital of France is Paris."


def test_a_custom_openai_provider_switches_protocol(sidecar: Sidecar, upstream: Upstream) -> None:
    sidecar.call("llm_register_custom_provider", {"id": "oaichat", "name": "C", "protocol": "openai",
                                                  "base_url": upstream.base_url, "requires_api_key": False})
    info = sidecar.call("configure_provider", {"id": "oaichat", "protocol": "openai-responses"})
    assert info["protocol"] == "openai-responses"
    model = unique("switched")
    upstream.replies[model] = Reply(chunks=body_of("openai-responses/text-event-lines.sse"))
    stream(sidecar, f"oaichat:{model}")
    assert [s.path for s in seen_for(upstream, model)] == ["/v1/responses"]
    refused = sidecar.request("configure_provider", {"id": "oaichat", "protocol": None})
    assert refused["error"]["data"]["code"] == "invalid_request"


def test_the_catalog_says_which_models_need_responses(sidecar: Sidecar) -> None:
    models = {m["id"]: m for m in sidecar.call("llm_list_available_models", {"provider": "openai"})}
    assert models["openai:gpt-5-pro"]["api"] == "responses"
    assert models["openai:gpt-5-codex"]["api"] == "responses"
    assert "api" not in models["openai:gpt-4.1"]
    providers = {p["id"]: p for p in sidecar.call("list_providers")}
    assert providers["resp"]["protocol"] == "openai-responses"


# --- retries, fallbacks, usage and cost ---------------------------------------------------------------------------


def test_a_429_is_retried_after_the_ratelimit_reset_headers(sidecar: Sidecar, upstream: Upstream) -> None:
    model = unique("limited")
    limited = Reply(status=429, headers={"content-type": "application/json", "x-ratelimit-reset-requests": "40ms",
                                         "x-ratelimit-reset-tokens": "250ms"},
                    chunks=[b'{"error":{"message":"Rate limit reached","type":"requests",'
                            b'"code":"rate_limit_exceeded"}}'])
    upstream.replies[model] = [limited, Reply(chunks=body_of("openai-responses/text-event-lines.sse"))]
    events = stream(sidecar, f"resp:{model}", retry={"max_retries": 2})
    retries = [e for e in events if e["type"] == "retry"]
    assert [(r["attempt"], r["delay_ms"], r["reason"]) for r in retries] == [(1, 250, "rate_limited")]
    assert text_of(events) == "The capital of France is Paris." and events[-1]["type"] == "done"
    assert [s.path for s in seen_for(upstream, model)] == ["/v1/responses", "/v1/responses"]


def test_a_fallback_from_a_failing_responses_model(sidecar: Sidecar, upstream: Upstream) -> None:
    bad, good = unique("down"), unique("up")
    upstream.replies[bad] = Reply(status=500, headers={"content-type": "application/json"},
                                  chunks=[b'{"error":{"message":"boom","type":"server_error"}}'])
    upstream.replies[good] = Reply(chunks=body_of("openai-responses/text-event-lines.sse"))
    events = stream(sidecar, f"resp:{bad}", fallback_models=[f"resp:{good}"])
    (fb,) = [e for e in events if e["type"] == "fallback"]
    assert (fb["from_model"], fb["to_model"], fb["reason"]) == (f"resp:{bad}", f"resp:{good}", "upstream_unavailable")
    assert events[-1]["type"] == "done" and events[-1]["model"] == f"resp:{good}"


def test_usage_and_cost_are_recorded(sidecar: Sidecar, upstream: Upstream) -> None:
    upstream.replies["o1-pro"] = Reply(chunks=body_of("openai-responses/reasoning-summary-code-interpreter.sse"))
    stream(sidecar, "openai:o1-pro")
    stats = sidecar.call("get_usage_stats", {"group_by": "model"})
    (group,) = [g for g in stats["groups"] if g["key"] == "openai:o1-pro"]
    assert (group["input_tokens"], group["output_tokens"], group["reasoning_tokens"], group["cached_input_tokens"]) \
        == (3727, 347, 128, 3200)
    # o1-pro's list price: 150 USD per 1M input tokens (no cached price: cached input at the input price), 600 output
    assert group["cost_usd"] == pytest.approx((3727 * 150 + 347 * 600) / 1_000_000)


# --- the proxy ----------------------------------------------------------------------------------------------------


def test_the_proxy_translates_chat_completions_for_a_responses_only_model(sidecar: Sidecar,
                                                                        upstream: Upstream) -> None:
    import openai

    upstream.replies["codex-mini-latest"] = Reply(chunks=body_of("openai-responses/function-call.sse"))
    proxy = sidecar.call("start_llm_proxy", {})
    client = openai.OpenAI(base_url=proxy["url"], api_key=proxy["token"], max_retries=0, timeout=15)
    tools: Any = [{"type": "function", "function": {
        "name": "get_capital", "parameters": {"type": "object", "properties": {"country": {"type": "string"}}}}}]
    chunks = list(client.chat.completions.create(
        model="openai:codex-mini-latest", stream=True, tools=tools,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}]))
    (seen,) = seen_for(upstream, "codex-mini-latest")
    assert seen.path == "/v1/responses"
    assert seen.body["input"] == [{"role": "system", "content": "Be brief."},
                                  {"role": "user", "content": [{"type": "input_text", "text": "Capital of France?"}]}]
    assert seen.body["tools"] == [{"type": "function", "name": "get_capital", "strict": False, "parameters": {
        "type": "object", "properties": {"country": {"type": "string"}}}}]
    calls: dict[int, dict[str, str]] = {}
    for c in chunks:
        for tc in (c.choices[0].delta.tool_calls or []) if c.choices else []:
            call = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += tc.id or ""
            call["name"] += (tc.function.name or "") if tc.function else ""
            call["arguments"] += (tc.function.arguments or "") if tc.function else ""
    assert list(calls.values()) == [{"id": "call_kL0PCQV7M2WMoVX8V8OtYSAL", "name": "get_capital",
                                     "arguments": '{"country":"France"}'}]
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]
    sidecar.call("stop_llm_proxy", {})
