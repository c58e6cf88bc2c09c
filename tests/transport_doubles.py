"""Test-only protocols for the process and local transports, and an engine that knows them.

The engine takes its protocol lookup as a constructor argument; these tests build an engine in process with a
lookup that adds the doubles. Nothing here is reachable over RPC: a provider's program is never an RPC param.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from sidecar.credentials import Credentials
from sidecar.engine import Engine
from sidecar.errors import SidecarError
from sidecar.protocols import get_protocol
from sidecar.protocols.base import LocalRequest, ProcessRequest, WireProtocol
from sidecar.providers import Provider, Registry
from sidecar.settings import SettingsStore
from sidecar.types import (
    Event,
    FinishReason,
    StreamTextParams,
    TextDeltaEvent,
    Usage,
    UserMessage,
    WarningEvent,
)

DOUBLE = Path(__file__).with_name("process_double.py")


def _last_user_text(params: StreamTextParams) -> str:
    last = [m for m in params.messages if isinstance(m, UserMessage)][-1]
    assert isinstance(last.content, str)
    return last.content


@dataclass
class Counters:
    encoded: int = 0


class LineDecoder:
    """``{"text": ...}`` lines, then ``{"done": true, "usage": ...}``."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.finish_reason: FinishReason | None = None
        self.usage: Usage | None = None
        self.complete = False

    def feed(self, event: str, data: str) -> list[Event]:
        obj = json.loads(data)
        if obj.get("done"):
            self.complete, self.finish_reason = True, "stop"
            self.usage = Usage(**obj["usage"])
            return []
        return [TextDeltaEvent(text=obj["text"])]

    def end(self) -> list[Event]:
        return []


def _not_http(*args: Any) -> Any:
    raise AssertionError("not an HTTP protocol")


def process_protocol(counters: Counters) -> WireProtocol:
    """Runs ``process_double.py`` with ``python`` (the provider's program); the request is the user message,
    a JSON object; ``warn`` in it makes the encoder drop a setting with a warning."""

    def encode(params: StreamTextParams, provider: Provider, model: str, key: str | None) -> ProcessRequest:
        counters.encoded += 1
        req = json.loads(_last_user_text(params))
        warnings = [WarningEvent(code="unsupported_setting", message="double: seed is ignored")] if req.get(
            "warn") else []
        assert provider.program is not None
        return ProcessRequest(argv=[provider.program, str(DOUBLE)], env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"},
                              stdin=json.dumps(req).encode(), warnings=warnings)

    def process_error(status: int, stderr: bytes, provider: str) -> SidecarError:
        retry = b"try again" in stderr
        return SidecarError("upstream_unavailable", f"{provider}: exited with status {status}", provider=provider,
                            retryable=retry)

    return WireProtocol(
        name="double", framing="ndjson", encode_request=encode, new_decoder=LineDecoder,
        map_http_error=_not_http, models_request=_not_http, parse_models=lambda body: [],
        transport="process", map_process_error=process_error)


@dataclass
class LocalModel:
    """A stand-in for a model in the sidecar: one token every ``token_s`` seconds, from a worker thread."""

    token_s: float = 0.01
    running: threading.Event = field(default_factory=threading.Event)
    stopped_at: list[float] = field(default_factory=list)
    threads: list[str] = field(default_factory=list)

    def protocol(self) -> WireProtocol:
        def encode(params: StreamTextParams, provider: Provider, model: str, key: str | None) -> LocalRequest:
            text = _last_user_text(params)
            count = 10_000 if text == "forever" else len(text.split())

            def generate() -> Generator[Event, None, tuple[FinishReason, Usage | None]]:
                self.threads.append(threading.current_thread().name)
                self.running.set()
                try:
                    for i in range(count):
                        time.sleep(self.token_s)  # the "model" computing a token, blocking
                        yield TextDeltaEvent(text=f"t{i} ")
                finally:
                    self.stopped_at.append(time.monotonic())
                    self.running.clear()
                return "stop", Usage(input_tokens=3, output_tokens=count)

            return LocalRequest(generate=generate)

        return WireProtocol(
            name="local-double", framing="ndjson", encode_request=encode, new_decoder=LineDecoder,
            map_http_error=_not_http, models_request=_not_http, parse_models=lambda body: [], transport="local")


def engine_with(data_dir: Path, doubles: dict[str, WireProtocol]) -> Engine:
    settings = SettingsStore(data_dir)
    return Engine(Registry(settings), Credentials("llm-sidecar-test", settings), settings,
                  protocols=lambda name: doubles[name] if name in doubles else get_protocol(name))


def provider(protocol: str, transport: str, program: str | None = None) -> Provider:
    return Provider(id=protocol, name=protocol, protocol=cast(Any, protocol), base_url="", requires_api_key=False,
                    transport=cast(Any, transport), program=program)


PYTHON = sys.executable
