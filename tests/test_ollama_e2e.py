"""The ollama protocol end to end: the real sidecar process, driven over its pipes, against a real HTTP
server on 127.0.0.1 that answers like Ollama (``/api/chat`` NDJSON, ``/api/tags``).

Expected values are written out by hand or read from the recorded lines with the stdlib ``json`` module.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import ModuleSidecar
from harness import FIXTURES, Reply, Sidecar, Upstream, check_stream_invariants, text_of

MODEL = "llama3.2:3b"
MSGS = [{"role": "user", "content": "hi"}]
NDJSON = {"content-type": "application/x-ndjson"}
DOMAIN_ERROR = -32000


# --- fixtures: one sidecar for the module, one upstream per test (kept open until the module ends) ---


@pytest.fixture
def sidecar(module_sidecar: ModuleSidecar) -> Iterator[Sidecar]:
    sc = module_sidecar.get()
    yield sc
    assert sc.bad_lines == [], "stdout carried a line that is not JSON"


@pytest.fixture
def upstream(module_sidecar: ModuleSidecar) -> Upstream:
    return module_sidecar.upstream()


def register(sc: Sidecar, upstream: Upstream, provider_id: str = "oll", **extra: Any) -> None:
    sc.call("llm_register_custom_provider", {
        "id": provider_id, "name": "O", "protocol": "ollama", "base_url": f"http://127.0.0.1:{upstream.port}",
        "requires_api_key": False, **extra})


# --- Ollama's wire --------------------------------------------------------------------------------


def line(content: str = "", *, thinking: str | None = None, tool_calls: list[Any] | None = None,
         **extra: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking is not None:
        message["thinking"] = thinking
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    return {"model": MODEL, "created_at": "2025-07-07T20:22:19.184789Z", "message": message, "done": False, **extra}


def done_line(reason: str = "stop", prompt: int = 26, completion: int = 282) -> dict[str, Any]:
    return {**line(), "done": True, "done_reason": reason, "total_duration": 4883583458, "load_duration": 1334875,
            "prompt_eval_count": prompt, "prompt_eval_duration": 342546000, "eval_count": completion,
            "eval_duration": 4535599000}


def ndjson(*objs: dict[str, Any] | str) -> list[bytes]:
    """One HTTP chunk per line, as Ollama flushes them."""
    return [(o if isinstance(o, str) else json.dumps(o, separators=(",", ":"))).encode() + b"\n" for o in objs]


def reply(*objs: dict[str, Any] | str, **kw: Any) -> Reply:
    return Reply(chunks=ndjson(*objs), headers=NDJSON, **kw)


def json_reply(status: int, obj: Any) -> Reply:
    return Reply(status=status, chunks=[json.dumps(obj).encode()], headers={"content-type": "application/json"})


def run(sc: Sidecar, model: str = MODEL, provider: str = "oll", **params: Any) -> list[dict[str, Any]]:
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
    return f"m-{uuid.uuid4().hex[:8]}:latest"


# --- streams ------------------------------------------------------------------------------------


def test_text_stream(sidecar: Sidecar, upstream: Upstream) -> None:
    register(sidecar, upstream)
    upstream.replies[MODEL] = reply(line("The"), line(" sky is"), line(" blue."), done_line("stop", 26, 282))
    events = run(sidecar, temperature=0.1, max_tokens=50)

    assert types(events) == ["start", "text_delta", "text_delta", "text_delta", "usage", "done"]
    assert events[0]["provider"] == "oll" and events[0]["model"] == f"oll:{MODEL}"
    assert text_of(events) == "The sky is blue."
    usage = events[-2]
    assert (usage["input_tokens"], usage["output_tokens"]) == (26, 282)
    done = events[-1]
    assert done["finish_reason"] == "stop" and done["model"] == f"oll:{MODEL}"
    assert (done["usage"]["input_tokens"], done["usage"]["output_tokens"]) == (26, 282)

    [seen] = upstream.seen
    assert (seen.method, seen.path) == ("POST", "/api/chat")
    assert "authorization" not in seen.headers
    assert "application/x-ndjson" in seen.headers["accept"]
    assert seen.body == {"model": MODEL, "messages": MSGS, "stream": True,
                         "options": {"temperature": 0.1, "num_predict": 50}}


def test_reasoning_text_and_tool_call(sidecar: Sidecar, upstream: Upstream) -> None:
    register(sidecar, upstream)
    model = new_model()
    upstream.replies[model] = reply(
        line(thinking="The user wants "), line(thinking="the weather."),
        line("Let me check."),
        line(tool_calls=[{"function": {"name": "get_weather", "arguments": {"city": "Tokyo", "unit": "c"}}}]),
        done_line("stop", 40, 12),
    )
    tools = [{"name": "get_weather", "description": "Weather for a city",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    events = run(sidecar, model, tools=tools, reasoning={"effort": "low"})

    assert types(events) == ["start", "reasoning_delta", "reasoning_delta", "reasoning_end", "text_delta",
                             "tool_call_start", "tool_call_delta", "tool_call", "usage", "done"]
    assert "".join(e["text"] for e in events if e["type"] == "reasoning_delta") == "The user wants the weather."
    assert text_of(events) == "Let me check."
    start, delta, call = events[5:8]
    assert (start["name"], start["index"]) == ("get_weather", 0)
    assert start["tool_call_id"] == delta["tool_call_id"] == call["tool_call_id"]
    assert start["tool_call_id"].startswith("call_")
    assert json.loads(delta["arguments_delta"]) == {"city": "Tokyo", "unit": "c"}
    assert (call["name"], call["arguments"]) == ("get_weather", {"city": "Tokyo", "unit": "c"})
    assert events[-1]["finish_reason"] == "tool_calls"
    assert (events[-1]["usage"]["input_tokens"], events[-1]["usage"]["output_tokens"]) == (40, 12)

    body = upstream.seen[0].body
    assert body["think"] == "low"
    assert body["tools"] == [{"type": "function", "function": tools[0]}]


def test_lines_split_across_http_chunks(sidecar: Sidecar, upstream: Upstream) -> None:
    register(sidecar, upstream)
    model = new_model()
    raw = b"".join(ndjson(line("Hel"), line("lo, "), line("world"), done_line()))
    upstream.replies[model] = Reply(chunks=[raw[i:i + 37] for i in range(0, len(raw), 37)], headers=NDJSON)
    assert text_of(run(sidecar, model)) == "Hello, world"


@pytest.mark.parametrize("name", sorted(p.name for p in (FIXTURES / "ollama").iterdir() if p.suffix == ".ndjson"))
def test_recorded_lines_replayed(sidecar: Sidecar, upstream: Upstream, name: str) -> None:
    # the docs' /api/generate examples: their text is read from "response"
    register(sidecar, upstream)
    model = new_model()
    lines = [ln for ln in (FIXTURES / "ollama" / name).read_text().splitlines() if ln.strip()]
    upstream.replies[model] = Reply(chunks=[ln.encode() + b"\n" for ln in lines], headers=NDJSON)
    events = run(sidecar, model)
    objs = [json.loads(ln) for ln in lines]
    assert text_of(events) == "".join(o.get("response", "") for o in objs)
    if "error" in objs[-1]:
        assert events[-1]["type"] == "error"
        assert events[-1]["error"]["code"] == "upstream_unavailable"
        assert objs[-1]["error"] in events[-1]["error"]["message"]
    else:
        assert events[-1]["type"] == "done" and events[-1]["finish_reason"] == objs[-1]["done_reason"]


def test_recorded_tool_call_chunk_replayed(sidecar: Sidecar, upstream: Upstream) -> None:
    register(sidecar, upstream)
    model = new_model()
    recorded = json.loads((FIXTURES / "ollama" / "chat-tool-call-chunk.json").read_text())
    upstream.replies[model] = reply(recorded, done_line())
    events = run(sidecar, model)
    [call] = [e for e in events if e["type"] == "tool_call"]
    fn = recorded["message"]["tool_calls"][0]["function"]
    assert (call["name"], call["arguments"]) == (fn["name"], fn["arguments"]) == ("get_weather", {"city": "Tokyo"})
    assert events[-1]["finish_reason"] == "tool_calls"


# --- failures ---------------------------------------------------------------------------------


def test_error_line_mid_stream(sidecar: Sidecar, upstream: Upstream) -> None:
    register(sidecar, upstream)
    model = new_model()
    upstream.replies[model] = reply(line("Par"), line("tial"),
                                    {"error": "an error was encountered while running the model"})
    events = run(sidecar, model)
    assert types(events) == ["start", "text_delta", "text_delta", "error"]
    assert text_of(events) == "Partial"
    err = events[-1]["error"]
    assert err["code"] == "upstream_unavailable" and err["provider"] == "oll"
    assert err["message"] == "oll: an error was encountered while running the model"
    assert "status" not in err


def test_unknown_model_404(sidecar: Sidecar, upstream: Upstream) -> None:
    register(sidecar, upstream)
    upstream.replies["nope:1b"] = json_reply(404, {"error": "model 'nope:1b' not found"})
    events = run(sidecar, "nope:1b")
    assert types(events) == ["start", "error"]
    err = events[-1]["error"]
    assert (err["code"], err["status"], err["retryable"]) == ("unknown_model", 404, False)
    assert "nope:1b" in err["message"]


def test_connection_dropped_mid_stream(sidecar: Sidecar, upstream: Upstream) -> None:
    register(sidecar, upstream)
    model = new_model()
    upstream.replies[model] = reply(line("Hel"), drop=True)
    events = run(sidecar, model)
    assert events[-1]["type"] == "error" and events[-1]["error"]["code"] == "network_error"


def test_clean_end_without_done(sidecar: Sidecar, upstream: Upstream) -> None:
    register(sidecar, upstream)
    model = new_model()
    upstream.replies[model] = reply(line("Hel"), line("lo"))
    events = run(sidecar, model)
    assert text_of(events) == "Hello"
    assert events[-1]["type"] == "error" and events[-1]["error"]["code"] == "network_error"


def test_garbage_is_a_protocol_error(sidecar: Sidecar, upstream: Upstream) -> None:
    register(sidecar, upstream)
    model = new_model()
    upstream.replies[model] = Reply(chunks=[b"<html>not ollama</html>\n"], headers={"content-type": "text/html"})
    events = run(sidecar, model)
    assert events[-1]["type"] == "error" and events[-1]["error"]["code"] == "protocol_error"


# --- complete_chat, the request, model list ----------------------------------------------------------


def test_complete_chat(sidecar: Sidecar, upstream: Upstream) -> None:
    register(sidecar, upstream)
    model = new_model()
    upstream.replies[model] = reply(
        line(thinking="Tokyo? "), line("Checking "), line("now."),
        line(tool_calls=[{"function": {"name": "get_weather", "arguments": {"city": "Tokyo"}}}]),
        done_line("stop", 30, 9))
    result = sidecar.call("complete_chat", {"model": f"oll:{model}", "messages": MSGS})
    assert result["content"] == "Checking now."
    parts = result["parts"]
    assert parts[:2] == [{"type": "reasoning", "text": "Tokyo? "}, {"type": "text", "text": "Checking now."}]
    assert parts[2]["type"] == "tool_call" and parts[2]["id"].startswith("call_")
    assert (parts[2]["name"], parts[2]["arguments"]) == ("get_weather", {"city": "Tokyo"})
    assert len(parts) == 3
    assert result["finish_reason"] == "tool_calls"
    assert (result["usage"]["input_tokens"], result["usage"]["output_tokens"]) == (30, 9)
    assert result["model"] == f"oll:{model}"


def test_complete_chat_error_is_the_response_error(sidecar: Sidecar, upstream: Upstream) -> None:
    register(sidecar, upstream)
    upstream.replies["gone:1b"] = json_reply(404, {"error": "model 'gone:1b' not found"})
    resp = sidecar.request("complete_chat", {"model": "oll:gone:1b", "messages": MSGS})
    assert resp["error"]["code"] == DOMAIN_ERROR
    assert resp["error"]["data"]["code"] == "unknown_model"


def test_tool_round_trip_encoded(sidecar: Sidecar, upstream: Upstream) -> None:
    register(sidecar, upstream, extra_body={"keep_alive": "10m", "options": {"num_ctx": 8192}})
    model = new_model()
    upstream.replies[model] = reply(line("It is sunny."), done_line())
    messages = [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": [
            {"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": {"city": "Oslo"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    events = run(sidecar, model, messages=messages, system="Be brief.", temperature=0.2)
    assert text_of(events) == "It is sunny."
    body = upstream.seen[0].body
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": "",
         "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]},
        {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
    ]
    assert body["keep_alive"] == "10m"
    assert body["options"] == {"temperature": 0.2, "num_ctx": 8192}


def test_list_available_models_from_api_tags(sidecar: Sidecar, upstream: Upstream) -> None:
    register(sidecar, upstream)
    upstream.replies["/api/tags"] = json_reply(200, {"models": [
        {"name": "llama3.2:3b", "model": "llama3.2:3b", "modified_at": "2025-05-04T17:37:44.706015396-07:00",
         "size": 2019393189, "digest": "a80c4f17acd5",
         "details": {"format": "gguf", "family": "llama", "parameter_size": "3.2B", "quantization_level": "Q4_K_M"}},
        {"name": "qwen3:8b", "model": "qwen3:8b", "size": 5225388164},
    ]})
    models = sidecar.call("llm_list_available_models", {"provider": "oll"})
    assert [(m["id"], m["provider"], m["name"]) for m in models] == [
        ("oll:llama3.2:3b", "oll", "llama3.2:3b"), ("oll:qwen3:8b", "oll", "qwen3:8b")]
    [seen] = upstream.seen
    assert (seen.method, seen.path) == ("GET", "/api/tags")


def test_provider_connection(sidecar: Sidecar, upstream: Upstream) -> None:
    register(sidecar, upstream, provider_id="oll-probe")
    upstream.replies["/api/tags"] = json_reply(200, {"models": []})
    result = sidecar.call("test_provider_connection", {"provider": "oll-probe"})
    assert result["ok"] is True
    assert (upstream.seen[0].method, upstream.seen[0].path) == ("GET", "/api/tags")
