"""The one decoder driver: upstream messages (framed from raw bytes, bounded) to contract events through a
protocol's decoder. Every transport that decodes goes through it, and so do the decoder tests.

The transports' loop, per chunk: ``for name, data in d.frames(chunk): for event in d.message(name, data): ...``
(no generator on the hot path); the events before a message that raises have been handed on by then."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from ..framing import MessageReader
from ..protocols.base import StreamDecoder
from ..types import Event

_NONE: tuple[Event, ...] = ()


class Decoding:
    """One stream's decoding: messages go to the decoder until its end marker (later ones are read and
    dropped, so an HTTP connection can be reused), events come out one by one, in order, so the events
    before a message that raises are still handed on."""

    __slots__ = ("decoder", "fed", "reader")

    def __init__(self, decoder: StreamDecoder, reader: MessageReader | None = None) -> None:
        self.decoder = decoder
        self.reader = reader
        """frames raw chunks (``frames``); not needed to feed messages"""
        self.fed = 0
        """messages fed so far, the one being decoded included"""

    def message(self, name: str, data: str) -> Sequence[Event]:
        """One ``(event name, data)``: an SSE message, or ``("", line)`` for an NDJSON line; the hot path."""
        self.fed += 1
        if self.decoder.complete:
            return _NONE
        return self.decoder.feed(name, data)

    def feed(self, messages: Iterable[tuple[str, str]]) -> Iterator[Event]:
        """Each message in turn, its events as they come."""
        for name, data in messages:
            yield from self.message(name, data)

    def frames(self, chunk: bytes) -> list[tuple[str, str]]:
        """A raw chunk's complete messages, framed by ``reader`` (``protocol_error`` for one over its limit);
        each goes to ``message``."""
        assert self.reader is not None
        return self.reader.feed(chunk)

    def last_frames(self) -> list[tuple[str, str]]:
        """What the reader still holds when the bytes end (a last message with no blank line after it)."""
        assert self.reader is not None
        return self.reader.end()

    @property
    def pending(self) -> bool:
        """Bytes arrived that are not yet a whole message."""
        return self.reader is not None and self.reader.pending

    def end(self) -> list[Event]:
        """Events the decoder still holds at the end of the stream (assembled tool calls, reasoning_end)."""
        return self.decoder.end()
