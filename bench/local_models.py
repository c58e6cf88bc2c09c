"""Local models (the ``local`` provider, llama-cpp-python inside the sidecar) against the same GGUF served by
``llama_cpp.server`` and reached through the ``llamacpp`` provider: load time, time to first token, tokens
per second, RSS loaded and after unload, abort to ``cancelled``, and ``list_providers`` latency while a model
generates.

    python bench/local_models.py [--rounds N] [--gguf PATH] [--threads N]

Needs the ``local-model`` extra and the SmolLM2 GGUF (scripts/test-model.sh; env LLM_SIDECAR_TEST_GGUF).
Everything goes through a real ``python -m sidecar`` over its pipes; times are taken when the bench reads
the message (sub-millisecond). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import httpx  # noqa: E402
from harness import Sidecar  # noqa: E402

DEFAULT_GGUF = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llm-sidecar-test" / (
    "SmolLM2-135M-Instruct.Q4_1.gguf")
PROMPT = [{"role": "user", "content": "Write a long story about a dragon who learns to cook."}]
MAX_TOKENS = 128


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def kind(sc: Sidecar, sid: str, types: tuple[str, ...], timeout: float = 300) -> dict[str, Any]:
    m = sc.wait_for(lambda m: m.get("method") == f"llm-stream-{sid}" and m["params"].get("type") in types,
                    timeout=timeout)
    return m["params"]  # type: ignore[no-any-return]


def one_stream(sc: Sidecar, model: str) -> tuple[float, float, int]:
    """(time to first token in s, tokens/s after it, output tokens) of one streamed answer."""
    t0 = time.perf_counter()
    sid = sc.call("llm_stream_text", {"model": model, "messages": PROMPT, "max_tokens": MAX_TOKENS,
                                      "temperature": 0.0, "seed": 1}, timeout=300)["stream_id"]
    kind(sc, sid, ("text_delta", "error"))
    t1 = time.perf_counter()
    done = kind(sc, sid, ("done", "error"))
    t2 = time.perf_counter()
    assert done["type"] == "done", done
    out = done["usage"]["output_tokens"]
    return t1 - t0, (out - 1) / (t2 - t1) if t2 > t1 else float("nan"), out


def list_providers_ms(sc: Sidecar, n: int = 20) -> list[float]:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        sc.call("list_providers")
        times.append((time.perf_counter() - t) * 1000)
    return times


def abort_ms(sc: Sidecar, model: str) -> float:
    sid = sc.call("llm_stream_text", {"model": model, "messages": PROMPT, "max_tokens": 2000})["stream_id"]
    for _ in range(3):  # a few tokens in: the model is generating
        kind(sc, sid, ("text_delta",))
    t = time.perf_counter()
    sc.call("llm_abort_stream", {"stream_id": sid})
    end = kind(sc, sid, ("error", "done"))
    assert end["type"] == "error" and end["error"]["code"] == "cancelled", end
    return (time.perf_counter() - t) * 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fmt(values: list[float], digits: int = 1) -> str:
    return f"{statistics.median(values):.{digits}f} (max {max(values):.{digits}f})"


def bench_local(gguf: Path, rounds: int, threads: int) -> dict[str, str]:
    sc = Sidecar(Path(tempfile.mkdtemp()))
    sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
    time.sleep(2)  # after the sidecar's own start-up work (its HTTP client and usage log warm up in threads)
    try:
        sc.call("register_local_model", {"id": "smol", "path": str(gguf), "n_threads": threads, "n_ctx": 4096})
        before = rss_mb(sc.proc.pid)
        cold_ttft, _, _ = one_stream(sc, "local:smol")
        loaded = rss_mb(sc.proc.pid)
        runs = [one_stream(sc, "local:smol") for _ in range(rounds)]
        idle = list_providers_ms(sc)
        sid = sc.call("llm_stream_text", {"model": "local:smol", "messages": PROMPT, "max_tokens": 3000})["stream_id"]
        kind(sc, sid, ("text_delta",))
        busy = list_providers_ms(sc)
        sc.call("llm_abort_stream", {"stream_id": sid})
        kind(sc, sid, ("error", "done"))
        aborts = [abort_ms(sc, "local:smol") for _ in range(rounds)]
        sc.call("unload_local_model", {"id": "smol"})
        after = rss_mb(sc.proc.pid)
        ttft = [r[0] * 1000 for r in runs]
        load = cold_ttft * 1000 - statistics.median(ttft)
        return {
            "load (first request's extra wait: import llama_cpp + load), ms": f"{load:.0f}",
            "time to first token (loaded), ms": fmt(ttft),
            "tokens/s": fmt([r[1] for r in runs]),
            "RSS before load / loaded / after unload, MB": f"{before:.0f} / {loaded:.0f} / {after:.0f}",
            "list_providers idle, ms": fmt(idle, 2),
            "list_providers while generating, ms": fmt(busy, 2),
            "abort -> cancelled, ms": fmt(aborts),
        }
    finally:
        sc.kill()


def bench_server(gguf: Path, rounds: int, threads: int) -> dict[str, str]:
    port = free_port()
    t0 = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
                               "--port", str(port), "--n_ctx", "4096", "--n_threads", str(threads)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/v1"
    sc = Sidecar(Path(tempfile.mkdtemp()))
    try:
        while True:
            if server.poll() is not None:
                raise SystemExit("llama_cpp.server exited")
            try:
                if httpx.get(f"{base}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        ready = time.perf_counter() - t0
        sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
        sc.call("configure_provider", {"id": "llamacpp", "base_url": base})
        model = f"llamacpp:{gguf}"
        one_stream(sc, model)
        runs = [one_stream(sc, model) for _ in range(rounds)]
        aborts = [abort_ms(sc, model) for _ in range(rounds)]
        ttft = [r[0] * 1000 for r in runs]
        return {
            "load (server start to its first answer), ms": f"{ready * 1000:.0f}",
            "time to first token (loaded), ms": fmt(ttft),
            "tokens/s": fmt([r[1] for r in runs]),
            "RSS loaded (server process), MB": f"{rss_mb(server.pid):.0f}",
            "abort -> cancelled, ms": fmt(aborts),
        }
    finally:
        sc.kill()
        server.terminate()
        server.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--gguf", type=Path, default=Path(os.environ.get("LLM_SIDECAR_TEST_GGUF") or DEFAULT_GGUF))
    args = ap.parse_args()
    local = bench_local(args.gguf, args.rounds, args.threads)
    server = bench_server(args.gguf, args.rounds, args.threads)
    print(f"{args.gguf.name}, {MAX_TOKENS} tokens at most, {args.threads} threads, {args.rounds} rounds\n")
    print("| | local provider (in the sidecar) | llama_cpp.server via llamacpp |")
    print("|---|---|---|")
    for key in dict.fromkeys([*local, *server]):
        print(f"| {key} | {local.get(key, '-')} | {server.get(key, '-')} |")


if __name__ == "__main__":
    main()
