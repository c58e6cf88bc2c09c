"""Wire protocols: pure functions from contract types to HTTP requests, and from upstream
bytes to contract events. No I/O here; the engine does the network."""

from __future__ import annotations

from .base import HttpRequest, StreamDecoder, WireProtocol


def get_protocol(name: str) -> WireProtocol:
    if name == "openai":
        from .openai import PROTOCOL

        return PROTOCOL
    raise KeyError(name)


__all__ = ["HttpRequest", "StreamDecoder", "WireProtocol", "get_protocol"]
