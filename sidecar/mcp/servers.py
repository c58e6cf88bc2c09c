"""The app's MCP servers, run by the sidecar: those the app declared (``--mcp-config``) and those added over
RPC (``mcp_add_server``, kept in the settings, their secret values in the keychain).

A server starts on first use (or when added with ``start``), is initialised once, and lists its tools (again
on ``notifications/tools/list_changed``). One supervisor task per server owns its connection: when the
server dies, a call in flight fails at once ("ended during the call") and the supervisor starts it again
after 0.5, 1, 2, 4, 8 s; after 5 failures in a row it stays ``failed`` until its next use. Every change of
status goes out as an ``mcp-status`` notification. The servers live inside ``McpHost.running``, which the
app enters around serving: leaving it stops them all (see transport.py for how a program is stopped).

The SDK (``mcp``, ``pip install 'llm-sidecar[mcp]'``) is imported when a server first starts.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio

from .. import __version__
from ..errors import SidecarError
from ..types import (
    McpAddServerParams,
    McpCallToolParams,
    McpCallToolResult,
    McpServerConfig,
    McpServerInfo,
    McpStatus,
    McpToolInfo,
    RemovedResult,
    ToolDefinition,
)
from .tools import McpTool, tool_name

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from ..credentials import Credentials
    from ..settings import SettingsStore
    from ..trust import Trust
    from .transport import Streams

log = logging.getLogger("sidecar.mcp")

START_TIMEOUT_S = 30.0
"""from starting a server to its tool list"""
BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0)
"""waits before restarting a server that died; one more death and it stays failed until its next use"""
STABLE_S = 10.0
"""a server up this long starts its backoff over when it dies"""
MAX_TOOLS = 10_000

Notify = Callable[[str, Any], Awaitable[None]]


def require_sdk() -> None:
    """provider_not_installed, naming the extra, when the MCP SDK is not installed."""
    try:
        import mcp.client.session  # noqa: F401
    except ImportError:
        raise SidecarError("provider_not_installed", "MCP servers need the MCP SDK: pip install "
                           "'llm-sidecar[mcp]' (or the mcp package) in the sidecar's environment") from None
    # The SDK and its HTTP client log whole messages and headers at debug: a server's secret env value
    # echoed in a result, or a secret header, must not reach the log.
    for name in ("mcp", "mcp_types", "httpx2", "httpcore2"):
        logging.getLogger(name).setLevel(logging.WARNING)


class McpServer:
    """One server: its configuration, its status, and while it is ready its session."""

    def __init__(self, host: McpHost, cfg: McpServerConfig, source: str) -> None:
        self.host = host
        self.cfg = cfg
        self.source = source
        self.status: McpStatus = "stopped"
        self.error: str | None = None
        self.server_info: Any = None
        self.tools: list[Any] | None = None
        self.pid: int | None = None
        self.restarts = 0
        self.session: Any = None
        self._changed = anyio.Event()
        self._scope: anyio.CancelScope | None = None
        self._finished = anyio.Event()

    @property
    def id(self) -> str:
        return self.cfg.id

    def describe(self) -> McpServerInfo:
        cfg = self.cfg
        info = McpServerInfo(id=cfg.id, transport=cfg.transport, source=self.source,  # type: ignore[arg-type]
                             status=self.status, restarts=self.restarts)
        info.command, info.args, info.url = cfg.command, cfg.args, cfg.url
        env = [*(cfg.env or {}), *(cfg.secret_env or [])]
        headers = [*(cfg.headers or {}), *(cfg.secret_headers or [])]
        if env:
            info.env_names = sorted(set(env))
        if headers:
            info.header_names = sorted(set(headers))
        if self.error is not None:
            info.error = self.error
        if self.server_info is not None:
            info.server_name = self.server_info.name
            if self.server_info.version:
                info.server_version = self.server_info.version
        if self.tools is not None:
            info.tool_count = len(self.tools)
        if self.pid is not None:
            info.pid = self.pid
        return info

    # --- using it -----------------------------------------------------------------------

    async def ready(self) -> Any:
        """The session, the server started first if it is not running; upstream_unavailable saying why
        when it failed (or is waiting to be restarted)."""
        if self._scope is None:
            self._start()
        with anyio.move_on_after(START_TIMEOUT_S + 5):
            while True:
                if self.status == "ready" and self.session is not None:
                    return self.session
                if self.status == "failed":
                    raise SidecarError("upstream_unavailable", f"MCP server {self.id!r} is not available: {self.error}")
                await self._changed.wait()
        raise SidecarError("timeout", f"MCP server {self.id!r} did not start within {START_TIMEOUT_S:g} s")

    async def call(self, name: str, arguments: dict[str, Any], timeout_ms: int) -> Any:
        """The tool's ``CallToolResult``; on timeout the SDK sends ``notifications/cancelled``, and so it does
        when the caller is cancelled (a loop's abort)."""
        from mcp.shared.exceptions import MCPError
        from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT

        session = await self.ready()
        if self.tools is not None and not any(t.name == name for t in self.tools):
            raise SidecarError("not_found", f"MCP server {self.id!r} has no tool {name!r}")
        where = f"MCP server {self.id!r}, tool {name!r}"
        try:
            return await session.call_tool(name, arguments, read_timeout_seconds=timeout_ms / 1000)
        except MCPError as exc:
            if exc.code == REQUEST_TIMEOUT:
                raise SidecarError("timeout", f"{where}: no result within {timeout_ms} ms; the call was "
                                   "cancelled") from None
            if exc.code == CONNECTION_CLOSED:
                raise SidecarError("upstream_unavailable", f"{where}: the server ended during the call (it is "
                                   "restarted)") from None
            raise SidecarError("upstream_unavailable", f"{where}: {exc.message}") from None
        except (RuntimeError, ValueError) as exc:  # a result the SDK refuses (output schema, input_required)
            raise SidecarError("protocol_error", f"{where}: {exc}") from None

    async def stop(self) -> None:
        scope = self._scope
        if scope is not None:
            scope.cancel()
            await self._finished.wait()

    # --- the supervisor -------------------------------------------------------------------

    def _start(self) -> None:
        require_sdk()
        self._scope, self._finished = anyio.CancelScope(), anyio.Event()
        self.status, self.error = "starting", None
        self.host.spawn(partial(self._supervise, self._scope))

    async def _set(self, status: McpStatus, error: str | None = None) -> None:
        self.status = status
        if status == "ready":
            self.error = None
        elif error is not None:
            self.error = error
        changed, self._changed = self._changed, anyio.Event()
        changed.set()
        await self.host.announce(self)

    async def _supervise(self, scope: anyio.CancelScope) -> None:
        failures = 0
        try:
            with scope:
                while True:
                    began = anyio.current_time()
                    reason = await self._connect()
                    if anyio.current_time() - began >= STABLE_S:
                        failures = 0
                    failures += 1
                    if failures > len(BACKOFF_S):
                        await self._set("failed", f"{reason} (not restarted after {len(BACKOFF_S)} tries; "
                                        "its next use starts it again)")
                        return
                    log.warning("MCP server %s: %s; restarting in %g s", self.id, reason, BACKOFF_S[failures - 1])
                    await self._set("failed", reason)
                    await anyio.sleep(BACKOFF_S[failures - 1])
                    self.restarts += 1
        except Exception as exc:  # a bug here must not leave callers waiting for a status that never comes
            log.exception("MCP server %s: its supervisor failed", self.id)
            await self._set("failed", f"internal error: {type(exc).__name__}")
        finally:
            self.session, self.pid = None, None
            if scope.cancel_called:
                log.info("MCP server %s stopped", self.id)
                self.status = "stopped"
                with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                    await self._set("stopped")
            self._scope = None
            self._finished.set()

    async def _connect(self) -> str:
        """Run the server until it ends; why it ended."""
        from mcp.client.session import ClientSession
        from mcp_types import Implementation

        await self._set("starting")
        try:
            async with self._link() as (streams, ended), ClientSession(
                *streams, message_handler=self._on_message, logging_callback=self._on_log,
                client_info=Implementation(name="llm-sidecar", version=__version__),
            ) as session:
                with anyio.fail_after(START_TIMEOUT_S):
                    init = await session.initialize()
                    tools = await _all_tools(session)
                self.session, self.server_info, self.tools = session, init.server_info, tools
                await self._set("ready")
                log.info("MCP server %s ready (%s %s, %d tools)", self.id, init.server_info.name,
                         init.server_info.version, len(tools))
                await ended.wait()
                return "the server exited"
        except TimeoutError:
            return f"it did not initialise within {START_TIMEOUT_S:g} s"
        except SidecarError as exc:
            return exc.info.message
        except Exception as exc:
            return _reason(exc, self.cfg)
        finally:
            self.session, self.pid = None, None

    @asynccontextmanager
    async def _link(self) -> AsyncIterator[tuple[Streams, anyio.Event]]:
        from . import transport

        cfg = self.cfg
        secrets = await self._secrets()
        if cfg.transport == "http":
            assert isinstance(cfg.url, str)
            headers = {**(cfg.headers or {}), **{k: v for (kind, k), v in secrets.items() if kind == "header"}}
            async with transport.http(cfg.url, headers) as link:
                yield link
            return
        assert isinstance(cfg.command, str)
        env = {**(cfg.env or {}), **{k: v for (kind, k), v in secrets.items() if kind == "env"}}

        def started(pid: int) -> None:
            self.pid = pid

        async with transport.stdio(self.id, cfg.command, list(cfg.args or []), env,
                                   cfg.cwd if isinstance(cfg.cwd, str) else None, started) as link:
            yield link

    async def _secrets(self) -> dict[tuple[str, str], str]:
        """The secret values from the keychain, by (env|header, name)."""
        from . import config as configs

        out: dict[tuple[str, str], str] = {}
        for kind, names in (("env", self.cfg.secret_env), ("header", self.cfg.secret_headers)):
            for name in names or []:
                value = await self.host.credentials.read_secret(configs.secret_name(self.id, kind, name))
                if value is None:
                    raise SidecarError("missing_api_key", f"the secret {kind} {name} of MCP server {self.id!r} is "
                                       "not in the keychain any more: add the server again")
                out[(kind, name)] = value
        return out

    async def _on_message(self, message: Any) -> None:
        from mcp_types import ToolListChangedNotification

        if isinstance(message, ToolListChangedNotification):
            self.host.spawn(self._refresh_tools)
        elif isinstance(message, Exception):
            log.debug("MCP server %s: %s", self.id, message)

    async def _on_log(self, params: Any) -> None:
        log.debug("MCP server %s logged (%s): %s", self.id, params.level, str(params.data)[:2048])

    async def _refresh_tools(self) -> None:
        session = self.session
        if session is None:
            return
        try:
            with anyio.fail_after(START_TIMEOUT_S):
                tools = await _all_tools(session)
        except Exception as exc:
            log.warning("MCP server %s: could not list its changed tools: %s", self.id, _reason(exc, self.cfg))
            return
        if session is self.session:
            self.tools = tools
            log.info("MCP server %s: tool list changed (%d tools)", self.id, len(tools))
            await self.host.announce(self)


async def _run(fn: Callable[[], Awaitable[None]]) -> None:
    await fn()


async def _all_tools(session: Any) -> list[Any]:
    from mcp_types import PaginatedRequestParams

    tools: list[Any] = []
    cursor = None
    while True:
        result = await session.list_tools(params=PaginatedRequestParams(cursor=cursor) if cursor else None)
        tools += result.tools
        cursor = result.next_cursor
        if not cursor or len(tools) >= MAX_TOOLS:
            return tools[:MAX_TOOLS]


def _reason(exc: BaseException, cfg: McpServerConfig) -> str:
    """One line on why a connection ended, from the exception (groups unwrapped)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    if isinstance(exc, FileNotFoundError | PermissionError) and cfg.transport == "stdio":
        return f"cannot run {cfg.command!r} ({exc.strerror})"
    if isinstance(exc, SidecarError):
        return exc.info.message
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 500 else text[:499] + "…"


class McpHost:
    """Every MCP server of the app, by id."""

    def __init__(self, settings: SettingsStore, credentials: Credentials, trust: Trust) -> None:
        self.settings = settings
        self.credentials = credentials
        self.trust = trust
        self._servers: dict[str, McpServer] = {}
        self._tg: TaskGroup | None = None
        self._notify: Notify | None = None

    @asynccontextmanager
    async def running(self, notify: Notify) -> AsyncIterator[None]:
        """Servers run while inside; leaving stops them all (their process groups killed)."""
        self._notify = notify
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                try:
                    yield
                finally:
                    self._notify = None  # nobody reads stdout any more
                    tg.cancel_scope.cancel()
        finally:
            self._tg = None

    def spawn(self, fn: Callable[[], Awaitable[None]]) -> None:
        if self._tg is None:
            raise SidecarError("internal", "MCP servers run only inside a serving sidecar")
        self._tg.start_soon(_run, fn)

    async def announce(self, server: McpServer) -> None:
        notify = self._notify
        if notify is None:
            return
        try:
            await notify("mcp-status", server.describe())
        except Exception as exc:  # stdout is gone: the sidecar is ending
            log.debug("mcp-status not sent: %s", exc)

    # --- the servers ------------------------------------------------------------------------

    def _configs(self) -> dict[str, tuple[McpServerConfig, str]]:
        out = {c.id: (c, "settings") for c in self.settings.value.mcp_servers}
        out.update({i: (c, "config") for i, c in self.trust.mcp_servers.items()})
        return out

    def get(self, server_id: str) -> McpServer:
        found = self._configs().get(server_id)
        if found is None:
            raise SidecarError("not_found", f"no MCP server {server_id!r} (see mcp_list_servers)")
        cfg, source = found
        server = self._servers.get(server_id)
        if server is None or server.cfg != cfg:  # new, or changed by another sidecar on the same data dir
            if server is not None:
                self.spawn(server.stop)
            server = self._servers[server_id] = McpServer(self, cfg, source)
        return server

    def servers(self) -> list[McpServerInfo]:
        return [self.get(i).describe() for i in sorted(self._configs())]

    def _check_allowed(self, server_id: str, doing: str) -> None:
        if not self.trust.allow_mcp:
            raise SidecarError("permission_denied", f"{doing} MCP servers over RPC is off: an MCP server is a "
                               "program, so the app allows it at start with --allow-mcp (or declares its servers "
                               "with --mcp-config)")
        if server_id in self.trust.mcp_servers:
            raise SidecarError("invalid_request", f"MCP server {server_id!r} is declared by the app (--mcp-config); "
                               "RPC cannot change it")

    async def add(self, params: McpAddServerParams) -> McpServerInfo:
        """Keep a server (secret values in the keychain first, then the settings); with ``start``, answer once
        it is ready or failed."""
        from . import config as configs

        self._check_allowed(params.id, "Adding")
        cfg, secrets = configs.split_secrets(params)
        for name, value in secrets.items():
            await self.credentials.write_secret(name, value)
        before = next((c for c in self.settings.value.mcp_servers if c.id == cfg.id), None)
        self.settings.upsert_mcp_server(cfg)
        if before is not None:
            for name in set(configs.secret_names(before)) - set(secrets):
                await self._forget(name)
        old = self._servers.pop(cfg.id, None)
        if old is not None:
            await old.stop()
        server = self.get(cfg.id)
        log.info("MCP server %s added (%s)", cfg.id, cfg.transport)
        if params.start:
            with contextlib.suppress(SidecarError):  # its status says why
                await server.ready()
        return server.describe()

    async def remove(self, server_id: str) -> RemovedResult:
        self._check_allowed(server_id, "Removing")
        removed = self.settings.remove_mcp_server(server_id)
        server = self._servers.pop(server_id, None)
        if server is not None:
            await server.stop()
        if removed is None:
            return RemovedResult(removed=False)
        from . import config as configs

        for name in configs.secret_names(removed):
            await self._forget(name)
        log.info("MCP server %s removed", server_id)
        return RemovedResult(removed=True)

    async def _forget(self, secret: str) -> None:
        try:
            await self.credentials.delete_secret(secret)
        except SidecarError as exc:
            log.warning("could not delete an MCP secret from the keychain: %s", exc.info.message)

    # --- tools --------------------------------------------------------------------------------

    async def tools(self, server_ids: list[str], *, skip_failed: bool = False) -> list[McpTool]:
        """The servers' tools (each server started if needed, all at once)."""
        servers = [self.get(i) for i in dict.fromkeys(server_ids)]
        failures: dict[str, SidecarError] = {}

        async def start(server: McpServer) -> None:
            try:
                await server.ready()
            except SidecarError as exc:
                failures[server.id] = exc

        async with anyio.create_task_group() as tg:
            for server in servers:
                tg.start_soon(start, server)
        if failures and not skip_failed:
            raise next(iter(failures.values()))
        out = []
        for server in servers:
            if server.id in failures:
                continue
            for tool in server.tools or []:
                definition = ToolDefinition(name=tool_name(server.id, tool.name), parameters=dict(tool.input_schema))
                if tool.description:
                    definition.description = tool.description
                out.append(McpTool(server.id, tool.name, definition))
        return out

    async def list_tools(self, server: str | None) -> list[McpToolInfo]:
        ids = [server] if server is not None else sorted(self._configs())
        out = []
        for tool in await self.tools(ids, skip_failed=server is None):
            info = McpToolInfo(server=tool.server, name=tool.name, tool_name=tool.definition.name,
                               input_schema=tool.definition.parameters)
            info.description = tool.definition.description
            out.append(info)
        return out

    async def call_tool(self, params: McpCallToolParams) -> McpCallToolResult:
        result = await self.get(params.server).call(params.name, params.input, params.timeout_ms)
        out = McpCallToolResult(content=[b.model_dump(mode="json", by_alias=True, exclude_none=True)
                                         for b in result.content], is_error=bool(result.is_error))
        if result.structured_content is not None:
            out.structured_content = result.structured_content
        return out
