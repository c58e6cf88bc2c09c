"""Newline-delimited framing over the process's stdin and stdout.

The transport only moves byte lines between file descriptors and the event loop; it
knows nothing of JSON-RPC. Reading happens in a daemon thread (portable across pipes,
files and terminals, and never keeps the process alive); writing is done by one writer
so lines never interleave, with a high-water mark that makes producers wait while the
reader on the other end is slow.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import threading
from collections.abc import Callable
from typing import Final

import anyio
import anyio.from_thread
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectSendStream

MAX_LINE: Final = 16 * 1024 * 1024


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


LINE_TOO_LONG: Final = _Marker("LINE_TOO_LONG")
"""Stands in for a line longer than the limit; its bytes are discarded, not buffered."""


def protect_stdout() -> int:
    """Return a private fd for protocol output and point fd 1 at stderr.

    A stray ``print()`` in any dependency then lands on stderr instead of corrupting
    the protocol stream.
    """
    proto = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return proto


def start_reader(
    fd: int, send: MemoryObjectSendStream[bytes | _Marker], *, max_line: int = MAX_LINE
) -> threading.Thread:
    """Read lines from ``fd`` in a daemon thread and hand them to ``send``; close it at EOF.

    The bounded stream gives backpressure: the thread waits while the loop is busy.
    A last line without a trailing newline is still delivered.
    """
    token = anyio.lowlevel.current_token()

    def deliver(item: bytes | _Marker) -> bool:
        try:
            anyio.from_thread.run(send.send, item, token=token)
            return True
        except Exception:  # the loop is gone or no longer listening
            return False

    def run() -> None:
        buf = bytearray()
        overflow = False
        try:
            while True:
                try:
                    chunk = os.read(fd, 1 << 16)
                except InterruptedError:
                    continue
                if not chunk:
                    break
                start = 0
                while True:
                    nl = chunk.find(b"\n", start)
                    if nl < 0:
                        if not overflow:
                            buf += chunk[start:]
                            if len(buf) > max_line:
                                overflow = True
                                buf.clear()
                        break
                    if not overflow:
                        buf += chunk[start:nl]
                    item: bytes | _Marker = LINE_TOO_LONG if overflow or len(buf) > max_line else bytes(buf)
                    buf.clear()
                    overflow = False
                    start = nl + 1
                    if not deliver(item):
                        return
            if overflow:
                deliver(LINE_TOO_LONG)
            elif buf.strip():
                deliver(bytes(buf))
        except OSError:
            pass
        finally:
            with contextlib.suppress(Exception):
                anyio.from_thread.run_sync(send.close, token=token)

    thread = threading.Thread(target=run, name="stdin-reader", daemon=True)
    thread.start()
    return thread


class LineWriter:
    """The single writer of protocol lines to ``fd``.

    ``write`` queues a line and returns at once unless more than ``high_water`` bytes are
    waiting, in which case it waits until the writer catches up. Lines queued while a
    write is in progress go out together in one system call.
    """

    def __init__(
        self, fd: int, *, on_broken: Callable[[], None] | None = None, high_water: int = 1 << 20
    ) -> None:
        self._fd = fd
        self._on_broken = on_broken
        self._high_water = high_water
        self._buf: list[bytes] = []
        self._size = 0
        self._wake = anyio.Event()
        self._space = anyio.Event()
        self._space.set()
        self._closed = False
        self.broken = False
        self.finished = anyio.Event()
        mode = os.fstat(fd).st_mode
        self._nonblocking = os.name == "posix" and (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode))
        if self._nonblocking:
            os.set_blocking(fd, False)

    async def write(self, line: bytes) -> None:
        if self.broken or self._closed:
            return
        self._buf.append(line)
        self._size += len(line)
        self._wake.set()
        if self._size > self._high_water:
            if self._space.is_set():
                self._space = anyio.Event()
            await self._space.wait()

    def close(self) -> None:
        """No more lines; ``run`` returns once the queued ones are written."""
        self._closed = True
        self._wake.set()

    async def run(self) -> None:
        try:
            while not self.broken:
                if not self._buf:
                    if self._closed:
                        return
                    await self._wake.wait()
                    self._wake = anyio.Event()
                    continue
                data = b"".join(self._buf)
                self._buf.clear()
                self._size = 0
                self._space.set()
                await self._write_all(data)
        finally:
            self._space.set()
            self.finished.set()

    async def _write_all(self, data: bytes) -> None:
        try:
            if self._nonblocking:
                view = memoryview(data)
                while view:
                    try:
                        view = view[os.write(self._fd, view) :]
                    except BlockingIOError:
                        await anyio.wait_writable(self._fd)
            else:
                await anyio.to_thread.run_sync(_write_blocking, self._fd, data, abandon_on_cancel=True)
        except OSError:  # EPIPE and friends: the reader is gone
            self.broken = True
            self._buf.clear()
            if self._on_broken is not None:
                self._on_broken()


def _write_blocking(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
