"""Checks the engine runs around the network: a request a model cannot take is refused before any
call, and an answer that is not the JSON ``response_format`` asked for ends its stream in an error.

A JSON answer that does not parse, or does not match the schema, is ``protocol_error``: the request
was fine and the upstream answered, but not with what was asked of it (the contract's "the upstream
sent something unparseable"). By then its text has been streamed, so the stream ends with that
``error`` after the text instead of ``done``; for ``complete_chat`` it is the response error. The
message names the first failure (``jsonschema``'s best match) by its JSON path.

``jsonschema`` is imported only when a request carries a schema.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from .errors import SidecarError
from .providers import Provider
from .types import Event, FinishReason, ImagePart, ResponseFormat, StreamTextParams, SystemMessage, TextDeltaEvent

MAX_DETAIL = 300
"""characters of a validation message kept in the error (it can quote a whole value)"""


def check_request(params: StreamTextParams, provider: Provider, model: str) -> None:
    """What can be refused before the network: an invalid schema, images for a model without vision."""
    rf = params.response_format
    if isinstance(rf, ResponseFormat) and rf.type == "json_schema" and isinstance(rf.schema, dict):
        _check_schema(rf.schema)
    if provider.is_custom:
        return  # the user's own models: the catalog knows nothing about them
    for m in provider.models:
        if m.id == model:
            if m.embedding:
                raise SidecarError("invalid_request", f"{provider.id}:{model} is an embedding model: use llm_embed",
                                   provider=provider.id)
            if m.vision is False and _has_image(params):
                raise SidecarError(
                    "invalid_request",
                    f"{provider.id}:{model} cannot read images (it has no vision); remove the image parts "
                    "or choose a model that can",
                    provider=provider.id,
                )
            return


def _has_image(params: StreamTextParams) -> bool:
    return any(
        not isinstance(msg, SystemMessage)
        and not isinstance(msg.content, str)
        and any(isinstance(p, ImagePart) for p in msg.content)
        for msg in params.messages
    )


def _check_schema(schema: dict[str, Any]) -> None:
    from jsonschema import exceptions, validators

    try:
        validators.validator_for(schema).check_schema(schema)
    except exceptions.SchemaError as exc:
        raise SidecarError(
            "invalid_request",
            f"response_format.schema is not a valid JSON Schema (at {exc.json_path}): {_cut(exc.message)}",
        ) from None


def _cut(text: str) -> str:
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "…"


class JsonAnswer:
    """Collects a stream's text (a list of deltas, joined once) and checks it is the JSON asked for."""

    __slots__ = ("parts", "schema")

    def __init__(self, schema: dict[str, Any] | None) -> None:
        self.schema = schema
        self.parts: list[str] = []

    @classmethod
    def wanted(cls, params: StreamTextParams) -> JsonAnswer | None:
        """A checker when ``response_format`` asks for JSON; None (nothing to do) otherwise."""
        rf = params.response_format
        if not isinstance(rf, ResponseFormat) or rf.type == "text":
            return None
        schema = rf.schema if rf.type == "json_schema" and isinstance(rf.schema, dict) else None
        return cls(schema)

    def wrap(self, emit: Callable[[Event], Awaitable[None]]) -> Callable[[Event], Awaitable[None]]:
        parts = self.parts

        async def collecting(event: Event) -> None:
            if type(event) is TextDeltaEvent:
                parts.append(event.text)
            await emit(event)

        return collecting

    def verify(self, finish: FinishReason, provider: str) -> None:
        """Raise ``protocol_error`` unless the text is JSON matching the schema. A step that ends in tool
        calls (the answer comes later) or in the content filter (its own reason) is not checked."""
        if finish in ("tool_calls", "content_filter"):
            return
        text = "".join(self.parts)
        cut = " (it stopped at the token limit)" if finish == "length" else ""
        if not text.strip():
            raise SidecarError("protocol_error", f"{provider}: the answer is empty, not the JSON response_format "
                               f"asked for{cut}", provider=provider)
        try:
            value = msgspec.json.decode(text)
        except msgspec.DecodeError as exc:
            raise SidecarError("protocol_error", f"{provider}: the answer is not valid JSON{cut}: {exc}",
                               provider=provider) from None
        if self.schema is None:
            return
        from jsonschema import exceptions, validators

        validator = validators.validator_for(self.schema)(self.schema)
        error = exceptions.best_match(validator.iter_errors(value))
        if error is not None:
            raise SidecarError(
                "protocol_error",
                f"{provider}: the answer does not match the response_format schema at {error.json_path}{cut}: "
                f"{_cut(error.message)}",
                provider=provider,
            )
