"""The first-byte and idle timers of one attempt, for every transport that waits on bytes."""

from __future__ import annotations

import asyncio
from typing import Literal

import anyio

from ..policy import Policy


class Watchdog:
    """Cancels an attempt when the first byte of its body, or the next one, is late.

    Counts bytes, not messages: a slow but live upstream in the middle of a big event is not idle.
    A loop timer rather than a task or a moving deadline: each chunk costs one clock read.
    """

    def __init__(self, scope: anyio.CancelScope, first_byte: float, idle: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._scope = scope
        self._idle = idle
        self._last: float | None = None
        self.status: int | None = None
        """the answer's HTTP status, once its headers arrived"""
        self.fired: Literal["first_byte", "idle"] | None = None
        self._handle = self._loop.call_at(self._loop.time() + first_byte, self._check)

    def beat(self) -> None:
        now = self._loop.time()
        if self._last is None:
            self._handle.cancel()
            self._handle = self._loop.call_at(now + self._idle, self._check)
        self._last = now

    def _check(self) -> None:
        if self._last is None:
            self.fired = "first_byte"
            self._scope.cancel()
            return
        due = self._last + self._idle
        if self._loop.time() >= due:
            self.fired = "idle"
            self._scope.cancel()
        else:
            self._handle = self._loop.call_at(due, self._check)

    def why(self, policy: Policy, partial: bool) -> str:
        """What timed out, saying whether anything had arrived."""
        if self.fired == "first_byte":
            if self.status is None:
                return f"no byte of an answer within {policy.first_byte:g} s (first_byte_ms)"
            return (f"the answer's headers arrived (HTTP {self.status}) but no byte of its body within "
                    f"{policy.first_byte:g} s (first_byte_ms)")
        where = " in the middle of an event" if partial else ""
        return f"the stream stalled{where}: no byte within {policy.idle:g} s (idle_ms)"

    def close(self) -> None:
        self._handle.cancel()
