"""Domain errors: one exception type carrying the contract's ErrorInfo."""

from __future__ import annotations

from msgspec import UNSET

from .types import ErrorCode, ErrorInfo

RETRYABLE: frozenset[str] = frozenset({"rate_limited", "upstream_unavailable", "timeout", "network_error"})


def header_safe(value: str) -> bool:
    """Whether ``value`` can go in an HTTP header as it is (printable ASCII)."""
    return value.isascii() and value.isprintable()


class SidecarError(Exception):
    """A failure the frontend should see as ``{"code": -32000, "data": {"code": ...}}``.

    The message is written for people and must never hold a secret; callers build it
    from fixed text and provider ids, never from raw exception strings of the HTTP layer.
    """

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        provider: str | None = None,
        status: int | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.info = ErrorInfo(
            code=code,
            message=message,
            retryable=code in RETRYABLE if retryable is None else retryable,
            provider=UNSET if provider is None else provider,
            status=UNSET if status is None else status,
        )

    local = False
    """refused by the sidecar itself (the circuit breaker) without trying the upstream: never retried in place"""

    @property
    def code(self) -> str:
        return self.info.code
