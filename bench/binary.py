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
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from readme import write_section

ROOT = Path(__file__).resolve().parent.parent


def time_to_ready(cmd: list[str], cache: Path, temp: Path, kill: bool = False) -> float:
    """Seconds from Popen to the ``sidecar-ready`` line; the child then gets stdin EOF and exits
    (with ``kill``, SIGKILL first, as Tauri's ``child.kill()`` does)."""
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
        if kill:
            proc.kill()
        proc.stdin.close()
        proc.wait(10)
        pid = json.loads(line)["params"]["pid"]  # the program, when a bootstrap started it
        while pid != proc.pid and Path(f"/proc/{pid}").exists() and "Z" not in _state(pid):
            time.sleep(0.01)
    return elapsed


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return "Z"


def leftovers_after_kills(cmd: list[str], cache: Path, work: Path, kills: int = 5) -> str:
    """What ``kills`` SIGKILLs right after ``sidecar-ready`` leave in a fresh temp dir, and add to the
    (already warm) cache dir: top-level entries and their size."""
    temp = work / "kill-tmp"
    temp.mkdir()
    before = set(cache.rglob("*"))
    for _ in range(kills):
        time_to_ready(cmd, cache, temp, kill=True)
    added = set(cache.rglob("*")) - before
    new = [*temp.iterdir(), *(p for p in added if p.parent not in added)]
    size = sum(f.stat().st_size for p in new for f in [p, *p.rglob("*")] if f.is_file())
    shutil.rmtree(temp)
    return f"{len(new)} ({size / 1e6:.0f} MB)" if new else "0"


def pyinstaller_builds(work: Path) -> dict[str, list[str]]:
    """PyInstaller one-file and one-dir builds of the same entry point and module lists."""
    import PyInstaller.__main__

    from sidecar.build import ENTRY, EXCLUDES, hidden_imports

    work.mkdir()
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
        left = {name: leftovers_after_kills(cmd, cache, work) for name, cmd in subjects.items()}
    med = {name: statistics.median(t) * 1000 for name, t in times.items()}
    source = med["source (`python -m sidecar`)"]
    rows = [(name, m, left[name]) for name, m in med.items()]
    rows.insert(1, ("binary, first start (empty cache, unpacks)", statistics.median(cold) * 1000, "-"))
    size_mb = args.binary.stat().st_size / 1e6
    table = "".join(f"| {name} | {m:.0f} ms | {m / source:.2f}x | {k} |\n" for name, m, k in rows)
    section = (
        f"## Binary start-up\n\n"
        f"`python -m sidecar build-binary` ({args.binary.name}, {size_mb:.1f} MB): time from spawn to the "
        f"`sidecar-ready` line, median of {args.runs} spawns after one warm-up each, the subjects interleaved "
        f"on the same machine ({platform.machine()}, {os.cpu_count()} cores shared with other work, "
        f"Python {platform.python_version()}):\n\n"
        f"| subject | median to `sidecar-ready` | vs source | new files/folders after 5 SIGKILLs |\n"
        f"|---|---|---|---|\n{table}\n"
        f"The binary unpacks into `<user cache dir>/llm-sidecar/<version>-<build id>` on its first start and "
        f"afterwards only checks each file there against its CRC32, so a warm start costs about what the "
        f"source costs. PyInstaller's one-file bootloader unpacks into a new `$TMPDIR/_MEI*` folder at every "
        f"start (and leaves it there when SIGKILLed); its one-dir build is no single file. "
        f"Rerun: `.venv/bin/python bench/binary.py --pyinstaller --write`."
    )
    print(section)
    if args.write:
        write_section("binary", section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
