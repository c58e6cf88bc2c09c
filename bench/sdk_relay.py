"""A relay built on a client SDK, for bench/report.py: what a sidecar written on top of one would cost.

``python bench/sdk_relay.py openai|litellm BASE_URL`` speaks the same NDJSON as bench/floor_relay.py:
it reads ``llm_stream_text`` requests on stdin and, for each, answers ``{"stream_id"}`` and relays the
upstream's OpenAI stream as ``llm-stream-<id>`` notifications (``start``, one ``text_delta`` per content
chunk, ``usage``, ``done``), one ``os.write`` per line.

- ``openai``: the official SDK, ``OpenAI(base_url=...).chat.completions.create(stream=True)``, iterating
  the chunks (pydantic models) it yields.
- ``litellm``: ``litellm.completion(model="openai/<model>", api_base=..., stream=True)``, run from a
  separate venv.

Lines are encoded with msgspec where it is installed (as in the floor), else with the stdlib json.
"""

import os
import sys
import time

try:
    import msgspec

    _encode = msgspec.json.Encoder().encode
    _decode = msgspec.json.Decoder().decode
except ImportError:  # the litellm venv may lack it
    import json

    def _encode(obj: object) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()

    _decode = json.loads

OUT = sys.stdout.fileno()


def send(message: dict) -> None:
    os.write(OUT, _encode(message) + b"\n")


def make_stream(sdk: str, base_url: str):
    if sdk == "openai":
        import openai

        client = openai.OpenAI(base_url=base_url, api_key="bench", max_retries=0, timeout=120.0)

        def stream(model: str, messages: list) -> object:
            return client.chat.completions.create(model=model, messages=messages, stream=True,
                                                  stream_options={"include_usage": True})
    else:
        import litellm

        def stream(model: str, messages: list) -> object:
            return litellm.completion(model=f"openai/{model}", api_base=base_url, api_key="bench",
                                      messages=messages, stream=True, stream_options={"include_usage": True})
    return stream


def relay(stream, request: dict) -> None:
    params = request["params"]
    sid = params.get("stream_id") or "s"
    method = f"llm-stream-{sid}"
    send({"jsonrpc": "2.0", "id": request["id"], "result": {"stream_id": sid}})
    started = time.perf_counter()
    provider, _, model = params["model"].partition(":")
    seq = 0

    def event(kind: str, **fields: object) -> None:
        nonlocal seq
        send({"jsonrpc": "2.0", "method": method, "params": {"stream_id": sid, "seq": seq, "type": kind, **fields}})
        seq += 1

    event("start", provider=provider, model=params["model"])
    finish = "other"
    usage = {"input_tokens": 0, "output_tokens": 0}
    for chunk in stream(model, params["messages"]):
        u = getattr(chunk, "usage", None)
        if u is not None:
            usage = {"input_tokens": u.prompt_tokens, "output_tokens": u.completion_tokens}
        for choice in chunk.choices or ():
            if choice.delta is not None and choice.delta.content:
                event("text_delta", text=choice.delta.content)
            if choice.finish_reason:
                finish = choice.finish_reason
    event("usage", **usage)
    event("done", finish_reason=finish, usage=usage, model=params["model"],
          latency_ms=round((time.perf_counter() - started) * 1000, 3))


def main() -> None:
    sdk, base_url = sys.argv[1], sys.argv[2].rstrip("/")
    stream = make_stream(sdk, base_url)
    send({"jsonrpc": "2.0", "method": "sidecar-ready", "params": {"version": sdk, "pid": os.getpid()}})
    for line in sys.stdin.buffer:
        if line.strip():
            relay(stream, _decode(line))


if __name__ == "__main__":
    main()
