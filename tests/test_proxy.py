"""The local OpenAI-compatible proxy, end to end: the real sidecar process starts it over stdio
(``start_llm_proxy``), the official ``openai`` package talks to it, and the harness's loopback
upstream plays each provider protocol behind it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from harness import Reply, Sidecar, Upstream, sse, text_of

KEY = "sk-ant-api03-proxy-secret-0123456789abcdef"
KEY_ENV = "MY_PROXY_ANTH_KEY"
NDJSON = {"content-type": "application/x-ndjson"}
TOOLS: list[Any] = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather", "parameters": {"type": "object",
                                                                    "properties": {"city": {"type": "string"}}}}}]


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.close()


@pytest.fixture(scope="module")
def sidecar(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    sc = Sidecar(tmp_path_factory.mktemp("data"), "--allow-env", f"{KEY_ENV}=127.0.0.1",
                 "--allow-env", "UNSET_PROXY_KEY=127.0.0.1", env={KEY_ENV: KEY})
    sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
    root = f"http://127.0.0.1:{upstream.port}"
    for cfg in (
        {"id": "oai", "protocol": "openai", "base_url": upstream.base_url, "requires_api_key": False},
        {"id": "anth", "protocol": "anthropic", "base_url": root, "api_key_env": KEY_ENV},
        {"id": "oll", "protocol": "ollama", "base_url": root, "requires_api_key": False},
        {"id": "needkey", "protocol": "openai", "base_url": upstream.base_url, "api_key_env": "UNSET_PROXY_KEY"},
    ):
        sc.call("llm_register_custom_provider", {"name": cfg["id"], "default_models": ["m"], **cfg})
        if cfg["id"] != "needkey":
            sc.call("configure_provider", {"id": cfg["id"], "limits": {"retry": {"max_retries": 0}}})
    yield sc
    sc.kill()
    assert sc.bad_lines == [], "stdout carried a line that is not JSON"
    assert KEY.encode() not in b"".join(sc.raw_lines)
    assert KEY.encode() not in bytes(sc.stderr)


@pytest.fixture(scope="module")
def proxy(sidecar: Sidecar) -> dict[str, str]:
    started = sidecar.call("start_llm_proxy", {})
    assert started["url"].startswith("http://127.0.0.1:") and started["url"].endswith("/v1")
    assert len(started["token"]) >= 32
    assert bytes(sidecar.stderr).find(started["token"].encode()) == -1, "the token is never logged"
    return started


@pytest.fixture
def client(proxy: dict[str, str]) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy["url"], api_key=proxy["token"], max_retries=0, timeout=20)


# --- upstream wires ---------------------------------------------------------------------------------


def anth_frames(*payloads: dict[str, Any]) -> list[bytes]:
    return [f"event: {p['type']}\ndata: {json.dumps(p)}\n\n".encode() for p in payloads]


def anth_reply(*blocks: dict[str, Any], stop: str = "end_turn", out_tokens: int = 9) -> Reply:
    start = {"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "m", "content": [], "stop_reason": None,
        "usage": {"input_tokens": 21, "output_tokens": 1}}}
    end = [{"type": "message_delta", "delta": {"stop_reason": stop}, "usage": {"output_tokens": out_tokens}},
           {"type": "message_stop"}]
    return Reply(chunks=anth_frames(start, *blocks, *end))


ANTH_TOOL = [
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Let me "}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "check."}},
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_start", "index": 1,
     "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"city":'}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ' "Paris"}'}},
    {"type": "content_block_stop", "index": 1},
]


def oai_chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def oai_reply(*chunks: dict[str, Any]) -> Reply:
    usage = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
             "usage": {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15}}
    return Reply(chunks=sse([*chunks, usage]))


def model_id(base: str) -> str:
    """A fresh upstream model name, so each test's reply is its own."""
    return f"{base}-{uuid.uuid4().hex[:8]}"


def collect(stream: Any) -> tuple[list[Any], str, dict[int, dict[str, str]]]:
    """Chunks, the text, and tool calls assembled from their fragments as an OpenAI client does."""
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    calls: dict[int, dict[str, str]] = {}
    for c in chunks:
        for tc in (c.choices[0].delta.tool_calls or []) if c.choices else []:
            call = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += tc.id or ""
            call["name"] += (tc.function.name or "") if tc.function else ""
            call["arguments"] += (tc.function.arguments or "") if tc.function else ""
    return chunks, text, calls


# --- the bar ------------------------------------------------------------------------------------


def test_anthropic_provider_streams_text_and_a_tool_call(client: openai.OpenAI, upstream: Upstream) -> None:
    m = model_id("anth-tool")
    upstream.replies[m] = anth_reply(*ANTH_TOOL, stop="tool_use", out_tokens=30)
    stream = client.chat.completions.create(
        model=f"anth:{m}", stream=True, messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=TOOLS, tool_choice="auto", max_tokens=200, stream_options={"include_usage": True})
    chunks, text, calls = collect(stream)
    assert text == "Let me check."
    assert calls == {0: {"id": "toolu_1", "name": "get_weather", "arguments": '{"city": "Paris"}'}}
    assert chunks[0].choices and chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["tool_calls"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (21, 30)
    assert all(c.model == f"anth:{m}" for c in chunks)

    [seen] = [s for s in upstream.seen if isinstance(s.body, dict) and s.body.get("model") == m]
    assert seen.path == "/v1/messages" and seen.headers["x-api-key"] == KEY
    assert seen.body["tools"] == [{"name": "get_weather", "description": "Weather",
                                   "input_schema": TOOLS[0]["function"]["parameters"]}]
    assert seen.body["max_tokens"] == 200
    assert "authorization" not in seen.headers, "the proxy token never goes upstream"


def test_tool_results_and_history_go_upstream(client: openai.OpenAI, upstream: Upstream) -> None:
    m = model_id("anth-history")
    upstream.replies[m] = anth_reply(
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Sunny."}},
        {"type": "content_block_stop", "index": 0})
    result = client.chat.completions.create(model=f"anth:{m}", messages=[
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [
            {"type": "text", "text": "Weather?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "toolu_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "22C"},
    ], tools=TOOLS, temperature=0.2, stop=["END"])
    assert result.choices[0].message.content == "Sunny."
    assert result.choices[0].finish_reason == "stop"
    assert result.usage is not None and (result.usage.prompt_tokens, result.usage.completion_tokens) == (21, 9)
    [seen] = [s for s in upstream.seen if isinstance(s.body, dict) and s.body.get("model") == m]
    body = seen.body
    assert body["system"] == "Be brief." and body["temperature"] == 0.2 and body["stop_sequences"] == ["END"]
    assert body["messages"][0]["content"][1]["type"] == "image"
    assert body["messages"][1]["content"] == [
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]
    assert body["messages"][2]["content"][0]["type"] == "tool_result"
    assert body["messages"][2]["content"][0]["tool_use_id"] == "toolu_1"


# --- openai protocol ------------------------------------------------------------------------------------


def test_openai_provider_stream_with_parallel_tool_calls(client: openai.OpenAI, upstream: Upstream) -> None:
    m = model_id("oai-tools")
    upstream.replies[m] = oai_reply(
        oai_chunk({"role": "assistant", "content": "Checking"}),
        oai_chunk({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                                   "function": {"name": "get_weather", "arguments": ""}}]}),
        oai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": "Oslo"}'}}]}),
        oai_chunk({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                                   "function": {"name": "get_weather", "arguments": '{"city"'}}]}),
        oai_chunk({"tool_calls": [{"index": 1, "function": {"arguments": ': "Rome"}'}}]}),
        oai_chunk({}, "tool_calls"))
    stream = client.chat.completions.create(model=f"oai:{m}", stream=True, tools=TOOLS,
                                            messages=[{"role": "user", "content": "Oslo and Rome"}],
                                            stream_options={"include_usage": True}, seed=7, max_completion_tokens=50)
    chunks, text, calls = collect(stream)
    assert text == "Checking"
    assert calls == {0: {"id": "call_a", "name": "get_weather", "arguments": '{"city": "Oslo"}'},
                     1: {"id": "call_b", "name": "get_weather", "arguments": '{"city": "Rome"}'}}
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 15
    [seen] = [s for s in upstream.seen if isinstance(s.body, dict) and s.body.get("model") == m]
    assert seen.body["seed"] == 7 and seen.body["max_tokens"] == 50


def test_openai_provider_non_stream_with_tool_calls(client: openai.OpenAI, upstream: Upstream) -> None:
    m = model_id("oai-complete")
    upstream.replies[m] = oai_reply(
        oai_chunk({"tool_calls": [{"index": 0, "id": "call_x", "type": "function",
                                   "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]}),
        oai_chunk({}, "tool_calls"))
    result = client.chat.completions.create(model=f"oai:{m}", tools=TOOLS,
                                            messages=[{"role": "user", "content": "Oslo"}])
    msg = result.choices[0].message
    assert result.choices[0].finish_reason == "tool_calls" and msg.content is None
    assert msg.tool_calls is not None and len(msg.tool_calls) == 1
    call = msg.tool_calls[0]
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == (
        "call_x", "get_weather", {"city": "Oslo"})
    assert result.usage is not None and result.usage.total_tokens == 15


def test_stream_without_usage_option_has_no_usage_chunk_and_first_chunk_has_choices(
        proxy: dict[str, str], upstream: Upstream) -> None:
    m = model_id("oai-raw")
    upstream.replies[m] = oai_reply(oai_chunk({"content": "Hi"}), oai_chunk({}, "stop"))
    with httpx.stream("POST", f"{proxy['url']}/chat/completions", headers={"authorization": f"Bearer {proxy['token']}"},
                      json={"model": f"oai:{m}", "stream": True, "messages": [{"role": "user", "content": "x"}]},
                      timeout=20) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert "access-control-allow-origin" not in response.headers
        lines = [ln for ln in response.iter_lines() if ln]
    assert lines[-1] == "data: [DONE]"
    payloads = [json.loads(ln[6:]) for ln in lines[:-1]]
    assert payloads[0]["choices"] and payloads[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(p["choices"] for p in payloads), "no usage chunk unless include_usage"
    assert payloads[-1]["choices"][0]["finish_reason"] == "stop"
    assert "".join(p["choices"][0]["delta"].get("content") or "" for p in payloads) == "Hi"


# --- ollama protocol --------------------------------------------------------------------------------------


def test_ollama_provider_stream(client: openai.OpenAI, upstream: Upstream) -> None:
    m = model_id("oll")

    def line(**msg: Any) -> bytes:
        obj = {"model": m, "message": {"role": "assistant", "content": "", **msg}, "done": False}
        return json.dumps(obj).encode() + b"\n"

    done = {"model": m, "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop",
            "prompt_eval_count": 5, "eval_count": 3}
    upstream.replies[m] = Reply(headers=NDJSON, chunks=[
        line(content="Hel"), line(content="lo"),
        line(tool_calls=[{"function": {"name": "get_weather", "arguments": {"city": "Lima"}}}]),
        json.dumps(done).encode() + b"\n"])
    stream = client.chat.completions.create(model=f"oll:{m}", stream=True, tools=TOOLS,
                                            messages=[{"role": "user", "content": "x"}],
                                            stream_options={"include_usage": True})
    chunks, text, calls = collect(stream)
    assert text == "Hello"
    assert [(c["name"], json.loads(c["arguments"])) for c in calls.values()] == [("get_weather", {"city": "Lima"})]
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 5


# --- models, providers -----------------------------------------------------------------------------------------


def test_models_list(client: openai.OpenAI, sidecar: Sidecar) -> None:
    ids = {m.id for m in client.models.list()}
    assert {"oai:m", "anth:m", "oll:m", "mock:echo"} <= ids
    assert not any(i.startswith("needkey:") for i in ids), "a provider without its key is not offered"
    providers = {p["id"]: p for p in sidecar.call("list_proxy_providers")}
    assert "needkey" not in providers and "oai:m" in providers["oai"]["models"]
    assert providers["anth"]["protocol"] == "anthropic"


def test_health(proxy: dict[str, str]) -> None:
    base = proxy["url"].removesuffix("/v1")
    answer = httpx.get(f"{base}/health", headers={"authorization": f"Bearer {proxy['token']}"})
    assert answer.status_code == 200 and answer.json() == {"status": "ok"}


def test_mock_provider_through_the_proxy(client: openai.OpenAI) -> None:
    _, text, _ = collect(client.chat.completions.create(
        model="mock:echo", stream=True, messages=[{"role": "user", "content": "echo me"}]))
    assert text == "echo me"


# --- errors -------------------------------------------------------------------------------------------------------


def test_bad_token_is_authentication_error(proxy: dict[str, str]) -> None:
    bad = openai.OpenAI(base_url=proxy["url"], api_key="not-the-token", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        bad.chat.completions.create(model="mock:echo", messages=[{"role": "user", "content": "x"}])
    assert err.value.status_code == 401


def test_unknown_model_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nosuch:model", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="mock:nosuch", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])


def test_missing_key_and_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="needkey:m", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="mock:echo", messages=[])
    assert err.value.code == "invalid_request"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="mock:echo", messages=[{"role": "user", "content": "x"}], n=2)


def test_upstream_429_is_rate_limit_error(client: openai.OpenAI, upstream: Upstream) -> None:
    m = model_id("oai-429")
    upstream.replies[m] = Reply(status=429, headers={"content-type": "application/json"},
                                chunks=[b'{"error": {"message": "slow down", "type": "rate_limit"}}'])
    with pytest.raises(openai.RateLimitError) as err:
        client.chat.completions.create(model=f"oai:{m}", stream=True, messages=[{"role": "user", "content": "x"}])
    assert "slow down" in str(err.value)


def test_error_after_output_is_an_sse_error(client: openai.OpenAI, upstream: Upstream) -> None:
    m = model_id("anth-overloaded")
    upstream.replies[m] = Reply(chunks=anth_frames(
        {"type": "message_start", "message": {"id": "x", "type": "message", "role": "assistant", "model": "m",
                                              "content": [], "usage": {"input_tokens": 1, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Part"}},
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}))
    got = []
    with pytest.raises(openai.APIError) as err:
        for chunk in client.chat.completions.create(model=f"anth:{m}", stream=True,
                                                    messages=[{"role": "user", "content": "x"}]):
            got.append(chunk)
    assert "Overloaded" in str(err.value)
    assert got[0].choices[0].delta.role == "assistant" and got[1].choices[0].delta.content == "Part"


# --- the gate -----------------------------------------------------------------------------------------------------


def test_refused_requests(proxy: dict[str, str]) -> None:
    url = f"{proxy['url']}/chat/completions"
    auth = {"authorization": f"Bearer {proxy['token']}"}
    body = {"model": "mock:echo", "messages": [{"role": "user", "content": "x"}]}
    assert httpx.post(url, json=body).status_code == 401
    assert httpx.post(url, json=body, headers={"authorization": "Bearer wrong"}).status_code == 401
    assert httpx.post(url, json=body, headers={"authorization": proxy["token"]}).status_code == 401
    rebind = httpx.post(url, json=body, headers={**auth, "host": "evil.example"})
    assert rebind.status_code == 403 and rebind.json()["error"]["code"] == "permission_denied"
    port = proxy["url"].split(":")[2].split("/")[0]
    assert httpx.post(url, json=body, headers={**auth, "host": f"evil.example:{port}"}).status_code == 403
    page = httpx.post(url, json=body, headers={**auth, "origin": "https://evil.example"})
    assert page.status_code == 403 and "access-control-allow-origin" not in page.headers
    preflight = httpx.options(url, headers={"origin": "https://evil.example", "access-control-request-method": "POST"})
    assert preflight.status_code == 403 and "access-control-allow-origin" not in preflight.headers
    big = httpx.post(url, content=b"x" * (11 * 1024 * 1024), headers={**auth, "content-type": "application/json"})
    assert big.status_code == 413
    ok = httpx.post(url, json=body, headers={**auth, "host": f"localhost:{port}"})
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"] == "x"


# --- beside stdio, and the lifecycle ----------------------------------------------------------------------------------


def test_proxy_answers_while_a_stdio_stream_runs(sidecar: Sidecar, client: openai.OpenAI, upstream: Upstream) -> None:
    slow = model_id("oai-slow")
    upstream.replies[slow] = Reply(chunks=sse([oai_chunk({"content": c}) for c in "slowly"] +
                                              [oai_chunk({}, "stop")]), delay=0.15)
    sid = f"s-{uuid.uuid4().hex[:8]}"
    sidecar.call("llm_stream_text", {"model": f"oai:{slow}", "messages": [{"role": "user", "content": "x"}],
                                     "stream_id": sid})
    result = client.chat.completions.create(model="mock:echo", messages=[{"role": "user", "content": "quick"}])
    assert result.choices[0].message.content == "quick"
    assert not any(e["type"] == "done" for e in sidecar.events(sid)), "the proxy answered while the stream ran"
    events = sidecar.wait_stream_end(sid)
    assert text_of(events) == "slowly" and events[-1]["type"] == "done"


def test_client_disconnect_aborts_the_upstream(proxy: dict[str, str], upstream: Upstream) -> None:
    m = model_id("oai-hang")
    upstream.replies[m] = Reply(chunks=sse([oai_chunk({"content": "first"})], done=False), hang=True)
    with httpx.stream("POST", f"{proxy['url']}/chat/completions", headers={"authorization": f"Bearer {proxy['token']}"},
                      json={"model": f"oai:{m}", "stream": True, "messages": [{"role": "user", "content": "x"}]},
                      timeout=20) as response:
        for line in response.iter_lines():
            if "first" in line:
                break
    [seen] = [s for s in upstream.seen if isinstance(s.body, dict) and s.body.get("model") == m]
    assert seen.disconnected.wait(10), "the upstream request was not closed"


def test_start_is_idempotent_and_stop(sidecar: Sidecar, proxy: dict[str, str]) -> None:
    # last in the module: it stops the shared proxy
    assert sidecar.call("start_llm_proxy", {}) == proxy
    assert sidecar.call("get_llm_proxy_url") == {"url": proxy["url"]}
    assert sidecar.call("is_llm_proxy_running") == {"running": True}
    assert sidecar.call("stop_llm_proxy") == {"stopped": True}
    assert sidecar.call("is_llm_proxy_running") == {"running": False}
    assert sidecar.call("get_llm_proxy_url") == {"url": None}
    assert sidecar.call("stop_llm_proxy") == {"stopped": False}
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{proxy['url']}/models", headers={"authorization": f"Bearer {proxy['token']}"}, timeout=3)
    token = "my-own-token-0123456789"
    again = sidecar.call("start_llm_proxy", {"token": token})
    assert again["token"] == token
    answer = httpx.get(f"{again['url']}/models", headers={"authorization": f"Bearer {token}"})
    assert answer.status_code == 200
    short = sidecar.request("start_llm_proxy", {"token": "short"})
    assert short["error"]["data"]["code"] == "invalid_request"
    assert sidecar.call("stop_llm_proxy") == {"stopped": True}
