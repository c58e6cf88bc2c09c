"""Files in the data dir: owner-only modes, an exclusive lock between processes, and the error a
failed write becomes.

The data dir is created 0700 and every file the sidecar creates in it 0600, whatever the umask.
The lock is a file beside the data it guards, locked with ``fcntl.flock`` on POSIX and
``msvcrt.locking`` on Windows; two sidecars on one data dir (two app windows) take turns.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import SidecarError

LOCK_TIMEOUT = 10.0
"""seconds to wait for another process to let go of a lock before the write fails"""


def storage_error(path: Path, exc: OSError, doing: str = "save") -> SidecarError:
    """``storage_error`` naming the file and the operating system's reason, e.g. "No space left on device"."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    return SidecarError("storage_error", f"Could not {doing} {path}: {reason}")


def private_dir(path: Path) -> None:
    """Create ``path`` (and its parents) if missing; the data dir itself gets mode 0700.
    An existing folder keeps its mode: it may be one the user chose and shares."""
    if path.is_dir():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        return
    if os.name == "posix":
        os.chmod(path, 0o700)  # mkdir's mode is narrowed by the umask; this makes it exact


def private_file(path: Path) -> None:
    """Make sure ``path`` exists with mode 0600 (an older, wider one is narrowed), before a library
    that would create it with the umask's mode (SQLite) opens it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        narrow(fd)
    finally:
        os.close(fd)


def narrow(fd: int) -> None:
    """Mode 0600 for an open file the sidecar owns (no-op on Windows, where modes mean little)."""
    if os.name == "posix" and os.fstat(fd).st_mode & 0o777 != 0o600:
        os.fchmod(fd, 0o600)


@contextlib.contextmanager
def locked(lock_path: Path, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` (created 0600 when missing) for the ``with`` block.

    Raises OSError when the lock file cannot be opened, TimeoutError when another process holds
    the lock longer than ``timeout``."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        narrow(fd)
        _acquire(fd, timeout)
        try:
            yield
        finally:
            _release(fd)
    finally:
        os.close(fd)


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, 0, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _release(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _release(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _acquire(fd: int, timeout: float) -> None:
    """Poll rather than block, so a process that hangs holding the lock costs a clear error, not a hang."""
    deadline = time.monotonic() + timeout
    pause = 0.0005
    while not _try_lock(fd):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"another process held the lock for {timeout:g} s")
        time.sleep(pause)
        pause = min(pause * 2, 0.02)
