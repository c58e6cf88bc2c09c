"""``llm-sidecar build-binary``: one self-contained executable for Tauri's ``externalBin``.

Tauri looks for ``<name>-<rust target triple>[.exe]`` next to the app, so the file is named that way.

Packaging, chosen by measurement (bench/README.md, "Binary start-up"): Nuitka's one-file mode with a
*cached* unpack folder. PyInstaller's one-file bootloader unpacks everything into a new ``$TMPDIR/_MEI*``
folder at every start (about twice the start-up time of ``python -m sidecar``) and cannot remove it when
it is SIGKILLed, which is how Tauri's ``child.kill()`` ends a sidecar: 30+ MB left behind per kill.
Nuitka's bootstrap unpacks into ``<user cache dir>/llm-sidecar/<version>-<build id>`` instead, keeps it,
and at each later start only compares every file there with its CRC32 in the payload (rewriting one
that differs), so a start costs about what a folder build costs and a kill leaves nothing new.

Known limit: Nuitka's bootstrap has no write-to-a-temp-name-and-rename step; it checks and writes
each file in place. When two first starts overlap, one can die with SIGBUS before ``sidecar-ready``
(its CRC check reads a file the other is rewriting; 6 of 72 in a stress run of six at once). The
folder still ends complete, and a file left half-written is rewritten by the next start's CRC check
(tests/test_binary.py checks both). Closing that gap needs a bootloader of our own.

The folder name carries the package version and a build id: a hash of everything that goes into the
binary (the sidecar's source, the installed distributions, Python, the packager and its options). A
changed binary therefore never reuses another build's folder, and within a folder the CRC check
replaces any file that does not match this binary's payload.

The static analysis misses what the sidecar imports by name (the protocol modules, anyio's backend,
keyring's backends found through entry points), so those are listed here; modules the sidecar never
uses are excluded. Imported only by the ``build-binary`` sub-command: Nuitka is in the ``build`` extra,
and it needs a C compiler (gcc or clang; on Windows MSVC, or MinGW which Nuitka offers to download).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from . import __version__

NAME = "llm-sidecar"
PACKAGE_DIR = Path(__file__).resolve().parent

# Imported by name or found through metadata at run time, so static analysis cannot see them.
HIDDEN_IMPORTS = (
    "anyio._backends._asyncio",
    "keyring.backends.null",
    "keyring.backends.fail",
    "keyring.backends.chainer",
    "httpx",
    "sqlite3",
    "jsonschema",
    "starlette",
    "uvicorn",
)
LINUX_HIDDEN_IMPORTS = (
    "keyring.backends.SecretService",
    "secretstorage",
    "jeepney",
    "jeepney.io.blocking",
)
MACOS_HIDDEN_IMPORTS = ("keyring.backends.macOS",)
WINDOWS_HIDDEN_IMPORTS = ("keyring.backends.Windows",)

# Never used by the sidecar; some are pulled in by optional branches of its dependencies.
EXCLUDES = (
    "tkinter", "_tkinter", "turtle", "turtledemo", "idlelib", "unittest", "test", "doctest", "pdb",
    "pydoc", "pydoc_data", "lib2to3", "distutils", "setuptools", "pkg_resources", "pip", "ensurepip",
    "venv", "xmlrpc", "curses", "_curses", "readline", "sidecar.build", "PyInstaller", "nuitka",
    "pytest", "_pytest", "hypothesis", "mypy", "ruff", "openai", "pydantic", "IPython", "numpy",
    "watchfiles", "websockets", "wsproto", "uvloop", "httptools", "dotenv", "yaml", "trio", "curio",
    "httpx._main", "rich", "pygments", "PIL", "markdown_it",  # httpx's command line, not its client
    "zstandard", "brotli", "brotlicffi",  # httpx's optional decoders (zstandard is a build tool here)
)

# --with-local: llama-cpp-python and what it imports; Nuitka's own package config bundles llama_cpp/lib's
# shared libraries (llama.cpp, ggml) next to the module, where llama_cpp loads them from.
LOCAL_PACKAGES = ("llama_cpp", "numpy", "jinja2", "markupsafe", "diskcache")
LOCAL_EXCLUDES = ("llama_cpp.server", "llama_cpp.llama_cpp_ext")  # the HTTP server (FastAPI), unused bindings

ENTRY = '''"""Entry point of the frozen llm-sidecar."""
import sys

try:
    assert False
except AssertionError:
    pass
else:  # jsonrpcserver checks requests with assert: an optimized build would accept anything
    sys.exit("llm-sidecar was built with Python optimizations (-O); rebuild without them")

from sidecar.cli import main

raise SystemExit(main())
'''


def target_triple(machine: str | None = None, system: str | None = None) -> str:
    """The Rust target triple of this machine (what ``rustc -vV`` calls ``host``), without needing Rust."""
    machine = (machine or platform.machine()).lower()
    system = system or sys.platform
    arch = {"amd64": "x86_64", "x86_64": "x86_64", "x64": "x86_64", "arm64": "aarch64", "aarch64": "aarch64",
            "i386": "i686", "i686": "i686", "x86": "i686", "armv7l": "armv7"}.get(machine, machine)
    if system.startswith("linux"):
        return f"{arch}-unknown-linux-gnueabihf" if arch == "armv7" else f"{arch}-unknown-linux-gnu"
    if system == "darwin":
        return f"{arch}-apple-darwin"
    if system in ("win32", "cygwin"):
        return f"{arch}-pc-windows-msvc"
    raise ValueError(f"no Rust target triple known for {system}/{machine}; pass --target-triple")


def binary_name(triple: str) -> str:
    """The file name Tauri's ``externalBin: ["binaries/llm-sidecar"]`` looks for."""
    return f"{NAME}-{triple}" + (".exe" if "windows" in triple else "")


def hidden_imports(system: str | None = None) -> list[str]:
    """Every sidecar module (protocols are imported by name) plus the dependencies' dynamic imports."""
    system = system or sys.platform
    own = sorted(
        "sidecar." + ".".join(p.relative_to(PACKAGE_DIR).with_suffix("").parts).removesuffix(".__init__")
        for p in PACKAGE_DIR.rglob("*.py")
        if p.name not in ("build.py", "__main__.py")
    )
    extra = (LINUX_HIDDEN_IMPORTS if system.startswith("linux")
             else MACOS_HIDDEN_IMPORTS if system == "darwin" else WINDOWS_HIDDEN_IMPORTS)
    return own + list(HIDDEN_IMPORTS) + list(extra)


def dependency_packages(root: str = NAME) -> list[str]:
    """Top-level import names of ``root``'s run-time dependencies, recursively (extras left out)."""
    seen: set[str] = set()
    names: set[str] = set()
    todo = [root]
    while todo:
        try:
            dist = importlib.metadata.distribution(todo.pop())
        except importlib.metadata.PackageNotFoundError:
            continue
        key = re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower()
        if key in seen:
            continue
        seen.add(key)
        top = dist.read_text("top_level.txt")
        if top:
            names.update(line.strip() for line in top.splitlines() if line.strip())
        else:
            names.update(Path(str(f)).parts[0].removesuffix(".py") for f in dist.files or ()
                         if str(f).endswith((".py", ".so", ".pyd")) and ".dist-info" not in str(f))
        for req in dist.requires or ():
            if "extra ==" not in req.partition(";")[2]:
                todo.append(re.split(r"[\s;<>=!~\[(]", req, maxsplit=1)[0])
    return sorted(n for n in names if n.isidentifier() and not n.startswith("_"))


def build_id(package_dir: Path = PACKAGE_DIR, options: tuple[str, ...] = ()) -> str:
    """12 hex digits that change whenever anything that goes into the binary changes."""
    h = hashlib.sha256()
    for path in sorted(p for p in package_dir.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        h.update(path.relative_to(package_dir).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    # a set: the same distribution is listed once per sys.path entry that holds it, and a process may carry
    # an entry twice (pytest's ``pythonpath`` and a test's own insert), which must not change the id
    dists = sorted({f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions()})
    h.update("\n".join([sys.version, platform.platform(), *dists, *options]).encode())
    return h.hexdigest()[:12]


def cache_folder_name(bid: str) -> str:
    """The folder under ``<user cache dir>/llm-sidecar/`` that a build unpacks into."""
    return f"{__version__}-{bid}"


def numeric_version(version: str = __version__) -> str:
    """Nuitka's ``--product-version`` takes up to four numbers: ``0.1.0rc1`` -> ``0.1.0``."""
    match = re.match(r"\d+(\.\d+){0,3}", version)
    return match.group() if match else "0"


def nuitka_options(triple: str, with_local: bool = False) -> list[str]:
    """Everything on Nuitka's command line except the paths and the cache folder (those go into the build id).
    ``with_local``: bundle llama-cpp-python and llama.cpp's shared libraries (the ``local`` provider)."""
    version = numeric_version()
    args = [
        "--onefile", "--onefile-as-archive",  # per-file archive: a cached file is skipped, not decompressed
        "--onefile-cache-mode=cached",
        f"--output-filename={binary_name(triple)}",
        f"--product-name={NAME}", f"--company-name={NAME}",
        f"--product-version={version}", f"--file-version={version}",
        "--lto=no",  # link-time optimisation doubles the build time for no start-up gain here
        "--assume-yes-for-downloads",  # Windows: MinGW and the dependency walker
        "--include-distribution-metadata=keyring",  # keyring finds its backends through entry points
        "--remove-output",
        # Nuitka 4.3 crashes on a second build when bytecode-mode modules come from its cache.
        "--disable-cache=bytecode",
    ]
    # Compiling ~400 modules to C takes long on a small machine and starts no faster: keep the
    # sidecar and its dependencies as bytecode (the standard library already is), compile the entry.
    local = LOCAL_PACKAGES if with_local else ()
    args += [f"--noinclude-custom-mode={m}:bytecode" for m in sorted({"sidecar", *dependency_packages(), *local})]
    # Never pass --python-flag=-O/no_asserts: jsonrpcserver validates requests with assert.
    args += [f"--include-module={m}" for m in hidden_imports()]
    if with_local:
        args += ["--include-package=llama_cpp"]
    excludes = [m for m in EXCLUDES if not m.startswith("sidecar.") and not (with_local and m in local)]
    args += [f"--nofollow-import-to={m}" for m in [*excludes, *(LOCAL_EXCLUDES if with_local else ())]]
    return args


def nuitka_args(work: Path, triple: str, with_local: bool = False) -> list[str]:
    """The whole Nuitka command line after ``python -m nuitka``; it builds in and writes to ``work``."""
    entry = work / "llm_sidecar_entry.py"
    entry.write_text(ENTRY, encoding="utf-8")
    options = nuitka_options(triple, with_local)
    spec = "{CACHE_DIR}/" + NAME + "/" + cache_folder_name(build_id(options=tuple(options)))
    return [*options, f"--onefile-tempdir-spec={spec}", f"--output-dir={work}", str(entry)]


def build(output: Path, triple: str | None = None, with_local: bool = False) -> Path:
    """Build the one-file binary into ``output`` and return its path (``with_local``: with llama.cpp)."""
    if sys.flags.optimize:
        raise SystemExit("build-binary must not run under python -O: the binary would lose jsonrpcserver's checks")
    if importlib.util.find_spec("nuitka") is None:
        raise SystemExit("Nuitka is not installed: python3 -m pip install 'llm-sidecar[build]'")
    if sys.platform != "win32" and not (shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")):
        raise SystemExit("Nuitka needs a C compiler: install gcc (Debian/Ubuntu: apt-get install gcc)")
    if with_local and importlib.util.find_spec("llama_cpp") is None:
        raise SystemExit("--with-local needs llama-cpp-python: python3 -m pip install 'llm-sidecar[local]'")
    triple = triple or target_triple()
    output = output.resolve()
    output.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(PACKAGE_DIR.parent)}
    path = output / binary_name(triple)
    with tempfile.TemporaryDirectory(prefix="llm-sidecar-build-") as tmp:
        done = subprocess.run([sys.executable, "-m", "nuitka", *nuitka_args(Path(tmp), triple, with_local)],
                              cwd=tmp, env=env, check=False)
        built = Path(tmp) / binary_name(triple)
        if done.returncode != 0 or not built.is_file():
            raise SystemExit(f"Nuitka did not produce {built.name} (exit code {done.returncode})")
        shutil.move(built, path)  # replaces an older build only once this one is complete
    return path
