"""Process lifecycle (CONTRACT section 1): end of stdin drains, `shutdown`, signals, a dead parent
and a broken stdout cancel and exit 0 within 2 seconds, and no input makes the process exit non-zero.

Every test drives the real ``python -m sidecar`` over real pipes and kills what it started.
"""

from __future__ import annotations

import json
import os
import random
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import register_upstream
from harness import ROOT, Reply, Sidecar, Upstream, check_stream_invariants, sidecar_env, sse, text_of

EXIT_BAR = 2.0
"""CONTRACT section 1: shutdown, signals, a dead parent, a broken stdout: exit 0 within 2 seconds."""

SLOW_TEXT = "this mock reply takes far longer than any test waits for it"  # 15 deltas: 6 s at 400 ms
WORDS = ["The ", "slow ", "loopback ", "upstream ", "answers ", "word ", "by ", "word."]


# --- helpers -----------------------------------------------------------------------------------


def started(sc: Sidecar) -> Sidecar:
    sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
    return sc


@pytest.fixture
def procs() -> Iterator[list[Any]]:
    """Everything a test starts goes in here and is killed at the end."""
    started_procs: list[Any] = []
    yield started_procs
    for p in started_procs:
        if isinstance(p, Sidecar):
            p.kill()
        elif p.poll() is None:
            p.kill()
            p.wait(5)


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def req(id_: Any, method: str, params: Any = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "id": id_, "method": method}
    if params is not None:
        msg["params"] = params
    return msg


def line(obj: Any) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def mock_stream(stream_id: str, text: str, delay_ms: int) -> dict[str, Any]:
    return {"stream_id": stream_id, "model": "mock:echo", "messages": user(text),
            "provider_options": {"chunk_delay_ms": delay_ms}}


def openai_chunks(words: list[str]) -> list[bytes]:
    payloads: list[dict[str, Any]] = [{"choices": [{"index": 0, "delta": {"content": w}, "finish_reason": None}]}
                                      for w in words]
    payloads.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return sse(payloads)


def response_index(sc: Sidecar, id_: Any) -> int:
    return next(i for i, m in enumerate(sc.messages) if m.get("id") == id_ and "method" not in m)


def first_event_index(sc: Sidecar, stream_id: str) -> int:
    return next(i for i, m in enumerate(sc.messages) if m.get("method") == f"llm-stream-{stream_id}")


def assert_cancelled(sc: Sidecar, stream_id: str) -> list[dict[str, Any]]:
    events = sc.events(stream_id)
    check_stream_invariants(events)
    assert events[-1]["type"] == "error", events[-1]
    assert events[-1]["error"]["code"] == "cancelled", events[-1]
    assert isinstance(events[-1]["error"]["retryable"], bool)
    return events


def start_in_flight(sc: Sidecar, upstream: Upstream) -> list[str]:
    """Two streams that will not end by themselves for a long while: a slow mock and a hanging upstream."""
    register_upstream(sc, upstream)
    upstream.replies["hang"] = Reply(chunks=openai_chunks(["partial "])[:1], hang=True)
    sc.call("llm_stream_text", mock_stream("slow-mock", SLOW_TEXT, 400))
    sc.call("llm_stream_text", {"stream_id": "hanging", "model": "loopback:hang", "messages": user("hi")})
    for sid in ("slow-mock", "hanging"):
        sc.wait_for(lambda m, sid=sid: m.get("method") == f"llm-stream-{sid}"
                    and m["params"]["type"] == "text_delta")
    return ["slow-mock", "hanging"]


def wait_exit_timed(proc: subprocess.Popen[bytes], t0: float, timeout: float = 10) -> tuple[int, float]:
    rc = proc.wait(timeout)
    return rc, time.monotonic() - t0


# --- end of stdin --------------------------------------------------------------------------------


def test_eof_finishes_streams_in_flight_then_exits_0(data_dir, upstream, procs):
    sc = started(Sidecar(data_dir))
    procs.append(sc)
    register_upstream(sc, upstream)
    upstream.replies["slow"] = Reply(chunks=openai_chunks(WORDS), delay=0.1)
    mock_text = "finished after the end of stdin"
    sc.send(req("a", "llm_stream_text", mock_stream("mock-a", mock_text, 60)))
    sc.send(req("b", "llm_stream_text", {"stream_id": "net-b", "model": "loopback:slow", "messages": user("hi")}))
    sc.send(req("c", "complete_chat", {"model": "mock:echo", "messages": user("collected"),
                                       "provider_options": {"chunk_delay_ms": 60}}))
    sc.close_stdin()  # at once: nothing has been answered yet
    assert sc.wait_exit(30) == 0, sc.stderr.decode()[-3000:]

    assert sc.bad_lines == []
    for rid, sid in (("a", "mock-a"), ("b", "net-b")):
        assert sc.messages[response_index(sc, rid)]["result"] == {"stream_id": sid}
        assert response_index(sc, rid) < first_event_index(sc, sid), "the response comes before the events"
    mock_events = sc.events("mock-a")
    check_stream_invariants(mock_events)
    assert mock_events[-1]["type"] == "done" and text_of(mock_events) == mock_text
    net_events = sc.events("net-b")
    check_stream_invariants(net_events)
    assert net_events[-1]["type"] == "done", net_events[-1]
    assert text_of(net_events) == "".join(WORDS)
    assert sc.messages[response_index(sc, "c")]["result"]["content"] == "collected"


def test_eof_with_nothing_in_flight_exits_0(data_dir, procs):
    sc = started(Sidecar(data_dir))
    procs.append(sc)
    sc.close_stdin()
    assert sc.wait_exit(10) == 0
    assert sc.bad_lines == [] and len(sc.messages) == 1


def run_piped(data_dir: Path, data: bytes, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "sidecar", *args], input=data, capture_output=True,
                          env=sidecar_env(data_dir), cwd=ROOT, timeout=timeout)


def parse_stdout(done: subprocess.CompletedProcess[bytes]) -> list[dict[str, Any]]:
    """Every stdout line is JSON-RPC; batches are flattened."""
    out: list[dict[str, Any]] = []
    for raw in done.stdout.splitlines(keepends=True):
        assert raw.endswith(b"\n"), raw[:200]
        msg = json.loads(raw)
        for m in msg if isinstance(msg, list) else [msg]:
            assert isinstance(m, dict) and m.get("jsonrpc") == "2.0", raw[:200]
            out.append(m)
    assert out and out[0].get("method") == "sidecar-ready"
    return out


def stream_events(msgs: list[dict[str, Any]], stream_id: str) -> list[dict[str, Any]]:
    return [m["params"] for m in msgs if m.get("method") == f"llm-stream-{stream_id}"]


def test_piping_a_whole_file_prints_every_answer(data_dir):
    texts = {f"s{i}": f"stream number {i} says hello" for i in range(1, 6)}
    lines = [line(req(1, "sidecar_info")), line(req(2, "list_providers"))]
    lines += [line(req(f"r-{sid}", "llm_stream_text", mock_stream(sid, text, 20))) for sid, text in texts.items()]
    lines += [
        line(req(3, "llm_abort_stream", {"stream_id": "unknown"})),
        line(req(4, "complete_chat", {"model": "mock:echo", "messages": user("complete me")})),
        line(req(5, "no_such_method")),
        b"{not json\n",
        b"\n",
        line({"jsonrpc": "2.0", "method": "get_active_provider"}),
        line([req(6, "get_active_provider"), req(7, "llm_list_available_models", {"provider": "mock"})]),
        line(req(8, "llm_stream_text", {"model": "mock:echo", "messages": "nope"})),
        line(req(9, "get_active_provider")).rstrip(b"\n"),  # a last line without its newline
    ]
    done = run_piped(data_dir, b"".join(lines))
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    msgs = parse_stdout(done)

    answers = [m for m in msgs if "method" not in m]
    ids = [a["id"] for a in answers]
    expected = [1, 2, 3, 4, 5, 6, 7, 8, 9, *(f"r-{sid}" for sid in texts)]
    assert sorted(map(str, (i for i in ids if i is not None))) == sorted(map(str, expected))
    assert [a["error"]["code"] for a in answers if a["id"] is None] == [-32700]
    by_id = {a["id"]: a for a in answers}
    assert by_id[3]["result"] == {"aborted": False}
    assert by_id[4]["result"]["content"] == "complete me"
    assert by_id[5]["error"]["code"] == -32601 and by_id[8]["error"]["code"] == -32602
    assert by_id[6]["result"] is None and by_id[9]["result"] is None
    for sid, text in texts.items():
        assert by_id[f"r-{sid}"]["result"] == {"stream_id": sid}
        events = stream_events(msgs, sid)
        check_stream_invariants(events)
        assert events[-1]["type"] == "done" and text_of(events) == text


def test_piping_requests_to_a_slow_upstream_prints_every_answer(data_dir, upstream):
    upstream.replies["slow"] = Reply(chunks=openai_chunks(WORDS), delay=0.05)
    provider = {"id": "loopback", "name": "Loopback", "protocol": "openai", "base_url": upstream.base_url,
                "requires_api_key": False}
    lines = [line(req("reg", "llm_register_custom_provider", provider))]
    lines += [line(req(f"r{i}", "llm_stream_text", {"stream_id": f"n{i}", "model": "loopback:slow",
                                                    "messages": user("hi")})) for i in range(3)]
    done = run_piped(data_dir, b"".join(lines))
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    msgs = parse_stdout(done)
    for i in range(3):
        events = stream_events(msgs, f"n{i}")
        check_stream_invariants(events)
        assert events[-1]["type"] == "done", events[-1]
        assert text_of(events) == "".join(WORDS)


def test_drain_timeout_cancels_what_remains(data_dir, upstream, procs):
    sc = started(Sidecar(data_dir, "--drain-timeout", "0.5"))
    procs.append(sc)
    streams = start_in_flight(sc, upstream)
    sc.close_stdin()
    rc, elapsed = wait_exit_timed(sc.proc, time.monotonic())
    assert rc == 0, sc.stderr.decode()[-3000:]
    assert elapsed < 0.5 + EXIT_BAR, elapsed  # the streams alone would take many seconds
    for sid in streams:
        assert_cancelled(sc, sid)
    assert SLOW_TEXT.startswith(text_of(sc.events("slow-mock")))
    assert sc.bad_lines == []


# --- shutdown, signals, a dead parent ------------------------------------------------------------------


def test_shutdown_answers_then_cancels_and_exits_0(data_dir, upstream, procs):
    sc = started(Sidecar(data_dir))
    procs.append(sc)
    streams = start_in_flight(sc, upstream)
    t0 = time.monotonic()
    resp = sc.request("shutdown")
    assert resp["result"] == {}
    rc, elapsed = wait_exit_timed(sc.proc, t0)
    assert rc == 0, sc.stderr.decode()[-3000:]
    assert elapsed < EXIT_BAR, elapsed
    for sid in streams:
        events = assert_cancelled(sc, sid)
        assert sum(e["type"] in ("done", "error") for e in events) == 1
        terminal_at = max(i for i, m in enumerate(sc.messages) if m.get("method") == f"llm-stream-{sid}")
        assert sc.messages.index(resp) < terminal_at, "the shutdown answer comes first"
    assert sc.bad_lines == []


def test_shutdown_with_nothing_in_flight(data_dir, procs):
    sc = started(Sidecar(data_dir))
    procs.append(sc)
    t0 = time.monotonic()
    assert sc.call("shutdown") == {}
    rc, elapsed = wait_exit_timed(sc.proc, t0)
    assert rc == 0 and elapsed < EXIT_BAR, (rc, elapsed)


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_cancels_and_exits_0(data_dir, upstream, procs, signum):
    sc = started(Sidecar(data_dir))
    procs.append(sc)
    streams = start_in_flight(sc, upstream)
    t0 = time.monotonic()
    sc.proc.send_signal(signum)
    rc, elapsed = wait_exit_timed(sc.proc, t0)
    assert rc == 0, sc.stderr.decode()[-3000:]
    assert elapsed < EXIT_BAR, elapsed
    for sid in streams:
        assert_cancelled(sc, sid)
    assert sc.bad_lines == []


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
@pytest.mark.parametrize("signum", [
    pytest.param(signal.SIGTERM, id="SIGTERM"),
    pytest.param(signal.SIGINT, id="SIGINT"),
])
def test_signal_right_after_ready_exits_0(data_dir, procs, signum):
    """A frontend that quits as soon as the sidecar is ready. A race, so a few rounds."""
    results = []
    for _ in range(5):
        sc = started(Sidecar(data_dir))
        procs.append(sc)
        t0 = time.monotonic()
        sc.proc.send_signal(signum)
        results.append(wait_exit_timed(sc.proc, t0))
    assert all(rc == 0 and elapsed < EXIT_BAR for rc, elapsed in results), results


def throwaway_process() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_parent_pid_exit_stops_the_sidecar(data_dir, procs):
    parent = throwaway_process()
    procs.append(parent)
    sc = started(Sidecar(data_dir, "--parent-pid", str(parent.pid)))
    procs.append(sc)
    sc.call("llm_stream_text", mock_stream("orphan", SLOW_TEXT, 1000))
    time.sleep(0.6)  # a few of its polls while the parent lives
    assert sc.proc.poll() is None and sc.call("get_active_provider") is None
    parent.kill()
    parent.wait(5)
    rc, elapsed = wait_exit_timed(sc.proc, time.monotonic())
    assert rc == 0, sc.stderr.decode()[-3000:]
    assert elapsed < EXIT_BAR, elapsed
    assert_cancelled(sc, "orphan")


def test_parent_pid_already_gone(data_dir, procs):
    parent = throwaway_process()
    parent.kill()
    parent.wait(5)
    sc = Sidecar(data_dir, "--parent-pid", str(parent.pid))
    procs.append(sc)
    assert sc.wait_exit(10) == 0, sc.stderr.decode()[-3000:]
    assert sc.bad_lines == []


# --- a broken stdout -----------------------------------------------------------------------------------


class PipedSidecar:
    """A sidecar whose stdout is a pipe this test reads (or not) and closes by hand."""

    def __init__(self, data_dir: Path, procs: list[Any]) -> None:
        self.stderr_path = data_dir.parent / "stderr.txt"
        r, w = os.pipe()
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "sidecar"], stdin=subprocess.PIPE, stdout=w,
                                         stderr=err, env=sidecar_env(data_dir), cwd=ROOT)
        procs.append(self.proc)
        os.close(w)
        self.read_fd: int | None = r
        self.buf = b""

    def send(self, obj: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line(obj))
        self.proc.stdin.flush()

    def read_until(self, needle: bytes, timeout: float = 15) -> None:
        assert self.read_fd is not None
        deadline = time.monotonic() + timeout
        while needle not in self.buf:
            left = deadline - time.monotonic()
            assert left > 0, f"timed out waiting for {needle!r}; stderr: {self.stderr()}"
            if select.select([self.read_fd], [], [], left)[0]:
                chunk = os.read(self.read_fd, 65536)
                assert chunk, f"stdout closed early; stderr: {self.stderr()}"
                self.buf += chunk

    def close_reader(self) -> float:
        assert self.read_fd is not None
        os.close(self.read_fd)
        self.read_fd = None
        return time.monotonic()

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-3000:]

    def close(self) -> None:
        if self.read_fd is not None:
            os.close(self.read_fd)
        assert self.proc.stdin is not None
        self.proc.stdin.close()


@pytest.mark.skipif(os.name != "posix", reason="os.pipe and select on pipes")
def test_broken_stdout_while_streaming_exits_0(data_dir, procs):
    sc = PipedSidecar(data_dir, procs)
    try:
        sc.read_until(b"sidecar-ready")
        sc.send(req(1, "llm_stream_text", mock_stream("s", "x" * 4000, 20)))  # ~20 s of deltas
        sc.read_until(b'"text_delta"')
        t0 = sc.close_reader()  # stdin stays open: only the broken stdout can end the process
        rc, elapsed = wait_exit_timed(sc.proc, t0)
        assert rc == 0, sc.stderr()
        assert elapsed < EXIT_BAR, elapsed
    finally:
        sc.close()


@pytest.mark.skipif(os.name != "posix", reason="os.pipe and select on pipes")
def test_broken_stdout_after_the_reader_stalled_exits_0(data_dir, procs):
    """The reader stops reading (the pipe fills up, the sidecar waits), then goes away."""
    sc = PipedSidecar(data_dir, procs)
    try:
        sc.read_until(b"sidecar-ready")
        sc.send(req(1, "llm_stream_text", mock_stream("flood", "y" * 400_000, 0)))  # megabytes of events
        time.sleep(1.0)  # no reading: the pipe is full long before the stream ends
        assert sc.proc.poll() is None
        t0 = sc.close_reader()
        rc, elapsed = wait_exit_timed(sc.proc, t0)
        assert rc == 0, sc.stderr()
        assert elapsed < EXIT_BAR, elapsed
    finally:
        sc.close()


@pytest.mark.skipif(os.name != "posix", reason="os.pipe and select on pipes")
def test_broken_stdout_noticed_at_the_next_answer(data_dir, procs):
    sc = PipedSidecar(data_dir, procs)
    try:
        sc.read_until(b"sidecar-ready")
        sc.close_reader()
        t0 = time.monotonic()
        sc.send(req(1, "sidecar_info"))
        rc, elapsed = wait_exit_timed(sc.proc, t0)
        assert rc == 0, sc.stderr()
        assert elapsed < EXIT_BAR, elapsed
    finally:
        sc.close()


# --- garbage never makes the process exit non-zero ------------------------------------------------


def weird_requests(base_url: str) -> list[dict[str, Any]]:
    """Requests with an id that are wrong in every way we could think of: each must be answered."""
    s = "mock:echo"
    hi = user("hi")
    params: list[tuple[str, Any]] = [
        ("llm_stream_text", {"model": "", "messages": hi}),
        ("llm_stream_text", {"model": ":", "messages": hi}),
        ("llm_stream_text", {"model": "mock:", "messages": hi}),
        ("llm_stream_text", {"model": ":echo", "messages": hi}),
        ("llm_stream_text", {"model": "mock:nope", "messages": hi}),
        ("llm_stream_text", {"model": "nope:x", "messages": hi}),
        ("llm_stream_text", {"model": s, "messages": []}),
        ("llm_stream_text", {"model": s, "messages": [{"role": "user"}]}),
        ("llm_stream_text", {"model": s, "messages": [{"role": "user", "content": 5}]}),
        ("llm_stream_text", {"model": s, "messages": [{"role": "user", "content": [{"type": "nope"}]}]}),
        ("llm_stream_text", {"model": s, "messages": [{"role": "tool", "content": "x"}]}),
        ("llm_stream_text", {"model": s, "messages": [{"role": "assistant", "content": "only me"}]}),
        ("llm_stream_text", {"model": s, "messages": hi, "stream_id": "z" * 500}),
        ("llm_stream_text", {"model": s, "messages": hi, "stream_id": ""}),
        ("llm_stream_text", {"model": s, "messages": hi, "stream_id": 7}),
        ("llm_stream_text", {"model": s, "messages": hi, "max_tokens": 10**30}),
        ("llm_stream_text", {"model": s, "messages": hi, "max_tokens": -5}),
        ("llm_stream_text", {"model": s, "messages": hi, "timeout_ms": -1}),
        ("llm_stream_text", {"model": s, "messages": hi, "provider_options": "x"}),
        ("llm_stream_text", {"model": s, "messages": hi, "provider_options": {"chunk_delay_ms": "x"}}),
        ("llm_stream_text", {"model": s, "messages": hi, "fallback_models": ["::", 3]}),
        ("llm_stream_text", {"model": s, "messages": hi, "tools": [{"name": "t"}]}),
        ("llm_stream_text", {"model": s, "messages": hi, "reasoning": {"effort": "extreme"}}),
        ("llm_stream_text", {"model": s, "messages": user("slow"), "stream_id": "dup",
                             "provider_options": {"chunk_delay_ms": 300}}),
        ("llm_stream_text", {"model": s, "messages": user("slow"), "stream_id": "dup",
                             "provider_options": {"chunk_delay_ms": 300}}),
        ("llm_stream_text", {"model": "weird:m", "messages": hi, "timeout_ms": 10**30}),
        ("llm_stream_text", {"model": "weird:m", "messages": hi, "timeouts": {"connect_ms": -1, "idle_ms": 0}}),
        ("complete_chat", {"model": s, "messages": []}),
        ("complete_chat", {"model": "weird:m", "messages": hi, "timeout_ms": -1}),
        ("llm_abort_stream", {"stream_id": 5}),
        ("llm_abort_stream", {"stream_id": ""}),
        ("llm_register_custom_provider", {"id": "UPPER", "name": "x", "protocol": "openai", "base_url": base_url}),
        ("llm_register_custom_provider", {"id": "a:b", "name": "x", "protocol": "openai", "base_url": base_url}),
        ("llm_register_custom_provider", {"id": "ftp", "name": "x", "protocol": "openai", "base_url": "ftp://x"}),
        ("llm_register_custom_provider", {"id": "m2", "name": "x", "protocol": "mock", "base_url": base_url}),
        ("llm_register_custom_provider", {"id": "h", "name": "x", "protocol": "openai", "base_url": base_url,
                                          "headers": {"a": 1}}),
        ("llm_remove_custom_provider", {"id": None}),
        ("set_active_provider", {"provider": "mock", "model": ""}),
        ("set_active_provider", {"provider": "mock", "model": "other:echo"}),
        ("set_active_provider", {"provider": "", "model": "x"}),
        ("save_api_key", {"provider": "openai", "api_key": ""}),
        ("save_api_key", {"provider": "openai", "api_key": "a b"}),
        ("save_api_key", {"provider": "nope", "api_key": "sk-x"}),
        ("get_api_key", {"provider": None}),
        ("delete_api_key", {}),
        ("test_provider_connection", {"provider": "weird", "base_url": "http://127.0.0.1:1/v1"}),
        ("test_provider_connection", {"provider": "nope"}),
        ("sidecar_info", {"x": 1}),
        ("get_active_provider", [None]),
        ("llm_list_available_models", {"provider": "", "refresh": "yes"}),
    ]
    reqs = [req(f"w{i}", method, p) for i, (method, p) in enumerate(params)]
    reqs.insert(0, req("setup", "llm_register_custom_provider",
                       {"id": "weird", "name": "Weird", "protocol": "openai", "base_url": base_url,
                        "requires_api_key": False}))
    return reqs


def test_weird_requests_are_each_answered_and_never_crash(data_dir, upstream):
    upstream.replies["m"] = Reply(chunks=openai_chunks(["ok"]))
    reqs = weird_requests(upstream.base_url)
    done = run_piped(data_dir, b"".join(line(r) for r in reqs), "--drain-timeout", "5")
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    msgs = parse_stdout(done)
    answers = [m for m in msgs if "method" not in m]
    assert sorted(a["id"] for a in answers) == sorted(r["id"] for r in reqs), "each request answered once"
    started_ids = [a["result"]["stream_id"] for a in answers if isinstance(a.get("result"), dict)
                   and "stream_id" in a["result"]]
    assert started_ids.count("dup") == 1, "a stream id that is running is not accepted twice"
    for a in answers:
        assert ("result" in a) != ("error" in a), a
        if "error" in a:
            assert a["error"]["code"] != -32603, a  # bad input is the caller's error, not an internal one
            if a["error"]["code"] == -32000:
                assert isinstance(a["error"]["data"]["code"], str), a
    for sid in started_ids:
        check_stream_invariants(stream_events(msgs, sid))
    assert "Traceback" not in done.stderr.decode(), done.stderr.decode()[-3000:]


def ascii_garbage(rng: random.Random) -> list[bytes]:
    """Deterministic junk that stays valid UTF-8: noise, broken and mangled requests."""
    valid = line(req(1, "llm_stream_text", {"model": "mock:echo", "messages": user("hi")})).rstrip(b"\n")
    alphabet = b'{}[]":,0123456789.eE+-truefalsnl \\/abcxyz\t'
    out = [b"{bad", b"[" * 100_000, b"{" * 1000, b"]" * 1000, b'"' * 3, b"\\u0000", b"1e999999", b"-",
           b'{"jsonrpc":"2.0","id":1,"method":"x"', b"\x00\x01\x02", b"\x1b[31mred\x1b[0m"]
    for _ in range(150):
        out.append(bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 80))))
    for _ in range(150):
        cut = bytearray(valid[:rng.randint(1, len(valid))])
        for _ in range(rng.randint(0, 3)):
            if cut:
                cut[rng.randrange(len(cut))] = rng.choice(alphabet)
        out.append(bytes(cut))
    return out


def test_ascii_garbage_never_makes_the_process_exit_non_zero(data_dir):
    junk = ascii_garbage(random.Random(20240611))
    tail = line(req("last", "get_active_provider"))
    done = run_piped(data_dir, b"\n".join(junk) + b"\n" + tail, "--drain-timeout", "5")
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    msgs = parse_stdout(done)
    answers = [m for m in msgs if "method" not in m]
    assert {"jsonrpc": "2.0", "id": "last", "result": None} in answers
    assert all(a["error"]["code"] != -32603 for a in answers if "error" in a)
    assert "Traceback" not in done.stderr.decode(), done.stderr.decode()[-3000:]


def test_binary_garbage_never_makes_the_process_exit_non_zero(data_dir):
    rng = random.Random(99)
    junk = [bytes(rng.randrange(256) for _ in range(rng.randint(1, 200))).replace(b"\n", b"") for _ in range(200)]
    junk.append(b'{"jsonrpc":"2.0","id":1,"method":"\xe9t\xe9"}')
    tail = line(req("last", "get_active_provider"))
    done = run_piped(data_dir, b"\n".join(junk) + b"\n" + tail)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    answers = [m for m in parse_stdout(done) if "method" not in m]
    assert {"jsonrpc": "2.0", "id": "last", "result": None} in answers


def test_negative_chunk_delay_is_not_an_internal_error(data_dir, procs):
    sc = started(Sidecar(data_dir))
    procs.append(sc)
    resp = sc.request("llm_stream_text", mock_stream("neg", "hi", -5))
    if "error" in resp:
        assert resp["error"]["code"] in (-32602, -32000), resp
        return
    events = sc.wait_stream_end("neg")
    check_stream_invariants(events)
    assert events[-1]["type"] == "done" or events[-1]["error"]["code"] == "invalid_request", events[-1]
