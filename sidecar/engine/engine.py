"""The engine's face: one object the services hold, made of the parts in this package."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio

from ..credentials import Credentials
from ..errors import SidecarError
from ..framing import ReadLimits
from ..protocols import WireProtocol, get_protocol
from ..providers import Provider, Registry
from ..settings import SettingsStore
from ..types import (
    CompactMessagesParams,
    CompactMessagesResult,
    CompleteChatResult,
    CountTokensParams,
    CountTokensResult,
    DoneEvent,
    EmbedParams,
    EmbedResult,
    ErrorEvent,
    Event,
    ModelInfo,
    StreamTextParams,
    TestConnectionParams,
    TestConnectionResult,
)
from .prepare import Preparer
from .request import Emit, Options, Prepared
from .runner import Outcome, Runner
from .streams import EventSink, Streams, stream_id_of
from .transports import Transport
from .transports.http import HttpTransport

if TYPE_CHECKING:
    from ..health import Health
    from .context import ContextService, LocalCount
    from .embed import Embedder, LocalEmbed
    from .models import ModelLists


class Engine:
    """Prepares requests, runs them through their provider's transport, and keeps the streams by id.

    Everything that can fail before the network (bad model, unknown provider, missing key, a request the
    protocol refuses to encode) raises from ``prepare`` so it becomes the RPC error; everything after is a
    stream event, and every stream ends in exactly one terminal event.
    """

    def __init__(self, registry: Registry, credentials: Credentials, settings: SettingsStore, *,
                 protocols: Callable[[str], WireProtocol] = get_protocol,
                 local_embed: LocalEmbed | None = None) -> None:
        self.options = Options()
        self.http = HttpTransport(protocols, self.options)
        self.transports = _Transports(self.http, protocols, self.options)
        self.preparer = Preparer(registry, credentials, settings, self.transports.get)
        self._health: Health | None = None
        self.runner = Runner(self.preparer, self.options, lambda: self.health)
        self.streams = Streams()
        self._registry = registry
        self._models: ModelLists | None = None
        self.local_embed = local_embed
        """the ``local`` provider's embeddings (None: not installed)"""
        self._embedder: Embedder | None = None
        self._context: ContextService | None = None
        self.runner.context = lambda: self.context

    # --- settings and services ------------------------------------------------------------

    @property
    def read_limits(self) -> ReadLimits:
        """how much of one upstream event or body is read, and of one delta written (set by the CLI)"""
        return self.options.read_limits

    @read_limits.setter
    def read_limits(self, limits: ReadLimits) -> None:
        self.options.read_limits = limits

    @property
    def log_requests(self) -> bool:
        """log each attempt and each finished request (never headers, keys or content)"""
        return self.options.log_requests

    @log_requests.setter
    def log_requests(self, on: bool) -> None:
        self.options.log_requests = on

    @property
    def observers(self) -> list[Callable[[Outcome], None]]:
        """called with every finished request; must be quick and must not raise"""
        return self.runner.observers

    @property
    def health(self) -> Health:
        """The providers' circuit breakers and limits, built on first use."""
        if self._health is None:
            from ..health import Health

            self._health = Health()
        return self._health

    def warm_up(self, delay: float = 0.5) -> None:
        """Build the HTTP client in a thread shortly after start-up (see ``HttpTransport.warm_up``)."""
        self.http.warm_up(delay)

    @property
    def models(self) -> ModelLists:
        """Model lists and connection tests, built (and imported) on first use."""
        if self._models is None:
            from .models import ModelLists

            self._models = ModelLists(self._registry, self.preparer)
        return self._models

    @property
    def embedder(self) -> Embedder:
        """Embeddings (``llm_embed``), built (and imported) on first use."""
        if self._embedder is None:
            from .embed import Embedder

            self._embedder = Embedder(self._registry, self.preparer, self.http, self.options, lambda: self.health,
                                      self.local_embed, self.runner.report)
        return self._embedder

    @property
    def context(self) -> ContextService:
        """Long conversations (the ``context`` option, ``count_tokens``, compaction), built on first use."""
        if self._context is None:
            from .context import ContextService

            self._context = ContextService(self.preparer, self.http, lambda: self.models, self.runner.stream)
        return self._context

    async def aclose(self) -> None:
        for transport in self.transports.built():
            await transport.aclose()

    # --- requests ---------------------------------------------------------------------------

    async def prepare(self, params: StreamTextParams) -> Prepared:
        return await self.preparer.prepare(params)

    async def prepare_for(self, params: StreamTextParams, provider: Provider, model: str) -> Prepared:
        return await self.preparer.prepare_for(params, provider, model)

    async def stream(self, prepared: Prepared, emit: Emit, *, stream_id: str | None = None) -> DoneEvent:
        """A request's events up to its end; returns its ``done`` (not emitted). See ``Runner.stream``."""
        return await self.runner.stream(prepared, emit, stream_id=stream_id)

    async def complete(self, prepared: Prepared) -> CompleteChatResult:
        """The same stream, collected into one result."""
        from .collect import Collector

        collector = Collector()
        done = await self.runner.stream(prepared, collector.add)
        return collector.result(done)

    async def embed(self, params: EmbedParams) -> EmbedResult:
        """``llm_embed``: one vector per input, in order (see ``embed``)."""
        return await self.embedder.embed(params)

    async def count_tokens(self, params: CountTokensParams, local: LocalCount | None = None) -> CountTokensResult:
        """``count_tokens``: the provider's count where it has one, else the calibrated estimate."""
        return await self.context.count(params, local)

    async def compact_messages(self, params: CompactMessagesParams) -> CompactMessagesResult:
        """``llm_compact_messages``: the oldest turns replaced by a summary, down to the target."""
        return await self.context.compact_messages(params)

    # --- streams by id ------------------------------------------------------------------------

    def reserve(self, stream_id: str) -> anyio.CancelScope:
        return self.streams.reserve(stream_id)

    def release(self, stream_id: str) -> None:
        self.streams.release(stream_id)

    def abort(self, stream_id: str) -> bool:
        return self.streams.abort(stream_id)

    async def open(self, stream_id: object, params: StreamTextParams) -> tuple[str, anyio.CancelScope, Prepared]:
        """Reserve the stream id (abort works from here on) and prepare the request; on any failure the id is
        free again and the failure is the RPC error."""
        sid = stream_id_of(stream_id)
        scope = self.streams.reserve(sid)
        try:
            prepared = await self.preparer.prepare(params)
        except BaseException:
            self.streams.release(sid)
            raise
        return sid, scope, prepared

    async def run_stream(self, prepared: Prepared, sink: EventSink, scope: anyio.CancelScope) -> None:
        """Stream in the reserved ``scope``; always ends with exactly one terminal event."""

        async def end(outcome: DoneEvent | SidecarError) -> None:
            await sink.emit(_terminal(outcome))

        await self.streams.run_to_terminal(
            sink.stream_id, scope, lambda: self.runner.stream(prepared, sink.emit, stream_id=sink.stream_id), end)

    async def complete_chat(self, params: StreamTextParams) -> CompleteChatResult:
        """``complete_chat``: with a ``stream_id``, reserved so that ``llm_abort_stream`` cancels it too."""
        if not isinstance(params.stream_id, str):
            return await self.complete(await self.preparer.prepare(params))
        scope = self.streams.reserve(params.stream_id)
        ended: list[CompleteChatResult | SidecarError] = []

        async def work() -> CompleteChatResult:
            return await self.complete(await self.preparer.prepare(params))

        async def end(outcome: CompleteChatResult | SidecarError) -> None:
            ended.append(outcome)

        await self.streams.run_to_terminal(params.stream_id, scope, work, end, "request")
        if isinstance(ended[0], SidecarError):
            raise ended[0]
        return ended[0]

    # --- model lists and connection tests -------------------------------------------------------

    async def test_connection(self, params: TestConnectionParams) -> TestConnectionResult:
        return await self.models.test_connection(params)

    def forget_models(self, provider_id: str) -> None:
        self.models.forget(provider_id)

    async def list_models(self, providers: list[Provider], refresh: bool) -> list[ModelInfo]:
        return await self.models.list_models(providers, refresh)


class _Transports:
    """The transports by ``provider.transport``, each but HTTP built (and imported) on first use, so start-up
    does not pay for the ones an app never uses."""

    def __init__(self, http: HttpTransport, protocols: Callable[[str], WireProtocol], options: Options) -> None:
        self._built: dict[str, Transport] = {"http": http}
        self._http = http
        self._protocols = protocols
        self._options = options

    def get(self, kind: str) -> Transport:
        """The transport for ``kind``; KeyError when there is none."""
        transport = self._built.get(kind)
        if transport is None:
            transport = self._built[kind] = self._build(kind)
        return transport

    def _build(self, kind: str) -> Transport:
        """Each transport module has ``build(protocols, options, count_usage)``, imported on first use."""
        if not kind.isidentifier():
            raise KeyError(kind)
        try:
            module = importlib.import_module(f".transports.{kind}", __package__)
        except ModuleNotFoundError:
            raise KeyError(kind) from None
        transport: Transport = module.build(self._protocols, self._options, self._http.count_usage)
        return transport

    def built(self) -> list[Transport]:
        return list(self._built.values())


def _terminal(outcome: Event | SidecarError) -> Event:
    return ErrorEvent(error=outcome.info) if isinstance(outcome, SidecarError) else outcome
