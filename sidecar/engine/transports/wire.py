"""What the transports that speak a wire protocol (http, process, local) share: finding the protocol,
its check hook, and encoding a request once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ...credentials import redact
from ...errors import SidecarError
from ...framing import MessageReader
from ...protocols.base import WireProtocol
from ...providers import Model, Provider
from ...tokens import OutputTally
from ...types import StreamTextParams, Usage
from ..decoding import Decoding
from ..request import Options, Prepared

Protocols = Callable[[str], WireProtocol]
"""protocol name -> the protocol; KeyError when there is none"""
CountUsage = Callable[[Prepared, OutputTally, dict[str, str]], Awaitable[Usage]]
"""usage for an answer that reported none: (request, its output, headers for a tokenizer endpoint)"""


class WireTransport:
    kind: str = ""
    """the ``transport`` a protocol names to run over this one"""
    request_type: type = object
    """what this transport sends; a protocol's encoder that returns anything else is a bug"""

    def __init__(self, protocols: Protocols, options: Options, count_usage: CountUsage | None = None) -> None:
        self.protocols = protocols
        self.options = options
        self._count_usage = count_usage

    async def count_usage(self, target: Prepared, tally: OutputTally, headers: dict[str, str]) -> Usage:
        """Usage for an answer that reported none (the engine gives the HTTP transport's counter)."""
        assert self._count_usage is not None
        return await self._count_usage(target, tally, headers)

    def decoding(self, target: Prepared, framing: str) -> Decoding:
        """The request's decoder behind the one driver, reading ``framing`` bounded by ``max_event_bytes``."""
        assert target.protocol is not None
        provider = target.provider.id
        return Decoding(target.protocol.decoder_for(provider, target.params),
                        MessageReader(framing, self.options.read_limits.max_event_bytes, provider))

    def protocol(self, provider: Provider) -> WireProtocol:
        try:
            protocol = self.protocols(provider.protocol)
        except KeyError:
            raise SidecarError(
                "invalid_request", f"protocol {provider.protocol!r} is not available yet", provider=provider.id
            ) from None
        if protocol.transport != self.kind:
            raise SidecarError("invalid_request", f"{provider.id}: protocol {protocol.name!r} runs over the "
                               f"{protocol.transport} transport, not {self.kind}", provider=provider.id)
        return protocol

    async def check(self, provider: Provider) -> None:
        protocol = self.protocol(provider)
        if protocol.check is not None:
            await protocol.check(provider)

    def encode(self, params: StreamTextParams, provider: Provider, model: str, api_key: str | None) -> Prepared:
        protocol = self.protocol(provider)
        try:
            request = protocol.encode_request(params, provider, model, api_key)
        except SidecarError as exc:
            exc.info.message = redact(exc.info.message, api_key)
            raise
        if not isinstance(request, self.request_type):
            raise TypeError(f"protocol {protocol.name} encoded a {type(request).__name__} for the "
                            f"{type(self).__name__}")
        return Prepared(params, provider, model, api_key, protocol, request, list(request.warnings))

    async def models(self, provider: Provider, api_key: str | None, timeout: float) -> list[Model]:
        """No list to fetch: the protocol's own list, if it has one (the catalog's models are merged in);
        the connection test is the protocol's check."""
        await self.check(provider)
        protocol = self.protocol(provider)
        return protocol.list_models() if protocol.list_models is not None else []

    async def aclose(self) -> None:
        pass
