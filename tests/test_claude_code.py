"""The claude-code provider end to end: the real sidecar runs the real ``claude`` program (``@anthropic-ai/claude-code``
pinned in tests/tools/package.json, installed by scripts/test.sh with ``npm ci``), which talks to a loopback fake
of the Messages API (tests/claude_fake.py) and never to anything else: ``ANTHROPIC_BASE_URL`` points at the fake,
the key is a dummy, the program's non-essential traffic, updater, telemetry and error reports are off, and its
``HOME`` is a temp folder. Expected values are written out here (the fake's answer, its usage numbers) or are what
the real program printed (its cost, recorded in tests/fixtures/claude-code/).

Without the program installed these tests skip, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from claude_fake import REPLY, THOUGHT, FakeMessagesApi, last_user_text, system_text
from harness import ROOT, Sidecar, check_stream_invariants, text_of

CLAUDE = ROOT / "tests" / "tools" / "node_modules" / ".bin" / "claude"
VERSION = "2.1.332"
SYSTEM = "You are the notes app's helper. MARKER-7781."
DUMMY_KEY = "sk-ant-dummy-for-the-loopback-fake"
# the fake's usage (claude_fake.USAGE): input 21 + cache read 7 + cache write 5; output 9
USAGE = {"input_tokens": 33, "output_tokens": 9, "cached_input_tokens": 7, "cache_creation_tokens": 5}
SONNET_COST = 0.0001452
"""what the real program reported as total_cost_usd for that usage on its Sonnet (tests/fixtures/claude-code)"""
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

if not CLAUDE.exists():
    if os.environ.get("CI") == "true":
        pytest.fail(f"the claude program is not installed at {CLAUDE}: run `npm ci` in tests/tools",
                    pytrace=False)
    pytest.skip("the claude program is not installed (npm ci in tests/tools)", allow_module_level=True)


def offline_env(fake: FakeMessagesApi, home: Path, **extra: str) -> dict[str, str]:
    """What keeps the program on loopback (PITFALLS: the claude CLI)."""
    return {"ANTHROPIC_BASE_URL": fake.url, "ANTHROPIC_API_KEY": DUMMY_KEY, "HOME": str(home),
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1", "DISABLE_TELEMETRY": "1",
            "DISABLE_ERROR_REPORTING": "1", "XDG_CONFIG_HOME": str(home / ".config"), **extra}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeMessagesApi]:
    api = FakeMessagesApi()
    yield api
    api.close()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def sidecar(fake: FakeMessagesApi, home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    sc = Sidecar(tmp_path_factory.mktemp("data"), "--claude-path", str(CLAUDE), "--log-requests",
                 "--log-format", "json", env=offline_env(fake, home))
    sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
    yield sc
    sc.kill()
    assert sc.bad_lines == []
    assert DUMMY_KEY.encode() not in b"".join(sc.raw_lines), "the key never goes to the frontend"


def stream(sc: Sidecar, text: str | list[dict[str, Any]], **extra: Any) -> list[dict[str, Any]]:
    messages = [{"role": "user", "content": text}] if isinstance(text, str) else text
    events = sc.stream({"model": "claude-code:sonnet", "system": SYSTEM, "messages": messages,
                        "retry": {"max_retries": 0}, **extra}, timeout=60)
    check_stream_invariants(events)
    return events


def only(fake: FakeMessagesApi, marker: str) -> Any:
    seen = fake.with_marker(marker)
    assert len(seen) == 1, f"the fake saw {len(seen)} requests with {marker}"
    return seen[0]


# --- the bars ----------------------------------------------------------------------------------


def test_text_streams_in_order_with_usage_and_the_apps_system_prompt(sidecar: Sidecar, fake: FakeMessagesApi) -> None:
    events = stream(sidecar, "hello [[plain-1]]")
    deltas = [e["text"] for e in events if e["type"] == "text_delta"]
    assert deltas == list(REPLY)
    done = events[-1]
    assert done["type"] == "done", done
    assert done["finish_reason"] == "stop"
    assert done["model"] == "claude-code:sonnet"
    assert {k: done["usage"][k] for k in USAGE} == USAGE
    assert done["usage"]["cost_usd"] == pytest.approx(SONNET_COST)
    assert UUID.match(done["provider_metadata"]["session_id"])
    seen = only(fake, "[[plain-1]]")
    assert seen.body["tools"] == [], "Claude Code's built-in tools are off"
    system = system_text(seen.body)
    assert SYSTEM in system
    assert len(system) < 1000, "Claude Code's own ~7,000-character prompt is replaced"
    assert seen.headers["x-api-key"] == DUMMY_KEY
    assert seen.last_user_text() == "hello [[plain-1]]"


def test_the_real_cost_goes_into_the_usage_log(sidecar: Sidecar) -> None:
    stream(sidecar, "for the log [[cost-1]]")
    stats = sidecar.call("get_usage_stats", {"group_by": "provider"})
    group = next(g for g in stats["groups"] if g["key"] == "claude-code")
    # the catalog has no price for the alias: anything but 0 is the program's own figure
    assert group["cost_usd"] == pytest.approx(SONNET_COST * group["requests"])


def test_abort_mid_stream_ends_cancelled_and_leaves_no_process(sidecar: Sidecar) -> None:
    res = sidecar.call("llm_stream_text", {"model": "claude-code:sonnet", "system": SYSTEM,
                                           "messages": [{"role": "user", "content": "count [[slow]] [[abort-1]]"}]})
    sid = res["stream_id"]
    sidecar.wait_for(lambda m: m.get("method") == f"llm-stream-{sid}" and m["params"]["type"] == "text_delta",
                     timeout=60)
    pids = children_of(sidecar.proc.pid)
    assert pids, "the program runs as the sidecar's child"
    t0 = time.monotonic()
    assert sidecar.call("llm_abort_stream", {"stream_id": sid}) is not None
    events = sidecar.wait_stream_end(sid, timeout=10)
    elapsed = time.monotonic() - t0
    assert events[-1]["type"] == "error" and events[-1]["error"]["code"] == "cancelled"
    print(f"abort -> cancelled in {elapsed * 1000:.0f} ms")  # the bar (1.5 s) is measured in bench/claude_code.py
    for pid in pids:
        assert not alive(pid), f"process {pid} outlived the abort"
        assert not group_members(pid), f"processes of group {pid} outlived the abort"


def test_shutdown_mid_stream_leaves_no_process(fake: FakeMessagesApi, home: Path, tmp_path: Path) -> None:
    sc = Sidecar(tmp_path, "--claude-path", str(CLAUDE), env=offline_env(fake, home))
    try:
        sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
        sid = sc.call("llm_stream_text", {"model": "claude-code:sonnet",
                                          "messages": [{"role": "user", "content": "[[slow]] [[shutdown-1]]"}]})
        sid = sid["stream_id"]
        sc.wait_for(lambda m: m.get("method") == f"llm-stream-{sid}" and m["params"]["type"] == "text_delta",
                    timeout=60)
        pids = children_of(sc.proc.pid)
        assert pids
        sc.send({"jsonrpc": "2.0", "id": "bye", "method": "shutdown"})
        assert sc.wait_exit(10) == 0
        assert sc.events(sid)[-1]["type"] == "error"
        for pid in pids:
            assert not alive(pid) and not group_members(pid), f"process {pid} outlived the sidecar"
    finally:
        sc.kill()


def test_no_claude_on_the_path_is_provider_not_installed(fake: FakeMessagesApi, home: Path, tmp_path: Path) -> None:
    env = offline_env(fake, home, PATH=os.path.dirname(sys.executable))
    sc = Sidecar(tmp_path, env=env, unset=["CLAUDE_CODE_PATH"])
    try:
        sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
        err = sc.request("llm_stream_text", {"model": "claude-code:sonnet",
                                             "messages": [{"role": "user", "content": "hi"}]})["error"]
        assert err["data"]["code"] == "provider_not_installed"
        assert "npm install -g @anthropic-ai/claude-code" in err["message"]
    finally:
        sc.kill()


# --- the rest ------------------------------------------------------------------------------------


def test_thinking_streams_as_reasoning(sidecar: Sidecar) -> None:
    events = stream(sidecar, "[[think]] why [[think-1]]", reasoning={"effort": "low"})
    kinds = [e["type"] for e in events if e["type"] in ("reasoning_delta", "reasoning_end", "text_delta")]
    assert kinds == ["reasoning_delta"] * len(THOUGHT) + ["reasoning_end"] + ["text_delta"] * len(REPLY)
    assert [e["text"] for e in events if e["type"] == "reasoning_delta"] == list(THOUGHT)
    assert next(e for e in events if e["type"] == "reasoning_end")["signature"] == "c2lnLWZha2U="
    assert text_of(events) == "".join(REPLY)


def test_a_resumed_session_sends_only_the_new_turn(sidecar: Sidecar, fake: FakeMessagesApi) -> None:
    first = stream(sidecar, "first turn [[resume-1]]")
    session = first[-1]["provider_metadata"]["session_id"]
    history = [{"role": "user", "content": "first turn [[resume-1]]"},
               {"role": "assistant", "content": "".join(REPLY)},
               {"role": "user", "content": "second turn [[resume-2]]"}]
    second = stream(sidecar, history, provider_options={"session_id": session})
    assert second[-1]["type"] == "done"
    assert second[-1]["provider_metadata"]["session_id"] == session
    msgs = only(fake, "[[resume-2]]").body["messages"]
    users = [last_user_text({"messages": [m]}) for m in msgs if m["role"] == "user"]
    assert users == ["first turn [[resume-1]]", "second turn [[resume-2]]"], "the session's turn, then only the new"
    assert [m["content"][0]["text"] if isinstance(m["content"], list) else m["content"]
            for m in msgs if m["role"] == "assistant"] == ["".join(REPLY)]


def test_complete_chat_returns_the_session_to_resume(sidecar: Sidecar, fake: FakeMessagesApi) -> None:
    result = sidecar.call("complete_chat", {"model": "claude-code:sonnet", "messages": [
        {"role": "user", "content": "one answer [[complete-1]]"}]}, timeout=60)
    assert result["content"] == "".join(REPLY)
    assert UUID.match(result["provider_metadata"]["session_id"])


def test_a_long_history_is_rendered_as_a_transcript(sidecar: Sidecar, fake: FakeMessagesApi) -> None:
    history: list[dict[str, Any]] = []
    for i in range(40):
        history += [{"role": "user", "content": f"question {i} " + "x" * 200},
                    {"role": "assistant", "content": f"answer {i} " + "y" * 200}]
    history.append({"role": "user", "content": "and now? [[long-1]]"})
    events = stream(sidecar, history)
    assert events[-1]["type"] == "done"
    text = only(fake, "[[long-1]]").last_user_text()
    positions = [text.index(f"question {i} ") for i in range(40)] + [text.index("and now? [[long-1]]")]
    assert positions == sorted(positions), "every turn, in order, the new one last"
    assert all(f"answer {i} " in text for i in range(40))
    assert "<transcript>" in text


def test_401_is_authentication_failed_with_the_fix(sidecar: Sidecar) -> None:
    events = stream(sidecar, "[[401]] hi")
    err = events[-1]["error"]
    assert err["code"] == "authentication_failed", err
    assert "claude setup-token" in err["message"]
    assert DUMMY_KEY not in err["message"]


def test_529_is_upstream_unavailable_and_retried(sidecar: Sidecar, fake: FakeMessagesApi) -> None:
    events = stream(sidecar, "[[529x1]] busy? [[retry-1]]", retry={"max_retries": 2})
    assert [e["type"] for e in events if e["type"] == "retry"] == ["retry"], events
    retry = next(e for e in events if e["type"] == "retry")
    assert retry["reason"] == "upstream_unavailable"
    assert events[-1]["type"] == "done" and text_of(events) == "".join(REPLY)
    assert len(fake.with_marker("[[retry-1]]")) == 2


def test_529_without_retries_is_upstream_unavailable(sidecar: Sidecar) -> None:
    err = stream(sidecar, "[[529]] busy")[-1]["error"]
    assert (err["code"], err["retryable"]) == ("upstream_unavailable", True)


def test_tools_are_refused_before_anything_runs(fake: FakeMessagesApi, home: Path, tmp_path: Path) -> None:
    program, ran = fake_program(tmp_path, VERSION)
    sc = Sidecar(tmp_path / "data", "--claude-path", str(program), env=offline_env(fake, home))
    try:
        sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
        tool = {"name": "lookup", "parameters": {"type": "object", "properties": {}}}
        err = sc.request("llm_stream_text", {"model": "claude-code:sonnet", "tools": [tool],
                                             "messages": [{"role": "user", "content": "hi [[tools-1]]"}]})["error"]
        assert err["data"]["code"] == "invalid_request"
        assert "tools" in err["message"]
        assert not ran.exists(), "the program was never started for the request"
        assert fake.with_marker("[[tools-1]]") == []
    finally:
        sc.kill()


def test_a_too_old_program_is_provider_not_installed(fake: FakeMessagesApi, home: Path, tmp_path: Path) -> None:
    program, ran = fake_program(tmp_path, "1.0.3")
    sc = Sidecar(tmp_path / "data", env=offline_env(fake, home, CLAUDE_CODE_PATH=str(program)))
    try:
        sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
        err = sc.request("llm_stream_text", {"model": "claude-code:sonnet",
                                             "messages": [{"role": "user", "content": "hi"}]})["error"]
        assert err["data"]["code"] == "provider_not_installed"
        assert "1.0.3" in err["message"] and VERSION in err["message"]
        assert not ran.exists()
    finally:
        sc.kill()


def test_claude_desktop_uses_the_desktop_apps_program(fake: FakeMessagesApi, tmp_path: Path) -> None:
    home = tmp_path / "home"
    sc = Sidecar(tmp_path / "data", env=offline_env(fake, home), unset=["CLAUDE_CODE_PATH"])
    try:
        sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
        params = {"model": "claude-desktop:sonnet", "messages": [{"role": "user", "content": "hi [[desktop-1]]"}]}
        err = sc.request("llm_stream_text", params)["error"]
        assert err["data"]["code"] == "provider_not_installed"
        assert "Claude Desktop" in err["message"]
        if sys.platform.startswith("linux"):  # the layout the desktop app uses, under the Electron data folder
            folder = home / ".config" / "Claude" / "claude-code" / VERSION
            folder.mkdir(parents=True)
            (folder / "claude").symlink_to(CLAUDE.resolve())
            events = sc.stream(params, timeout=60)
            assert events[-1]["type"] == "done" and text_of(events) == "".join(REPLY)
            assert len(fake.with_marker("[[desktop-1]]")) == 1
    finally:
        sc.kill()


def test_a_saved_token_goes_to_the_program_as_its_oauth_token(fake: FakeMessagesApi, home: Path,
                                                              tmp_path: Path) -> None:
    token = "sk-ant-oat01-saved-subscription-token"
    env = offline_env(fake, home, PYTHONPATH=str(ROOT / "tests"),
                      PYTHON_KEYRING_BACKEND="fake_keyrings.memory.Keyring")
    env.pop("ANTHROPIC_API_KEY")  # an API key in the environment would win over the token
    sc = Sidecar(tmp_path, "--claude-path", str(CLAUDE), env=env, unset=["ANTHROPIC_API_KEY"])
    try:
        sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
        sc.call("save_api_key", {"provider": "claude-code", "api_key": token})
        events = sc.stream({"model": "claude-code:haiku", "messages": [{"role": "user", "content": "[[token-1]]"}]},
                           timeout=60)
        assert events[-1]["type"] == "done", events[-1]
        seen = only(fake, "[[token-1]]")
        assert seen.headers.get("authorization") == f"Bearer {token}"
        assert "x-api-key" not in seen.headers
        assert token.encode() not in b"".join(sc.raw_lines)
    finally:
        sc.kill()


def test_two_at_once_and_one_session_folder(sidecar: Sidecar, home: Path) -> None:
    ids = [sidecar.call("llm_stream_text", {"model": "claude-code:haiku", "system": SYSTEM,
                                            "messages": [{"role": "user", "content": f"[[both-{i}]]"}]})["stream_id"]
           for i in range(2)]
    for sid in ids:
        events = sidecar.wait_stream_end(sid, timeout=60)
        assert events[-1]["type"] == "done" and text_of(events) == "".join(REPLY)
    projects = [p.name for p in (home / ".claude" / "projects").iterdir()]
    assert len(projects) == 1, f"every run works in the same folder, so one project folder: {projects}"


def test_both_ids_through_the_proxy(sidecar: Sidecar, fake: FakeMessagesApi) -> None:
    import openai

    started = sidecar.call("start_llm_proxy", {})
    client = openai.OpenAI(base_url=started["url"], api_key=started["token"], max_retries=0, timeout=60)
    listed = {m.id for m in client.models.list()}
    assert {"claude-code:sonnet", "claude-desktop:sonnet"} <= listed
    chunks = client.chat.completions.create(
        model="claude-code:sonnet", stream=True,
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": "via the proxy [[proxy-1]]"}])
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "".join(REPLY)
    seen = only(fake, "[[proxy-1]]")
    assert SYSTEM in system_text(seen.body) and seen.body["tools"] == []


def test_base_url_cannot_be_changed_and_both_ids_are_chat_providers(sidecar: Sidecar) -> None:
    for pid in ("claude-code", "claude-desktop"):
        err = sidecar.request("configure_provider", {"id": pid, "base_url": "http://127.0.0.1:9/"})["error"]
        assert err["data"]["code"] == "invalid_request" and "base_url" in err["message"]
    def limits() -> Any:
        return next(p for p in sidecar.call("list_providers") if p["id"] == "claude-code").get("limits")

    assert limits() == {"max_concurrency": 2}, "each request is a process: two at once by default"
    sidecar.call("configure_provider", {"id": "claude-code", "limits": {"breaker_threshold": 9}})
    assert limits() == {"max_concurrency": 2, "breaker_threshold": 9}, "the default stays under the user's limits"
    sidecar.call("configure_provider", {"id": "claude-code", "limits": None})
    chat = {p["provider"]: p for p in sidecar.call("list_chat_providers")}
    assert {"claude-code", "claude-desktop"} <= set(chat)
    assert chat["claude-code"]["needs_proxy"] is True
    models = {m["id"] for m in sidecar.call("llm_list_available_models", {"provider": "claude-code"})}
    assert {"claude-code:sonnet", "claude-code:opus", "claude-code:haiku"} <= models
    # claude-desktop's program is not there: its catalog models are still listed, nothing fails
    every = {m["id"] for m in sidecar.call("llm_list_available_models", {})}
    assert {"claude-desktop:sonnet", "claude-code:opus"} <= every


# --- helpers -------------------------------------------------------------------------------------


def fake_program(folder: Path, version: str) -> tuple[Path, Path]:
    """A stand-in ``claude`` that prints ``version`` and records any other run in a file."""
    ran = folder / "ran"
    program = folder / "claude"
    program.write_text(f"#!/bin/sh\nif [ \"$1\" = --version ]; then echo '{version} (Claude Code)'; exit 0; fi\n"
                       f"echo \"$@\" > {ran}\nexit 3\n")
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    return program, ran


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()  # after "pid (comm) ": state ppid pgrp ...


def children_of(parent: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields and int(fields[1]) == parent:
                out.append(int(entry.name))
    return out


def alive(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def group_members(pgid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields and int(fields[2]) == pgid and fields[0] != "Z":
                out.append(int(entry.name))
    return out


def test_fixture_index_names_every_recording() -> None:
    folder = ROOT / "tests" / "fixtures" / "claude-code"
    index = (folder / "INDEX.md").read_text()
    for f in folder.glob("*.jsonl"):
        assert f.name in index
        for line in f.read_text().splitlines():
            json.loads(line)
