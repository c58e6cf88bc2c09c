"""HTTP streaming APIs: one pooled httpx client, the first-byte/idle watchdog, bounded framing, the
protocol's error mapping, redirects refused, and usage counted when the upstream reports none."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

import anyio
import msgspec

from ... import __version__
from ...credentials import redact
from ...errors import SidecarError
from ...policy import CONNECT_S, IDLE_S, Policy, retry_after_ms
from ...protocols.base import HttpRequest, WireProtocol
from ...providers import Model, Provider
from ...tokens import OutputTally, TokenCounter
from ...types import DoneEvent, Usage, UsageEvent
from ..request import Options, Prepared, RunState
from ..watchdog import Watchdog
from .wire import Protocols, WireTransport

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("sidecar.engine")

MAX_ERROR_BODY = 64 * 1024


class HttpTransport(WireTransport):
    kind = "http"
    request_type = HttpRequest

    def __init__(self, protocols: Protocols, options: Options) -> None:
        super().__init__(protocols, options)
        self._http: httpx.AsyncClient | None = None
        self._http_lock = threading.Lock()
        self.tokens = TokenCounter()
        """counts usage an upstream did not report"""

    def warm_up(self, delay: float = 0.5) -> None:
        """Build the HTTP client in a thread shortly after start-up, so neither start-up nor
        the first request pays for importing httpx and loading the TLS certificates."""

        def run() -> None:
            time.sleep(delay)
            try:
                self.client()
            except Exception:
                log.debug("warm-up failed", exc_info=True)

        threading.Thread(target=run, name="warm-up", daemon=True).start()

    def client(self) -> httpx.AsyncClient:
        """The one pooled client, created on first use or by ``warm_up``."""
        with self._http_lock:
            if self._http is None:
                self._http = _new_client()
            return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def count_usage(self, target: Prepared, tally: OutputTally, headers: dict[str, str]) -> Usage:
        """Usage for an answer whose upstream reported none: the server's tokenizer where it has one, else
        an estimate (``estimated: true``)."""
        return await self.tokens.usage(self.client(), target.provider, target.params, tally, headers)

    async def attempt(self, target: Prepared, run: RunState, policy: Policy) -> DoneEvent:
        provider = target.provider
        protocol = target.protocol
        request = target.request
        assert protocol is not None and isinstance(request, HttpRequest)
        decoding = self.decoding(target, protocol.framing)
        tally = OutputTally()
        import httpx

        emit = run.emit
        scope = anyio.CancelScope()
        watchdog = Watchdog(scope, policy.first_byte, policy.idle)
        timeout = httpx.Timeout(max(policy.first_byte, policy.idle) + 5, connect=policy.connect)
        log_requests = self.options.log_requests
        if log_requests:
            log.info("upstream request", extra={"fields": {
                "provider": provider.id, "model": target.model_ref, "method": request.method,
                "url": request.url.split("?", 1)[0], "body_bytes": len(request.body or b"")}})
        try:
            with scope:
                async with self.client().stream(
                    request.method, request.url, headers=request.headers, content=request.body, timeout=timeout
                ) as response:
                    watchdog.status = response.status_code
                    if log_requests:
                        log.info("upstream answer", extra={"fields": {
                            "provider": provider.id, "status": response.status_code,
                            "content_type": response.headers.get("content-type", "")}})
                    if 300 <= response.status_code < 400:
                        raise redirect_error(response.status_code, response.headers.get("location", ""), provider)
                    if response.status_code >= 400:
                        body = await read_limited(response)
                        err = protocol.map_http_error(response.status_code, body, provider.id)
                        wait = retry_after_ms(response.headers, response.status_code)
                        if wait is not None and err.info.retryable:
                            err.info.retry_after_ms = wait
                        raise err
                    if protocol.framing == "sse" and "text/event-stream" not in response.headers.get(
                        "content-type", ""
                    ):
                        body = await read_limited(response)
                        raise _not_a_stream(protocol, response.status_code, body, provider.id)
                    frames, message, add = decoding.frames, decoding.message, tally.add
                    async for chunk in response.aiter_bytes():
                        watchdog.beat()  # bytes, not messages: a slow but live upstream is not idle
                        for name, data in frames(chunk):
                            for event in message(name, data):
                                add(event)
                                await emit(event)
                    for name, data in decoding.last_frames():
                        for event in message(name, data):
                            add(event)
                            await emit(event)
        except SidecarError as exc:
            exc.info.message = redact(exc.info.message, target.api_key)
            raise
        except httpx.TimeoutException as exc:
            phase = "connecting" if isinstance(exc, httpx.ConnectTimeout) else "waiting for data"
            raise SidecarError("timeout", f"{provider.id}: timed out {phase}", provider=provider.id) from None
        except httpx.HTTPError as exc:
            raise network_error(exc, provider) from None
        finally:
            watchdog.close()
        if watchdog.fired is not None:
            raise SidecarError("timeout", f"{provider.id}: {watchdog.why(policy, decoding.pending)}",
                               provider=provider.id)
        decoder = decoding.decoder
        if not decoder.complete and decoder.finish_reason is None:
            raise SidecarError(
                "network_error", f"{provider.id}: the connection closed before the end of the stream",
                provider=provider.id,
            )
        for event in decoding.end():
            tally.add(event)
            await emit(event)
        usage = decoder.usage
        if usage is None or not (usage.input_tokens or usage.output_tokens):
            # none reported (llama-cpp-python when streaming), or zeros, which no real prompt has: count it
            usage = await self.count_usage(target, tally, protocol.models_request(provider, target.api_key).headers)
        await emit(UsageEvent(**msgspec.structs.asdict(usage)))
        return run.done(decoder.finish_reason or "other", usage, target)

    async def models(self, provider: Provider, api_key: str | None, timeout: float) -> list[Model]:
        """The protocol's model list, read within ``timeout``; a redirect is refused, never followed."""
        from ...framing import read_body

        protocol = self.protocol(provider)
        request = protocol.models_request(provider, api_key)
        import httpx

        try:
            with anyio.fail_after(timeout):
                async with self.client().stream(
                    request.method, request.url, headers=request.headers, timeout=httpx.Timeout(timeout)
                ) as response:
                    status, location = response.status_code, response.headers.get("location", "")
                    if 300 <= status < 400:
                        body = b""  # never followed: it could carry the key to another host
                    elif status >= 400:
                        body = await read_limited(response)
                    else:
                        body = await read_body(response.aiter_bytes(), self.options.read_limits.max_body_bytes,
                                               provider.id, "the model list", provider.id)
        except (TimeoutError, httpx.TimeoutException):
            raise SidecarError("timeout", f"{provider.id}: no answer within {timeout:g} s",
                               provider=provider.id) from None
        except httpx.HTTPError as exc:
            raise network_error(exc, provider) from None
        if 300 <= status < 400:
            raise redirect_error(status, location, provider)
        if status >= 400:
            err = protocol.map_http_error(status, body, provider.id)
            err.info.message = redact(err.info.message, api_key)
            raise err
        return protocol.parse_models(body)


def _new_client() -> httpx.AsyncClient:
    import httpx

    return httpx.AsyncClient(
        timeout=httpx.Timeout(IDLE_S, connect=CONNECT_S),
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=60),
        headers={"user-agent": f"llm-sidecar/{__version__}"},
        follow_redirects=False,  # a redirect must never carry a key to another host
    )


async def read_limited(response: httpx.Response) -> bytes:
    """An error body, at most ``MAX_ERROR_BODY`` bytes of it."""
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


def network_error(exc: Exception, provider: Provider) -> SidecarError:
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


def redirect_error(status: int, location: str, provider: Provider) -> SidecarError:
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
