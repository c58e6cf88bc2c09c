"""What every protocol module provides (as a module-level ``PROTOCOL``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import msgspec

from ..errors import SidecarError
from ..providers.model import Model, Provider
from ..types import (
    ContentPart,
    Event,
    FinishReason,
    StreamTextParams,
    TextPart,
    ToolCallEvent,
    TransportKind,
    Usage,
    WarningEvent,
)


@dataclass
class HttpRequest:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    warnings: list[WarningEvent] = field(default_factory=list)
    """settings the protocol dropped while encoding: the engine sends them after ``start``"""


@dataclass
class ProcessRequest:
    """A child process to run for one request: the protocol says what to run; the process transport runs it."""

    argv: list[str]
    """argv[0]: the program's absolute path"""
    env: dict[str, str]
    """the child's WHOLE environment (nothing is inherited)"""
    stdin: bytes = b""
    """written, then stdin is closed (never left open: CLIs wait on it)"""
    cwd: str | None = None
    """None: a fresh empty temp dir the transport creates and removes"""
    warnings: list[WarningEvent] = field(default_factory=list)


@dataclass
class LocalRequest:
    """A model run inside the sidecar for one request: the protocol says how; the local transport runs it."""

    generate: Callable[[], Generator[Event, None, tuple[FinishReason, Usage | None]]]
    """a blocking generator of the answer's events, run in a worker thread; it returns how the answer finished
    and its usage (None: counted by estimate). The transport checks for abort after each event and then closes
    the generator, so every ``yield`` is a stopping point; a SidecarError it raises ends the attempt"""
    warnings: list[WarningEvent] = field(default_factory=list)


class StreamDecoder(Protocol):
    """Turns the upstream stream, one message at a time, into contract events.

    ``feed`` raises SidecarError for an error the upstream reports in the stream, and
    ``protocol_error`` for bytes that do not parse.
    """

    finish_reason: FinishReason | None
    usage: Usage | None
    complete: bool
    """the protocol's end-of-stream marker was seen"""

    def feed(self, event: str, data: str) -> list[Event]:
        """One SSE message (its ``event`` name and ``data``), or one NDJSON line (event ``""``)."""
        ...

    def end(self) -> list[Event]:
        """Events still pending when the stream ends (assembled tool calls, reasoning_end)."""
        ...


EmbedRequest = Callable[[Provider, str, list[str], int | None, str | None, dict[str, Any] | None], HttpRequest]
"""(provider, model id, texts, dimensions, api key, provider_options) -> one batch's embeddings request"""


@dataclass(frozen=True)
class WireProtocol:
    name: str
    framing: Literal["sse", "ndjson"]
    encode_request: Callable[[StreamTextParams, Provider, str, str | None], HttpRequest | ProcessRequest | LocalRequest]
    """(params, provider, model id, api key) -> the streaming request (``ProcessRequest`` for the ``process``
    transport, ``LocalRequest`` for ``local``)"""
    new_decoder: Callable[[str], StreamDecoder]
    """given the provider id, for messages"""
    map_http_error: Callable[[int, bytes, str], SidecarError]
    """(status, body, provider id) -> the error to report"""
    models_request: Callable[[Provider, str | None], HttpRequest]
    """the provider's model list: also the cheapest authenticated round trip, for connection tests"""
    parse_models: Callable[[bytes], list[Model]]
    """the models in a successful ``models_request`` answer; ProtocolError-free: skip what does not parse"""
    request_decoder: Callable[[str, StreamTextParams], StreamDecoder] | None = None
    """a decoder that depends on the request (Anthropic's JSON answer sent as a tool call); default ``new_decoder``"""
    transport: TransportKind = "http"
    map_process_error: Callable[[int, bytes, str], SidecarError] | None = None
    """process transport: (exit status, the tail of stderr, provider id) -> the error, for a child that ended
    before the decoder saw the end of its answer"""
    list_models: Callable[[], list[Model]] | None = None
    """a protocol that speaks no HTTP: the models it knows without the network (the local models registered)"""
    check: Callable[[Provider], Awaitable[None]] | None = None
    """awaited once per request in engine.prepare, before anything else happens: may raise SidecarError
    (e.g. provider_not_installed) which becomes the RPC error; cache expensive checks yourself"""

    embed_request: EmbedRequest | None = None
    """embeddings: (provider, model id, texts, dimensions or None, api key, the request's provider_options or
    None) -> the request for one batch; None: the protocol has no embeddings"""
    parse_embeddings: Callable[[bytes], tuple[list[list[float]], int | None]] | None = None
    """a successful ``embed_request`` answer -> (one vector per text, in order; the input tokens, None when not
    reported); raises msgspec's DecodeError or ValidationError for a body of another shape"""
    embed_batch: int = 0
    """the most texts one ``embed_request`` may carry (a provider's ``embed_batch`` overrides it)"""

    def decoder_for(self, provider: str, params: StreamTextParams) -> StreamDecoder:
        """The decoder for one request's stream."""
        if self.request_decoder is not None:
            return self.request_decoder(provider, params)
        return self.new_decoder(provider)


def tool_call_event(call_id: str, name: str, raw: str) -> ToolCallEvent:
    """The final tool call; arguments that are not a JSON object are kept as text."""
    if not raw.strip():
        return ToolCallEvent(tool_call_id=call_id, name=name, arguments={})
    try:
        args = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        args = None
    if isinstance(args, dict):
        return ToolCallEvent(tool_call_id=call_id, name=name, arguments=args)
    return ToolCallEvent(tool_call_id=call_id, name=name, arguments={}, arguments_raw=raw)


def text_of(content: str | list[ContentPart]) -> str:
    """A message's text: the string, or its text parts joined."""
    if isinstance(content, str):
        return content
    return "".join(p.text for p in content if isinstance(p, TextPart))
