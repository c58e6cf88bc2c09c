"""The composition root: builds the services once, each given what it uses, and serves them over stdio."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from . import PROTOCOL_VERSION, __version__
from .api import Api, rpc_method
from .credentials import Credentials, Grant
from .engine import Engine
from .errors import SidecarError
from .lazy import Lazy
from .local import LocalModels
from .mcp.servers import McpHost
from .protocols import WireProtocol, get_protocol
from .providers import Provider, Registry
from .rpc import RpcError, RpcServer, protect_stdout
from .settings import SettingsStore
from .trust import Trust
from .types import SidecarReady

if TYPE_CHECKING:
    from .auth import SignIns
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
        self.sign_ins: Lazy[SignIns] = Lazy(self._build_sign_ins)
        self.credentials.tokens = _LazyTokens(self.sign_ins, self.settings)
        self.local = LocalModels(self.settings)
        """the registered GGUF models and their runtime (llama-cpp-python imported on first use)"""
        self._local_protocol: WireProtocol | None = None
        self.engine = Engine(self.registry, self.credentials, self.settings, protocols=self._protocol,
                             local_embed=self.local.embed)
        # Built on first use, not at start-up: the first list_providers must not wait for them.
        self.usage: Lazy[UsageStore] = Lazy(self._build_usage)
        self.proxy: Lazy[ProxyManager] = Lazy(self._build_proxy)
        self.engine.observers.append(lambda outcome: self.usage.get().record(outcome))
        self.mcp = McpHost(self.settings, self.credentials, self.trust)
        """the app's MCP servers (the SDK is imported when one first starts); they run while ``serve`` does"""
        self.api = Api(
            engine=self.engine,
            registry=self.registry,
            credentials=self.credentials,
            settings=self.settings,
            trust=self.trust,
            data_dir=data_dir,
            usage=self.usage,
            proxy=self.proxy,
            local=self.local,
            sign_ins=self.sign_ins,
            mcp=self.mcp,
        )
        self.rpc: RpcServer | None = None
        """the serving RPC server, once ``serve`` runs: long-lived tasks (the proxy) are spawned in it"""
        self._served = False

    def _protocol(self, name: str) -> WireProtocol:
        """The wire protocols, and the local models' one, which runs this app's ``LocalModels``."""
        from .local.protocol import NAME, local_protocol

        if name != NAME:
            return get_protocol(name)
        if self._local_protocol is None:
            self._local_protocol = local_protocol(self.local)
        return self._local_protocol

    def _build_sign_ins(self) -> SignIns:
        from .auth import SignIns

        return SignIns(self.credentials, self.settings, self.trust)

    def _build_usage(self) -> UsageStore:
        from .usage import UsageStore, catalog_prices

        return UsageStore(self.data_dir, price=catalog_prices(self.registry))

    def _build_proxy(self) -> ProxyManager:
        """The local OpenAI-compatible proxy; Starlette and Uvicorn load only when it starts."""
        from .proxy import ProxyManager

        if self.rpc is None:
            raise SidecarError("internal", "the proxy runs only inside a serving sidecar")
        return ProxyManager(self.engine, self.registry, self.credentials, self.rpc)

    def _warm_up_usage(self) -> None:
        time.sleep(1.0)
        if not self._served:
            self.usage.get().warm_up()

    async def serve(
        self, *, drain_timeout: float, parent_pid: int | None, pipes: tuple[int, int] | None = None
    ) -> None:
        """Serve on stdin and stdout (guarded: nothing else may write there), or on ``pipes`` (in, out) inside
        another program (a test), which the server then neither signals nor ends."""
        in_fd, out_fd = pipes if pipes is not None else (0, protect_stdout())
        server = RpcServer(
            rpc_method.bind(self.api), map_error=map_error, drain_timeout=drain_timeout, parent_pid=parent_pid,
            owns_process=pipes is None,
        )
        self.rpc = server
        ready = SidecarReady(version=__version__, protocol_version=PROTOCOL_VERSION, pid=os.getpid())
        self.engine.warm_up()
        threading.Thread(target=self._warm_up_usage, name="usage-warm-up", daemon=True).start()
        try:
            async with self.mcp.running(server.notify):  # leaving it stops every MCP server (process groups killed)
                await server.serve(in_fd, out_fd, ready=("sidecar-ready", ready))
        finally:
            self._served = True
            await self.engine.aclose()
            if self.sign_ins.built is not None:
                await self.sign_ins.built.aclose()
            usage = self.usage.built
            if usage is not None:
                usage.close()


class _LazyTokens:
    """The sign-ins as the credentials' token source, built (and imported) only when a signed-in provider is used."""

    def __init__(self, sign_ins: Lazy[SignIns], settings: SettingsStore) -> None:
        self._sign_ins = sign_ins
        self._settings = settings

    async def grant(self, provider: Provider) -> Grant:
        return await self._sign_ins.get().grant(provider)

    async def rejected(self, provider: Provider, token: str) -> bool:
        return await self._sign_ins.get().rejected(provider, token)

    def signed_in(self, provider: Provider) -> bool:
        """From the settings' index: listing providers never builds the sign-ins."""
        return provider.id in self._settings.value.signed_in
