"""Runs a request: resolve "provider:model", fetch the key, encode, stream from the
upstream over one pooled httpx client, decode, and hand events to a sink.

Everything that can fail before the network (bad model, unknown provider, missing key)
raises from ``prepare`` so it becomes the RPC error; everything after is a stream event.
Every stream ends in exactly one terminal event, whatever happens to it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import anyio
import msgspec

from . import __version__
from .checks import JsonAnswer, check_request
from .credentials import Credentials, check_sendable, redact
from .errors import SidecarError
from .framing import MessageReader, ReadLimits, pieces, read_body, too_large
from .policy import CONNECT_S, IDLE_S, Policy, backoff_ms, policy_for, retry_after_ms
from .protocols import WireProtocol, get_protocol
from .protocols import mock as mock_protocol
from .protocols.base import HttpRequest
from .providers import Model, Provider, Registry, split_model
from .settings import SettingsStore
from .tokens import OutputTally, TokenCounter
from .types import (
    TERMINAL_EVENTS,
    CompleteChatResult,
    ContentPart,
    DoneEvent,
    ErrorEvent,
    ErrorInfo,
    Event,
    FallbackEvent,
    ModelInfo,
    ReasoningDeltaEvent,
    ReasoningEndEvent,
    ReasoningPart,
    RedactedReasoningEvent,
    RedactedReasoningPart,
    RetryEvent,
    StartEvent,
    StreamTextParams,
    TestConnectionParams,
    TestConnectionResult,
    TextDeltaEvent,
    TextPart,
    ToolCallDeltaEvent,
    ToolCallEvent,
    ToolCallPart,
    ToolCallStartEvent,
    Usage,
    UsageEvent,
)

if TYPE_CHECKING:
    import httpx

    from .health import Health

log = logging.getLogger("sidecar.engine")

Emit = Callable[[Event], Awaitable[None]]

MAX_ERROR_BODY = 64 * 1024
TEST_TIMEOUT = 15.0
MODELS_TIMEOUT = 5.0
MODELS_TTL = 600.0
_FIRST_OUTPUT = (TextDeltaEvent, ReasoningDeltaEvent, ReasoningEndEvent, ToolCallStartEvent, RedactedReasoningEvent)
FALLBACK_ON = frozenset({"upstream_unavailable", "rate_limited", "timeout", "network_error"})
"""errors that move a request on to its next fallback model (besides any marked retryable)"""


@dataclass
class Prepared:
    """A request checked and resolved, ready to go on the network."""

    params: StreamTextParams
    provider: Provider
    model: str
    api_key: str | None

    @property
    def model_ref(self) -> str:
        return f"{self.provider.id}:{self.model}"


@dataclass
class Outcome:
    """One finished request (stream or complete_chat), as observers such as the usage log see it."""

    kind: Literal["stream", "complete"]
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


class EventSink:
    """Numbers a stream's events and stops after the terminal one.

    With ``after``, the first event waits for it (the response that started the stream is out), so the
    work behind the stream, e.g. connecting upstream, starts at once and overlaps the response.
    """

    __slots__ = ("after", "closed", "method", "notify", "seq", "stream_id")

    def __init__(self, stream_id: str, notify: Callable[[str, Any], Awaitable[None]],
                 after: anyio.Event | None = None) -> None:
        self.stream_id = stream_id
        self.method = f"llm-stream-{stream_id}"
        self.notify = notify
        self.after = after
        self.seq = 0
        self.closed = False

    async def emit(self, event: Event) -> None:
        if self.closed:
            return
        if self.after is not None:
            with anyio.CancelScope(shield=isinstance(event, TERMINAL_EVENTS)):
                await self.after.wait()
            self.after = None
        event.stream_id = self.stream_id
        event.seq = self.seq
        self.seq += 1
        if isinstance(event, TERMINAL_EVENTS):
            self.closed = True
        await self.notify(self.method, event)


class Engine:
    def __init__(self, registry: Registry, credentials: Credentials, settings: SettingsStore) -> None:
        self.registry = registry
        self.credentials = credentials
        self.settings = settings
        self._http: httpx.AsyncClient | None = None
        self._http_lock = threading.Lock()
        self._streams: dict[str, anyio.CancelScope] = {}
        self._models: dict[str, tuple[float, list[Model]]] = {}
        self.log_requests = False
        """log each attempt and each finished request (never headers, keys or content)"""
        self.read_limits = ReadLimits()
        """how much of one upstream event or body is read, and of one delta written (set by the CLI)"""
        self._health: Health | None = None
        self.observers: list[Callable[[Outcome], None]] = []
        """called with every finished request; must be quick and must not raise"""
        self.tokens = TokenCounter()
        """counts usage an upstream did not report"""

    @property
    def health(self) -> Health:
        """The providers' circuit breakers and limits, built on first use."""
        if self._health is None:
            from .health import Health

            self._health = Health()
        return self._health

    def warm_up(self, delay: float = 0.5) -> None:
        """Build the HTTP client in a thread shortly after start-up, so neither start-up nor
        the first request pays for importing httpx and loading the TLS certificates."""

        def run() -> None:
            time.sleep(delay)
            try:
                self.http()
            except Exception:
                log.debug("warm-up failed", exc_info=True)

        threading.Thread(target=run, name="warm-up", daemon=True).start()

    def http(self) -> httpx.AsyncClient:
        """The one pooled client, created on first use or by ``warm_up``."""
        with self._http_lock:
            if self._http is None:
                self._http = self._new_client()
            return self._http

    @staticmethod
    def _new_client() -> httpx.AsyncClient:
        import httpx

        return httpx.AsyncClient(
            timeout=httpx.Timeout(IDLE_S, connect=CONNECT_S),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=60),
            headers={"user-agent": f"llm-sidecar/{__version__}"},
            follow_redirects=False,  # a redirect must never carry a key to another host
        )

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    # --- resolution --------------------------------------------------------------------

    async def prepare(self, params: StreamTextParams) -> Prepared:
        if not params.messages:
            raise SidecarError("invalid_request", "messages must not be empty")
        if isinstance(params.model, str):
            provider_id, model = split_model(params.model)
        elif (active := self.settings.value.active) is not None:  # read once: another process may change it
            provider_id, model = active.provider, active.model
        else:
            raise SidecarError("invalid_request", "no model given and no active provider set")
        provider = self.registry.get(provider_id)
        check_request(params, provider, model)  # a bad schema; images for a model without vision
        if provider.protocol == "mock":
            mock_protocol.check(params, model)  # an unknown model, a bad script
            return Prepared(params, provider, model, None)
        self._protocol(provider)
        key = await self._key(provider)
        return Prepared(params, provider, model, key)

    def _protocol(self, provider: Provider) -> WireProtocol:
        try:
            return get_protocol(provider.protocol)
        except KeyError:
            raise SidecarError(
                "invalid_request", f"protocol {provider.protocol!r} is not available yet", provider=provider.id
            ) from None

    async def _key(self, provider: Provider) -> str | None:
        """The key to send to the provider's base URL; raises when one is needed and none may go there."""
        if not (provider.requires_api_key or provider.api_key_env):
            return None
        return await self.credentials.key_for(provider, provider.base_url)

    # --- streams -------------------------------------------------------------------------

    def reserve(self, stream_id: str) -> anyio.CancelScope:
        """Claim a stream id; abort works from this moment on."""
        if stream_id in self._streams:
            raise SidecarError("invalid_request", f"stream {stream_id!r} is already running")
        scope = self._streams[stream_id] = anyio.CancelScope()
        return scope

    def release(self, stream_id: str) -> None:
        self._streams.pop(stream_id, None)

    def abort(self, stream_id: str) -> bool:
        scope = self._streams.get(stream_id)
        if scope is None:
            return False
        scope.cancel()
        return True

    async def run_stream(self, prepared: Prepared, sink: EventSink, scope: anyio.CancelScope) -> None:
        """Stream in the reserved ``scope``; always ends with exactly one terminal event."""
        terminal: Event | None = None
        try:
            with scope:
                terminal = await self.stream(prepared, sink.emit, stream_id=sink.stream_id)
        except SidecarError as exc:
            terminal = ErrorEvent(error=exc.info)
        except Exception:
            log.exception("stream %s failed", sink.stream_id)
            terminal = ErrorEvent(error=ErrorInfo(code="internal", message="internal error in the sidecar"))
        finally:
            self.release(sink.stream_id)
            if terminal is None:
                terminal = ErrorEvent(error=ErrorInfo(code="cancelled", message="the stream was cancelled"))
            with anyio.CancelScope(shield=True):
                await sink.emit(terminal)

    async def stream(self, prepared: Prepared, emit: Emit, *, stream_id: str | None = None) -> DoneEvent:
        """Emit a request's events up to its end and return its ``done`` event (not emitted).

        Failures before any output are retried (waiting as the upstream asks, or with jittered
        backoff) and then handed to the next of ``fallback_models``; after output has been
        seen nothing is repeated, so the error ends the stream.
        """
        answer = JsonAnswer.wanted(prepared.params)  # None (and no collecting) unless JSON is asked for
        run = _Run(emit if answer is None else answer.wrap(emit), time.perf_counter(), self.read_limits)
        target = prepared
        fallbacks = [m for m in prepared.params.fallback_models or () if isinstance(m, str)]
        await emit(StartEvent(provider=target.provider.id, model=target.model_ref))
        outcome: Outcome | None = None
        try:
            with anyio.fail_after(policy_for(prepared.params, prepared.provider).total):
                while True:
                    try:
                        done = await self._with_retries(target, run)
                    except SidecarError as exc:
                        if run.output or not fallbacks or not (exc.info.retryable or exc.code in FALLBACK_ON):
                            raise
                        target = await self._next_fallback(target, fallbacks, exc, run)
                        continue
                    if answer is not None:
                        answer.verify(done.finish_reason, target.provider.id)
                    outcome = run.outcome(target, done.finish_reason, None, done.usage)
                    return done
        except TimeoutError:
            late = SidecarError("timeout", f"{target.provider.id}: no complete answer within the time limit",
                                provider=target.provider.id, retryable=False)
            outcome = run.outcome(target, None, late.code, None)
            raise late from None
        except SidecarError as exc:
            outcome = run.outcome(target, None, exc.code, None)
            raise
        except anyio.get_cancelled_exc_class():
            outcome = run.outcome(target, None, "cancelled", None)
            raise
        except Exception:
            outcome = run.outcome(target, None, "internal", None)
            raise
        finally:
            if outcome is not None:
                outcome.kind = "stream" if stream_id is not None else "complete"
                outcome.stream_id = stream_id
                if self.log_requests:
                    log.info("request finished", extra={"fields": {
                        "kind": outcome.kind, "stream_id": stream_id, "model": outcome.model,
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
        self, failed: Prepared, fallbacks: list[str], exc: SidecarError, run: _Run
    ) -> Prepared:
        """The next fallback model that can be prepared; the original error when none can."""
        while fallbacks:
            model = fallbacks.pop(0)
            try:
                nxt = await self.prepare(msgspec.structs.replace(failed.params, model=model))
            except SidecarError as why:
                log.warning("fallback %s skipped: %s", model, why.info.message)
                continue
            await run.emit(FallbackEvent(from_model=failed.model_ref, to_model=nxt.model_ref, reason=exc.info.code))
            return nxt
        raise exc

    async def _with_retries(self, target: Prepared, run: _Run) -> DoneEvent:
        policy = policy_for(target.params, target.provider)
        retries = waited = 0
        while True:
            try:
                return await self._attempt(target, run, policy)
            except SidecarError as exc:
                if run.output or not exc.info.retryable or retries >= policy.max_retries or exc.local:
                    raise
                retry_after = exc.info.retry_after_ms if isinstance(exc.info.retry_after_ms, int) else None
                delay = backoff_ms(retries, retry_after)
                if waited + delay > policy.max_wait_ms:
                    raise
                retries += 1
                run.retries += 1
                waited += delay
                await run.emit(RetryEvent(attempt=retries, delay_ms=delay, reason=exc.info.code))
                await anyio.sleep(delay / 1000)

    async def _attempt(self, target: Prepared, run: _Run, policy: Policy) -> DoneEvent:
        """One try at one model, inside the provider's health guard."""
        provider = target.provider
        health = self.health
        async with health.slot(provider):  # its own refusal (circuit open) is not recorded: that would keep it open
            started = time.perf_counter()  # after any queueing: latency is the provider's, not ours
            run.upstream = provider.id
            try:
                if provider.protocol == "mock":
                    done = await self._mock(target, run)
                else:
                    done = await self._upstream(target, run, policy)
            except SidecarError as exc:
                health.record(provider.id, ok=False, latency_ms=None, code=exc.info.code)
                raise
            health.record(provider.id, ok=True, latency_ms=(time.perf_counter() - started) * 1000, code=None)
            return done

    async def _mock(self, target: Prepared, run: _Run) -> DoneEvent:
        reply = mock_protocol.reply(target.params, target.model)
        for event in reply.events:
            if reply.delay_s:
                await anyio.sleep(reply.delay_s)
            await run.emit(event)
        if reply.error is not None:
            raise reply.error
        await run.emit(UsageEvent(**msgspec.structs.asdict(reply.usage)))
        return run.done(reply.finish_reason, reply.usage, target)

    async def _upstream(self, target: Prepared, run: _Run, policy: Policy) -> DoneEvent:
        provider = target.provider
        protocol = self._protocol(provider)
        request = protocol.encode_request(target.params, provider, target.model, target.api_key)
        assert isinstance(request, HttpRequest)
        decoder = protocol.decoder_for(provider.id, target.params)
        tally = OutputTally()
        import httpx

        emit = run.emit
        scope = anyio.CancelScope()
        watchdog = _Watchdog(scope, policy.first_byte, policy.idle)
        reader = MessageReader(protocol.framing, self.read_limits.max_event_bytes, provider.id)
        timeout = httpx.Timeout(max(policy.first_byte, policy.idle) + 5, connect=policy.connect)
        if self.log_requests:
            log.info("upstream request", extra={"fields": {
                "provider": provider.id, "model": target.model_ref, "method": request.method,
                "url": request.url.split("?", 1)[0], "body_bytes": len(request.body or b"")}})
        try:
            with scope:
                async with self.http().stream(
                    request.method, request.url, headers=request.headers, content=request.body, timeout=timeout
                ) as response:
                    watchdog.status = response.status_code
                    if self.log_requests:
                        log.info("upstream answer", extra={"fields": {
                            "provider": provider.id, "status": response.status_code,
                            "content_type": response.headers.get("content-type", "")}})
                    if 300 <= response.status_code < 400:
                        raise _redirect_error(response.status_code, response.headers.get("location", ""), provider)
                    if response.status_code >= 400:
                        body = await _read_limited(response)
                        err = protocol.map_http_error(response.status_code, body, provider.id)
                        wait = retry_after_ms(response.headers, response.status_code)
                        if wait is not None and err.info.retryable:
                            err.info.retry_after_ms = wait
                        raise err
                    if protocol.framing == "sse" and "text/event-stream" not in response.headers.get(
                        "content-type", ""
                    ):
                        body = await _read_limited(response)
                        raise _not_a_stream(protocol, response.status_code, body, provider.id)
                    async for chunk in response.aiter_bytes():
                        watchdog.beat()  # bytes, not messages: a slow but live upstream is not idle
                        for name, data in reader.feed(chunk):
                            if decoder.complete:
                                continue  # read to the end of the body so the connection is reused
                            for event in decoder.feed(name, data):
                                tally.add(event)
                                await emit(event)
                    for name, data in reader.end():
                        if not decoder.complete:
                            for event in decoder.feed(name, data):
                                tally.add(event)
                                await emit(event)
        except SidecarError as exc:
            exc.info.message = redact(exc.info.message, target.api_key)
            raise
        except httpx.TimeoutException as exc:
            phase = "connecting" if isinstance(exc, httpx.ConnectTimeout) else "waiting for data"
            raise SidecarError("timeout", f"{provider.id}: timed out {phase}", provider=provider.id) from None
        except httpx.HTTPError as exc:
            raise _network_error(exc, provider) from None
        finally:
            watchdog.close()
        if watchdog.fired is not None:
            raise SidecarError("timeout", f"{provider.id}: {watchdog.why(policy, reader.pending)}",
                               provider=provider.id)
        if not decoder.complete and decoder.finish_reason is None:
            raise SidecarError(
                "network_error", f"{provider.id}: the connection closed before the end of the stream",
                provider=provider.id,
            )
        for event in decoder.end():
            tally.add(event)
            await emit(event)
        usage = decoder.usage
        if usage is None or not (usage.input_tokens or usage.output_tokens):
            # none reported (llama-cpp-python when streaming), or zeros, which no real prompt has: count it
            auth = protocol.models_request(provider, target.api_key).headers
            usage = await self.tokens.usage(self.http(), provider, target.params, tally, auth)
        await emit(UsageEvent(**msgspec.structs.asdict(usage)))
        return run.done(decoder.finish_reason or "other", usage, target)

    async def complete(self, prepared: Prepared) -> CompleteChatResult:
        """The same stream, collected into one result."""
        collector = _Collector()
        done = await self.stream(prepared, collector.add)
        return collector.result(done)

    # --- connection test ------------------------------------------------------------

    async def test_connection(self, params: TestConnectionParams) -> TestConnectionResult:
        """The cheapest authenticated round trip the protocol has: its model list."""
        provider = self.registry.get(params.provider)
        if isinstance(params.base_url, str):
            provider = replace(provider, base_url=params.base_url.rstrip("/"))
        started = time.perf_counter()
        error: SidecarError | None = None
        if provider.protocol != "mock":
            try:
                if isinstance(params.api_key, str):  # the caller's own key: it may go where the caller says
                    key: str | None = params.api_key.strip()
                    check_sendable(params.api_key.strip(), provider, "the api_key given")
                else:
                    key = await self._key(provider)
                await self._fetch_models(provider, key, TEST_TIMEOUT)
            except SidecarError as exc:
                error = exc
        ms = round((time.perf_counter() - started) * 1000, 3)
        if error is None:
            return TestConnectionResult(ok=True, latency_ms=ms)
        return TestConnectionResult(ok=False, latency_ms=ms, error=error.info)

    # --- model lists -----------------------------------------------------------------------

    def forget_models(self, provider_id: str) -> None:
        self._models.pop(provider_id, None)

    async def list_models(self, providers: list[Provider], refresh: bool) -> list[ModelInfo]:
        """Catalog models merged with each provider's live list (cached; ``refresh`` bypasses).

        A provider that cannot be asked (no key, not running, an error) still gives its catalog
        models; why is logged, not raised, so one dead server does not fail the whole call.
        """
        live: dict[str, list[Model]] = {}

        async def fetch(p: Provider) -> None:
            cached = self._models.get(p.id)
            if cached and not refresh and time.monotonic() - cached[0] < MODELS_TTL:
                live[p.id] = cached[1]
                return
            try:
                models = await self._fetch_models(p, await self._key(p), MODELS_TIMEOUT)
            except SidecarError as exc:
                log.info("model list of %s not available: %s", p.id, exc.info.message)
                return
            self._models[p.id] = (time.monotonic(), models)
            live[p.id] = models

        async with anyio.create_task_group() as tg:
            for p in providers:
                if p.protocol != "mock":
                    tg.start_soon(fetch, p)
        out: list[ModelInfo] = []
        for p in providers:
            known = {m.id for m in p.models}
            out += [m.info(p.id) for m in p.models]
            out += [m.info(p.id) for m in live.get(p.id, ()) if m.id not in known]
        return out

    async def _fetch_models(self, provider: Provider, key: str | None, timeout: float) -> list[Model]:
        protocol = self._protocol(provider)
        request = protocol.models_request(provider, key)
        import httpx

        try:
            with anyio.fail_after(timeout):
                async with self.http().stream(
                    request.method, request.url, headers=request.headers, timeout=httpx.Timeout(timeout)
                ) as response:
                    status, location = response.status_code, response.headers.get("location", "")
                    if 300 <= status < 400:
                        body = b""  # never followed: it could carry the key to another host
                    elif status >= 400:
                        body = await _read_limited(response)
                    else:
                        body = await read_body(response.aiter_bytes(), self.read_limits.max_body_bytes,
                                               provider.id, "the model list", provider.id)
        except (TimeoutError, httpx.TimeoutException):
            raise SidecarError("timeout", f"{provider.id}: no answer within {timeout:g} s",
                               provider=provider.id) from None
        except httpx.HTTPError as exc:
            raise _network_error(exc, provider) from None
        if 300 <= status < 400:
            raise _redirect_error(status, location, provider)
        if status >= 400:
            err = protocol.map_http_error(status, body, provider.id)
            err.info.message = redact(err.info.message, key)
            raise err
        return protocol.parse_models(body)


# --- helpers ---------------------------------------------------------------------------




class _Run:
    """What one request has done so far, across its retries and fallbacks."""

    def __init__(self, emit: Emit, started: float, limits: ReadLimits) -> None:
        self._emit = emit
        self._max_delta = limits.max_delta_bytes
        self._short = limits.max_delta_bytes // 4
        """characters that can never take more than max_delta_bytes in UTF-8"""
        self._max_answer = limits.max_body_bytes
        self._answer = 0
        """characters of text, reasoning and tool-call arguments so far: collectors (complete_chat, the
        agent loop, a JSON answer, the decoders' tool calls) hold them all"""
        self.upstream = ""
        """the provider of the current attempt"""
        self.started = started
        self.started_at = time.time()
        self.output = False
        """something the user may have seen was sent: from here on nothing is retried"""
        self.ttft: float | None = None
        self.retries = 0

    async def emit(self, event: Event) -> None:
        """Every event of a request passes here; a long delta goes out as several (no giant stdout line)."""
        if not self.output and isinstance(event, _FIRST_OUTPUT):
            self.output = True
            self.ttft = (time.perf_counter() - self.started) * 1000
        kind = type(event)
        if kind is TextDeltaEvent or kind is ReasoningDeltaEvent or kind is ToolCallDeltaEvent:
            field = "arguments_delta" if kind is ToolCallDeltaEvent else "text"
            text: str = getattr(event, field)
            self._answer += len(text)
            if len(text) > self._short or self._answer > self._max_answer:
                await self._emit_long(event, field, text)
                return
        await self._emit(event)

    async def _emit_long(self, event: Event, field: str, text: str) -> None:
        if self._answer > self._max_answer:
            raise too_large(self.upstream, "the answer", self._max_answer, "max_body_bytes", self.upstream)
        for piece in pieces(text, self._max_delta):
            await self._emit(msgspec.structs.replace(event, **{field: piece}))

    def latency_ms(self) -> float:
        return round((time.perf_counter() - self.started) * 1000, 3)

    def done(self, finish: Any, usage: Usage, target: Prepared) -> DoneEvent:
        done = DoneEvent(finish_reason=finish, usage=usage, model=target.model_ref, latency_ms=self.latency_ms())
        if self.ttft is not None:
            done.ttft_ms = round(self.ttft, 3)
        return done

    def outcome(self, target: Prepared, finish: str | None, error: str | None, usage: Usage | None) -> Outcome:
        return Outcome(
            kind="stream", provider=target.provider.id, model=target.model_ref, started_at=self.started_at,
            latency_ms=self.latency_ms(), ttft_ms=self.ttft, usage=usage, finish_reason=finish, error=error,
            retries=self.retries,
        )


class _Watchdog:
    """Cancels an attempt when the first byte of its body, or the next one, is late.

    Counts bytes, not messages: a slow but live upstream in the middle of a big event is not idle.
    A loop timer rather than a task or a moving deadline: each chunk costs one clock read.
    """

    def __init__(self, scope: anyio.CancelScope, first_byte: float, idle: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._scope = scope
        self._idle = idle
        self._last: float | None = None
        self.status: int | None = None
        """the answer's HTTP status, once its headers arrived"""
        self.fired: Literal["first_byte", "idle"] | None = None
        self._handle = self._loop.call_at(self._loop.time() + first_byte, self._check)

    def beat(self) -> None:
        now = self._loop.time()
        if self._last is None:
            self._handle.cancel()
            self._handle = self._loop.call_at(now + self._idle, self._check)
        self._last = now

    def _check(self) -> None:
        if self._last is None:
            self.fired = "first_byte"
            self._scope.cancel()
            return
        due = self._last + self._idle
        if self._loop.time() >= due:
            self.fired = "idle"
            self._scope.cancel()
        else:
            self._handle = self._loop.call_at(due, self._check)

    def why(self, policy: Policy, partial: bool) -> str:
        """What timed out, saying whether anything had arrived."""
        if self.fired == "first_byte":
            if self.status is None:
                return f"no byte of an answer within {policy.first_byte:g} s (first_byte_ms)"
            return (f"the answer's headers arrived (HTTP {self.status}) but no byte of its body within "
                    f"{policy.first_byte:g} s (first_byte_ms)")
        where = " in the middle of an event" if partial else ""
        return f"the stream stalled{where}: no byte within {policy.idle:g} s (idle_ms)"

    def close(self) -> None:
        self._handle.cancel()


async def _read_limited(response: httpx.Response) -> bytes:
    parts: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        parts.append(chunk)
        size += len(chunk)
        if size >= MAX_ERROR_BODY:
            break
    return b"".join(parts)[:MAX_ERROR_BODY]


def _not_a_stream(protocol: WireProtocol, status: int, body: bytes, provider: str) -> SidecarError:
    """A 2xx that is not an event stream: an error in JSON clothing, or nonsense."""
    try:
        if b'"error"' in body:
            err = protocol.map_http_error(status, body, provider)
            if err.code != "invalid_request" or b"message" in body:
                return err
    except Exception:
        pass
    return SidecarError("protocol_error", f"{provider}: the upstream did not answer with an event stream",
                        provider=provider)


def _network_error(exc: Exception, provider: Provider) -> SidecarError:
    """Never the exception text: it can hold a URL with its query."""
    import httpx

    host = provider.base_url.split("://", 1)[-1].split("/", 1)[0]
    if isinstance(exc, httpx.ConnectError):
        what = f"could not connect to {host}"
    elif isinstance(exc, httpx.RemoteProtocolError):
        what = "the connection closed before the end of the stream"
    elif isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return SidecarError("invalid_request", f"{provider.id}: the base_url is not a valid http(s) URL",
                            provider=provider.id)
    else:
        what = f"network error talking to {host} ({type(exc).__name__})"
    return SidecarError("network_error", f"{provider.id}: {what}", provider=provider.id)


def _redirect_error(status: int, location: str, provider: Provider) -> SidecarError:
    """A redirect is never followed (the key would go wherever ``Location`` says): the base URL needs fixing."""
    import re
    from urllib.parse import urlsplit

    host = provider.base_url.split("://", 1)[-1].split("/", 1)[0]
    try:
        target = urlsplit(location.strip()).hostname or ""
    except ValueError:
        target = ""
    if target and re.fullmatch(r"[A-Za-z0-9._:-]{1,253}", target):
        where = f"to {target}"
    else:
        where = "to another host" if target else "on the same host" if location.strip() else "without a Location"
    return SidecarError(
        "invalid_request",
        f"{provider.id}: {host} answered {status}, a redirect {where}; redirects are not followed, so that a key "
        "goes only to the base URL: set the base URL to the address the server redirects to (check http or "
        "https and the path)",
        provider=provider.id, status=status)


class _Collector:
    """Events to a complete_chat result; text is collected in a list, joined once."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.parts: list[ContentPart] = []

    async def add(self, event: Event) -> None:
        if isinstance(event, TextDeltaEvent):
            self.text.append(event.text)
        elif isinstance(event, ReasoningDeltaEvent):
            self.reasoning.append(event.text)
        elif isinstance(event, ReasoningEndEvent):
            self._flush_reasoning(event.signature if isinstance(event.signature, str) else None)
        elif isinstance(event, RedactedReasoningEvent):
            self.parts.append(RedactedReasoningPart(data=event.data))
        elif isinstance(event, ToolCallEvent):
            self.parts.append(ToolCallPart(id=event.tool_call_id, name=event.name, arguments=event.arguments))

    def _flush_reasoning(self, signature: str | None) -> None:
        if self.reasoning or signature:
            part = ReasoningPart(text="".join(self.reasoning))
            if signature:
                part.signature = signature
            self.parts.append(part)
            self.reasoning.clear()

    def result(self, done: DoneEvent) -> CompleteChatResult:
        self._flush_reasoning(None)
        content = "".join(self.text)
        parts: list[ContentPart] = [p for p in self.parts if isinstance(p, ReasoningPart | RedactedReasoningPart)]
        if content:
            parts.append(TextPart(text=content))
        parts += [p for p in self.parts if isinstance(p, ToolCallPart)]
        return CompleteChatResult(
            content=content, parts=parts, finish_reason=done.finish_reason, usage=done.usage, model=done.model
        )
