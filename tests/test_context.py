"""Long conversations (issue 18), over real pipes against a loopback upstream per protocol that counts tokens
as whitespace words and refuses prompts over its limit in that protocol's error shape (counting_upstream.py):
the ``context`` option (trim, compact, the ``compacted`` event), the retry after an upstream overflow, the
overflow fallback, ``count_tokens`` and ``llm_compact_messages``."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import Any

import pytest
from counting_upstream import CountingUpstream
from harness import Sidecar, check_stream_invariants

PROTOCOLS = ("openai", "anthropic", "gemini", "ollama", "cohere")
LIMIT = 3000
"""the upstreams' limit in words"""
FILLER = "alpha beta gamma delta epsilon zeta eta theta iota kappa"
SYSTEM = "You are a careful assistant SYSTEMMARK"
LAST = "LASTUSERMARK what did we decide about topic seven"
TOOL_TURNS = range(90, 110)
"""the turns whose assistant calls the lookup tool (a call, its result, then the answer)"""
_ids = itertools.count()


def conversation(turns: int = 200) -> list[dict[str, Any]]:
    """``turns`` user/assistant turns (about 25 words each), with tool pairs in the middle, then the last user
    message: about 5,700 words, well over ``LIMIT``."""
    msgs: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}]
    for i in range(turns):
        msgs.append({"role": "user", "content": f"question q{i}x {FILLER}"})
        if i in TOOL_TURNS:
            msgs.append({"role": "assistant", "content": [
                {"type": "text", "text": "let me look"},
                {"type": "tool_call", "id": f"call_{i}", "name": "lookup", "arguments": {"q": f"topic t{i}x"}}]})
            msgs.append({"role": "tool", "tool_call_id": f"call_{i}", "content": f"result r{i}x {FILLER}"})
        msgs.append({"role": "assistant", "content": f"answer a{i}x {FILLER}"})
    msgs.append({"role": "user", "content": LAST})
    return msgs


TOOLS = [{"name": "lookup", "description": "look a topic up",
          "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}]


def check_reached(body: Any, *, summary: str | None = None) -> None:
    """The request that reached the upstream keeps the system prompt and the last user message, has every tool
    call with its result (or neither), and no summary unless one is expected."""
    text = repr(body)
    assert "SYSTEMMARK" in text, "the system prompt was dropped"
    assert "LASTUSERMARK" in text, "the last user message was dropped"
    for i in TOOL_TURNS:
        call, result = f"t{i}x" in text, f"r{i}x" in text
        assert call == result, f"turn {i}: the tool call {'without' if call else 'lost but kept'} its result"
    if summary is not None:
        assert summary in text


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sidecar, dict[str, CountingUpstream]]]:
    """One sidecar with a custom provider per protocol (``p-<protocol>``), each model's window configured."""
    sc = Sidecar(tmp_path_factory.mktemp("data"))
    sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
    ups: dict[str, CountingUpstream] = {}
    for protocol in PROTOCOLS:
        up = ups[protocol] = CountingUpstream(protocol, limit=LIMIT, limits={"big": 100_000, "summarizer": 100_000})
        sc.call("llm_register_custom_provider", {"id": f"p-{protocol}", "name": protocol, "protocol": protocol,
                                                 "base_url": up.base_url, "requires_api_key": False})
        sc.call("configure_provider", {"id": f"p-{protocol}", "models": {
            "m": {"context_window": LIMIT}, "tiny": {"context_window": 1000}, "big": {"context_window": 100_000},
            "summarizer": {"context_window": 100_000}, "unsure": {"context_window": 100_000}}})
    yield sc, ups
    sc.kill()
    for up in ups.values():
        up.close()


def stream(sc: Sidecar, params: dict[str, Any], method: str = "llm_stream_text") -> list[dict[str, Any]]:
    sid = f"ctx{next(_ids)}"
    sc.call(method, {"stream_id": sid, **params})
    events = sc.wait_stream_end(sid, timeout=60)
    check_stream_invariants(events)
    return events


# --- the bars: compact and trim on a 200-turn conversation ------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_compact_makes_a_200_turn_conversation_fit(world: tuple[Sidecar, dict[str, CountingUpstream]],
                                                   protocol: str) -> None:
    sc, ups = world
    up = ups[protocol]
    before = len(up.requests)
    events = stream(sc, {"model": f"p-{protocol}:m", "messages": conversation(), "tools": TOOLS,
                         "context": {"strategy": "compact", "summary_model": f"p-{protocol}:summarizer",
                                     "reserve_output_tokens": 200}})
    assert events[-1]["type"] == "done", events[-1]
    kinds = [e["type"] for e in events]
    assert kinds[0] == "start" and kinds[1] == "compacted", kinds[:4]
    compacted = events[1]
    assert compacted["summary"] == up.summary
    assert compacted["removed_messages"] > 0 and compacted["tokens_after"] < compacted["tokens_before"]
    new = up.requests[before:]
    summaries = [r for r in new if "compress conversations" in repr(r.body)]
    chats = [r for r in new if r not in summaries]
    assert summaries and all(r.model == "summarizer" for r in summaries), [r.model for r in new]
    assert all(not r.refused for r in new), "a request over the upstream's limit was sent"
    assert len(chats) == 1 and chats[0].model == "m"
    assert chats[0].words <= LIMIT
    check_reached(chats[0].body, summary=up.summary)
    assert "q0x" not in repr(chats[0].body), "the oldest turn should be in the summary, not the request"
    assert "q0x" in repr(summaries[0].body), "the summary model was not given the oldest turn"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_trim_makes_it_fit_without_a_summary(world: tuple[Sidecar, dict[str, CountingUpstream]],
                                             protocol: str) -> None:
    sc, ups = world
    up = ups[protocol]
    before = len(up.requests)
    events = stream(sc, {"model": f"p-{protocol}:m", "messages": conversation(), "tools": TOOLS,
                         "context": {"strategy": "trim", "reserve_output_tokens": 200}})
    assert events[-1]["type"] == "done", events[-1]
    assert "compacted" not in [e["type"] for e in events]
    new = up.requests[before:]
    assert len(new) == 1 and not new[0].refused and new[0].words <= LIMIT  # one request: no summary call
    check_reached(new[0].body)
    assert "q0x" not in repr(new[0].body) and "q199x" in repr(new[0].body), "trim drops the oldest turns first"


def test_without_the_option_the_overflow_is_the_answer(world: tuple[Sidecar, dict[str, CountingUpstream]]) -> None:
    sc, _ = world
    events = stream(sc, {"model": "p-openai:m", "messages": conversation()})
    assert events[-1]["type"] == "error" and events[-1]["error"]["code"] == "context_length_exceeded"


def test_trim_keeps_the_last_messages_asked_for(world: tuple[Sidecar, dict[str, CountingUpstream]]) -> None:
    """keep_last reaching into the tool turns keeps them, whole."""
    sc, ups = world
    up = ups["openai"]
    msgs = conversation(110)  # ends with the tool turns 90-109
    before = len(up.requests)
    events = stream(sc, {"model": "p-openai:m", "messages": msgs, "context": {
        "strategy": "trim", "keep_last": 45, "reserve_output_tokens": 200}})
    assert events[-1]["type"] == "done", events[-1]
    body = repr(up.requests[before].body)
    check_reached(up.requests[before].body)
    assert all(f"r{i}x" in body for i in range(100, 110)), "the last 45 messages are kept"


def test_what_must_stay_not_fitting_is_context_length_exceeded(
        world: tuple[Sidecar, dict[str, CountingUpstream]]) -> None:
    sc, ups = world
    before = len(ups["openai"].requests)
    huge = " ".join(["word"] * 5000)
    events = stream(sc, {"model": "p-openai:m", "messages": [{"role": "user", "content": huge}],
                         "context": {"strategy": "trim"}})
    assert events[-1]["type"] == "error" and events[-1]["error"]["code"] == "context_length_exceeded"
    assert "even after dropping" in events[-1]["error"]["message"]
    assert len(ups["openai"].requests) == before, "nothing is sent that cannot fit"


# --- after an upstream overflow ---------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_upstream_overflow_is_fitted_once_more(world: tuple[Sidecar, dict[str, CountingUpstream]],
                                                  protocol: str) -> None:
    """The window configured is wrong (100k) while the upstream takes 3,000: its error, in each protocol's shape,
    says so, the request is trimmed to what it said and succeeds; the learnt window shows in count_tokens."""
    sc, ups = world
    up = ups[protocol]
    up.limits["unsure"] = LIMIT
    before = len(up.requests)
    events = stream(sc, {"model": f"p-{protocol}:unsure", "messages": conversation(),
                         "context": {"strategy": "trim", "reserve_output_tokens": 200}})
    assert events[-1]["type"] == "done", events[-1]
    new = up.requests[before:]
    assert [r.refused for r in new] == [True, False]
    check_reached(new[1].body)
    counted = sc.call("count_tokens", {"model": f"p-{protocol}:unsure", "messages": [{"role": "user",
                                                                                      "content": "hi"}]})
    # Ollama's error states no figures: half went, and the window stays what the configuration said
    assert counted["context_window"] == (100_000 if protocol == "ollama" else LIMIT)


def test_an_overflow_moves_on_to_a_fallback_with_a_larger_window(
        world: tuple[Sidecar, dict[str, CountingUpstream]]) -> None:
    """m (3,000) overflows; tiny (1,000) is skipped; big (100,000) answers the whole conversation."""
    sc, ups = world
    up = ups["anthropic"]
    before = len(up.requests)
    events = stream(sc, {"model": "p-anthropic:m", "messages": conversation(),
                         "fallback_models": ["p-anthropic:tiny", "p-anthropic:big"]})
    assert events[-1]["type"] == "done", events[-1]
    fallbacks = [e for e in events if e["type"] == "fallback"]
    assert [(f["from_model"], f["to_model"], f["reason"]) for f in fallbacks] == [
        ("p-anthropic:m", "p-anthropic:big", "context_length_exceeded")]
    new = up.requests[before:]
    assert [(r.model, r.refused) for r in new] == [("m", True), ("big", False)]
    assert "q0x" in repr(new[1].body), "the larger model got the whole conversation"


def test_the_tool_loop_compacts_and_keeps_the_compacted_history(
        world: tuple[Sidecar, dict[str, CountingUpstream]]) -> None:
    sc, ups = world
    up = ups["openai"]
    started = sc.call("llm_chat_loop_start", {
        "model": "p-openai:m", "messages": conversation(), "tools": TOOLS,
        "context": {"strategy": "compact", "summary_model": "p-openai:summarizer", "reserve_output_tokens": 200}})
    events = sc.wait_stream_end(started["stream_id"], timeout=60)
    assert events[-1]["type"] == "done", events[-1]
    assert [e["type"] for e in events][:3] == ["step_start", "start", "compacted"]
    removed = events[2]["removed_messages"]
    history = sc.call("llm_get_loop_messages", {"loop_id": started["loop_id"]})["messages"]
    full = conversation()
    assert history[1] == {"role": "system", "content": f"Summary of the earlier conversation:\n\n{up.summary}"}
    assert history[0] == full[0] and history[2:-1] == full[1 + removed:]  # the answer was appended


# --- llm_compact_messages ---------------------------------------------------------------------------------------


def test_compact_messages_on_demand(world: tuple[Sidecar, dict[str, CountingUpstream]]) -> None:
    sc, ups = world
    up = ups["gemini"]
    before = len(up.requests)
    full = conversation()
    out = sc.call("llm_compact_messages", {"model": "p-gemini:m", "messages": full, "target_tokens": 2000,
                                           "summary_model": "p-gemini:summarizer"}, timeout=60)
    assert out["tokens_after"] <= 2000 < out["tokens_before"]
    msgs = out["messages"]
    assert msgs[0] == full[0] and msgs[-1] == full[-1]
    assert msgs[1]["role"] == "system" and msgs[1]["content"].endswith(up.summary)
    assert msgs[2]["role"] == "user", "what follows the summary starts with a user turn"
    check_reached(msgs)
    assert {r.model for r in up.requests[before:]} == {"summarizer"}
    again = sc.call("llm_compact_messages", {"model": "p-gemini:m", "messages": msgs, "target_tokens": 2000})
    assert again["messages"] == msgs, "messages that fit are left as they are"


def test_compact_messages_needs_a_target_when_the_window_is_unknown(
        world: tuple[Sidecar, dict[str, CountingUpstream]]) -> None:
    sc, _ = world
    resp = sc.request("llm_compact_messages", {"model": "p-openai:nobody-knows", "messages": conversation(3)})
    assert resp["error"]["data"]["code"] == "invalid_request" and "target_tokens" in resp["error"]["message"]


# --- count_tokens -------------------------------------------------------------------------------------------------


ASK = {"messages": [{"role": "user", "content": "How many tokens is this question"}],
       "system": "Be brief", "tools": TOOLS}


@pytest.mark.parametrize("protocol", ["anthropic", "gemini"])
def test_count_tokens_asks_anthropic_and_gemini(world: tuple[Sidecar, dict[str, CountingUpstream]],
                                                protocol: str) -> None:
    sc, ups = world
    up = ups[protocol]
    up.counts["m"] = 4242
    before = len(up.count_requests)
    out = sc.call("count_tokens", {"model": f"p-{protocol}:m", **ASK})
    assert out == {"input_tokens": 4242, "exact": True, "context_window": LIMIT}
    path, body = up.count_requests[before]
    if protocol == "anthropic":
        assert path == "/v1/messages/count_tokens"
        assert body["model"] == "m" and body["system"] and body["tools"][0]["name"] == "lookup"
        assert "stream" not in body and "max_tokens" not in body
    else:
        assert path == "/v1beta/models/m:countTokens"
        request = body["generateContentRequest"]
        assert request["model"] == "models/m" and request["systemInstruction"] and request["tools"]
        assert "Be brief" in repr(request) and "question" in repr(request)


def test_count_tokens_uses_cohere_tokenize(world: tuple[Sidecar, dict[str, CountingUpstream]]) -> None:
    sc, ups = world
    up = ups["cohere"]
    before = len(up.count_requests)
    out = sc.call("count_tokens", {"model": "p-cohere:m", **ASK})
    path, body = up.count_requests[before]
    assert path == "/v1/tokenize" and body["model"] == "m"
    words = len(body["text"].split())
    assert "How many tokens is this question" in body["text"] and "Be brief" in body["text"]
    assert out["exact"] is True and words < out["input_tokens"] <= words + 20  # the template's few tokens on top


@pytest.mark.parametrize("path", ["/tokenize", "/extras/tokenize"])
def test_count_tokens_uses_a_local_servers_tokenizer(tmp_path_factory: pytest.TempPathFactory, path: str) -> None:
    up = CountingUpstream("openai", tokenize_path=path)
    sc = Sidecar(tmp_path_factory.mktemp("data"))
    try:
        sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
        sc.call("llm_register_custom_provider", {"id": "llama", "name": "llama.cpp", "protocol": "openai",
                                                 "base_url": up.base_url, "requires_api_key": False})
        out = sc.call("count_tokens", {"model": "llama:m", **ASK})
        texts = [b.get("content", b.get("input")) for p, b in up.count_requests if p == path]
        counted = sum(len(t.split()) for t in texts if t)
        assert out["exact"] is True and counted > 5 and counted < out["input_tokens"] <= counted + 20
    finally:
        sc.kill()
        up.close()


def test_count_tokens_estimates_where_the_provider_cannot_count(
        world: tuple[Sidecar, dict[str, CountingUpstream]]) -> None:
    sc, ups = world
    before = len(ups["ollama"].count_requests)
    long = {"messages": [{"role": "user", "content": " ".join(["token"] * 400)}]}
    out = sc.call("count_tokens", {"model": "p-ollama:m", **long})
    assert out["exact"] is False and out["context_window"] == LIMIT
    assert 300 <= out["input_tokens"] <= 700, out  # 2,400 characters: about 400-600 tokens by any tokenizer
    assert len(ups["ollama"].count_requests) == before


def test_count_tokens_errors(world: tuple[Sidecar, dict[str, CountingUpstream]]) -> None:
    sc, _ = world
    resp = sc.request("count_tokens", {"model": "nope:m", "messages": [{"role": "user", "content": "x"}]})
    assert resp["error"]["data"]["code"] == "unknown_provider"
    resp = sc.request("count_tokens", {"model": "p-openai:m"})
    assert resp["error"]["code"] == -32602
    resp = sc.request("llm_stream_text", {"model": "p-openai:m", "messages": [{"role": "user", "content": "x"}],
                                          "context": {"strategy": "squash"}})
    assert resp["error"]["code"] == -32602 and re.search("strategy", resp["error"]["message"])


def test_the_window_comes_from_the_live_model_list(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A vLLM-style list (``max_model_len``) gives the window of a model nothing else knows, and trim uses it."""
    up = CountingUpstream("openai", limit=LIMIT)
    sc = Sidecar(tmp_path_factory.mktemp("data"))
    try:
        up._handler.do_GET = lambda self: self._json(200, {"object": "list", "data": [  # type: ignore[attr-defined]
            {"id": "served", "object": "model", "owned_by": "vllm", "max_model_len": LIMIT}]})
        sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
        sc.call("llm_register_custom_provider", {"id": "my-vllm", "name": "vLLM", "protocol": "openai",
                                                 "base_url": up.base_url, "requires_api_key": False})
        out = sc.call("count_tokens", {"model": "my-vllm:served", "messages": [{"role": "user", "content": "hi"}]})
        assert out["context_window"] == LIMIT
        events = stream(sc, {"model": "my-vllm:served", "messages": conversation(),
                             "context": {"strategy": "trim", "reserve_output_tokens": 200}})
        assert events[-1]["type"] == "done"
        assert [r.refused for r in up.requests] == [False]
    finally:
        sc.kill()
        up.close()


def test_complete_chat_compacts_and_says_how(world: tuple[Sidecar, dict[str, CountingUpstream]]) -> None:
    sc, ups = world
    up = ups["cohere"]
    before = len(up.requests)
    out = sc.call("complete_chat", {"model": "p-cohere:m", "messages": conversation(), "context": {
        "strategy": "compact", "summary_model": "p-cohere:summarizer", "reserve_output_tokens": 200}}, timeout=60)
    assert out["finish_reason"] == "stop" and out["content"].startswith("answer ")
    [compacted] = out["compacted"]
    assert compacted["type"] == "compacted" and compacted["summary"] == up.summary
    chat = [r for r in up.requests[before:] if r.model == "m"]
    assert len(chat) == 1 and not chat[0].refused
    check_reached(chat[0].body, summary=up.summary)


def test_ollamas_num_ctx_is_the_window(world: tuple[Sidecar, dict[str, CountingUpstream]]) -> None:
    """A model nothing else knows: the request's options.num_ctx is its window."""
    sc, ups = world
    up = ups["ollama"]
    before = len(up.requests)
    events = stream(sc, {"model": "p-ollama:llama3", "messages": conversation(),
                         "provider_options": {"options": {"num_ctx": LIMIT}},
                         "context": {"strategy": "trim", "reserve_output_tokens": 200}})
    assert events[-1]["type"] == "done", events[-1]
    assert [r.refused for r in up.requests[before:]] == [False]


def test_configured_windows_show_in_the_model_list_and_null_forgets_them(tmp_path_factory: pytest.TempPathFactory,
                                                                        ) -> None:
    sc = Sidecar(tmp_path_factory.mktemp("data"))
    try:
        sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
        sc.call("configure_provider", {"id": "openai", "models": {"gpt-4o": {"context_window": 64_000},
                                                                  "my-finetune": {"context_window": 16_000,
                                                                                  "max_output_tokens": 4000}}})
        sc.call("configure_provider", {"id": "openai", "models": {"other": {"context_window": 8000}}})  # merged
        models = {m["id"]: m for m in sc.call("llm_list_available_models", {"provider": "openai"})}
        assert models["openai:gpt-4o"]["context_window"] == 64_000
        assert models["openai:gpt-4o"]["max_output_tokens"] == 16_384  # the catalog's, not overridden
        assert (models["openai:my-finetune"]["context_window"], models["openai:my-finetune"]["max_output_tokens"]) == (
            16_000, 4000)
        assert models["openai:other"]["context_window"] == 8000
        assert "supports_embedding" not in models["openai:other"]
        # a window says nothing of what the model is: llm_embed does not take it for a chat model (no key here)
        resp = sc.request("llm_embed", {"model": "openai:other", "input": ["x"]})
        assert resp["error"]["data"]["code"] == "missing_api_key"
        sc.call("configure_provider", {"id": "openai", "models": None})
        models = {m["id"]: m for m in sc.call("llm_list_available_models", {"provider": "openai"})}
        assert models["openai:gpt-4o"]["context_window"] == 128_000 and "openai:my-finetune" not in models
        resp = sc.request("configure_provider", {"id": "openai", "models": {"gpt-4o": {"context_window": 0}}})
        assert resp["error"]["code"] == -32602
    finally:
        sc.kill()


def test_a_counting_endpoint_that_fails_gives_the_estimate_but_a_refused_key_is_the_error(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    from harness import Reply, Upstream

    up = Upstream()
    sc = Sidecar(tmp_path_factory.mktemp("data"))
    try:
        sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
        sc.call("llm_register_custom_provider", {"id": "claude-proxy", "name": "proxy", "protocol": "anthropic",
                                                 "base_url": f"http://127.0.0.1:{up.port}",
                                                 "requires_api_key": False})
        json_type = {"content-type": "application/json"}
        up.replies["/v1/messages/count_tokens"] = Reply(status=404, chunks=[b'{"type":"error","error":{'
                                                        b'"type":"not_found_error","message":"Not found"}}'],
                                                        headers=json_type)
        out = sc.call("count_tokens", {"model": "claude-proxy:m", **ASK})
        assert out["exact"] is False and out["input_tokens"] > 0
        up.replies["/v1/messages/count_tokens"] = Reply(status=401, chunks=[b'{"type":"error","error":{"type":'
                                                        b'"authentication_error","message":"invalid x-api-key"}}'],
                                                        headers=json_type)
        resp = sc.request("count_tokens", {"model": "claude-proxy:m", **ASK})
        assert resp["error"]["data"]["code"] == "authentication_failed"
    finally:
        sc.kill()
        up.close()


def test_compact_after_an_upstream_overflow(world: tuple[Sidecar, dict[str, CountingUpstream]]) -> None:
    """The window nothing knows (no catalog entry, no list): sent whole, refused, then compacted to what the
    upstream said; the compacted event comes before any output."""
    sc, ups = world
    up = ups["anthropic"]
    up.limits["unknown-window"] = LIMIT
    before = len(up.requests)
    events = stream(sc, {"model": "p-anthropic:unknown-window", "messages": conversation(), "context": {
        "strategy": "compact", "summary_model": "p-anthropic:summarizer", "reserve_output_tokens": 200}})
    assert events[-1]["type"] == "done", events[-1]
    kinds = [e["type"] for e in events]
    assert kinds.index("compacted") < kinds.index("text_delta")
    chats = [r for r in up.requests[before:] if r.model == "unknown-window"]
    assert [r.refused for r in chats] == [True, False]
    check_reached(chats[1].body, summary=up.summary)
