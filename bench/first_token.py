"""Where the sidecar's first-token time goes: its request/response path beside floors, in one run.

    .venv/bin/python bench/first_token.py            # 200 rounds, about a minute
    .venv/bin/python bench/first_token.py --write    # also write the section in bench/README.md

Every subject is a child process over real pipes, timed from writing one request line to reading
(and decoding) the line that matters, interleaved round by round in alternating order:

- *echo floor*: a bare Python process that answers each stdin line with a fixed JSON-RPC result
  (``readline`` + one ``os.write``): the cost of the pipes and two processes taking turns;
- *asyncio floor*: the same answer from a stdin reader thread handing each line to an asyncio loop
  (``call_soon_threadsafe``) that writes it back: the least any event-loop server over pipes pays;
- *sidecar ``get_active_provider``*: request to response, the RPC path alone (and ``sidecar_info``,
  which also asks the keychain backend in a worker thread);
- *sidecar ``mock:echo``*: ``llm_stream_text`` to the first ``text_delta`` (no network);
- *sidecar, loopback upstream*: ``llm_stream_text`` to the first ``text_delta`` of a 5-chunk
  openai stream from bench/protocol_upstream.py, and *direct httpx*: an ``httpx.Client`` in this
  process to the first content ``data:`` line of the same stream (report.py's first-token pair),
  and the same with an ``httpx.AsyncClient`` on an asyncio loop in this process.

With ``--baseline DIR`` (a checkout of another commit) a second sidecar runs that code and takes its
turns too, and a relay comparison follows (one long stream, 100 concurrent streams; wall and CPU).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent

sys.path.insert(0, str(BENCH))
from readme import write_section  # noqa: E402
from report import Upstream, direct_ttft, p90, sidecar_ttft, start_sidecar  # noqa: E402
from run import Child, child_env, machine, use_project_venv  # noqa: E402

ECHO_FLOOR = r"""
import os, sys
out = sys.stdout.buffer
out.write(b'{"jsonrpc":"2.0","method":"sidecar-ready","params":{}}\n'); out.flush()
for line in sys.stdin.buffer:
    i = line.index(b'"id":') + 5
    rid = line[i:line.index(b",", i)]
    os.write(1, b'{"jsonrpc":"2.0","result":{"ok":true},"id":' + rid + b'}\n')
"""

ASYNCIO_FLOOR = r"""
import asyncio, os, sys, threading
async def main():
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()
    def read():
        for line in sys.stdin.buffer:
            loop.call_soon_threadsafe(queue.put_nowait, line)
        loop.call_soon_threadsafe(queue.put_nowait, None)
    threading.Thread(target=read, daemon=True).start()
    os.write(1, b'{"jsonrpc":"2.0","method":"sidecar-ready","params":{}}\n')
    while (line := await queue.get()) is not None:
        i = line.index(b'"id":') + 5
        rid = line[i:line.index(b",", i)]
        os.write(1, b'{"jsonrpc":"2.0","result":{"ok":true},"id":' + rid + b'}\n')
asyncio.run(main())
"""


def rpc_roundtrip(child: Child, method: str) -> float:
    """Seconds from writing a request to decoding its response."""
    rid = next(child._ids)
    request = child._encode({"jsonrpc": "2.0", "id": rid, "method": method}) + b"\n"
    started = time.perf_counter()
    os.write(child.stdin, request)
    for msg in child.messages:
        if msg.get("id") == rid and "method" not in msg:
            elapsed = time.perf_counter() - started
            if "result" not in msg:
                raise RuntimeError(f"{child.name}: {method} failed: {msg}")
            return elapsed
    raise RuntimeError("unreachable")


async def direct_async_ttft(client: Any, url: str, chunks: int) -> float:
    """report.py's ``direct_ttft`` with an ``httpx.AsyncClient`` on asyncio, as the sidecar makes the call."""
    first = None
    started = time.perf_counter()
    async with client.stream("POST", url, json={"model": f"n-{chunks}", "stream": True,
                                                "messages": [{"role": "user", "content": "go"}]}) as response:
        async for line in response.aiter_lines():
            if first is None and line.startswith("data: ") and '"content"' in line:
                first = time.perf_counter() - started
    if first is None:
        raise RuntimeError("direct async: no content chunk")
    return first


LABELS = {
    "echo": "echo floor: bare Python, `readline` + `os.write`",
    "asyncio": "asyncio floor: reader thread → `call_soon_threadsafe` → loop → `os.write`",
    "active": "sidecar: `get_active_provider` (answered from memory), request to response",
    "info": "sidecar: `sidecar_info` (asks the keychain backend in a worker thread), request to response",
    "mock": "sidecar: `mock:echo`, `llm_stream_text` to first `text_delta`",
    "direct": "direct `httpx.Client.stream` to the loopback upstream, first content `data:` line",
    "direct-async": "direct `httpx.AsyncClient.stream` on asyncio, same request, same line",
    "upstream": "sidecar: loopback openai upstream, `llm_stream_text` to first `text_delta`",
    "active-base": "baseline sidecar: `get_active_provider`",
    "info-base": "baseline sidecar: `sidecar_info`",
    "mock-base": "baseline sidecar: `mock:echo` to first `text_delta`",
    "upstream-base": "baseline sidecar: loopback openai upstream to first `text_delta`",
}


def start_baseline(upstream: Upstream, workdir: Path, source: Path) -> Child:
    """A sidecar running the code of another checkout (``--baseline``), with the same providers."""
    code = f"import sys; sys.path.insert(0, {str(source)!r}); from sidecar.cli import main; raise SystemExit(main())"
    data_dir = Path(tempfile.mkdtemp(prefix="data-baseline-", dir=workdir))
    child = Child("baseline", [sys.executable, "-c", code], child_env(data_dir), workdir)
    child.call("llm_register_custom_provider", {"id": "b-openai", "name": "Bench openai", "protocol": "openai",
                                                "base_url": upstream.root + "/v1", "requires_api_key": False})
    return child


def run(rounds: int, baseline: Path | None) -> dict[str, list[float]]:
    import httpx

    upstream = Upstream()
    with tempfile.TemporaryDirectory(prefix="llm-sidecar-ttft-") as tmp:
        workdir = Path(tmp)
        env = child_env(workdir)
        echo = Child("echo", [sys.executable, "-c", ECHO_FLOOR], env, workdir)
        loop = Child("asyncio", [sys.executable, "-c", ASYNCIO_FLOOR], env, workdir)
        sidecar = start_sidecar(upstream, workdir, "ttft")
        base = start_baseline(upstream, workdir, baseline) if baseline else None
        client = httpx.Client(timeout=30.0)
        aloop = asyncio.new_event_loop()
        aclient = httpx.AsyncClient(timeout=30.0)
        url = upstream.root + "/v1/chat/completions"
        subjects: dict[str, Callable[[], float]] = {
            "echo": lambda: rpc_roundtrip(echo, "sidecar_info"),
            "asyncio": lambda: rpc_roundtrip(loop, "sidecar_info"),
            "active": lambda: rpc_roundtrip(sidecar, "get_active_provider"),
            "info": lambda: rpc_roundtrip(sidecar, "sidecar_info"),
            "mock": lambda: sidecar_ttft(sidecar, "mock:echo", 0),
            "direct": lambda: direct_ttft(client, url, 5),
            "direct-async": lambda: aloop.run_until_complete(direct_async_ttft(aclient, url, 5)),
            "upstream": lambda: sidecar_ttft(sidecar, "b-openai:n-5", 5),
        }
        if base is not None:
            subjects["active-base"] = lambda: rpc_roundtrip(base, "get_active_provider")
            subjects["info-base"] = lambda: rpc_roundtrip(base, "sidecar_info")
            subjects["mock-base"] = lambda: sidecar_ttft(base, "mock:echo", 0)
            subjects["upstream-base"] = lambda: sidecar_ttft(base, "b-openai:n-5", 5)
        try:
            for _ in range(10):  # warm-up: imports, pooled connections, caches
                for fn in subjects.values():
                    fn()
            out: dict[str, list[float]] = {key: [] for key in subjects}
            order = list(subjects)
            for rnd in range(rounds):
                for key in order if rnd % 2 == 0 else reversed(order):
                    out[key].append(subjects[key]() * 1000)
        finally:
            client.close()
            aloop.run_until_complete(aclient.aclose())
            aloop.close()
            for child in (echo, loop, sidecar, base):
                if child is not None:
                    child.close()
            upstream.close()
    return out


def relay_check(rounds: int, baseline: Path) -> dict[str, list[float]]:
    """The writer still batches under load: relay cost per chunk, this sidecar and the baseline taking
    turns, on one 5,000-chunk stream and on 100 concurrent 300-chunk streams; wall and the sidecar's CPU."""
    from report import concurrent_streams
    from run import cpu_seconds

    upstream = Upstream()
    out: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="llm-sidecar-relay-") as tmp:
        workdir = Path(tmp)
        children = {"new": start_sidecar(upstream, workdir, "relay"),
                    "base": start_baseline(upstream, workdir, baseline)}
        try:
            for child in children.values():
                child.stream("b-openai:n-200", 200)
            for rnd in range(rounds):
                for name in ("new", "base") if rnd % 2 == 0 else ("base", "new"):
                    child = children[name]
                    wall, cpu = child.stream("b-openai:n-5000", 5000)
                    out.setdefault(f"{name} single wall", []).append(wall / 5000 * 1e6)
                    out.setdefault(f"{name} single cpu", []).append((cpu or 0.0) / 5000 * 1e6)
                    before = cpu_seconds(child.proc.pid) or 0.0
                    chunks, seconds = concurrent_streams(child, "b-openai:n-300", 100, 300)
                    used = (cpu_seconds(child.proc.pid) or 0.0) - before
                    out.setdefault(f"{name} concurrent wall", []).append(seconds / chunks * 1e6)
                    out.setdefault(f"{name} concurrent cpu", []).append(used / chunks * 1e6)
        finally:
            for child in children.values():
                child.close()
            upstream.close()
    return out


def relay_report(figures: dict[str, list[float]]) -> str:
    med = {k: statistics.median(v) for k, v in figures.items()}
    rounds = len(figures["new single wall"])
    rows = [
        "",
        f"Relay, this sidecar and the baseline taking turns ({rounds} rounds; µs per chunk, medians; CPU is the "
        "sidecar process's own):",
        "",
        "| relay | wall, this | wall, baseline | CPU, this | CPU, baseline |",
        "|---|---:|---:|---:|---:|",
    ]
    for kind, what in (("single", "one 5,000-chunk stream"), ("concurrent", "100 concurrent 300-chunk streams")):
        rows.append(f"| {what} | {med[f'new {kind} wall']:.1f} | {med[f'base {kind} wall']:.1f} "
                    f"| {med[f'new {kind} cpu']:.1f} | {med[f'base {kind} cpu']:.1f} |")
    return "\n".join(rows)


def report(figures: dict[str, list[float]], rounds: int, seconds: float, load: tuple[float, float],
           baseline: Path | None = None) -> str:
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    med = {k: statistics.median(v) for k, v in figures.items()}
    out = [
        f"Run {when}: `bench/first_token.py{' --baseline DIR' if baseline else ''}`, {rounds} rounds, "
        f"{seconds:.0f} s in all; 1-minute load average {load[0]:.2f} before, {load[1]:.2f} after. "
        f"Machine: {machine()}.",
        "",
        "| subject | median ms | p90 ms |",
        "|---|---:|---:|",
    ]
    for key, values in figures.items():
        out.append(f"| {LABELS[key]} | {med[key]:.3f} | {p90(values):.3f} |")
    diffs = [a - b for a, b in zip(figures["upstream"], figures["direct"], strict=True)]
    out += [
        "",
        f"Sidecar overhead on the first token over the direct call: **{med['upstream'] - med['direct']:+.2f} ms** "
        f"(difference of the medians; median of the per-round differences {statistics.median(diffs):+.2f} ms). "
        f"The RPC path alone (`get_active_provider`) is {med['active'] - med['asyncio']:+.2f} ms over the asyncio "
        f"floor and {med['active'] - med['echo']:+.2f} ms over the echo floor. The same request through "
        f"`httpx.AsyncClient` takes {med['direct-async'] - med['direct']:+.2f} ms more than through `httpx.Client`.",
    ]
    if "upstream-base" in figures:
        out[-1] += (f" Baseline sidecar: {med['upstream-base'] - med['direct']:+.2f} ms on the first token, "
                    f"{med['active-base'] - med['asyncio']:+.2f} ms on `get_active_provider` over the asyncio floor.")
    return "\n".join(out)


def write_readme(section: str) -> None:
    write_section("first-token", section)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=200, help="timed requests of each subject (default 200)")
    ap.add_argument("--write", action="store_true", help="write the figures into bench/README.md")
    ap.add_argument("--baseline", type=Path, help="also time a sidecar run from this checkout (e.g. one made with "
                    "`git worktree add` or `git archive` of an older commit), interleaved with the others")
    ap.add_argument("--relay-rounds", type=int, default=6, help="with --baseline: relay rounds comparing the "
                    "two (default 6; 0 skips them)")
    args = ap.parse_args()
    use_project_venv()
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    figures = run(args.rounds, args.baseline)
    relay = relay_check(args.relay_rounds, args.baseline) if args.baseline and args.relay_rounds else None
    section = report(figures, args.rounds, time.perf_counter() - started, (load_before, os.getloadavg()[0]),
                     args.baseline)
    if relay:
        section += "\n" + relay_report(relay)
    print(section)
    if args.write:
        write_readme(section)


if __name__ == "__main__":
    main()
