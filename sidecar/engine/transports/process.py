"""A child program per request, speaking JSON lines on stdout (the ``claude`` command-line program).

The protocol says what to run (``ProcessRequest``: argv, the child's whole environment, stdin); this module
runs it in its own process group with an empty temp dir as its working directory, writes stdin and closes
it, decodes stdout lines (each bounded by ``max_event_bytes``) through the protocol's decoder, keeps the
last 64 KiB of stderr for the log, and applies the first-byte and idle timers to stdout's bytes. On abort,
timeout or any other end before the child exits: SIGTERM to the whole group, SIGKILL to the group 1 s
later, then the child is reaped, so nothing it started is left behind.

Windows: the child gets its own process group (``CREATE_NEW_PROCESS_GROUP``) and is terminated, then
killed; its grandchildren are not (a job object would do that: not done yet).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import anyio
import msgspec

from ...errors import SidecarError
from ...policy import Policy
from ...protocols.base import ProcessRequest
from ...tokens import OutputTally
from ...types import DoneEvent, UsageEvent
from ..request import Options, Prepared, RunState
from ..watchdog import Watchdog
from .wire import CountUsage, Protocols, WireTransport

log = logging.getLogger("sidecar.engine")

STDERR_TAIL = 64 * 1024
"""bytes of the child's stderr kept (for the log and the protocol's error mapping)"""
KILL_AFTER_S = 1.0
"""from SIGTERM to SIGKILL"""
READ_CHUNK = 64 * 1024


class ProcessTransport(WireTransport):
    kind = "process"
    request_type = ProcessRequest

    async def attempt(self, target: Prepared, run: RunState, policy: Policy) -> DoneEvent:
        provider = target.provider
        protocol = target.protocol
        request = target.request
        assert protocol is not None and isinstance(request, ProcessRequest)
        decoding = self.decoding(target, "ndjson")
        decoder = decoding.decoder
        tally = OutputTally()
        emit = run.emit
        cwd = request.cwd or tempfile.mkdtemp(prefix="llm-sidecar-")
        stderr = bytearray()
        status: int | None = None
        try:
            proc = await _spawn(request, cwd, provider.id)
            if self.options.log_requests:
                log.info("process started", extra={"fields": {
                    "provider": provider.id, "model": target.model_ref, "pid": proc.pid,
                    "program": os.path.basename(request.argv[0]), "stdin_bytes": len(request.stdin)}})
            scope = anyio.CancelScope()
            watchdog = Watchdog(scope, policy.first_byte, policy.idle)
            stderr_done = anyio.Event()
            helpers = [asyncio.ensure_future(_write_stdin(proc, request.stdin)),
                       asyncio.ensure_future(_keep_tail(proc, stderr, stderr_done))]
            try:
                with scope:
                    assert proc.stdout is not None
                    read = proc.stdout.read
                    while not decoder.complete and (chunk := await read(READ_CHUNK)):
                        watchdog.beat()
                        for name, data in decoding.frames(chunk):
                            for event in decoding.message(name, data):
                                tally.add(event)
                                await emit(event)
                    for name, data in decoding.last_frames():
                        for event in decoding.message(name, data):
                            tally.add(event)
                            await emit(event)
                    if decoder.complete:  # the answer is whole: a program that lingers is stopped below
                        with anyio.move_on_after(KILL_AFTER_S):
                            status = await proc.wait()
                    else:
                        status = await proc.wait()
                        with anyio.move_on_after(KILL_AFTER_S):  # the rest of stderr, for the error below
                            await stderr_done.wait()
            finally:
                watchdog.close()
                with anyio.CancelScope(shield=True):
                    await end_group(proc)
                    for task in helpers:
                        task.cancel()
                    await asyncio.gather(*helpers, return_exceptions=True)
                if stderr:
                    log.debug("%s: the program's stderr ended with: %s", provider.id,
                              bytes(stderr[-2048:]).decode("utf-8", "replace"))
        finally:
            if request.cwd is None:
                shutil.rmtree(cwd, ignore_errors=True)
        if watchdog.fired is not None:
            raise SidecarError("timeout", f"{provider.id}: {watchdog.why(policy, decoding.pending)}",
                               provider=provider.id)
        if not decoder.complete:
            assert status is not None  # the program ended: nothing else leaves the answer incomplete here
            if protocol.map_process_error is not None:
                raise protocol.map_process_error(status, bytes(stderr), provider.id)
            raise SidecarError("upstream_unavailable", f"{provider.id}: the program exited with status {status} "
                               "before the end of its answer", provider=provider.id, retryable=False)
        for event in decoding.end():
            tally.add(event)
            await emit(event)
        usage = decoder.usage
        if usage is None:
            usage = await self.count_usage(target, tally, {})
        await emit(UsageEvent(**msgspec.structs.asdict(usage)))
        done = run.done(decoder.finish_reason or "other", usage, target)
        metadata = getattr(decoder, "provider_metadata", None)  # e.g. claude-code's session id
        if isinstance(metadata, dict) and metadata:
            done.provider_metadata = metadata
        return done


async def _spawn(request: ProcessRequest, cwd: str, provider: str) -> asyncio.subprocess.Process:
    """The child in its own process group; a program that is not there (or may not run) is not installed."""
    try:
        return await asyncio.create_subprocess_exec(
            *request.argv, env=request.env, cwd=cwd, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, **own_group())  # type: ignore[arg-type]
    except (FileNotFoundError, PermissionError):
        name = os.path.basename(request.argv[0]) if request.argv else "the program"
        raise SidecarError("provider_not_installed", f"{provider}: {name} is not installed (or may not be run)",
                           provider=provider) from None


def own_group() -> dict[str, object]:
    """``subprocess`` options that start a child in its own process group (``end_group`` stops it all)."""
    if sys.platform == "win32":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


async def _write_stdin(proc: asyncio.subprocess.Process, data: bytes) -> None:
    """All of stdin, then closed: a program reading its input waits for the end of it."""
    assert proc.stdin is not None
    try:
        if data:
            proc.stdin.write(data)
            await proc.stdin.drain()
        proc.stdin.close()
        await proc.stdin.wait_closed()
    except (BrokenPipeError, ConnectionResetError):
        pass  # it ended (or closed stdin) without reading it all: its exit status says what happened


async def _keep_tail(proc: asyncio.subprocess.Process, tail: bytearray, done: anyio.Event) -> None:
    assert proc.stderr is not None
    while chunk := await proc.stderr.read(READ_CHUNK):
        tail += chunk
        if len(tail) > STDERR_TAIL:
            del tail[: len(tail) - STDERR_TAIL]
    done.set()


async def end_group(proc: asyncio.subprocess.Process) -> None:
    """Stop the child and everything it started, unless it ended on its own: SIGTERM to the group, SIGKILL
    to the group after ``KILL_AFTER_S``; then reap it."""
    if proc.returncode is None:
        signal_group(proc, signal.SIGTERM)
        with anyio.move_on_after(KILL_AFTER_S):
            await proc.wait()
        if proc.returncode is None:
            signal_group(proc, signal.SIGKILL)
    else:
        signal_group(proc, signal.SIGKILL)  # it exited: anything it left running in its group goes too
    await proc.wait()


def signal_group(proc: asyncio.subprocess.Process, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
        if sys.platform == "win32":
            proc.terminate() if sig == signal.SIGTERM else proc.kill()
        else:
            os.killpg(proc.pid, sig)


def build(protocols: Protocols, options: Options, count_usage: CountUsage) -> ProcessTransport:
    return ProcessTransport(protocols, options, count_usage)
