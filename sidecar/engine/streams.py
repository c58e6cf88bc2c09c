"""Streams by id: reserve one (abort works from that moment), abort it, and run its work to exactly one end.

``run_to_terminal`` is the one place a stream's lifecycle is written: the work runs in the reserved scope,
the id is released, and the end (the work's result, its error, ``internal``, or ``cancelled`` when it was
aborted or the sidecar is shutting down) is delivered exactly once, shielded from cancellation. Streams,
tool loops and ``complete_chat`` with a ``stream_id`` all go through it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

from ..errors import SidecarError
from ..types import TERMINAL_EVENTS, Event

log = logging.getLogger("sidecar.engine")

T = TypeVar("T")


class EventSink:
    """Numbers a stream's events and stops after the terminal one.

    With ``after``, the first event waits for it (the response that started the stream is out), so the
    work behind the stream, e.g. connecting upstream, starts at once and overlaps the response.
    """

    __slots__ = ("after", "closed", "method", "notify", "seq", "stream_id")

    def __init__(self, stream_id: str, notify: Callable[[str, Any], Awaitable[None]],
                 after: anyio.Event | None = None) -> None:
        self.stream_id = stream_id
        self.method = f"llm-stream-{stream_id}"
        self.notify = notify
        self.after = after
        self.seq = 0
        self.closed = False

    async def emit(self, event: Event) -> None:
        if self.closed:
            return
        if self.after is not None:
            with anyio.CancelScope(shield=isinstance(event, TERMINAL_EVENTS)):
                await self.after.wait()
            self.after = None
        event.stream_id = self.stream_id
        event.seq = self.seq
        self.seq += 1
        if isinstance(event, TERMINAL_EVENTS):
            self.closed = True
        await self.notify(self.method, event)


def stream_id_of(given: object) -> str:
    """The request's ``stream_id``, or a fresh one."""
    stream_id = given if isinstance(given, str) else uuid.uuid4().hex
    if not stream_id or len(stream_id) > 128:
        raise SidecarError("invalid_request", "stream_id must be 1 to 128 characters")
    return stream_id


class Streams:
    """The running streams' cancel scopes, by stream id."""

    def __init__(self) -> None:
        self._scopes: dict[str, anyio.CancelScope] = {}

    def reserve(self, stream_id: str) -> anyio.CancelScope:
        """Claim a stream id; abort works from this moment on."""
        if stream_id in self._scopes:
            raise SidecarError("invalid_request", f"stream {stream_id!r} is already running")
        scope = self._scopes[stream_id] = anyio.CancelScope()
        return scope

    def release(self, stream_id: str) -> None:
        self._scopes.pop(stream_id, None)

    def abort(self, stream_id: str) -> bool:
        scope = self._scopes.get(stream_id)
        if scope is None:
            return False
        scope.cancel()
        return True

    async def run_to_terminal(
        self, stream_id: str, scope: anyio.CancelScope, work: Callable[[], Awaitable[T]],
        end: Callable[[T | SidecarError], Awaitable[None]], what: str = "stream",
    ) -> None:
        """Run ``work`` in the reserved ``scope``, release the id, and hand ``end`` exactly one outcome:
        the work's result or the error that ended it (``what`` names it in the ``cancelled`` message)."""
        outcome: T | SidecarError | None = None
        try:
            with scope:
                outcome = await work()
        except SidecarError as exc:
            outcome = exc
        except Exception:
            log.exception("%s %s failed", what, stream_id)
            outcome = SidecarError("internal", "internal error in the sidecar")
        finally:
            self.release(stream_id)
            if outcome is None:
                outcome = SidecarError("cancelled", f"the {what} was cancelled")
            with anyio.CancelScope(shield=True):
                await end(outcome)
