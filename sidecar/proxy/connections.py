"""The proxy's connections: what Uvicorn leaves open, closed here, so no local process can starve
the sidecar of file descriptors or hold the proxy with connections that send nothing.

Uvicorn's h11 protocol, extended (one subclass, used as ``uvicorn.Config(http=...)``):

- at most ``max_connections`` open at once; the next ones are closed as soon as they are accepted
  (Uvicorn's own ``limit_concurrency`` answers 503 but keeps the connection and its descriptor);
- a connection that sends nothing is closed after ``IDLE_TIMEOUT`` seconds, like an idle kept-alive
  one (Uvicorn arms that timer only after a first response);
- a request whose headers are not complete ``HEADER_TIMEOUT`` seconds after its first byte is closed
  (h11 has no header timeout: a slow client could hold a connection forever);
- ``TCP_NODELAY`` on every accepted socket: without it, Nagle's algorithm and delayed ACKs add
  ~40 ms to each request on a kept-alive connection.

How many descriptors the proxy may use comes from the soft ``RLIMIT_NOFILE`` (raised to the hard
limit by the command line at start): the sidecar keeps ``FD_RESERVE`` for its own files (settings,
usage log, keychain, its upstream connections), each proxied request may hold two (the client's
and the upstream's), and up to ``ACCEPT_BATCH`` accepted sockets per loop turn wait to be closed.

Imported only when the proxy starts (it imports Uvicorn).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from typing import ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("sidecar.proxy")

MAX_CONNECTIONS = 64
IDLE_TIMEOUT = 5
"""seconds a connection may stay open between requests (or before its first) without sending a byte"""
HEADER_TIMEOUT = 10.0
"""seconds from a request's first byte until its headers must be complete"""
FD_RESERVE = 64
"""descriptors the proxy leaves to the rest of the sidecar"""
ACCEPT_BATCH = 16
"""connections asyncio accepts per loop turn (its ``backlog`` argument): accepted sockets that are
over the cap still hold a descriptor for a turn or two before they are closed"""
LISTEN_BACKLOG = 128
"""connections the kernel queues for accepting (they cost the sidecar no descriptor)"""
_FULL_LOG_INTERVAL = 60.0


def connection_cap() -> int:
    """``MAX_CONNECTIONS``, or fewer when the open-file limit could not hold them beside the reserve."""
    try:
        import resource
    except ImportError:  # Windows: no per-process descriptor limit of this kind
        return MAX_CONNECTIONS
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    cap = max(1, min(MAX_CONNECTIONS, (soft - FD_RESERVE - 3 * ACCEPT_BATCH) // 2))
    if cap < MAX_CONNECTIONS:
        log.warning("the open-file limit is %d: the proxy takes at most %d connections at once", soft, cap)
    return cap


class GuardedH11Protocol(H11Protocol):
    """One HTTP/1.1 connection of the proxy; see the module's docstring."""

    max_connections: ClassVar[int] = MAX_CONNECTIONS
    _full_logged_at: ClassVar[float] = -_FULL_LOG_INTERVAL

    header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.max_connections:
            self.transport = transport  # connection_lost still runs, and reads it
            transport.close()
            self._log_full()
            return
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # idle until its first byte, as between requests
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def data_received(self, data: bytes) -> None:
        if self.header_deadline is None and self.conn.their_state is h11.IDLE:
            self.header_deadline = self.loop.call_later(HEADER_TIMEOUT, self._headers_too_slow)
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._cancel_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)

    def _headers_too_slow(self) -> None:
        self.header_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            log.info("closed a proxy connection whose request headers took over %g s", HEADER_TIMEOUT)
            self.transport.close()

    def _cancel_header_deadline(self) -> None:
        if self.header_deadline is not None:
            self.header_deadline.cancel()
            self.header_deadline = None

    @classmethod
    def _log_full(cls) -> None:
        now = time.monotonic()
        if now - cls._full_logged_at >= _FULL_LOG_INTERVAL:
            cls._full_logged_at = now
            log.warning("the proxy has %d connections open: closing new ones until some end", cls.max_connections)


def guarded_protocol(max_connections: int) -> type[GuardedH11Protocol]:
    """The protocol class for one server, with its connection cap."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"max_connections": max_connections})
