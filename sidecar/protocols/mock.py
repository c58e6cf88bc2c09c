"""The built-in offline provider: deterministic replies, no key, no network."""

from __future__ import annotations

import math

from ..types import StreamTextParams, Usage, UserMessage
from .base import text_of

MODELS = ("echo",)
CHUNK = 4


def _tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def reply(params: StreamTextParams, model: str) -> tuple[list[str], Usage]:
    """``echo``: the last user message's text, a few characters per delta."""
    last = next((m for m in reversed(params.messages) if isinstance(m, UserMessage)), None)
    text = text_of(last.content) if last else ""
    chunks = [text[i : i + CHUNK] for i in range(0, len(text), CHUNK)]
    prompt = "".join(text_of(m.content) for m in params.messages if hasattr(m, "content"))
    return chunks, Usage(input_tokens=_tokens(prompt), output_tokens=_tokens(text))
