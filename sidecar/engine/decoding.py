"""The one decoder driver: upstream messages (or raw bytes, framed and bounded) to contract events through a
protocol's decoder. Every transport that decodes goes through it, and so do the decoder tests."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ..framing import MessageReader
from ..protocols.base import StreamDecoder
from ..types import Event


class Decoding:
    """One stream's decoding: messages go to the decoder until its end marker (later ones are read and
    dropped, so an HTTP connection can be reused), events come out one by one, in order, so the events
    before a message that raises are still handed on."""

    __slots__ = ("decoder", "fed", "reader")

    def __init__(self, decoder: StreamDecoder, reader: MessageReader | None = None) -> None:
        self.decoder = decoder
        self.reader = reader
        """frames raw chunks (``feed_bytes``); not needed to feed messages"""
        self.fed = 0
        """messages fed so far, the one being decoded included"""

    def feed(self, messages: Iterable[tuple[str, str]]) -> Iterator[Event]:
        """Each ``(event name, data)``: an SSE message, or ``("", line)`` for an NDJSON line."""
        decoder = self.decoder
        for name, data in messages:
            self.fed += 1
            if not decoder.complete:
                yield from decoder.feed(name, data)

    def feed_bytes(self, chunk: bytes) -> Iterator[Event]:
        """A raw chunk, framed by ``reader`` (which raises ``protocol_error`` for a message over its limit)."""
        assert self.reader is not None
        return self.feed(self.reader.feed(chunk))

    def end_bytes(self) -> Iterator[Event]:
        """What the reader still holds when the bytes end (a last message with no blank line after it)."""
        assert self.reader is not None
        return self.feed(self.reader.end())

    @property
    def pending(self) -> bool:
        """Bytes arrived that are not yet a whole message."""
        return self.reader is not None and self.reader.pending

    def end(self) -> list[Event]:
        """Events the decoder still holds at the end of the stream (assembled tool calls, reasoning_end)."""
        return self.decoder.end()
