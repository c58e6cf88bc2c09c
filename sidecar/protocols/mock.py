"""The built-in offline provider: deterministic replies, no key, no network."""

from __future__ import annotations

import math

from ..types import ContentPart, StreamTextParams, TextPart, Usage, UserMessage

MODELS = ("echo",)
CHUNK = 4


def _text(content: str | list[ContentPart]) -> str:
    return content if isinstance(content, str) else "".join(p.text for p in content if isinstance(p, TextPart))


def _tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def reply(params: StreamTextParams, model: str) -> tuple[list[str], Usage]:
    """``echo``: the last user message's text, a few characters per delta."""
    last = next((m for m in reversed(params.messages) if isinstance(m, UserMessage)), None)
    text = _text(last.content) if last else ""
    chunks = [text[i : i + CHUNK] for i in range(0, len(text), CHUNK)]
    prompt = "".join(_text(m.content) for m in params.messages if hasattr(m, "content"))
    return chunks, Usage(input_tokens=_tokens(prompt), output_tokens=_tokens(text))
