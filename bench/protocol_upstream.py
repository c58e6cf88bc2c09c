"""A loopback upstream that streams each protocol's text format, for bench/report.py (run as its own process).

``python bench/protocol_upstream.py`` listens on 127.0.0.1, prints its port on stdout and serves until
its stdin closes. The protocol is chosen by the request path, the number of content chunks by the model
name (``n-20000``; in the path for gemini, in the JSON body for the others):

- openai     ``POST /v1/chat/completions``                SSE, ``data:`` chunks, usage chunk, ``[DONE]``
- anthropic  ``POST /v1/messages``                        SSE with ``event:`` lines, ``content_block_delta``
- gemini     ``POST /v1beta/models/M:streamGenerateContent`` SSE of ``candidates`` chunks
- ollama     ``POST /api/chat``                            NDJSON lines, ``done: true`` at the end
- cohere     ``POST /v2/chat``                             SSE with ``event:`` lines, ``content-delta``

As in bench/upstream.py: HTTP/1.1 keep-alive, a thread per connection, chunked transfer encoding with
each event its own HTTP chunk and its own ``send``, the body built once per (protocol, n) and sent as fast
as the socket takes it. Payload shapes are bench/decode.py's.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading


def _j(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _text(i: int) -> str:
    """Content of chunk i: 4 characters, varied (LiteLLM fails a stream that repeats one chunk 100 times)."""
    return f"t{i % 10}k "


def _sse(data: str, event: str | None = None) -> bytes:
    return (f"event: {event}\n" if event else "").encode() + f"data: {data}\n\n".encode()


def openai_events(n: int) -> list[bytes]:
    chunks = [_sse(_j({"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
                       "choices": [{"index": 0, "delta": {"content": _text(i)}, "finish_reason": None}]}))
              for i in range(n)]
    finish = _sse(_j({"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
                      "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    usage = _sse(_j({"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
                     "usage": {"prompt_tokens": 10, "completion_tokens": n, "total_tokens": n + 10}}))
    return [*chunks, finish, usage, b"data: [DONE]\n\n"]


def anthropic_events(n: int) -> list[bytes]:
    def ev(obj: dict) -> bytes:
        return _sse(_j(obj), obj["type"])

    return [
        ev({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                                                  "model": "m", "content": [], "stop_reason": None,
                                                  "usage": {"input_tokens": 10, "output_tokens": 1}}}),
        ev({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        *[ev({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": _text(i)}})
          for i in range(n)],
        ev({"type": "content_block_stop", "index": 0}),
        ev({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": n}}),
        ev({"type": "message_stop"}),
    ]


def gemini_events(n: int) -> list[bytes]:
    chunks = [_sse(_j({"candidates": [{"content": {"parts": [{"text": _text(i)}], "role": "model"}, "index": 0}],
                       "usageMetadata": {"promptTokenCount": 10, "totalTokenCount": 10},
                       "modelVersion": "m", "responseId": "r1"})) for i in range(n)]
    end = _sse(_j({"candidates": [{"content": {"parts": [{"text": ""}], "role": "model"}, "finishReason": "STOP",
                                   "index": 0}],
                   "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": n, "totalTokenCount": n + 10},
                   "modelVersion": "m", "responseId": "r1"}))
    return [*chunks, end]


def ollama_events(n: int) -> list[bytes]:
    chunks = [(_j({"model": "m", "created_at": "2025-01-01T00:00:00.000000Z",
                   "message": {"role": "assistant", "content": _text(i)}, "done": False}) + "\n").encode()
              for i in range(n)]
    end = (_j({"model": "m", "created_at": "2025-01-01T00:00:01.000000Z",
               "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop",
               "total_duration": 1, "load_duration": 1, "prompt_eval_count": 10, "prompt_eval_duration": 1,
               "eval_count": n, "eval_duration": 1}) + "\n").encode()
    return [*chunks, end]


def cohere_events(n: int) -> list[bytes]:
    def ev(obj: dict) -> bytes:
        return _sse(_j(obj), obj["type"])

    return [
        ev({"type": "message-start", "id": "c1", "delta": {"message": {"role": "assistant", "content": [],
                                                                          "tool_plan": "", "tool_calls": [],
                                                                          "citations": []}}}),
        ev({"type": "content-start", "index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}}),
        *[ev({"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": _text(i)}}}})
          for i in range(n)],
        ev({"type": "content-end", "index": 0}),
        ev({"type": "message-end", "delta": {"finish_reason": "COMPLETE",
                                             "usage": {"billed_units": {"input_tokens": 10, "output_tokens": n},
                                                       "tokens": {"input_tokens": 10, "output_tokens": n}}}}),
    ]


EVENTS = {"openai": openai_events, "anthropic": anthropic_events, "gemini": gemini_events,
          "ollama": ollama_events, "cohere": cohere_events}
CONTENT_TYPE = {"ollama": b"application/x-ndjson"}


def head(protocol: str) -> bytes:
    ctype = CONTENT_TYPE.get(protocol, b"text/event-stream")
    return (b"HTTP/1.1 200 OK\r\ncontent-type: %s\r\ncache-control: no-cache\r\n"
            b"transfer-encoding: chunked\r\n\r\n" % ctype)


def body_pieces(protocol: str, n: int) -> list[bytes]:
    """The reply's body as the socket writes it: chunked-encoded, one event per piece, the last one closing."""
    pieces = [b"%x\r\n%s\r\n" % (len(e), e) for e in EVENTS[protocol](n)]
    pieces[-1] += b"0\r\n\r\n"
    return pieces


def route(path: str, raw: bytes) -> tuple[str, int]:
    """(protocol, content chunks) of a request."""
    path = path.split("?", 1)[0]
    if path.startswith("/v1beta/models/"):
        protocol, model = "gemini", path.rsplit("/", 1)[1].split(":", 1)[0]
    else:
        protocol = {"/v1/chat/completions": "openai", "/v1/messages": "anthropic", "/api/chat": "ollama",
                    "/v2/chat": "cohere"}.get(path, "openai")
        try:
            model = str(json.loads(raw).get("model", "")) if raw else ""
        except ValueError:
            model = ""
    _, sep, count = model.rpartition("n-")
    return protocol, int(count) if sep and count.isdigit() else 10


class Server:
    def __init__(self) -> None:
        self._bodies: dict[tuple[str, int], list[bytes]] = {}
        self._lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.port: int = self.sock.getsockname()[1]

    def body(self, protocol: str, n: int) -> list[bytes]:
        with self._lock:
            if (protocol, n) not in self._bodies:
                self._bodies[protocol, n] = body_pieces(protocol, n)
            return self._bodies[protocol, n]

    def serve_forever(self) -> None:
        while True:
            conn, _ = self.sock.accept()
            threading.Thread(target=self.connection, args=(conn,), daemon=True).start()

    def connection(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head_, _, buf = buf.partition(b"\r\n\r\n")
                lines = head_.split(b"\r\n")
                path = lines[0].split(b" ")[1].decode() if len(lines[0].split(b" ")) > 1 else "/"
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get(b"content-length", b"0"))
                while len(buf) < length:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                raw, buf = buf[:length], buf[length:]
                protocol, n = route(path, raw)
                conn.sendall(head(protocol))
                for piece in self.body(protocol, n):
                    conn.sendall(piece)
        except OSError:
            pass
        finally:
            conn.close()


def main() -> None:
    server = Server()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdout.write(f"{server.port}\n")
    sys.stdout.flush()
    sys.stdin.buffer.read()  # until the benchmark goes away
    os._exit(0)


if __name__ == "__main__":
    main()
