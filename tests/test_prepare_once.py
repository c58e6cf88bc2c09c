"""Prepare once (CONTRACT §5): a request the protocol refuses while encoding is the RPC error, with no event
and nothing sent upstream; retries send the same encoded body."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Reply, Sidecar, Upstream

KEY_ENV = "PREPARE_TEST_KEY"
KEY = "sk-prepare-test-0123456789"


@pytest.fixture
def anth(upstream: Upstream, data_dir: Path) -> Iterator[Sidecar]:
    sc = Sidecar(data_dir, "--allow-env", f"{KEY_ENV}=127.0.0.1", env={KEY_ENV: KEY})
    sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
    sc.call("llm_register_custom_provider", {
        "id": "anth", "name": "A", "protocol": "anthropic", "base_url": upstream.base_url,
        "requires_api_key": True, "api_key_env": KEY_ENV})
    sc.call("llm_register_custom_provider", {
        "id": "oai", "name": "O", "protocol": "openai", "base_url": upstream.base_url, "requires_api_key": False})
    yield sc
    sc.kill()


def test_an_encode_time_refusal_is_the_rpc_error_with_no_event(anth: Sidecar, upstream: Upstream) -> None:
    answer = anth.request("llm_stream_text", {
        "model": "anth:claude-test", "stream_id": "refused", "max_tokens": 100, "reasoning": {"budget_tokens": 5000},
        "messages": [{"role": "user", "content": "hi"}]})
    assert "result" not in answer
    assert answer["error"]["data"]["code"] == "invalid_request"
    assert "max_tokens (100) must exceed the thinking budget (5000)" in answer["error"]["data"]["message"]
    anth.call("sidecar_info")  # a round trip: an event wrongly sent would be in by now
    assert anth.events("refused") == []
    assert upstream.seen == []
    # the id was freed: the same stream id works for the next request
    ok = anth.request("llm_stream_text", {"model": "mock:echo", "stream_id": "refused",
                                          "messages": [{"role": "user", "content": "x"}]})
    assert ok["result"] == {"stream_id": "refused"}
    assert anth.wait_stream_end("refused")[-1]["type"] == "done"


def test_the_same_refusal_in_complete_chat_and_a_tool_loop(anth: Sidecar) -> None:
    bad = {"model": "anth:claude-test", "max_tokens": 100, "reasoning": {"budget_tokens": 5000},
           "messages": [{"role": "user", "content": "hi"}]}
    for method, extra in (("complete_chat", {}), ("complete_chat", {"stream_id": "c1"}),
                          ("llm_chat_loop_start", {"stream_id": "l1"})):
        answer = anth.request(method, {**bad, **extra})
        assert answer["error"]["data"]["code"] == "invalid_request", method
    anth.call("sidecar_info")
    assert anth.events("c1") == [] and anth.events("l1") == []


def test_retries_send_the_same_encoded_body(anth: Sidecar, upstream: Upstream) -> None:
    upstream.replies["flaky"] = Reply(status=503, chunks=[b'{"error":{"message":"busy"}}'],
                                      headers={"content-type": "application/json", "retry-after": "0"})
    events = anth.stream({"model": "oai:flaky", "stream_id": "r1", "messages": [{"role": "user", "content": "hi"}],
                          "retry": {"max_retries": 2, "max_delay_ms": 5000}})
    assert [e["type"] for e in events] == ["start", "retry", "retry", "error"]
    bodies = [s.body for s in upstream.seen if isinstance(s.body, dict) and s.body.get("model") == "flaky"]
    assert len(bodies) == 3 and bodies[0] == bodies[1] == bodies[2]
