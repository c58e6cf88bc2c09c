"""HTTP status (and the upstream's own error code) to the contract's error codes; reading error bodies."""

from __future__ import annotations

from typing import Any

import msgspec

from ..errors import SidecarError
from ..types import ErrorCode

MAX_MESSAGE = 500


_OVERFLOW = (
    "context_length",  # OpenAI's code; vLLM
    "exceeds the context length",  # Ollama: "the input length exceeds the context length"
    "maximum context length",  # OpenAI, vLLM, DeepSeek, Groq, Mistral
    "too many tokens",  # Cohere
    "prompt is too long",  # Anthropic
    "exceeds the maximum number of tokens",  # Gemini
    "context size",  # llama.cpp's server ("exceeds the available context size"; type exceed_context_size_error)
    "context window",  # "exceeds the context window" (several OpenAI-compatible servers)
)
"""words of an upstream's error that mean the prompt did not fit the model's context window"""


def classify(status: int | None, code: str = "", message: str = "") -> ErrorCode:
    text = f"{code} {message}".lower()
    if any(w in text for w in _OVERFLOW):
        return "context_length_exceeded"
    if "content_filter" in text or "content_policy" in text or "safety" in text:
        return "content_filtered"
    if status is None or status < 400:
        return _classify_text(text)
    if status == 401:
        return "authentication_failed"
    if status in (402, 403):
        return "permission_denied"
    if status == 404:
        return "unknown_model" if "model" in text else "not_found"
    if status in (408, 504):
        return "timeout"
    if status == 429:
        return "rate_limited"
    if status >= 500:
        return "upstream_unavailable"
    return "invalid_request"


_TEXT_HINTS: tuple[tuple[tuple[str, ...], ErrorCode], ...] = (
    (("rate_limit", "rate limit", "too many requests", "quota"), "rate_limited"),
    (("invalid_api_key", "authentication", "unauthorized", "api key", "api token"), "authentication_failed"),
    (("permission", "forbidden"), "permission_denied"),
    (("model_not_found", "does not exist"), "unknown_model"),
    (("timeout", "timed out"), "timeout"),
    (("invalid_request", "bad request", "invalid"), "invalid_request"),
)


def _classify_text(text: str) -> ErrorCode:
    """No HTTP status to go by (an error inside a stream, or in a 2xx body): the words decide.

    Anything unrecognised is the upstream's failure: the request itself was accepted.
    """
    for words, code in _TEXT_HINTS:
        if any(w in text for w in words):
            return code
    return "upstream_unavailable"


def upstream_error(
    provider: str, status: int | None, code: str, message: str, *, retryable: bool | None = None
) -> SidecarError:
    kind = classify(status, code, message)
    if kind == "rate_limited" and "quota" in f"{code} {message}".lower():
        retryable = False  # out of credit: waiting will not help
    text = message.strip() or (f"HTTP {status}" if status else "upstream error")
    if len(text) > MAX_MESSAGE:
        text = text[:MAX_MESSAGE] + "…"
    status = status if status is not None and status >= 400 else None  # a 200 carrying an error is no status
    return SidecarError(kind, f"{provider}: {text}", provider=provider, status=status, retryable=retryable)


def error_fields(obj: Any) -> tuple[str, str]:
    """(code, message) out of the common error shapes: {"error": {...}}, {"error": "..."}, {"message": ...}."""
    if isinstance(obj, dict):
        err = obj.get("error", obj)
        if isinstance(err, str):
            return "", err
        if isinstance(err, dict):
            code = err.get("code") or err.get("type") or ""
            message = err.get("message") or err.get("msg") or ""
            return str(code), message if isinstance(message, str) else str(message)
    return "", ""


def body_text(body: bytes | str) -> str:
    """An error body that is not JSON, as the message: its text, cut short."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return text.strip()[:200]


def error_body(body: bytes) -> tuple[str, str]:
    """(code, message) of an HTTP error response: the fields of its JSON (``error_fields``), or its text."""
    try:
        return error_fields(msgspec.json.decode(body))
    except msgspec.DecodeError:
        return "", body_text(body)


def stream_error(data: str) -> Any:
    """The error object of an error payload in a stream that is not of the expected shape: its JSON's
    ``error`` member (or the JSON itself when it has none), or its text as the ``message``."""
    try:
        obj = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return {"message": data[:200]}
    return obj.get("error", obj) if isinstance(obj, dict) else {"message": str(obj)[:200]}
