"""Claude for subscribers: each request runs Anthropic's own ``claude`` program (Claude Code) non-interactively,
the supported way for another program to use a Claude Pro/Max sign-in (the public Messages API refuses those
tokens). ``process`` transport: ``encode`` says what to run, ``decode`` reads its JSON lines, ``program``
finds it and checks its version.
"""

from __future__ import annotations

import re

from ...errors import SidecarError
from ...providers import Model, Provider
from ..base import HttpRequest, WireProtocol
from .decode import AUTH_HINTS, Decoder, auth_error
from .encode import encode_request
from .program import check

_SECRETISH = re.compile(r"\b(sk-ant-[\w-]+|[A-Za-z0-9_\-+/=]{32,})")


def map_process_error(status: int, stderr: bytes, provider: str) -> SidecarError:
    """The program ended before its ``result`` line: its last stderr line says why (long tokens blanked out)."""
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    last = _SECRETISH.sub("[…]", lines[-1])[:200] if lines else ""
    if last and AUTH_HINTS.search(last):
        return auth_error(provider, last)
    if "unknown option" in last.lower():
        return SidecarError("provider_not_installed", f"{provider}: the Claude Code program does not know an option "
                                                      f"this provider uses ({last}); update it", provider=provider)
    said = f": {last}" if last else ""
    return SidecarError("upstream_unavailable", f"{provider}: Claude Code exited with status {status} before the "
                                                f"end of its answer{said}", provider=provider)


def models_request(provider: Provider, api_key: str | None) -> HttpRequest:
    raise SidecarError("invalid_request", f"{provider.id}: Claude Code has no model list to fetch; its models are "
                                          "the catalog's", provider=provider.id)


def parse_models(body: bytes) -> list[Model]:
    return []


PROTOCOL = WireProtocol(
    name="claude-code",
    framing="ndjson",
    encode_request=encode_request,
    new_decoder=Decoder,
    map_http_error=lambda status, body, provider: SidecarError(
        "upstream_unavailable", f"{provider}: HTTP {status}", provider=provider),
    models_request=models_request,
    parse_models=parse_models,
    transport="process",
    map_process_error=map_process_error,
    check=check,
)
