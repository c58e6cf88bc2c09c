"""Bounded memory from every upstream: the real sidecar process against a hostile loopback upstream
on a raw socket that sends a 1 GiB SSE line, a 1 GiB NDJSON line, a 1 GiB model list, a 20 MiB
event, long but legal events, and a big event trickled slower than the idle timeout.

Memory is read from the sidecar's /proc/PID/status: VmHWM is the peak resident size of the process's
whole life (so each test that asserts it starts its own sidecar), VmRSS the size now. The hostile
payloads are generated while sending, one reused 1 MiB block at a time, so the test never holds them.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import Sidecar, check_stream_invariants, text_of

GiB = 1 << 30
MiB = 1 << 20
KiB = 1 << 10
MSGS = [{"role": "user", "content": "hi"}]
PEAK_BAR = 200 * MiB
LINE_BAR = 1 * MiB
BLOCK = b"a" * MiB

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc for RSS figures")


def chunk_json(delta: dict[str, Any], finish: str | None = None) -> bytes:
    return json.dumps({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}).encode()


def sse_stream(*texts: str) -> bytes:
    """A complete OpenAI-style stream with one content event per text."""
    events = [chunk_json({"role": "assistant", "content": ""})]
    events += [chunk_json({"content": t}) for t in texts]
    events.append(chunk_json({}, "stop"))
    return b"".join(b"data: " + e + b"\n\n" for e in events) + b"data: [DONE]\n\n"


# --- the hostile upstream -----------------------------------------------------------------------


Handler = Callable[[socket.socket, "Conn"], None]


class Conn:
    """What the server saw of one request, and how many body bytes it got out before the client left."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.sent = 0
        self.client_left = threading.Event()
        self.done = threading.Event()


class Hostile:
    """A raw-socket HTTP/1.1 server; the answer is chosen by the body's ``model`` or else the path.
    Every answer is delimited by closing the connection (``connection: close``)."""

    def __init__(self) -> None:
        self.plans: dict[str, Handler] = {}
        self.conns: list[Conn] = []
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.close()

    def last(self, key: str) -> Conn:
        return [c for c in self.conns if c.key == key][-1]

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        buf = b""
        with sock:
            while b"\r\n\r\n" not in buf:
                data = sock.recv(65536)
                if not data:
                    return
                buf += data
            head, body = buf.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            length = next((int(x.split(":", 1)[1]) for x in lines[1:] if x.lower().startswith("content-length:")), 0)
            while len(body) < length:
                body += sock.recv(65536)
            model = json.loads(body).get("model") if body else None
            key = model or path
            plan = self.plans.get(key)
            if plan is None:  # e.g. the tokenizer probe after a stream without usage: not here
                sock.sendall(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                return
            conn = Conn(key)
            self.conns.append(conn)
            try:
                plan(sock, conn)
            except OSError:
                conn.client_left.set()
            finally:
                conn.done.set()


def head(content_type: str = "text/event-stream", length: int | None = None) -> bytes:
    extra = f"content-length: {length}\r\n" if length is not None else ""
    return f"HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\n{extra}connection: close\r\n\r\n".encode()


def endless(prefix: bytes, total: int, content_type: str = "text/event-stream", sized: bool = False) -> Handler:
    """``prefix`` and then ``a`` up to ``total`` bytes, without a line end: one giant line."""
    def run(sock: socket.socket, conn: Conn) -> None:
        sock.sendall(head(content_type, total if sized else None) + prefix)
        conn.sent = len(prefix)
        while conn.sent < total:
            n = min(len(BLOCK), total - conn.sent)
            sock.sendall(BLOCK[:n])
            conn.sent += n
    return run


def send(payload: bytes, *, pieces: int = 1, gap: float = 0.0) -> Handler:
    """A whole answer, in ``pieces`` writes ``gap`` seconds apart."""
    def run(sock: socket.socket, conn: Conn) -> None:
        sock.sendall(head())
        step = -(-len(payload) // pieces)
        for i in range(0, len(payload), step):
            if i and gap:
                threading.Event().wait(gap)
            sock.sendall(payload[i:i + step])
            conn.sent += len(payload[i:i + step])
    return run


def then_silence(first: bytes = b"") -> Handler:
    """Send ``first`` (maybe nothing, not even headers), then nothing until the client leaves."""
    def run(sock: socket.socket, conn: Conn) -> None:
        if first:
            sock.sendall(first)
        readable, _, _ = select.select([sock], [], [], 60)
        if readable and not sock.recv(1):
            conn.client_left.set()
    return run


# --- fixtures and helpers ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hostile() -> Iterator[Hostile]:
    srv = Hostile()
    srv.plans["ok"] = send(sse_stream("fine ", "again"))
    yield srv
    srv.close()


def start_sidecar(data_dir: Path, *args: str) -> Sidecar:
    sc = Sidecar(data_dir, *args)
    sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
    return sc


@pytest.fixture
def sidecar_for(tmp_path: Path, hostile: Hostile) -> Iterator[Callable[..., Sidecar]]:
    """A fresh sidecar (so its VmHWM is this test's) with providers ``h`` (openai) and ``o`` (ollama)."""
    started: list[Sidecar] = []

    def make(*args: str) -> Sidecar:
        sc = start_sidecar(tmp_path / f"data{len(started)}", *args)
        started.append(sc)
        for pid, protocol, base in (("h", "openai", "/v1"), ("o", "ollama", "")):
            sc.call("llm_register_custom_provider", {"id": pid, "name": pid, "protocol": protocol,
                                                     "base_url": f"http://127.0.0.1:{hostile.port}{base}",
                                                     "requires_api_key": False})
        return sc

    yield make
    for sc in started:
        assert sc.bad_lines == []
        sc.kill()


def status_kib(sc: Sidecar, field: str) -> int:
    for line in Path(f"/proc/{sc.proc.pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * KiB
    raise AssertionError(f"no {field} in /proc/{sc.proc.pid}/status")


def stream(sc: Sidecar, model: str, timeout: float = 60, **params: Any) -> list[dict[str, Any]]:
    events = sc.stream({"model": model, "messages": MSGS, "stream_id": uuid.uuid4().hex, **params}, timeout=timeout)
    check_stream_invariants(events)
    return events


def error_of(events: list[dict[str, Any]]) -> dict[str, Any]:
    assert events[-1]["type"] == "error", events[-1]
    return events[-1]["error"]


def longest_line(sc: Sidecar) -> int:
    return max(len(line) for line in sc.raw_lines)


def assert_served_next(sc: Sidecar) -> None:
    events = stream(sc, "h:ok")
    assert events[-1]["type"] == "done" and text_of(events) == "fine again"


# --- the bars -------------------------------------------------------------------------------------


def test_a_1_gib_sse_line_is_refused_with_bounded_memory(sidecar_for: Callable[..., Sidecar],
                                                        hostile: Hostile) -> None:
    hostile.plans["giant"] = endless(b'data: {"choices":[{"index":0,"delta":{"content":"', GiB)
    sc = sidecar_for()
    assert_served_next(sc)  # httpx loaded and a connection made: the level before
    before = status_kib(sc, "VmRSS")

    err = error_of(stream(sc, "h:giant"))

    assert err["code"] == "protocol_error"
    assert "8 MiB" in err["message"] and "max_event_bytes" in err["message"] and "h:" in err["message"]
    conn = hostile.last("giant")
    assert conn.done.wait(30)
    assert conn.client_left.is_set() and conn.sent < 64 * MiB, f"{conn.sent} bytes were read before closing"
    assert status_kib(sc, "VmHWM") < PEAK_BAR
    assert status_kib(sc, "VmRSS") - before < 16 * MiB
    assert longest_line(sc) < LINE_BAR
    assert_served_next(sc)


def test_a_1_gib_ndjson_line_is_refused(sidecar_for: Callable[..., Sidecar], hostile: Hostile) -> None:
    hostile.plans["giant-nd"] = endless(b'{"model":"m","message":{"role":"assistant","content":"', GiB,
                                        "application/x-ndjson")
    sc = sidecar_for()
    err = error_of(stream(sc, "o:giant-nd"))
    assert err["code"] == "protocol_error"
    assert "one line of the stream" in err["message"] and "max_event_bytes" in err["message"]
    assert hostile.last("giant-nd").sent < 64 * MiB
    assert status_kib(sc, "VmHWM") < PEAK_BAR
    assert longest_line(sc) < LINE_BAR


def test_a_1_gib_model_list_is_an_error_never_ok(sidecar_for: Callable[..., Sidecar], hostile: Hostile) -> None:
    hostile.plans["/v1/models"] = endless(b'{"object":"list","data":[{"id":"', GiB, "application/json", sized=True)
    sc = sidecar_for()
    assert_served_next(sc)
    before = status_kib(sc, "VmRSS")

    result = sc.call("test_provider_connection", {"provider": "h"}, timeout=60)
    assert result["ok"] is False
    assert result["error"]["code"] == "protocol_error"
    assert "the model list" in result["error"]["message"] and "32 MiB" in result["error"]["message"]
    assert "max_body_bytes" in result["error"]["message"]
    assert hostile.last("/v1/models").sent < 96 * MiB
    assert status_kib(sc, "VmRSS") - before < 16 * MiB, "the refused body's memory stayed with the process"

    def listing() -> list[dict[str, Any]]:
        return sc.call("llm_list_available_models", {"provider": "h", "refresh": True}, timeout=60)

    listing()
    after_one = status_kib(sc, "VmRSS")
    for _ in range(3):
        models = listing()
        assert all(len(m["id"]) < 1000 for m in models)
    assert status_kib(sc, "VmRSS") - after_one < 16 * MiB, "model-list rounds grow the process"
    assert status_kib(sc, "VmHWM") < PEAK_BAR
    assert_served_next(sc)


def test_a_20_mib_event_is_refused_and_the_limit_is_a_setting(sidecar_for: Callable[..., Sidecar],
                                                            hostile: Hostile) -> None:
    nine_mb = "x" * 9_000_000
    hostile.plans["20mib"] = send(sse_stream("y" * 20 * MiB))
    hostile.plans["9mb"] = send(sse_stream(nine_mb))
    sc = sidecar_for()
    assert error_of(stream(sc, "h:20mib"))["code"] == "protocol_error"
    assert error_of(stream(sc, "h:9mb"))["code"] == "protocol_error"  # over the default 8 MiB
    assert_served_next(sc)

    raised = sidecar_for("--max-event-bytes", "16MiB")
    events = stream(raised, "h:9mb")
    assert events[-1]["type"] == "done"
    assert text_of(events) == nine_mb
    deltas = [e["text"] for e in events if e["type"] == "text_delta" and e["text"]]
    assert len(deltas) >= 9_000_000 // (64 * KiB)
    assert longest_line(raised) < LINE_BAR
    assert error_of(stream(raised, "h:20mib"))["message"].count("16 MiB") == 1


def test_long_deltas_go_out_in_pieces_of_at_most_64_kib(sidecar_for: Callable[..., Sidecar],
                                                         hostile: Hostile) -> None:
    # 300 KB of text with 2-, 3- and 4-byte characters (an emoji is a UTF-16 surrogate pair in JS)
    text = ("héllo wörld € 😀 " * 20_000)[:220_000]
    assert len(text.encode()) > 300_000
    legal = "z" * 7_000_000  # under the 8 MiB event limit: legal, and split on the way out
    hostile.plans["long"] = send(sse_stream("start ", text, " end"))
    hostile.plans["legal"] = send(sse_stream(legal))
    sc = sidecar_for()

    events = stream(sc, "h:long")
    assert events[-1]["type"] == "done"
    deltas = [e["text"] for e in events if e["type"] == "text_delta"]
    assert "".join(deltas) == "start " + text + " end"
    assert max(len(d.encode()) for d in deltas) <= 64 * KiB
    assert len([d for d in deltas if len(d) > 10]) >= 5
    for d in deltas:  # no piece starts or ends inside a surrogate pair, as JS would see it
        utf16 = d.encode("utf-16-le")
        assert not (0xDC00 <= int.from_bytes(utf16[:2], "little") <= 0xDFFF)
        assert not (0xD800 <= int.from_bytes(utf16[-2:], "little") <= 0xDBFF)

    events = stream(sc, "h:legal")
    assert events[-1]["type"] == "done" and text_of(events) == legal
    assert longest_line(sc) < LINE_BAR

    answer = sc.call("complete_chat", {"model": "h:long", "messages": MSGS}, timeout=60)
    assert answer["content"] == "start " + text + " end"


def test_a_slow_but_live_upstream_is_not_idle(sidecar_for: Callable[..., Sidecar], hostile: Hostile) -> None:
    # one 2 MiB event in 32 writes 0.1 s apart: about 3 s without a complete event, idle_ms 1.5 s
    big = "s" * 2 * MiB
    hostile.plans["slow"] = send(sse_stream(big), pieces=32, gap=0.1)
    sc = sidecar_for()
    events = stream(sc, "h:slow", timeouts={"idle_ms": 1500, "first_byte_ms": 1500})
    assert events[-1]["type"] == "done", events[-1]
    assert text_of(events) == big


@pytest.mark.parametrize(("first", "says"), [
    (b"", "no byte of an answer within 0.5 s (first_byte_ms)"),
    (head(), "the answer's headers arrived (HTTP 200) but no byte of its body within 0.5 s (first_byte_ms)"),
])
def test_the_first_byte_timeout_says_what_had_arrived(sidecar_for: Callable[..., Sidecar], hostile: Hostile,
                                                      first: bytes, says: str) -> None:
    model = f"quiet-{len(first)}"
    hostile.plans[model] = then_silence(first)
    sc = sidecar_for()
    err = error_of(stream(sc, f"h:{model}", timeouts={"first_byte_ms": 500}, retry={"max_retries": 0}))
    assert err["code"] == "timeout"
    assert err["message"] == f"h: {says}"


def test_a_stall_inside_an_event_says_so(sidecar_for: Callable[..., Sidecar], hostile: Hostile) -> None:
    hostile.plans["half"] = then_silence(head() + b'data: {"choices":[{"index":0,"delta":{"content":"par')
    sc = sidecar_for()
    err = error_of(stream(sc, "h:half", timeouts={"idle_ms": 500}, retry={"max_retries": 0}))
    assert err["code"] == "timeout"
    assert err["message"] == "h: the stream stalled in the middle of an event: no byte within 0.5 s (idle_ms)"


def test_a_whole_answer_is_bounded_too(sidecar_for: Callable[..., Sidecar], hostile: Hostile) -> None:
    # each event is small, but complete_chat (and the agent loop, a JSON answer) would hold them all
    hostile.plans["many"] = send(sse_stream(*["m" * 50_000] * 40))
    sc = sidecar_for("--max-body-bytes", "1MiB")
    resp = sc.request("complete_chat", {"model": "h:many", "messages": MSGS}, timeout=60)
    assert resp["error"]["data"]["code"] == "protocol_error", resp
    assert resp["error"]["message"] == ("h: the answer is larger than the limit of 1 MiB (max_body_bytes); "
                                        "the connection was closed")
    events = stream(sc, "h:many")
    assert error_of(events)["code"] == "protocol_error"
    assert sum(len(e["text"]) for e in events if e["type"] == "text_delta") <= MiB
    hostile.plans["fits"] = send(sse_stream(*["f" * 50_000] * 20))
    assert sc.call("complete_chat", {"model": "h:fits", "messages": MSGS}, timeout=60)["content"] == "f" * 1_000_000


def test_a_1_gib_answer_from_meilisearch_is_refused(sidecar_for: Callable[..., Sidecar], hostile: Hostile) -> None:
    hostile.plans["/chats/w/settings"] = endless(b'{"source":"', GiB, "application/json")
    sc = sidecar_for()
    resp = sc.request("get_chat_workspace_settings",
                      {"meilisearch_url": f"http://127.0.0.1:{hostile.port}", "workspace": "w"}, timeout=60)
    assert resp["error"]["data"]["code"] == "protocol_error", resp
    assert resp["error"]["message"].startswith(f"Meilisearch at http://127.0.0.1:{hostile.port}: its answer is "
                                               "larger than the limit of 32 MiB")
    assert hostile.last("/chats/w/settings").sent < 96 * MiB
    assert status_kib(sc, "VmHWM") < PEAK_BAR
