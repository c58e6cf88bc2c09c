"""Wire protocols: pure functions from contract types to HTTP requests, and from upstream
bytes to contract events. No I/O here; the engine does the network."""

from __future__ import annotations

import importlib

from .base import HttpRequest, StreamDecoder, WireProtocol

NAMES = ("openai", "anthropic", "gemini", "ollama", "cohere", "claude-code", "openai-responses")


def get_protocol(name: str) -> WireProtocol:
    """The protocol module's ``PROTOCOL``, imported on first use. KeyError when there is none."""
    if name not in NAMES:
        raise KeyError(name)
    try:
        module = importlib.import_module(f".{name.replace('-', '_')}", __name__)
    except ModuleNotFoundError as exc:
        if exc.name == f"{__name__}.{name.replace('-', '_')}":
            raise KeyError(name) from None
        raise
    protocol: WireProtocol = module.PROTOCOL
    return protocol


def available() -> frozenset[str]:
    found = set()
    for name in NAMES:
        try:
            get_protocol(name)
            found.add(name)
        except KeyError:
            pass
    return frozenset(found)


__all__ = ["NAMES", "HttpRequest", "StreamDecoder", "WireProtocol", "available", "get_protocol"]
