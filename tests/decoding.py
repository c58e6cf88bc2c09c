"""The per-protocol decoder tests drive decoders through the engine's own driver (``sidecar.engine.Decoding``),
one message at a time, so each test knows which message raised."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sidecar.engine import Decoding
from sidecar.errors import SidecarError
from sidecar.protocols import StreamDecoder
from sidecar.types import Event


@dataclass
class Run:
    decoder: StreamDecoder
    events: list[Event] = field(default_factory=list)
    error: SidecarError | None = None
    error_at: int | None = None
    """index of the message that raised"""


def feed(decoder: StreamDecoder, messages: Iterable[tuple[str, str]]) -> Run:
    """The messages through the engine's driver, then its ``end()``; stop at a raised error."""
    run = Run(decoder)
    decoding = Decoding(decoder)
    try:
        for event in decoding.feed(messages):
            run.events.append(event)
    except SidecarError as exc:
        run.error, run.error_at = exc, decoding.fed - 1
        return run
    run.events += decoding.end()
    return run
