"""A model running inside the sidecar: the protocol's blocking generator (``LocalRequest.generate``) runs in
a worker thread and its events cross to the event loop through a small bounded queue.

Abort (or a timeout) sets a flag the worker checks after every event, so generation stops at the next
token; the attempt then waits (shielded, at most ``STOP_WAIT_S``) for the worker to close the generator,
so the model is free when the next request comes. The event loop never blocks on the model.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import Any

import anyio
import msgspec

from ...errors import SidecarError
from ...policy import Policy
from ...protocols.base import LocalRequest
from ...tokens import OutputTally
from ...types import DoneEvent, Event, UsageEvent
from ..request import Prepared, RunState
from ..watchdog import Watchdog
from .wire import WireTransport

log = logging.getLogger("sidecar.engine")

AHEAD = 64
"""events the worker may produce before the event loop has taken them"""
STOP_WAIT_S = 5.0
"""how long an ended attempt waits for its worker to stop (a model stuck in one token is left to finish)"""


class LocalTransport(WireTransport):
    kind = "local"
    request_type = LocalRequest

    async def attempt(self, target: Prepared, run: RunState, policy: Policy) -> DoneEvent:
        provider = target.provider
        request = target.request
        assert isinstance(request, LocalRequest)
        worker = _Worker(request, asyncio.get_running_loop(), provider.id)
        tally = OutputTally()
        emit = run.emit
        scope = anyio.CancelScope()
        watchdog = Watchdog(scope, policy.first_byte, policy.idle)
        end: Any = None
        worker.start()
        try:
            with scope:
                while True:
                    kind, value = await worker.queue.get()
                    watchdog.beat()
                    if kind == "event":
                        worker.room.release()
                        tally.add(value)
                        await emit(value)
                    elif kind == "done":
                        end = value
                        break
                    else:
                        raise value
        finally:
            watchdog.close()
            worker.stop.set()
            worker.room.release()  # a worker waiting for room sees the stop at once
            with anyio.CancelScope(shield=True), anyio.move_on_after(STOP_WAIT_S):
                await worker.finished.wait()
            if not worker.finished.is_set():
                log.warning("%s: the local model did not stop within %g s", provider.id, STOP_WAIT_S)
        if watchdog.fired is not None:
            raise SidecarError("timeout", f"{provider.id}: {watchdog.why(policy, False)}", provider=provider.id)
        finish, usage = end
        if usage is None:
            usage = await self.count_usage(target, tally, {})
        await emit(UsageEvent(**msgspec.structs.asdict(usage)))
        return run.done(finish, usage, target)


class _Worker:
    """One generation in its own thread: ("event", e)... then ("done", (finish, usage)) or ("error", exc)."""

    def __init__(self, request: LocalRequest, loop: asyncio.AbstractEventLoop, provider: str) -> None:
        self.request = request
        self.loop = loop
        self.provider = provider
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.room = threading.Semaphore(AHEAD)
        self.stop = threading.Event()
        self.finished = asyncio.Event()

    def start(self) -> None:
        threading.Thread(target=self._run, name=f"local-{self.provider}", daemon=True).start()

    def _put(self, item: tuple[str, Any]) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: the sidecar is shutting down
            self.stop.set()

    def _run(self) -> None:
        generator = None
        try:
            generator = self.request.generate()
            while not self.stop.is_set():
                try:
                    event: Event = next(generator)
                except StopIteration as done:
                    self._put(("done", done.value))
                    return
                while not self.room.acquire(timeout=0.05):
                    if self.stop.is_set():
                        return
                if self.stop.is_set():
                    return
                self._put(("event", event))
        except SidecarError as exc:
            self._put(("error", exc))
        except Exception as exc:
            log.exception("%s: the local model failed", self.provider)
            self._put(("error", SidecarError("internal", f"{self.provider}: the local model failed "
                                             f"({type(exc).__name__})", provider=self.provider)))
        finally:
            if generator is not None:
                try:
                    generator.close()
                except Exception:
                    log.debug("closing the local generator failed", exc_info=True)
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self.finished.set)
