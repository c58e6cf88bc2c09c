"""Honest usage: an upstream that reports no usage gets its tokens counted by the sidecar, with the
server's tokenizer where it has one, else estimated, and marked ``estimated: true`` in ``done``, in
the ``usage`` event and in the usage log. Against a real llama-cpp-python server (which streams no
usage), a loopback fake of llama.cpp's ``/tokenize``, a server with no tokenizer, an upstream that
does report usage, and the mock.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import register_upstream
from harness import Reply, Sidecar, Upstream, sse, text_of

from sidecar.engine import Outcome
from sidecar.types import Usage, UsageStatsParams
from sidecar.usage import FILE_NAME, UsageStore

GGUF_ENV = "LLM_SIDECAR_TEST_GGUF"
DEFAULT_GGUF = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llm-sidecar-test" / (
    "SmolLM2-135M-Instruct.Q4_1.gguf")

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "count these five words please"},
]


def chunk(content: str | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    delta = {"content": content} if content is not None else {}
    return {"id": "c1", "object": "chat.completion.chunk", "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}


NO_USAGE = sse([chunk("one two"), chunk(" three"), chunk(finish="stop")])


def done_of(events: list[dict[str, Any]]) -> dict[str, Any]:
    assert events[-1]["type"] == "done", events[-1]
    return events[-1]


def usage_event(events: list[dict[str, Any]]) -> dict[str, Any]:
    (usage,) = [e for e in events if e["type"] == "usage"]
    return usage


# --- a loopback fake of llama.cpp's server: a stream without usage, and /tokenize -------------------


class FakeLlamaCpp:
    """``/v1/chat/completions`` streams ``NO_USAGE``; ``POST /tokenize`` gives one token per word."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.tokenized: list[Any] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"null")
                if self.path == "/v1/chat/completions":
                    self._send(b"".join(NO_USAGE), "text/event-stream")
                elif self.path == "/tokenize":
                    fake.tokenized.append(body)
                    tokens = list(range(len(body["content"].split())))
                    self._send(json.dumps({"tokens": tokens}).encode(), "application/json")
                else:
                    self.send_error(404)

            def _send(self, data: bytes, content_type: str) -> None:
                self.send_response(200)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://{host}:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()  # a quick close

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_the_servers_tokenizer_counts_what_the_stream_did_not_report(sidecar: Sidecar) -> None:
    fake = FakeLlamaCpp()
    try:
        sidecar.call("llm_register_custom_provider", {"id": "lcpp", "name": "llama.cpp", "protocol": "openai",
                                                      "base_url": fake.base_url, "requires_api_key": False})
        events = sidecar.stream({"model": "lcpp:m", "messages": MESSAGES})
        done = done_of(events)
        assert text_of(events) == "one two three"
        # the fake's counts, one per word: 3 + 5 words of prompt, 3 of answer; plus the chat template's
        # stand-in of 5 tokens per message (2) and 3 to open the answer
        assert done["usage"] == {"input_tokens": 8 + 2 * 5 + 3, "output_tokens": 3, "estimated": True}
        assert usage_event(events)["input_tokens"] == 21 and usage_event(events)["estimated"] is True
        assert fake.tokenized == [
            {"content": ""},  # finding the tokenizer
            {"content": "You are terse.\ncount these five words please"},
            {"content": "one two three"},
        ]
        sidecar.stream({"model": "lcpp:m", "messages": MESSAGES})
        assert [b["content"] for b in fake.tokenized[3:]] == [MESSAGES[0]["content"] + "\n" + MESSAGES[1]["content"],
                                                              "one two three"]  # found once, then remembered
        total = sidecar.call("get_usage_stats", {})["total"]
        assert total["requests"] == 2 and total["estimated_requests"] == 2 and total["output_tokens"] == 6
    finally:
        fake.close()


def test_without_a_tokenizer_the_count_is_estimated_from_the_text(sidecar: Sidecar, upstream: Upstream) -> None:
    answer = "The quick brown fox jumps over the lazy dog. " * 4  # 180 characters
    upstream.replies["plain"] = Reply(chunks=sse([chunk(answer), chunk(finish="stop")]))
    register_upstream(sidecar, upstream)
    events = sidecar.stream({"model": "loopback:plain", "messages": MESSAGES})
    usage = done_of(events)["usage"]
    assert usage["estimated"] is True
    # English runs at 3-5 characters a token in every common tokenizer: 36-60 tokens for 180 characters
    assert 36 <= usage["output_tokens"] <= 60, usage
    # the prompt's 43 characters (9-15 tokens) and a chat template's few tokens per message
    assert 12 <= usage["input_tokens"] <= 40, usage
    asked = [s.path for s in upstream.tokenizer_seen]
    assert asked == ["/tokenize", "/extras/tokenize"]  # both refused (404): no tokenizer
    sidecar.stream({"model": "loopback:plain", "messages": MESSAGES})
    assert [s.path for s in upstream.tokenizer_seen] == asked  # not asked again
    total = sidecar.call("get_usage_stats", {})["total"]
    assert total["estimated_requests"] == 2


def test_a_provider_not_on_this_machine_is_never_asked_for_a_tokenizer(sidecar: Sidecar) -> None:
    """Only local servers are asked (hosted APIs report usage, and have no /tokenize): the fake is
    served on 127.0.0.2, which a custom provider does not count as this machine."""
    try:
        fake = FakeLlamaCpp("127.0.0.2")
    except OSError:
        pytest.skip("127.0.0.2 cannot be bound here (only Linux routes all of 127.0.0.0/8 by default)")
    try:
        sidecar.call("llm_register_custom_provider", {"id": "far", "name": "far", "protocol": "openai",
                                                      "base_url": fake.base_url, "requires_api_key": False})
        events = sidecar.stream({"model": "far:m", "messages": MESSAGES})
        usage = done_of(events)["usage"]
        assert usage["estimated"] is True and usage["output_tokens"] > 0
        assert fake.tokenized == []
    finally:
        fake.close()


def test_reported_usage_is_passed_on_unchanged_and_not_marked(sidecar: Sidecar, upstream: Upstream) -> None:
    usage = {"prompt_tokens": 17, "completion_tokens": 2, "total_tokens": 19}
    upstream.replies["counted"] = Reply(chunks=sse([chunk("Hi"), chunk(finish="stop"), chunk(usage=usage)]))
    register_upstream(sidecar, upstream)
    events = sidecar.stream({"model": "loopback:counted", "messages": MESSAGES})
    assert done_of(events)["usage"] == {"input_tokens": 17, "output_tokens": 2}
    assert "estimated" not in usage_event(events)
    assert [s.path for s in upstream.seen] == ["/v1/chat/completions"] and upstream.tokenizer_seen == []
    assert sidecar.call("get_usage_stats", {})["total"]["estimated_requests"] == 0


def test_reported_zeros_are_counted_like_no_usage(sidecar: Sidecar, upstream: Upstream) -> None:
    zeros = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    upstream.replies["zeros"] = Reply(chunks=sse([chunk("Hello there"), chunk(finish="stop"), chunk(usage=zeros)]))
    register_upstream(sidecar, upstream)
    usage = done_of(sidecar.stream({"model": "loopback:zeros", "messages": MESSAGES}))["usage"]
    assert usage["estimated"] is True and usage["input_tokens"] > 0 and usage["output_tokens"] > 0, usage


def test_the_mock_reports_its_usage_unmarked(sidecar: Sidecar) -> None:
    events = sidecar.stream({"model": "mock:echo", "messages": [{"role": "user", "content": "hello there"}]})
    usage = done_of(events)["usage"]
    assert usage["output_tokens"] > 0 and "estimated" not in usage
    assert sidecar.call("get_usage_stats", {})["total"]["estimated_requests"] == 0


# --- the usage log ----------------------------------------------------------------------------------

_V1_TABLE = """CREATE TABLE requests (id INTEGER PRIMARY KEY, ts REAL NOT NULL, kind TEXT NOT NULL,
provider TEXT NOT NULL, model TEXT NOT NULL, stream_id TEXT, latency_ms REAL, ttft_ms REAL,
input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, reasoning_tokens INTEGER NOT NULL,
cached_input_tokens INTEGER NOT NULL, cache_creation_tokens INTEGER NOT NULL, finish_reason TEXT, error TEXT,
retries INTEGER NOT NULL, cost_usd REAL NOT NULL);
CREATE INDEX requests_ts ON requests (ts);
INSERT INTO requests VALUES (1, 1700000000, 'stream', 'openai', 'openai:gpt-4.1', 's0', 10, 5, 100, 10, 0, 0, 0,
'stop', NULL, 0, 0.001);
PRAGMA user_version = 1;"""


def _outcome(estimated: bool) -> Outcome:
    usage = Usage(input_tokens=30, output_tokens=4, estimated=True) if estimated else Usage(30, 4)
    return Outcome(kind="stream", provider="loopback", model="loopback:m", started_at=time.time(), latency_ms=1.0,
                   ttft_ms=1.0, usage=usage, finish_reason="stop", error=None)


def test_a_database_of_the_first_schema_gains_the_flag_and_keeps_its_rows(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / FILE_NAME)
    db.executescript(_V1_TABLE)
    db.close()
    store = UsageStore(tmp_path, price=lambda p, m: None)
    try:
        before = store.stats(UsageStatsParams())  # read before any write: not migrated yet
        assert before.total.requests == 1 and before.total.estimated_requests == 0
        store.record(_outcome(True))
        store.record(_outcome(False))
        after = store.stats(UsageStatsParams(group_by="provider"))
        assert after.total.requests == 3 and after.total.estimated_requests == 1
        assert {g.key: g.estimated_requests for g in after.groups} == {"openai": 0, "loopback": 1}
    finally:
        store.close()
    db = sqlite3.connect(tmp_path / FILE_NAME)
    assert db.execute("SELECT id, estimated FROM requests ORDER BY id").fetchall() == [(1, 0), (2, 1), (3, 0)]
    assert db.execute("PRAGMA user_version").fetchone()[0] == 2
    db.close()


# --- a real llama-cpp-python server -----------------------------------------------------------------


def _gguf() -> Path | None:
    path = Path(os.environ[GGUF_ENV]) if os.environ.get(GGUF_ENV) else DEFAULT_GGUF
    return path if path.is_file() else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def llama_cpp_python(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A real ``llama_cpp.server`` on 127.0.0.1 with SmolLM2-135M: its base URL (``.../v1``) and its log."""
    missing = []
    try:
        import llama_cpp.server  # noqa: F401
    except ImportError:
        missing.append("llama-cpp-python[server] is not installed (scripts/test.sh installs it)")
    gguf = _gguf()
    if gguf is None:
        missing.append(f"no model: set {GGUF_ENV} (scripts/test-model.sh fetches it)")
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail("; ".join(missing))
        pytest.skip("; ".join(missing))
    port = _free_port()
    log = tmp_path_factory.mktemp("llama-cpp-python") / "server.log"  # a file: its ~200 KB would fill a pipe
    out = log.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1", "--port", str(port),
         "--n_ctx", "512", "--n_threads", "1"],
        stdout=out, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited: {log.read_text(errors='replace')[-2000:]}")
            try:
                if httpx.get(f"{base}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("llama_cpp.server did not answer within 120 s")
            time.sleep(0.2)
        yield base, log
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.close()


def test_a_real_llama_cpp_python_stream_gets_counted_usage(llama_cpp_python: tuple[str, Path], sidecar: Sidecar,
                                                            data_dir: Path) -> None:
    base, log = llama_cpp_python
    sidecar.call("llm_register_custom_provider", {"id": "llcp", "name": "llama-cpp-python", "protocol": "openai",
                                                  "base_url": base, "requires_api_key": False})
    ask = {"messages": MESSAGES, "max_tokens": 12, "temperature": 0, "seed": 1}
    events = sidecar.stream({"model": "llcp:smollm2", **ask}, timeout=120)
    usage = done_of(events)["usage"]
    answer = text_of(events)
    assert answer and usage["estimated"] is True and usage["input_tokens"] > 0 and usage["output_tokens"] > 0

    # the same request not streamed: the server reports its own counts; the sidecar's are near them
    reported = httpx.post(f"{base}/chat/completions", json={"model": "smollm2", **ask},
                          timeout=120).json()
    assert reported["choices"][0]["message"]["content"] == answer  # temperature 0: the same answer
    # counted by the server's tokenizer (its access log shows the sidecar asking), close to its own counts
    # (seen: exactly equal with llama-cpp-python 0.3.36); the answer re-tokenized: exactly the server's count
    assert '"POST /extras/tokenize HTTP/1.1" 200' in log.read_text(errors="replace")
    tokenized = httpx.post(f"{base.removesuffix('/v1')}/extras/tokenize", json={"input": answer}).json()["tokens"]
    assert usage["output_tokens"] == len(tokenized)
    assert abs(usage["output_tokens"] - reported["usage"]["completion_tokens"]) <= 2, (usage, reported["usage"])
    assert abs(usage["input_tokens"] - reported["usage"]["prompt_tokens"]) <= 4, (usage, reported["usage"])

    total = sidecar.call("get_usage_stats", {})["total"]
    assert total["estimated_requests"] == 1 and total["input_tokens"] == usage["input_tokens"]
    db = sqlite3.connect(data_dir / FILE_NAME)
    try:
        assert db.execute("SELECT provider, input_tokens, output_tokens, estimated FROM requests").fetchall() == [
            ("llcp", usage["input_tokens"], usage["output_tokens"], 1)]
    finally:
        db.close()


def test_count_tokens_on_a_real_llama_cpp_python_server(llama_cpp_python: tuple[str, Path], sidecar: Sidecar) -> None:
    """count_tokens asks the server's own tokenizer (``/extras/tokenize``): exact, and within the chat template's
    few tokens of the prompt the server itself reports for the same messages."""
    base, log = llama_cpp_python
    sidecar.call("llm_register_custom_provider", {"id": "llcp", "name": "llama-cpp-python", "protocol": "openai",
                                                  "base_url": base, "requires_api_key": False})
    counted = sidecar.call("count_tokens", {"model": "llcp:smollm2", "messages": MESSAGES}, timeout=60)
    reported = httpx.post(f"{base}/chat/completions", json={"model": "smollm2", "messages": MESSAGES, "max_tokens": 1},
                          timeout=120).json()["usage"]["prompt_tokens"]
    assert counted["exact"] is True
    assert abs(counted["input_tokens"] - reported) <= 4, (counted, reported)
    assert '"POST /extras/tokenize HTTP/1.1" 200' in log.read_text(errors="replace")


def test_a_tool_loop_with_one_counted_step_sums_to_a_counted_total(sidecar: Sidecar, upstream: Upstream) -> None:
    """Step 1 (a tool call) reports usage, step 2 does not: the loop's ``done`` adds them and is marked."""
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "clock", "arguments": "{}"}}
    step1 = [{"id": "c1", "object": "chat.completion.chunk", "model": "m",
              "choices": [{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None}]},
             chunk(finish="tool_calls"), chunk(usage={"prompt_tokens": 40, "completion_tokens": 7})]
    replies = iter([sse(step1), sse([chunk("It is noon."), chunk(finish="stop")])])

    register_upstream(sidecar, upstream)
    upstream.replies["/v1/chat/completions"] = Reply(chunks=next(replies))
    sid = "loop-usage"
    sidecar.call("llm_chat_loop_start", {
        "model": "loopback:loop", "messages": [{"role": "user", "content": "What time is it?"}], "stream_id": sid,
        "tools": [{"name": "clock", "parameters": {"type": "object", "properties": {}}}]})
    asked = sidecar.wait_for(lambda m: m.get("method") == f"llm-stream-{sid}"
                             and m["params"]["type"] in ("tool_calls_requested", "done", "error"))["params"]
    assert asked["type"] == "tool_calls_requested", asked
    upstream.replies["/v1/chat/completions"] = Reply(chunks=next(replies))
    sidecar.call("llm_submit_tool_results", {"loop_id": asked["loop_id"], "results": [
        {"tool_call_id": "call_1", "content": "12:00"}]})
    events = sidecar.wait_stream_end(sid)
    usage = done_of(events)["usage"]
    assert usage["estimated"] is True and usage["input_tokens"] > 40 and usage["output_tokens"] > 7, usage
