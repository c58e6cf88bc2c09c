"""Long conversations in the engine: a request's ``context`` option applied before sending and after an
upstream overflow, ``count_tokens`` and ``llm_compact_messages``.

Counts for fitting are the calibrated estimate (``sidecar.tokens``, per protocol family) with
``ESTIMATE_MARGIN`` on top, so fitting costs no round trip; an upstream that still says the prompt is too long
gets one more fit, with its own figures (the window it states, and its count over ours as a correction).
Windows come from, first to last: what an upstream stated in an overflow error, Ollama's ``num_ctx`` in the
request, the catalog with configure_provider's ``models`` over it, the provider's live model list.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from ..context import plan
from ..context.limits import Overflow, ollama_num_ctx, overflow_of, reserve_for
from ..credentials import redact
from ..errors import SidecarError
from ..providers import Provider, split_model
from ..tokens import (
    PER_MESSAGE,
    PRIMING,
    Calibration,
    calibration,
    estimate,
    fixed_tokens,
    message_text,
    message_tokens,
    prompt_of,
    prompt_tokens,
)
from ..types import (
    CompactedEvent,
    CompactMessagesParams,
    CompactMessagesResult,
    ContextOptions,
    CountTokensParams,
    CountTokensResult,
    DoneEvent,
    Message,
    StreamTextParams,
    UserMessage,
)
from .collect import Collector
from .prepare import Preparer
from .request import Emit, Prepared

if TYPE_CHECKING:
    from .models import ModelLists
    from .transports.http import HttpTransport

log = logging.getLogger("sidecar.engine")

ESTIMATE_MARGIN = 1.15
"""the estimate is taken this much larger when fitting: on the recorded answers its median error is 11%
(Anthropic) to 25% (OpenAI-style), either way (bench/README.md, "The token estimate"); an overflow that still
happens is fitted again with the upstream's own figures"""
OVERFLOW_SCALE = 1.25
"""after an overflow whose error states the window but not the prompt's count, when the estimate said it fit:
the prompt is taken to be this much over the window (with no figures at all, twice the window: half goes)"""
COMPACT_TO = 0.6
"""compaction leaves the conversation at this share of the budget, so the next turns do not compact again"""
SUMMARY_MAX_TOKENS = 1024
"""the summary's length at most (and at most a quarter of the budget)"""
SUMMARY_SYSTEM = (
    "You compress conversations. Summarise the conversation below so that the summary can replace it in the "
    "conversation: keep the facts, names, numbers, decisions, the user's goals and open questions, and which "
    "tools were called with what result, in the order they happened. Write only the summary."
)
LEARNED_KEEP = 256
"""windows learnt from overflow errors kept (the least recently learnt go first)"""
COUNT_TIMEOUT = 15.0

LocalCount = Callable[[str, StreamTextParams], Awaitable[int]]
"""(local model id, request) -> its prompt's tokens by the model's own tokenizer and chat template"""
RunStream = Callable[[Prepared, Emit], Awaitable[DoneEvent]]


@dataclass
class Window:
    tokens: int | None
    max_output: int | None = None


class ContextService:
    def __init__(self, preparer: Preparer, http: HttpTransport, models: Callable[[], ModelLists],
                 run: RunStream) -> None:
        self.preparer = preparer
        self.http = http
        self._models = models
        self._run = run
        self._learned: OrderedDict[str, int] = OrderedDict()

    # --- windows -----------------------------------------------------------------------------------

    async def window(self, provider: Provider, model: str, params: StreamTextParams | None = None,
                     *, live: bool = True) -> Window:
        """The model's context window and output limit, where anything says (``live``: ask the provider's
        model list when nothing else knows)."""
        known = provider.model(model)
        max_output = known.max_output_tokens if known else None
        learned = self._learned.get(f"{provider.id}:{model}")
        if learned is not None:
            return Window(learned, max_output)
        if provider.protocol == "ollama":
            num_ctx = ollama_num_ctx(params.provider_options if params else None) or ollama_num_ctx(
                provider.extra_body)
            if num_ctx is not None:
                return Window(num_ctx, max_output)
        if known is not None and known.context_window:
            return Window(known.context_window, max_output)
        if live:
            listed = await self._models().model(provider, model)
            if listed is not None and listed.context_window:
                return Window(listed.context_window, listed.max_output_tokens or max_output)
        return Window(None, max_output)

    def learn(self, target: Prepared, exc: SidecarError) -> Overflow:
        """Remember the window an overflow error states for the model; returns what the error said."""
        said = overflow_of(exc.info.message)
        if said.limit is not None:
            self._learned[target.model_ref] = said.limit
            self._learned.move_to_end(target.model_ref)
            while len(self._learned) > LEARNED_KEEP:
                self._learned.popitem(last=False)
        return said

    async def larger(self, failed: Prepared, candidate: Prepared) -> bool:
        """Whether ``candidate``'s window is larger than ``failed``'s: an overflow moves on only to such a
        model (one whose window nothing knows is tried: it may be)."""
        before = await self.window(failed.provider, failed.model, failed.params)
        after = await self.window(candidate.provider, candidate.model, candidate.params)
        return before.tokens is None or after.tokens is None or after.tokens > before.tokens

    # --- fitting a request --------------------------------------------------------------------------

    async def fit(self, target: Prepared, emit: Emit, overflow: SidecarError | None = None) -> Prepared:
        """``target`` made to fit its model's window as its ``context`` option says (``target`` itself when it
        fits, when the option is ``error``, or when no window is known); raises ``context_length_exceeded``
        when even what must stay does not fit. ``overflow``: the upstream refused it as too long."""
        params = target.params
        opts = params.context
        if not isinstance(opts, ContextOptions) or opts.strategy == "error":
            return target
        cal = calibration(target.provider.protocol)
        sizes = [message_tokens(m, cal) for m in params.messages]
        fixed = fixed_tokens(params, cal)
        total = fixed + sum(sizes)
        said = self.learn(target, overflow) if overflow is not None else None
        window = await self.window(target.provider, target.model, params)
        scale = ESTIMATE_MARGIN
        if said is not None:  # the upstream refused it: its figures, or failing those ours made larger
            size = window.tokens if window.tokens is not None else int(total * 0.75)
            window = Window(size, window.max_output)
            room = size - reserve_for(params, size, window.max_output)
            if said.actual is not None and said.actual > total:
                scale = max(scale, said.actual / total * 1.05)
            elif total * scale <= room:  # we thought it fit: it is larger than we count (half, when nothing said)
                scale = max(scale, room / total * (OVERFLOW_SCALE if said.limit else 2.0))
        if window.tokens is None:
            return target  # nothing knows the window: send, and fit after an overflow
        budget = int((window.tokens - reserve_for(params, window.tokens, window.max_output)) / scale) - fixed
        if budget <= 0:
            raise _too_long(target, "the system prompt and tools alone fill the model's context window")
        if sum(sizes) <= budget:
            return target
        messages = list(params.messages)
        keep_last = opts.keep_last if isinstance(opts.keep_last, int) else 0
        if opts.strategy == "compact":
            room = int(budget * COMPACT_TO) - summary_tokens(budget) - PER_MESSAGE  # the summary takes some
            removed = plan.compaction(messages, sizes, room, keep_last)
            if removed:
                start = plan.lead(messages)
                summary = await self.summarize(messages[start:start + removed], target, opts, budget)
                messages = plan.apply_compaction(messages, removed, summary)
                sizes = [message_tokens(m, cal) for m in messages]
                await emit(CompactedEvent(removed_messages=removed, tokens_before=total,
                                          tokens_after=fixed + sum(sizes), summary=summary))
        kept = plan.trim(messages, sizes, budget, keep_last)
        if kept is None:
            raise _too_long(target, "the system prompt, the last user message and the turns that must stay "
                                    f"take about {fixed + sum(sizes)} tokens")
        messages = [messages[i] for i in kept]
        fitted = msgspec.structs.replace(params, messages=messages)
        log.info("context: %s fitted from %d to %d messages", target.model_ref, len(params.messages), len(messages))
        return await self.preparer.prepare_for(fitted, target.provider, target.model)

    # --- summaries ------------------------------------------------------------------------------------

    async def summarize(self, messages: list[Message], target: Prepared, opts: ContextOptions | None,
                        budget: int) -> str:
        """A summary of ``messages`` by the summary model (the context option's, else the request's own); a
        transcript longer than that model's window goes in parts, each summarised with the summary so far."""
        ref = opts.summary_model if opts is not None and isinstance(opts.summary_model, str) else target.model_ref
        provider_id, model = split_model(ref)
        provider = self.preparer.registry.get(provider_id)
        window = await self.window(provider, model)
        max_tokens = summary_tokens(budget)
        texts = [message_text(m)[0] for m in messages]
        parts = _parts(plan.transcript(messages, texts), window.tokens, max_tokens, calibration(provider.protocol))
        summary = ""
        for part in parts:
            text = f"[earlier summary]\n{summary}\n\n{part}" if summary else part
            params = StreamTextParams(messages=[UserMessage(content=text)], model=ref, system=SUMMARY_SYSTEM,
                                      max_tokens=max_tokens, priority=target.params.priority)
            prepared = await self.preparer.prepare_for(params, provider, model)
            collector = Collector()
            done = await self._run(prepared, collector.add)
            summary = collector.result(done).content.strip()
        if not summary:
            raise SidecarError("upstream_unavailable", f"{ref}: the summary model answered with no text",
                               provider=provider_id)
        return summary

    async def compact_messages(self, params: CompactMessagesParams) -> CompactMessagesResult:
        """``llm_compact_messages``: the same compaction on demand, down to ``target_tokens`` (default half the
        model's window)."""
        request = StreamTextParams(messages=params.messages, model=params.model, system=params.system,
                                   context=ContextOptions(strategy="compact", summary_model=params.summary_model),
                                   priority=params.priority)
        target = await self.preparer.prepare(request)
        cal = calibration(target.provider.protocol)
        sizes = [message_tokens(m, cal) for m in params.messages]
        fixed = fixed_tokens(request, cal)
        before = fixed + sum(sizes)
        if isinstance(params.target_tokens, int):
            goal = params.target_tokens
        else:
            window = await self.window(target.provider, target.model, request)
            if window.tokens is None:
                raise SidecarError("invalid_request", f"{target.model_ref}: its context window is not known; "
                                   "give target_tokens (or set the window with configure_provider's models)")
            goal = window.tokens // 2
        room = goal - fixed - summary_tokens(goal) - PER_MESSAGE
        removed = plan.compaction(params.messages, sizes, room, 0) if before > goal else 0
        if not removed:
            return CompactMessagesResult(messages=list(params.messages), tokens_before=before, tokens_after=before)
        start = plan.lead(params.messages)
        summary = await self.summarize(params.messages[start:start + removed], target, request.context
                                       if isinstance(request.context, ContextOptions) else None, goal)
        messages = plan.apply_compaction(params.messages, removed, summary)
        after = fixed + sum(message_tokens(m, cal) for m in messages)
        return CompactMessagesResult(messages=messages, tokens_before=before, tokens_after=after)

    # --- count_tokens -----------------------------------------------------------------------------------

    async def count(self, params: CountTokensParams, local: LocalCount | None) -> CountTokensResult:
        """``count_tokens``: the provider's count where it offers one, else the calibrated estimate."""
        request = StreamTextParams(messages=params.messages, model=params.model, system=params.system,
                                   tools=params.tools)
        target = await self.preparer.prepare(request)
        window = await self.window(target.provider, target.model, request)
        exact: int | None = None
        try:
            exact = await self._exact(target, local)
        except SidecarError as exc:
            if exc.code in ("authentication_failed", "permission_denied", "missing_api_key"):
                raise
            log.info("counting with %s failed (%s); estimating", target.provider.id, exc.info.message)
        counted = exact if exact is not None else prompt_tokens(request, calibration(target.provider.protocol))
        result = CountTokensResult(input_tokens=counted, exact=exact is not None)
        if window.tokens is not None:
            result.context_window = window.tokens
        return result

    async def _exact(self, target: Prepared, local: LocalCount | None) -> int | None:
        provider = target.provider
        if provider.transport == "local":
            return await local(target.model, target.params) if local is not None else None
        if provider.transport != "http":
            return None
        protocol = target.protocol
        assert protocol is not None
        headers = {**protocol.models_request(provider, target.api_key).headers, "content-type": "application/json"}
        counter = _COUNTERS.get(provider.protocol)
        if counter is not None:
            return await counter(self, target, headers)
        if provider.protocol == "openai" and provider.is_local:  # llama.cpp's /tokenize, llama-cpp-python's
            prompt = prompt_of(target.params)
            try:
                counted = await self.http.tokens.count_text(self.http.client(), provider, headers, prompt.text)
            except Exception as exc:  # a tokenizer that fails or is slow: the estimate
                log.info("the tokenizer of %s failed (%s)", provider.id, type(exc).__name__)
                return None
            return None if counted is None else counted + prompt.messages * PER_MESSAGE + PRIMING
        return None

    async def post(self, target: Prepared, url: str, headers: dict[str, str], body: Any) -> Any:
        """One counting request; its error as the protocol maps it."""
        import httpx

        from .transports.http import network_error, read_limited

        protocol = target.protocol
        assert protocol is not None
        try:
            async with self.http.client().stream("POST", url, headers=headers, content=msgspec.json.encode(body),
                                                 timeout=COUNT_TIMEOUT) as response:
                data = await read_limited(response)
                if response.status_code >= 300:
                    err = protocol.map_http_error(response.status_code, data, target.provider.id)
                    err.info.message = redact(err.info.message, target.api_key)
                    raise err
        except httpx.HTTPError as exc:
            raise network_error(exc, target.provider) from None
        try:
            return msgspec.json.decode(data)
        except msgspec.DecodeError:
            raise SidecarError("protocol_error", f"{target.provider.id}: the token count is not JSON",
                               provider=target.provider.id) from None


Counter = Callable[[ContextService, Prepared, dict[str, str]], Awaitable[int | None]]


async def _anthropic(service: ContextService, target: Prepared, headers: dict[str, str]) -> int | None:
    """``POST /v1/messages/count_tokens`` with the request's model, system, messages, tools and thinking."""
    body = msgspec.json.decode(target.request.body)
    keep = ("model", "messages", "system", "tools", "tool_choice", "thinking")
    url = target.request.url.split("?", 1)[0] + "/count_tokens"
    answer = await service.post(target, url, headers, {k: body[k] for k in keep if k in body})
    return _int_field(answer, "input_tokens")


async def _gemini(service: ContextService, target: Prepared, headers: dict[str, str]) -> int | None:
    """``POST models/{model}:countTokens`` with the whole ``generateContentRequest`` (system and tools count)."""
    body = msgspec.json.decode(target.request.body)
    url = target.request.url.split("?", 1)[0].replace(":streamGenerateContent", ":countTokens")
    keep = ("contents", "systemInstruction", "tools", "toolConfig")
    request = {"model": url.rsplit("/", 1)[-1].split(":", 1)[0], **{k: body[k] for k in keep if k in body}}
    if not request["model"].startswith(("models/", "tunedModels/")):
        request["model"] = f"models/{request['model']}"
    answer = await service.post(target, url, headers, {"generateContentRequest": request})
    return _int_field(answer, "totalTokens")


COHERE_TOKENIZE_CHARS = 65_536
"""the longest text Cohere's ``/v1/tokenize`` takes"""


async def _cohere(service: ContextService, target: Prepared, headers: dict[str, str]) -> int | None:
    """``POST /v1/tokenize`` (the model's tokenizer) over the prompt's text, in pieces of its limit; the chat
    template's tokens are the sidecar's figure (``PER_MESSAGE`` a message)."""
    prompt = prompt_of(target.params)
    text, total = prompt.text, prompt.messages * PER_MESSAGE + PRIMING
    url = f"{target.provider.base_url}/v1/tokenize"
    for i in range(0, len(text), COHERE_TOKENIZE_CHARS):
        answer = await service.post(target, url, headers, {"text": text[i:i + COHERE_TOKENIZE_CHARS],
                                                           "model": target.model})
        tokens = answer.get("tokens") if isinstance(answer, dict) else None
        if not isinstance(tokens, list):
            return None
        total += len(tokens)
    return total


_COUNTERS: dict[str, Counter] = {"anthropic": _anthropic, "gemini": _gemini, "cohere": _cohere}


def summary_tokens(budget: int) -> int:
    """The summary's length at most, for a conversation that must fit ``budget``."""
    return max(64, min(SUMMARY_MAX_TOKENS, budget // 4))


def _int_field(answer: Any, name: str) -> int | None:
    value = answer.get(name) if isinstance(answer, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _parts(text: str, window: int | None, max_tokens: int, cal: Calibration) -> list[str]:
    """The transcript in pieces that fit the summary model's window with its instructions and answer."""
    if window is None:
        return [text]
    room = window - max_tokens - estimate(SUMMARY_SYSTEM, cal.chars_per_token) - 2 * SUMMARY_MAX_TOKENS
    size = max(1000, int(room / ESTIMATE_MARGIN * cal.chars_per_token))
    if len(text) <= size:
        return [text]
    return [text[i:i + size] for i in range(0, len(text), size)]


def _too_long(target: Prepared, why: str) -> SidecarError:
    return SidecarError("context_length_exceeded", f"{target.model_ref}: the conversation does not fit the "
                        f"model's context window even after dropping what may go ({why})", provider=target.provider.id)

