"""Model lists (the catalog merged with each provider's live list, cached) and connection tests."""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import anyio

from ..credentials import check_sendable
from ..errors import SidecarError
from ..providers import Model, Provider, Registry, check_url
from ..types import ModelInfo, TestConnectionParams, TestConnectionResult
from .prepare import Preparer

log = logging.getLogger("sidecar.engine")

TEST_TIMEOUT = 15.0
MODELS_TIMEOUT = 5.0
MODELS_TTL = 600.0


class ModelLists:
    def __init__(self, registry: Registry, preparer: Preparer) -> None:
        self.registry = registry
        self.preparer = preparer
        self._models: dict[str, tuple[float, list[Model]]] = {}
        self._unlisted: dict[str, float] = {}
        """providers whose list could not be read for ``model``, and when"""

    async def fetch(self, provider: Provider, key: str | None, timeout: float) -> list[Model]:
        """The provider's live model list through its transport: the cheapest authenticated round trip
        (none, ``[]``, for a transport that has no list)."""
        return await self.preparer.transport(provider).models(provider, key, timeout)

    async def test_connection(self, params: TestConnectionParams) -> TestConnectionResult:
        """The cheapest authenticated round trip the provider has: its model list."""
        provider = self.registry.get(params.provider)
        if isinstance(params.base_url, str):
            check_url(params.base_url)
            provider = replace(provider, base_url=params.base_url.rstrip("/"))
        started = time.perf_counter()
        error: SidecarError | None = None
        try:
            if isinstance(params.api_key, str):  # the caller's own key: it may go where the caller says
                key: str | None = params.api_key.strip()
                check_sendable(params.api_key.strip(), provider, "the api_key given")
            else:
                provider, key = await self.preparer.authorize(provider)
            await self.fetch(provider, key, TEST_TIMEOUT)
        except SidecarError as exc:
            error = exc
        ms = round((time.perf_counter() - started) * 1000, 3)
        if error is None:
            return TestConnectionResult(ok=True, latency_ms=ms)
        return TestConnectionResult(ok=False, latency_ms=ms, error=error.info)

    async def model(self, provider: Provider, model_id: str) -> Model | None:
        """One model of the provider's live list (cached like ``list_models``; asked when not cached); None
        when the list does not have it or cannot be read."""
        cached = self._models.get(provider.id)
        if cached is None or time.monotonic() - cached[0] >= MODELS_TTL:
            failed = self._unlisted.get(provider.id)
            if failed is not None and time.monotonic() - failed < MODELS_TTL:
                return None  # asked a moment ago and it failed: not again on every request
            try:
                models = await self.fetch(provider, await self.preparer.key(provider), MODELS_TIMEOUT)
            except SidecarError as exc:
                log.info("model list of %s not available: %s", provider.id, exc.info.message)
                self._unlisted[provider.id] = time.monotonic()
                return None
            self._unlisted.pop(provider.id, None)
            cached = self._models[provider.id] = (time.monotonic(), models)
        return next((m for m in cached[1] if m.id == model_id), None)

    def forget(self, provider_id: str) -> None:
        self._models.pop(provider_id, None)
        self._unlisted.pop(provider_id, None)

    async def list_models(self, providers: list[Provider], refresh: bool) -> list[ModelInfo]:
        """Catalog models merged with each provider's live list (cached; ``refresh`` bypasses).

        A provider that cannot be asked (no key, not running, an error) still gives its catalog
        models; why is logged, not raised, so one dead server does not fail the whole call.
        """
        live: dict[str, list[Model]] = {}

        async def fetch(p: Provider) -> None:
            cached = self._models.get(p.id)
            if cached and not refresh and time.monotonic() - cached[0] < MODELS_TTL:
                live[p.id] = cached[1]
                return
            try:
                reached, key = await self.preparer.authorize(p)
                models = await self.fetch(reached, key, MODELS_TIMEOUT)
            except SidecarError as exc:
                log.info("model list of %s not available: %s", p.id, exc.info.message)
                return
            self._models[p.id] = (time.monotonic(), models)
            live[p.id] = models

        async with anyio.create_task_group() as tg:
            for p in providers:
                tg.start_soon(fetch, p)
        out: list[ModelInfo] = []
        for p in providers:
            configured = {m.id: m for m in p.configured_models}
            known = {m.id for m in p.models}
            out += [m.info(p.id) for m in p.models]
            for m in live.get(p.id, ()):  # a live model's window as configure_provider set it, where it did
                if m.id not in known:
                    own = configured.pop(m.id, None)
                    out.append((m if own is None else replace(m, context_window=own.context_window or m.context_window,
                                max_output_tokens=own.max_output_tokens or m.max_output_tokens)).info(p.id))
            out += [m.info(p.id) for m in configured.values()]
        return out
