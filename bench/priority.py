"""What the priority classes cost in each provider's queues (sidecar/health.py), in this process.

- an attempt that waits for nothing (``async with health.slot(...)``, both limits set, plenty of tokens);
- an attempt handed a slot through the queue: one request holds the only slot, n background and n/10
  interactive requests wait behind it, then all are let through; the cost per request, for n up to 10,000
  (a grant is O(1), so it should not grow with the queue).

``--compare /work/main`` runs the same against another checkout too (before the classes: one FIFO queue),
in a process of its own, and shows both.

    .venv/bin/python bench/priority.py [--reps 5] [--compare DIR] [--write]
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def load(root: Path) -> tuple[Any, Any, Any]:
    sys.path.insert(0, str(root))
    from sidecar.health import Health
    from sidecar.providers import Provider
    from sidecar.types import ProviderLimits

    return Health, Provider, ProviderLimits


async def uncontended(health: Any, p: Any, n: int, with_priority: bool) -> float:
    args = (p, "background") if with_priority else (p,)
    started = time.perf_counter()
    for _ in range(n):
        async with health.slot(*args):
            pass
    return (time.perf_counter() - started) / n * 1e6


async def queued(health: Any, p: Any, n: int, with_priority: bool) -> float:
    import anyio

    release = anyio.Event()

    async def holder() -> None:
        async with health.slot(p):
            await release.wait()

    async def waiter(i: int) -> None:
        priority = "interactive" if i % 11 == 10 else "background"
        async with health.slot(*((p, priority) if with_priority else (p,))):
            pass

    async with anyio.create_task_group() as tg:
        tg.start_soon(holder)
        await anyio.wait_all_tasks_blocked()
        for i in range(n):
            tg.start_soon(waiter, i)
        await anyio.wait_all_tasks_blocked()
        started = time.perf_counter()
        release.set()
    return (time.perf_counter() - started) / n * 1e6


def measure(root: Path, reps: int) -> list[tuple[str, float]]:
    import anyio

    health_cls, provider_cls, limits_cls = load(root)
    with_priority = "priority" in inspect.signature(health_cls.slot).parameters

    def provider(**limits: Any) -> Any:
        return provider_cls(id="p", name="P", protocol="openai", base_url="http://127.0.0.1:9/v1",
                            limits=limits_cls(**limits))

    rows = [("an attempt that waits for nothing", statistics.median(
        anyio.run(uncontended, health_cls(), provider(max_concurrency=4, requests_per_minute=1e9), 20_000,
                  with_priority) for _ in range(reps)))]
    for n in (100, 1_000, 10_000):
        rows.append((f"{n:,} queued (1 in 11 interactive): per request let through", statistics.median(
            anyio.run(queued, health_cls(), provider(max_concurrency=1), n, with_priority) for _ in range(reps))))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--compare", type=Path, help="another checkout to measure the same way")
    ap.add_argument("--write", action="store_true", help="put the figures in bench/README.md")
    args = ap.parse_args()
    rows = measure(args.root, args.reps)
    if args.json:
        print(json.dumps(rows))
        return
    header, rule = "| | priority classes |", "|---|---|"
    cells = [f"| {name} | {us:.1f} µs |" for name, us in rows]
    if args.compare is not None:
        out = subprocess.run([sys.executable, __file__, "--root", str(args.compare), "--reps", str(args.reps),
                              "--json"], check=True, capture_output=True, text=True).stdout
        header, rule = header + " one FIFO queue (before) |", rule + "---|"
        cells = [f"{c} {us:.1f} µs |" for c, (_, us) in zip(cells, json.loads(out), strict=True)]
    lines = [f"Median of {args.reps} runs, asyncio, one process.", "", header, rule, *cells]
    print("\n".join(lines))
    if args.write:
        sys.path.insert(0, str(ROOT / "bench"))
        from readme import write_section

        write_section("priority", "\n".join(lines), "## Priority classes: the cost in each provider's queues\n\n"
                      "`bench/priority.py --compare <checkout before>`: `async with health.slot(...)` with nothing "
                      "to wait for, and the cost per request of letting a queue of n through one slot (it includes "
                      "each queued task's start and end, which is most of it).")


if __name__ == "__main__":
    main()
