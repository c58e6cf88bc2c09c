"""What ``llm_embed`` costs on top of the upstream: the real sidecar (``python -m sidecar``) embedding texts
through a loopback OpenAI-style ``/v1/embeddings`` server, beside a floor that asks the same server for the
same batches directly (httpx in this process, the JSON parsed, no sidecar).

    python bench/embed.py [--texts N] [--dims D] [--rounds R]

The server answers each request with D-dimensional vectors written as OpenAI writes them (9 decimals),
prepared once, so both subjects get the same bytes. Prints the median and best wall time of one call
(from the request line written to the answer parsed), the sidecar's batches, and its RSS after the rounds.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests")]

from harness import Sidecar  # noqa: E402


class Fake:
    def __init__(self, dims: int) -> None:
        rng = random.Random(7)
        self.vector = json.dumps([round(rng.gauss(0, 0.03), 9) for _ in range(dims)]).encode()
        self.batches: list[int] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                n = len(body["input"])
                fake.batches.append(n)
                items = b",".join(b'{"object":"embedding","index":%d,"embedding":%s}' % (i, fake.vector)
                                  for i in range(n))
                payload = (b'{"object":"list","data":[' + items + b'],"model":"m","usage":{"prompt_tokens":%d,'
                           b'"total_tokens":%d}}' % (n, n))
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()


def floor_ms(fake: Fake, batches: list[int], texts: list[str]) -> float:
    """The same batches asked directly: the least any client pays."""
    import httpx

    started = time.perf_counter()
    with httpx.Client() as client:
        start = 0
        for n in batches:
            answer = client.post(f"{fake.url}/v1/embeddings",
                                 json={"model": "text-embedding-3-small", "input": texts[start:start + n]})
            data = answer.json()["data"]
            assert len(data) == n
            start += n
    return (time.perf_counter() - started) * 1000


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--dims", type=int, default=1536)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    fake = Fake(args.dims)
    texts = [f"passage number {i} about something worth finding later" for i in range(args.texts)]
    with tempfile.TemporaryDirectory() as data:
        sc = Sidecar(Path(data), "--base-url", f"openai={fake.url}/v1", env={"OPENAI_API_KEY": "sk-bench-0000000000"})
        try:
            sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
            sc.call("sidecar_info")
            idle = rss_mib(sc.proc.pid)
            sidecar: list[float] = []
            for _ in range(args.rounds + 1):
                fake.batches.clear()
                started = time.perf_counter()
                result = sc.call("llm_embed", {"model": "openai:text-embedding-3-small", "input": texts},
                                 timeout=120)
                sidecar.append((time.perf_counter() - started) * 1000)
                assert len(result["embeddings"]) == args.texts
            batches = list(fake.batches)
            rss = rss_mib(sc.proc.pid)
            mock: list[float] = []
            for _ in range(args.rounds):
                started = time.perf_counter()
                sc.call("llm_embed", {"model": "mock:embed", "input": texts, "dimensions": args.dims}, timeout=120)
                mock.append((time.perf_counter() - started) * 1000)
        finally:
            sc.kill()
    floor = [floor_ms(fake, batches, texts) for _ in range(args.rounds)]
    sidecar = sidecar[1:]  # the first call builds the HTTP client and imports the embeddings path
    print(f"{args.texts} texts, {args.dims} dimensions; sidecar batches {batches}")
    print(f"llm_embed via the sidecar : median {statistics.median(sidecar):7.1f} ms, best {min(sidecar):7.1f} ms")
    print(f"the same batches directly : median {statistics.median(floor):7.1f} ms, best {min(floor):7.1f} ms")
    print(f"mock:embed (no upstream)  : median {statistics.median(mock):7.1f} ms, best {min(mock):7.1f} ms")
    print(f"sidecar RSS: {idle:.0f} MiB before the first call, {rss:.0f} MiB after the rounds")


if __name__ == "__main__":
    sys.exit(main())
