"""Running a prepared request: ``start``, its warnings, then attempts through its transport inside the
provider's health guard, retried before any output (waiting as the upstream asks, or with jittered backoff),
then handed to the next of ``fallback_models``; the ``done`` event is returned, not emitted. Every finished
request is reported to the observers (the usage log) as an ``Outcome``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import anyio
import msgspec

from ..checks import JsonAnswer
from ..errors import SidecarError
from ..policy import Policy, policy_for, priority_of, retry_delay
from ..types import ContextOptions, DoneEvent, FallbackEvent, RetryEvent, StartEvent, StreamTextParams, Usage
from .prepare import Preparer
from .request import Emit, Options, Prepared, RunState

if TYPE_CHECKING:
    from ..health import Health
    from .context import ContextService

log = logging.getLogger("sidecar.engine")

FALLBACK_ON = frozenset({"upstream_unavailable", "rate_limited", "timeout", "network_error"})
"""errors that move a request on to its next fallback model (besides any marked retryable)"""


@dataclass
class Outcome:
    """One finished request (stream or complete_chat), as observers such as the usage log see it."""

    kind: Literal["stream", "complete", "embed"]
    provider: str
    model: str
    """``provider:model`` that answered, or the last one tried"""
    started_at: float
    """wall clock (time.time()) when the request started"""
    latency_ms: float
    ttft_ms: float | None
    usage: Usage | None
    finish_reason: str | None
    error: str | None
    """the error code; None when it finished with ``done``"""
    retries: int = 0
    stream_id: str | None = None


def wants_fit(target: Prepared) -> bool:
    """The request asks to be made to fit (``context.strategy`` trim or compact)."""
    ctx = target.params.context
    return isinstance(ctx, ContextOptions) and ctx.strategy != "error"


def _outcome(run: RunState, target: Prepared, finish: str | None, error: str | None, usage: Usage | None) -> Outcome:
    return Outcome(
        kind="stream", provider=target.provider.id, model=target.model_ref, started_at=run.started_at,
        latency_ms=run.latency_ms(), ttft_ms=run.ttft, usage=usage, finish_reason=finish, error=error,
        retries=run.retries,
    )


class Runner:
    def __init__(self, preparer: Preparer, options: Options, health: Callable[[], Health]) -> None:
        self.preparer = preparer
        self.options = options
        self._health = health
        self.observers: list[Callable[[Outcome], None]] = []
        """called with every finished request; must be quick and must not raise"""
        self.context: Callable[[], ContextService] | None = None
        """the ``context`` option's fitting and the windows learnt from overflows (set by the engine)"""

    async def stream(self, prepared: Prepared, emit: Emit, *, stream_id: str | None = None) -> DoneEvent:
        """Emit a request's events up to its end and return its ``done`` event (not emitted).

        Failures before any output are retried (waiting as the upstream asks, or with jittered
        backoff) and then handed to the next of ``fallback_models``; after output has been
        seen nothing is repeated, so the error ends the stream.
        """
        answer = JsonAnswer.wanted(prepared.params)  # None (and no collecting) unless JSON is asked for
        run = RunState(emit if answer is None else answer.wrap(emit), time.perf_counter(), self.options.read_limits)
        target = prepared
        fallbacks = [m for m in prepared.params.fallback_models or () if isinstance(m, str)]
        await emit(StartEvent(provider=target.provider.id, model=target.model_ref))
        for warning in target.warnings:
            await emit(warning)
        outcome: Outcome | None = None
        context = self.context() if self.context is not None else None
        fit: SidecarError | bool = context is not None and wants_fit(target)  # True: fit before sending; an
        # error: fit again after this upstream overflow; False: send as it is
        refitted = False  # after an upstream overflow the request is fitted once more, not again and again
        try:
            with anyio.fail_after(policy_for(prepared.params, prepared.provider).total):
                while True:
                    fitting = fit is not False
                    try:
                        if context is not None and fit is not False:
                            target = await context.fit(target, run.emit, None if fit is True else fit)
                        fitting = fit = False
                        done = await self._with_retries(target, run)
                    except SidecarError as exc:
                        overflow = exc.code == "context_length_exceeded" and not run.output
                        if overflow and context is not None and not fitting:
                            if not refitted and wants_fit(target):
                                refitted, fit = True, exc
                                continue
                            context.learn(target, exc)
                        if run.output or not fallbacks or not (exc.info.retryable or exc.code in FALLBACK_ON
                                                               or overflow):
                            raise
                        target = await self._next_fallback(target, fallbacks, exc, run, prepared.params, context)
                        fit, refitted = context is not None and wants_fit(target), False
                        continue
                    if answer is not None:
                        answer.verify(done.finish_reason, target.provider.id)
                    outcome = _outcome(run, target, done.finish_reason, None, done.usage)
                    return done
        except TimeoutError:
            late = SidecarError("timeout", f"{target.provider.id}: no complete answer within the time limit",
                                provider=target.provider.id, retryable=False)
            outcome = _outcome(run, target, None, late.code, None)
            raise late from None
        except SidecarError as exc:
            outcome = _outcome(run, target, None, exc.code, None)
            raise
        except anyio.get_cancelled_exc_class():
            outcome = _outcome(run, target, None, "cancelled", None)
            raise
        except Exception:
            outcome = _outcome(run, target, None, "internal", None)
            raise
        finally:
            if outcome is not None:
                self._finished(outcome, stream_id)

    def _finished(self, outcome: Outcome, stream_id: str | None) -> None:
        outcome.kind = "stream" if stream_id is not None else "complete"
        outcome.stream_id = stream_id
        self.report(outcome)

    def report(self, outcome: Outcome) -> None:
        """A finished request: logged (with ``--log-requests``) and handed to the observers."""
        if self.options.log_requests:
            log.info("request finished", extra={"fields": {
                "kind": outcome.kind, "stream_id": outcome.stream_id, "model": outcome.model,
                "outcome": outcome.error or "done", "finish_reason": outcome.finish_reason,
                "latency_ms": outcome.latency_ms, "ttft_ms": outcome.ttft_ms, "retries": outcome.retries,
                "input_tokens": outcome.usage.input_tokens if outcome.usage else None,
                "output_tokens": outcome.usage.output_tokens if outcome.usage else None}})
        for observe in self.observers:
            try:
                observe(outcome)
            except Exception:
                log.exception("an observer failed")

    async def _next_fallback(
        self, failed: Prepared, fallbacks: list[str], exc: SidecarError, run: RunState, params: StreamTextParams,
        context: ContextService | None,
    ) -> Prepared:
        """The next fallback model that can be prepared (for an overflow, one with a larger window), from the
        request's own ``params`` (not as the context option fitted them to the failed model); the original
        error when none can."""
        while fallbacks:
            model = fallbacks.pop(0)
            try:
                nxt = await self.preparer.prepare(msgspec.structs.replace(params, model=model))
            except SidecarError as why:
                log.warning("fallback %s skipped: %s", model, why.info.message)
                continue
            if exc.code == "context_length_exceeded" and context is not None and not await context.larger(failed, nxt):
                log.info("fallback %s skipped: its context window is not larger than %s's", model, failed.model_ref)
                continue
            await run.emit(FallbackEvent(from_model=failed.model_ref, to_model=nxt.model_ref, reason=exc.info.code))
            for warning in nxt.warnings:
                await run.emit(warning)
            return nxt
        raise exc

    async def _with_retries(self, target: Prepared, run: RunState) -> DoneEvent:
        policy = policy_for(target.params, target.provider)
        retries = waited = 0
        renewed = False
        while True:
            try:
                return await self._attempt(target, run, policy)
            except SidecarError as exc:
                if exc.code == "authentication_failed" and not renewed and not run.output:
                    # a signed-in provider's token refused: refresh it once and try again at once
                    fresh = await self.preparer.renew(target)
                    if fresh is not None:
                        target, renewed = fresh, True
                        continue
                delay = None if run.output else retry_delay(exc, retries, waited, policy)
                if delay is None:
                    raise
                retries += 1
                run.retries += 1
                waited += delay
                await run.emit(RetryEvent(attempt=retries, delay_ms=delay, reason=exc.info.code))
                await anyio.sleep(delay / 1000)

    async def _attempt(self, target: Prepared, run: RunState, policy: Policy) -> DoneEvent:
        """One try at one model through its transport, inside the provider's health guard."""
        provider = target.provider
        transport = self.preparer.transport(provider)
        health = self._health()
        # its own refusal (circuit open) is not recorded: that would keep it open
        async with health.slot(provider, priority_of(target.params)):
            started = time.perf_counter()  # after any queueing: latency is the provider's, not ours
            run.upstream = provider.id
            try:
                done = await transport.attempt(target, run, policy)
            except SidecarError as exc:
                health.record(provider.id, ok=False, latency_ms=None, code=exc.info.code)
                raise
            health.record(provider.id, ok=True, latency_ms=(time.perf_counter() - started) * 1000, code=None)
            return done
