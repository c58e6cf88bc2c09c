"""A request as a run of the ``claude`` program: its arguments, its environment, and the user turn on stdin.

The run: ``claude -p --output-format stream-json --verbose --include-partial-messages --input-format
stream-json --model M --system-prompt S --tools "" --permission-mode dontAsk --strict-mcp-config
[--resume SESSION] [--effort E] --``, with the user turn written to stdin as one stream-json line (so a long
history or an image never meets the command line's length limits), in one empty folder the sidecar owns
(``program.workdir``: the program files sessions by working directory, so one per request would leave a folder
per request under ``~/.claude/projects``). ``--system-prompt`` replaces Claude
Code's own prompt with the app's (the program still adds a one-line identity and an environment note),
``--tools ""`` switches its built-in tools off (and the ``--`` after it ends the list), ``dontAsk`` means no
permission prompt ever waits, and ``--strict-mcp-config`` keeps the user's MCP servers (their tools) out.

History: with ``provider_options.session_id`` (from an earlier ``done.provider_metadata``) the session is
resumed and only the turns after the last assistant message are sent; otherwise the earlier turns go in as a
transcript ahead of the last user turn, images in place.

Environment: nothing is inherited but ``PATH``, ``HOME``, locale and temp-dir variables (and on Windows the
few the OS needs to run a program), and the CLI's own variables the app put in the sidecar's environment
(``ANTHROPIC_BASE_URL``, ``ANTHROPIC_API_KEY``, ``CLAUDE_CODE_*``, ``DISABLE_*``). A token saved with
``save_api_key("claude-code", token)`` goes in as ``CLAUDE_CODE_OAUTH_TOKEN``. ``CLAUDE_CODE_MAX_RETRIES`` is
0 unless the app set it: retries are the sidecar's policy (the program's own wait minutes on a 401).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from typing import Any

import msgspec

from ...errors import SidecarError
from ...providers import Provider
from ...types import (
    AssistantMessage,
    ContentPart,
    ImagePart,
    ReasoningPart,
    StreamTextParams,
    SystemMessage,
    TextPart,
    ToolCallPart,
    ToolMessage,
    UserMessage,
    WarningEvent,
)
from ..base import ProcessRequest
from ..toolkit import ROUTING_OPTIONS
from .program import locate, workdir

MAX_SYSTEM_CHARS = 100_000
"""the system prompt is one command-line argument: Linux takes at most 128 KiB in one"""
SESSION_ID = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_-]{0,127}$")
EFFORTS = ("low", "medium", "high")
_KEEP = frozenset({"PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TMP", "TEMP", "ANTHROPIC_BASE_URL",
                   "ANTHROPIC_API_KEY"})
_KEEP_WINDOWS = frozenset({"SYSTEMROOT", "SYSTEMDRIVE", "WINDIR", "COMSPEC", "PATHEXT", "USERPROFILE",
                           "APPDATA", "LOCALAPPDATA", "PROGRAMDATA"})
_KEEP_PREFIXES = ("LC_", "CLAUDE_CODE_", "DISABLE_")
_DROPPED = ("temperature", "top_p", "max_tokens", "stop", "seed", "response_format", "parallel_tool_calls",
            "tool_choice", "cache")


def child_env(token: str | None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The child's whole environment (module docstring)."""
    source = os.environ if environ is None else environ
    windows = sys.platform == "win32"
    env: dict[str, str] = {}
    for name, value in source.items():
        key = name.upper() if windows else name
        if key in _KEEP or key.startswith(_KEEP_PREFIXES) or (windows and key in _KEEP_WINDOWS):
            env[name] = value
    env.setdefault("CLAUDE_CODE_MAX_RETRIES", "0")
    if token:
        env["CLAUDE_CODE_OAUTH_TOKEN"] = token
    return env


def _image(part: ImagePart) -> dict[str, Any]:
    """An image block with its data: the program takes base64 images (no URLs) on its stream-json input."""
    data, media = part.data, part.media_type
    if not isinstance(data, str) and isinstance(part.url, str) and part.url.startswith("data:") \
            and ";base64," in part.url:
        head, data = part.url[5:].split(";base64,", 1)
        media = head or media
    if not isinstance(data, str):
        raise SidecarError("invalid_request", "claude-code takes images as data (base64 or a data: URL), not URLs")
    if not media.startswith("image/"):
        raise SidecarError("invalid_request", f"claude-code takes images only, not {media}")
    return {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}


def _blocks(content: str | list[ContentPart], role: str) -> list[dict[str, Any]]:
    """Text and images of a user turn (or of a turn rendered into the transcript: calls and results as text)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    out: list[dict[str, Any]] = []
    for p in content:
        if isinstance(p, TextPart):
            if p.text:
                out.append({"type": "text", "text": p.text})
        elif isinstance(p, ImagePart):
            out.append(_image(p))
        elif isinstance(p, ToolCallPart):
            args = msgspec.json.encode(p.arguments).decode()
            out.append({"type": "text", "text": f"[called tool {p.name} with {args}]"})
        elif isinstance(p, ReasoningPart):
            continue  # earlier thinking stays out of the transcript, as the API leaves it out of context
        # redacted reasoning and parts added later: nothing to render
    return out


def _label(msg: Any) -> str:
    if isinstance(msg, UserMessage):
        return "User"
    if isinstance(msg, AssistantMessage):
        return "Assistant"
    return f"Tool result ({msg.tool_call_id})"


def _transcript(earlier: list[Any]) -> list[dict[str, Any]]:
    """The earlier turns as text (images in place), marked off from the new turn that follows them."""
    out: list[dict[str, Any]] = [{"type": "text", "text": (
        "The conversation so far, as a transcript (you are the Assistant); answer the user's last message, "
        "which follows it.\n\n<transcript>")}]
    for msg in earlier:
        blocks = _blocks(msg.content, "history")
        if not blocks:
            continue
        out.append({"type": "text", "text": f"\n\n{_label(msg)}:"})
        out += blocks
    out.append({"type": "text", "text": "\n</transcript>\n\nThe user's last message:\n\n"})
    return out


def _user_turn(params: StreamTextParams, resumed: bool) -> list[dict[str, Any]]:
    turns = [m for m in params.messages if not isinstance(m, SystemMessage)]
    last_assistant = max((i for i, m in enumerate(turns) if isinstance(m, AssistantMessage)), default=-1)
    new, earlier = turns[last_assistant + 1:], turns[:last_assistant + 1]
    if not new or not all(isinstance(m, UserMessage) for m in new):
        raise SidecarError("invalid_request", "claude-code: the conversation must end with a user message")
    blocks: list[dict[str, Any]] = []
    for msg in new:
        blocks += _blocks(msg.content, "user")
    if not blocks:
        raise SidecarError("invalid_request", "claude-code: the last user message is empty")
    if earlier and not resumed:
        blocks = _transcript(earlier) + blocks
    return blocks


def _system(params: StreamTextParams) -> str:
    parts = [params.system] if isinstance(params.system, str) and params.system else []
    parts += [m.content for m in params.messages if isinstance(m, SystemMessage) and m.content]
    text = "\n\n".join(parts)
    if len(text) > MAX_SYSTEM_CHARS:
        raise SidecarError("invalid_request", f"claude-code: the system prompt is over {MAX_SYSTEM_CHARS} "
                                              "characters (it goes to the program as one argument)")
    return text


def _options(params: StreamTextParams) -> tuple[str | None, list[WarningEvent]]:
    """(session to resume, warnings for provider_options it does not know)."""
    opts = params.provider_options if isinstance(params.provider_options, dict) else {}
    warnings = [WarningEvent(code="unsupported_setting",
                             message=f"claude-code: provider_options.{k} is not known to this provider; not sent")
                for k in opts if k != "session_id" and k not in ROUTING_OPTIONS]
    session = opts.get("session_id")
    if session is None:
        return None, warnings
    if not isinstance(session, str) or not SESSION_ID.match(session):
        raise SidecarError("invalid_request", "claude-code: provider_options.session_id must be a session id from "
                                              "an earlier done.provider_metadata.session_id")
    return session, warnings


def encode_request(params: StreamTextParams, provider: Provider, model: str, api_key: str | None) -> ProcessRequest:
    if isinstance(params.tools, list) and params.tools:
        raise SidecarError("invalid_request", f"{provider.id}: tools from the app are not supported by this "
                                              "provider yet (it runs Claude Code with its own tools off)",
                           provider=provider.id)
    if any(isinstance(m, ToolMessage) for m in params.messages[-1:]):
        raise SidecarError("invalid_request", f"{provider.id}: the conversation must end with a user message")
    if model.startswith("-") or not model.strip():
        raise SidecarError("invalid_request", f"{provider.id}: {model!r} is not a model name", provider=provider.id)
    session, warnings = _options(params)
    system = _system(params)
    turn = _user_turn(params, session is not None)
    argv = [locate(provider), "-p", "--output-format", "stream-json", "--verbose", "--include-partial-messages",
            "--input-format", "stream-json", "--model", model, "--system-prompt", system,
            "--permission-mode", "dontAsk", "--strict-mcp-config"]
    if session is not None:
        argv += ["--resume", session]
    reasoning = params.reasoning
    if not isinstance(reasoning, msgspec.UnsetType):
        if isinstance(reasoning.effort, str) and reasoning.effort in EFFORTS:
            argv += ["--effort", reasoning.effort]
        if isinstance(reasoning.budget_tokens, int):
            warnings.append(WarningEvent(code="unsupported_setting", message=(
                "claude-code: reasoning.budget_tokens cannot be set through Claude Code; use reasoning.effort")))
    argv += ["--tools", "", "--"]  # "" is no built-in tool; "--" ends that list
    for name in _DROPPED:
        if getattr(params, name) is not msgspec.UNSET:
            warnings.append(WarningEvent(code="unsupported_setting",
                                         message=f"claude-code: {name} cannot be set through Claude Code; not sent"))
    line = {"type": "user", "message": {"role": "user", "content": turn}}
    stdin = msgspec.json.encode(line) + b"\n"
    return ProcessRequest(argv=argv, env=child_env(api_key), stdin=stdin, cwd=workdir(), warnings=warnings)
