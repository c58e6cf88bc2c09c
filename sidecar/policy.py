"""Timeouts, retries and the priority class of one request: the request's own settings, then the
provider's, then defaults.

Pure functions; the engine applies them. Defaults suit long reasoning models, which may think for
minutes before their first byte, while a stream that has started and then stalls is cut off sooner.
"""

from __future__ import annotations

import contextlib
import email.utils
import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from msgspec import UnsetType

from .errors import SidecarError
from .providers import Provider
from .types import EmbedParams, Priority, RetryOptions, StreamTextParams, Timeouts

CONNECT_S = 15.0
FIRST_BYTE_S = 300.0
IDLE_S = 120.0
MAX_RETRIES = 2
MAX_WAIT_MS = 30_000
BACKOFF_BASE_MS = 500
BACKOFF_CAP_MS = 8_000


@dataclass(frozen=True)
class Policy:
    connect: float
    first_byte: float
    idle: float
    total: float | None
    max_retries: int
    max_wait_ms: int
    """retries stop once their waits would add up to more than this"""


def _pick(*values: int | UnsetType | None) -> int | None:
    for v in values:
        if isinstance(v, int):
            return v
    return None


def policy_for(params: StreamTextParams, provider: Provider) -> Policy:
    limits = provider.limits
    req_t = params.timeouts if isinstance(params.timeouts, Timeouts) else Timeouts()
    prov_t = limits.timeouts if limits is not None and isinstance(limits.timeouts, Timeouts) else Timeouts()
    req_r = params.retry if isinstance(params.retry, RetryOptions) else RetryOptions()
    prov_r = limits.retry if limits is not None and isinstance(limits.retry, RetryOptions) else RetryOptions()

    def seconds(req: int | UnsetType, prov: int | UnsetType, default: float) -> float:
        ms = _pick(req, prov)
        return default if ms is None else max(ms, 1) / 1000

    total_ms = _pick(req_t.total_ms, params.timeout_ms, prov_t.total_ms)
    retries = _pick(req_r.max_retries, prov_r.max_retries)
    wait_ms = _pick(req_r.max_delay_ms, prov_r.max_delay_ms)
    return Policy(
        connect=seconds(req_t.connect_ms, prov_t.connect_ms, CONNECT_S),
        first_byte=seconds(req_t.first_byte_ms, prov_t.first_byte_ms, FIRST_BYTE_S),
        idle=seconds(req_t.idle_ms, prov_t.idle_ms, IDLE_S),
        total=None if total_ms is None else max(total_ms, 1) / 1000,
        max_retries=MAX_RETRIES if retries is None else max(0, retries),
        max_wait_ms=MAX_WAIT_MS if wait_ms is None else max(0, wait_ms),
    )


def priority_of(params: StreamTextParams | EmbedParams) -> Priority:
    """The request's class in the provider's queues (sidecar/health.py); interactive unless it says otherwise."""
    return "background" if params.priority == "background" else "interactive"


def backoff_ms(retry: int, retry_after_ms: int | None) -> int:
    """Exponential backoff with full jitter, unless the upstream said how long to wait."""
    if retry_after_ms is not None:
        return retry_after_ms
    return int(random.uniform(0, min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2**retry)))


def retry_delay(error: SidecarError, retries: int, waited_ms: int, policy: Policy) -> int | None:
    """The wait in ms before trying again after ``error``, ``retries`` tries and ``waited_ms`` of waiting in;
    None when it is not tried again (not retryable, refused by the sidecar itself, or over the policy's limits)."""
    info = error.info
    if not info.retryable or error.local or retries >= policy.max_retries:
        return None
    delay = backoff_ms(retries, info.retry_after_ms if isinstance(info.retry_after_ms, int) else None)
    return None if waited_ms + delay > policy.max_wait_ms else delay


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}


def _duration_ms(text: str) -> int | None:
    """OpenAI's reset headers: ``1s``, ``6m0s``, ``20ms``, ``1h2m3.5s``."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        return None
    return int(sum(float(n) * _UNIT_MS[u] for n, u in parts))


def retry_after_ms(headers: Mapping[str, str], status: int, now: float | None = None) -> int | None:
    """How long the upstream asked us to wait, from the headers of the attempt that failed.

    The providers' rate-limit reset headers come on every answer; they count only for a 429.
    """
    now = time.time() if now is None else now
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return max(0, int(float(value)))
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is not None:
        value = value.strip()
        if value.replace(".", "", 1).isdigit():
            return max(0, int(float(value) * 1000))
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            when = None
        if when is not None:
            return max(0, int((when.timestamp() - now) * 1000))
    if status != 429:
        return None
    waits = [
        ms
        for name in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")
        if (v := headers.get(name)) is not None and (ms := _duration_ms(v)) is not None
    ]
    for name in ("anthropic-ratelimit-requests-reset", "anthropic-ratelimit-tokens-reset",
                 "anthropic-ratelimit-input-tokens-reset", "anthropic-ratelimit-output-tokens-reset"):
        v = headers.get(name)
        if v:
            with contextlib.suppress(ValueError):
                waits.append(max(0, int((datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp() - now) * 1000)))
    return max(waits) if waits else None
