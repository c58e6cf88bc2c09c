"""The anthropic protocol end to end: the real sidecar process, a custom provider whose key comes from
the environment, and the harness's HTTP upstream on 127.0.0.1 answering Anthropic-style SSE
(``event:`` lines, padded JSON). Expected values are written out here or read from the recordings
with the stdlib ``json`` module.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from harness import FIXTURES, Reply, Sidecar, Upstream, check_stream_invariants, fixture_payloads, text_of

KEY = "sk-ant-api03-e2e-secret-0123456789abcdef"
KEY_ENV = "MY_ANTH_KEY"
MSGS = [{"role": "user", "content": "hi"}]
NO_RETRY = {"max_retries": 0}


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.close()


@pytest.fixture(scope="module")
def sidecar(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    """One sidecar for the module (start-up costs more than the tests); replies are keyed by model."""
    sc = Sidecar(tmp_path_factory.mktemp("data"), "--allow-env", f"{KEY_ENV}=127.0.0.1", env={KEY_ENV: KEY})
    sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
    info = sc.call("llm_register_custom_provider", {
        "id": "anth", "name": "A", "protocol": "anthropic", "base_url": f"http://127.0.0.1:{upstream.port}",
        "requires_api_key": True, "api_key_env": KEY_ENV,
    })
    assert (info["has_api_key"], info["key_source"]) == (True, "env")
    yield sc
    sc.kill()
    assert sc.bad_lines == [], "stdout carried a line that is not JSON"
    assert KEY.encode() not in b"".join(sc.raw_lines), "the key never goes to the frontend"


# --- the upstream side ---------------------------------------------------------------------------


def frames(*payloads: dict[str, Any] | str, pad: bool = True) -> list[bytes]:
    """Anthropic's wire: `event: <type>` then `data: <json>`, the JSON padded with spaces as recorded."""
    out = []
    for p in payloads:
        data = p if isinstance(p, str) else json.dumps(p, separators=(",", ":"))
        kind = json.loads(data)["type"]
        if pad and data.endswith("}") and kind != "ping":
            data = data[:-1] + " " * 9 + "}"
        out.append(f"event: {kind}\ndata: {data}\n\n".encode())
    return out


def message_start(input_tokens: int = 25) -> dict[str, Any]:
    return {"type": "message_start", "message": {
        "model": "claude-test", "id": "msg_e2e", "type": "message", "role": "assistant", "content": [],
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                  "output_tokens": 1}}}


def start(index: int, **block: Any) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": block}


def delta(index: int, **d: Any) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": d}


def stop(index: int) -> dict[str, Any]:
    return {"type": "content_block_stop", "index": index}


def finish(reason: str, output_tokens: int) -> list[dict[str, Any]]:
    return [{"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": None},
             "usage": {"output_tokens": output_tokens}}, {"type": "message_stop"}]


PING = '{"type": "ping"}'


def recorded(name: str) -> list[bytes]:
    """A recording as it went on the wire: `.sse` bytes as they are, `.chunks.txt` with event lines."""
    path = FIXTURES / "anthropic" / name
    if name.endswith(".sse"):
        raw = path.read_bytes()
        if not raw.endswith(b"\n\n"):
            # the excerpt pasted from an issue lost its last blank line, without which SSE never
            # dispatches the final event (a real stream has it)
            raw = raw.rstrip(b"\n") + b"\n\n"
        return [raw[i:i + 500] for i in range(0, len(raw), 500)]  # odd piece sizes split frames
    return frames(*fixture_payloads(f"anthropic/{name}"), pad=False)


# --- the frontend side ---------------------------------------------------------------------------


def stream(sc: Sidecar, model: str, **params: Any) -> list[dict[str, Any]]:
    sid = f"anth-{uuid.uuid4().hex[:10]}"
    result = sc.call("llm_stream_text", {"model": f"anth:{model}", "messages": MSGS, "stream_id": sid,
                                         "retry": NO_RETRY, **params})
    assert result == {"stream_id": sid}
    sc.wait_stream_end(sid)
    sc.call("sidecar_info")  # a round trip: anything wrongly sent after the terminal event is in by now
    events = sc.events(sid)
    check_stream_invariants(events)
    assert events[0] == {"stream_id": sid, "seq": 0, "type": "start", "provider": "anth", "model": f"anth:{model}"}
    return events


def seen_for(upstream: Upstream, model: str) -> Any:
    [seen] = [s for s in upstream.seen if isinstance(s.body, dict) and s.body.get("model") == model]
    return seen


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


# --- streams ------------------------------------------------------------------------------------------


def test_text_stream_and_the_request_on_the_wire(sidecar: Sidecar, upstream: Upstream) -> None:
    upstream.replies["m-text"] = Reply(chunks=frames(
        message_start(25), start(0, type="text", text=""), PING,
        delta(0, type="text_delta", text="Hello"), delta(0, type="text_delta", text=", world"),
        stop(0), *finish("end_turn", 7)))
    events = stream(sidecar, "m-text", system="Be brief.", max_tokens=100)

    seen = seen_for(upstream, "m-text")
    assert (seen.method, seen.path) == ("POST", "/v1/messages")
    assert seen.headers["x-api-key"] == KEY
    assert seen.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in seen.headers
    assert seen.body == {"model": "m-text", "max_tokens": 100, "messages": MSGS, "system": "Be brief.",
                         "stream": True}

    assert text_of(events) == "Hello, world"
    assert types(events) == ["start", "text_delta", "text_delta", "usage", "done"]
    usage = {"input_tokens": 25, "output_tokens": 7}
    assert {k: v for k, v in events[-2].items() if k in ("input_tokens", "output_tokens")} == usage
    done = events[-1]
    assert (done["finish_reason"], done["model"], done["usage"]) == ("stop", "anth:m-text", usage)


def test_tool_call_stream(sidecar: Sidecar, upstream: Upstream) -> None:
    upstream.replies["m-tool"] = Reply(chunks=frames(
        message_start(), start(0, type="text", text=""), delta(0, type="text_delta", text="Let me check."), stop(0),
        start(1, type="tool_use", id="toolu_e2e1", name="get_weather", input={}),
        delta(1, type="input_json_delta", partial_json=""),
        delta(1, type="input_json_delta", partial_json='{"city": "Par'),
        delta(1, type="input_json_delta", partial_json='is", "days": 2}'),
        stop(1), *finish("tool_use", 30)))
    events = stream(sidecar, "m-tool", tools=[{"name": "get_weather", "parameters": {"type": "object"}}],
                    tool_choice="required")
    assert seen_for(upstream, "m-tool").body["tool_choice"] == {"type": "any"}
    assert seen_for(upstream, "m-tool").body["tools"] == [{"name": "get_weather", "input_schema": {"type": "object"}}]

    t = types(events)
    assert t.count("tool_call_start") == 1 and t.count("tool_call") == 1
    assert t.index("text_delta") < t.index("tool_call_start") < t.index("tool_call_delta") < t.index("tool_call")
    tc_start = events[t.index("tool_call_start")]
    assert (tc_start["tool_call_id"], tc_start["name"], tc_start["index"]) == ("toolu_e2e1", "get_weather", 1)
    deltas = [e["arguments_delta"] for e in events if e["type"] == "tool_call_delta"]
    assert "".join(deltas) == '{"city": "Paris", "days": 2}'
    call = events[t.index("tool_call")]
    assert (call["tool_call_id"], call["name"], call["arguments"]) == (
        "toolu_e2e1", "get_weather", {"city": "Paris", "days": 2})
    assert events[-1]["finish_reason"] == "tool_calls"


THINKING: list[dict[str, Any] | str] = [
    message_start(40), start(0, type="thinking", thinking="", signature=""), PING,
    delta(0, type="thinking_delta", thinking="The user says hi. "),
    delta(0, type="thinking_delta", thinking="Greet back."),
    delta(0, type="signature_delta", signature="EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pk=="),
    stop(0), start(1, type="text", text=""), delta(1, type="text_delta", text="Hi there!"), stop(1),
    *finish("end_turn", 55),
]


def test_thinking_stream_with_signature(sidecar: Sidecar, upstream: Upstream) -> None:
    upstream.replies["m-think"] = Reply(chunks=frames(*THINKING))
    events = stream(sidecar, "m-think", reasoning={"budget_tokens": 2048})
    sent = seen_for(upstream, "m-think").body
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert sent["max_tokens"] > 2048

    t = types(events)
    assert t == ["start", "reasoning_delta", "reasoning_delta", "reasoning_end", "text_delta", "usage", "done"]
    assert "".join(e["text"] for e in events if e["type"] == "reasoning_delta") == "The user says hi. Greet back."
    assert events[3]["signature"] == "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pk=="
    assert text_of(events) == "Hi there!"
    assert events[-1]["finish_reason"] == "stop"


def test_complete_chat_returns_reasoning_with_its_signature(sidecar: Sidecar, upstream: Upstream) -> None:
    upstream.replies["m-think-complete"] = Reply(chunks=frames(*THINKING))
    result = sidecar.call("complete_chat", {"model": "anth:m-think-complete", "messages": MSGS,
                                            "reasoning": {"effort": "low"}, "retry": NO_RETRY})
    assert result["content"] == "Hi there!"
    assert result["parts"] == [
        {"type": "reasoning", "text": "The user says hi. Greet back.",
         "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pk=="},
        {"type": "text", "text": "Hi there!"},
    ]
    assert (result["finish_reason"], result["model"]) == ("stop", "anth:m-think-complete")
    assert result["usage"] == {"input_tokens": 40, "output_tokens": 55}

    # the parts go back to the upstream exactly as they came
    upstream.replies["m-think-back"] = Reply(chunks=frames(
        message_start(), start(0, type="text", text=""), delta(0, type="text_delta", text="ok"), stop(0),
        *finish("end_turn", 1)))
    history = [*MSGS, {"role": "assistant", "content": result["parts"]}, {"role": "user", "content": "and?"}]
    stream(sidecar, "m-think-back", messages=history, reasoning={"effort": "low"})
    assert seen_for(upstream, "m-think-back").body["messages"][1] == {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "The user says hi. Greet back.",
         "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pk=="},
        {"type": "text", "text": "Hi there!"},
    ]}


def test_overloaded_error_mid_stream(sidecar: Sidecar, upstream: Upstream) -> None:
    upstream.replies["m-overloaded"] = Reply(chunks=frames(
        message_start(), start(0, type="text", text=""), delta(0, type="text_delta", text="Part"),
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}))
    events = stream(sidecar, "m-overloaded")
    assert types(events) == ["start", "text_delta", "error"]
    err = events[-1]["error"]
    assert (err["code"], err["retryable"], err["provider"]) == ("upstream_unavailable", True, "anth")
    assert "Overloaded" in err["message"]
    assert "status" not in err, "the stream itself had answered 200"


def test_529_overloaded_answer(sidecar: Sidecar, upstream: Upstream) -> None:
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"},
            "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"}
    upstream.replies["m-529"] = Reply(status=529, chunks=[json.dumps(body).encode()],
                                      headers={"content-type": "application/json"})
    events = stream(sidecar, "m-529")
    assert types(events) == ["start", "error"]
    err = events[-1]["error"]
    assert (err["code"], err["status"], err["retryable"]) == ("upstream_unavailable", 529, True)
    assert err["message"] == "anth: Overloaded"


def test_rate_limit_and_bad_key_answers(sidecar: Sidecar, upstream: Upstream) -> None:
    for model, status, kind, code in (("m-429", 429, "rate_limit_error", "rate_limited"),
                                      ("m-401", 401, "authentication_error", "authentication_failed")):
        body = {"type": "error", "error": {"type": kind, "message": "no"}}
        upstream.replies[model] = Reply(status=status, chunks=[json.dumps(body).encode()],
                                        headers={"content-type": "application/json"})
        err = stream(sidecar, model)[-1]["error"]
        assert (err["code"], err["status"]) == (code, status)


def test_cut_stream_is_a_network_error(sidecar: Sidecar, upstream: Upstream) -> None:
    upstream.replies["m-cut"] = Reply(chunks=frames(
        message_start(), start(0, type="text", text=""), delta(0, type="text_delta", text="half")))
    events = stream(sidecar, "m-cut")
    assert text_of(events) == "half"
    assert events[-1]["error"]["code"] == "network_error"


def test_models_and_connection_test(sidecar: Sidecar, upstream: Upstream) -> None:
    answer = {"data": [{"type": "model", "id": "claude-e2e-1", "display_name": "Claude E2E One"}],
              "has_more": False}
    upstream.replies["/v1/models?limit=1000"] = Reply(chunks=[json.dumps(answer).encode()],
                                                       headers={"content-type": "application/json"})
    models = sidecar.call("llm_list_available_models", {"provider": "anth", "refresh": True})
    assert {"id": "anth:claude-e2e-1", "provider": "anth", "name": "Claude E2E One"} in models
    result = sidecar.call("test_provider_connection", {"provider": "anth"})
    assert result["ok"] is True, result
    gets = [s for s in upstream.seen if s.method == "GET"]
    assert gets and all(s.headers["x-api-key"] == KEY and s.headers["anthropic-version"] == "2023-06-01"
                        for s in gets)


# --- every recording, replayed ---------------------------------------------------------------------


FILES = sorted(p.name for p in (FIXTURES / "anthropic").iterdir() if p.is_file())


@pytest.mark.parametrize("name", FILES)
def test_recording_replayed(sidecar: Sidecar, upstream: Upstream, name: str) -> None:
    model = f"rec-{name}"
    upstream.replies[model] = Reply(chunks=recorded(name))
    events = stream(sidecar, model)
    payloads = [json.loads(p) for p in fixture_payloads(f"anthropic/{name}")]
    want_text = "".join(p["delta"]["text"] for p in payloads
                        if p["type"] == "content_block_delta" and p["delta"]["type"] == "text_delta")
    stop_reasons = [p["delta"]["stop_reason"] for p in payloads if p["type"] == "message_delta"]
    errors = [p["error"] for p in payloads if p["type"] == "error"]
    tool_ids = [p["content_block"]["id"] for p in payloads
                if p["type"] == "content_block_start" and p["content_block"]["type"] == "tool_use"]

    assert text_of(events) == want_text
    if errors:
        assert events[-1]["type"] == "error" and errors[0]["message"] in events[-1]["error"]["message"]
        return
    assert events[-1]["type"] == "done"
    assert [e["tool_call_id"] for e in events if e["type"] == "tool_call"] == tool_ids
    mapping = {"end_turn": "stop", "max_tokens": "length", "tool_use": "tool_calls", "refusal": "content_filter"}
    assert events[-1]["finish_reason"] == mapping[stop_reasons[-1]]
    assert [e["type"] for e in events].count("usage") == 1


def test_recorded_excerpt_without_its_last_blank_line(sidecar: Sidecar, upstream: Upstream) -> None:
    # byte for byte as recorded: the error event is never completed, so the stream just stops early
    upstream.replies["rec-raw-excerpt"] = Reply(
        chunks=[(FIXTURES / "anthropic" / "midstream-api-error-excerpt.sse").read_bytes()])
    events = stream(sidecar, "rec-raw-excerpt")
    assert text_of(events) == "d with a replacement character ("
    assert events[-1]["error"]["code"] == "network_error"
