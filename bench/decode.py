"""Decoding cost per chunk of each protocol, beside the openai protocol's (the bar: within 1.5x).

    python bench/decode.py [--chunks N] [--reps N] [--write]

Each protocol's decoder is fed a realistic text stream in its own wire shape (the payload of one
SSE message or NDJSON line per chunk, as the engine hands it over), from its opening messages to
its end, and timed with perf_counter; the figure is the best of --reps runs (the least disturbed
by whatever else the machine does), in µs per content chunk. Pure decode: no network, no I/O.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sidecar.protocols import get_protocol  # noqa: E402

Stream = list[tuple[str, str]]


def _openai(n: int) -> Stream:
    chunk = json.dumps({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
                        "choices": [{"index": 0, "delta": {"content": "tok "}, "finish_reason": None}]})
    end = json.dumps({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
                      "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    usage = json.dumps({"id": "chatcmpl-1", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": n}})
    return [("", chunk)] * n + [("", end), ("", usage), ("", "[DONE]")]


def _anthropic(n: int) -> Stream:
    def ev(obj: dict) -> tuple[str, str]:
        return obj["type"], json.dumps(obj)

    return [
        ev({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                                                  "model": "claude-sonnet-4-5", "content": [], "stop_reason": None,
                                                  "usage": {"input_tokens": 5, "output_tokens": 1}}}),
        ev({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        *[ev({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "tok "}})] * n,
        ev({"type": "content_block_stop", "index": 0}),
        ev({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": n}}),
        ev({"type": "message_stop"}),
    ]


def _gemini(n: int) -> Stream:
    chunk = json.dumps({"candidates": [{"content": {"parts": [{"text": "tok "}], "role": "model"}, "index": 0}],
                        "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5},
                        "modelVersion": "gemini-2.5-flash", "responseId": "r1"})
    end = json.dumps({"candidates": [{"content": {"parts": [{"text": ""}], "role": "model"}, "finishReason": "STOP",
                                      "index": 0}],
                      "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": n, "totalTokenCount": n + 5},
                      "modelVersion": "gemini-2.5-flash", "responseId": "r1"})
    return [("", chunk)] * n + [("", end)]


def _ollama(n: int) -> Stream:
    chunk = json.dumps({"model": "llama3.2", "created_at": "2025-01-01T00:00:00.000000Z",
                        "message": {"role": "assistant", "content": "tok "}, "done": False})
    end = json.dumps({"model": "llama3.2", "created_at": "2025-01-01T00:00:01.000000Z",
                      "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop",
                      "total_duration": 1, "load_duration": 1, "prompt_eval_count": 5, "prompt_eval_duration": 1,
                      "eval_count": n, "eval_duration": 1})
    return [("", chunk)] * n + [("", end)]


def _cohere(n: int) -> Stream:
    def ev(obj: dict) -> tuple[str, str]:
        return obj["type"], json.dumps(obj)

    return [
        ev({"type": "message-start", "id": "c1", "delta": {"message": {"role": "assistant", "content": [],
                                                                          "tool_plan": "", "tool_calls": [],
                                                                          "citations": []}}}),
        ev({"type": "content-start", "index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}}),
        *[ev({"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": "tok "}}}})] * n,
        ev({"type": "content-end", "index": 0}),
        ev({"type": "message-end", "delta": {"finish_reason": "COMPLETE",
                                             "usage": {"billed_units": {"input_tokens": 5, "output_tokens": n},
                                                       "tokens": {"input_tokens": 5, "output_tokens": n}}}}),
    ]


def _openai_responses(n: int) -> Stream:
    """As OpenAI sends it now: item ids, sequence numbers, empty logprobs and an obfuscation pad on each delta."""
    def ev(obj: dict) -> tuple[str, str]:
        return obj["type"], json.dumps(obj, separators=(",", ":"))

    item = "msg_0df93c0bb83a72f20068c97a0b36f4819ea5906451007f95e2"
    return [
        ev({"type": "response.created", "sequence_number": 0, "response": {"id": "resp_1", "status": "in_progress"}}),
        ev({"type": "response.output_item.added", "sequence_number": 1, "output_index": 0,
            "item": {"id": item, "type": "message", "status": "in_progress", "content": [], "role": "assistant"}}),
        *[ev({"type": "response.output_text.delta", "sequence_number": 2, "item_id": item, "output_index": 0,
              "content_index": 0, "delta": "tok ", "logprobs": [], "obfuscation": "Xk3mQ9zP1a"})] * n,
        ev({"type": "response.output_text.done", "sequence_number": 3, "item_id": item, "output_index": 0,
            "content_index": 0, "text": "tok " * 8, "logprobs": []}),
        ev({"type": "response.completed", "sequence_number": 4, "response": {
            "id": "resp_1", "status": "completed",
            "usage": {"input_tokens": 5, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": n,
                      "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": n + 5}}}),
    ]


STREAMS: dict[str, Callable[[int], Stream]] = {
    "openai": _openai, "anthropic": _anthropic, "gemini": _gemini, "ollama": _ollama, "cohere": _cohere,
    "openai-responses": _openai_responses,
}


def measure(name: str, stream: Stream, chunks: int, reps: int) -> float:
    protocol = get_protocol(name)
    best = float("inf")
    for _ in range(reps):
        decoder = protocol.new_decoder("bench")
        t0 = time.perf_counter()
        for event, data in stream:
            decoder.feed(event, data)
        decoder.end()
        best = min(best, time.perf_counter() - t0)
    return best / chunks * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunks", type=int, default=20_000)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--write", action="store_true", help="put the table into bench/README.md")
    args = ap.parse_args()
    rows = []
    base = None
    for name, make in STREAMS.items():
        try:
            get_protocol(name)
        except KeyError:
            rows.append(f"| {name} | not available | |")
            continue
        us = measure(name, make(args.chunks), args.chunks, args.reps)
        base = base if base is not None else us
        rows.append(f"| {name} | {us:.2f} | {us / base:.2f}x |")
    table = "\n".join([
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: `bench/decode.py`, {args.chunks:,} text chunks, "
        f"best of {args.reps}; Python {platform.python_version()}.",
        "",
        "| protocol | µs per chunk | vs openai |",
        "|---|---:|---:|",
        *rows,
    ])
    print(table)
    if args.write:
        readme = ROOT / "bench" / "README.md"
        text = readme.read_text()
        begin, end = "<!-- bench:decode:begin -->", "<!-- bench:decode:end -->"
        block = f"{begin}\n{table}\n{end}"
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), block, text, flags=re.S) if begin in text \
            else text.rstrip() + "\n\n## Decoding cost per protocol\n\n" + block + "\n"
        readme.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
