"""The ``llama-cpp`` protocol: a request to ``local:<id>`` becomes a ``LocalRequest`` whose generator runs the
registered model (``LocalModels.generate``) in the local transport's worker thread."""

from __future__ import annotations

from functools import partial
from typing import Any

from msgspec import UNSET

from ..errors import SidecarError
from ..protocols.base import LocalRequest, WireProtocol
from ..providers import Model, Provider
from ..types import ImagePart, StreamTextParams, WarningEvent
from .models import LocalModels

NAME = "llama-cpp"


def local_protocol(models: LocalModels) -> WireProtocol:
    async def check(provider: Provider) -> None:
        if models.installed is None:  # the first import takes ~0.1-0.4 s: not on the event loop
            import anyio

            await anyio.to_thread.run_sync(models.require_installed)
        models.require_installed()

    def encode(params: StreamTextParams, provider: Provider, model: str, api_key: str | None) -> LocalRequest:
        models.get(model)  # an unknown id is the RPC error
        for m in params.messages:
            if not isinstance(m.content, str) and any(isinstance(p, ImagePart) for p in m.content):
                raise SidecarError("invalid_request", f"local:{model}: local models read text only",
                                   provider=provider.id)
        warnings = []
        if params.tools is not UNSET and params.tools:
            warnings.append(WarningEvent(code="unsupported_setting",
                                         message="local models do not call tools here: the tools were not sent"))
        return LocalRequest(generate=partial(models.generate, model, params), warnings=warnings)

    def registered() -> list[Model]:
        return [Model(m.id, name=m.name if isinstance(m.name, str) else m.id,
                      context_window=m.n_ctx if isinstance(m.n_ctx, int) else
                      m.context_length if isinstance(m.context_length, int) else None)
                for m in models.all()]

    return WireProtocol(
        name=NAME, framing="ndjson", encode_request=encode, new_decoder=_unused, map_http_error=_unused,
        models_request=_unused, parse_models=_unused, transport="local", check=check, list_models=registered,
    )


def _unused(*args: Any) -> Any:
    raise AssertionError("the llama-cpp protocol speaks no HTTP")
