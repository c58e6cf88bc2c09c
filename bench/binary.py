"""Start-up of the built binary beside ``python -m sidecar``: time from spawn to ``sidecar-ready``.

The binary (``python -m sidecar build-binary``, Nuitka one-file) unpacks into a cached folder on its
first start and reuses it afterwards; this measures warm starts (the case that repeats), first starts
into an empty cache, and the source, interleaved on the same machine. ``--pyinstaller`` also builds
PyInstaller one-file and one-dir binaries of the same code and measures them (the comparison that
chose the packaging). ``--write`` puts the figures into bench/README.md between the ``bench:binary``
markers (only that section changes).

    .venv/bin/python bench/binary.py [--binary dist/llm-sidecar-<triple>] [--runs 15] [--pyinstaller] [--write]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "bench" / "README.md"
BEGIN, END = "<!-- bench:binary:begin -->", "<!-- bench:binary:end -->"


def time_to_ready(cmd: list[str], cache: Path, temp: Path) -> float:
    """Seconds from Popen to the ``sidecar-ready`` line; the child then gets stdin EOF and exits."""
    with tempfile.TemporaryDirectory() as data:
        env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
        env.update(PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring", LLM_SIDECAR_DATA_DIR=data,
                   XDG_CACHE_HOME=str(cache), TMPDIR=str(temp))
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


def pyinstaller_builds(work: Path) -> dict[str, list[str]]:
    """PyInstaller one-file and one-dir builds of the same entry point and module lists."""
    import PyInstaller.__main__

    from sidecar.build import ENTRY, EXCLUDES, hidden_imports

    entry = work / "llm_sidecar_entry.py"
    entry.write_text(ENTRY, encoding="utf-8")
    common = [str(entry), "--noconfirm", "--console", "--log-level", "WARN", "--paths", str(ROOT),
              "--specpath", str(work), "--optimize", "0", "--copy-metadata", "keyring",
              "--collect-data", "jsonrpcserver", "--collect-data", "certifi"]
    for module in hidden_imports():
        common += ["--hidden-import", module]
    for module in EXCLUDES:
        common += ["--exclude-module", module]
    out = {}
    for mode in ("onefile", "onedir"):
        PyInstaller.__main__.run([*common, f"--{mode}", "--name", mode, "--distpath", str(work / "dist"),
                                  "--workpath", str(work / f"build-{mode}")])
        out[f"PyInstaller {mode}"] = [str(work / "dist" / mode / mode if mode == "onedir" else work / "dist" / mode)]
    return out


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from sidecar.build import binary_name, target_triple

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", type=Path, default=ROOT / "dist" / binary_name(target_triple()))
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--pyinstaller", action="store_true", help="also build and measure PyInstaller one-file/one-dir")
    ap.add_argument("--write", action="store_true", help="write the figures into bench/README.md")
    args = ap.parse_args()
    if not args.binary.is_file():
        print(f"{args.binary} is missing: run `python -m sidecar build-binary` first", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-binary-") as tmp:
        work = Path(tmp)
        cache, temp = work / "cache", work / "tmp"
        cache.mkdir()
        temp.mkdir()
        subjects = {"binary (Nuitka one-file, cached unpack)": [str(args.binary.resolve())],
                    "source (`python -m sidecar`)": [sys.executable, "-m", "sidecar"]}
        if args.pyinstaller:
            subjects.update(pyinstaller_builds(work / "pyinstaller"))
        times: dict[str, list[float]] = {name: [] for name in subjects}
        cold: list[float] = []
        for cmd in subjects.values():
            time_to_ready(cmd, cache, temp)  # warm-up: page cache, bytecode cache, the binary's unpack
        for i in range(args.runs):
            for name, cmd in subjects.items():
                times[name].append(time_to_ready(cmd, cache, temp))
            fresh = work / f"cold{i}"
            fresh.mkdir()
            cold.append(time_to_ready(subjects["binary (Nuitka one-file, cached unpack)"], fresh, temp))
            shutil.rmtree(fresh)
        leftovers = len(list(temp.iterdir()))
    med = {name: statistics.median(t) * 1000 for name, t in times.items()}
    source = med["source (`python -m sidecar`)"]
    rows = [(name, m) for name, m in med.items()]
    rows.insert(1, ("binary, first start (empty cache, unpacks)", statistics.median(cold) * 1000))
    size_mb = args.binary.stat().st_size / 1e6
    table = "".join(f"| {name} | {m:.0f} ms | {m / source:.2f}x |\n" for name, m in rows)
    section = (
        f"{BEGIN}\n## Binary start-up\n\n"
        f"`python -m sidecar build-binary` ({args.binary.name}, {size_mb:.1f} MB): time from spawn to the "
        f"`sidecar-ready` line, median of {args.runs} spawns after one warm-up each, the subjects interleaved "
        f"on the same machine ({platform.machine()}, {os.cpu_count()} cores shared with other work, "
        f"Python {platform.python_version()}):\n\n"
        f"| subject | median to `sidecar-ready` | vs source |\n|---|---|---|\n{table}\n"
        f"The binary unpacks into `<user cache dir>/llm-sidecar/<version>-<build id>` on its first start and "
        f"afterwards only checks each file there against its CRC32, so a warm start costs about what the "
        f"source costs. PyInstaller's one-file bootloader unpacks into a new `$TMPDIR/_MEI*` folder at every "
        f"start (and leaves it there when SIGKILLed); its one-dir build is no single file. Files left in the "
        f"temp dir by all these runs: {leftovers}. Rerun: `.venv/bin/python bench/binary.py --pyinstaller "
        f"--write`.\n{END}"
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
