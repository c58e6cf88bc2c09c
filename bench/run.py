"""Benchmark of the sidecar: start-up time and per-chunk relay cost, each beside a floor.

    .venv/bin/python bench/run.py            # full run, about a minute and a half
    .venv/bin/python bench/run.py --quick    # short run, under 30 s
    .venv/bin/python bench/run.py --write    # also put the figures into bench/README.md
    .venv/bin/python bench/run.py --profile  # cProfile one stream through the sidecar and the floor

(a) Start-up: ``python -m sidecar`` spawned to its ``sidecar-ready`` line and to the answer of a
``list_providers`` request written right after the spawn, beside ``python -c pass`` and
``python -c "import jsonrpcserver"`` spawned to exit, interleaved in the same run.

(b) Relay: a loopback OpenAI-style upstream (bench/upstream.py, its own process) streams N chat
chunks as fast as the socket takes them; the wall time from writing ``llm_stream_text`` to
parsing the ``done`` event, with every NDJSON line decoded on the way, divided by N. The same
for the floor relay (bench/floor_relay.py) against the same upstream, interleaved.

This is a benchmark, not a test: it prints figures, and fails only when a relay misbehaves.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from readme import write_section

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENV = ROOT / ".venv"
README = BENCH / "README.md"

STARTUP_BAR = 1.5
RELAY_BAR, RELAY_GOAL = 2.0, 1.3

# Variables that would leak a real key or a real keychain into the run.
_SCRUB = ("OPENAI_API_KEY", "GROQ_API_KEY", "TOGETHER_API_KEY", "DEEPSEEK_API_KEY", "MISTRAL_API_KEY",
          "OPENROUTER_API_KEY", "XAI_API_KEY", "LLM_SIDECAR_DATA_DIR", "LLM_SIDECAR_KEYRING_SERVICE",
          "LLM_SIDECAR_LOG_LEVEL", "PYTHON_KEYRING_BACKEND")


def use_project_venv() -> None:
    """Re-run under the project's venv when started by another interpreter."""
    from importlib.util import find_spec

    missing = [name for name in ("httpx", "jsonrpcserver", "msgspec", "sidecar") if find_spec(name) is None]
    if not missing:
        return
    python = VENV / "bin" / "python"
    if python.exists() and Path(sys.prefix).resolve() != VENV.resolve():
        os.execv(str(python), [str(python), *sys.argv])
    raise SystemExit(f"bench/run.py needs {', '.join(missing)}: run it with the project's .venv/bin/python")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (all its threads) so far; None where /proc is missing."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def child_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.null.Keyring"
    env["LLM_SIDECAR_DATA_DIR"] = str(data_dir)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


# --- reading a child's NDJSON stdout -----------------------------------------------------------


class Lines:
    """A child's stdout as decoded messages: raw ``os.read``, split on newlines, msgspec per line."""

    def __init__(self, fd: int) -> None:
        import msgspec

        self.fd = fd
        self._decode = msgspec.json.Decoder().decode

    def __iter__(self) -> Iterator[Any]:
        decode, read, fd = self._decode, os.read, self.fd
        rest = b""
        while True:
            data = read(fd, 1 << 16)
            if not data:
                raise EOFError("the child closed its stdout")
            lines = (rest + data).split(b"\n") if rest else data.split(b"\n")
            rest = lines.pop()
            for line in lines:
                if line:
                    yield decode(line)


class Child:
    """A relay (the sidecar or the floor) over real pipes; stderr goes to a file shown on failure."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], workdir: Path) -> None:
        import msgspec

        self.name = name
        self._encode = msgspec.json.Encoder().encode
        self.errfile = (workdir / f"{name}.stderr").open("w+b")
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errfile,
                                     env=env, cwd=ROOT)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin = self.proc.stdin.fileno()
        self.messages = iter(Lines(self.proc.stdout.fileno()))
        self._ids = itertools.count(1)
        self._expect(lambda m: m.get("method") == "sidecar-ready")

    def _expect(self, pred: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        try:
            for msg in self.messages:
                if pred(msg):
                    return msg
        except EOFError:
            pass
        raise RuntimeError(f"{self.name} ended early; stderr:\n{self.stderr()}")

    def stderr(self) -> str:
        self.errfile.seek(0)
        return self.errfile.read().decode(errors="replace")[-3000:]

    def call(self, method: str, params: Any) -> Any:
        rid = next(self._ids)
        request = {"jsonrpc": "2.0", "id": rid, "method": method, "params": params}
        os.write(self.stdin, self._encode(request) + b"\n")
        reply = self._expect(lambda m: m.get("id") == rid and "method" not in m)
        if "result" not in reply:
            raise RuntimeError(f"{self.name}: {method} failed: {reply}")
        return reply["result"]

    def stream(self, model: str, chunks: int) -> tuple[float, float | None]:
        """One stream from request to ``done``, every line decoded and checked: wall and CPU seconds."""
        rid = next(self._ids)
        sid = f"b{rid}"
        method = f"llm-stream-{sid}"
        request = self._encode({"jsonrpc": "2.0", "id": rid, "method": "llm_stream_text", "params": {
            "model": model, "stream_id": sid, "messages": [{"role": "user", "content": "go"}]}}) + b"\n"
        deltas = seq = 0
        answered = False
        cpu = cpu_seconds(self.proc.pid)
        started = time.perf_counter()
        os.write(self.stdin, request)
        for msg in self.messages:
            if msg.get("method") == method:
                event = msg["params"]
                if event["seq"] != seq:
                    raise RuntimeError(f"{self.name}: seq {event['seq']} where {seq} was due")
                seq += 1
                kind = event["type"]
                if kind == "text_delta":
                    deltas += 1
                elif kind == "done":
                    elapsed = time.perf_counter() - started
                    break
                elif kind == "error":
                    raise RuntimeError(f"{self.name}: stream failed: {event}\n{self.stderr()}")
            elif msg.get("id") == rid:
                if "result" not in msg:
                    raise RuntimeError(f"{self.name}: llm_stream_text failed: {msg}")
                answered = True
        if not answered or deltas != chunks:
            raise RuntimeError(f"{self.name}: answered={answered}, {deltas} text deltas for {chunks} chunks")
        cpu_after = cpu_seconds(self.proc.pid)
        return elapsed, (cpu_after - cpu if cpu is not None and cpu_after is not None else None)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.errfile.close()


# --- (a) start-up --------------------------------------------------------------------------------


def spawn_to_exit(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=env, cwd=ROOT)
    _, err = proc.communicate()
    elapsed = time.perf_counter() - started
    if proc.returncode:
        raise RuntimeError(f"{argv} failed: {err.decode(errors='replace')}")
    return elapsed * 1000


def sidecar_startup(env: dict[str, str]) -> tuple[float, float]:
    """ms from spawn to ``sidecar-ready``, and to the ``list_providers`` answer (asked before ready)."""
    import msgspec

    request = msgspec.json.encode({"jsonrpc": "2.0", "id": 1, "method": "list_providers"}) + b"\n"
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "sidecar"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd=ROOT)
    assert proc.stdin is not None and proc.stdout is not None
    os.write(proc.stdin.fileno(), request)
    ready = listed = None
    try:
        for msg in Lines(proc.stdout.fileno()):
            if msg.get("method") == "sidecar-ready":
                ready = time.perf_counter() - started
            elif msg.get("id") == 1:
                if not isinstance(msg.get("result"), list):
                    raise RuntimeError(f"list_providers failed: {msg}")
                listed = time.perf_counter() - started
            if ready is not None and listed is not None:
                break
    except EOFError:
        err = proc.stderr.read().decode(errors="replace")  # type: ignore[union-attr]
        raise RuntimeError(f"the sidecar ended early: {err}") from None
    finally:
        try:
            proc.communicate(timeout=10)  # closes stdin: end of requests, the sidecar exits
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
    assert ready is not None and listed is not None
    return ready * 1000, listed * 1000


STARTUP_SUBJECTS = (
    ("pass", "`python -c pass`, spawn to exit"),
    ("import", '`python -c "import jsonrpcserver"`, spawn to exit'),
    ("ready", "`python -m sidecar`, spawn to `sidecar-ready`"),
    ("listed", "`python -m sidecar`, spawn to first `list_providers` answer"),
)


def bench_startup(runs: int, workdir: Path) -> dict[str, list[float]]:
    data_dir = workdir / "startup-data"
    data_dir.mkdir()
    env = child_env(data_dir)
    py = sys.executable
    times: dict[str, list[float]] = {key: [] for key, _ in STARTUP_SUBJECTS}

    def once(record: bool) -> None:
        a = spawn_to_exit([py, "-c", "pass"], env)
        b = spawn_to_exit([py, "-c", "import jsonrpcserver"], env)
        c, d = sidecar_startup(env)
        if record:
            for key, value in zip(("pass", "import", "ready", "listed"), (a, b, c, d), strict=True):
                times[key].append(value)

    once(False)  # warm the page cache and the bytecode caches
    for _ in range(runs):
        once(True)
    return times


# --- (b) relay ---------------------------------------------------------------------------------


class UpstreamProcess:
    def __init__(self, batch: int) -> None:
        self.proc = subprocess.Popen([sys.executable, str(BENCH / "upstream.py"), "--batch", str(batch)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT)
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    def drain(self, chunks: int) -> tuple[float, float | None]:
        """Seconds to read one whole reply over a raw socket, parsing nothing: the upstream's own pace."""
        from upstream import HEAD, body_pieces

        expected = len(HEAD) + sum(len(p) for p in body_pieces(chunks, 1))
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
        elapsed = time.perf_counter() - started
        if got != expected:
            raise RuntimeError(f"upstream sent {got} bytes, {expected} expected")
        return elapsed, None

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


RELAY_SUBJECTS = (
    ("upstream", "upstream alone: raw socket read, nothing parsed"),
    ("floor", "floor relay: httpx `aiter_lines` + msgspec + `os.write`"),
    ("sidecar", "sidecar: `llm_stream_text` to `done`"),
)


def start_relay(name: str, upstream: UpstreamProcess, data_dir: Path, workdir: Path, tag: str = "") -> Child:
    """The sidecar (the upstream registered as provider ``bench``, persisted in ``data_dir``) or the floor."""
    env = child_env(data_dir)
    if name == "floor":
        return Child(f"floor{tag}", [sys.executable, str(BENCH / "floor_relay.py"), upstream.base_url], env,
                     workdir)
    sidecar = Child(f"sidecar{tag}", [sys.executable, "-m", "sidecar"], env, workdir)
    sidecar.call("llm_register_custom_provider", {"id": "bench", "name": "Bench", "protocol": "openai",
                                                  "base_url": upstream.base_url, "requires_api_key": False})
    return sidecar


@dataclass
class RelayFigures:
    wall: dict[str, list[float]] = field(default_factory=dict)
    """µs per chunk, per subject"""
    cpu: dict[str, list[float]] = field(default_factory=dict)
    """the relay process's CPU µs per chunk, per subject"""
    first: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    """ms of a fresh relay's first and second short stream, per subject"""


FIRST_CHUNKS = 10


def bench_relay(chunks: int, reps: int, fresh: int, batch: int, workdir: Path) -> RelayFigures:
    """Each subject ``reps`` times, interleaved; then ``fresh`` new relays, each timed on its first
    two short streams (what a lazy import or a client built on first use costs the first request)."""
    upstream = UpstreamProcess(batch)
    data_dir = workdir / "relay-data"
    data_dir.mkdir()
    children: list[Child] = []
    figures = RelayFigures()
    try:
        sidecar = start_relay("sidecar", upstream, data_dir, workdir)
        children.append(sidecar)
        floor = start_relay("floor", upstream, data_dir, workdir)
        children.append(floor)
        model = f"bench:n-{chunks}"
        runs: dict[str, Callable[[], tuple[float, float | None]]] = {
            "upstream": lambda: upstream.drain(chunks),
            "floor": lambda: floor.stream(model, chunks),
            "sidecar": lambda: sidecar.stream(model, chunks),
        }
        for fn in runs.values():  # warm up: imports (httpx is imported on first use), pools, caches
            fn()
        figures.wall = {key: [] for key in runs}
        figures.cpu = {key: [] for key in runs}
        order = list(runs)
        for rep in range(reps):
            for key in order if rep % 2 == 0 else reversed(order):
                seconds, spent = runs[key]()
                figures.wall[key].append(seconds / chunks * 1e6)
                if spent is not None:
                    figures.cpu[key].append(spent / chunks * 1e6)
        for child in children:
            child.close()
        children.clear()

        figures.first = {"floor": [], "sidecar": []}
        short = f"bench:n-{FIRST_CHUNKS}"
        for i in range(fresh):
            for name in figures.first:
                child = start_relay(name, upstream, data_dir, workdir, tag=f"-fresh{i}")
                children.append(child)
                first, second = (child.stream(short, FIRST_CHUNKS)[0] * 1000 for _ in range(2))
                figures.first[name].append((first, second))
                child.close()
                children.remove(child)
        return figures
    finally:
        for child in children:
            child.close()
        upstream.close()


# --- profiling -----------------------------------------------------------------------------------

_PROFILED_SIDECAR = """\
import cProfile, os, sys
out = sys.argv[1]
profile = cProfile.Profile()
real_exit = os._exit
def _exit(status):
    profile.disable()
    profile.dump_stats(out)
    real_exit(status)
os._exit = _exit
sys.argv = ["llm-sidecar"]
from sidecar.cli import main
profile.enable()
main()
"""


def _where(filename: str, name: str) -> str:
    """A profile entry's group: third-party package, sidecar module, stdlib module or builtin."""
    if filename == "~":
        return name.replace("<built-in method ", "").replace("<method ", "").rstrip(">")
    path = filename.replace("\\", "/")
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if "/sidecar/" in path:
        return "sidecar/" + path.split("/sidecar/", 1)[1]
    if "/bench/" in path:
        return "bench/" + path.split("/bench/", 1)[1]
    parts = path.split("/")
    if len(parts) < 2:
        return path  # <frozen ...>, <string>
    return "stdlib " + ("/".join(parts[-2:]) if parts[-2] in ("asyncio", "json", "concurrent") else parts[-1])


def _print_profile(path: Path, chunks: int, top: int) -> None:
    import pstats

    stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    groups: dict[str, float] = {}
    rows = []
    for (filename, line, name), (_, calls, tottime, cumtime, _) in stats.items():
        where = _where(filename, name)
        groups[where] = groups.get(where, 0.0) + tottime
        rows.append((tottime, cumtime, calls, f"{where}:{line}({name})" if filename != "~" else where))
    scale = 1e6 / chunks
    print(f"  own time by package or module (µs per chunk; total {sum(groups.values()) * scale:.1f}):")
    for where, tottime in sorted(groups.items(), key=lambda kv: -kv[1])[:top]:
        print(f"    {tottime * scale:8.2f}  {where}")
    print("  functions by own time (µs per chunk: own, cumulative; calls):")
    for tottime, cumtime, calls, label in sorted(rows, reverse=True)[:top]:
        print(f"    {tottime * scale:8.2f} {cumtime * scale:8.2f} {calls:8d}  {label}")


def _print_importtime(env: dict[str, str], top: int) -> None:
    """Where the sidecar's start-up goes: ``-X importtime`` self time summed by top-level package."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "sidecar"], stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT, check=False)
    by_root: dict[str, int] = {}
    for line in proc.stderr.decode(errors="replace").splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        _, self_us, _, name = (x.strip() for x in line.split("|", 1)[0].split(":", 1) + line.split("|")[1:])
        root = name.split(".", 1)[0]
        by_root[root] = by_root.get(root, 0) + int(self_us)
    total = sum(by_root.values())
    print(f"\n=== start-up: `python -X importtime -m sidecar`, self time by top-level package "
          f"(total {total / 1000:.0f} ms of imports) ===")
    for root, us in sorted(by_root.items(), key=lambda kv: -kv[1])[:top]:
        print(f"    {us / 1000:7.1f} ms  {root}")


def profile_relay(chunks: int, batch: int, workdir: Path, top: int) -> None:
    """One stream through each relay under cProfile (sidecar: its event-loop thread), and the
    sidecar's import times; prints where the time goes."""
    upstream = UpstreamProcess(batch)
    data_dir = workdir / "profile-data"
    data_dir.mkdir()
    env = child_env(data_dir)
    model = f"bench:n-{chunks}"
    outs = {"sidecar": workdir / "sidecar.prof", "floor": workdir / "floor.prof"}
    argvs = {
        "sidecar": [sys.executable, "-c", _PROFILED_SIDECAR, str(outs["sidecar"])],
        "floor": [sys.executable, "-m", "cProfile", "-o", str(outs["floor"]), str(BENCH / "floor_relay.py"),
                  upstream.base_url],
    }
    try:
        for name, argv in argvs.items():
            child = Child(name, argv, env, workdir)
            if name == "sidecar":
                child.call("llm_register_custom_provider", {
                    "id": "bench", "name": "Bench", "protocol": "openai", "base_url": upstream.base_url,
                    "requires_api_key": False})
            child.stream("bench:n-100", 100)  # imports and the connection, before the stream we look at
            seconds, _ = child.stream(model, chunks)
            child.close()
            print(f"\n=== {name}: {seconds / chunks * 1e6:.1f} µs/chunk wall under cProfile; the profile "
                  f"covers the whole process (start-up and a 100-chunk warm-up included) ===")
            _print_profile(outs[name], chunks, top)
    finally:
        upstream.close()
    _print_importtime(env, top)


# --- report -----------------------------------------------------------------------------------------


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[-1] if len(values) > 1 else values[0]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    from importlib.metadata import version

    libs = ", ".join(f"{name} {version(name)}" for name in ("httpx", "anyio", "msgspec", "jsonrpcserver"))
    return (f"`nproc` {nproc} ({cpu}); Python {platform.python_version()} "
            f"({platform.python_implementation()}), {platform.system()} {platform.release()}; {libs}")


def report(startup: dict[str, list[float]], relay: RelayFigures, args: argparse.Namespace, seconds: float,
           load: tuple[float, float]) -> str:
    med = {k: statistics.median(v) for k, v in startup.items()}
    ratio = med["listed"] / med["import"]
    out = [
        f"Run {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}: `bench/run.py"
        f"{' --quick' if args.quick else ''}`, {seconds:.0f} s in all; 1-minute load average "
        f"{load[0]:.2f} before, {load[1]:.2f} after.",
        "",
        f"Machine: {machine()}.",
        "",
        f"**Start-up** ({len(startup['pass'])} spawns of each, interleaved; ms)",
        "",
        "| subject | median | p90 |",
        "|---|---:|---:|",
    ]
    for key, label in STARTUP_SUBJECTS:
        out.append(f"| {label} | {med[key]:.1f} | {p90(startup[key]):.1f} |")
    verdict = "meets" if ratio <= STARTUP_BAR else "MISSES"
    out += ["", f"First `list_providers` answer / `import jsonrpcserver`: **{ratio:.2f}x** "
            f"({verdict} the bar of {STARTUP_BAR}x).", ""]

    wall = relay.wall
    wmed = {k: statistics.median(v) for k, v in wall.items()}
    cmed = {k: statistics.median(v) for k, v in relay.cpu.items() if v}
    out += [
        f"**Relay** ({args.chunks:,} content chunks + finish + usage + `[DONE]`, "
        f"{args.batch} SSE event(s) per upstream `send`; {len(wall['floor'])} streams of each, interleaved; "
        "µs per chunk; CPU is the relay process's own, all threads)",
        "",
        "| subject | wall median | wall min | wall max | CPU median |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, label in RELAY_SUBJECTS:
        c = f"{cmed[key]:.1f}" if key in cmed else "n/a"
        out.append(f"| {label} | {wmed[key]:.1f} | {min(wall[key]):.1f} | {max(wall[key]):.1f} | {c} |")
    rratio = wmed["sidecar"] / wmed["floor"]
    paired = statistics.median(s / f for s, f in zip(wall["sidecar"], wall["floor"], strict=True))
    verdict = ("meets the goal" if rratio <= RELAY_GOAL else "meets the bar" if rratio <= RELAY_BAR
               else "MISSES the bar")
    cpu_ratio = f"; CPU {cmed['sidecar'] / cmed['floor']:.2f}x" if {"sidecar", "floor"} <= cmed.keys() else ""
    out += ["", f"Sidecar / floor, wall: **{rratio:.2f}x** ({verdict}: bar {RELAY_BAR}x, "
            f"goal {RELAY_GOAL}x); median of the per-round ratios {paired:.2f}x{cpu_ratio}."]

    if relay.first.get("sidecar"):
        out += [
            "",
            f"**First request** ({len(relay.first['sidecar'])} fresh processes of each, started once ready; "
            f"a {FIRST_CHUNKS}-chunk stream, request to `done`; ms; not part of any bar)",
            "",
            "| subject | first stream, median | second stream, median |",
            "|---|---:|---:|",
        ]
        for key, label in (("floor", "floor relay (client built at start)"),
                           ("sidecar", "sidecar (httpx imported, client built on first use)")):
            firsts, seconds_ = zip(*relay.first[key], strict=True)
            out.append(f"| {label} | {statistics.median(firsts):.1f} | {statistics.median(seconds_):.1f} |")
    return "\n".join(out)


def write_readme(section: str) -> None:
    write_section("results", section)


def main() -> None:
    ap = argparse.ArgumentParser(description="Start-up and relay benchmark of the sidecar.")
    ap.add_argument("--quick", action="store_true", help="fewer spawns and streams (under 30 s)")
    ap.add_argument("--write", action="store_true", help=f"write the figures into {README.relative_to(ROOT)}")
    ap.add_argument("--runs", type=int, help="start-up spawns of each subject (default 15; quick 5)")
    ap.add_argument("--reps", type=int, help="streams through each relay (default 9; quick 3)")
    ap.add_argument("--fresh", type=int, help="new relays timed on a first request (default 5; quick 2)")
    ap.add_argument("--chunks", type=int, default=20_000, help="content chunks per stream (default 20000)")
    ap.add_argument("--batch", type=int, default=1, help="SSE events per upstream send() (default 1)")
    ap.add_argument("--profile", action="store_true",
                    help="instead: cProfile one stream through each relay and print the top functions")
    ap.add_argument("--top", type=int, default=20, help="rows of each profile table (default 20)")
    args = ap.parse_args()
    use_project_venv()
    sys.path.insert(0, str(BENCH))
    args.runs = args.runs or (5 if args.quick else 15)
    args.reps = args.reps or (3 if args.quick else 9)
    args.fresh = args.fresh if args.fresh is not None else (2 if args.quick else 5)

    with tempfile.TemporaryDirectory(prefix="llm-sidecar-bench-") as tmp:
        workdir = Path(tmp)
        if args.profile:
            profile_relay(args.chunks, args.batch, workdir, args.top)
            return
        started = time.perf_counter()
        load_before = os.getloadavg()[0]
        print(f"start-up: {args.runs} spawns of each subject ...", file=sys.stderr, flush=True)
        startup = bench_startup(args.runs, workdir)
        print(f"relay: {args.reps} streams of {args.chunks:,} chunks through each relay ...", file=sys.stderr,
              flush=True)
        relay = bench_relay(args.chunks, args.reps, args.fresh, args.batch, workdir)
        section = report(startup, relay, args, time.perf_counter() - started,
                         (load_before, os.getloadavg()[0]))
    print(section)
    if args.write:
        write_readme(section)
        print(f"\nwritten to {README.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
