"""HTTP status (and the upstream's own error code) to the contract's error codes."""

from __future__ import annotations

from typing import Any

from ..errors import SidecarError
from ..types import ErrorCode

MAX_MESSAGE = 500


def classify(status: int | None, code: str = "", message: str = "") -> ErrorCode:
    text = f"{code} {message}".lower()
    if "context_length" in text or "maximum context length" in text or "too many tokens" in text:
        return "context_length_exceeded"
    if "content_filter" in text or "content_policy" in text or "safety" in text:
        return "content_filtered"
    if status is None:
        if "rate" in text and "limit" in text:
            return "rate_limited"
        if "overloaded" in text or "unavailable" in text:
            return "upstream_unavailable"
        return "upstream_unavailable" if "server" in text else "invalid_request"
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


def upstream_error(
    provider: str, status: int | None, code: str, message: str, *, retryable: bool | None = None
) -> SidecarError:
    kind = classify(status, code, message)
    if kind == "rate_limited" and "quota" in f"{code} {message}".lower():
        retryable = False  # out of credit: waiting will not help
    text = message.strip() or (f"HTTP {status}" if status else "upstream error")
    if len(text) > MAX_MESSAGE:
        text = text[:MAX_MESSAGE] + "…"
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
