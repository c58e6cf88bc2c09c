"""``llm-sidecar chat``: an interactive chat in the terminal on the same engine, no JSON-RPC.

Input is read with ``input()`` on the main thread (line editing via ``readline`` when it is
there, and Python's own KeyboardInterrupt at the prompt); the engine runs in an event loop on a
background thread (an anyio blocking portal), so one pooled HTTP client serves every turn.
While an answer streams a SIGINT handler cancels that turn's scope, which closes the upstream
connection, and the chat goes back to the prompt. At the prompt the first Ctrl-C clears the
line and a second one in a row quits (exit 0), as Ctrl-D and ``/quit`` do.

This module is imported only by the ``chat`` command: the server's start-up never loads it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import getpass
import json
import logging
import os
import signal
import sys
from contextlib import suppress
from types import FrameType
from typing import TYPE_CHECKING, TextIO

import anyio
import anyio.from_thread

from .errors import SidecarError
from .providers import split_model
from .providers.catalog import OFFLINE_MODEL
from .types import (
    AssistantMessage,
    DoneEvent,
    Event,
    FallbackEvent,
    Message,
    ReasoningDeltaEvent,
    ReasoningEndEvent,
    RedactedReasoningEvent,
    RetryEvent,
    StreamTextParams,
    TextDeltaEvent,
    ToolCallEvent,
    UserMessage,
    WarningEvent,
)

if TYPE_CHECKING:
    from .app import App

DEFAULT_MODEL = OFFLINE_MODEL
PROMPT = "you> "
STOPPED = "[stopped]"
"""shown after an answer stopped with Ctrl-C (on stdout: a stop you asked for is not an error)"""
HELP = """\
Commands:
  /model [provider:model]  show the model, or switch to another one (this session only)
  /providers               list providers: id, protocol, whether a key is available
  /key set <provider>      save an API key to the OS keychain (typed without echo)
  /reset                   forget the conversation
  /help                    this list
  /quit                    leave (so do Ctrl-D, and Ctrl-C twice at the prompt)
Ctrl-C while an answer streams stops that answer and keeps the chat open."""


def default_model(app: App, given: str | None) -> str:
    """``--model``, else the active provider from the settings, else the offline ``OFFLINE_MODEL``."""
    if given:
        return given
    active = app.settings.value.active
    if active is not None:
        return f"{active.provider}:{active.model}"
    return DEFAULT_MODEL


class _Printer:
    """Writes one answer's events as they arrive: text plainly, reasoning dimmed (or prefixed
    when the output is not a colour terminal), each tool call on a line of its own."""

    def __init__(self, out: TextIO, err: TextIO, colour: bool) -> None:
        self.out, self.err, self.colour = out, err, colour
        self.text: list[str] = []
        self.reasoning = False
        self.at_line_start = True

    def _write(self, s: str) -> None:
        if s:
            self.out.write(s)
            self.out.flush()
            self.at_line_start = s.endswith("\n")

    def _end_reasoning(self) -> None:
        if self.reasoning:
            self.reasoning = False
            self._write("\x1b[0m" if self.colour else "")
            if not self.at_line_start:
                self._write("\n")

    def newline(self) -> None:
        self._end_reasoning()
        if not self.at_line_start:
            self._write("\n")

    async def emit(self, event: Event) -> None:
        if isinstance(event, TextDeltaEvent):
            self._end_reasoning()
            self.text.append(event.text)
            self._write(event.text)
        elif isinstance(event, ReasoningDeltaEvent):
            if not self.reasoning:
                self.newline()
                self.reasoning = True
                self._write("\x1b[2m" if self.colour else "[thinking] ")
            self._write(event.text)
        elif isinstance(event, ReasoningEndEvent):
            self._end_reasoning()
        elif isinstance(event, RedactedReasoningEvent):
            self.newline()
            self._write("[redacted reasoning]\n")
        elif isinstance(event, ToolCallEvent):
            self.newline()
            args = event.arguments_raw if isinstance(event.arguments_raw, str) else json.dumps(event.arguments)
            self._write(f"[tool call] {event.name}({args})\n")
        elif isinstance(event, RetryEvent):
            self.err.write(f"[retrying in {event.delay_ms / 1000:.1f} s: {event.reason}]\n")
            self.err.flush()
        elif isinstance(event, FallbackEvent):
            self.err.write(f"[{event.from_model} failed ({event.reason}); trying {event.to_model}]\n")
            self.err.flush()
        elif isinstance(event, WarningEvent):
            self.err.write(f"[warning: {event.message}]\n")
            self.err.flush()


class Chat:
    """One terminal session: the conversation, the model, and the commands."""

    def __init__(self, app: App, portal: anyio.from_thread.BlockingPortal, model: str,
                 out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> None:
        self.app = app
        self.portal = portal
        self.model = model
        self.out, self.err = out, err
        self.colour = out.isatty() and not os.environ.get("NO_COLOR")
        self.messages: list[Message] = []
        self._loop: asyncio.AbstractEventLoop = portal.call(asyncio.get_running_loop)
        self._scope: anyio.CancelScope | None = None
        self._interrupted = False

    # --- output ------------------------------------------------------------------------

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def error(self, text: str) -> None:
        self.out.flush()
        self.err.write(f"error: {text}\n")
        self.err.flush()

    # --- the loop ------------------------------------------------------------------------

    def run(self) -> int:
        with suppress(ImportError):
            import readline  # noqa: F401  (line editing and history for input(), when available)
        self.say(f"llm-sidecar chat with {self.model}. /help for commands, Ctrl-D to quit.")
        interrupted_once = False
        while True:
            try:
                line = input(PROMPT).strip()
                interrupted_once = False
                if line.startswith("/"):
                    if self.command(line):
                        return 0
                elif line:
                    self.turn(line)
            except EOFError:
                self.say("")
                return 0
            except KeyboardInterrupt:  # at the prompt (or in a command): clear the line; twice in a row quits
                self.say("")
                if interrupted_once:
                    return 0
                interrupted_once = True
                self.say("(Ctrl-C again, Ctrl-D or /quit to leave)")

    def command(self, line: str) -> bool:
        """Run one ``/command``; True when the chat should end."""
        name, _, rest = line.partition(" ")
        rest = rest.strip()
        if name in ("/quit", "/exit", "/q"):
            return True
        if name == "/help":
            self.say(HELP)
        elif name == "/reset":
            self.messages.clear()
            self.say("conversation cleared")
        elif name == "/model":
            self.switch_model(rest)
        elif name == "/providers":
            self.providers()
        elif name == "/key":
            self.key(rest)
        else:
            self.error(f"unknown command {name}; /help lists them")
        return False

    def switch_model(self, ref: str) -> None:
        if not ref:
            self.say(f"model: {self.model}")
            return
        try:
            provider_id, model = split_model(ref)
            provider = self.app.registry.get(provider_id)
        except SidecarError as exc:
            self.error(exc.info.message)
            return
        self.model = f"{provider.id}:{model}"
        self.say(f"model: {self.model}")

    def providers(self) -> None:
        rows = []
        for p in self.app.registry.all():
            if not p.requires_api_key:
                source = self.app.credentials.known_source(p) if p.api_key_env else None
                key = f"key: {source}" if source else "no key needed"
            else:
                source = self.app.credentials.known_source(p)
                key = f"key: {source}" if source else "no key"
            rows.append((p.id, p.protocol, key))
        width = max((len(r[0]) for r in rows), default=0)
        pwidth = max((len(r[1]) for r in rows), default=0)
        for pid, protocol, key in rows:
            self.say(f"  {pid:<{width}}  {protocol:<{pwidth}}  {key}")

    def key(self, rest: str) -> None:
        from .credentials import clean_key

        parts = rest.split()
        if len(parts) != 2 or parts[0] != "set":
            self.error("usage: /key set <provider>")
            return
        try:
            provider = self.app.registry.get(parts[1])
        except SidecarError as exc:
            self.error(exc.info.message)
            return
        try:
            typed = getpass.getpass(f"API key for {provider.id} (not shown): ")
        except (KeyboardInterrupt, EOFError):
            self.say("")
            self.error("no key saved")
            return
        try:
            key = clean_key(typed)
            self.portal.call(self.app.credentials.save, provider, key)
        except SidecarError as exc:
            self.error(exc.info.message)
            return
        self.say(f"saved the API key for {provider.id} in the OS keychain")

    # --- one answer ----------------------------------------------------------------------

    def turn(self, text: str) -> None:
        """Send the conversation plus ``text`` and stream the answer. An answer that fails or is
        stopped with Ctrl-C is not kept, nor is its question, so the conversation stays well formed."""
        messages = [*self.messages, UserMessage(content=text)]
        printer = _Printer(self.out, self.err, self.colour)
        self._interrupted = False
        previous = signal.signal(signal.SIGINT, self._on_sigint)
        try:
            future = self.portal.start_task_soon(self._stream, StreamTextParams(messages=messages, model=self.model),
                                                 printer)
            while not future.done():
                concurrent.futures.wait([future], timeout=0.25)
            try:
                done = future.result()
            except SidecarError as exc:
                printer.newline()
                self.error(exc.info.message)
                return
            except Exception:
                printer.newline()
                logging.getLogger("sidecar.chat").exception("the answer failed")
                self.error("internal error in the sidecar")
                return
        finally:
            signal.signal(signal.SIGINT, previous)
        printer.newline()
        if done is None:  # the user's own Ctrl-C: a stop, not an error
            self.say(STOPPED)
            return
        self.messages = [*messages, AssistantMessage(content="".join(printer.text))]

    async def _stream(self, params: StreamTextParams, printer: _Printer) -> DoneEvent | None:
        """The engine's stream in a scope Ctrl-C can cancel; None when it was cancelled."""
        with anyio.CancelScope() as scope:
            self._scope = scope
            if self._interrupted:
                scope.cancel()
            try:
                prepared = await self.app.engine.prepare(params)
                return await self.app.engine.stream(prepared, printer.emit)
            finally:
                self._scope = None
        return None

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        self._interrupted = True
        self._loop.call_soon_threadsafe(self._cancel)

    def _cancel(self) -> None:
        if self._scope is not None:
            self._scope.cancel()


def run(app: App, model: str | None) -> int:
    """Run the chat until the user leaves; the engine lives in a portal thread meanwhile."""
    with anyio.from_thread.start_blocking_portal("asyncio") as portal:
        try:
            return Chat(app, portal, default_model(app, model)).run()
        finally:
            with suppress(Exception):
                portal.call(app.engine.aclose)
            usage = app.usage.built
            if usage is not None:
                with suppress(Exception):
                    usage.close()

