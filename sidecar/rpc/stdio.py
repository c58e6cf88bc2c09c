"""Newline-delimited framing over the process's stdin and stdout.

The transport only moves byte lines between file descriptors and the event loop; it
knows nothing of JSON-RPC. Reading happens in a daemon thread (portable across pipes,
files and terminals, and never keeps the process alive) that hands lines to the loop
without waiting for it; writing is done by one writer
so lines never interleave, with a high-water mark that makes producers wait while the
reader on the other end is slow.
"""

from __future__ import annotations

import asyncio
import collections
import os
import stat
import sys
import threading
from collections.abc import Callable
from typing import Final

import anyio
import anyio.to_thread

MAX_LINE: Final = 16 * 1024 * 1024


class Marker:
    """What the reader hands over in place of a line (a line too long, the end)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


LINE_TOO_LONG: Final = Marker("LINE_TOO_LONG")
"""Stands in for a line longer than the limit; its bytes are discarded, not buffered."""
_END: Final = Marker("END")


def protect_stdout() -> int:
    """Return a private fd for protocol output and point fd 1 at stderr.

    A stray ``print()`` in any dependency then lands on stderr instead of corrupting
    the protocol stream.
    """
    proto = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return proto


class LineReader:
    """Lines of ``fd``, read in a daemon thread and handed to the event loop without waiting for it.

    The thread passes each line with ``call_soon_threadsafe`` and goes back to reading at once (a
    blocking hand-off would make it and the loop take turns on every line). At most ``max_pending``
    lines wait for :meth:`receive`; beyond that the thread waits: backpressure. A last line without a
    trailing newline is still delivered.
    """

    def __init__(self, fd: int, *, max_line: int = MAX_LINE, max_pending: int = 64) -> None:
        self._fd = fd
        self._max_line = max_line
        self._pending: collections.deque[bytes | Marker] = collections.deque()
        self._slots = threading.Semaphore(max_pending)
        self._arrived = anyio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> threading.Thread:
        """Start reading; call from the event loop's thread."""
        self._loop = asyncio.get_running_loop()
        thread = threading.Thread(target=self._run, name="stdin-reader", daemon=True)
        thread.start()
        return thread

    async def receive(self) -> bytes | Marker | None:
        """The next line, or None at the end of the input."""
        while not self._pending:
            self._arrived = anyio.Event()
            await self._arrived.wait()
        item = self._pending.popleft()
        if item is _END:
            self._pending.appendleft(item)  # every later call sees the end too
            return None
        self._slots.release()
        return item

    def _arrive(self, item: bytes | Marker) -> None:  # in the loop's thread
        self._pending.append(item)
        self._arrived.set()

    def _deliver(self, item: bytes | Marker) -> bool:  # in the reader thread
        if item is not _END:
            self._slots.acquire()
        try:
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._arrive, item)
            return True
        except RuntimeError:  # the loop is closed
            return False

    def _run(self) -> None:
        fd, max_line = self._fd, self._max_line
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
                    item: bytes | Marker = LINE_TOO_LONG if overflow or len(buf) > max_line else bytes(buf)
                    buf.clear()
                    overflow = False
                    start = nl + 1
                    if not self._deliver(item):
                        return
            if overflow:
                self._deliver(LINE_TOO_LONG)
            elif buf.strip():
                self._deliver(bytes(buf))
        except OSError:
            pass
        finally:
            self._deliver(_END)


class LineWriter:
    """The single writer of protocol lines to ``fd``.

    ``write`` queues a line and returns at once unless more than ``high_water`` bytes are
    waiting, in which case it waits until the writer catches up. Lines queued while a
    write is in progress go out together in one system call.

    On a pipe or socket, a line that comes after a quiet spell (no line in this event-loop
    iteration nor the one before) is written at once, when nothing is queued before it: a
    first token must not wait until the task that produced it has also handled whatever else
    arrived with it. While lines keep coming, iteration after iteration, they are queued and
    go out together on the writer's turn, so a busy relay makes one system call for many lines.
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
        self._writing = False
        self._lines_now = False
        """a line came in this event-loop iteration"""
        self._lines_before = False
        """a line came in the iteration before"""
        self._ticking = False
        self.broken = False
        self.finished = anyio.Event()
        mode = os.fstat(fd).st_mode
        self._nonblocking = os.name == "posix" and (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode))
        if self._nonblocking:
            os.set_blocking(fd, False)

    async def write(self, line: bytes) -> None:
        if self.broken or self._closed:
            return
        quiet = not (self._lines_now or self._lines_before)
        self._lines_now = True
        if not self._ticking:
            self._ticking = True
            asyncio.get_running_loop().call_soon(self._tick)
        if quiet and self._nonblocking and not self._buf and not self._writing:
            line = self._write_now(line)
            if not line:
                return
        self._buf.append(line)
        self._size += len(line)
        self._wake.set()
        if self._size > self._high_water:
            if self._space.is_set():
                self._space = anyio.Event()
            await self._space.wait()

    def _tick(self) -> None:
        """Runs once per event-loop iteration while lines keep coming."""
        self._lines_before, self._lines_now = self._lines_now, False
        if self._lines_before:
            asyncio.get_running_loop().call_soon(self._tick)
        else:
            self._ticking = False

    def _write_now(self, line: bytes) -> bytes:
        """Write what the pipe takes without waiting; return the rest."""
        try:
            return line[os.write(self._fd, line) :]
        except BlockingIOError:
            return line
        except OSError:
            self._broke()
            return b""

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
                self._writing = True
                try:
                    await self._write_all(data)
                finally:
                    self._writing = False
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
            self._broke()

    def _broke(self) -> None:
        self.broken = True
        self._buf.clear()
        self._wake.set()
        if self._on_broken is not None:
            self._on_broken()


def _write_blocking(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
