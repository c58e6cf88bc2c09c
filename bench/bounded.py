"""Bounded reading: what the SSE framing costs per event, and what a hostile upstream costs the sidecar.

    python bench/bounded.py [--write]

(a) Framing: 20,000 OpenAI chunks, one SSE event per network chunk, through the sidecar's bounded
reader (sidecar/framing.py ``MessageReader``) beside httpx's own line splitter (what ``aiter_lines``
uses, the floor relay's framing), in-process, best of 7, µs per event.

(b) Hostile upstream: a real sidecar against a loopback raw-socket server that sends a 1 GiB SSE line,
then a 1 GiB model list four times (each generated while sending). Figures from /proc/PID/status:
VmRSS before and after, VmHWM (the peak of the process's life); how many MiB the server got out
before the sidecar closed the connection; the longest stdout line.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
README = Path(__file__).resolve().parent / "README.md"
BEGIN, END = "<!-- bench:bounded:begin -->", "<!-- bench:bounded:end -->"
sys.path.insert(0, str(ROOT))

MiB = 1 << 20
GiB = 1 << 30


def framing(n: int = 20_000, reps: int = 7) -> dict[str, float]:
    from httpx._decoders import LineDecoder

    from sidecar.framing import MessageReader

    frames = [b"data: " + json.dumps({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
                                       "model": "gpt", "choices": [{"index": 0, "delta": {"content": f"w{i} "},
                                                                    "finish_reason": None}]}).encode() + b"\n\n"
              for i in range(n)]

    def ours() -> int:
        reader = MessageReader("sse", 8 * MiB, "bench")
        return sum(len(reader.feed(f)) for f in frames)

    def httpx_lines() -> int:
        lines = LineDecoder()
        return sum(1 for f in frames for line in lines.decode(f.decode()) if line.startswith("data:"))

    best: dict[str, float] = {}
    for _ in range(reps):
        for name, fn in (("sidecar MessageReader (bytes, bounded)", ours),
                         ("httpx LineDecoder (lines only)", httpx_lines)):
            t = time.perf_counter()
            assert fn() == n
            best[name] = min(best.get(name, 1e9), (time.perf_counter() - t) / n * 1e6)
    return best


class _Server:
    """Answers POST with an endless SSE line, GET /v1/models with an endless JSON body, both 1 GiB."""

    def __init__(self) -> None:
        self.sent: list[int] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        block = b"a" * MiB
        with conn:
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += conn.recv(65536)
            models = buf.startswith(b"GET")
            if models:
                start = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n" \
                        b'{"data":[{"id":"'
            else:
                start = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n" \
                        b'data: {"choices":[{"index":0,"delta":{"content":"'
            sent = 0
            try:
                conn.sendall(start)
                while sent < GiB:
                    conn.sendall(block)
                    sent += len(block)
            except OSError:
                pass
            self.sent.append(sent)


def hostile() -> list[tuple[str, str]]:
    server = _Server()
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as data:
        env = {"LLM_SIDECAR_DATA_DIR": data, "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
               "NO_PROXY": "127.0.0.1", "PATH": "/usr/bin:/bin"}
        proc = subprocess.Popen([sys.executable, "-m", "sidecar"], cwd=ROOT, env=env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert proc.stdin is not None and proc.stdout is not None
        longest = 0

        def call(method: str, params: dict[str, Any], until: str | None = None) -> dict[str, Any]:
            nonlocal longest
            proc.stdin.write(json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
                             + b"\n")
            proc.stdin.flush()
            while True:
                line = proc.stdout.readline()
                longest = max(longest, len(line))
                msg = json.loads(line)
                if until is None and msg.get("id") == 1:
                    return msg
                if until is not None and msg.get("method") == until and msg["params"]["type"] in ("done", "error"):
                    return msg["params"]

        def mem(field: str) -> float:
            text = Path(f"/proc/{proc.pid}/status").read_text()
            m = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
            assert m
            return int(m.group(1)) / 1024

        call("llm_register_custom_provider", {"id": "h", "name": "h", "protocol": "openai", "requires_api_key": False,
                                              "base_url": f"http://127.0.0.1:{server.port}/v1"})
        call("llm_stream_text", {"model": "mock:echo", "messages": [{"role": "user", "content": "hi"}],
                                 "stream_id": "warm"}, until="llm-stream-warm")
        rows.append(("VmRSS at start (one mock stream done)", f"{mem('VmRSS'):.1f} MiB"))
        t = time.perf_counter()
        err = call("llm_stream_text", {"model": "h:x", "messages": [{"role": "user", "content": "hi"}],
                                       "stream_id": "big"}, until="llm-stream-big")
        took = (time.perf_counter() - t) * 1000
        time.sleep(0.2)
        rows.append(("1 GiB SSE line: error", f"`{err['error']['code']}` after {took:.0f} ms"))
        rows.append(("1 GiB SSE line: sent by the server before the sidecar closed",
                     f"{server.sent[-1] / MiB:.0f} MiB"))
        rows.append(("1 GiB SSE line: VmRSS after / VmHWM", f"{mem('VmRSS'):.1f} / {mem('VmHWM'):.1f} MiB"))
        for i in range(4):
            t = time.perf_counter()
            res = call("test_provider_connection", {"provider": "h"})["result"]
            took = (time.perf_counter() - t) * 1000
            time.sleep(0.2)
            rows.append((f"1 GiB model list, round {i + 1}: ok / error / sent / VmRSS after",
                         f"{res['ok']} / `{res['error']['code']}` after {took:.0f} ms / {server.sent[-1] / MiB:.0f} MiB"
                         f" / {mem('VmRSS'):.1f} MiB"))
        rows.append(("VmHWM at the end (the peak of the whole run)", f"{mem('VmHWM'):.1f} MiB"))
        rows.append(("longest stdout line", f"{longest} bytes"))
        proc.kill()
        proc.wait()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="put the figures into bench/README.md")
    args = ap.parse_args()
    cost = framing()
    rows = hostile()
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    out = [f"Run {when}: `bench/bounded.py`; Python {platform.python_version()}, {platform.machine()}.", "",
           "| framing of 20,000 one-event chunks (best of 7) | µs per event |", "|---|---:|"]
    out += [f"| {k} | {v:.2f} |" for k, v in cost.items()]
    out += ["", "| hostile upstream (default limits: 8 MiB event, 32 MiB body) | figure |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in rows]
    text = "\n".join(out)
    print(text)
    if args.write:
        readme = README.read_text()
        block = f"{BEGIN}\n{text}\n{END}"
        if BEGIN in readme:
            readme = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, readme, flags=re.S)
        else:
            readme += "\n## Bounded reading\n\n`python bench/bounded.py --write`: the bounded SSE framing's cost " \
                      "beside httpx's line splitter, and a hostile upstream's cost in memory (see the script's " \
                      f"docstring).\n\n{block}\n"
        README.write_text(readme)


if __name__ == "__main__":
    main()
