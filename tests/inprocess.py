"""The sidecar served inside the test process, over two OS pipes: for tests of the RPC layer, where a
child process adds only its start-up time. The same App, RpcServer, line reader and writer as
``python -m sidecar``; what is left out is what only a process has (the stdout guard, signals, the exit
deadline, the command line). Tests of those keep using ``harness.Sidecar``.

Unlike harness.py this module imports the sidecar package: it builds the App the way the command does.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import pytest
from harness import SCRUB, TEST_ENV, Sidecar


@contextmanager
def sidecar_environment() -> Iterator[None]:
    """What ``harness.sidecar_env`` gives a child, given to this process while a test serves in it."""
    import keyring
    import keyring.backends.null

    with pytest.MonkeyPatch.context() as mp:
        for name in SCRUB:
            mp.delenv(name, raising=False)
        for name, value in TEST_ENV.items():
            mp.setenv(name, value)
        previous = keyring.get_keyring()
        keyring.set_keyring(keyring.backends.null.Keyring())  # keyring keeps the backend it chose first
        try:
            yield
        finally:
            keyring.set_keyring(previous)


class ServingThread:
    """Looks like the ``Popen`` of ``python -m sidecar`` (stdin, stdout, stderr, poll, wait, kill) but is an
    App serving in a thread of this process."""

    def __init__(self, data_dir: Path, *, drain_timeout: float = 10.0) -> None:
        from sidecar.app import App

        self.app = App(data_dir, "llm-sidecar-test")
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, self._err_w = os.pipe()
        self.stdin = os.fdopen(in_w, "wb")
        self.stdout = os.fdopen(out_r, "rb")
        self.stderr = os.fdopen(err_r, "rb")
        self.returncode: int | None = None
        self.pid = os.getpid()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, args=(in_r, out_w, drain_timeout), daemon=True)
        self._thread.start()

    def _run(self, in_fd: int, out_fd: int, drain_timeout: float) -> None:
        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            await self.app.serve(drain_timeout=drain_timeout, parent_pid=None, pipes=(in_fd, out_fd))

        status = 0
        try:
            anyio.run(serve, backend="asyncio")
        except BaseException:
            status = 1
            os.write(self._err_w, traceback.format_exc().encode())
        finally:
            for fd in (out_fd, self._err_w):
                os.close(fd)
            # The line reader may still be reading in_fd: end its input and let it finish before the fd
            # number is freed, or it could go on reading from whatever file gets that number next (the
            # self-pipe of another test's event loop: lost wake-ups, hung tests). Still busy: leak the fd.
            with suppress(OSError):
                self.stdin.close()
            reader = self.app.rpc.reader_thread if self.app.rpc is not None else None
            if reader is not None:
                reader.join(5)
            if reader is None or not reader.is_alive():
                os.close(in_fd)
            self.returncode = status

    def poll(self) -> int | None:
        return None if self._thread.is_alive() else self.returncode

    def wait(self, timeout: float | None = None) -> int:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise subprocess.TimeoutExpired("in-process sidecar", timeout or 0)
        assert self.returncode is not None
        return self.returncode

    def kill(self) -> None:
        """Stop serving at once, as a signal would: the input ends and every task is cancelled."""
        if not self.stdin.closed:
            self.stdin.close()
        server, loop = self.app.rpc, self._loop
        if server is not None and loop is not None and self._thread.is_alive():
            # Not waited for: the loop may end before it runs this (it is ending anyway).
            with suppress(RuntimeError):  # the loop is closed already
                loop.call_soon_threadsafe(server.stop)
        self._thread.join(10)


class InProcessSidecar(Sidecar):
    """``harness.Sidecar``'s whole interface, served in this process (see the module's docstring)."""

    def __init__(self, data_dir: Path) -> None:
        self.proc: Any = ServingThread(data_dir)
        self.listen()
