"""Embeddings (``llm_embed``): one call, sent to the provider in batches of its limit, the vectors put back
together in the order of the input.

- **Which models.** A catalog model marked ``embedding`` is an embedding model; any other catalog model is a
  chat model and is refused (``invalid_request``) before the network. Models the catalog does not know (a
  custom provider's, an Ollama model, a ``local:`` model) are let through: the provider decides.
- **Batches.** At most the provider's ``embed_batch`` (else its protocol's) texts per request, and no more
  than fit what is left of the call's answer budget: the answers of one call may hold ``max_body_bytes`` in
  all (the limit of one chat answer), about 1,000 vectors of 1,536 dimensions at the default 32 MiB. Until
  the first answer shows the size of a vector it is guessed large (``GUESS_DIMENSIONS``).
- **Failures.** Each request is retried as chat requests are (``policy.retry_delay``, inside the
  provider's health guard); ``timeouts.total`` of the provider's limits bounds the whole call.
- **Usage.** The input tokens the provider reported, summed; for a batch whose answer reports none
  (Gemini), an estimate from the characters, and the usage says ``estimated: true``.
- **The offline provider**'s ``mock:embed`` makes vectors from the words (``transports.mock_embed``).
- **Local models** (``transport: local``) are embedded by the ``local_embed`` the composition root gives;
  without one the provider is not installed.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import msgspec

from ..errors import SidecarError
from ..policy import Policy, policy_for, priority_of, retry_delay
from ..protocols.base import HttpRequest, WireProtocol
from ..providers import Provider, Registry, split_model
from ..tokens import estimate
from ..types import EmbedParams, EmbedResult, Priority, StreamTextParams, Usage
from .prepare import Preparer
from .request import Options
from .runner import Outcome
from .transports.http import HttpTransport

if TYPE_CHECKING:
    from ..health import Health

LocalEmbed = Callable[[str, list[str]], Awaitable[tuple[list[list[float]], int]]]
"""(model id, texts) -> (one vector per text, input tokens): the ``local`` provider's embeddings"""
Work = Callable[[], Awaitable[tuple[list[list[float]], Usage]]]
"""one call's embeddings, once everything before the model has been checked"""

GUESS_DIMENSIONS = 3072
"""the size of a vector before an answer shows it: the largest common one (text-embedding-3-large)"""
JSON_FLOAT_BYTES = 20
"""a float written in JSON, with its comma (``-0.012345678901234567,``)"""
LOCAL_EXTRA = "pip install 'llm-sidecar[local]'"


def check_embedding_model(provider: Provider, model: str) -> None:
    """A catalog model that is not an embedding model is refused; unknown models go through."""
    if provider.is_custom:
        return  # the user's own models: the catalog knows nothing about them
    for m in provider.models:
        if m.id == model and not m.embedding:
            raise SidecarError("invalid_request", f"{provider.id}:{model} is a chat model, it makes no embeddings; "
                               "choose an embedding model (llm_list_available_models: supports_embedding)",
                               provider=provider.id)


class Embedder:
    def __init__(self, registry: Registry, preparer: Preparer, http: HttpTransport, options: Options,
                 health: Callable[[], Health], local: LocalEmbed | None,
                 report: Callable[[Outcome], None] = lambda outcome: None) -> None:
        self.registry = registry
        self.report = report
        """every call that reached a provider, for the usage log (``kind: embed``)"""
        self.preparer = preparer
        self.http = http
        self.options = options
        self._health = health
        self.local = local
        """the ``local`` provider's embeddings; None: not installed"""

    async def embed(self, params: EmbedParams) -> EmbedResult:
        if not params.input:
            raise SidecarError("invalid_request", "input must hold at least one text")
        provider_id, model = split_model(params.model)
        provider = self.registry.get(provider_id)
        check_embedding_model(provider, model)
        dimensions = params.dimensions if isinstance(params.dimensions, int) else None
        options = params.provider_options if isinstance(params.provider_options, dict) else None
        work = await self._prepare(provider, model, params.input, dimensions, options,
                                   priority_of(params))  # refusals: not reported
        started, wall = time.perf_counter(), time.time()

        def report(usage: Usage | None, error: str | None) -> None:
            self.report(Outcome(kind="embed", provider=provider.id, model=f"{provider.id}:{model}", started_at=wall,
                                latency_ms=round((time.perf_counter() - started) * 1000, 3), ttft_ms=None,
                                usage=usage, finish_reason=None, error=error))

        try:
            vectors, usage = await work()
        except SidecarError as exc:
            report(None, exc.code)
            raise
        except anyio.get_cancelled_exc_class():
            report(None, "cancelled")
            raise
        report(usage, None)
        return EmbedResult(embeddings=vectors, model=f"{provider.id}:{model}", usage=usage)

    async def _prepare(self, provider: Provider, model: str, texts: list[str], dimensions: int | None,
                       options: dict[str, Any] | None, priority: Priority) -> Work:
        """Everything before the model is reached (a refusal here is the RPC error); the work that reaches it."""
        if provider.transport == "http":
            protocol = self.http.protocol(provider)
            if protocol.embed_request is None or protocol.parse_embeddings is None:
                raise SidecarError("invalid_request", f"{provider.id}: the {protocol.name} protocol has no "
                                   "embeddings", provider=provider.id)
            await self.http.check(provider)
            provider, key = await self.preparer.authorize(provider)
            return partial(self._http, provider, protocol, key, model, texts, dimensions, options, priority)
        if provider.transport == "local":
            local = self.local
            if local is None:
                raise SidecarError("provider_not_installed", f"{provider.id}: models in the app need the local "
                                   f"extra ({LOCAL_EXTRA})", provider=provider.id)
            if dimensions is not None:
                raise SidecarError("invalid_request", f"{provider.id}: a local model's vectors have the model's "
                                   "own size; dimensions cannot be chosen", provider=provider.id)

            async def run_local() -> tuple[list[list[float]], Usage]:
                vectors, tokens = await local(model, texts)
                _check_count(provider, len(vectors), len(texts))
                return vectors, Usage(input_tokens=tokens)

            return run_local
        if provider.transport == "mock":  # only mock:embed gets here (the others are chat models)
            from .transports.mock_embed import DIMENSIONS, embed_words

            budget = self.options.read_limits.max_body_bytes
            if len(texts) * (dimensions or DIMENSIONS) * JSON_FLOAT_BYTES > budget:
                raise SidecarError("invalid_request", f"{provider.id}: the answer would be larger than the limit of "
                                   f"{budget} bytes (max_body_bytes); send fewer texts per call", provider=provider.id)

            async def run_mock() -> tuple[list[list[float]], Usage]:
                vectors, words = embed_words(texts, dimensions)
                return vectors, Usage(input_tokens=words)

            return run_mock
        raise SidecarError("invalid_request", f"{provider.id} makes no embeddings", provider=provider.id)

    async def _http(self, provider: Provider, protocol: WireProtocol, key: str | None, model: str, texts: list[str],
                    dimensions: int | None, options: dict[str, Any] | None,
                    priority: Priority) -> tuple[list[list[float]], Usage]:
        assert protocol.embed_request is not None and protocol.parse_embeddings is not None
        policy = policy_for(StreamTextParams(messages=[]), provider)  # the provider's limits; no request settings
        limit = max(1, provider.embed_batch or protocol.embed_batch or 1)
        budget = self.options.read_limits.max_body_bytes
        vector_bytes = (dimensions or GUESS_DIMENSIONS) * JSON_FLOAT_BYTES
        vectors: list[list[float]] = []
        tokens = 0
        estimated = False
        try:
            with anyio.fail_after(policy.total):
                start = 0
                while start < len(texts):
                    chunk = texts[start:start + max(1, min(limit, budget // vector_bytes))]
                    request = protocol.embed_request(provider, model, chunk, dimensions, key, options)
                    body = await self._send(provider, protocol, request, key, policy, budget, priority)
                    try:
                        got, reported = protocol.parse_embeddings(body)
                    except (msgspec.DecodeError, msgspec.ValidationError):
                        raise SidecarError("protocol_error", f"{provider.id}: the answer is not a list of "
                                           "embeddings", provider=provider.id) from None
                    _check_count(provider, len(got), len(chunk))
                    vectors += got
                    budget -= len(body)
                    vector_bytes = max(1, len(body) // len(chunk))
                    if reported is None:
                        tokens += sum(estimate(t) for t in chunk)
                        estimated = True
                    else:
                        tokens += reported
                    start += len(chunk)
        except TimeoutError:
            raise SidecarError("timeout", f"{provider.id}: no complete answer within the time limit",
                               provider=provider.id, retryable=False) from None
        usage = Usage(input_tokens=tokens)
        if estimated:
            usage.estimated = True
        return vectors, usage

    async def _send(self, provider: Provider, protocol: WireProtocol, request: HttpRequest, key: str | None,
                    policy: Policy, budget: int, priority: Priority) -> bytes:
        """One batch, retried as chat requests are, each try inside the provider's health guard."""
        import httpx

        timeout = httpx.Timeout(max(policy.first_byte, policy.idle), connect=policy.connect)
        health = self._health()
        retries = waited = 0
        while True:
            try:
                async with health.slot(provider, priority):
                    started = time.perf_counter()
                    try:
                        body = await self.http.fetch(provider, protocol, request, key,
                                                     "the answer of this llm_embed call (send fewer texts per call)",
                                                     budget, timeout)
                    except SidecarError as exc:
                        health.record(provider.id, ok=False, latency_ms=None, code=exc.info.code)
                        raise
                    health.record(provider.id, ok=True, latency_ms=(time.perf_counter() - started) * 1000,
                                  code=None)
                    return body
            except SidecarError as exc:
                delay = retry_delay(exc, retries, waited, policy)
                if delay is None:
                    raise
                retries += 1
                waited += delay
                await anyio.sleep(delay / 1000)


def _check_count(provider: Provider, got: int, sent: int) -> None:
    if got != sent:
        raise SidecarError("protocol_error", f"{provider.id}: {got} vectors came back for {sent} texts",
                           provider=provider.id)
