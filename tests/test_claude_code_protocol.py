"""The claude-code protocol on its own, no process: decoding the real program's recorded output
(tests/fixtures/claude-code/, see INDEX.md there), the command line, environment and stdin it encodes, the error
mapping of a program that died, and where the program is looked for. Expected values are written out here or read
from the recordings with the stdlib ``json`` module."""

from __future__ import annotations

import asyncio
import json
import stat
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from decoding import feed

from sidecar.errors import SidecarError
from sidecar.protocols import get_protocol
from sidecar.protocols.claude_code import map_process_error
from sidecar.protocols.claude_code.decode import Decoder
from sidecar.protocols.claude_code.encode import child_env, encode_request
from sidecar.protocols.claude_code.program import check, desktop_program, locate, parse_version
from sidecar.providers.catalog import BUILTIN, CLAUDE_CODE_MIN_VERSION
from sidecar.types import (
    AssistantMessage,
    ImagePart,
    ReasoningDeltaEvent,
    ReasoningEndEvent,
    ReasoningOptions,
    StreamTextParams,
    TextDeltaEvent,
    TextPart,
    ToolDefinition,
    UserMessage,
)

FIXTURES = Path(__file__).parent / "fixtures" / "claude-code"
PROVIDER = next(p for p in BUILTIN if p.id == "claude-code")
DESKTOP = next(p for p in BUILTIN if p.id == "claude-desktop")


def lines(name: str) -> list[tuple[str, str]]:
    return [("", ln) for ln in (FIXTURES / name).read_text().splitlines() if ln.strip()]


def recorded(name: str, kind: str) -> list[dict[str, Any]]:
    return [o for o in map(json.loads, (FIXTURES / name).read_text().splitlines()) if o["type"] == kind]


@pytest.fixture
def program(tmp_path: Path) -> str:
    p = tmp_path / "claude"
    p.write_text("#!/bin/sh\necho '2.1.400 (Claude Code)'\n")
    p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return str(p)


def params(*messages: Any, **kw: Any) -> StreamTextParams:
    return StreamTextParams(messages=list(messages), **kw)


# --- decoding the recordings ------------------------------------------------------------------------


def test_text_recording() -> None:
    run = feed(Decoder(), lines("text.jsonl"))
    assert run.error is None
    deltas = [e.text for e in run.events if isinstance(e, TextDeltaEvent)]
    expected = [o["event"]["delta"]["text"] for o in recorded("text.jsonl", "stream_event")
                if o["event"]["type"] == "content_block_delta"]
    assert deltas == expected == ["Hello", " from the", " fake."]
    result = recorded("text.jsonl", "result")[0]
    d = run.decoder
    assert d.complete and d.finish_reason == "stop"
    assert d.usage is not None
    u = result["usage"]
    assert d.usage.input_tokens == u["input_tokens"] + u["cache_read_input_tokens"] + u["cache_creation_input_tokens"]
    assert (d.usage.output_tokens, d.usage.cached_input_tokens, d.usage.cache_creation_tokens) == (9, 7, 5)
    assert d.usage.cost_usd == result["total_cost_usd"] == 0.0001452
    assert isinstance(d, Decoder) and d.provider_metadata == {"session_id": result["session_id"]}


def test_thinking_recording() -> None:
    run = feed(Decoder(), lines("thinking.jsonl"))
    assert run.error is None
    kinds = [type(e) for e in run.events]
    assert kinds == [ReasoningDeltaEvent] * 2 + [ReasoningEndEvent] + [TextDeltaEvent] * 3
    assert [e.text for e in run.events if isinstance(e, ReasoningDeltaEvent)] == ["Let me think", " about it."]
    end = next(e for e in run.events if isinstance(e, ReasoningEndEvent))
    assert end.signature == "c2lnLWZha2U="


def test_401_recording_is_authentication_failed_with_the_fix() -> None:
    run = feed(Decoder(), lines("error-401.jsonl"))
    assert run.error is not None and run.error.info.code == "authentication_failed"
    assert "claude setup-token" in run.error.info.message and "save_api_key" in run.error.info.message
    assert "Invalid API key" in run.error.info.message


def test_not_logged_in_recording_is_authentication_failed() -> None:
    run = feed(Decoder(), lines("not-logged-in.jsonl"))
    assert run.error is not None and run.error.info.code == "authentication_failed"
    assert "Not logged in" in run.error.info.message


def test_529_recording_is_upstream_unavailable_and_retryable() -> None:
    run = feed(Decoder(), lines("error-529.jsonl"))
    assert run.error is not None
    info = run.error.info
    assert (info.code, info.retryable, info.status) == ("upstream_unavailable", True, 529)


def test_text_from_the_assistant_message_when_nothing_streamed() -> None:
    kept = [(e, ln) for e, ln in lines("text.jsonl") if json.loads(ln)["type"] != "stream_event"]
    run = feed(Decoder(), kept)
    assert run.error is None
    assert [e.text for e in run.events if isinstance(e, TextDeltaEvent)] == ["Hello from the fake."]


def test_a_line_that_is_not_json_is_a_protocol_error() -> None:
    run = feed(Decoder(), [("", "Error: something went wrong")])
    assert run.error is not None and run.error.info.code == "protocol_error"


def test_unknown_line_types_are_skipped() -> None:
    run = feed(Decoder(), [("", '{"type":"rate_limit_event","x":1}'), *lines("text.jsonl")])
    assert run.error is None and run.decoder.complete


# --- encoding ----------------------------------------------------------------------------------------


def test_the_command_line(program: str) -> None:
    provider = replace(PROVIDER, program=program)
    req = encode_request(params(UserMessage(content="hi"), system="Be brief."), provider, "sonnet", None)
    argv = req.argv
    assert argv[0] == program
    assert argv[1:8] == ["-p", "--output-format", "stream-json", "--verbose", "--include-partial-messages",
                         "--input-format", "stream-json"]
    assert argv[argv.index("--model") + 1] == "sonnet"
    assert argv[argv.index("--system-prompt") + 1] == "Be brief."
    assert argv[argv.index("--permission-mode") + 1] == "dontAsk"
    assert "--strict-mcp-config" in argv
    assert argv[-3:] == ["--tools", "", "--"], "no built-in tools; '--' ends the list"
    assert "--resume" not in argv
    line = json.loads(req.stdin)
    assert req.stdin.endswith(b"\n") and req.stdin.count(b"\n") == 1
    assert line == {"type": "user", "message": {"role": "user", "content": [{"type": "text", "text": "hi"}]}}


def test_resume_sends_only_the_new_turn(program: str) -> None:
    provider = replace(PROVIDER, program=program)
    p = params(UserMessage(content="one"), AssistantMessage(content="two"), UserMessage(content="three"),
               provider_options={"session_id": "5eca4b56-591d-4994-9b1c-0c2a4c1f7e10"})
    req = encode_request(p, provider, "opus", None)
    assert req.argv[req.argv.index("--resume") + 1] == "5eca4b56-591d-4994-9b1c-0c2a4c1f7e10"
    assert json.loads(req.stdin)["message"]["content"] == [{"type": "text", "text": "three"}]


def test_history_without_a_session_is_a_transcript(program: str) -> None:
    provider = replace(PROVIDER, program=program)
    p = params(UserMessage(content="one"), AssistantMessage(content="two"), UserMessage(content="three"))
    content = json.loads(encode_request(p, provider, "sonnet", None).stdin)["message"]["content"]
    text = "".join(b["text"] for b in content)
    assert text.index("User:") < text.index("one") < text.index("Assistant:") < text.index("two") \
        < text.index("</transcript>") < text.index("three")
    assert content[-1] == {"type": "text", "text": "three"}


def test_images_go_as_base64_blocks_and_urls_are_refused(program: str) -> None:
    provider = replace(PROVIDER, program=program)
    img = ImagePart(media_type="image/png", data="aGVsbG8=")
    p = params(UserMessage(content=[TextPart(text="look"), img]))
    content = json.loads(encode_request(p, provider, "sonnet", None).stdin)["message"]["content"]
    assert content[1] == {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "aGVsbG8="}}
    with pytest.raises(SidecarError) as exc:
        encode_request(params(UserMessage(content=[ImagePart(media_type="image/png", url="https://x.test/a.png")])),
                       provider, "sonnet", None)
    assert exc.value.info.code == "invalid_request"


@pytest.mark.parametrize("bad", [
    {"tools": [ToolDefinition(name="t", parameters={"type": "object"})]},
    {"provider_options": {"session_id": "--dangerously-skip-permissions"}},
])
def test_refused_before_anything_runs(program: str, bad: dict[str, Any]) -> None:
    with pytest.raises(SidecarError) as exc:
        encode_request(params(UserMessage(content="hi"), **bad), replace(PROVIDER, program=program), "sonnet", None)
    assert exc.value.info.code == "invalid_request"


def test_dropped_settings_are_warnings_and_effort_is_passed(program: str) -> None:
    p = params(UserMessage(content="hi"), temperature=0.2, seed=3, reasoning=ReasoningOptions(effort="high"))
    req = encode_request(p, replace(PROVIDER, program=program), "sonnet", None)
    assert req.argv[req.argv.index("--effort") + 1] == "high"
    assert sorted(w.message.split(":")[1].split()[0] for w in req.warnings) == ["seed", "temperature"]


def test_the_child_gets_a_minimal_environment() -> None:
    environ = {"PATH": "/bin", "HOME": "/h", "LANG": "C.UTF-8", "LC_ALL": "C", "TMPDIR": "/t",
               "ANTHROPIC_BASE_URL": "http://127.0.0.1:1", "ANTHROPIC_API_KEY": "sk-ant-x",
               "CLAUDE_CODE_USE_BEDROCK": "0", "DISABLE_TELEMETRY": "1",
               "OPENAI_API_KEY": "sk-openai", "GEMINI_API_KEY": "g", "AWS_SECRET_ACCESS_KEY": "a", "SHELL": "/bin/sh"}
    env = child_env("sk-ant-oat01-token", environ)
    assert env == {"PATH": "/bin", "HOME": "/h", "LANG": "C.UTF-8", "LC_ALL": "C", "TMPDIR": "/t",
                   "ANTHROPIC_BASE_URL": "http://127.0.0.1:1", "ANTHROPIC_API_KEY": "sk-ant-x",
                   "CLAUDE_CODE_USE_BEDROCK": "0", "DISABLE_TELEMETRY": "1", "CLAUDE_CODE_MAX_RETRIES": "0",
                   "CLAUDE_CODE_OAUTH_TOKEN": "sk-ant-oat01-token"}
    assert child_env(None, {"CLAUDE_CODE_MAX_RETRIES": "4"})["CLAUDE_CODE_MAX_RETRIES"] == "4"


# --- a program that died; finding the program ----------------------------------------------------------


def test_process_errors() -> None:
    auth = map_process_error(1, b"starting\nError: Invalid API key sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123\n",
                             "claude-code")
    assert auth.info.code == "authentication_failed"
    assert "abcdefghijklmnop" not in auth.info.message
    old = map_process_error(1, b"error: unknown option '--include-partial-messages'\n", "claude-code")
    assert old.info.code == "provider_not_installed"
    died = map_process_error(137, b"", "claude-code")
    assert died.info.code == "upstream_unavailable" and "137" in died.info.message


def test_parse_version() -> None:
    assert parse_version("2.1.332 (Claude Code)") == (2, 1, 332)
    assert parse_version("nothing") is None
    assert parse_version(CLAUDE_CODE_MIN_VERSION) is not None


def test_the_program_the_app_named_and_a_missing_one(program: str, tmp_path: Path) -> None:
    assert locate(replace(PROVIDER, program=program)) == program
    with pytest.raises(SidecarError) as exc:
        locate(replace(PROVIDER, program=str(tmp_path / "nope" / "claude")))
    assert exc.value.info.code == "provider_not_installed"
    assert "npm install -g @anthropic-ai/claude-code" in exc.value.info.message


def test_version_check(program: str, tmp_path: Path) -> None:
    asyncio.run(check(replace(PROVIDER, program=program)))  # 2.1.400: new enough
    old = tmp_path / "old" / "claude"
    old.parent.mkdir()
    old.write_text("#!/bin/sh\necho '2.0.1 (Claude Code)'\n")
    old.chmod(0o755)
    with pytest.raises(SidecarError) as exc:
        asyncio.run(check(replace(PROVIDER, program=str(old))))
    assert exc.value.info.code == "provider_not_installed"
    assert "2.0.1" in exc.value.info.message and CLAUDE_CODE_MIN_VERSION in exc.value.info.message


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="the Linux layout")
def test_the_desktop_apps_newest_program(tmp_path: Path) -> None:
    root = tmp_path / "config" / "Claude" / "claude-code"
    for v in ("2.1.9", "2.1.215", "2.1.30"):
        (root / v).mkdir(parents=True)
        (root / v / "claude").write_text("#!/bin/sh\n")
        (root / v / "claude").chmod(0o755)
    found = desktop_program(tmp_path, {"XDG_CONFIG_HOME": str(tmp_path / "config")})
    assert found == str(root / "2.1.215" / "claude")
    assert desktop_program(tmp_path, {"XDG_CONFIG_HOME": str(tmp_path / "none")}) is None


def test_claude_desktop_without_the_app_explains(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setenv("APPDATA", str(tmp_path))
    with pytest.raises(SidecarError) as exc:
        locate(DESKTOP)
    assert exc.value.info.code == "provider_not_installed"
    assert "Claude Desktop" in exc.value.info.message


def test_the_protocol_is_a_process_protocol() -> None:
    proto = get_protocol("claude-code")
    assert (proto.transport, proto.framing) == ("process", "ndjson")
    assert PROVIDER.transport == DESKTOP.transport == "process"
    assert PROVIDER.limits is not None and PROVIDER.limits.max_concurrency == 2
