"""A loopback upstream that counts tokens with a fixed rule and refuses prompts over its limit, in the error shape
of each protocol (openai, anthropic, gemini, ollama, cohere); it also answers each provider's token-counting
endpoint. Nothing here imports the sidecar.

The rule: a prompt's tokens are the whitespace-separated words of every string in the request's conversation
fields (messages/contents, system, tools), keys such as ``role`` and ``id`` left out.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SKIP_KEYS = frozenset({"role", "type", "id", "tool_call_id", "tool_use_id", "mimeType", "model", "stream",
                       "max_tokens", "options", "generationConfig", "stream_options", "index"})
CONVERSATION = ("messages", "contents", "system", "systemInstruction", "tools")


def words(value: Any) -> int:
    """The fixed rule: words of every string under ``value`` (numbers count one each)."""
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, bool) or value is None:
        return 0
    if isinstance(value, int | float):
        return 1
    if isinstance(value, list):
        return sum(words(v) for v in value)
    if isinstance(value, dict):
        return sum(words(v) for k, v in value.items() if k not in SKIP_KEYS)
    return 0


def prompt_words(body: dict[str, Any]) -> int:
    return sum(words(body[k]) for k in CONVERSATION if k in body)


def overflow_error(protocol: str, limit: int, actual: int) -> tuple[int, dict[str, Any]]:
    """(status, body) of each protocol's context-length error, worded as the real services word it."""
    if protocol == "openai":
        return 400, {"error": {"message": f"This model's maximum context length is {limit} tokens. However, your "
                                          f"messages resulted in {actual} tokens. Please reduce the length of the "
                                          "messages.", "type": "invalid_request_error", "param": "messages",
                               "code": "context_length_exceeded"}}
    if protocol == "anthropic":
        return 400, {"type": "error", "error": {"type": "invalid_request_error",
                                                "message": f"prompt is too long: {actual} tokens > {limit} maximum"}}
    if protocol == "gemini":
        return 400, {"error": {"code": 400, "message": f"The input token count ({actual}) exceeds the maximum "
                                                       f"number of tokens allowed ({limit}).",
                               "status": "INVALID_ARGUMENT"}}
    if protocol == "ollama":
        return 400, {"error": "the input length exceeds the context length"}  # Ollama states no figures
    if protocol == "cohere":
        return 400, {"id": "0c4b2e1e", "message": f"too many tokens: total number of tokens in the prompt cannot "
                                                  f"exceed {limit} - received {actual}. Try using a shorter prompt, "
                                                  "or enabling prompt truncating."}
    raise ValueError(protocol)


def answer(protocol: str, text: str, prompt: int) -> tuple[str, list[bytes]]:
    """(content type, body pieces) of a short streamed answer in each protocol's format."""

    def sse(payloads: list[dict[str, Any]], named: bool = False, done: bool = False) -> list[bytes]:
        out = [((f"event: {p['type']}\n" if named else "") + f"data: {json.dumps(p)}\n\n").encode() for p in payloads]
        return out + ([b"data: [DONE]\n\n"] if done else [])

    if protocol == "openai":
        return "text/event-stream", sse([
            {"choices": [{"index": 0, "delta": {"role": "assistant", "content": text}}]},
            {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
             "usage": {"prompt_tokens": prompt, "completion_tokens": len(text.split())}},
        ], done=True)
    if protocol == "anthropic":
        return "text/event-stream", sse([
            {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                                                  "content": [], "model": "m", "stop_reason": None,
                                                  "usage": {"input_tokens": prompt, "output_tokens": 1}}},
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
            {"type": "content_block_stop", "index": 0},
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
             "usage": {"output_tokens": len(text.split())}},
            {"type": "message_stop"},
        ], named=True)
    if protocol == "gemini":
        return "text/event-stream", sse([
            {"candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "finishReason": "STOP"}],
             "usageMetadata": {"promptTokenCount": prompt, "candidatesTokenCount": len(text.split())}},
        ])
    if protocol == "ollama":
        lines = [{"model": "m", "message": {"role": "assistant", "content": text}, "done": False},
                 {"model": "m", "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop",
                  "prompt_eval_count": prompt, "eval_count": len(text.split())}]
        return "application/x-ndjson", [(json.dumps(x) + "\n").encode() for x in lines]
    if protocol == "cohere":
        return "text/event-stream", sse([
            {"type": "message-start", "id": "c1", "delta": {"message": {"role": "assistant"}}},
            {"type": "content-start", "index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}},
            {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": text}}}},
            {"type": "content-end", "index": 0},
            {"type": "message-end", "delta": {"finish_reason": "COMPLETE", "usage": {"tokens": {
                "input_tokens": prompt, "output_tokens": len(text.split())}}}},
        ])
    raise ValueError(protocol)


BASE_PATHS = {"openai": "/v1", "anthropic": "", "gemini": "/v1beta", "ollama": "", "cohere": ""}
"""what each protocol's base_url adds to the server's root"""


@dataclass
class Request:
    path: str
    model: str
    body: Any
    words: int
    refused: bool


@dataclass
class CountingUpstream:
    """One protocol's upstream: streams an answer to a prompt of at most ``limit`` words, refuses a longer one.

    ``limits`` by model override ``limit``; ``counts`` are what the counting endpoints answer (a model's fixed
    figure, so a test knows what an exact count must say)."""

    protocol: str
    limit: int = 3000
    limits: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    summary: str = "The user and the assistant talked about many numbered topics and called the lookup tool."
    requests: list[Request] = field(default_factory=list)
    count_requests: list[tuple[str, Any]] = field(default_factory=list)
    tokenize_path: str = "/tokenize"
    """openai protocol: llama.cpp's ``/tokenize`` (``content``) or llama-cpp-python's ``/extras/tokenize``
    (``input``)"""

    def __post_init__(self) -> None:
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._json(200, {"data": [], "models": []})

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                body = json.loads(raw) if raw else {}
                upstream.serve(self, body)

            def _json(self, status: int, obj: Any) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._handler = Handler
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.root = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.base_url = self.root + BASE_PATHS[self.protocol]
        self._lock = threading.Lock()
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def chats(self, model: str | None = None) -> list[Request]:
        return [r for r in self.requests if model is None or r.model == model]

    def serve(self, handler: Any, body: Any) -> None:
        path = handler.path.split("?", 1)[0]
        counted = self._count_answer(path, body)
        if counted is not None:
            with self._lock:
                self.count_requests.append((path, body))
            handler._json(200, counted)
            return
        model = body.get("model", "") if isinstance(body, dict) else ""
        if self.protocol == "gemini":
            model = path.rsplit("/", 1)[-1].split(":", 1)[0]
        n = prompt_words(body)
        limit = self.limits.get(model, self.limit)
        refused = n > limit
        with self._lock:
            self.requests.append(Request(path, model, body, n, refused))
        if refused:
            status, err = overflow_error(self.protocol, limit, n)
            handler._json(status, err)
            return
        summarising = "compress conversations" in json.dumps(body)
        content_type, pieces = answer(self.protocol, self.summary if summarising else f"answer {n}", n)
        handler.send_response(200)
        handler.send_header("content-type", content_type)
        handler.send_header("content-length", str(sum(len(p) for p in pieces)))
        handler.end_headers()
        for p in pieces:
            handler.wfile.write(p)

    def _count_answer(self, path: str, body: Any) -> dict[str, Any] | None:
        """The counting endpoints: Anthropic, Gemini, Cohere, llama.cpp, llama-cpp-python."""
        if path.endswith("/messages/count_tokens"):
            return {"input_tokens": self.counts.get(body.get("model", ""), prompt_words(body))}
        if path.endswith(":countTokens"):
            model = path.rsplit("/", 1)[-1].split(":", 1)[0]
            return {"totalTokens": self.counts.get(model, prompt_words(body.get("generateContentRequest", {})))}
        if path == "/v1/tokenize":
            return {"tokens": [7] * words(body.get("text", "")), "token_strings": []}
        if path == self.tokenize_path and self.protocol == "openai":
            return {"tokens": [7] * words(body.get("content", body.get("input", "")))}
        return None
