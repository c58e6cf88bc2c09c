"""What the usage log costs the event loop per finished request.

    python bench/usage.py [--records N] [--gap-ms MS] [--dir PATH]

``UsageStore.record`` runs inline on the event loop (committed before it returns, so a SIGKILL
right after loses nothing), so its cost is paid by every stream's terminal event. This times it
with perf_counter on a real file (default: a temporary dir; pass --dir to measure another disk),
records spaced --gap-ms apart as real requests are, and prints the first record (which opens
and creates the database), the median, p99, p99.9 and the worst, and how many took over 1 ms.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sidecar.engine import Outcome  # noqa: E402
from sidecar.types import Usage  # noqa: E402
from sidecar.usage import UsageStore  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=5000)
    p.add_argument("--gap-ms", type=float, default=2.0)
    p.add_argument("--dir", type=Path, default=None)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        store = UsageStore(Path(d), price=lambda provider, model: (2.0, 8.0, 0.5))
        o = Outcome(kind="stream", provider="openai", model="openai:gpt-4.1", started_at=time.time(),
                    latency_ms=812.5, ttft_ms=120.0, usage=Usage(input_tokens=1200, output_tokens=300),
                    finish_reason="stop", error=None, stream_id="bench")
        t = time.perf_counter()
        store.record(o)
        first = time.perf_counter() - t
        times = []
        for _ in range(args.records):
            t = time.perf_counter()
            store.record(o)
            times.append(time.perf_counter() - t)
            if args.gap_ms:
                time.sleep(args.gap_ms / 1000)
        store.close()
    times.sort()

    def q(f: float) -> float:
        return times[min(len(times) - 1, int(len(times) * f))]

    print(f"first record (import sqlite3, create the file): {first * 1e3:.2f} ms")
    print(f"record x{len(times)}, {args.gap_ms:g} ms apart: median {q(0.5) * 1e6:.0f} us, p99 {q(0.99) * 1e6:.0f} us, "
          f"p99.9 {q(0.999) * 1e3:.2f} ms, max {times[-1] * 1e3:.2f} ms, over 1 ms: {sum(x > 1e-3 for x in times)}")


if __name__ == "__main__":
    main()
