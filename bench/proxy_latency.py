"""Latency of the local proxy: a request on a kept-alive connection against one on a fresh connection.

    .venv/bin/python bench/proxy_latency.py [--requests 300] [--root DIR] [--write]

Starts ``python -m sidecar`` (from this checkout, or from ``--root DIR`` to measure another one, e.g.
a checkout from before a change), starts its proxy with ``start_llm_proxy``, and sends non-streamed
``POST /v1/chat/completions`` requests for ``mock:echo`` (no upstream: the time is the proxy's own).
Each round sends one request on a new TCP connection (connect, request, response, close) and one on a
connection kept open for the whole run, alternately, and times each from the first byte written to
the last byte of the body read. The client is a raw socket writing each request in one ``send``, so
the client's own buffering plays no part. The bar (issue 11): the kept-alive median within 2 ms of the
fresh one. Without ``TCP_NODELAY`` on the server's side, the response's second write waits for the
client's delayed ACK, about 40 ms on Linux, on kept-alive connections only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from readme import write_section

ROOT = Path(__file__).resolve().parent.parent
BAR_MS = 2.0


class Sidecar:
    """Just enough of a JSON-RPC client to start the proxy."""

    def __init__(self, root: Path, data_dir: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
        env.update(PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring", LLM_SIDECAR_DATA_DIR=data_dir)
        self.proc = subprocess.Popen([sys.executable, "-m", "sidecar"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=root)
        self.next_id = 1

    def call(self, method: str, params: dict[str, object]) -> dict[str, str]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        rid, self.next_id = self.next_id, self.next_id + 1
        self.proc.stdin.write(json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}).encode()
                              + b"\n")
        self.proc.stdin.flush()
        while True:
            msg = json.loads(self.proc.stdout.readline())
            if msg.get("id") == rid:
                result: dict[str, str] = msg["result"]
                return result

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)


def read_response(sock: socket.socket) -> bytes:
    """One HTTP/1.1 response with a Content-Length body; returns the body."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the headers")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the body's end")
        body += chunk
    return body


def timed(sock: socket.socket, request: bytes) -> float:
    t0 = time.perf_counter()
    sock.sendall(request)
    body = read_response(sock)
    elapsed = time.perf_counter() - t0
    assert b'"content":"ping"' in body, body
    return elapsed


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=300, help="requests of each kind (default 300)")
    ap.add_argument("--root", type=Path, default=ROOT, help="the checkout whose sidecar to run (default: this one)")
    ap.add_argument("--write", action="store_true", help="write the figures into bench/README.md")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as data:
        sc = Sidecar(args.root, data)
        try:
            started = sc.call("start_llm_proxy", {})
            port = int(started["url"].rsplit(":", 1)[1].split("/")[0])
            body = json.dumps({"model": "mock:echo", "messages": [{"role": "user", "content": "ping"}]}).encode()
            request = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                       f"Authorization: Bearer {started['token']}\r\nContent-Type: application/json\r\n"
                       f"Content-Length: {len(body)}\r\n\r\n").encode() + body
            kept = connect(port)
            for _ in range(10):  # warm-up: imports on first use, the kept connection's first request
                timed(kept, request)
                with connect(port) as s:
                    timed(s, request)
            fresh_ms: list[float] = []
            kept_ms: list[float] = []
            for i in range(args.requests):
                for kind in (("fresh", "kept") if i % 2 else ("kept", "fresh")):
                    if kind == "kept":
                        kept_ms.append(timed(kept, request) * 1000)
                    else:
                        t0 = time.perf_counter()
                        with connect(port) as s:
                            timed(s, request)
                        fresh_ms.append((time.perf_counter() - t0) * 1000)
            kept.close()
        finally:
            sc.close()

    def p90(xs: list[float]) -> float:
        return sorted(xs)[int(len(xs) * 0.9)]

    fresh, keep = statistics.median(fresh_ms), statistics.median(kept_ms)
    diff = keep - fresh
    verdict = "meets" if diff <= BAR_MS else "misses"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    where = "this checkout" if args.root.resolve() == ROOT else f"`{args.root}`"
    section = (
        f"## Proxy latency: kept-alive against fresh connections\n\n"
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: `bench/proxy_latency.py` on {where}, "
        f"{args.requests} non-streamed `mock:echo` requests of each kind, interleaved, after 10 of each as "
        f"warm-up; 1-minute load average {load:.2f}; {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}. A fresh request's time includes its connect and close.\n\n"
        f"| connection | median | p90 |\n|---|---:|---:|\n"
        f"| fresh (new TCP connection per request) | {fresh:.2f} ms | {p90(fresh_ms):.2f} ms |\n"
        f"| kept alive (one connection for all) | {keep:.2f} ms | {p90(kept_ms):.2f} ms |\n\n"
        f"Kept-alive minus fresh, medians: **{diff:+.2f} ms** ({verdict} the bar: within {BAR_MS:g} ms). "
        f"Rerun: `.venv/bin/python bench/proxy_latency.py --write`; `--root DIR` measures another checkout."
    )
    print(section)
    if args.write:
        write_section("proxy", section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
