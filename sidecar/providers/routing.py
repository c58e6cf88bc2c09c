"""Which of OpenAI's two APIs a request goes to: Chat Completions (protocol ``openai``) or the Responses API
(protocol ``openai-responses``). Pure: the request, its provider and model in, the provider to use out.

The request's ``provider_options.api`` (``"responses"`` or ``"chat"``) decides; else the catalog's model (``api``:
the models served only by the Responses API); else the provider's own protocol. Only OpenAI-style providers
switch; for any other the field means nothing (a fallback to another provider's model keeps the same options).
The field is the sidecar's, never sent upstream (``protocols.toolkit.ROUTING_OPTIONS``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import cast, get_args

from ..errors import SidecarError
from ..types import Api, Protocol, StreamTextParams
from .model import Provider

PROTOCOL_OF: dict[str, Protocol] = {"chat": "openai", "responses": "openai-responses"}
"""an API -> the protocol that speaks it"""
OPENAI_STYLE: frozenset[str] = frozenset(PROTOCOL_OF.values())
"""the protocols a provider can switch between"""


def requested_api(params: StreamTextParams) -> Api | None:
    """``provider_options.api`` when given; invalid_request for another value."""
    opts = params.provider_options
    if not isinstance(opts, dict) or "api" not in opts:
        return None
    api = opts["api"]
    if api not in get_args(Api):
        raise SidecarError("invalid_request", f"provider_options.api must be 'responses' or 'chat', got {api!r}")
    return cast(Api, api)


def route(params: StreamTextParams, provider: Provider, model: str) -> Provider:
    """``provider`` speaking the protocol of the API this request needs (itself when that is its own)."""
    api = requested_api(params)
    if provider.protocol not in OPENAI_STYLE:
        return provider
    if api is None:
        api = next((m.api for m in provider.models if m.id == model and m.api is not None), None)
    if api is None or PROTOCOL_OF[api] == provider.protocol:
        return provider
    return replace(provider, protocol=PROTOCOL_OF[api])
