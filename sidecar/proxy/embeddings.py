"""OpenAI ``/v1/embeddings`` bodies to the contract's EmbedParams, and its EmbedResult back to OpenAI's
answer. Pure: no I/O.

``input`` is a string or a list of strings; token arrays (lists of integers) are refused: the sidecar sends
text to every provider, and a token id means nothing to another provider's tokenizer. ``encoding_format``
``base64`` (the default of OpenAI's own Python package) is little-endian float32, as OpenAI sends it."""

from __future__ import annotations

import base64
import sys
from array import array
from typing import Any, Literal

import msgspec
from msgspec import Struct

from ..errors import SidecarError
from ..types import EmbedParams, EmbedResult
from .translate import decode_body


class EmbeddingsRequest(Struct):
    """The fields of an OpenAI ``/v1/embeddings`` body the proxy understands (others are ignored)."""

    model: str
    input: str | list[Any]
    dimensions: int | None = None
    encoding_format: Literal["float", "base64"] | None = None


_decoder = msgspec.json.Decoder(EmbeddingsRequest)


def parse_embeddings_request(body: bytes) -> EmbeddingsRequest:
    return decode_body(_decoder, body)


def to_embed_params(req: EmbeddingsRequest) -> EmbedParams:
    if ":" not in req.model:
        raise SidecarError("unknown_model", f"model must be 'provider:model', got {req.model!r}")
    texts = [req.input] if isinstance(req.input, str) else req.input
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise SidecarError("invalid_request", f"input[{i}] is not a string: token arrays are not supported, "
                               "send the text")
    params: dict[str, Any] = {"model": req.model, "input": texts}
    if req.dimensions is not None:
        params["dimensions"] = req.dimensions
    try:  # the contract's own checks (dimensions' range)
        return msgspec.convert(params, EmbedParams)
    except msgspec.ValidationError as exc:
        raise SidecarError("invalid_request", f"invalid request body: {exc}") from None


def _base64(vector: list[float]) -> str:
    floats = array("f", vector)
    if sys.byteorder != "little":
        floats.byteswap()
    return base64.b64encode(floats.tobytes()).decode("ascii")


def embeddings_body(result: EmbedResult, encoding: str | None) -> dict[str, Any]:
    """OpenAI's answer: one ``embedding`` object per input, in order."""
    as_base64 = encoding == "base64"
    tokens = result.usage.input_tokens
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": _base64(v) if as_base64 else v}
                 for i, v in enumerate(result.embeddings)],
        "model": result.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
