"""Everything a request needs before the network, done once: resolve ``provider:model``, run the protocol's
check, validate the request, fetch the key and encode. Whatever fails here is the RPC error, before any event;
retries send what was encoded here, and a fallback model is prepared on its own."""

from __future__ import annotations

from collections.abc import Callable

from ..checks import check_request
from ..credentials import Credentials
from ..errors import SidecarError
from ..providers import Provider, Registry, split_model
from ..providers.routing import route
from ..settings import SettingsStore
from ..types import StreamTextParams
from .request import Prepared
from .transports import Transport


class Preparer:
    def __init__(self, registry: Registry, credentials: Credentials, settings: SettingsStore,
                 transports: Callable[[str], Transport]) -> None:
        self.registry = registry
        self.credentials = credentials
        self.settings = settings
        self.transports = transports
        """``provider.transport`` -> the transport; KeyError when there is none"""

    async def prepare(self, params: StreamTextParams) -> Prepared:
        if not params.messages:
            raise SidecarError("invalid_request", "messages must not be empty")
        if isinstance(params.model, str):
            provider_id, model = split_model(params.model)
        elif (active := self.settings.value.active) is not None:  # read once: another process may change it
            provider_id, model = active.provider, active.model
        else:
            raise SidecarError("invalid_request", "no model given and no active provider set")
        return await self.prepare_for(params, self.registry.get(provider_id), model)

    async def prepare_for(self, params: StreamTextParams, provider: Provider, model: str) -> Prepared:
        """``params`` for ``provider``'s ``model``, which the caller resolved (speaking the protocol of the API the
        request needs: ``providers.routing``)."""
        provider = route(params, provider, model)
        transport = self.transport(provider)
        await transport.check(provider)  # e.g. is the provider's program installed
        check_request(params, provider, model)  # a bad schema; images for a model without vision
        provider, key = await self.authorize(provider)
        return transport.encode(params, provider, model, key)

    async def renew(self, target: Prepared) -> Prepared | None:
        """After a 401 to a signed-in provider's token: the request again with a refreshed token (None when
        refreshing cannot help: not signed in, nothing to refresh)."""
        if not await self.credentials.token_rejected(target.provider, target.api_key):
            return None
        return await self.prepare_for(target.params, self.registry.get(target.provider.id), target.model)

    def transport(self, provider: Provider) -> Transport:
        try:
            return self.transports(provider.transport)
        except KeyError:
            raise SidecarError("invalid_request", f"transport {provider.transport!r} is not available",
                               provider=provider.id) from None

    async def key(self, provider: Provider) -> str | None:
        """The key to send to the provider's base URL; raises when one is needed and none may go there."""
        return (await self.authorize(provider))[1]

    async def authorize(self, provider: Provider) -> tuple[Provider, str | None]:
        """The provider as its requests reach it (a sign-in may say where, with which headers) and the key or
        token to send; raises when one is needed and none may go there."""
        return await self.credentials.authorized(provider)
