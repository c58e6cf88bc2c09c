"""Anthropic's errors: the HTTP error bodies and the ``error`` events of a stream."""

from __future__ import annotations

import msgspec

from ...errors import SidecarError
from ..http_errors import error_body, upstream_error

# Anthropic's error types and the HTTP status each comes with (docs: "Errors"); inside a stream there
# is no status, so the type stands in for it when classifying.
_STATUS_OF_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
_CONTEXT_HINTS = ("prompt is too long", "exceed context limit", "context window")


def anthropic_error(provider: str, status: int | None, code: str, message: str) -> SidecarError:
    """An error Anthropic reported: ``status`` None for one inside a stream (its ``type`` then decides)."""
    if any(h in message.lower() for h in _CONTEXT_HINTS):
        code = "context_length_exceeded"  # Anthropic says so in words, under invalid_request_error
    if status is None:  # inside a stream: classify by the type, report no HTTP status (it was 200)
        err = upstream_error(provider, _STATUS_OF_TYPE.get(code), code, message)
        err.info.status = msgspec.UNSET
        return err
    return upstream_error(provider, status, code, message)


def map_http_error(status: int, body: bytes, provider: str) -> SidecarError:
    """``{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}``; 529 is overloaded."""
    return anthropic_error(provider, status, *error_body(body))
