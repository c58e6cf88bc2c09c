"""First token through the real ``claude`` program (the claude-code provider) beside the direct ``anthropic``
provider, on the same loopback fake Messages API (tests/claude_fake.py); and abort to ``cancelled``.

    .venv/bin/python bench/claude_code.py              # 15 rounds, about half a minute
    .venv/bin/python bench/claude_code.py --write      # also write the section in bench/README.md

One sidecar serves both providers: ``anthropic`` with ``--base-url anthropic=<fake>`` and the dummy key in
``ANTHROPIC_API_KEY``, ``claude-code`` running the program pinned in tests/tools (``npm ci`` there first) with
the offline variables and a temp ``HOME``. Each round streams one request through each, in alternating order,
timed from writing the ``llm_stream_text`` line to reading the first ``text_delta`` (client side, over the real
pipes). Then the abort bar: a long ``claude-code`` answer is aborted right after its first delta, timed to the
``cancelled`` error event, and the program's process group is checked gone.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
README = BENCH / "README.md"
BEGIN, END = "<!-- bench:claude-code:begin -->", "<!-- bench:claude-code:end -->"
sys.path.insert(0, str(ROOT / "tests"))

from claude_fake import FakeMessagesApi  # noqa: E402
from harness import Sidecar  # noqa: E402

CLAUDE = ROOT / "tests" / "tools" / "node_modules" / ".bin" / "claude"


def first_token(sc: Sidecar, model: str, text: str) -> float:
    sid = f"b{time.monotonic_ns()}"
    t0 = time.perf_counter()
    sc.send({"jsonrpc": "2.0", "id": sid, "method": "llm_stream_text",
             "params": {"stream_id": sid, "model": model, "messages": [{"role": "user", "content": text}],
                        "retry": {"max_retries": 0}}})
    m = sc.wait_for(lambda m: m.get("method") == f"llm-stream-{sid}" and m["params"]["type"] in
                    ("text_delta", "error"), timeout=60)
    took = (time.perf_counter() - t0) * 1000
    if m["params"]["type"] == "error":
        raise SystemExit(f"{model}: {m['params']['error']}")
    sc.wait_stream_end(sid, timeout=60)
    return took


def abort_ms(sc: Sidecar) -> tuple[float, bool]:
    sid = f"a{time.monotonic_ns()}"
    sc.send({"jsonrpc": "2.0", "id": sid, "method": "llm_stream_text",
             "params": {"stream_id": sid, "model": "claude-code:sonnet",
                        "messages": [{"role": "user", "content": "[[slow]] go"}]}})
    sc.wait_for(lambda m: m.get("method") == f"llm-stream-{sid}" and m["params"]["type"] == "text_delta", timeout=60)
    kids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _ppid(int(p.name)) == sc.proc.pid]
    t0 = time.perf_counter()
    sc.send({"jsonrpc": "2.0", "id": f"{sid}-abort", "method": "llm_abort_stream", "params": {"stream_id": sid}})
    end = sc.wait_stream_end(sid, timeout=10)[-1]
    took = (time.perf_counter() - t0) * 1000
    assert end["type"] == "error" and end["error"]["code"] == "cancelled", end
    gone = all(_ppid(k) is None for k in kids)
    return took, gone


def _ppid(pid: int) -> int | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    return None if fields[0] == "Z" else int(fields[1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    if not CLAUDE.exists():
        raise SystemExit(f"no claude program at {CLAUDE}: run `npm ci` in tests/tools")
    fake = FakeMessagesApi()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp, "home")
        home.mkdir()
        env = {"ANTHROPIC_BASE_URL": fake.url, "ANTHROPIC_API_KEY": "sk-ant-dummy", "HOME": str(home),
               "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1", "DISABLE_TELEMETRY": "1",
               "DISABLE_ERROR_REPORTING": "1"}
        sc = Sidecar(Path(tmp, "data"), "--claude-path", str(CLAUDE), "--base-url", f"anthropic={fake.url}", env=env)
        try:
            sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
            subjects = {"anthropic (direct HTTP)": "anthropic:claude-sonnet-4-5", "claude-code (the claude program)":
                        "claude-code:sonnet"}
            times: dict[str, list[float]] = {k: [] for k in subjects}
            for model in subjects.values():  # warm-up: the program's first start reads its files cold
                first_token(sc, model, "warm up")
            for i in range(args.rounds):
                order = list(subjects.items())
                if i % 2:
                    order.reverse()
                for name, model in order:
                    times[name].append(first_token(sc, model, f"round {i}"))
            aborts = [abort_ms(sc) for _ in range(5)]
        finally:
            sc.kill()
            fake.close()
    rows = []
    for name, ts in times.items():
        ts.sort()
        rows.append(f"| {name} | {statistics.median(ts):.1f} | {ts[int(0.9 * (len(ts) - 1))]:.1f} | {ts[0]:.1f} |")
    abort_list = sorted(a for a, _ in aborts)
    text = "\n".join([
        f"Measured {dt.date.today()}, {os.cpu_count()} cores (shared), claude 2.1.332, {args.rounds} rounds after a "
        f"warm-up, `python bench/claude_code.py`.",
        "",
        "| first `text_delta` after `llm_stream_text` (ms) | median | p90 | min |",
        "|---|---|---|---|",
        *rows,
        "",
        f"Abort after the first delta to the `cancelled` event, 5 runs: median {statistics.median(abort_list):.0f} ms, "
        f"max {abort_list[-1]:.0f} ms (bar: 1.5 s); program gone after every abort: "
        f"{'yes' if all(g for _, g in aborts) else 'NO'}.",
    ])
    print(text)
    if args.write:
        readme = README.read_text()
        block = f"{BEGIN}\n{text}\n{END}"
        if BEGIN in readme:
            head, rest = readme.split(BEGIN, 1)
            readme = head + block + rest.split(END, 1)[1]
        else:
            readme += f"\n## First token through the claude program (claude-code)\n\n{block}\n"
        README.write_text(readme)


if __name__ == "__main__":
    main()
