"""Streaming through the real sidecar process against a real HTTP upstream on 127.0.0.1.

Everything is mocked at the socket: the sidecar is ``python -m sidecar`` over pipes and the
provider is the harness's ``Upstream`` server. Expected values are computed here, from the
recorded fixtures with the stdlib ``json`` module, or written out by hand.
"""

from __future__ import annotations

import itertools
import json
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ModuleSidecar, register_upstream
from harness import (
    FIXTURES,
    Reply,
    Sidecar,
    Upstream,
    check_stream_invariants,
    fixture_body,
    fixture_payloads,
    sse,
    text_of,
)

MSGS = [{"role": "user", "content": "hi"}]
OPENAI_CHAT = sorted(p.name for p in (FIXTURES / "openai-chat").iterdir() if p.is_file())
FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_calls", "content_filter": "content_filter"}
TERMINAL = ("done", "error")
DOMAIN_ERROR = -32000


# --- fixtures -------------------------------------------------------------------------------------
#
# One sidecar process serves the whole module (booting one costs about half a second of CPU, which
# would dominate the run); every test registers the providers it uses and picks its own stream ids.
# Every test gets its own upstream. Upstreams stay open until the module ends, so a port the kernel
# hands out later can never reach an old server through a connection pooled in the sidecar.


@pytest.fixture
def sidecar(module_sidecar: ModuleSidecar) -> Iterator[Sidecar]:
    sc = module_sidecar.get()
    yield sc
    assert sc.bad_lines == [], "stdout carried a line that is not JSON"


@pytest.fixture
def upstream(module_sidecar: ModuleSidecar) -> Upstream:
    return module_sidecar.upstream()


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# --- helpers --------------------------------------------------------------------------------


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    """One chat.completion.chunk as OpenAI streams it."""
    return {
        "id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 1754432618, "model": "gpt-test",
        "choices": [{"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}],
        **extra,
    }


def usage_chunk(prompt: int, completion: int, *, reasoning: int = 0, cached: int = 0) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 1754432618, "model": "gpt-test",
        "choices": [],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
                  "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
                  "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0}},
    }


def text_stream(*texts: str, finish: str = "stop", usage: tuple[int, int] = (5, 7), done: bool = True) -> list[bytes]:
    payloads: list[dict[str, Any]] = [chunk({"role": "assistant", "content": ""})]
    payloads += [chunk({"content": t}) for t in texts]
    payloads += [chunk({}, finish), usage_chunk(*usage)]
    return sse(payloads, done=done)


def json_reply(status: int, obj: Any) -> Reply:
    return Reply(status=status, chunks=[json.dumps(obj).encode()], headers={"content-type": "application/json"})


def start(sc: Sidecar, params: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Send llm_stream_text; return (the response object, the stream id). No retries unless asked:
    these tests are about one attempt (the fault-injection suite covers retries)."""
    resp = sc.request("llm_stream_text", {"retry": {"max_retries": 0}, **params})
    assert "result" in resp, resp
    return resp, resp["result"]["stream_id"]


def barrier(sc: Sidecar) -> None:
    """A round trip: whatever the sidecar wrote before answering it has been read."""
    sc.call("sidecar_info")


def ended(sc: Sidecar, stream_id: str) -> list[dict[str, Any]]:
    """The stream's events once it ended, checked against the contract's invariants."""
    sc.wait_stream_end(stream_id)
    barrier(sc)  # anything wrongly sent after the terminal event is now in the list too
    events = sc.events(stream_id)
    check_stream_invariants(events)
    return events


def run(sc: Sidecar, model: str, **params: Any) -> list[dict[str, Any]]:
    _, sid = start(sc, {"model": f"loopback:{model}", "messages": MSGS, **params})
    return ended(sc, sid)


def index_of(sc: Sidecar, pred: Any) -> int:
    return next(i for i, m in enumerate(sc.messages) if isinstance(m, dict) and pred(m))


def only_error(events: list[dict[str, Any]]) -> dict[str, Any]:
    assert events[-1]["type"] == "error", events[-1]
    return events[-1]["error"]


def stream_lines(sc: Sidecar) -> int:
    return sum(1 for m in list(sc.messages) if str(m.get("method", "")).startswith("llm-stream-"))


def wait_until(cond: Any, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return False


def assert_no_key_fragment(text: str, key: str) -> None:
    """No 8 consecutive characters of the key (the contract's preview shows at most 3 + 4)."""
    for i in range(len(key) - 7):
        assert key[i:i + 8] not in text, f"part of the key leaked: {key[i:i + 8]!r}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def expected_from_fixture(name: str) -> dict[str, Any]:
    """What the stream carries, read straight from the recorded payloads with stdlib json."""
    text: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    finish = None
    usage = None
    for raw in fixture_payloads(name):
        obj = json.loads(raw)
        if obj.get("usage"):
            usage = obj["usage"]
        for choice in obj.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                text.append(delta["content"])
            for tc in delta.get("tool_calls") or []:
                slot = calls.setdefault(tc["index"], {"id": None, "name": None, "args": ""})
                fn = tc.get("function") or {}
                slot["id"] = slot["id"] or tc.get("id")
                slot["name"] = slot["name"] or fn.get("name")
                slot["args"] += fn.get("arguments") or ""
            if choice.get("finish_reason"):
                finish = choice["finish_reason"]
    assert usage is not None, "every openai-chat fixture carries a usage chunk"
    ordered = [{"index": i, **calls[i]} for i in sorted(calls)]
    return {"text": "".join(text), "calls": ordered, "finish": finish, "usage": usage}


def assert_usage(got: dict[str, Any], upstream_usage: dict[str, Any]) -> None:
    details_in = upstream_usage.get("prompt_tokens_details") or {}
    details_out = upstream_usage.get("completion_tokens_details") or {}
    assert got["input_tokens"] == upstream_usage["prompt_tokens"]
    assert got["output_tokens"] == upstream_usage["completion_tokens"]
    assert got.get("reasoning_tokens", 0) == (details_out.get("reasoning_tokens") or 0)
    assert got.get("cached_input_tokens", 0) == (details_in.get("cached_tokens") or 0)


# --- recorded streams, end to end ----------------------------------------------------------------


@pytest.mark.parametrize("name", OPENAI_CHAT)
def test_fixture_replayed_end_to_end(sidecar: Sidecar, upstream: Upstream, name: str) -> None:
    register_upstream(sidecar, upstream)
    upstream.replies["rec-model"] = Reply(chunks=fixture_body(f"openai-chat/{name}"))
    expected = expected_from_fixture(f"openai-chat/{name}")

    want_id = new_id("rec")
    resp, sid = start(sidecar, {"model": "loopback:rec-model", "messages": MSGS, "stream_id": want_id})
    assert sid == want_id
    events = ended(sidecar, sid)

    # the response line is written before the stream's first event line
    resp_at = index_of(sidecar, lambda m: m.get("id") == resp["id"] and "method" not in m)
    first_event_at = index_of(sidecar, lambda m: m.get("method") == f"llm-stream-{sid}")
    assert resp_at < first_event_at

    assert all(e["stream_id"] == sid for e in events)
    assert events[0]["type"] == "start"
    assert events[0]["provider"] == "loopback" and events[0]["model"] == "loopback:rec-model"

    assert text_of(events) == expected["text"]

    starts = [(e["tool_call_id"], e["name"], e["index"]) for e in events if e["type"] == "tool_call_start"]
    calls = [(e["tool_call_id"], e["name"], e["arguments"]) for e in events if e["type"] == "tool_call"]
    want_calls = [(c["id"], c["name"], json.loads(c["args"]) if c["args"] else {}) for c in expected["calls"]]
    assert calls == want_calls
    assert sorted(starts) == sorted((c["id"], c["name"], c["index"]) for c in expected["calls"])
    for c in expected["calls"]:
        streamed = "".join(e["arguments_delta"] for e in events
                           if e["type"] == "tool_call_delta" and e["tool_call_id"] == c["id"])
        assert streamed == c["args"]
        pos = [i for i, e in enumerate(events) if e.get("tool_call_id") == c["id"]]
        assert events[pos[0]]["type"] == "tool_call_start" and events[pos[-1]]["type"] == "tool_call"

    done = events[-1]
    assert done["type"] == "done", done
    assert done["finish_reason"] == FINISH[expected["finish"]]
    assert done["model"] == "loopback:rec-model"
    assert_usage(done["usage"], expected["usage"])
    usage_events = [e for e in events if e["type"] == "usage"]
    assert len(usage_events) == 1
    assert_usage(usage_events[0], expected["usage"])
    assert sidecar.bad_lines == []


# --- every event type the openai protocol produces ---------------------------------------------


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_text_tool_call_usage_done(sidecar: Sidecar, upstream: Upstream, field: str) -> None:
    register_upstream(sidecar, upstream)
    upstream.replies["think"] = Reply(chunks=sse([
        chunk({"role": "assistant", field: "Let me "}),
        chunk({field: "think."}),
        chunk({"content": "Answer: "}),
        chunk({"content": "42"}),
        chunk({"tool_calls": [{"index": 0, "id": "call_abc", "type": "function",
                               "function": {"name": "lookup", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"q": '}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"life"}'}}]}),
        chunk({}, "tool_calls"),
        usage_chunk(10, 20, reasoning=5, cached=3),
    ]))
    events = run(sidecar, "think")
    types = [e["type"] for e in events]
    assert types[0] == "start" and types[-1] == "done"
    for t in ("reasoning_delta", "reasoning_end", "text_delta", "tool_call_start", "tool_call_delta",
              "tool_call", "usage"):
        assert t in types, (t, types)

    assert "".join(e["text"] for e in events if e["type"] == "reasoning_delta") == "Let me think."
    assert types.count("reasoning_end") == 1
    last_reasoning = max(i for i, t in enumerate(types) if t == "reasoning_delta")
    assert last_reasoning < types.index("reasoning_end") < types.index("text_delta")
    assert text_of(events) == "Answer: 42"

    assert types.index("tool_call_start") < types.index("tool_call_delta") < types.index("tool_call")
    tc_start = events[types.index("tool_call_start")]
    assert (tc_start["tool_call_id"], tc_start["name"], tc_start["index"]) == ("call_abc", "lookup", 0)
    assert "".join(e["arguments_delta"] for e in events if e["type"] == "tool_call_delta") == '{"q": "life"}'
    call = events[types.index("tool_call")]
    assert (call["tool_call_id"], call["name"], call["arguments"]) == ("call_abc", "lookup", {"q": "life"})

    usage = events[types.index("usage")]
    want = {"input_tokens": 10, "output_tokens": 20, "reasoning_tokens": 5, "cached_input_tokens": 3}
    assert {k: usage[k] for k in want} == want
    assert types.index("usage") < len(types) - 1
    done = events[-1]
    assert done["finish_reason"] == "tool_calls"
    assert {k: done["usage"][k] for k in want} == want
    assert done["model"] == "loopback:think"
    assert isinstance(done["latency_ms"], int | float) and done["latency_ms"] >= 0


def test_reasoning_end_sent_when_the_stream_ends_in_reasoning(sidecar: Sidecar, upstream: Upstream) -> None:
    register_upstream(sidecar, upstream)
    upstream.replies["think-only"] = Reply(chunks=sse([
        chunk({"role": "assistant", "reasoning_content": "hmm"}), chunk({}, "length"), usage_chunk(3, 4),
    ]))
    events = run(sidecar, "think-only")
    types = [e["type"] for e in events]
    assert types.count("reasoning_end") == 1
    assert types.index("reasoning_delta") < types.index("reasoning_end") < types.index("done")
    assert text_of(events) == ""
    assert events[-1]["finish_reason"] == "length"


def test_malformed_tool_arguments_still_end_the_call(sidecar: Sidecar, upstream: Upstream) -> None:
    register_upstream(sidecar, upstream)
    upstream.replies["badargs"] = Reply(chunks=sse([
        chunk({"tool_calls": [{"index": 0, "id": "call_x", "type": "function",
                               "function": {"name": "f", "arguments": '{"a": '}}]}),
        chunk({}, "tool_calls"), usage_chunk(1, 1),
    ]))
    events = run(sidecar, "badargs")
    calls = [e for e in events if e["type"] == "tool_call"]
    assert len(calls) == 1 and calls[0]["tool_call_id"] == "call_x" and calls[0]["name"] == "f"
    assert isinstance(calls[0]["arguments"], dict)  # the contract's type, even for broken JSON
    assert events[-1]["type"] == "done" and events[-1]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize(("frame", "code", "status"), [
    # OpenAI: an error object in a data line, then the connection ends
    (b'data: {"error": {"message": "The server had an error while processing your request. Sorry about that!",'
     b' "type": "server_error", "param": null, "code": null}}\n\n', "upstream_unavailable", None),
    # Groq: an `event: error` frame carrying status_code
    (b'event: error\ndata: {"error":{"message":"Failed to call a function.","type":"invalid_request_error",'
     b'"code":"tool_use_failed","status_code":400}}\n\n', "invalid_request", 400),
], ids=["openai-data-error", "groq-event-error"])
def test_error_reported_inside_the_stream(sidecar: Sidecar, upstream: Upstream, frame: bytes, code: str,
                                          status: int | None) -> None:
    register_upstream(sidecar, upstream)
    upstream.replies["midfail"] = Reply(chunks=[*sse([chunk({"content": "partial"})], done=False), frame])
    events = run(sidecar, "midfail")
    assert [e["type"] for e in events] == ["start", "text_delta", "error"]
    assert text_of(events) == "partial"
    err = only_error(events)
    assert err["code"] == code
    assert err["provider"] == "loopback"
    assert err.get("status") == status
    assert err["retryable"] is (code == "upstream_unavailable")
    assert isinstance(err["message"], str) and err["message"]


# --- abort ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["hang", "slow-chunks"])
def test_abort_mid_stream(sidecar: Sidecar, upstream: Upstream, mode: str) -> None:
    register_upstream(sidecar, upstream)
    if mode == "hang":
        reply = Reply(chunks=sse([chunk({"content": "one "}), chunk({"content": "two "})], done=False), hang=True)
    else:
        reply = Reply(chunks=text_stream(*[f"w{i} " for i in range(60)]), delay=0.1)
    upstream.replies["slow"] = reply
    _, sid = start(sidecar, {"model": "loopback:slow", "messages": MSGS, "stream_id": new_id("ab")})
    sidecar.wait_for(lambda m: m.get("method") == f"llm-stream-{sid}" and m["params"]["type"] == "text_delta")

    assert sidecar.call("llm_abort_stream", {"stream_id": sid}) == {"aborted": True}
    events = ended(sidecar, sid)
    err = only_error(events)
    assert err["code"] == "cancelled"
    assert [e["type"] for e in events if e["type"] in TERMINAL] == ["error"]
    assert text_of(events)  # what came before the abort was delivered
    assert upstream.seen[0].disconnected.wait(5), "the upstream connection should be closed on abort"
    assert not upstream.seen[0].finished.is_set()

    # once ended, the stream is unknown to abort
    assert sidecar.call("llm_abort_stream", {"stream_id": sid}) == {"aborted": False}
    barrier(sidecar)
    assert len(sidecar.events(sid)) == len(events)


def test_abort_before_any_output(sidecar: Sidecar, upstream: Upstream) -> None:
    register_upstream(sidecar, upstream)
    upstream.replies["silent"] = Reply(chunks=[], hang=True)
    _, sid = start(sidecar, {"model": "loopback:silent", "messages": MSGS, "stream_id": new_id("ab")})
    sidecar.wait_for(lambda m: m.get("method") == f"llm-stream-{sid}")  # start
    # wait until the request reached the upstream, so the abort cuts a live connection
    assert wait_until(lambda: len(upstream.seen) == 1)
    assert sidecar.call("llm_abort_stream", {"stream_id": sid}) == {"aborted": True}
    events = ended(sidecar, sid)
    assert [e["type"] for e in events] == ["start", "error"]
    assert only_error(events)["code"] == "cancelled"
    assert upstream.seen[0].disconnected.wait(5)


def test_abort_unknown_or_finished_stream(sidecar: Sidecar, upstream: Upstream) -> None:
    assert sidecar.call("llm_abort_stream", {"stream_id": "never-started"}) == {"aborted": False}
    register_upstream(sidecar, upstream)
    upstream.replies["quick"] = Reply(chunks=text_stream("ok"))
    sid = new_id("fin")
    events = run(sidecar, "quick", stream_id=sid)
    assert events[-1]["type"] == "done"
    assert sidecar.call("llm_abort_stream", {"stream_id": sid}) == {"aborted": False}
    barrier(sidecar)
    assert sidecar.events(sid) == events


# --- concurrency ----------------------------------------------------------------------------------


def test_two_concurrent_streams_interleave(sidecar: Sidecar, upstream: Upstream) -> None:
    register_upstream(sidecar, upstream)
    a_words = [f"A{i} " for i in range(6)]
    b_words = [f"B{i} " for i in range(6)]
    upstream.replies["model-a"] = Reply(chunks=text_stream(*a_words, usage=(11, 6)), delay=0.1)
    upstream.replies["model-b"] = Reply(chunks=text_stream(*b_words, usage=(22, 6)), delay=0.1)

    resp_a, sid_a = start(sidecar, {"model": "loopback:model-a", "messages": MSGS, "stream_id": new_id("cc-a")})
    resp_b, sid_b = start(sidecar, {"model": "loopback:model-b", "messages": MSGS, "stream_id": new_id("cc-b")})
    ev_a, ev_b = ended(sidecar, sid_a), ended(sidecar, sid_b)

    assert text_of(ev_a) == "".join(a_words) and text_of(ev_b) == "".join(b_words)
    assert all(e["stream_id"] == sid_a for e in ev_a) and all(e["stream_id"] == sid_b for e in ev_b)
    assert ev_a[0]["model"] == "loopback:model-a" and ev_b[0]["model"] == "loopback:model-b"
    assert ev_a[-1]["type"] == ev_b[-1]["type"] == "done"
    assert ev_a[-1]["usage"]["input_tokens"] == 11 and ev_b[-1]["usage"]["input_tokens"] == 22

    # on stdout the two streams' events alternate rather than one running after the other
    order = [m["params"]["stream_id"] for m in sidecar.messages
             if isinstance(m, dict) and m.get("method") in (f"llm-stream-{sid_a}", f"llm-stream-{sid_b}")]
    switches = sum(1 for x, y in itertools.pairwise(order) if x != y)
    assert switches >= 3, order
    for resp, sid in ((resp_a, sid_a), (resp_b, sid_b)):
        assert index_of(sidecar, lambda m, r=resp: m.get("id") == r["id"] and "method" not in m) < index_of(
            sidecar, lambda m, s=sid: m.get("method") == f"llm-stream-{s}")


def test_fast_request_answered_while_a_stream_is_in_flight(sidecar: Sidecar, upstream: Upstream) -> None:
    register_upstream(sidecar, upstream)
    upstream.replies["stuck"] = Reply(chunks=sse([chunk({"content": "thinking..."})], done=False), hang=True)
    _, sid = start(sidecar, {"model": "loopback:stuck", "messages": MSGS})
    sidecar.wait_for(lambda m: m.get("method") == f"llm-stream-{sid}" and m["params"]["type"] == "text_delta")

    providers = sidecar.call("list_providers")
    assert "loopback" in [p["id"] for p in providers]
    assert not [e for e in sidecar.events(sid) if e["type"] in TERMINAL], "the stream is still running"

    assert sidecar.call("llm_abort_stream", {"stream_id": sid}) == {"aborted": True}
    assert only_error(ended(sidecar, sid))["code"] == "cancelled"


# --- HTTP errors ---------------------------------------------------------------------------------


HTTP_ERRORS = [
    (400, {"message": "Invalid value for 'temperature': expected a number.", "type": "invalid_request_error",
           "param": "temperature", "code": "invalid_value"}, "invalid_request", False),
    (401, {"message": "Incorrect API key provided: sk-abc***wxyz.", "type": "invalid_request_error",
           "param": None, "code": "invalid_api_key"}, "authentication_failed", False),
    (403, {"message": "Your organization is not allowed to use this endpoint.", "type": "invalid_request_error",
           "param": None, "code": "unsupported_country_region_territory"}, "permission_denied", False),
    (404, {"message": "Invalid URL (POST /v1/chat/completions)", "type": "invalid_request_error",
           "param": None, "code": None}, "not_found", False),
    (429, {"message": "Rate limit reached for requests per min (RPM): Limit 3, Used 3, Requested 1. "
                      "Please try again in 20s.", "type": "requests", "param": None,
           "code": "rate_limit_exceeded"}, "rate_limited", True),
    (500, {"message": "The server had an error while processing your request. Sorry about that!",
           "type": "server_error", "param": None, "code": None}, "upstream_unavailable", True),
    (503, {"message": "The engine is currently overloaded, please try again later", "type": "server_error",
           "param": None, "code": None}, "upstream_unavailable", True),
    (400, {"message": "This model's maximum context length is 128000 tokens. However, your messages resulted "
                      "in 130017 tokens. Please reduce the length of the messages.",
           "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"},
     "context_length_exceeded", False),
]


@pytest.mark.parametrize(("status", "error", "code", "retryable"), HTTP_ERRORS,
                         ids=[f"{s}-{c}" for s, _, c, _ in HTTP_ERRORS])
def test_http_error_status(sidecar: Sidecar, upstream: Upstream, status: int, error: dict[str, Any], code: str,
                           retryable: bool) -> None:
    register_upstream(sidecar, upstream)
    upstream.replies["err"] = json_reply(status, {"error": error})
    events = run(sidecar, "err")
    assert [e["type"] for e in events] == ["start", "error"]
    err = only_error(events)
    assert err["code"] == code
    assert err["status"] == status
    assert err["retryable"] is retryable
    assert err["provider"] == "loopback"
    assert isinstance(err["message"], str) and err["message"]


def test_http_404_unknown_model(sidecar: Sidecar, upstream: Upstream) -> None:
    register_upstream(sidecar, upstream)
    upstream.replies["gpt-9"] = json_reply(404, {"error": {
        "message": "The model `gpt-9` does not exist or you do not have access to it.",
        "type": "invalid_request_error", "param": None, "code": "model_not_found"}})
    err = only_error(run(sidecar, "gpt-9"))
    assert err["code"] == "unknown_model" and err["status"] == 404 and err["retryable"] is False


def test_connection_reused_after_an_error_status(sidecar: Sidecar, upstream: Upstream) -> None:
    register_upstream(sidecar, upstream)
    upstream.replies["limited"] = json_reply(429, {"error": {"message": "Rate limit reached", "type": "requests",
                                                             "code": "rate_limit_exceeded"}})
    upstream.replies["fine"] = Reply(chunks=text_stream("ok"))
    assert only_error(run(sidecar, "limited"))["code"] == "rate_limited"
    assert text_of(run(sidecar, "fine")) == "ok"
    assert upstream.connections == 1


# --- broken streams --------------------------------------------------------------------------------


def test_connection_dropped_mid_stream(sidecar: Sidecar, upstream: Upstream) -> None:
    register_upstream(sidecar, upstream)
    upstream.replies["drop"] = Reply(chunks=sse([chunk({"content": "half an ans"})], done=False), drop=True)
    events = run(sidecar, "drop")
    assert [e["type"] for e in events] == ["start", "text_delta", "error"]
    assert text_of(events) == "half an ans"
    err = only_error(events)
    assert err["code"] == "network_error" and err["provider"] == "loopback"


def test_clean_end_before_done_marker_and_finish_reason(sidecar: Sidecar, upstream: Upstream) -> None:
    register_upstream(sidecar, upstream)
    upstream.replies["short"] = Reply(chunks=sse([chunk({"content": "cut "}), chunk({"content": "off"})],
                                                 done=False))
    events = run(sidecar, "short")
    assert text_of(events) == "cut off"
    assert only_error(events)["code"] == "network_error"


@pytest.mark.parametrize("garbage", [
    b"data: {not json\n\n",
    b"data: \xff\xfe\x00\x01 binary junk\n\n",
    b'data: {"choices": "not a list"}\n\n',
], ids=["broken-json", "binary", "wrong-shape"])
def test_garbage_bytes_are_a_protocol_error(sidecar: Sidecar, upstream: Upstream, garbage: bytes) -> None:
    register_upstream(sidecar, upstream)
    upstream.replies["junk"] = Reply(chunks=[*sse([chunk({"content": "ok so far"})], done=False), garbage,
                                             b"data: [DONE]\n\n"])
    events = run(sidecar, "junk")
    assert text_of(events) == "ok so far"
    assert only_error(events)["code"] == "protocol_error"


def test_200_json_instead_of_a_stream_is_a_protocol_error(sidecar: Sidecar, upstream: Upstream) -> None:
    register_upstream(sidecar, upstream)
    upstream.replies["nostream"] = json_reply(200, {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-test",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
    events = run(sidecar, "nostream")
    assert [e["type"] for e in events] == ["start", "error"]
    assert only_error(events)["code"] == "protocol_error"


def test_200_json_error_object_is_mapped(sidecar: Sidecar, upstream: Upstream) -> None:
    register_upstream(sidecar, upstream)
    upstream.replies["ctx"] = json_reply(200, {"error": {
        "message": "This model's maximum context length is 8192 tokens.", "type": "invalid_request_error",
        "code": "context_length_exceeded"}})
    assert only_error(run(sidecar, "ctx"))["code"] == "context_length_exceeded"


@pytest.mark.parametrize(("error", "code"), [
    ({"message": "Rate limit reached for requests", "type": "requests", "code": "rate_limit_exceeded"},
     "rate_limited"),
    ({"message": "The server is overloaded, try again later", "type": "server_error", "code": None},
     "upstream_unavailable"),
], ids=["rate-limit", "overloaded"])
def test_200_json_error_object_mapped_by_its_text(sidecar: Sidecar, upstream: Upstream, error: dict[str, Any],
                                                  code: str) -> None:
    register_upstream(sidecar, upstream)
    upstream.replies["e200"] = json_reply(200, {"error": error})
    err = only_error(run(sidecar, "e200"))
    assert err["code"] == code
    assert err["retryable"] is True


def test_connection_refused(sidecar: Sidecar) -> None:
    port = free_port()
    sidecar.call("llm_register_custom_provider", {"id": "dead", "name": "Dead", "protocol": "openai",
                                                  "base_url": f"http://127.0.0.1:{port}/v1",
                                                  "requires_api_key": False})
    _, sid = start(sidecar, {"model": "dead:m", "messages": MSGS})
    events = ended(sidecar, sid)
    assert [e["type"] for e in events] == ["start", "error"]
    err = only_error(events)
    assert err["code"] == "network_error" and err["provider"] == "dead"


def test_idle_stall_times_out(sidecar: Sidecar, upstream: Upstream) -> None:
    register_upstream(sidecar, upstream)
    upstream.replies["stall"] = Reply(chunks=text_stream("late"), delay=3.0)  # headers now, body after 3 s
    events = run(sidecar, "stall", timeouts={"idle_ms": 300})
    assert [e["type"] for e in events] == ["start", "error"]
    err = only_error(events)
    assert err["code"] == "timeout" and err["provider"] == "loopback"


def test_total_timeout_while_bytes_keep_coming(sidecar: Sidecar, upstream: Upstream) -> None:
    register_upstream(sidecar, upstream)
    upstream.replies["trickle"] = Reply(chunks=sse([chunk({"content": "a"})], done=False), hang=True)
    events = run(sidecar, "trickle", timeout_ms=500)
    assert text_of(events) == "a"
    assert only_error(events)["code"] == "timeout"


# --- errors found before the network ----------------------------------------------------------------


def _pre_network_error(sc: Sidecar, params: dict[str, Any], stream_id: str = "") -> dict[str, Any]:
    stream_id = stream_id or new_id("pre")
    resp = sc.request("llm_stream_text", {"messages": MSGS, "stream_id": stream_id, **params})
    assert "error" in resp and "result" not in resp, resp
    barrier(sc)
    assert sc.events(stream_id) == [], "no event for a request refused before the network"
    return resp["error"]


def test_unknown_provider_is_the_response_error(sidecar: Sidecar, upstream: Upstream) -> None:
    register_upstream(sidecar, upstream)
    sid = new_id("pre")
    err = _pre_network_error(sidecar, {"model": "nosuch:gpt-4o"}, sid)
    assert err["code"] == DOMAIN_ERROR
    assert err["data"]["code"] == "unknown_provider" and err["data"]["retryable"] is False
    assert upstream.seen == []
    # the refused id is free again
    upstream.replies["m"] = Reply(chunks=text_stream("again"))
    events = run(sidecar, "m", stream_id=sid)
    assert text_of(events) == "again"


@pytest.mark.parametrize("model", ["no-colon-here", "loopback:", ":m"])
def test_bad_model_string_is_the_response_error(sidecar: Sidecar, upstream: Upstream, model: str) -> None:
    register_upstream(sidecar, upstream)
    err = _pre_network_error(sidecar, {"model": model})
    assert err["code"] == DOMAIN_ERROR and err["data"]["code"] == "invalid_request"
    assert upstream.seen == []


def test_missing_key_is_the_response_error(sidecar: Sidecar, upstream: Upstream) -> None:
    register_upstream(sidecar, upstream, provider_id="keyed", requires_api_key=True)
    err = _pre_network_error(sidecar, {"model": "keyed:m"})
    assert err["code"] == DOMAIN_ERROR
    assert err["data"]["code"] == "missing_api_key" and err["data"]["provider"] == "keyed"
    assert upstream.seen == []


# --- keys on the wire -------------------------------------------------------------------------------


@pytest.fixture
def keyed_sidecar(data_dir: Path) -> Iterator[Sidecar]:
    proc = Sidecar(data_dir, "--allow-env", "LOOPBACK_TEST_KEY=127.0.0.1",
                   env={"LOOPBACK_TEST_KEY": "sk-loop-0123456789abcdefSECRET"})
    proc.wait_for(lambda m: m.get("method") == "sidecar-ready")
    yield proc
    proc.kill()


def test_env_key_sent_as_bearer_and_never_echoed(keyed_sidecar: Sidecar, upstream: Upstream) -> None:
    key = "sk-loop-0123456789abcdefSECRET"
    register_upstream(keyed_sidecar, upstream, provider_id="keyed", requires_api_key=True,
                      api_key_env="LOOPBACK_TEST_KEY")
    upstream.replies["ok"] = Reply(chunks=text_stream("hello"))
    upstream.replies["bad"] = json_reply(401, {"error": {
        "message": f"Incorrect API key provided: {key}. You can find your API key at "
                   "https://platform.openai.com/account/api-keys.",
        "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}})

    _, sid = start(keyed_sidecar, {"model": "keyed:ok", "messages": MSGS})
    assert text_of(ended(keyed_sidecar, sid)) == "hello"
    assert upstream.seen[0].headers["authorization"] == f"Bearer {key}"

    _, sid = start(keyed_sidecar, {"model": "keyed:bad", "messages": MSGS})
    assert only_error(ended(keyed_sidecar, sid))["code"] == "authentication_failed"
    assert_no_key_fragment(b"".join(keyed_sidecar.raw_lines).decode(), key)


# --- complete_chat ---------------------------------------------------------------------------------


def test_complete_chat_against_the_upstream(sidecar: Sidecar, upstream: Upstream) -> None:
    register_upstream(sidecar, upstream)
    upstream.replies["cc"] = Reply(chunks=fixture_body("openai-chat/text-then-tool-call.chunks.txt"))
    before = stream_lines(sidecar)
    result = sidecar.call("complete_chat", {"model": "loopback:cc", "messages": MSGS})
    assert result["content"] == "PRE_TOOL"
    assert result["parts"] == [
        {"type": "text", "text": "PRE_TOOL"},
        {"type": "tool_call", "id": "call_NZa7xqfefoaMI2YYHowVXVlU", "name": "weather", "arguments": {}},
    ]
    assert result["finish_reason"] == "tool_calls"
    assert result["usage"]["input_tokens"] == 58 and result["usage"]["output_tokens"] == 12
    assert result["model"] == "loopback:cc"
    assert upstream.seen[0].body["stream"] is True
    # complete_chat sends no stream events
    barrier(sidecar)
    assert stream_lines(sidecar) == before


def test_complete_chat_text_and_usage(sidecar: Sidecar, upstream: Upstream) -> None:
    register_upstream(sidecar, upstream)
    upstream.replies["plain"] = Reply(chunks=fixture_body("openai-chat/text-usage-chunk.sse"))
    expected = expected_from_fixture("openai-chat/text-usage-chunk.sse")
    result = sidecar.call("complete_chat", {"model": "loopback:plain", "messages": MSGS})
    assert result["content"] == expected["text"]
    assert result["parts"] == [{"type": "text", "text": expected["text"]}]
    assert result["finish_reason"] == "stop"
    assert_usage(result["usage"], expected["usage"])


def test_complete_chat_upstream_error_is_the_response_error(sidecar: Sidecar, upstream: Upstream) -> None:
    register_upstream(sidecar, upstream)
    upstream.replies["busy"] = json_reply(503, {"error": {"message": "The engine is currently overloaded",
                                                          "type": "server_error", "code": None}})
    resp = sidecar.request("complete_chat", {"model": "loopback:busy", "messages": MSGS})
    assert resp["error"]["code"] == DOMAIN_ERROR
    assert resp["error"]["data"]["code"] == "upstream_unavailable"
    assert resp["error"]["data"]["status"] == 503 and resp["error"]["data"]["retryable"] is True


# --- the HTTP the upstream sees ---------------------------------------------------------------------


def test_connection_reused_across_sequential_streams(sidecar: Sidecar, upstream: Upstream) -> None:
    register_upstream(sidecar, upstream)
    upstream.replies["reuse"] = Reply(chunks=fixture_body("openai-chat/text-usage-chunk.sse"))
    for _ in range(3):
        assert run(sidecar, "reuse")[-1]["type"] == "done"
    assert len(upstream.seen) == 3
    assert upstream.connections == 1


def test_request_sent_upstream(sidecar: Sidecar, upstream: Upstream) -> None:
    register_upstream(sidecar, upstream, headers={"x-team": "blue"}, extra_body={"service_tier": "flex"})
    upstream.replies["gpt-x"] = Reply(chunks=text_stream("ok"))
    tools = [{"name": "get_weather", "description": "Weather for a city",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
    run(sidecar, "gpt-x", system="Be brief.", temperature=0.3, max_tokens=50, tools=tools, tool_choice="auto",
        provider_options={"top_k": 7, "user": "u-1"})

    seen = upstream.seen[0]
    assert seen.method == "POST"
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["content-type"].startswith("application/json")
    assert "text/event-stream" in seen.headers.get("accept", "")
    assert "authorization" not in seen.headers  # no key for this provider
    assert seen.headers["x-team"] == "blue"
    body = seen.body
    assert body["model"] == "gpt-x"
    assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["temperature"] == 0.3
    assert body["max_tokens"] == 50
    assert body["tools"] == [{"type": "function", "function": tools[0]}]
    assert body["tool_choice"] == "auto"
    assert body["top_k"] == 7 and body["user"] == "u-1"
    assert body["service_tier"] == "flex"


def test_tool_round_trip_messages_encoded(sidecar: Sidecar, upstream: Upstream) -> None:
    register_upstream(sidecar, upstream)
    upstream.replies["m"] = Reply(chunks=text_stream("It is sunny."))
    messages = [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": {"city": "Oslo"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    _, sid = start(sidecar, {"model": "loopback:m", "messages": messages})
    assert text_of(ended(sidecar, sid)) == "It is sunny."
    sent = upstream.seen[0].body["messages"]
    assert sent[0] == {"role": "user", "content": "Weather in Oslo?"}
    assert sent[1]["role"] == "assistant" and sent[1]["content"] == "Checking."
    [tc] = sent[1]["tool_calls"]
    assert tc["id"] == "call_1" and tc["type"] == "function" and tc["function"]["name"] == "get_weather"
    assert json.loads(tc["function"]["arguments"]) == {"city": "Oslo"}
    assert sent[2] == {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}


# --- test_provider_connection -----------------------------------------------------------------------


def test_provider_connection_ok(sidecar: Sidecar, upstream: Upstream) -> None:
    register_upstream(sidecar, upstream)
    upstream.replies["/v1/models"] = json_reply(200, {"object": "list", "data": [
        {"id": "gpt-test", "object": "model", "created": 1, "owned_by": "me"}]})
    result = sidecar.call("test_provider_connection", {"provider": "loopback", "api_key": "sk-probe-1234567890abcdef"})
    assert result["ok"] is True
    assert isinstance(result["latency_ms"], int | float) and result["latency_ms"] >= 0
    assert "error" not in result or result["error"] is None
    seen = upstream.seen[0]
    assert (seen.method, seen.path) == ("GET", "/v1/models")
    assert seen.headers["authorization"] == "Bearer sk-probe-1234567890abcdef"


def test_provider_connection_unauthorized(sidecar: Sidecar, upstream: Upstream) -> None:
    register_upstream(sidecar, upstream)
    key = "sk-probe-bad-000011112222"
    upstream.replies["/v1/models"] = json_reply(401, {"error": {
        "message": f"Incorrect API key provided: {key}.", "type": "invalid_request_error", "param": None,
        "code": "invalid_api_key"}})
    result = sidecar.call("test_provider_connection", {"provider": "loopback", "api_key": key})
    assert result["ok"] is False
    assert result["error"]["code"] == "authentication_failed"
    assert result["error"]["status"] == 401
    assert_no_key_fragment(result["error"]["message"], key)


def test_provider_connection_refused(sidecar: Sidecar) -> None:
    port = free_port()
    sidecar.call("llm_register_custom_provider", {"id": "dead", "name": "Dead", "protocol": "openai",
                                                  "base_url": f"http://127.0.0.1:{port}/v1",
                                                  "requires_api_key": False})
    result = sidecar.call("test_provider_connection", {"provider": "dead"})
    assert result["ok"] is False and result["error"]["code"] == "network_error"
