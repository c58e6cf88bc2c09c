"""Test harness: the real sidecar process over real pipes, and a real HTTP upstream on 127.0.0.1.

Nothing here imports the sidecar package: the tests talk to it only as a frontend would.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "upstream"  # recorded upstream streams; origins in INDEX.md there

# Variables that would leak a real key or a real keychain into a test.
SCRUB = ("OPENAI_API_KEY", "GROQ_API_KEY", "TOGETHER_API_KEY", "DEEPSEEK_API_KEY", "MISTRAL_API_KEY",
          "OPENROUTER_API_KEY", "XAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY",
          "COHERE_API_KEY", "AZURE_OPENAI_API_KEY", "FIREWORKS_API_KEY", "PERPLEXITY_API_KEY",
          "LLM_SIDECAR_DATA_DIR", "LLM_SIDECAR_KEYRING_SERVICE", "LLM_SIDECAR_LOG_LEVEL", "PYTHON_KEYRING_BACKEND")


TEST_ENV = {"PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
            "NO_PROXY": "127.0.0.1,127.0.0.2,localhost", "no_proxy": "127.0.0.1,127.0.0.2,localhost"}
"""no keychain, and loopback never through a proxy from the environment"""


def sidecar_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SCRUB}
    env.update(TEST_ENV)
    env["LLM_SIDECAR_DATA_DIR"] = str(data_dir)
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


class Sidecar:
    """A running ``python -m sidecar``; messages on its stdout are parsed as they arrive."""

    def __init__(self, data_dir: Path, *args: str, env: dict[str, str] | None = None,
                 unset: Iterable[str] = (), prefix: Sequence[str] = (),
                 preexec_fn: Callable[[], None] | None = None) -> None:
        """``prefix`` runs the sidecar through another command, e.g. ``setpriv`` to run it as another user;
        ``preexec_fn`` runs in the child before it executes Python (e.g. to lower a resource limit)."""
        full_env = sidecar_env(data_dir, **(env or {}))
        for name in unset:
            full_env.pop(name, None)
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "sidecar", *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=full_env, cwd=ROOT, preexec_fn=preexec_fn,
        )
        self.listen()

    def listen(self) -> None:
        """Read ``self.proc``'s stdout and stderr as they come."""
        self.messages: list[Any] = []
        self.raw_lines: list[bytes] = []
        self.bad_lines: list[bytes] = []
        self.stderr = bytearray()
        self._cond = threading.Condition()
        self._ids = itertools.count(1000)
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    # --- io threads ---------------------------------------------------------------------

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._cond:
                self.raw_lines.append(raw)
                try:
                    msg = json.loads(raw)
                except ValueError:
                    self.bad_lines.append(raw)
                else:
                    self.messages.extend(msg if isinstance(msg, list) else [msg])
                self._cond.notify_all()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        while chunk := self.proc.stderr.read1(65536):  # type: ignore[attr-defined]
            self.stderr += chunk

    # --- sending --------------------------------------------------------------------------

    def send(self, obj: Any) -> None:
        assert self.proc.stdin is not None
        data = obj if isinstance(obj, bytes) else json.dumps(obj).encode() + b"\n"
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def request(self, method: str, params: Any = None, *, timeout: float = 15) -> dict[str, Any]:
        """Send a request and wait for its response (the whole response object)."""
        rid = next(self._ids)
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)
        return self.wait_for(lambda m: m.get("id") == rid and "method" not in m, timeout=timeout)

    def call(self, method: str, params: Any = None, *, timeout: float = 15) -> Any:
        """Like request, but returns the result and fails the test on an error."""
        resp = self.request(method, params, timeout=timeout)
        assert "result" in resp, resp
        return resp["result"]

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    # --- waiting ----------------------------------------------------------------------------

    def wait_for(self, pred: Callable[[dict[str, Any]], bool], *, timeout: float = 15) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for m in self.messages:
                    if isinstance(m, dict) and pred(m):
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out; last messages: {self.messages[-5:]}\nstderr: "
                                         f"{self.stderr.decode(errors='replace')[-2000:]}")
                self._cond.wait(left)

    def events(self, stream_id: str) -> list[dict[str, Any]]:
        with self._cond:
            return [m["params"] for m in self.messages
                    if isinstance(m, dict) and m.get("method") == f"llm-stream-{stream_id}"]

    def wait_stream_end(self, stream_id: str, *, timeout: float = 15) -> list[dict[str, Any]]:
        self.wait_for(lambda m: m.get("method") == f"llm-stream-{stream_id}"
                      and m["params"].get("type") in ("done", "error"), timeout=timeout)
        return self.events(stream_id)

    def stream(self, params: dict[str, Any], *, timeout: float = 15) -> list[dict[str, Any]]:
        """Start a stream, check the response, and return all its events once it ended."""
        result = self.call("llm_stream_text", params)
        return self.wait_stream_end(result["stream_id"], timeout=timeout)

    def wait_exit(self, timeout: float = 5) -> int:
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def assert_clean(sc: Sidecar, *, alive: bool = True) -> None:
    """stdout carried only JSON-RPC lines, the first being sidecar-ready."""
    assert sc.bad_lines == [], sc.bad_lines
    for raw in sc.raw_lines:
        msgs = json.loads(raw)
        for m in msgs if isinstance(msgs, list) else [msgs]:
            assert isinstance(m, dict) and m.get("jsonrpc") == "2.0", raw[:200]
            assert "method" in m or "result" in m or "error" in m, raw[:200]
    first = json.loads(sc.raw_lines[0])
    assert first["method"] == "sidecar-ready" and "id" not in first
    if alive:
        assert sc.proc.poll() is None, f"the sidecar exited: {sc.stderr.decode()[-3000:]}"


def text_of(events: list[dict[str, Any]]) -> str:
    return "".join(e["text"] for e in events if e["type"] == "text_delta")


def check_stream_invariants(events: list[dict[str, Any]]) -> None:
    """The contract's rules for every stream (CONTRACT section 5)."""
    assert [e["seq"] for e in events] == list(range(len(events))), "seq must count 0, 1, 2, ... without gaps"
    terminal = [e for e in events if e["type"] in ("done", "error")]
    assert len(terminal) == 1 and events[-1] is terminal[0], "exactly one terminal event, and last"
    starts = [e["tool_call_id"] for e in events if e["type"] == "tool_call_start"]
    calls = [e["tool_call_id"] for e in events if e["type"] == "tool_call"]
    assert sorted(starts) == sorted(calls) and len(set(calls)) == len(calls)


# --- a real HTTP upstream on 127.0.0.1 ----------------------------------------------------------


@dataclass
class Reply:
    """What the upstream answers to one request."""

    status: int = 200
    chunks: list[bytes] = field(default_factory=list)
    """body pieces, each sent as its own HTTP chunk"""
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "text/event-stream"})
    delay: float = 0.0
    """seconds to wait before each piece"""
    hang: bool = False
    """after the pieces, keep the connection open (until the client goes or 30 s pass)"""
    drop: bool = False
    """after the pieces, close the socket without ending the chunked body"""


@dataclass
class Seen:
    """One request the upstream received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    disconnected: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)


class Upstream:
    """Replies are chosen by the request's ``model`` (or path), so concurrent streams can differ."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.replies: dict[str, Reply] = {}
        self.default = Reply(status=404, chunks=[b'{"error":{"message":"no reply planned"}}'],
                             headers={"content-type": "application/json"})
        self.seen: list[Seen] = []
        self.tokenizer_seen: list[Seen] = []
        """requests to a tokenizer path (``/tokenize``, ``/extras/tokenize``), kept out of ``seen``: the sidecar
        asks a local server that reported no usage whether it can count tokens (sidecar/tokens.py)"""
        self.connections = 0
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                upstream.connections += 1

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw
                seen = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                tokenizer = self.path in ("/tokenize", "/extras/tokenize")
                (upstream.tokenizer_seen if tokenizer else upstream.seen).append(seen)
                key = body.get("model") if isinstance(body, dict) else None
                reply = upstream.replies.get(key or "") or upstream.replies.get(self.path) or upstream.default
                try:
                    self.send_response(reply.status)
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.send_header("transfer-encoding", "chunked")
                    self.end_headers()
                    for piece in reply.chunks:
                        if reply.delay:
                            time.sleep(reply.delay)
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                        self.wfile.flush()
                    if reply.drop:
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    if reply.hang:
                        deadline = time.monotonic() + 30
                        while time.monotonic() < deadline:
                            time.sleep(0.05)
                            self.wfile.write(b"1\r\n\n\r\n")  # a blank line: keeps probing the socket
                            self.wfile.flush()
                        return
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                    seen.finished.set()
                except (BrokenPipeError, ConnectionResetError, OSError):
                    seen.disconnected.set()

            do_GET = do_POST = _serve

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base_url = f"http://{host}:{self.port}/v1"
        # a short poll: close() waits for the loop to notice (0.5 s by default, paid by every test that makes one)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def sse(payloads: Iterable[str | dict[str, Any]], *, done: bool = True, event: str | None = None) -> list[bytes]:
    """SSE frames, one per payload, as an OpenAI-style server sends them."""
    out = []
    for p in payloads:
        data = p if isinstance(p, str) else json.dumps(p)
        out.append((f"event: {event}\n" if event else "").encode() + f"data: {data}\n\n".encode())
    if done:
        out.append(b"data: [DONE]\n\n")
    return out


def fixture_payloads(name: str) -> list[str]:
    """The data payloads of a recorded stream (``.sse`` or ``.chunks.txt``), without [DONE]."""
    path = FIXTURES / name
    text = path.read_text()
    if name.endswith(".chunks.txt"):
        return [line for line in text.splitlines() if line.strip()]
    payloads = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        data = [ln[5:].lstrip(" ") for ln in block.split("\n") if ln.startswith("data:")]
        if data and data != ["[DONE]"]:
            payloads.append("\n".join(data))
    return payloads


def fixture_body(name: str) -> list[bytes]:
    """The wire body of a recorded stream: raw ``.sse`` as recorded, ``.chunks.txt`` rebuilt."""
    path = FIXTURES / name
    if name.endswith(".sse"):
        raw = path.read_bytes()
        return [raw[i:i + 700] for i in range(0, len(raw), 700)]  # odd piece sizes split frames
    return sse(fixture_payloads(name))
