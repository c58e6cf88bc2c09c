"""MCP servers hosted by the sidecar: what starting one, calling a tool and stopping them cost, measured on
the real sidecar process over its pipes with the real servers the tests use (mcp-server-time, Python;
@modelcontextprotocol/server-everything, Node: `npm ci` in tests/tools first).

    python bench/mcp.py [--rounds N] [--calls N] [--write]

- start: ``mcp_add_server {start: true}`` until it answers ``ready`` (spawn, initialize, tools/list);
- call: ``mcp_call_tool`` round trips (everything's ``echo``, time's ``get_current_time``), one after another;
- stop: from closing the sidecar's stdin to its exit, with no server and with three running (their process
  groups ended: stdin closed, up to 0.5 s to exit, then SIGTERM/SIGKILL to the group).

``--write`` puts the table in bench/README.md (section ``mcp``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "bench")]

from harness import Sidecar  # noqa: E402

EVERYTHING = ROOT / "tests" / "tools" / "node_modules" / ".bin" / "mcp-server-everything"
SERVERS = {
    "time": {"transport": "stdio", "command": sys.executable, "args": ["-m", "mcp_server_time"]},
    "everything": {"transport": "stdio", "command": str(EVERYTHING)},
}


def ms(seconds: float) -> float:
    return seconds * 1000


def start_ms(data: Path, name: str, rounds: int) -> list[float]:
    sc = Sidecar(data, "--allow-mcp")
    sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
    out = []
    for i in range(rounds):
        t0 = time.perf_counter()
        info = sc.call("mcp_add_server", {"id": f"{name}{i}", **SERVERS[name], "start": True}, timeout=60)
        out.append(ms(time.perf_counter() - t0))
        assert info["status"] == "ready", info
        sc.call("mcp_remove_server", {"id": f"{name}{i}"}, timeout=30)
    sc.close_stdin()
    sc.wait_exit(10)
    return out


def call_ms(data: Path, calls: int) -> dict[str, list[float]]:
    sc = Sidecar(data, "--allow-mcp")
    sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
    out: dict[str, list[float]] = {}
    for name, tool, args in (("everything", "echo", {"message": "hi"}), ("time", "get_current_time",
                                                                          {"timezone": "UTC"})):
        sc.call("mcp_add_server", {"id": name, **SERVERS[name], "start": True}, timeout=60)
        times = []
        for _ in range(calls):
            t0 = time.perf_counter()
            sc.call("mcp_call_tool", {"server": name, "name": tool, "input": args})
            times.append(ms(time.perf_counter() - t0))
        out[f"{name}: {tool}"] = times
    sc.close_stdin()
    sc.wait_exit(10)
    return out


def stop_ms(data: Path, servers: int, rounds: int) -> list[float]:
    out = []
    for r in range(rounds):
        sc = Sidecar(data / f"stop{servers}-{r}", "--allow-mcp")
        sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
        for i in range(servers):
            name = ["time", "everything", "time"][i]
            sc.call("mcp_add_server", {"id": f"s{i}", **SERVERS[name], "start": True}, timeout=60)
        t0 = time.perf_counter()
        sc.close_stdin()
        sc.wait_exit(15)
        out.append(ms(time.perf_counter() - t0))
    return out


def row(name: str, xs: list[float]) -> str:
    xs = sorted(xs)
    p95 = xs[min(len(xs) - 1, round(0.95 * (len(xs) - 1)))]
    return f"| {name} | {statistics.median(xs):.1f} ms | {p95:.1f} ms | {len(xs)} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    if not EVERYTHING.exists():
        raise SystemExit("run `npm ci` in tests/tools first (server-everything)")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        rows = [row("start mcp-server-time (Python) to ready", start_ms(data / "a", "time", args.rounds)),
                row("start server-everything (Node) to ready", start_ms(data / "b", "everything", args.rounds))]
        rows += [row(f"mcp_call_tool round trip, {k}", v) for k, v in call_ms(data / "c", args.calls).items()]
        rows += [row("stdin closed to exit, no MCP server", stop_ms(data, 0, args.rounds)),
                 row("stdin closed to exit, 3 servers running", stop_ms(data, 3, args.rounds))]
    table = "\n".join(["| what | median | p95 | n |", "|---|---:|---:|---:|", *rows])
    print(table)
    if args.write:
        from readme import write_section

        write_section("mcp", f"Run {time.strftime('%Y-%m-%d')} on the 2-core machine shared with other jobs "
                      f"(`python bench/mcp.py --write`):\n\n{table}",
                      intro="## MCP servers: start, call, stop\n\n`python bench/mcp.py` (issue 19): the real "
                      "sidecar over its pipes with the tests' real servers. A start is spawn, `initialize` and "
                      "`tools/list`; a call is one `mcp_call_tool` request to its answer on stdout; a stop ends "
                      "every server's process group before the sidecar exits.")


if __name__ == "__main__":
    main()
