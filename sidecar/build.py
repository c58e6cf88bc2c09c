"""``llm-sidecar build-binary``: one self-contained executable for Tauri's ``externalBin``.

Tauri looks for ``<name>-<rust target triple>[.exe]`` next to the app, so the file is named that way.
PyInstaller's static analysis misses what the sidecar imports by name (the protocol modules, anyio's
backend, keyring's backends found through entry points), so those are listed here; modules the sidecar
never uses are excluded so the one-file archive stays small and unpacks fast at every start.
Imported only by the ``build-binary`` sub-command: PyInstaller is an optional ``build`` extra.
"""

from __future__ import annotations

import platform
import sys
import tempfile
from pathlib import Path

NAME = "llm-sidecar"
PACKAGE_DIR = Path(__file__).resolve().parent

# Imported by name or found through metadata at run time, so PyInstaller cannot see them.
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
    "venv", "xmlrpc", "curses", "_curses", "readline", "sidecar.build", "PyInstaller",
    "pytest", "_pytest", "hypothesis", "mypy", "ruff", "openai", "pydantic", "IPython", "numpy",
    "watchfiles", "websockets", "wsproto", "uvloop", "httptools", "dotenv", "yaml", "trio", "curio",
    "httpx._main", "rich", "pygments", "PIL", "markdown_it",  # httpx's command line, not its client
)

# Package data read at run time (jsonrpcserver reads request-schema.json at import).
DATA_PACKAGES = ("jsonrpcserver", "msgspec", "certifi")

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


def pyinstaller_args(output: Path, work: Path, triple: str) -> list[str]:
    """The PyInstaller command line (without the program name)."""
    entry = work / "llm_sidecar_entry.py"
    entry.write_text(ENTRY, encoding="utf-8")
    args = [
        str(entry), "--onefile", "--noconfirm", "--console", "--log-level", "WARN",
        "--name", binary_name(triple).removesuffix(".exe"),
        "--distpath", str(output), "--workpath", str(work / "build"), "--specpath", str(work),
        "--paths", str(PACKAGE_DIR.parent),
        "--optimize", "0",  # never strip asserts: jsonrpcserver validates with them
    ]
    if sys.platform != "win32":
        args.append("--strip")
    for module in hidden_imports():
        args += ["--hidden-import", module]
    for module in EXCLUDES:
        args += ["--exclude-module", module]
    for package in DATA_PACKAGES:
        args += ["--collect-data", package]
    args += ["--copy-metadata", "keyring"]  # keyring finds its backends through entry points
    return args


def build(output: Path, triple: str | None = None) -> Path:
    """Build the one-file binary into ``output`` and return its path."""
    if sys.flags.optimize:
        raise SystemExit("build-binary must not run under python -O: the binary would lose jsonrpcserver's checks")
    try:
        import PyInstaller.__main__
    except ImportError:
        raise SystemExit("PyInstaller is not installed: pip install 'llm-sidecar[build]'") from None
    triple = triple or target_triple()
    output = output.resolve()
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="llm-sidecar-build-") as tmp:
        PyInstaller.__main__.run(pyinstaller_args(output, Path(tmp), triple))
    path = output / binary_name(triple)
    if not path.is_file():
        raise SystemExit(f"PyInstaller did not produce {path}")
    return path
