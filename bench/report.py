"""The benchmark report: relay cost per chunk for every protocol beside a floor and client SDKs,
time-to-first-token overhead, 100 concurrent streams, and idle memory, measured in one run.

    .venv/bin/python bench/report.py            # full run, under 4 minutes
    .venv/bin/python bench/report.py --quick    # under a minute
    .venv/bin/python bench/report.py --write    # also write the section in bench/README.md and the plot

(1) Relay: bench/protocol_upstream.py (its own process) streams N text chunks in each protocol's wire
format; one sidecar has a custom provider per protocol. Beside it, on the openai stream: the floor
(bench/floor_relay.py), the official ``openai`` SDK (bench/sdk_relay.py) and LiteLLM, when a separate
venv holding it is found (``--litellm-python``, default /tmp/litellm-venv/bin/python). Every relay
speaks the same NDJSON and every line is decoded by the benchmark (run.py's ``Child.stream``); the
subjects take turns in alternating order.
(2) Time to first token: request to first ``text_delta`` through the sidecar, against request to the
first content ``data:`` line with a direct ``httpx.Client`` to the same upstream, interleaved.
(3) 100 concurrent streams through one fresh sidecar: chunks/s and the peak RSS (``VmHWM``).
(4) RSS of fresh relays once ready, and after a first request.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
README = BENCH / "README.md"
PLOT = BENCH / "cost_per_chunk.png"
HEADING = "## Report: protocols, SDKs, first token, concurrency, memory"
METHOD = """`.venv/bin/python bench/report.py [--quick] [--write]` (full run about 2 minutes, `--quick` about 35 s;
`--write` replaces the figures below and `bench/cost_per_chunk.png`; the plot needs the `bench` extra,
`pip install -e '.[bench]'`, else a bare bar PNG is written). In one run:
(1) relay cost per chunk for each protocol through one sidecar (a custom provider per protocol) against
`bench/protocol_upstream.py`, which serves each protocol's streaming format by path, beside the floor
(`bench/floor_relay.py`), the official `openai` SDK and LiteLLM (`bench/sdk_relay.py`, same NDJSON out),
all on the same upstream, interleaved; LiteLLM runs from a separate venv (`--litellm-python`, default
`/tmp/litellm-venv/bin/python`, made with `python -m venv /tmp/litellm-venv && /tmp/litellm-venv/bin/pip
install litellm msgspec`; it is not a project dependency) and gets shorter streams, as it takes milliseconds
per chunk; (2) time to first token through the sidecar against a direct `httpx.Client` call to the same
upstream; (3) 100 streams written at once to one fresh sidecar; (4) the RSS of fresh relays once ready and
after a first request. The upstream's chunk texts vary (LiteLLM aborts a stream repeating one chunk)."""
PROTOCOLS = ("openai", "anthropic", "gemini", "ollama", "cohere")
BASE_PATH = {"openai": "/v1", "gemini": "/v1beta"}
CONCURRENT = 100

sys.path.insert(0, str(BENCH))
from readme import write_section  # noqa: E402
from run import Child, child_env, machine, use_project_venv  # noqa: E402


def status_kib(pid: int, key: str) -> int | None:
    """A ``/proc/PID/status`` figure in KiB (``VmRSS``, ``VmHWM``); None where /proc is missing."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def mib(kib: int | None) -> str:
    return "n/a" if kib is None else f"{kib / 1024:.1f}"


class Upstream:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, str(BENCH / "protocol_upstream.py")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, cwd=ROOT)
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        self.root = f"http://127.0.0.1:{self.port}"

    def drain(self, chunks: int) -> tuple[float, None]:
        """Seconds to read one whole openai reply over a raw socket, parsing nothing."""
        from protocol_upstream import body_pieces, head

        expected = len(head("openai")) + sum(len(p) for p in body_pieces("openai", chunks))
        body = b'{"model":"n-%d"}' % chunks
        started = time.perf_counter()
        with socket.create_connection(("127.0.0.1", self.port)) as sock:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n"
                         b"content-length: %d\r\n\r\n%s" % (len(body), body))
            got = 0
            while got < expected:
                data = sock.recv(1 << 16)
                if not data:
                    break
                got += len(data)
        if got != expected:
            raise RuntimeError(f"upstream sent {got} bytes, {expected} expected")
        return time.perf_counter() - started, None

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def start_sidecar(upstream: Upstream, workdir: Path, tag: str) -> Child:
    data_dir = Path(tempfile.mkdtemp(prefix=f"data-{tag}-", dir=workdir))
    sidecar = Child(f"sidecar-{tag}", [sys.executable, "-m", "sidecar"], child_env(data_dir), workdir)
    for proto in PROTOCOLS:
        sidecar.call("llm_register_custom_provider", {
            "id": f"b-{proto}", "name": f"Bench {proto}", "protocol": proto,
            "base_url": upstream.root + BASE_PATH.get(proto, ""), "requires_api_key": False})
    return sidecar


def start_other(name: str, upstream: Upstream, workdir: Path, litellm_python: Path | None) -> Child:
    data_dir = Path(tempfile.mkdtemp(prefix=f"data-{name}-", dir=workdir))
    env = child_env(data_dir)
    base = upstream.root + "/v1"
    if name == "floor":
        argv = [sys.executable, str(BENCH / "floor_relay.py"), base]
    elif name == "openai-sdk":
        argv = [sys.executable, str(BENCH / "sdk_relay.py"), "openai", base]
    else:
        assert litellm_python is not None
        env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # no fetch of the cost map at import
        env["LITELLM_TELEMETRY"] = "False"
        argv = [str(litellm_python), str(BENCH / "sdk_relay.py"), "litellm", base]
    return Child(name, argv, env, workdir)


# --- (1) relay cost per chunk ------------------------------------------------------------------------------


@dataclass
class Relay:
    wall: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)
    chunks: dict[str, int] = field(default_factory=dict)


def bench_relay(upstream: Upstream, chunks: int, litellm_chunks: int, reps: int, workdir: Path,
                litellm_python: Path | None, notes: list[str]) -> Relay:
    sidecar = start_sidecar(upstream, workdir, "relay")
    children = [sidecar]
    others: dict[str, Child] = {}
    try:
        for name in ("floor", "openai-sdk", "litellm"):
            if name == "litellm" and litellm_python is None:
                continue
            try:
                others[name] = start_other(name, upstream, workdir, litellm_python)
                children.append(others[name])
            except RuntimeError as exc:
                notes.append(f"{name} did not start: {str(exc).splitlines()[0]}")
        # (relay, model, chunks): LiteLLM takes milliseconds per chunk, so it gets shorter streams
        subjects: dict[str, tuple[Child | None, str, int]] = {"upstream": (None, "", chunks)}
        for proto in PROTOCOLS:
            subjects[f"sidecar {proto}"] = (sidecar, f"b-{proto}:n-{chunks}", chunks)
        for name, child in others.items():
            n = min(chunks, litellm_chunks) if name == "litellm" else chunks
            subjects[name] = (child, f"bench:n-{n}", n)
        figures = Relay()
        for key, (child, model, n) in list(subjects.items()):  # warm-up: imports, pooled clients, caches
            if child is None:
                continue
            try:
                child.stream(model.replace(f"n-{n}", "n-200"), 200)
            except (RuntimeError, EOFError) as exc:
                print(f"{key} failed its warm-up stream: {exc}\n{child.stderr()}", file=sys.stderr)
                notes.append(f"{key} failed its warm-up stream: {str(exc).splitlines()[0][:200]}")
                del subjects[key]
        figures.chunks = {key: n for key, (_, _, n) in subjects.items()}
        order = list(subjects)
        for rnd in range(reps):
            for key in order if rnd % 2 == 0 else reversed(order):
                child, model, n = subjects[key]
                wall, cpu = upstream.drain(n) if child is None else child.stream(model, n)
                figures.wall.setdefault(key, []).append(wall / n * 1e6)
                if cpu is not None:
                    figures.cpu.setdefault(key, []).append(cpu / n * 1e6)
            print(f"  relay round {rnd + 1}/{reps} done", file=sys.stderr, flush=True)
        return figures
    finally:
        for child in children:
            child.close()


# --- (2) time to first token ----------------------------------------------------------------------------------


def sidecar_ttft(sidecar: Child, model: str, chunks: int) -> float:
    """Seconds from writing ``llm_stream_text`` to reading the first ``text_delta``; the stream is read to its end."""
    rid = next(sidecar._ids)
    sid = f"t{rid}"
    method = f"llm-stream-{sid}"
    request = sidecar._encode({"jsonrpc": "2.0", "id": rid, "method": "llm_stream_text", "params": {
        "model": model, "stream_id": sid, "messages": [{"role": "user", "content": "go"}]}}) + b"\n"
    first = None
    started = time.perf_counter()
    os.write(sidecar.stdin, request)
    for msg in sidecar.messages:
        if msg.get("method") == method:
            kind = msg["params"]["type"]
            if kind == "text_delta" and first is None:
                first = time.perf_counter() - started
            elif kind in ("done", "error"):
                if kind == "error" or first is None:
                    raise RuntimeError(f"sidecar: stream ended without text: {msg}")
                return first
    raise RuntimeError("unreachable")


def direct_ttft(client: Any, url: str, chunks: int) -> float:
    """Seconds from a direct httpx request to the first content ``data:`` line; the stream is read to its end."""
    first = None
    started = time.perf_counter()
    with client.stream("POST", url, json={"model": f"n-{chunks}", "stream": True,
                                          "messages": [{"role": "user", "content": "go"}]}) as response:
        for line in response.iter_lines():
            if first is None and line.startswith("data: ") and '"content"' in line:
                first = time.perf_counter() - started
    if first is None:
        raise RuntimeError("direct: no content chunk")
    return first


def bench_ttft(upstream: Upstream, reps: int, workdir: Path) -> dict[str, list[float]]:
    import httpx

    chunks = 5
    sidecar = start_sidecar(upstream, workdir, "ttft")
    out: dict[str, list[float]] = {"sidecar": [], "direct": []}
    try:
        with httpx.Client(timeout=30.0) as client:
            url = upstream.root + "/v1/chat/completions"
            model = f"b-openai:n-{chunks}"
            for _ in range(3):  # warm-up: the sidecar's httpx import and client, the connections
                sidecar_ttft(sidecar, model, chunks)
                direct_ttft(client, url, chunks)
            for rnd in range(reps):
                pair = [("sidecar", lambda: sidecar_ttft(sidecar, model, chunks)),
                        ("direct", lambda: direct_ttft(client, url, chunks))]
                for key, run in pair if rnd % 2 == 0 else reversed(pair):
                    out[key].append(run() * 1000)
    finally:
        sidecar.close()
    return out


# --- (3) concurrency and (4) memory --------------------------------------------------------------------------


@dataclass
class Memory:
    ready: dict[str, int | None] = field(default_factory=dict)
    after_first: dict[str, int | None] = field(default_factory=dict)
    concurrent_chunks: int = 0
    concurrent_seconds: float = 0.0
    concurrent_cpu: float | None = None
    rss_before: int | None = None
    peak: int | None = None
    rss_after: int | None = None
    peak_before: int | None = None


def concurrent_streams(sidecar: Child, model: str, streams: int, chunks: int) -> tuple[int, float]:
    """``streams`` ``llm_stream_text`` requests written at once; (text deltas, seconds to the last ``done``)."""
    ids = []
    requests = b""
    for _ in range(streams):
        rid = next(sidecar._ids)
        ids.append(rid)
        requests += sidecar._encode({"jsonrpc": "2.0", "id": rid, "method": "llm_stream_text", "params": {
            "model": model, "stream_id": f"c{rid}", "messages": [{"role": "user", "content": "go"}]}}) + b"\n"
    methods = {f"llm-stream-c{rid}" for rid in ids}
    deltas = done = 0
    started = time.perf_counter()
    os.write(sidecar.stdin, requests)
    for msg in sidecar.messages:
        method = msg.get("method")
        if method in methods:
            kind = msg["params"]["type"]
            if kind == "text_delta":
                deltas += 1
            elif kind == "done":
                done += 1
                if done == streams:
                    break
            elif kind == "error":
                raise RuntimeError(f"sidecar: a concurrent stream failed: {msg}\n{sidecar.stderr()}")
        elif msg.get("id") in ids and "error" in msg:
            raise RuntimeError(f"sidecar: llm_stream_text failed: {msg}")
    elapsed = time.perf_counter() - started
    if deltas != streams * chunks:
        raise RuntimeError(f"sidecar: {deltas} text deltas for {streams} x {chunks} chunks")
    return deltas, elapsed


def bench_memory(upstream: Upstream, chunks: int, workdir: Path, litellm_python: Path | None,
                 notes: list[str]) -> Memory:
    from run import cpu_seconds

    mem = Memory()
    names = ["sidecar", "floor", "openai-sdk"] + (["litellm"] if litellm_python else [])
    for name in names:
        try:
            child = (start_sidecar(upstream, workdir, "memory") if name == "sidecar"
                     else start_other(name, upstream, workdir, litellm_python))
        except RuntimeError:
            continue  # already noted by the relay part
        try:
            time.sleep(0.3)
            mem.ready[name] = status_kib(child.proc.pid, "VmRSS")
            child.stream("b-openai:n-10" if name == "sidecar" else "bench:n-10", 10)
            time.sleep(0.3)
            mem.after_first[name] = status_kib(child.proc.pid, "VmRSS")
            if name == "sidecar":
                pid = child.proc.pid
                mem.rss_before = status_kib(pid, "VmRSS")
                mem.peak_before = status_kib(pid, "VmHWM")
                cpu = cpu_seconds(pid)
                mem.concurrent_chunks, mem.concurrent_seconds = concurrent_streams(
                    child, f"b-openai:n-{chunks}", CONCURRENT, chunks)
                cpu_after = cpu_seconds(pid)
                mem.concurrent_cpu = cpu_after - cpu if cpu is not None and cpu_after is not None else None
                mem.peak = status_kib(pid, "VmHWM")
                time.sleep(0.5)
                mem.rss_after = status_kib(pid, "VmRSS")
        except RuntimeError as exc:
            notes.append(f"memory/concurrency with {name} failed: {str(exc).splitlines()[0][:200]}")
        finally:
            child.close()
    return mem


# --- report --------------------------------------------------------------------------------------------------


LABELS = {
    "upstream": "upstream alone: raw socket read of the openai stream, nothing parsed",
    "floor": "floor: httpx `aiter_lines` + msgspec + `os.write` (openai)",
    "openai-sdk": "`openai` SDK: `chat.completions.create(stream=True)` (openai)",
    "litellm": "LiteLLM: `completion(stream=True)` (openai)",
}


def label(key: str) -> str:
    if key.startswith("sidecar "):
        return f"sidecar, {key.split(' ', 1)[1]} protocol: `llm_stream_text` to `done`"
    return LABELS[key]


def versions() -> str:
    from importlib.metadata import version

    return f"openai {version('openai')}, matplotlib {_mpl_version()}"


def _mpl_version() -> str:
    try:
        from importlib.metadata import version

        return version("matplotlib")
    except Exception:
        return "not installed (pure-Python PNG)"


def litellm_version(python: Path | None) -> str | None:
    if python is None:
        return None
    out = subprocess.run([str(python), "-c", "from importlib.metadata import version; print(version('litellm'))"],
                         capture_output=True, text=True)
    return out.stdout.strip() or None


def report(args: argparse.Namespace, relay: Relay, ttft: dict[str, list[float]] | None, mem: Memory | None,
           seconds: float, load: tuple[float, float], notes: list[str], litellm: str | None) -> str:
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        f"Run {when}: `bench/report.py{' --quick' if args.quick else ''}`, {seconds:.0f} s in all; "
        f"1-minute load average {load[0]:.2f} before, {load[1]:.2f} after.",
        "",
        f"Machine: {machine()}; {versions()}" + (f", litellm {litellm}" if litellm else "") + ".",
        "",
    ]
    wmed = {k: statistics.median(v) for k, v in relay.wall.items()}
    cmed = {k: statistics.median(v) for k, v in relay.cpu.items() if v}
    floor = wmed.get("floor")
    reps = len(relay.wall.get("floor", relay.wall.get("upstream", [])))
    out += [
        f"**Relay cost per chunk** ({args.chunks:,} content chunks per stream in each protocol's wire format, "
        f"each SSE event / NDJSON line its own HTTP chunk and `send`; {reps} streams of each subject, interleaved "
        "in alternating order; µs per chunk; CPU is the relay process's own, all threads; plot: "
        f"[`{PLOT.name}`]({PLOT.name}))",
        "",
        "| subject | wall median | wall min | wall max | CPU median | wall / floor |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key in relay.wall:
        c = f"{cmed[key]:.1f}" if key in cmed else "n/a"
        shorter = f" ({relay.chunks[key]:,}-chunk streams)" if relay.chunks.get(key, args.chunks) != args.chunks else ""
        ratio = f"{wmed[key] / floor:.2f}x" if floor else "n/a"
        w = relay.wall[key]
        out.append(f"| {label(key)}{shorter} | {wmed[key]:.1f} | {min(w):.1f} | {max(w):.1f} | {c} | {ratio} |")
    paired = []
    if floor and "sidecar openai" in relay.wall:
        for other in ("openai-sdk", "litellm"):
            if other in relay.wall:
                ratios = [s / o for s, o in zip(relay.wall["sidecar openai"], relay.wall[other], strict=True)]
                paired.append(f"sidecar (openai) / {other}: {statistics.median(ratios):.2f}x")
        ratios = [s / f for s, f in zip(relay.wall["sidecar openai"], relay.wall["floor"], strict=True)]
        paired.insert(0, f"sidecar (openai) / floor: {statistics.median(ratios):.2f}x")
    if paired:
        out += ["", "Median of the per-round ratios: " + "; ".join(paired) + "."]
    if not litellm:
        out += ["", "LiteLLM: not measured (" + (args.litellm_note or "no venv with it") + ")."]

    if ttft:
        s, d = statistics.median(ttft["sidecar"]), statistics.median(ttft["direct"])
        diffs = [a - b for a, b in zip(ttft["sidecar"], ttft["direct"], strict=True)]
        out += [
            "",
            f"**Time to first token** ({len(ttft['sidecar'])} requests of each, interleaved, after warm-up; a 5-chunk "
            "openai stream; ms from the request to the first text)",
            "",
            "| subject | median | p90 |",
            "|---|---:|---:|",
            f"| direct `httpx.Client.stream` to the upstream, first content `data:` line | {d:.2f} "
            f"| {p90(ttft['direct']):.2f} |",
            f"| sidecar, `llm_stream_text` written to first `text_delta` read | {s:.2f} | {p90(ttft['sidecar']):.2f} |",
            "",
            f"Sidecar overhead on the first token: **{s - d:+.2f} ms** (difference of the medians; median of the "
            f"per-round differences {statistics.median(diffs):+.2f} ms).",
        ]

    if mem:
        out += [
            "",
            "**Memory** (fresh processes; RSS in MiB from `/proc/PID/status`, 0.3 s after the event)",
            "",
            "| relay | once ready | after a first 10-chunk stream |",
            "|---|---:|---:|",
        ]
        names = {"sidecar": "sidecar (`sidecar-ready`)", "floor": "floor relay", "openai-sdk": "`openai` SDK relay",
                 "litellm": "LiteLLM relay"}
        for key, value in mem.ready.items():
            out.append(f"| {names[key]} | {mib(value)} | {mib(mem.after_first.get(key))} |")
        if mem.concurrent_chunks:
            per = mem.concurrent_chunks // CONCURRENT
            rate = mem.concurrent_chunks / mem.concurrent_seconds
            single = 1e6 / wmed["sidecar openai"] if "sidecar openai" in wmed else None
            cpu = (f"; the sidecar's CPU {mem.concurrent_cpu / mem.concurrent_chunks * 1e6:.1f} µs per chunk"
                   if mem.concurrent_cpu else "")
            out += [
                "",
                f"**{CONCURRENT} concurrent streams** through that sidecar (openai protocol, {per:,} chunks each, "
                f"{mem.concurrent_chunks:,} in all, every request written at once): **{rate:,.0f} chunks/s** "
                f"({mem.concurrent_seconds:.2f} s to the last `done`{cpu})"
                + (f"; one stream at a time above: {single:,.0f} chunks/s" if single else "") + ". "
                f"Sidecar RSS {mib(mem.rss_before)} MiB before, **peak {mib(mem.peak)} MiB** (`VmHWM`; "
                f"{mib(mem.peak_before)} before the burst), {mib(mem.rss_after)} MiB 0.5 s after.",
            ]
    if notes:
        out += ["", "Notes: " + "; ".join(notes) + "."]
    return "\n".join(out)


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


# --- plot ---------------------------------------------------------------------------------------------------


def plot(relay: Relay, path: Path, title: str) -> None:
    keys = list(relay.wall)
    med = [statistics.median(relay.wall[k]) for k in keys]
    lo = [m - min(relay.wall[k]) for k, m in zip(keys, med, strict=True)]
    hi = [max(relay.wall[k]) - m for k, m in zip(keys, med, strict=True)]
    names = [k.replace("sidecar ", "sidecar\n") if k.startswith("sidecar") else k for k in keys]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        write_png_bars(path, med)
        return
    colors = ["#1f77b4" if k.startswith("sidecar") else "#7f7f7f" if k in ("upstream", "floor") else "#ff7f0e"
              for k in keys]
    fig, ax = plt.subplots(figsize=(9, 4.8), dpi=110)
    ax.barh(range(len(keys)), med, xerr=[lo, hi], color=colors, capsize=3)
    ax.set_yticks(range(len(keys)), [n.replace("\n", " ") for n in names])
    ax.invert_yaxis()
    ax.set_xscale("log")
    for i, (m, h) in enumerate(zip(med, hi, strict=True)):
        ax.text((m + h) * 1.08, i, f"{m:.1f}", va="center", ha="left", fontsize=8)
    ax.set_xlim(right=max(m + h for m, h in zip(med, hi, strict=True)) * 2.5)
    floor = statistics.median(relay.wall["floor"]) if "floor" in relay.wall else None
    if floor:
        ax.axvline(floor, color="#7f7f7f", linestyle="--", linewidth=0.8)
    ax.set_xlabel("µs per chunk, wall, log scale (median; whiskers: min-max; dashed: the floor)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_png_bars(path: Path, values: list[float]) -> None:
    """A bare bar chart (no text) as a grayscale PNG, for when matplotlib is missing."""
    import struct
    import zlib

    width, bar, gap = 600, 24, 8
    height = len(values) * (bar + gap) + gap
    top = max(values) or 1.0
    rows = []
    for y in range(height):
        i, off = divmod(y - gap, bar + gap)
        length = int(values[i] / top * (width - 20)) if 0 <= i < len(values) and off < bar and y >= gap else 0
        rows.append(b"\x00" + bytes([60] * length + [255] * (width - length)))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(b"".join(rows), 9)) + chunk(b"IEND", b""))
    path.write_bytes(png)


def write_readme(section: str) -> None:
    write_section("report", section, f"{HEADING}\n\n{METHOD}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 2)[2],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer and shorter streams (under a minute)")
    ap.add_argument("--write", action="store_true", help=f"write the section into bench/README.md and {PLOT.name}")
    ap.add_argument("--chunks", type=int, help="content chunks per relay stream (default 20000; quick 5000)")
    ap.add_argument("--reps", type=int, help="streams through each relay (default 5; quick 3)")
    ap.add_argument("--ttft", type=int, help="first-token requests of each (default 60; quick 20)")
    ap.add_argument("--concurrent-chunks", type=int, help="chunks per concurrent stream (default 1000; quick 300)")
    ap.add_argument("--litellm-chunks", type=int, help="chunks per LiteLLM stream (default 2000; quick 500)")
    ap.add_argument("--litellm-python", type=Path, default=Path("/tmp/litellm-venv/bin/python"),
                    help="python of a separate venv holding litellm (default /tmp/litellm-venv/bin/python)")
    args = ap.parse_args()
    use_project_venv()
    args.chunks = args.chunks or (5_000 if args.quick else 20_000)
    args.reps = args.reps or (3 if args.quick else 5)
    args.ttft = args.ttft or (20 if args.quick else 60)
    args.concurrent_chunks = args.concurrent_chunks or (300 if args.quick else 1_000)
    args.litellm_chunks = args.litellm_chunks or (500 if args.quick else 2_000)
    args.litellm_note = None
    litellm_python: Path | None = args.litellm_python
    litellm = litellm_version(litellm_python) if litellm_python and litellm_python.exists() else None
    if litellm is None:
        args.litellm_note = f"no `litellm` importable by {args.litellm_python}"
        litellm_python = None

    notes: list[str] = []
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    upstream = Upstream()
    try:
        with tempfile.TemporaryDirectory(prefix="llm-sidecar-report-") as tmp:
            workdir = Path(tmp)
            print(f"relay: {args.reps} rounds of {args.chunks:,} chunks ...", file=sys.stderr, flush=True)
            relay = bench_relay(upstream, args.chunks, args.litellm_chunks, args.reps, workdir, litellm_python, notes)
            print(f"first token: {args.ttft} requests of each ...", file=sys.stderr, flush=True)
            ttft = bench_ttft(upstream, args.ttft, workdir)
            print(f"memory and {CONCURRENT} concurrent streams ...", file=sys.stderr, flush=True)
            mem = bench_memory(upstream, args.concurrent_chunks, workdir, litellm_python, notes)
    finally:
        upstream.close()
    section = report(args, relay, ttft, mem, time.perf_counter() - started, (load_before, os.getloadavg()[0]),
                     notes, litellm)
    print(section)
    if args.write:
        title = (f"Relay cost per chunk, {args.chunks:,}-chunk streams, {args.reps} of each "
                 f"({platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs)")
        plot(relay, PLOT, title)
        write_readme(section)
        print(f"\nwritten to {README.relative_to(ROOT)} and {PLOT.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
