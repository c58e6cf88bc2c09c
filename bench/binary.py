"""Start-up of the one-file binary beside ``python -m sidecar``: time from spawn to ``sidecar-ready``.

A one-file PyInstaller binary unpacks itself to a temporary folder at every start, so it can be
slower to start than the source; this measures by how much. ``--write`` puts the figures into
bench/README.md between the ``bench:binary`` markers (only that section changes).

    .venv/bin/python bench/binary.py [--binary dist/llm-sidecar-<triple>] [--runs 10] [--write]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "bench" / "README.md"
BEGIN, END = "<!-- bench:binary:begin -->", "<!-- bench:binary:end -->"


def time_to_ready(cmd: list[str]) -> float:
    """Seconds from Popen to the ``sidecar-ready`` line; the child then gets stdin EOF and exits."""
    with tempfile.TemporaryDirectory() as data:
        env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
        env.update(PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring", LLM_SIDECAR_DATA_DIR=data)
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                env=env, cwd=ROOT)
        assert proc.stdout is not None and proc.stdin is not None
        line = proc.stdout.readline()
        elapsed = time.perf_counter() - t0
        assert b"sidecar-ready" in line, line
        proc.stdin.close()
        proc.wait(10)
    return elapsed


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from sidecar.build import binary_name, target_triple

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", type=Path, default=ROOT / "dist" / binary_name(target_triple()))
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--write", action="store_true", help="write the figures into bench/README.md")
    args = ap.parse_args()
    if not args.binary.is_file():
        print(f"{args.binary} is missing: run `python -m sidecar build-binary` first", file=sys.stderr)
        return 2
    subjects = {"binary": [str(args.binary)], "source": [sys.executable, "-m", "sidecar"]}
    times: dict[str, list[float]] = {name: [] for name in subjects}
    for cmd in subjects.values():
        time_to_ready(cmd)  # warm-up: page cache, bytecode cache
    for _ in range(args.runs):
        for name, cmd in subjects.items():
            times[name].append(time_to_ready(cmd))
    med = {name: statistics.median(t) * 1000 for name, t in times.items()}
    size_mb = args.binary.stat().st_size / 1e6
    section = (
        f"{BEGIN}\n## Binary start-up\n\n"
        f"`python -m sidecar build-binary` (PyInstaller one-file, {args.binary.name}, {size_mb:.1f} MB), "
        f"time from spawn to the `sidecar-ready` line, median of {args.runs} spawns after one warm-up, "
        f"interleaved with the source start-up (`python -m sidecar`) on the same machine "
        f"({platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}):\n\n"
        f"| subject | median to `sidecar-ready` |\n|---|---|\n"
        f"| binary | {med['binary']:.0f} ms |\n| source (`python -m sidecar`) | {med['source']:.0f} ms |\n\n"
        f"The one-file binary unpacks itself into a temporary folder at each start; that is most of the "
        f"difference. Rerun: `.venv/bin/python bench/binary.py --write`.\n{END}"
    )
    print(section)
    if args.write:
        text = README.read_text(encoding="utf-8")
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            text = head + section + rest.split(END, 1)[1]
        else:
            text = text.rstrip("\n") + "\n\n" + section + "\n"
        README.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
