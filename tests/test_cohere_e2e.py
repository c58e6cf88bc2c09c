"""The cohere protocol end to end: the real sidecar process, driven over its pipes, with its key in the
environment, against a real HTTP server on 127.0.0.1 that answers like Cohere's v2 chat API (SSE events
named after their ``type``) and its model list.

Expected values are written out by hand or read from the recorded payloads with the stdlib ``json`` module.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from conftest import ModuleSidecar
from harness import FIXTURES, Reply, Sidecar, Upstream, check_stream_invariants, fixture_payloads, text_of

KEY = "co-test-0123456789abcdefSECRET"
MODEL = "command-a-03-2025"
MSGS = [{"role": "user", "content": "hi"}]
DOMAIN_ERROR = -32000
COHERE_FIXTURES = sorted(p.name for p in (FIXTURES / "cohere").iterdir() if p.is_file())


# --- fixtures: one keyed sidecar for the module, one upstream per test (open until the module ends) ---


@pytest.fixture
def sidecar(module_sidecar: ModuleSidecar) -> Iterator[Sidecar]:
    sc = module_sidecar.get(env={
        "MY_CO_KEY": KEY, "LLM_SIDECAR_ALLOW_ENV": "MY_CO_KEY=127.0.0.1,NOT_SET_ANYWHERE=127.0.0.1"})
    yield sc
    assert sc.bad_lines == [], "stdout carried a line that is not JSON"
    text = b"".join(sc.raw_lines).decode()
    assert KEY[8:20] not in text, "the key never leaves the sidecar"


@pytest.fixture
def upstream(module_sidecar: ModuleSidecar) -> Upstream:
    return module_sidecar.upstream()


def register(sc: Sidecar, upstream: Upstream, provider_id: str = "co", **extra: Any) -> None:
    sc.call("llm_register_custom_provider", {
        "id": provider_id, "name": "C", "protocol": "cohere", "base_url": f"http://127.0.0.1:{upstream.port}",
        "api_key_env": "MY_CO_KEY", **extra})


# --- Cohere's wire ---------------------------------------------------------------------------------


def cohere_sse(payloads: Iterable[dict[str, Any] | str]) -> list[bytes]:
    """``event: <type>`` + ``data: <json>`` per event, as Cohere sends them; no [DONE] (message-end ends it)."""
    out = []
    for p in payloads:
        data = p if isinstance(p, str) else json.dumps(p)
        kind = json.loads(data).get("type", "")
        out.append(f"event: {kind}\ndata: {data}\n\n".encode())
    return out


def reply(payloads: Iterable[dict[str, Any] | str], **kw: Any) -> Reply:
    return Reply(chunks=cohere_sse(payloads), **kw)


def json_reply(status: int, obj: Any) -> Reply:
    return Reply(status=status, chunks=[json.dumps(obj).encode()], headers={"content-type": "application/json"})


START = {"id": "c9117d7f", "type": "message-start",
         "delta": {"message": {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}}}


def block(index: int, kind: str, *pieces: str) -> list[dict[str, Any]]:
    return [{"type": "content-start", "index": index, "delta": {"message": {"content": {"type": kind, kind: ""}}}},
            *({"type": "content-delta", "index": index, "delta": {"message": {"content": {kind: p}}}} for p in pieces),
            {"type": "content-end", "index": index}]


def end(reason: str = "COMPLETE", inp: int = 507, out: int = 10, cached: int | None = None,
        **extra: Any) -> dict[str, Any]:
    usage: dict[str, Any] = {"billed_units": {"input_tokens": 12, "output_tokens": 7},
                             "tokens": {"input_tokens": inp, "output_tokens": out}}
    if cached is not None:
        usage["cached_tokens"] = cached
    return {"type": "message-end", "delta": {"finish_reason": reason, "usage": usage, **extra}}


def run(sc: Sidecar, model: str = MODEL, provider: str = "co", **params: Any) -> list[dict[str, Any]]:
    result = sc.call("llm_stream_text", {"model": f"{provider}:{model}", "messages": MSGS, **params})
    sid = result["stream_id"]
    sc.wait_stream_end(sid)
    sc.call("sidecar_info")  # a round trip: anything sent after the terminal event is in by now
    events = sc.events(sid)
    check_stream_invariants(events)
    return events


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def new_model() -> str:
    return f"command-{uuid.uuid4().hex[:8]}"


# --- recorded streams ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", COHERE_FIXTURES)
def test_recorded_stream_replayed(sidecar: Sidecar, upstream: Upstream, name: str) -> None:
    register(sidecar, upstream)
    model = new_model()
    payloads = fixture_payloads(f"cohere/{name}")
    upstream.replies[model] = reply(payloads)
    events = run(sidecar, model)

    objs = [json.loads(p) for p in payloads]
    contents = [o["delta"]["message"]["content"] for o in objs if o["type"] == "content-delta"]
    plan = "".join(o["delta"]["message"]["tool_plan"] for o in objs if o["type"] == "tool-plan-delta")
    calls = [o["delta"]["message"]["tool_calls"] for o in objs if o["type"] == "tool-call-start"]
    last = objs[-1]["delta"]
    assert text_of(events) == "".join(c.get("text", "") for c in contents)
    assert "".join(e["text"] for e in events if e["type"] == "reasoning_delta") == (
        "".join(c.get("thinking", "") for c in contents) + plan)
    got = [(e["tool_call_id"], e["name"]) for e in events if e["type"] == "tool_call"]
    assert got == [(c["id"], c["function"]["name"]) for c in calls]
    done = events[-1]
    assert done["type"] == "done", done
    assert done["finish_reason"] == {"COMPLETE": "stop", "TOOL_CALL": "tool_calls"}[last["finish_reason"]]
    assert done["usage"]["input_tokens"] == last["usage"]["tokens"]["input_tokens"]
    assert done["usage"]["output_tokens"] == last["usage"]["tokens"]["output_tokens"]
    assert done["usage"].get("cached_input_tokens") == last["usage"].get("cached_tokens")

    [seen] = upstream.seen
    assert (seen.method, seen.path) == ("POST", "/v2/chat")
    assert seen.headers["authorization"] == f"Bearer {KEY}"
    assert seen.body["stream"] is True and seen.body["model"] == model


def test_recorded_tool_call_arguments(sidecar: Sidecar, upstream: Upstream) -> None:
    register(sidecar, upstream)
    model = new_model()
    upstream.replies[model] = reply(fixture_payloads("cohere/tool-call.chunks.txt"))
    events = run(sidecar, model)
    calls = [(e["tool_call_id"], e["name"], e["arguments"]) for e in events if e["type"] == "tool_call"]
    assert calls == [("weather_e8p4pn45zt0t", "weather", {"location": "San Francisco"}),
                     ("cityAttractions_pyxssbwnq9fq", "cityAttractions", {"city": "San Francisco"})]
    streamed = "".join(e["arguments_delta"] for e in events
                       if e["type"] == "tool_call_delta" and e["tool_call_id"] == "weather_e8p4pn45zt0t")
    assert streamed == '{"location": "San Francisco"}'
    assert [(e["tool_call_id"], e["index"]) for e in events if e["type"] == "tool_call_start"] == [
        ("weather_e8p4pn45zt0t", 0), ("cityAttractions_pyxssbwnq9fq", 1)]


# --- hand-made streams ---------------------------------------------------------------------------


def test_reasoning_then_text(sidecar: Sidecar, upstream: Upstream) -> None:
    register(sidecar, upstream)
    model = new_model()
    upstream.replies[model] = reply([START, *block(0, "thinking", "2 and ", "2 make 4."),
                                     *block(1, "text", "The answer ", "is 4."), end("COMPLETE", 1394, 54, 1360)])
    events = run(sidecar, model, reasoning={"budget_tokens": 1024})
    assert types(events) == ["start", "reasoning_delta", "reasoning_delta", "reasoning_end", "text_delta",
                             "text_delta", "usage", "done"]
    assert "".join(e["text"] for e in events if e["type"] == "reasoning_delta") == "2 and 2 make 4."
    assert text_of(events) == "The answer is 4."
    usage = events[-2]
    assert (usage["input_tokens"], usage["output_tokens"], usage["cached_input_tokens"]) == (1394, 54, 1360)
    assert events[-1]["finish_reason"] == "stop"
    assert upstream.seen[0].body["thinking"] == {"type": "enabled", "token_budget": 1024}


def test_tool_call(sidecar: Sidecar, upstream: Upstream) -> None:
    register(sidecar, upstream)
    model = new_model()
    upstream.replies[model] = reply([
        START,
        {"type": "tool-plan-delta", "delta": {"message": {"tool_plan": "I will look it up."}}},
        {"type": "tool-call-start", "index": 0, "delta": {"message": {"tool_calls": {
            "id": "lookup_1", "type": "function", "function": {"name": "lookup", "arguments": ""}}}}},
        *({"type": "tool-call-delta", "index": 0, "delta": {"message": {"tool_calls": {"function": {"arguments": a}}}}}
          for a in ('{"q": ', '"life"}')),
        {"type": "tool-call-end", "index": 0},
        end("TOOL_CALL", 100, 20),
    ])
    tools = [{"name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}]
    events = run(sidecar, model, tools=tools, tool_choice="required")
    assert types(events) == ["start", "reasoning_delta", "reasoning_end", "tool_call_start", "tool_call_delta",
                             "tool_call_delta", "tool_call", "usage", "done"]
    start, call = events[3], events[6]
    assert (start["tool_call_id"], start["name"], start["index"]) == ("lookup_1", "lookup", 0)
    assert (call["tool_call_id"], call["name"], call["arguments"]) == ("lookup_1", "lookup", {"q": "life"})
    assert events[-1]["finish_reason"] == "tool_calls"
    body = upstream.seen[0].body
    assert body["tools"] == [{"type": "function", "function": tools[0]}]
    assert body["tool_choice"] == "REQUIRED"


def test_request_sent_upstream(sidecar: Sidecar, upstream: Upstream) -> None:
    register(sidecar, upstream, headers={"X-Client-Name": "desk-app"}, extra_body={"safety_mode": "CONTEXTUAL"})
    model = new_model()
    upstream.replies[model] = reply([START, *block(0, "text", "ok"), end()])
    messages = [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": [
            {"type": "reasoning", "text": "I will use get_weather."},
            {"type": "tool_call", "id": "w_1", "name": "get_weather", "arguments": {"city": "Oslo"}}]},
        {"role": "tool", "tool_call_id": "w_1", "content": "sunny"},
    ]
    run(sidecar, model, messages=messages, system="Be brief.", temperature=0.3, top_p=0.8, max_tokens=40,
        stop=["END"], seed=3, response_format={"type": "json_object"}, provider_options={"k": 9})
    seen = upstream.seen[0]
    assert seen.headers["x-client-name"] == "desk-app"
    assert "text/event-stream" in seen.headers["accept"]
    body = seen.body
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "tool_plan": "I will use get_weather.", "tool_calls": [
            {"id": "w_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "w_1", "content": "sunny"},
    ]
    assert {k: body[k] for k in ("temperature", "p", "max_tokens", "stop_sequences", "seed", "k", "safety_mode")} == {
        "temperature": 0.3, "p": 0.8, "max_tokens": 40, "stop_sequences": ["END"], "seed": 3, "k": 9,
        "safety_mode": "CONTEXTUAL"}
    assert body["response_format"] == {"type": "json_object"}


# --- failures ---------------------------------------------------------------------------------


def test_generation_error_mid_stream(sidecar: Sidecar, upstream: Upstream) -> None:
    register(sidecar, upstream)
    model = new_model()
    upstream.replies[model] = reply([START, {"type": "content-start", "index": 0,
                                             "delta": {"message": {"content": {"type": "text", "text": ""}}}},
                                     {"type": "content-delta", "index": 0,
                                      "delta": {"message": {"content": {"text": "Part"}}}},
                                     end("ERROR", error="internal error while generating")])
    events = run(sidecar, model)
    assert types(events) == ["start", "text_delta", "error"]
    err = events[-1]["error"]
    assert err["code"] == "upstream_unavailable" and err["provider"] == "co"
    assert err["message"] == "co: internal error while generating"


def test_connection_dropped_mid_stream(sidecar: Sidecar, upstream: Upstream) -> None:
    register(sidecar, upstream)
    model = new_model()
    upstream.replies[model] = reply([START, *block(0, "text", "Hel")][:3], drop=True)
    events = run(sidecar, model)
    assert text_of(events) == "Hel"
    assert events[-1]["type"] == "error" and events[-1]["error"]["code"] == "network_error"


def test_unauthorized(sidecar: Sidecar, upstream: Upstream) -> None:
    register(sidecar, upstream)
    upstream.replies["bad"] = json_reply(401, {"id": "e1", "message": f"invalid api token {KEY}"})
    events = run(sidecar, "bad")
    err = events[-1]["error"]
    assert (err["code"], err["status"], err["retryable"]) == ("authentication_failed", 401, False)
    assert KEY[8:20] not in err["message"]


def test_unknown_model(sidecar: Sidecar, upstream: Upstream) -> None:
    register(sidecar, upstream)
    upstream.replies["command-z"] = json_reply(404, {"message": "model 'command-z' not found, make sure the correct "
                                                                "model ID was used and that you have access"})
    events = run(sidecar, "command-z")
    assert events[-1]["error"]["code"] == "unknown_model"


def test_missing_key_is_the_response_error(sidecar: Sidecar, upstream: Upstream) -> None:
    register(sidecar, upstream, provider_id="co-nokey", api_key_env="NOT_SET_ANYWHERE")
    resp = sidecar.request("llm_stream_text", {"model": "co-nokey:m", "messages": MSGS})
    assert resp["error"]["code"] == DOMAIN_ERROR and resp["error"]["data"]["code"] == "missing_api_key"
    assert upstream.seen == []


# --- complete_chat and the model list ------------------------------------------------------------------


def test_complete_chat(sidecar: Sidecar, upstream: Upstream) -> None:
    register(sidecar, upstream)
    model = new_model()
    upstream.replies[model] = reply(fixture_payloads("cohere/reasoning.chunks.txt"))
    result = sidecar.call("complete_chat", {"model": f"co:{model}", "messages": MSGS})
    assert result["content"] == "The answer to 2 + 2 is 4."
    assert [p["type"] for p in result["parts"]] == ["reasoning", "text"]
    assert result["parts"][0]["text"].startswith("The user is asking for the sum of 2 and 2.")
    assert result["finish_reason"] == "stop"
    assert (result["usage"]["input_tokens"], result["usage"]["output_tokens"]) == (1394, 54)
    assert result["usage"]["cached_input_tokens"] == 1360
    assert result["model"] == f"co:{model}"


def test_list_available_models(sidecar: Sidecar, upstream: Upstream) -> None:
    register(sidecar, upstream, provider_id="co-list")
    upstream.replies["/v1/models?endpoint=chat&page_size=1000"] = json_reply(200, {"models": [
        {"name": "command-a-03-2025", "endpoints": ["chat"], "finetuned": False, "context_length": 256000,
         "features": ["tools", "json_mode"]},
        {"name": "command-r7b-12-2024", "endpoints": ["chat"], "context_length": 128000},
    ], "next_page_token": ""})
    models = sidecar.call("llm_list_available_models", {"provider": "co-list"})
    assert [(m["id"], m.get("context_window")) for m in models] == [
        ("co-list:command-a-03-2025", 256000), ("co-list:command-r7b-12-2024", 128000)]
    assert models[0]["supports_tools"] is True
    [seen] = upstream.seen
    assert seen.method == "GET" and seen.path.startswith("/v1/models")
    assert seen.headers["authorization"] == f"Bearer {KEY}"
