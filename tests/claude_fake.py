"""A loopback fake of Anthropic's Messages API, for running the real ``claude`` program against.

What it answers is chosen by a marker in the text of the request's last user turn, so one server serves
every test of a module:

- ``[[think]]``: a thinking block, then text;
- ``[[401]]`` / ``[[529]]``: that HTTP error (529: ``[[529x1]]`` fails only the first attempt);
- ``[[slow]]``: a long answer, one delta every 50 ms (for aborts);
- anything else: the text ``REPLY`` in three deltas.

Every ``POST .../messages`` is recorded (path, headers, JSON body) so tests assert what the CLI sent: its
system prompt, its tools, the conversation. Run it on its own (``python tests/claude_fake.py``) to point a
``claude`` by hand at it (it prints its port).
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REPLY = ("Hello", " from the", " fake.")
THOUGHT = ("Let me think", " about it.")
USAGE = {"input_tokens": 21, "cache_creation_input_tokens": 5, "cache_read_input_tokens": 7, "output_tokens": 9}
MODEL = "claude-fake-1"


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: Any

    def last_user_text(self) -> str:
        return last_user_text(self.body)


def last_user_text(body: Any) -> str:
    msgs = body.get("messages") if isinstance(body, dict) else None
    for m in reversed(msgs or []):
        if m.get("role") != "user":
            continue
        c = m.get("content")
        if isinstance(c, str):
            return c
        return "".join(b.get("text", "") for b in c if isinstance(b, dict) and b.get("type") == "text")
    return ""


def system_text(body: Any) -> str:
    s = body.get("system") if isinstance(body, dict) else None
    if isinstance(s, str):
        return s
    return "\n".join(b.get("text", "") for b in s or [] if isinstance(b, dict))


def _sse(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def answer(texts: tuple[str, ...] | list[str], thinking: tuple[str, ...] = (), stop: str = "end_turn") -> list[bytes]:
    """A whole Messages API stream: message_start, [thinking block], text block, message_delta, message_stop."""
    out = [_sse("message_start", {"type": "message_start", "message": {
        "id": "msg_fake", "type": "message", "role": "assistant", "model": MODEL, "content": [],
        "stop_reason": None, "stop_sequence": None,
        "usage": {**USAGE, "output_tokens": 1}}})]
    index = 0
    if thinking:
        block = {"type": "thinking", "thinking": "", "signature": ""}
        out.append(_sse("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}))
        for t in thinking:
            out.append(_sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                    "delta": {"type": "thinking_delta", "thinking": t}}))
        out.append(_sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                "delta": {"type": "signature_delta", "signature": "c2lnLWZha2U="}}))
        out.append(_sse("content_block_stop", {"type": "content_block_stop", "index": 0}))
        index = 1
    out.append(_sse("content_block_start", {"type": "content_block_start", "index": index,
                                            "content_block": {"type": "text", "text": ""}}))
    for t in texts:
        out.append(_sse("content_block_delta", {"type": "content_block_delta", "index": index,
                                                "delta": {"type": "text_delta", "text": t}}))
    out.append(_sse("content_block_stop", {"type": "content_block_stop", "index": index}))
    out.append(_sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                      "usage": {"output_tokens": USAGE["output_tokens"]}}))
    out.append(_sse("message_stop", {"type": "message_stop"}))
    return out


class FakeMessagesApi:
    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.attempts: dict[str, int] = {}
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._json(404, {"type": "error", "error": {"type": "not_found_error", "message": "not here"}})

            def do_HEAD(self) -> None:
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                seen = Seen(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with fake.lock:
                    fake.seen.append(seen)
                if "/messages/count_tokens" in self.path:
                    self._json(200, {"input_tokens": 10})
                    return
                if not self.path.split("?", 1)[0].endswith("/messages"):
                    self._json(404, {"type": "error", "error": {"type": "not_found_error", "message": "no route"}})
                    return
                fake.reply(self, seen)

            def _json(self, status: int, obj: Any) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.handler = Handler
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def messages(self) -> list[Seen]:
        """The recorded Messages API calls (not count_tokens)."""
        with self.lock:
            return [s for s in self.seen if s.path.split("?", 1)[0].endswith("/messages")]

    def with_marker(self, marker: str) -> list[Seen]:
        return [s for s in self.messages() if marker in s.last_user_text()]

    def reply(self, h: BaseHTTPRequestHandler, seen: Seen) -> None:
        text = seen.last_user_text()
        failing = re.search(r"\[\[(401|529)(?:x(\d+))?\]\]", text)
        if failing:
            key = failing.group(0) + text
            with self.lock:
                n = self.attempts[key] = self.attempts.get(key, 0) + 1
            limit = int(failing.group(2)) if failing.group(2) else None
            if limit is None or n <= limit:
                code = int(failing.group(1))
                kind = {401: "authentication_error", 529: "overloaded_error"}[code]
                message = {401: "invalid x-api-key", 529: "Overloaded"}[code]
                data = json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()
                h.send_response(code)
                h.send_header("content-type", "application/json")
                h.send_header("content-length", str(len(data)))
                if code == 529:
                    h.send_header("x-should-retry", "false")  # the CLI's own retries off: the sidecar's policy retries
                h.end_headers()
                h.wfile.write(data)
                return
        if "[[think]]" in text:
            frames = answer(REPLY, THOUGHT)
        elif "[[slow]]" in text:
            frames = answer([f"tick{i} " for i in range(400)])
        else:
            frames = answer(REPLY)
        h.send_response(200)
        h.send_header("content-type", "text/event-stream")
        h.send_header("cache-control", "no-cache")
        h.send_header("transfer-encoding", "chunked")
        h.end_headers()
        slow = "[[slow]]" in text
        try:
            for frame in frames:
                if slow:
                    time.sleep(0.05)
                h.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))
                h.wfile.flush()
            h.wfile.write(b"0\r\n\r\n")
            h.wfile.flush()
        except OSError:
            pass  # the client went away (an abort)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


if __name__ == "__main__":
    api = FakeMessagesApi()
    print(api.url, flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        api.close()
