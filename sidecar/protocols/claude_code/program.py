"""Finding the ``claude`` program and checking its version (the protocol's ``check`` hook).

Where it is looked for, first found wins: the program the app set on its trusted side (``--claude-path``,
then ``CLAUDE_CODE_PATH``: ``Provider.program``), then ``claude`` on ``PATH``. For ``claude-desktop``, the copy
of Claude Code the Claude desktop app keeps for itself (its newest version folder):

- macOS: ``~/Library/Application Support/Claude/claude-code/<version>/claude.app/Contents/MacOS/claude``
- Windows: ``%APPDATA%\\Claude\\claude-code\\<version>\\claude.exe``
- Linux (no official desktop app; the same layout under the Electron data folder, if one is there):
  ``$XDG_CONFIG_HOME/Claude/claude-code/<version>/claude``

(Public reports: anthropics/claude-code#43902 for macOS, open-webui/computer#157 for Windows; the desktop app
replaces the version folder on each update, so it is looked up afresh on each check.) That copy shares
``~/.claude`` with the standalone program, so it uses the desktop app's sign-in.

``claude --version`` runs once per program file (its path, size and modification time): an update is noticed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ...errors import SidecarError
from ...providers import Provider
from ...providers.catalog import CLAUDE_CODE_MIN_VERSION

INSTALL = "npm install -g @anthropic-ai/claude-code"
DESKTOP = "claude-desktop"
VERSION_TIMEOUT_S = 15.0
_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)")


@dataclass(frozen=True)
class Found:
    path: str
    version: tuple[int, int, int]


_checked: dict[tuple[str, int, int], tuple[int, int, int]] = {}
"""(path, size, mtime_ns) -> the version it printed"""


def parse_version(text: str) -> tuple[int, int, int] | None:
    m = _VERSION.search(text)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


MIN_VERSION = parse_version(CLAUDE_CODE_MIN_VERSION) or (0, 0, 0)


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _version_key(p: Path) -> tuple[int, ...]:
    v = parse_version(p.name)
    return v if v else (-1,)


def desktop_program(home: Path | None = None, environ: dict[str, str] | None = None) -> str | None:
    """The Claude Code program the Claude desktop app installed for itself (its newest version), or None."""
    env = os.environ if environ is None else environ
    home = home or Path.home()
    if sys.platform == "darwin":
        root, inner = home / "Library" / "Application Support" / "Claude" / "claude-code", \
            Path("claude.app", "Contents", "MacOS", "claude")
    elif sys.platform == "win32":
        appdata = env.get("APPDATA")
        if not appdata:
            return None
        root, inner = Path(appdata) / "Claude" / "claude-code", Path("claude.exe")
    else:
        config = env.get("XDG_CONFIG_HOME") or str(home / ".config")
        root, inner = Path(config) / "Claude" / "claude-code", Path("claude")
    try:
        versions = sorted((p for p in root.iterdir() if p.is_dir()), key=_version_key, reverse=True)
    except OSError:
        return None
    for folder in versions:
        if _executable(folder / inner):
            return str(folder / inner)
    return None


def _not_installed(provider: Provider, why: str) -> SidecarError:
    if provider.id == DESKTOP:
        message = (f"{provider.id}: {why}. Claude Desktop has no API of its own: this provider runs the Claude Code "
                   f"program the desktop app installs (open Claude Desktop's Code tab once), or install it "
                   f"yourself with `{INSTALL}` and use the claude-code provider")
    else:
        message = (f"{provider.id}: {why}. Install it with `{INSTALL}` (then run `claude` once to sign in), or "
                   f"have the app pass its path with --claude-path PATH (or CLAUDE_CODE_PATH)")
    return SidecarError("provider_not_installed", message, provider=provider.id)


def locate(provider: Provider) -> str:
    """The absolute path of the program to run for ``provider``; ``provider_not_installed`` when there is none."""
    program = provider.program
    if program:
        if os.sep in program or (os.altsep and os.altsep in program):
            path = Path(program).expanduser()
            if _executable(path):
                return str(path.absolute())
            raise _not_installed(provider, f"the Claude Code program the app named ({program}) is not there "
                                           "or may not be run")
        found = shutil.which(program)
        if found:
            return os.path.abspath(found)
        raise _not_installed(provider, f"{program!r} is not on the PATH")
    if provider.id == DESKTOP:
        found = desktop_program()
        if found:
            return found
        raise _not_installed(provider, "the Claude desktop app's Claude Code program was not found")
    found = shutil.which("claude")
    if found:
        return os.path.abspath(found)
    raise _not_installed(provider, "the Claude Code program (claude) is not on the PATH")


async def program_version(path: str) -> tuple[int, int, int] | None:
    """What ``path --version`` prints, once per file version; None when it printed no version."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (path, st.st_size, st.st_mtime_ns)
    if key in _checked:
        return _checked[key]
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "USERPROFILE", "SYSTEMROOT", "APPDATA")}
    env.update({"DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"})
    try:
        proc = await asyncio.create_subprocess_exec(
            path, "--version", stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL, env=env)
    except OSError:
        return None
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), VERSION_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return None
    version = parse_version(out.decode("utf-8", "replace"))
    if version is not None:
        _checked[key] = version
    return version


def workdir() -> str:
    """The working folder of every run: one empty folder the sidecar owns, not one per request, because the
    program files each session under a folder named for its working directory (``~/.claude/projects/``)."""
    owner = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    return os.path.join(tempfile.gettempdir(), f"llm-sidecar-claude-code-{owner}")


def _make_workdir() -> None:
    """Create ``workdir()`` private to this user; refuse one that is a link or someone else's."""
    path = workdir()
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    st = os.lstat(path)
    mine = not hasattr(os, "getuid") or st.st_uid == os.getuid()
    if not stat.S_ISDIR(st.st_mode) or not mine:
        raise SidecarError("internal", f"claude-code: {path} is not a folder of this user's; remove it")


async def check(provider: Provider) -> None:
    """Before each request: the program is there and new enough (its version is asked once per file)."""
    _make_workdir()
    path = locate(provider)
    version = await program_version(path)
    if version is None:
        raise _not_installed(provider, f"{path} did not say which version it is (`claude --version`)")
    if version < MIN_VERSION:
        found = ".".join(map(str, version))
        raise SidecarError(
            "provider_not_installed",
            f"{provider.id}: Claude Code {found} is too old (at {path}); this provider needs "
            f"{CLAUDE_CODE_MIN_VERSION} or newer: update it with `{INSTALL}` (or `claude update`)",
            provider=provider.id)
