"""The FLOOR of the relay benchmark: the least a Python relay of an OpenAI stream can do.

``python bench/floor_relay.py BASE_URL`` speaks just enough of the sidecar's wire for the
benchmark: it reads ``llm_stream_text`` requests (NDJSON) on stdin and, for each, answers
``{"stream_id"}`` and relays the upstream's stream as ``llm-stream-<id>`` notifications
(``start``, one ``text_delta`` per content chunk, ``usage``, ``done``) on stdout.

Per chunk it does what any relay must: ``httpx.AsyncClient.stream`` + ``aiter_lines``,
``msgspec`` decode of the ``data:`` line, ``msgspec`` encode of a small notification dict,
one ``os.write`` to stdout. No validation, no error handling, no cancellation, no
backpressure beyond a blocking write: whatever the sidecar spends above this is its own.
"""

import asyncio
import os
import sys
import time

import httpx
import msgspec


class Delta(msgspec.Struct):
    content: str | None = None


class Choice(msgspec.Struct):
    index: int = 0
    delta: Delta | None = None
    finish_reason: str | None = None


class Usage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Chunk(msgspec.Struct):
    choices: list[Choice] | None = None
    usage: Usage | None = None


decode_chunk = msgspec.json.Decoder(Chunk).decode
decode_request = msgspec.json.Decoder().decode
encode = msgspec.json.Encoder().encode
OUT = sys.stdout.fileno()


def send(message: dict) -> None:
    os.write(OUT, encode(message) + b"\n")


async def relay(client: httpx.AsyncClient, base_url: str, request: dict) -> None:
    params = request["params"]
    sid = params.get("stream_id") or "s"
    method = f"llm-stream-{sid}"
    send({"jsonrpc": "2.0", "id": request["id"], "result": {"stream_id": sid}})
    started = time.perf_counter()
    provider, _, model = params["model"].partition(":")
    seq = 0

    def event(kind: str, **fields: object) -> None:
        nonlocal seq
        send({"jsonrpc": "2.0", "method": method,
              "params": {"stream_id": sid, "seq": seq, "type": kind, **fields}})
        seq += 1

    event("start", provider=provider, model=params["model"])
    body = {"model": model, "messages": params["messages"], "stream": True,
            "stream_options": {"include_usage": True}}
    finish = "other"
    usage = {"input_tokens": 0, "output_tokens": 0}
    async with client.stream("POST", f"{base_url}/chat/completions", content=encode(body),
                             headers={"content-type": "application/json"}) as response:
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                continue
            chunk = decode_chunk(data)
            if chunk.usage is not None:
                u = chunk.usage
                usage = {"input_tokens": u.prompt_tokens, "output_tokens": u.completion_tokens}
            for choice in chunk.choices or ():
                if choice.delta is not None and choice.delta.content:
                    event("text_delta", text=choice.delta.content)
                if choice.finish_reason:
                    finish = choice.finish_reason
    event("usage", **usage)
    event("done", finish_reason=finish, usage=usage, model=params["model"],
          latency_ms=round((time.perf_counter() - started) * 1000, 3))


async def main() -> None:
    base_url = sys.argv[1].rstrip("/")
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(timeout=httpx.Timeout(120.0, connect=15.0)) as client:
        send({"jsonrpc": "2.0", "method": "sidecar-ready",
              "params": {"version": "floor", "pid": os.getpid()}})
        while True:
            line = await loop.run_in_executor(None, sys.stdin.buffer.readline)
            if not line:
                return
            if line.strip():
                await relay(client, base_url, decode_request(line))


if __name__ == "__main__":
    asyncio.run(main())
