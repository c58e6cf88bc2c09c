"""What a settings change and a settings read cost, alone and with a second process writing.

    python bench/settings.py [--writes N] [--reads N] [--dir PATH]

A change (``SettingsStore.upsert_custom``) takes the lock file, re-reads settings.json, writes a
temp file, fsyncs it, renames it over and fsyncs the folder; it runs on the event loop. A read
(``SettingsStore.value``) is one ``stat`` when nobody changed the file. Measured with
perf_counter on a real file (default: a temporary dir; pass --dir to measure another disk): the
median and p99 of --writes changes by this process alone, then again while a second process
makes --writes changes of its own to the same file, and the median of --reads reads. It ends by
checking that every change of both processes is in the file.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sidecar.settings import SettingsStore  # noqa: E402
from sidecar.types import ProviderConfig  # noqa: E402


def provider(pid: str) -> ProviderConfig:
    return ProviderConfig(id=pid, name=pid, protocol="openai", base_url="http://127.0.0.1:9/v1")


def timed_writes(store: SettingsStore, prefix: str, n: int) -> list[float]:
    times = []
    for i in range(n):
        t = time.perf_counter()
        store.upsert_custom(provider(f"{prefix}{i}"))
        times.append((time.perf_counter() - t) * 1000)
    return times


def summary(times: list[float]) -> str:
    q = statistics.quantiles(times, n=100)
    return f"median {statistics.median(times):.2f} ms, p99 {q[98]:.2f} ms"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--writes", type=int, default=200)
    p.add_argument("--reads", type=int, default=100_000)
    p.add_argument("--dir", type=Path, default=None)
    p.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:  # the second writer: starts when the first says go
        child_store = SettingsStore(args.child)
        print("ready", flush=True)
        sys.stdin.readline()
        timed_writes(child_store, "child", args.writes)
        return
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        store = SettingsStore(Path(d))
        print(f"one writer:  {summary(timed_writes(store, 'alone', args.writes))}")
        child = subprocess.Popen([sys.executable, __file__, "--child", d, "--writes", str(args.writes)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert child.stdin is not None and child.stdout is not None
        child.stdout.readline()
        child.stdin.write("go\n")
        child.stdin.flush()
        print(f"two writers: {summary(timed_writes(store, 'beside', args.writes))}")
        child.wait()
        t = time.perf_counter()
        for _ in range(args.reads):
            store.value  # noqa: B018
        print(f"read (file unchanged): {(time.perf_counter() - t) / args.reads * 1e6:.2f} us")
        ids = {c.id for c in store.value.custom_providers}
        expected = {f"{prefix}{i}" for prefix in ("alone", "beside", "child") for i in range(args.writes)}
        assert ids == expected, f"{len(expected - ids)} changes lost"
        print(f"all {len(ids)} changes of both processes are in the file")


if __name__ == "__main__":
    main()
