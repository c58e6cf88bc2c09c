"""Per-provider health: a circuit breaker, a concurrency limit, a token bucket, and counters.

The engine wraps every upstream attempt in ``async with health.slot(provider, priority):`` and reports how
it ended with ``health.record(...)`` from inside that block; ``get_provider_health`` reads ``snapshot``.
Everything is O(1) per attempt (the percentiles sort at most ``LATENCY_WINDOW`` samples, and only
when a snapshot is asked for), so it costs nothing noticeable next to a network request.

What counts against a provider's health: ``BREAKER_FAILURES`` (5xx/overloaded, timeouts, network
errors). A 429 (``rate_limited``) does not: the provider is alive and is telling us to slow down,
which retries with Retry-After and the token bucket handle; opening the circuit on it would turn a
short back-off into a 30 s outage. Errors about the request or the account (invalid_request,
authentication_failed, context_length_exceeded, ...) say nothing about the provider's health, so
they neither count nor reset the count; ``cancelled`` is not even an error (the user aborted).

Priority classes: both queues (a free concurrency slot, the next rate token) serve every waiting
``interactive`` request before any ``background`` one, each class first come first served. So a background
request never takes a slot or a token while an interactive one waits, and is served whenever none waits:
it may be made to wait, for as long as interactive requests keep waiting, but never behind a later
background one. Nothing is reserved: with no interactive request waiting, background ones may use all N
slots and the whole burst, since a slot kept empty for a request that may never come would only slow them
down; an interactive request that then arrives takes the next slot or token to come free (a request that
has started is never interrupted). A request holds its slot while it waits for a token, so with both limits
an interactive request may wait for a background one that already holds a slot to get its token.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal

import anyio

from .errors import SidecarError
from .providers import Provider
from .types import Priority, ProviderHealth, ProviderLimits, QueuedByPriority

BREAKER_FAILURES: frozenset[str] = frozenset({"upstream_unavailable", "timeout", "network_error"})
"""Error codes that count as consecutive failures toward opening the circuit."""
DEFAULT_THRESHOLD = 5
DEFAULT_COOLDOWN_MS = 30_000
LATENCY_WINDOW = 200
_EPSILON = 1e-9  # float slack: a bucket refilled for exactly the computed time holds a whole token

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class CircuitOpen(SidecarError):
    """The breaker refused a request without trying it. The caller may try again later (``retry_after_ms``);
    the engine hands it to a fallback model but does not wait it out itself."""

    local = True


class _Waiter:
    """One queued request; ``granted`` tells a cancelled waiter whether it was already handed a slot;
    ``pacing`` cancels its sleep while it heads the token queue and waits for the bucket to refill."""

    __slots__ = ("event", "granted", "pacing", "priority")

    def __init__(self, priority: Priority) -> None:
        self.priority = priority
        self.event = anyio.Event()
        self.granted = False
        self.pacing: anyio.CancelScope | None = None


class _Queue:
    """Waiters in two classes, each first come first served: the head is the oldest interactive waiter,
    or the oldest background one when no interactive one waits."""

    __slots__ = ("background", "interactive")

    def __init__(self) -> None:
        self.interactive: deque[_Waiter] = deque()
        self.background: deque[_Waiter] = deque()

    def __len__(self) -> int:
        return len(self.interactive) + len(self.background)

    def of(self, priority: Priority) -> deque[_Waiter]:
        return self.interactive if priority == "interactive" else self.background

    def ahead_of(self, priority: Priority) -> bool:
        """Whether a newcomer of this class must queue: someone of its class or a higher one waits."""
        return bool(self.interactive) or (priority == "background" and bool(self.background))

    def head(self) -> _Waiter | None:
        queue = self.interactive or self.background
        return queue[0] if queue else None

    def append(self, w: _Waiter) -> None:
        self.of(w.priority).append(w)

    def remove(self, w: _Waiter) -> None:
        self.of(w.priority).remove(w)

    def pop(self) -> _Waiter:
        return (self.interactive or self.background).popleft()


@dataclass(eq=False)
class _State:
    # limits, as last seen on the Provider given to slot (configure_provider may change them)
    threshold: int = DEFAULT_THRESHOLD
    cooldown: float = DEFAULT_COOLDOWN_MS / 1000
    max_concurrency: int | None = None
    rpm: float | None = None
    # breaker
    consecutive: int = 0
    opened_at: float | None = None
    probe: object | None = None
    """the token of the half-open probe in flight; others fail fast while it is set"""
    # counters
    requests: int = 0
    errors: int = 0
    error_counts: dict[str, int] = field(default_factory=dict)
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    # concurrency: slots held (including those waiting for a token) and those waiting for one
    held: int = 0
    slot_queue: _Queue = field(default_factory=_Queue)
    # token bucket: the head of token_queue paces itself, the others wait to become the head
    tokens: float = 0.0
    refilled_at: float = 0.0
    token_queue: _Queue = field(default_factory=_Queue)
    pacer: _Waiter | None = None
    """the waiter sleeping until the bucket holds a token (the head, unless the head just changed)"""


def _capacity(rpm: float) -> float:
    return max(1.0, rpm)


def _percentile(ordered: list[float], p: float) -> float:
    """Nearest rank: a latency that was actually observed, not an interpolation."""
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


class Health:
    """Guards and observes each provider's upstream attempts; one instance per sidecar."""

    def __init__(self, *, clock: Clock = time.monotonic, sleep: Sleep = anyio.sleep) -> None:
        """``clock`` and ``sleep`` are injectable so tests can drive time by hand."""
        self._clock = clock
        self._sleep = sleep
        self._states: dict[str, _State] = {}

    def _state(self, provider_id: str) -> _State:
        st = self._states.get(provider_id)
        if st is None:
            st = self._states[provider_id] = _State(refilled_at=self._clock())
        return st

    # --- the guard -----------------------------------------------------------------------------

    @asynccontextmanager
    async def slot(self, provider: Provider, priority: Priority = "interactive") -> AsyncIterator[None]:
        """Admit one upstream attempt: circuit check, then a concurrency slot, then a rate token.

        Raises ``CircuitOpen`` at once while the circuit is open. Waiting is cancellable and served by
        ``priority`` (see the module docstring); whatever was taken is given back when the block ends,
        however it ends.
        """
        st = self._state(provider.id)
        self._apply_limits(st, provider.limits)
        self._admit(provider.id, st, claim=False)  # fail fast without queueing
        await self._acquire_slot(st, priority)
        probe: object | None = None
        try:
            # Again after the wait: the circuit may have opened meanwhile, and the probe is claimed
            # only by a request that is really about to go.
            probe = self._admit(provider.id, st, claim=True)
            if st.rpm is not None:
                await self._acquire_token(st, priority)
            yield
        finally:
            if probe is not None and st.probe is probe:
                st.probe = None  # ended without a verdict (cancelled, or a neutral error): let another probe go
            self._release_slot(st)

    def _apply_limits(self, st: _State, limits: ProviderLimits | None) -> None:
        lim = limits or ProviderLimits()
        st.threshold = max(1, lim.breaker_threshold) if isinstance(lim.breaker_threshold, int) else DEFAULT_THRESHOLD
        cooldown_ms = lim.breaker_cooldown_ms if isinstance(lim.breaker_cooldown_ms, int) else DEFAULT_COOLDOWN_MS
        st.cooldown = max(0, cooldown_ms) / 1000
        # Values that would block forever are read as "no limit"; the registry should refuse them.
        mc = lim.max_concurrency if isinstance(lim.max_concurrency, int) and lim.max_concurrency > 0 else None
        if mc != st.max_concurrency:
            st.max_concurrency = mc
            self._grant_slots(st)  # a raised or removed limit lets waiters in now
        rpm = lim.requests_per_minute
        rate = float(rpm) if isinstance(rpm, int | float) and rpm > 0 else None
        if rate != st.rpm:
            self._refill(st)  # what accrued under the old rate
            was_unlimited = st.rpm is None
            st.rpm = rate
            if rate is not None:
                st.tokens = _capacity(rate) if was_unlimited else min(st.tokens, _capacity(rate))
            self._new_token_head(st, rate_changed=True)  # a wait worked out at the old rate is wrong now

    def _admit(self, provider_id: str, st: _State, *, claim: bool) -> object | None:
        """Raise while the circuit refuses; with ``claim``, return the probe token when this is the probe."""
        if st.opened_at is None:
            return None
        remaining = st.opened_at + st.cooldown - self._clock()
        if remaining <= 0 and st.probe is None:
            if not claim:
                return None
            st.probe = object()
            return st.probe
        if remaining > 0:
            wait = f"requests are refused for another {max(1, math.ceil(remaining))} s"
        else:
            wait = "one trial request is in flight"
        err = CircuitOpen(
            "upstream_unavailable",
            f"{provider_id}: temporarily failing (circuit open after {st.consecutive} consecutive failures); {wait}",
            provider=provider_id,
            retryable=True,
        )
        if remaining > 0:
            err.info.retry_after_ms = math.ceil(remaining * 1000)
        raise err

    # --- concurrency: a semaphore whose size may change, served by priority --------------------

    async def _acquire_slot(self, st: _State, priority: Priority) -> None:
        if not st.slot_queue.ahead_of(priority) and (st.max_concurrency is None or st.held < st.max_concurrency):
            st.held += 1
            return
        w = _Waiter(priority)
        st.slot_queue.append(w)
        try:
            await w.event.wait()
        except BaseException:
            if w.granted:  # handed a slot just as we were cancelled: pass it on
                self._release_slot(st)
            else:
                st.slot_queue.remove(w)
            raise

    def _release_slot(self, st: _State) -> None:
        st.held -= 1
        self._grant_slots(st)

    def _grant_slots(self, st: _State) -> None:
        """Hand free slots to the waiters directly (interactive ones first, each class in arrival order),
        so a newcomer can never jump the queue."""
        while st.slot_queue and (st.max_concurrency is None or st.held < st.max_concurrency):
            w = st.slot_queue.pop()
            w.granted = True
            st.held += 1
            w.event.set()

    # --- rate: a token bucket, served by priority -----------------------------------------------

    def _refill(self, st: _State) -> None:
        now = self._clock()
        if st.rpm is not None:
            st.tokens = min(_capacity(st.rpm), st.tokens + (now - st.refilled_at) * st.rpm / 60)
        st.refilled_at = now

    async def _acquire_token(self, st: _State, priority: Priority) -> None:
        self._refill(st)
        if not st.token_queue.ahead_of(priority) and st.tokens >= 1 - _EPSILON:
            st.tokens -= 1
            return
        w = _Waiter(priority)
        st.token_queue.append(w)
        self._new_token_head(st)  # when it is us, a background head that was pacing goes back to waiting
        try:
            while st.rpm is not None:
                if st.token_queue.head() is not w:
                    w.event = anyio.Event()
                    await w.event.wait()  # set when we may have become the head
                    continue
                self._refill(st)  # the head sleeps until the bucket holds a token
                if st.tokens >= 1 - _EPSILON:
                    st.tokens -= 1
                    break
                st.pacer = w
                try:
                    with anyio.CancelScope() as w.pacing:  # cancelled when the head or the rate changes
                        await self._sleep((1 - st.tokens) * 60 / st.rpm)
                finally:
                    if st.pacer is w:  # a new head may have started pacing before we got here
                        st.pacer = None
        finally:
            st.token_queue.remove(w)
            self._new_token_head(st)

    @staticmethod
    def _new_token_head(st: _State, *, rate_changed: bool = False) -> None:
        """After the token queue or the rate changed: a pacer that is no longer the head (or paces at the old
        rate) stops its sleep, and the head is told to look again."""
        head = st.token_queue.head()
        pacer = st.pacer
        if pacer is not None and pacer.pacing is not None and (pacer is not head or rate_changed):
            pacer.pacing.cancel()
        if head is not None:
            head.event.set()

    # --- outcomes and the view -----------------------------------------------------------------

    def record(self, provider_id: str, *, ok: bool, latency_ms: float | None, code: str | None) -> None:
        """Count one finished attempt and move the breaker; see the module docstring for what counts.

        A success closes the circuit (whoever reports it). A counted failure opens it at the threshold,
        and reopens it for a new cooldown when it ends a half-open probe; failures of requests that were
        already in flight when it opened do not extend the cooldown. Only successes feed the latency
        window: a fast 401 or a 60 s timeout says nothing about how quickly the provider answers.
        """
        st = self._state(provider_id)
        st.requests += 1
        if ok:
            if latency_ms is not None:
                st.latencies.append(latency_ms)
            st.consecutive = 0
            st.opened_at = None
            st.probe = None
            return
        code = code or "internal"
        if code == "cancelled":
            return
        st.errors += 1
        st.error_counts[code] = st.error_counts.get(code, 0) + 1
        if code not in BREAKER_FAILURES:
            return
        st.consecutive += 1
        now = self._clock()
        if st.opened_at is None:
            if st.consecutive >= st.threshold:
                st.opened_at = now
        elif now >= st.opened_at + st.cooldown:  # half-open: the probe failed
            st.opened_at = now
            st.probe = None

    def snapshot(self, provider_ids: list[str]) -> list[ProviderHealth]:
        """The current view of each provider, in the order given; never-used providers show zeros."""
        now = self._clock()
        out = []
        for pid in provider_ids:
            st = self._states.get(pid) or _State()
            out.append(self._view(pid, st, now))
        return out

    @staticmethod
    def _view(pid: str, st: _State, now: float) -> ProviderHealth:
        state: Literal["closed", "open", "half_open"]
        if st.opened_at is None:
            state = "closed"
        elif now < st.opened_at + st.cooldown:
            state = "open"
        else:
            state = "half_open"
        health = ProviderHealth(
            provider=pid,
            state=state,
            requests=st.requests,
            errors=st.errors,
            consecutive_failures=st.consecutive,
            in_flight=st.held - len(st.token_queue),
            queued=len(st.slot_queue) + len(st.token_queue),
            error_counts=dict(sorted(st.error_counts.items())),
            queued_by_priority=QueuedByPriority(
                interactive=len(st.slot_queue.interactive) + len(st.token_queue.interactive),
                background=len(st.slot_queue.background) + len(st.token_queue.background)),
        )
        if st.latencies:
            ordered = sorted(st.latencies)
            health.latency_p50_ms = _percentile(ordered, 50)
            health.latency_p95_ms = _percentile(ordered, 95)
        return health
