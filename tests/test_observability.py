"""Structured logs (opt-in request logging, never a secret or content), and aborting a complete_chat."""

from __future__ import annotations

import json
import time
from pathlib import Path

from conftest import register_upstream
from harness import Reply, Sidecar, Upstream, sse

from sidecar.logs import scrub

SECRET_TEXT = "the user's private words"


def test_json_request_log_has_fields_and_no_content(data_dir: Path, upstream: Upstream) -> None:
    sc = Sidecar(data_dir, "--log-format", "json", "--log-requests", "--allow-env", "MY_KEY=127.0.0.1",
                 env={"MY_KEY": "sk-live-abcdefghijklmnop1234"})
    sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
    try:
        register_upstream(sc, upstream, "logged", requires_api_key=True, api_key_env="MY_KEY")
        text = {"choices": [{"index": 0, "delta": {"content": "fine"}, "finish_reason": "stop"}]}
        usage = {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}
        upstream.replies["m"] = Reply(chunks=sse([text, usage]))
        events = sc.stream({"model": "logged:m", "messages": [{"role": "user", "content": SECRET_TEXT}]})
        assert events[-1]["type"] == "done"
        sc.call("shutdown")
        sc.wait_exit(5)
    finally:
        sc.kill()
    lines = [json.loads(line) for line in bytes(sc.stderr).decode().splitlines() if line.startswith("{")]
    by_msg = {entry["msg"]: entry for entry in lines}
    req = by_msg["upstream request"]
    assert (req["provider"], req["model"], req["method"]) == ("logged", "logged:m", "POST")
    assert req["url"] == f"{upstream.base_url}/chat/completions" and req["body_bytes"] > 0
    assert by_msg["upstream answer"]["status"] == 200
    done = by_msg["request finished"]
    summary = (done["outcome"], done["finish_reason"], done["input_tokens"], done["output_tokens"])
    assert summary == ("done", "stop", 3, 1)
    assert all(entry["level"] in ("debug", "info", "warning", "error") for entry in lines)
    stderr = bytes(sc.stderr).decode()
    assert SECRET_TEXT not in stderr and "abcdefghijklmnop" not in stderr


def test_scrub_removes_tokens_and_keys() -> None:
    line = ('Authorization: Bearer abc.def-123 and {"x-api-key": "sk-ant-api03-ABCDEFGHIJKLMNOP"} '
            "url?key=AIzaSyA1234567890abcdefghijk&alt=sse plain sk-proj-0123456789abcdef")
    out = scrub(line)
    for secret in ("abc.def-123", "ABCDEFGHIJKLMNOP", "AIzaSyA1234567890abcdefghijk", "0123456789abcdef"):
        assert secret not in out
    assert "alt=sse" in out and out.count("[redacted]") == 4


def test_complete_chat_with_a_stream_id_can_be_aborted(sidecar: Sidecar) -> None:
    sidecar.send({"jsonrpc": "2.0", "id": "slow", "method": "complete_chat", "params": {
        "stream_id": "cc1", "model": "mock:echo", "messages": [{"role": "user", "content": "x" * 400}],
        "provider_options": {"chunk_delay_ms": 50}}})
    # the two lines are served concurrently: ask again until the request has claimed its id
    deadline = time.monotonic() + 5
    while sidecar.call("llm_abort_stream", {"stream_id": "cc1"}) != {"aborted": True}:
        assert time.monotonic() < deadline, "complete_chat never became abortable"
        time.sleep(0.02)
    resp = sidecar.wait_for(lambda m: m.get("id") == "slow")
    assert resp["error"]["code"] == -32000 and resp["error"]["data"]["code"] == "cancelled"
    # the id is free again, and a complete_chat without abort finishes
    result = sidecar.call("complete_chat", {"stream_id": "cc1", "model": "mock:echo",
                                            "messages": [{"role": "user", "content": "again"}]})
    assert result["content"] == "again"
