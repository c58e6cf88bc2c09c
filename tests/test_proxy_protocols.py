"""The local OpenAI-compatible proxy in front of the Gemini and Cohere protocols, end to end: the real sidecar
process starts the proxy (``start_llm_proxy``), the official ``openai`` package is the client, and the
harness's loopback upstream answers as Gemini (SSE from ``:streamGenerateContent?alt=sse``, key in
``x-goog-api-key``) and as Cohere (SSE from ``/v2/chat``, Bearer key)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from harness import Reply, Sidecar, Upstream

GEM_KEY = "AIzaSyProxy-0123456789abcdefGEMSECRET"
CO_KEY = "co-proxy-0123456789abcdefCOSECRET"
TOOLS: list[Any] = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.close()


@pytest.fixture(scope="module")
def sidecar(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    sc = Sidecar(tmp_path_factory.mktemp("data"),
                 env={"MY_PX_GEM_KEY": GEM_KEY, "MY_PX_CO_KEY": CO_KEY,
                      "LLM_SIDECAR_ALLOW_ENV": "MY_PX_GEM_KEY=127.0.0.1,MY_PX_CO_KEY=127.0.0.1"})
    sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
    root = f"http://127.0.0.1:{upstream.port}"
    for cfg in (
        {"id": "gem", "protocol": "gemini", "base_url": f"{root}/v1beta", "api_key_env": "MY_PX_GEM_KEY"},
        {"id": "co", "protocol": "cohere", "base_url": root, "api_key_env": "MY_PX_CO_KEY"},
    ):
        sc.call("llm_register_custom_provider", {"name": cfg["id"], "default_models": ["m"], **cfg})
        sc.call("configure_provider", {"id": cfg["id"], "limits": {"retry": {"max_retries": 0}}})
    yield sc
    sc.kill()
    assert sc.bad_lines == [], "stdout carried a line that is not JSON"
    for key in (GEM_KEY, CO_KEY):
        assert key.encode() not in b"".join(sc.raw_lines)
        assert key.encode() not in bytes(sc.stderr)


@pytest.fixture(scope="module")
def proxy(sidecar: Sidecar) -> dict[str, str]:
    started = sidecar.call("start_llm_proxy", {})
    assert started["url"].startswith("http://127.0.0.1:") and started["url"].endswith("/v1")
    return started


@pytest.fixture
def client(proxy: dict[str, str]) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy["url"], api_key=proxy["token"], max_retries=0, timeout=15)


# --- helpers --------------------------------------------------------------------------------------------------


def model_id(base: str) -> str:
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


def check_stream(chunks: list[Any], text: str, calls: dict[int, dict[str, str]], model: str,
                 usage: tuple[int, int, int]) -> None:
    assert text == "Let me check."
    assert len(calls) == 1, calls
    [call] = calls.values()
    assert call["id"], "the assembled call has an id"
    assert call["name"] == "get_weather" and json.loads(call["arguments"]) == {"city": "Paris"}
    assert chunks[0].choices and chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["tool_calls"]
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert usage_chunks == [chunks[-1]] and chunks[-1].choices == []
    got = chunks[-1].usage
    assert (got.prompt_tokens, got.completion_tokens, got.total_tokens) == usage
    assert all(c.model == model for c in chunks)


def seen_once(upstream: Upstream, pred: Any) -> Any:
    matching = [s for s in upstream.seen if pred(s)]
    assert len(matching) == 1, [s.path for s in upstream.seen]
    return matching[0]


def no_proxy_token(seen: Any, token: str) -> None:
    assert all(token not in v for v in seen.headers.values()), "the proxy token never goes upstream"
    assert token not in json.dumps(seen.body) and token not in seen.path


# --- Gemini ---------------------------------------------------------------------------------------------------


def gem_path(model: str) -> str:
    return f"/v1beta/models/{model}:streamGenerateContent?alt=sse"


def gemini_sse(*payloads: dict[str, Any]) -> Reply:
    return Reply(chunks=[b"data: " + json.dumps(p).encode() + b"\r\n\r\n" for p in payloads])


def gem_parts(*parts: dict[str, Any], finish: str | None = None, usage: dict[str, int] | None = None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": list(parts), "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    out: dict[str, Any] = {"candidates": [candidate], "modelVersion": "gemini-2.5-flash"}
    if usage:
        out["usageMetadata"] = usage
    return out


GEM_USAGE = {"promptTokenCount": 13, "candidatesTokenCount": 8, "totalTokenCount": 21}


def test_gemini_stream_text_then_tool_call(client: openai.OpenAI, upstream: Upstream,
                                           proxy: dict[str, str]) -> None:
    m = model_id("gem-tool")
    upstream.replies[gem_path(m)] = gemini_sse(
        gem_parts({"text": "Let me "}),
        gem_parts({"text": "check."}),
        gem_parts({"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}, finish="STOP",
                  usage=GEM_USAGE))
    stream = client.chat.completions.create(
        model=f"gem:{m}", stream=True, messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=TOOLS, stream_options={"include_usage": True})
    check_stream(*collect(stream), model=f"gem:{m}", usage=(13, 8, 21))

    seen = seen_once(upstream, lambda s: s.path == gem_path(m))
    assert seen.method == "POST" and seen.headers["x-goog-api-key"] == GEM_KEY
    assert "authorization" not in seen.headers and "key=" not in seen.path
    no_proxy_token(seen, proxy["token"])
    assert seen.body["contents"] == [{"role": "user", "parts": [{"text": "Weather in Paris?"}]}]
    assert seen.body["tools"] == [{"functionDeclarations": [{
        "name": "get_weather", "description": "Weather", "parameters": TOOLS[0]["function"]["parameters"]}]}]


def test_gemini_non_stream(client: openai.OpenAI, upstream: Upstream, proxy: dict[str, str]) -> None:
    m = model_id("gem-plain")
    upstream.replies[gem_path(m)] = gemini_sse(
        gem_parts({"text": "The capital "}),
        gem_parts({"text": "is Paris."}, finish="STOP", usage=GEM_USAGE))
    result = client.chat.completions.create(model=f"gem:{m}", messages=[{"role": "user", "content": "Capital?"}])
    assert result.choices[0].message.content == "The capital is Paris."
    assert result.choices[0].finish_reason == "stop"
    assert result.usage is not None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens, result.usage.total_tokens) == (13, 8, 21)
    assert result.model == f"gem:{m}"

    seen = seen_once(upstream, lambda s: s.path == gem_path(m))
    assert seen.method == "POST" and seen.headers["x-goog-api-key"] == GEM_KEY
    assert "authorization" not in seen.headers
    no_proxy_token(seen, proxy["token"])


# --- Cohere ---------------------------------------------------------------------------------------------------


def cohere_sse(*payloads: dict[str, Any]) -> Reply:
    return Reply(chunks=[f"event: {p['type']}\ndata: {json.dumps(p)}\n\n".encode() for p in payloads])


CO_START = {"id": "c1", "type": "message-start", "delta": {"message": {
    "role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}}}


def co_text(index: int, *pieces: str) -> list[dict[str, Any]]:
    return [{"type": "content-start", "index": index,
             "delta": {"message": {"content": {"type": "text", "text": ""}}}},
            *({"type": "content-delta", "index": index, "delta": {"message": {"content": {"text": p}}}}
              for p in pieces),
            {"type": "content-end", "index": index}]


def co_end(reason: str, inp: int, out: int) -> dict[str, Any]:
    usage = {"billed_units": {"input_tokens": 3, "output_tokens": 2},
             "tokens": {"input_tokens": inp, "output_tokens": out}}
    return {"type": "message-end", "delta": {"finish_reason": reason, "usage": usage}}


def test_cohere_stream_text_then_tool_call(client: openai.OpenAI, upstream: Upstream,
                                           proxy: dict[str, str]) -> None:
    m = model_id("command-tool")
    upstream.replies[m] = cohere_sse(
        CO_START, *co_text(0, "Let me ", "check."),
        {"type": "tool-call-start", "index": 1, "delta": {"message": {"tool_calls": {
            "id": "get_weather_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}}}},
        *({"type": "tool-call-delta", "index": 1, "delta": {"message": {"tool_calls": {"function": {"arguments": a}}}}}
          for a in ('{"city": ', '"Paris"}')),
        {"type": "tool-call-end", "index": 1},
        co_end("TOOL_CALL", 120, 25))
    stream = client.chat.completions.create(
        model=f"co:{m}", stream=True, messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=TOOLS, stream_options={"include_usage": True})
    chunks, text, calls = collect(stream)
    check_stream(chunks, text, calls, model=f"co:{m}", usage=(120, 25, 145))
    assert calls[min(calls)]["id"] == "get_weather_1"

    seen = seen_once(upstream, lambda s: isinstance(s.body, dict) and s.body.get("model") == m)
    assert (seen.method, seen.path) == ("POST", "/v2/chat")
    assert seen.headers["authorization"] == f"Bearer {CO_KEY}"
    no_proxy_token(seen, proxy["token"])
    assert seen.body["stream"] is True
    assert seen.body["messages"] == [{"role": "user", "content": "Weather in Paris?"}]
    assert seen.body["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather", "parameters": TOOLS[0]["function"]["parameters"]}}]


def test_cohere_non_stream(client: openai.OpenAI, upstream: Upstream, proxy: dict[str, str]) -> None:
    m = model_id("command-plain")
    upstream.replies[m] = cohere_sse(CO_START, *co_text(0, "The capital ", "is Paris."), co_end("COMPLETE", 50, 6))
    result = client.chat.completions.create(model=f"co:{m}", messages=[{"role": "user", "content": "Capital?"}])
    assert result.choices[0].message.content == "The capital is Paris."
    assert result.choices[0].finish_reason == "stop"
    assert result.usage is not None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens, result.usage.total_tokens) == (50, 6, 56)
    assert result.model == f"co:{m}"

    seen = seen_once(upstream, lambda s: isinstance(s.body, dict) and s.body.get("model") == m)
    assert (seen.method, seen.path) == ("POST", "/v2/chat")
    assert seen.headers["authorization"] == f"Bearer {CO_KEY}"
    no_proxy_token(seen, proxy["token"])
