"""The ``claude`` program's stream-json output as contract events.

Lines (recorded from the real program in ``tests/fixtures/claude-code/``): ``system`` (``init`` with the
session id and the model; ``status``, ``api_retry``, ``thinking_tokens``: progress), ``stream_event`` (one
Messages API stream event each: decoded by the anthropic protocol's decoder, so text and thinking come out
exactly as from the API), ``assistant`` (each finished content block again, as a message: cross-checked
against what streamed, and the source of the text when nothing streamed), and the last, ``result``: the
usage (input, output, cache read and write), the real cost (``total_cost_usd``), the session id, and whether
it failed. A failed result is an error: not signed in (``Not logged in · Please run /login``) or an invalid
key or token is ``authentication_failed`` with the fix; an API error keeps its HTTP status (529 is
``upstream_unavailable``, retryable). Lines of subagents (``parent_tool_use_id`` set) cannot occur with the
tools off and are skipped.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import msgspec

from ...errors import SidecarError
from ...types import Event, FinishReason, TextDeltaEvent, Usage
from ..anthropic.decode import FINISH
from ..anthropic.decode import Decoder as MessagesDecoder
from ..http_errors import upstream_error

log = logging.getLogger("sidecar.protocols")

SIGN_IN_FIX = ("sign the Claude Code program in: run `claude` once in a terminal and log in, or create a "
               "long-lived token with `claude setup-token` and save it with save_api_key(\"claude-code\", token)")
AUTH_HINTS = re.compile(r"not logged in|/login|invalid api key|invalid.*token|oauth token|authentication",
                         re.IGNORECASE)
MAX_QUOTE = 200


class _Block(msgspec.Struct):
    type: str = ""
    text: str | None = None


class _Message(msgspec.Struct):
    id: str | None = None
    model: str | None = None
    content: list[_Block] = []


class _ResultUsage(msgspec.Struct):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    output_tokens_details: dict[str, Any] | None = None


class _Line(msgspec.Struct):
    type: str = ""
    subtype: str | None = None
    session_id: str | None = None
    parent_tool_use_id: str | None = None
    event: msgspec.Raw = msgspec.Raw(b"")
    message: _Message | None = None
    error: str | None = None
    # result
    is_error: bool = False
    result: str | None = None
    stop_reason: str | None = None
    total_cost_usd: float | None = None
    usage: _ResultUsage | None = None
    api_error_status: int | None = None
    api_error_type: str | None = None
    errors: list[str] | None = None


class _Kind(msgspec.Struct):
    type: str = ""


_decode_line = msgspec.json.Decoder(_Line).decode
_decode_kind = msgspec.json.Decoder(_Kind).decode


def _quote(text: str | None) -> str:
    text = " ".join((text or "").split())
    return text[:MAX_QUOTE] + ("…" if len(text) > MAX_QUOTE else "")


def auth_error(provider: str, said: str) -> SidecarError:
    quoted = f" (Claude Code said: {_quote(said)})" if said else ""
    return SidecarError("authentication_failed", f"{provider}: Claude Code is not signed in or its sign-in was "
                                                 f"refused{quoted}. To fix it, {SIGN_IN_FIX}", provider=provider)


class Decoder:
    def __init__(self, provider: str = "claude-code") -> None:
        self.provider = provider
        self.finish_reason: FinishReason | None = None
        self.usage: Usage | None = None
        self.complete = False
        self.provider_metadata: dict[str, Any] | None = None
        """``{"session_id": ...}`` once the program said which session this was"""
        self.session_id: str | None = None
        self._messages = MessagesDecoder(provider)
        self._streamed: list[str] = []
        self._finished: list[str] = []
        """text of the finished ``assistant`` blocks, for the cross-check"""
        self._auth_failed = False

    def feed(self, event: str, data: str) -> list[Event]:
        try:
            kind = _decode_kind(data).type
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise SidecarError("protocol_error", f"{self.provider}: a line from Claude Code is not JSON: "
                                                 f"{_quote(data)[:80]}", provider=self.provider) from None
        if kind not in ("stream_event", "assistant", "result", "system"):
            return []  # user echoes, rate-limit notes, and line types added later
        try:
            line = _decode_line(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise SidecarError("protocol_error", f"{self.provider}: unexpected {kind} line from Claude Code ({exc})",
                               provider=self.provider) from None
        if line.session_id:
            self.session_id = line.session_id
        if line.parent_tool_use_id:
            return []
        if kind == "stream_event":
            return self._stream_event(line)
        if kind == "assistant":
            self._assistant(line)
            return []
        if kind == "result":
            return self._result(line)
        return []

    def _stream_event(self, line: _Line) -> list[Event]:
        if not line.event:
            return []
        out = self._messages.feed("", bytes(line.event).decode())
        for ev in out:
            if isinstance(ev, TextDeltaEvent):
                self._streamed.append(ev.text)
        return out

    def _assistant(self, line: _Line) -> None:
        msg = line.message
        if msg is None:
            return
        if line.error == "authentication_failed":
            self._auth_failed = True
        if msg.model == "<synthetic>":  # the program's own words (an error), not the model's
            return
        self._finished += [b.text for b in msg.content if b.type == "text" and b.text]

    def _result(self, line: _Line) -> list[Event]:
        if line.is_error or (line.subtype or "success") != "success":
            raise self._error(line)
        out: list[Event] = []
        streamed, finished = "".join(self._streamed), "".join(self._finished)
        if not streamed and finished:
            out.append(TextDeltaEvent(text=finished))  # nothing streamed (no partial messages): the whole text
        elif finished and streamed != finished:
            log.warning("%s: the streamed text (%d chars) differs from Claude Code's finished message (%d chars)",
                        self.provider, len(streamed), len(finished))
        u = line.usage
        if u is not None:
            cached, created = u.cache_read_input_tokens, u.cache_creation_input_tokens
            usage = Usage(input_tokens=u.input_tokens + cached + created, output_tokens=u.output_tokens)
            if cached:
                usage.cached_input_tokens = cached
            if created:
                usage.cache_creation_tokens = created
            thinking = (u.output_tokens_details or {}).get("thinking_tokens")
            if isinstance(thinking, int) and thinking > 0:
                usage.reasoning_tokens = thinking
            if line.total_cost_usd is not None:
                usage.cost_usd = float(line.total_cost_usd)
            self.usage = usage
        else:
            self.usage = self._messages.usage
        self.finish_reason = self._messages.finish_reason or (FINISH.get(line.stop_reason or "", "other"))
        if self.session_id:
            self.provider_metadata = {"session_id": self.session_id}
        self.complete = True
        return out

    def _error(self, line: _Line) -> SidecarError:
        said = line.result or "; ".join(line.errors or ()) or ""
        status = line.api_error_status
        if status == 401 or self._auth_failed or (status is None and AUTH_HINTS.search(said)):
            return auth_error(self.provider, said)
        if status is not None:
            return upstream_error(self.provider, status, line.api_error_type or "", _quote(said))
        return SidecarError("upstream_unavailable", f"{self.provider}: Claude Code ended with an error "
                                                    f"({line.subtype}): {_quote(said)}", provider=self.provider)

    def end(self) -> list[Event]:
        return self._messages.end()
