"""Drive a protocol decoder exactly as ``Engine.stream`` does, for the per-protocol decoder tests."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

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
    """(event, data) per message; nothing after the end marker, then ``end()``; stop at a raised error."""
    run = Run(decoder)
    for i, (event, data) in enumerate(messages):
        if decoder.complete:
            continue
        try:
            run.events += decoder.feed(event, data)
        except SidecarError as exc:
            run.error, run.error_at = exc, i
            return run
    run.events += decoder.end()
    return run
