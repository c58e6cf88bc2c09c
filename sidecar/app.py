"""The composition root: builds the services once and serves them over stdio."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from . import PROTOCOL_VERSION, __version__
from .api import Api, method_table
from .credentials import Credentials
from .engine import Engine
from .errors import SidecarError
from .health import Health
from .providers import Registry
from .rpc import RpcError, RpcServer, protect_stdout
from .settings import SettingsStore
from .types import SidecarReady
from .usage import UsageStore, catalog_prices

DOMAIN_ERROR = -32000


def map_error(exc: Exception) -> RpcError | None:
    if isinstance(exc, SidecarError):
        return RpcError(DOMAIN_ERROR, exc.info.message, msgspec.to_builtins(exc.info))
    return None


class App:
    def __init__(self, data_dir: Path, keyring_service: str) -> None:
        self.data_dir = data_dir
        self.settings = SettingsStore(data_dir)
        self.registry = Registry(self.settings)
        self.credentials = Credentials(keyring_service, self.settings)
        self.engine = Engine(self.registry, self.credentials, self.settings)
        self.usage = UsageStore(data_dir, price=catalog_prices(self.registry))
        self.engine.observers.append(self.usage.record)
        self.health = Health()
        self.engine.health = self.health
        self.api = Api(self)

    async def serve(self, *, drain_timeout: float, parent_pid: int | None) -> None:
        out_fd = protect_stdout()
        server = RpcServer(
            method_table(self.api), map_error=map_error, drain_timeout=drain_timeout, parent_pid=parent_pid
        )
        ready = SidecarReady(version=__version__, protocol_version=PROTOCOL_VERSION, pid=os.getpid())
        self.engine.warm_up()
        self.usage.warm_up()
        try:
            await server.serve(0, out_fd, ready=("sidecar-ready", ready))
        finally:
            await self.engine.aclose()
            self.usage.close()
