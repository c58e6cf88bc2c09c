"""Bounded reading of what an upstream sends: SSE events and NDJSON lines cut from raw chunks, and
whole bodies, each refused once it passes its limit, while it is read (a hostile upstream can send
one 1 GiB line; nothing here ever holds more than the limit plus one chunk).

Also the other side of the pipe: a long text delta cut into several events of a bounded size, so no
stdout line is giant.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterable, Iterator
from dataclasses import dataclass

from .errors import SidecarError

MiB = 1024 * 1024
MAX_EVENT_BYTES = 8 * MiB
"""one SSE event or NDJSON line"""
MAX_BODY_BYTES = 32 * MiB
"""one non-streamed body: a model list, a JSON answer"""
MAX_DELTA_BYTES = 64 * 1024
"""UTF-8 bytes of text in one text/reasoning/tool-argument delta written to stdout"""


@dataclass(frozen=True)
class ReadLimits:
    """The sidecar-wide limits (set on the command line: the app's trusted side, not over RPC)."""

    max_event_bytes: int = MAX_EVENT_BYTES
    max_body_bytes: int = MAX_BODY_BYTES
    max_delta_bytes: int = MAX_DELTA_BYTES


def _size(n: int) -> str:
    return f"{n // MiB} MiB" if n % MiB == 0 else f"{n // 1024} KiB" if n % 1024 == 0 else f"{n} bytes"


def too_large(where: str, what: str, limit: int, setting: str, provider: str | None) -> SidecarError:
    """The error for a refused read (``where``: the provider id, or a name for another upstream); made
    once the read's buffers are dropped, so their memory goes back."""
    give_back_memory()
    return SidecarError(
        "protocol_error",
        f"{where}: {what} is larger than the limit of {_size(limit)} ({setting}); the connection was closed",
        provider=provider,
    )


def give_back_memory() -> None:
    """Hand freed heap pages back to the OS: glibc keeps the many chunk-sized blocks a refused read
    freed (tens of MiB of RSS for a refused model list), while its own free lists reuse them anyway."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):  # not glibc (musl has no malloc_trim)
            ctypes.CDLL(None).malloc_trim(0)


class MessageReader:
    """Raw body chunks in, complete messages out: ``(event name, data)`` per SSE event (as httpx_sse
    dispatches them), or ``("", line)`` per non-blank NDJSON line.

    An event (all its lines) or a line longer than ``limit`` bytes raises ``protocol_error`` as soon as
    its bytes pass the limit, without waiting for its end. Lines end at CRLF, LF or CR (SSE).
    """

    __slots__ = ("_clean", "_data", "_event_bytes", "_limit", "_name", "_partial", "_skip_lf", "_sse", "_upstream",
                 "pending")

    def __init__(self, framing: str, limit: int, upstream: str) -> None:
        self._sse = framing == "sse"
        self._limit = limit
        self._upstream = upstream
        self._partial = bytearray()
        """the line begun but not ended"""
        self._skip_lf = False
        """the last chunk ended with CR: an LF starting the next one belongs to it"""
        self._name = ""
        self._data: list[str] = []
        self._event_bytes = 0
        """bytes of the SSE event's lines so far (the partial line not counted)"""
        self.pending = False
        """bytes arrived that are not yet part of a complete message"""
        self._clean = self._sse
        """SSE, at an event boundary: a chunk of whole events can take the short way"""

    def feed(self, chunk: bytes) -> list[tuple[str, str]]:
        if self._clean and chunk[-2:] == b"\n\n" and len(chunk) <= self._limit and b"\r" not in chunk:
            return self._whole_events(chunk)  # the usual chunk: one or more whole events
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if b"\r" in chunk:
            self._skip_lf = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        end = chunk.rfind(b"\n")
        if end < 0:
            if chunk:
                self._partial += chunk
                self._check(len(self._partial))
                self.pending = True
            self._clean = False
            return []
        if self._partial:
            self._check(len(self._partial) + chunk.find(b"\n"))  # the line it ends
            self._partial += chunk[: end]
            block = bytes(self._partial)
            self._partial.clear()
        else:
            block = chunk[: end]
        out = self._sse_lines(block) if self._sse else self._ndjson_lines(block)
        rest = chunk[end + 1:]
        if rest:
            self._partial += rest
            self._check(len(self._partial))
        self.pending = bool(self._partial or self._data or self._name)
        self._clean = self._sse and not self.pending and not self._skip_lf
        return out

    def end(self) -> list[tuple[str, str]]:
        """At the end of the body: an NDJSON line without its newline still counts; an SSE event
        without its blank line does not (as in httpx_sse)."""
        tail = bytes(self._partial)
        self._partial.clear()
        if self._sse or not tail.strip():
            return []
        return [("", tail.decode("utf-8", "replace"))]

    def _check(self, partial: int) -> None:
        if self._event_bytes + partial > self._limit:
            self._refuse()

    def _refuse(self) -> None:
        self._partial.clear()
        self._data.clear()
        what = "one server-sent event" if self._sse else "one line of the stream"
        raise too_large(self._upstream, what, self._limit, "max_event_bytes", self._upstream)

    def _ndjson_lines(self, block: bytes) -> list[tuple[str, str]]:
        lines = block.split(b"\n")
        if len(block) > self._limit and max(map(len, lines)) > self._limit:  # a chunk inflated by gzip
            self._refuse()
        return [("", line.decode("utf-8", "replace")) for line in lines if line.strip()]

    def _whole_events(self, chunk: bytes) -> list[tuple[str, str]]:
        """Whole events and nothing before them: ``data: x`` and ``event: n`` + ``data: x`` read directly."""
        out: list[tuple[str, str]] = []
        for event in chunk[:-2].split(b"\n\n"):
            nl = event.find(b"\n")
            if nl < 0 and event.startswith(b"data: "):
                out.append(("", event[6:].decode("utf-8", "replace")))
            elif (nl > 0 and event.startswith(b"event: ") and event.startswith(b"data: ", nl + 1)
                    and event.find(b"\n", nl + 1) < 0):
                out.append((event[7:nl].decode("utf-8", "replace"), event[nl + 7:].decode("utf-8", "replace")))
            else:
                out += self._sse_lines(event + b"\n")  # its lines and the blank line that ends it
        return out

    def _sse_lines(self, block: bytes) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        data = self._data
        size = self._event_bytes
        for line in block.split(b"\n"):
            if not line:
                if data or self._name:
                    out.append((self._name, "\n".join(data)))
                    data.clear()
                    self._name = ""
                size = 0
                continue
            size += len(line) + 1
            if size > self._limit:
                self._refuse()
            if line.startswith(b"data"):
                if line[4:5] == b":":
                    value = line[6:] if line[5:6] == b" " else line[5:]
                    data.append(value.decode("utf-8", "replace"))
                elif len(line) == 4:
                    data.append("")
            elif line.startswith(b"event"):
                if line[5:6] == b":":
                    self._name = (line[7:] if line[6:7] == b" " else line[6:]).decode("utf-8", "replace")
                elif len(line) == 5:
                    self._name = ""
            # comments (":..."), id, retry and unknown fields are ignored
        self._event_bytes = size
        return out


async def read_body(chunks: AsyncIterable[bytes], limit: int, where: str, what: str,
                    provider: str | None = None) -> bytes:
    """A whole body, refused (``protocol_error``) the moment it passes ``limit`` bytes; the caller
    closes the response, which drops the connection instead of reading the rest."""
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            parts.clear()
            raise too_large(where, what, limit, "max_body_bytes", provider)
        parts.append(chunk)
    return b"".join(parts)


def pieces(text: str, limit: int) -> Iterator[str]:
    """``text`` cut into pieces of at most ``limit`` UTF-8 bytes each (``limit`` >= 6), never inside a
    character nor between the two halves of a surrogate pair; joined they give ``text`` back."""
    data = text.encode("utf-8", "surrogatepass")
    start, n = 0, len(data)
    while start < n:
        cut = min(start + limit, n)
        if cut < n:
            while data[cut] & 0xC0 == 0x80:  # a continuation byte: back up to the character's start
                cut -= 1
            # a high surrogate (ED A0..AF xx) just before the cut, a low one (ED B0..BF xx) after it
            if cut - start >= 6 and data[cut - 3] == 0xED and 0xA0 <= data[cut - 2] <= 0xAF \
                    and data[cut] == 0xED and 0xB0 <= data[cut + 1] <= 0xBF:
                cut -= 3
        yield data[start:cut].decode("utf-8", "surrogatepass")
        start = cut
