"""What an upstream's overflow error says about the model's window, and the output reserve a request keeps."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..types import StreamTextParams

DEFAULT_RESERVE = 1024
"""tokens kept for the answer when neither the request nor the catalog says how long it may be"""

_NUMBER = r"(\d[\d,]*)"
_LIMITS = (
    re.compile(r"maximum context length is " + _NUMBER),  # OpenAI, vLLM, DeepSeek, Groq
    re.compile(_NUMBER + r" maximum"),  # Anthropic: "prompt is too long: 208000 tokens > 200000 maximum"
    re.compile(r"maximum number of tokens allowed \(" + _NUMBER),  # Gemini
    re.compile(r"cannot exceed " + _NUMBER),  # Cohere
    re.compile(r"context (?:length|size|window)(?: of| is)? " + _NUMBER),  # Ollama, llama.cpp, others
    re.compile(r"n_ctx\W+" + _NUMBER),  # llama.cpp's error fields, when quoted in the message
)
_ACTUALS = (
    re.compile(r"resulted in " + _NUMBER),  # OpenAI
    re.compile(r"you requested " + _NUMBER),  # vLLM
    re.compile(r"too long: " + _NUMBER),  # Anthropic
    re.compile(r"input token count \(" + _NUMBER),  # Gemini
    re.compile(r"received " + _NUMBER),  # Cohere
    re.compile(r"n_prompt_tokens\W+" + _NUMBER),  # llama.cpp
)


@dataclass(frozen=True)
class Overflow:
    """What an overflow error says: the window (``limit``) and the prompt's size as the upstream counted it."""

    limit: int | None
    actual: int | None


def overflow_of(message: str) -> Overflow:
    """The numbers in an upstream's ``context_length_exceeded`` message, where it states them."""
    return Overflow(_first(_LIMITS, message), _first(_ACTUALS, message))


def _first(patterns: tuple[re.Pattern[str], ...], text: str) -> int | None:
    for pattern in patterns:
        found = pattern.search(text)
        if found:
            value = int(found.group(1).replace(",", ""))
            if value > 0:
                return value
    return None


def reserve_for(params: StreamTextParams, window: int, max_output: int | None) -> int:
    """The tokens of ``window`` kept free for the answer: the ``context`` option's, else ``max_tokens``, else the
    model's output limit up to a quarter of the window, else ``DEFAULT_RESERVE`` up to a quarter."""
    ctx = params.context
    if not isinstance(ctx, bool) and ctx and isinstance(ctx.reserve_output_tokens, int):
        return ctx.reserve_output_tokens
    if isinstance(params.max_tokens, int):
        return params.max_tokens
    return min(max_output or DEFAULT_RESERVE, window // 4)


def ollama_num_ctx(options: object) -> int | None:
    """Ollama's window as a request sets it: ``options.num_ctx`` of the body's options."""
    if isinstance(options, dict):
        inner = options.get("options")
        if isinstance(inner, dict) and isinstance(inner.get("num_ctx"), int) and inner["num_ctx"] > 0:
            return int(inner["num_ctx"])
    return None
