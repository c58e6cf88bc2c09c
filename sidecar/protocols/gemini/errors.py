"""Google's errors: ``{"error": {"code", "message", "status", "details"}}`` in HTTP answers and streams."""

from __future__ import annotations

from typing import Any

import msgspec

from ...errors import SidecarError
from ...types import ErrorCode
from ..http_errors import MAX_MESSAGE, classify, error_body, upstream_error

_BAD_KEY_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED"})
_BAD_KEY_WORDS = ("api key not valid", "api key expired", "unregistered callers", "api_key_invalid")
_RPC_STATUS: dict[str, ErrorCode] = {
    "UNAUTHENTICATED": "authentication_failed",
    "RESOURCE_EXHAUSTED": "rate_limited",
    "PERMISSION_DENIED": "permission_denied",
    "FAILED_PRECONDITION": "permission_denied",  # "User location is not supported", billing not enabled
    "INVALID_ARGUMENT": "invalid_request",
    "OUT_OF_RANGE": "invalid_request",
    "UNAVAILABLE": "upstream_unavailable",
    "INTERNAL": "upstream_unavailable",
    "UNKNOWN": "upstream_unavailable",
    "ABORTED": "upstream_unavailable",
    "DEADLINE_EXCEEDED": "timeout",
}


def _details(err: dict[str, Any]) -> list[dict[str, Any]]:
    details = err.get("details")
    return [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []


def _kind(status: int | None, rpc: str, err: dict[str, Any], message: str) -> ErrorCode:
    text = message.lower()
    reasons = {d.get("reason") for d in _details(err)}
    if reasons & _BAD_KEY_REASONS or any(w in text for w in _BAD_KEY_WORDS):
        return "authentication_failed"  # Google answers 400 INVALID_ARGUMENT for a bad key
    too_long = "input token count" in text or "exceeds the maximum number of tokens" in text
    if rpc in ("INVALID_ARGUMENT", "OUT_OF_RANGE") and too_long:
        return "context_length_exceeded"
    if rpc == "NOT_FOUND":
        return "unknown_model" if "model" in text else "not_found"
    return _RPC_STATUS.get(rpc) or classify(status, rpc, message)


def _waiting_helps(err: dict[str, Any]) -> bool:
    """A per-minute limit passes; a daily quota, or one of zero (no free tier for the model), does not."""
    for d in _details(err):
        for v in d.get("violations") or ():
            if isinstance(v, dict) and ("PerDay" in str(v.get("quotaId", "")) or str(v.get("quotaValue")) == "0"):
                return False
    return True


def google_error(provider: str, status: int | None, err: dict[str, Any]) -> SidecarError:
    """Google's ``{"error": {"code", "message", "status", "details"}}`` (its ``error`` member)."""
    message = str(err.get("message") or "")
    rpc = str(err.get("status") or "")
    if status is None and isinstance(err.get("code"), int):
        status = err["code"]
    kind = _kind(status, rpc, err, message)
    retryable = _waiting_helps(err) if kind == "rate_limited" else None
    text = message.strip() or rpc or (f"HTTP {status}" if status else "upstream error")
    if len(text) > MAX_MESSAGE:
        text = text[:MAX_MESSAGE] + "…"
    status = status if status is not None and status >= 400 else None
    return SidecarError(kind, f"{provider}: {text}", provider=provider, status=status, retryable=retryable)


def map_http_error(status: int, body: bytes, provider: str) -> SidecarError:
    err = error_member(body)
    if isinstance(err, dict):
        return google_error(provider, status, err)
    return upstream_error(provider, status, *error_body(body))


def error_member(data: str | bytes) -> Any:
    """The ``error`` member of an error body, or of a stream payload that is not a valid chunk (also inside
    a one-element array, as the non-SSE stream endpoint sends it); None when there is none."""
    try:
        obj = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return None
    if isinstance(obj, list) and obj:
        obj = obj[0]
    return obj.get("error") if isinstance(obj, dict) else None
