"""The composition root: builds the services once and serves them over stdio."""

from __future__ import annotations

import os
import threading
import time
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from . import PROTOCOL_VERSION, __version__
from .api import Api, method_table
from .credentials import Credentials
from .engine import Engine
from .errors import SidecarError
from .providers import Registry
from .rpc import RpcError, RpcServer, protect_stdout
from .settings import SettingsStore
from .trust import Trust
from .types import SidecarReady

if TYPE_CHECKING:
    from .health import Health
    from .proxy import ProxyManager
    from .usage import UsageStore

DOMAIN_ERROR = -32000


def map_error(exc: Exception) -> RpcError | None:
    if isinstance(exc, SidecarError):
        return RpcError(DOMAIN_ERROR, exc.info.message, msgspec.to_builtins(exc.info))
    return None


class App:
    def __init__(self, data_dir: Path, keyring_service: str, trust: Trust | None = None) -> None:
        self.data_dir = data_dir
        self.trust = trust or Trust()
        self.settings = SettingsStore(data_dir)
        self.registry = Registry(self.settings, self.trust)
        self.credentials = Credentials(keyring_service, self.settings, self.trust)
        self.engine = Engine(self.registry, self.credentials, self.settings)
        self.engine.observers.append(lambda outcome: self.usage.record(outcome))
        self.api = Api(self)
        self.rpc: RpcServer | None = None
        """the serving RPC server, once ``serve`` runs: long-lived tasks (the proxy) are spawned in it"""

    # Built on first use, not at start-up: the first list_providers must not wait for them.

    @cached_property
    def usage(self) -> UsageStore:
        from .usage import UsageStore, catalog_prices

        return UsageStore(self.data_dir, price=catalog_prices(self.registry))

    @cached_property
    def proxy(self) -> ProxyManager:
        """The local OpenAI-compatible proxy; Starlette and Uvicorn load only when it starts."""
        from .proxy import ProxyManager

        return ProxyManager(self)

    @property
    def health(self) -> Health:
        return self.engine.health

    def _warm_up_usage(self) -> None:
        time.sleep(1.0)
        self.usage.warm_up()

    async def serve(self, *, drain_timeout: float, parent_pid: int | None) -> None:
        out_fd = protect_stdout()
        server = RpcServer(
            method_table(self.api), map_error=map_error, drain_timeout=drain_timeout, parent_pid=parent_pid
        )
        self.rpc = server
        ready = SidecarReady(version=__version__, protocol_version=PROTOCOL_VERSION, pid=os.getpid())
        self.engine.warm_up()
        threading.Thread(target=self._warm_up_usage, name="usage-warm-up", daemon=True).start()
        try:
            await server.serve(0, out_fd, ready=("sidecar-ready", ready))
        finally:
            await self.engine.aclose()
            if "usage" in self.__dict__:
                self.usage.close()
