"""How a prepared request reaches a model. The engine picks one by ``provider.transport`` and drives it
without knowing which it is: ``encode`` once in ``prepare`` (a refusal there is the RPC error), then
``attempt`` per try, which emits decoded contract events and returns the ``done`` event.

- ``http``: an HTTP streaming API (the pooled client, the watchdog, error mapping);
- ``process``: a child program speaking JSON lines on stdout, killed with its process group on abort;
- ``local``: a model running in this process, in a worker thread;
- ``mock``: the built-in offline provider.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ...policy import Policy
    from ...providers import Model, Provider
    from ...types import DoneEvent, StreamTextParams
    from ..request import Prepared, RunState


class Transport(Protocol):
    async def check(self, provider: Provider) -> None:
        """Before anything else of a request (the protocol's own check: is its program installed?)."""
        ...

    def encode(self, params: StreamTextParams, provider: Provider, model: str, api_key: str | None) -> Prepared:
        """The request, checked and encoded once; a SidecarError here is the RPC error."""
        ...

    async def attempt(self, target: Prepared, run: RunState, policy: Policy) -> DoneEvent:
        """One try: emits the answer's events through ``run.emit`` and returns its ``done`` (not emitted)."""
        ...

    async def models(self, provider: Provider, api_key: str | None, timeout: float) -> list[Model]:
        """The provider's live model list, also its connection test (``[]``: the transport has no list)."""
        ...

    async def aclose(self) -> None:
        ...
