"""Token counts for answers whose upstream reported none (llama-cpp-python's server streams no
``usage`` at all), so ``done.usage`` is a count marked ``estimated: true`` rather than a zero
that looks like a fact.

Two ways to count, best first:

- **the server's own tokenizer**, for local OpenAI-style servers: llama.cpp's ``POST /tokenize``
  (``{"content"}`` -> ``{"tokens"}``) and llama-cpp-python's ``POST /extras/tokenize``
  (``{"input"}`` -> ``{"tokens"}``), both at the server's root (the base URL without ``/v1``).
  Which one a server has is found by asking (``/tokenize`` first) and remembered per provider
  and base URL; a server with neither is asked again only after ``PROBE_TTL``.
- **an estimate from the characters** (``estimate``) for everything else, or when the tokenizer
  fails or is slow.

Either way the result is ``estimated: true``: the sidecar re-tokenizes the *text* it saw, which
leaves out the chat template's tokens (``PER_MESSAGE`` and ``PRIMING`` stand in for them), any
default system prompt the server's template adds, and tokens the stream never showed; and a
re-tokenized answer can differ by a few tokens from the sequence the model generated.

Counting runs after the stream has ended, within ``COUNT_TIMEOUT`` in all; it never raises.

The same estimate, per message (``message_tokens``) and calibrated per protocol family (``CALIBRATION``), is
what ``count_tokens`` answers where the provider cannot count and what the ``context`` option fits by
(sidecar/engine/context.py).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import msgspec
from msgspec import UnsetType

from .types import (
    Event,
    ImagePart,
    Message,
    ReasoningDeltaEvent,
    ReasoningPart,
    StreamTextParams,
    TextDeltaEvent,
    TextPart,
    ToolCallEvent,
    ToolCallPart,
    ToolDefinition,
    Usage,
)

if TYPE_CHECKING:
    import httpx

    from .providers import Provider

log = logging.getLogger("sidecar.tokens")

ASCII_CHARS_PER_TOKEN = 4.0
"""Measured with SmolLM2's tokenizer (a 49k-token BPE; bench/usage_count.py): English prose 4.8
characters a token, JSON 4.4, Python 3.7, markdown with code 3.2, German 2.5. 4.0 (OpenAI's rule of
thumb too) sits in the middle: within about 20% either way for English, prose, code and JSON.
Tokenizers with larger vocabularies (Llama 3, Qwen: 128k-150k) need fewer tokens, so there it errs high"""
OTHER_CHARS_PER_TOKEN = 1.0
"""characters outside ASCII (accents, CJK, emoji): SmolLM2 needs 2 tokens per Chinese character, large
vocabularies about 0.7; one each is the middle"""
PER_MESSAGE = 5
"""chat-template tokens around each message, its role included (ChatML: ``<|im_start|>user\\n ... <|im_end|>\\n``)"""
PRIMING = 3
"""the template's opening of the answer (ChatML: ``<|im_start|>assistant\\n``)"""
IMAGE_TOKENS = 256
"""an image in the prompt; vision encoders differ widely (LLaVA 576, Gemma 3 256), so a rough figure"""

COUNT_TIMEOUT = 2.0
"""seconds all tokenizer calls of one count may take before the estimate is used instead"""
PROBE_TTL = 600.0
"""seconds before a server found without a tokenizer is asked again"""
MAX_COUNTED_CHARS = 1 << 20
"""characters of output kept for the tokenizer; a longer answer is counted from this much and scaled"""

_ENDPOINTS: tuple[tuple[str, str], ...] = (("/tokenize", "content"), ("/extras/tokenize", "input"))
"""(path at the server root, the request field holding the text): llama.cpp, then llama-cpp-python"""


TOOL_CALL_TOKENS = 10
"""tokens a tool call costs beyond its name and JSON arguments (its framing), OpenAI-style (bench/token_estimate.py)"""


@dataclass(frozen=True)
class Calibration:
    """How one protocol family's tokenizer is estimated (bench/token_estimate.py measures it on the recorded
    streams against the usage each provider reported)."""

    chars_per_token: float = ASCII_CHARS_PER_TOKEN
    tool_call: int = TOOL_CALL_TOKENS


DEFAULT_CALIBRATION = Calibration()
CALIBRATION: dict[str, Calibration] = {
    # Claude's tokenizer: 3.6-3.7 characters a token on the recorded text answers, 2.8 with citations; a tool
    # call costs 30-47 tokens over its arguments (its tool_use block)
    "anthropic": Calibration(chars_per_token=3.5, tool_call=35),
}
"""per protocol family where the recordings say otherwise than the defaults; the others' recorded text answers
bracket 4.0 (3.1 Cohere, 4.0 Gemini, 3.6-5.7 OpenAI-style), too few to set a figure of their own"""


def calibration(protocol: str) -> Calibration:
    return CALIBRATION.get(protocol, DEFAULT_CALIBRATION)


def estimate(text: str, chars_per_token: float = ASCII_CHARS_PER_TOKEN) -> int:
    """Tokens in ``text`` by its characters (see ``ASCII_CHARS_PER_TOKEN``)."""
    if not text:
        return 0
    other = len(text) - len(text.encode("ascii", "ignore"))
    return math.ceil((len(text) - other) / chars_per_token + other / OTHER_CHARS_PER_TOKEN)


@dataclass
class Prompt:
    """The text of a request's prompt as the model reads it, less the chat template."""

    text: str
    messages: int
    images: int


def message_text(msg: Message) -> tuple[str, int, int]:
    """One message's text as the model reads it (tool calls as name and JSON arguments), its images and its
    tool calls."""
    if isinstance(msg.content, str):
        return msg.content, 0, 0
    parts: list[str] = []
    images = calls = 0
    for p in msg.content:
        if isinstance(p, TextPart | ReasoningPart):
            parts.append(p.text)
        elif isinstance(p, ToolCallPart):
            parts += (p.name, msgspec.json.encode(p.arguments).decode())
            calls += 1
        elif isinstance(p, ImagePart):
            images += 1
    return "\n".join(parts), images, calls


def tools_text(tools: list[ToolDefinition] | UnsetType) -> str:
    """The tool definitions as templates render them: JSON."""
    return "\n".join(msgspec.json.encode(t).decode() for t in tools) if isinstance(tools, list) else ""


def prompt_of(params: StreamTextParams) -> Prompt:
    """The system prompt, every message's text, tool calls and results, and the tool definitions."""
    parts: list[str] = []
    messages = images = 0
    if isinstance(params.system, str):
        parts.append(params.system)
        messages += 1
    for msg in params.messages:
        messages += 1
        text, pictures, _ = message_text(msg)
        parts.append(text)
        images += pictures
    if isinstance(params.tools, list):
        parts.append(tools_text(params.tools))
    return Prompt("\n".join(parts), messages, images)


def message_tokens(msg: Message, cal: Calibration) -> int:
    """The estimate of one message in a prompt, its template's tokens, images and tool calls' framing included."""
    text, images, calls = message_text(msg)
    return estimate(text, cal.chars_per_token) + PER_MESSAGE + images * IMAGE_TOKENS + calls * cal.tool_call


def fixed_tokens(params: StreamTextParams, cal: Calibration) -> int:
    """The estimate of what a request holds besides its messages: the system prompt, the tool definitions and
    the opening of the answer."""
    fixed = PRIMING + estimate(tools_text(params.tools), cal.chars_per_token)
    if isinstance(params.system, str):
        fixed += estimate(params.system, cal.chars_per_token) + PER_MESSAGE
    return fixed


def prompt_tokens(params: StreamTextParams, cal: Calibration) -> int:
    """The estimate of a request's whole prompt (what ``usage`` would say its input tokens are)."""
    return fixed_tokens(params, cal) + sum(message_tokens(m, cal) for m in params.messages)


class OutputTally:
    """The text a stream has produced, kept (up to ``MAX_COUNTED_CHARS``) in case it must be counted."""

    __slots__ = ("chars", "kept", "parts", "reasoning", "reasoning_chars")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.reasoning: list[str] = []
        self.chars = 0
        self.reasoning_chars = 0
        self.kept = 0

    def add(self, event: Event) -> None:
        if isinstance(event, TextDeltaEvent):  # the common case, inline: this runs for every event
            self.chars += len(event.text)
            if self.kept < MAX_COUNTED_CHARS:
                self.parts.append(event.text)
                self.kept += len(event.text)
        elif isinstance(event, ReasoningDeltaEvent):
            self.reasoning_chars += len(event.text)
            self._keep(self.reasoning, event.text)
        elif isinstance(event, ToolCallEvent):
            raw = event.arguments_raw if isinstance(event.arguments_raw, str) else None
            self._keep(self.parts, f"\n{event.name}\n{raw or msgspec.json.encode(event.arguments).decode()}")

    def _keep(self, into: list[str], text: str) -> None:
        self.chars += len(text)
        if self.kept < MAX_COUNTED_CHARS:
            into.append(text)
            self.kept += len(text)

    def scale(self) -> float:
        """How much of the output the kept text stands for (1.0 unless it was cut)."""
        return self.chars / self.kept if self.kept else 1.0


@dataclass
class _Tokenizer:
    url: str
    field: str
    bias: int
    """tokens the endpoint adds to any text (llama-cpp-python adds the model's BOS)"""


class TokenCounter:
    """Counts usage the upstream did not report; remembers which servers have a tokenizer."""

    def __init__(self) -> None:
        self._found: dict[str, tuple[float, _Tokenizer | None]] = {}

    async def usage(
        self, http: httpx.AsyncClient, provider: Provider, params: StreamTextParams, tally: OutputTally,
        headers: dict[str, str],
    ) -> Usage:
        """``estimated: true`` usage for one finished answer; never raises, never takes much over
        ``COUNT_TIMEOUT``."""
        prompt = prompt_of(params)
        output = "".join(tally.parts)
        reasoning = "".join(tally.reasoning)
        counted: tuple[int, int, int] | None = None
        if _has_tokenizer(provider):
            with anyio.move_on_after(COUNT_TIMEOUT):
                try:
                    counted = await self._count(http, provider, headers, (prompt.text, output, reasoning))
                except Exception as exc:  # a tokenizer is a nicety: any failure means the estimate
                    log.info("counting tokens with %s's tokenizer failed (%s); estimating",
                             provider.id, type(exc).__name__)
        if counted is None:
            counted = (estimate(prompt.text), estimate(output), estimate(reasoning))
        text_in, text_out, text_reasoning = counted
        scale = tally.scale()
        reasoning_tokens = math.ceil(text_reasoning * scale)
        usage = Usage(
            input_tokens=text_in + prompt.messages * PER_MESSAGE + PRIMING + prompt.images * IMAGE_TOKENS,
            output_tokens=math.ceil(text_out * scale) + reasoning_tokens,
            estimated=True,
        )
        if tally.reasoning_chars:
            usage.reasoning_tokens = reasoning_tokens
        return usage

    async def count_text(
        self, http: httpx.AsyncClient, provider: Provider, headers: dict[str, str], text: str
    ) -> int | None:
        """``text``'s tokens by the server's tokenizer (None: it has none); raises when the tokenizer fails."""
        with anyio.fail_after(COUNT_TIMEOUT * 4):
            counted = await self._count(http, provider, headers, (text, "", ""))
        return None if counted is None else counted[0]

    async def _count(
        self, http: httpx.AsyncClient, provider: Provider, headers: dict[str, str], texts: tuple[str, str, str]
    ) -> tuple[int, int, int] | None:
        tokenizer = await self._tokenizer(http, provider, headers)
        if tokenizer is None:
            return None
        try:
            a, b, c = [await _tokens(http, tokenizer, headers, t) if t else 0 for t in texts]
        except Exception:
            self._found.pop(_key(provider), None)  # ask again next time: the server may have changed
            raise
        return a, b, c

    async def _tokenizer(
        self, http: httpx.AsyncClient, provider: Provider, headers: dict[str, str]
    ) -> _Tokenizer | None:
        """The server's tokenizer endpoint, found by asking each candidate to tokenize ''."""
        key = _key(provider)
        cached = self._found.get(key)
        if cached is not None and (cached[1] is not None or time.monotonic() - cached[0] < PROBE_TTL):
            return cached[1]
        root = provider.base_url.rstrip("/").removesuffix("/v1")
        found: _Tokenizer | None = None
        for path, field in _ENDPOINTS:
            candidate = _Tokenizer(root + path, field, 0)
            try:
                candidate.bias = await _tokens(http, candidate, headers, "")
            except Exception:
                continue
            found = candidate
            break
        log.info("tokenizer of %s: %s", provider.id, found.url.removeprefix(root) if found else "none")
        self._found[key] = (time.monotonic(), found)
        return found


def _has_tokenizer(provider: Provider) -> bool:
    """Local OpenAI-style servers may have one (llama.cpp, llama-cpp-python, vLLM); hosted APIs don't
    and report usage themselves, so they are never asked."""
    return provider.protocol == "openai" and provider.is_local


def _key(provider: Provider) -> str:
    return f"{provider.id} {provider.base_url}"


class _Tokens(msgspec.Struct):
    tokens: list[Any]


async def _tokens(http: httpx.AsyncClient, tokenizer: _Tokenizer, headers: dict[str, str], text: str) -> int:
    """Token count of ``text`` less the endpoint's bias; raises on anything but a token list."""
    response = await http.post(tokenizer.url, headers=headers, json={tokenizer.field: text}, timeout=COUNT_TIMEOUT)
    response.raise_for_status()
    return max(0, len(msgspec.json.decode(response.content, type=_Tokens).tokens) - tokenizer.bias)
