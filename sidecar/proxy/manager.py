"""The proxy's lifecycle: start on a port, keep it up (a server task that dies is restarted),
stop it, and say truthfully whether it runs. Built on first use, given the services it uses."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from ..errors import SidecarError, header_safe
from .security import is_loopback

if TYPE_CHECKING:
    import socket

    from ..credentials import Credentials
    from ..engine import Engine
    from ..providers import Provider, Registry
    from ..types import ModelInfo

log = logging.getLogger("sidecar.proxy")

LOOPBACK = "127.0.0.1"
STOP_GRACE = 2.0
"""seconds a stop waits for requests in flight before cutting them"""
RESTART_DELAY = 0.5


class TaskHost(Protocol):
    """Where the proxy's server task runs: beside the RPC requests (``RpcServer`` is one)."""

    input_closed: anyio.Event
    """set once no request can come any more: the proxy then takes no new connections"""

    def spawn(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Run ``fn`` beside the requests; the end of input waits for it, a stop cancels it."""
        ...


@dataclass
class _Run:
    host: str
    port: int
    token: str
    sock: socket.socket | None
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    finished: anyio.Event = field(default_factory=anyio.Event)
    server: Any = None
    alive: bool = True
    stopping: bool = False

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"


class ProxyManager:
    """One proxy at a time, served by Uvicorn in a task of the RPC server's task group."""

    def __init__(self, engine: Engine, registry: Registry, credentials: Credentials, host: TaskHost) -> None:
        self.engine = engine
        self.registry = registry
        self.credentials = credentials
        self.host = host
        self._run: _Run | None = None
        self._lock = anyio.Lock()

    @property
    def running(self) -> bool:
        return self._run is not None and self._run.alive and not self._run.stopping

    @property
    def url(self) -> str | None:
        return self._run.url if self.running and self._run else None

    @property
    def token(self) -> str | None:
        return self._run.token if self.running and self._run else None

    async def ensure_running(self) -> tuple[str, str]:
        """(url, token) of the running proxy, starting it on loopback and a free port when needed."""
        async with self._lock:
            if self._run is not None and self.running:
                return self._run.url, self._run.token
            return await self._start(LOOPBACK, 0, None)

    async def start(
        self, host: str | None = None, port: int | None = None, token: str | None = None
    ) -> tuple[str, str]:
        """Start, or return the running proxy when nothing different is asked; different settings restart it."""
        if token is not None and (len(token) < 16 or not header_safe(token) or " " in token):
            raise SidecarError("invalid_request", "token must be at least 16 printable ASCII characters, no spaces")
        async with self._lock:
            run = self._run
            if run is not None and self.running:
                same = ((host is None or host == run.host) and (port in (None, 0) or port == run.port)
                        and (token is None or token == run.token))
                if same:
                    return run.url, run.token
                await self._stop()
            return await self._start(host or LOOPBACK, port or 0, token)

    async def stop(self) -> bool:
        async with self._lock:
            return await self._stop()

    # --- inside -------------------------------------------------------------------------

    async def _start(self, host: str, port: int, token: str | None) -> tuple[str, str]:
        from .server import bind  # Starlette and Uvicorn load here, on first start

        if not is_loopback(host):
            log.warning("the proxy listens on %s, not only on this machine", host)
        sock = bind(host, port)
        run = _Run(host=host, port=sock.getsockname()[1], token=token or secrets.token_urlsafe(32), sock=sock)
        self._run = run
        self.host.spawn(lambda: self._supervise(run))
        log.info("proxy listening on %s", run.url)
        return run.url, run.token

    async def _stop(self) -> bool:
        run, self._run = self._run, None
        if run is None or not run.alive:
            return False
        run.stopping = True
        if run.server is not None:
            run.server.should_exit = True
        with anyio.move_on_after(STOP_GRACE):
            await run.finished.wait()
        if not run.finished.is_set():
            run.scope.cancel()
            with anyio.move_on_after(STOP_GRACE):
                await run.finished.wait()
        log.info("proxy stopped")
        return True

    async def _supervise(self, run: _Run) -> None:
        """Serve until stopped; a server that ends on its own (a crash) is started again on the same port."""
        from .server import Access, bind, build_app, make_server

        host = self.host
        app = build_app(self.engine, Access(run.token, run.port, run.host), self.models)
        try:
            with run.scope:
                async with anyio.create_task_group() as tg:

                    async def end_with_input() -> None:
                        # stdin closed: the sidecar drains and exits; the proxy takes no new connections
                        await host.input_closed.wait()
                        run.stopping = True
                        if run.server is not None:
                            run.server.should_exit = True

                    tg.start_soon(end_with_input)
                    while not run.stopping:
                        server = run.server = make_server(app)
                        try:
                            if run.sock is None:
                                run.sock = bind(run.host, run.port)
                            await server.serve(sockets=[run.sock])
                        except (Exception, SystemExit):
                            log.exception("the proxy server failed")
                        finally:
                            server.abandon()
                            if run.sock is not None:
                                run.sock.close()
                                run.sock = None
                        if not run.stopping:
                            log.warning("the proxy server ended unexpectedly; restarting it")
                            await anyio.sleep(RESTART_DELAY)
                    tg.cancel_scope.cancel()
        finally:
            run.alive = False
            if run.server is not None:
                run.server.abandon()
            if run.sock is not None:
                run.sock.close()
            run.finished.set()

    # --- what it can route to ------------------------------------------------------------

    def providers(self) -> list[Provider]:
        """Providers a request can reach: a key is available, it is signed in, or none is needed."""
        creds = self.credentials
        return [p for p in self.registry.all()
                if not p.requires_api_key or creds.known_source(p) is not None or creds.signed_in(p)]

    async def models(self) -> list[ModelInfo]:
        return await self.engine.list_models(self.providers(), False)
