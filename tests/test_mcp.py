"""The sidecar as the app's MCP host, end to end: the real sidecar over its pipes running real MCP servers
nobody here wrote (``mcp-server-time`` from PyPI, ``@modelcontextprotocol/server-everything`` from npm, both
installed by the test set-up), and a tool loop against the harness's loopback upstream whose model calls
their tools. ``tests/mcp_recorder.py`` (a small server on the official SDK) is used where a test must know
that a call is under way or that the server heard ``notifications/cancelled``.

Expected values come from outside the sidecar: 12:00 UTC is 21:00 in Tokyo (no DST there), 2 + 40 = 42.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import ROOT, Sidecar, Upstream, check_stream_invariants
from test_loop import Script, oai_text_step, oai_tool_step

EVERYTHING = ROOT / "tests" / "tools" / "node_modules" / ".bin" / "mcp-server-everything"
RECORDER = ROOT / "tests" / "mcp_recorder.py"
DOMAIN_ERROR = -32000
SECRET = "s3cr3t-mcp-token-4f9a1c2e7b"
USER = {"role": "user", "content": "What time is it in Tokyo when it is noon in UTC?"}
APP_TOOLS = [{"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
CONVERT = {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"}

needs_everything = pytest.mark.skipif(not EVERYTHING.exists(), reason="run `npm ci` in tests/tools (scripts/test.sh "
                                      "does) for @modelcontextprotocol/server-everything")


def time_server(server_id: str = "time") -> dict[str, Any]:
    return {"id": server_id, "transport": "stdio", "command": sys.executable,
            "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"]}


def everything_server(server_id: str = "everything", **extra: Any) -> dict[str, Any]:
    return {"id": server_id, "transport": "stdio", "command": str(EVERYTHING), **extra}


def recorder_server(record: Path, server_id: str = "rec") -> dict[str, Any]:
    return {"id": server_id, "transport": "stdio", "command": sys.executable, "args": [str(RECORDER)],
            "env": {"MCP_RECORD_FILE": str(record)}}


def spawn(data_dir: Path, *args: str, keyring: Path | None = None) -> Sidecar:
    env = {"PYTHONPATH": str(ROOT / "tests")}
    if keyring is not None:
        env |= {"PYTHON_KEYRING_BACKEND": "fake_keyrings.file.Keyring", "FAKE_KEYRING_FILE": str(keyring)}
    sc = Sidecar(data_dir, "--log-level", "debug", *args, env=env)
    sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
    return sc


def domain_error(resp: dict[str, Any]) -> tuple[str, str]:
    assert "error" in resp, resp
    assert resp["error"]["code"] == DOMAIN_ERROR, resp
    return resp["error"]["data"]["code"], resp["error"]["message"]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return sys.platform != "linux"


def group_members(pgid: int) -> list[int]:
    """Every live process in process group ``pgid`` (Linux: from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                out.append(int(entry.name))
    return out


def wait_lines(path: Path, want: str, sc: Sidecar, timeout: float = 20) -> list[str]:
    """Wait (on the sidecar's messages as a clock) until ``path`` has a line starting with ``want``."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if any(line.startswith(want) for line in lines):
            return lines
        time.sleep(0.05)
    raise AssertionError(f"{path} never had {want!r}: {lines}\n{sc.stderr.decode(errors='replace')[-2000:]}")


# --- fixtures --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    server.replies = Script()
    yield server
    server.close()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mcp")


@pytest.fixture(scope="module")
def sidecar(upstream: Upstream, home: Path) -> Iterator[Sidecar]:
    """--allow-mcp, a keychain in a file the test can read, an openai-protocol provider on the loopback upstream,
    and the servers added (started on first use)."""
    sc = spawn(home / "data", "--allow-mcp", keyring=home / "keyring.json")
    sc.call("llm_register_custom_provider", {"id": "oai", "name": "O", "protocol": "openai",
                                             "base_url": upstream.base_url, "requires_api_key": False})
    sc.call("mcp_add_server", time_server())
    sc.call("mcp_add_server", recorder_server(home / "record.txt"))
    if EVERYTHING.exists():
        sc.call("mcp_add_server", everything_server())
    yield sc
    sc.close_stdin()
    sc.wait_exit(10)
    assert sc.bad_lines == []


def begin(sc: Sidecar, model: str, **params: Any) -> tuple[str, str]:
    sid = f"mcp-{uuid.uuid4().hex[:10]}"
    params.setdefault("messages", [USER])
    result = sc.call("llm_chat_loop_start", {"model": model, "retry": {"max_retries": 0}, "stream_id": sid,
                                             **params}, timeout=60)
    return result["loop_id"], sid


def wait_event(sc: Sidecar, sid: str, kind: str, timeout: float = 30) -> dict[str, Any]:
    found = sc.wait_for(lambda m: m.get("method") == f"llm-stream-{sid}"
                        and m["params"]["type"] in (kind, "done", "error"), timeout=timeout)
    assert found["params"]["type"] == kind, found
    return found["params"]


def ended(sc: Sidecar, sid: str, timeout: float = 30) -> list[dict[str, Any]]:
    sc.wait_stream_end(sid, timeout=timeout)
    sc.call("sidecar_info")
    events = sc.events(sid)
    check_stream_invariants(events)
    return events


def bodies(upstream: Upstream, model: str) -> list[dict[str, Any]]:
    return [s.body for s in upstream.seen if isinstance(s.body, dict) and s.body.get("model") == model]


def tool_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in body["messages"] if m["role"] == "tool"]


# --- servers: add, list, call ------------------------------------------------------------------------------


def test_time_server_lists_its_tools_and_answers_a_call(sidecar: Sidecar) -> None:
    tools = sidecar.call("mcp_list_tools", {"server": "time"}, timeout=60)
    by_name = {t["name"]: t for t in tools}
    assert set(by_name) == {"get_current_time", "convert_time"}
    assert by_name["convert_time"]["tool_name"] == "time__convert_time"
    assert by_name["convert_time"]["input_schema"]["required"] == ["source_timezone", "time", "target_timezone"]
    result = sidecar.call("mcp_call_tool", {"server": "time", "name": "convert_time", "input": CONVERT})
    assert result["is_error"] is False
    answer = json.loads(result["content"][0]["text"])
    assert answer["target"]["datetime"].split("T")[1].startswith("21:00")
    assert answer["target"]["timezone"] == "Asia/Tokyo"
    [server] = [s for s in sidecar.call("mcp_list_servers") if s["id"] == "time"]
    assert server["status"] == "ready" and server["tool_count"] == 2 and server["server_name"] == "mcp-time"
    assert server["source"] == "settings" and alive(server["pid"])
    statuses = [m["params"]["status"] for m in sidecar.messages
                if m.get("method") == "mcp-status" and m["params"]["id"] == "time"]
    assert statuses[:2] == ["starting", "ready"]


def test_a_servers_stderr_goes_to_the_log_at_debug(sidecar: Sidecar) -> None:
    import time

    sidecar.call("mcp_call_tool", {"server": "rec", "name": "echo", "input": {"text": "x"}}, timeout=60)
    line = b"DEBUG sidecar.mcp: MCP server rec: recorder: serving on stdio"
    deadline = time.monotonic() + 20  # the log line and the answer travel different pipes
    while line not in sidecar.stderr and time.monotonic() < deadline:
        time.sleep(0.05)
    assert line in sidecar.stderr


@needs_everything
def test_everything_server_text_and_image_results(sidecar: Sidecar) -> None:
    tools = sidecar.call("mcp_list_tools", {"server": "everything"}, timeout=60)
    names = {t["name"] for t in tools}
    assert {"echo", "get-sum", "get-tiny-image", "trigger-long-running-operation"} <= names
    assert {t["tool_name"] for t in tools if t["name"] == "get-sum"} == {"everything__get-sum"}
    result = sidecar.call("mcp_call_tool", {"server": "everything", "name": "get-sum", "input": {"a": 2, "b": 40}})
    assert result == {"content": [{"type": "text", "text": "The sum of 2 and 40 is 42."}], "is_error": False}
    image = sidecar.call("mcp_call_tool", {"server": "everything", "name": "get-tiny-image", "input": {}})
    [png] = [c for c in image["content"] if c["type"] == "image"]
    assert png["mimeType"] == "image/png" and png["data"].startswith("iVBORw0KGgo")  # base64 of the PNG magic


def test_unknown_server_and_tool(sidecar: Sidecar) -> None:
    assert domain_error(sidecar.request("mcp_list_tools", {"server": "nope"}))[0] == "not_found"
    code, message = domain_error(sidecar.request("mcp_call_tool", {"server": "time", "name": "nope"}))
    assert code == "not_found" and "nope" in message
    code, _ = domain_error(sidecar.request("llm_chat_loop_start", {
        "model": "oai:any", "messages": [USER], "mcp_servers": ["nope"]}))
    assert code == "not_found"


def test_bad_server_configs_are_refused(sidecar: Sidecar) -> None:
    resp = sidecar.request("mcp_add_server", {"id": "x", "transport": "stdio"})
    assert domain_error(resp)[0] == "invalid_request"
    resp = sidecar.request("mcp_add_server", {"id": "bad id", "transport": "stdio", "command": "x"})
    assert resp["error"]["code"] == -32602
    resp = sidecar.request("mcp_add_server", {"id": "x", "transport": "stdio", "command": "x",
                                              "secret_env": ["TOKEN"]})
    assert domain_error(resp)[0] == "invalid_request"


def test_a_program_that_cannot_start_fails_with_the_reason(sidecar: Sidecar, home: Path) -> None:
    sidecar.call("mcp_add_server", {"id": "missing", "transport": "stdio",
                                    "command": str(home / "no-such-program")})
    code, message = domain_error(sidecar.request("mcp_list_tools", {"server": "missing"}, timeout=60))
    assert code == "upstream_unavailable" and "no-such-program" in message
    [server] = [s for s in sidecar.call("mcp_list_servers") if s["id"] == "missing"]
    assert server["status"] == "failed" and "no-such-program" in server["error"]
    assert sidecar.call("mcp_remove_server", {"id": "missing"}) == {"removed": True}
    assert "missing" not in [s["id"] for s in sidecar.call("mcp_list_servers")]


# --- the tool loop ------------------------------------------------------------------------------------------


def test_loop_runs_the_mcp_tool_and_sends_its_real_result(sidecar: Sidecar, upstream: Upstream) -> None:
    model = "mcp-plain"
    upstream.replies[model] = [oai_tool_step(("call_t1", "time__convert_time", CONVERT)), oai_text_step("21:00.")]
    _, sid = begin(sidecar, f"oai:{model}", mcp_servers=["time"], tools=APP_TOOLS)
    events = ended(sidecar, sid)
    assert events[-1]["type"] == "done", events[-1]
    kinds = [e["type"] for e in events]
    assert "tool_calls_requested" not in kinds and "tool_approval_requested" not in kinds
    [result] = [e for e in events if e["type"] == "tool_result"]
    assert result["call_id"] == "call_t1" and result["server"] == "time" and result["name"] == "convert_time"
    assert result["is_error"] is False and "Asia/Tokyo" in result["preview"]
    first, second = bodies(upstream, model)
    offered = {t["function"]["name"]: t["function"] for t in first["tools"]}
    assert set(offered) == {"get_weather", "time__get_current_time", "time__convert_time"}
    assert offered["time__convert_time"]["parameters"]["required"] == ["source_timezone", "time", "target_timezone"]
    [tool] = tool_messages(second)
    assert tool["tool_call_id"] == "call_t1"
    answer = json.loads(tool["content"])  # the server's own JSON, as it wrote it
    assert answer["target"]["datetime"].split("T")[1].startswith("21:00")


@needs_everything
def test_loop_with_approval_waits_then_runs(sidecar: Sidecar, upstream: Upstream) -> None:
    model = "mcp-approve"
    upstream.replies[model] = [oai_tool_step(("call_s1", "everything__get-sum", {"a": 2, "b": 40})),
                               oai_text_step("42.")]
    loop_id, sid = begin(sidecar, f"oai:{model}", mcp_servers=["everything"], tool_approval="always")
    asked = wait_event(sidecar, sid, "tool_approval_requested")
    assert asked["loop_id"] == loop_id and asked["step"] == 1
    assert asked["calls"] == [{"id": "call_s1", "server": "everything", "name": "get-sum",
                               "arguments": {"a": 2, "b": 40}}]
    state = sidecar.call("llm_get_loop_messages", {"loop_id": loop_id})
    assert state["state"] == "waiting_for_approval" and state["pending_approvals"] == asked["calls"]
    # nothing ran: no result yet, and the upstream saw only the first request
    assert "tool_result" not in [e["type"] for e in sidecar.events(sid)]
    assert len(bodies(upstream, model)) == 1
    resp = sidecar.request("llm_submit_tool_approval", {"loop_id": loop_id, "decisions": []})
    assert domain_error(resp)[0] == "invalid_request"  # every call at once
    assert sidecar.call("llm_submit_tool_approval", {
        "loop_id": loop_id, "decisions": [{"id": "call_s1", "approved": True}]}) == {"accepted": True}
    events = ended(sidecar, sid)
    assert events[-1]["type"] == "done"
    kinds = [e["type"] for e in events]
    assert kinds.index("tool_approval_requested") < kinds.index("tool_result")
    [tool] = tool_messages(bodies(upstream, model)[1])
    assert tool["content"] == "The sum of 2 and 40 is 42."


def test_loop_denial_goes_back_as_an_error_with_the_reason(sidecar: Sidecar, upstream: Upstream) -> None:
    model = "mcp-deny"
    upstream.replies[model] = [oai_tool_step(("call_d1", "time__get_current_time", {"timezone": "UTC"})),
                               oai_text_step("Understood.")]
    loop_id, sid = begin(sidecar, f"oai:{model}", mcp_servers=["time"],
                         tool_approval={"time/convert_time": "never", "time/get_current_time": "always"})
    wait_event(sidecar, sid, "tool_approval_requested")
    sidecar.call("llm_submit_tool_approval", {"loop_id": loop_id, "decisions": [
        {"id": "call_d1", "approved": False, "reason": "not during the meeting"}]})
    events = ended(sidecar, sid)
    [result] = [e for e in events if e["type"] == "tool_result"]
    assert result["is_error"] is True and "not during the meeting" in result["preview"]
    [tool] = tool_messages(bodies(upstream, model)[1])
    assert "denied" in tool["content"] and "not during the meeting" in tool["content"]


@needs_everything
def test_mixed_step_mcp_and_app_calls(sidecar: Sidecar, upstream: Upstream) -> None:
    model = "mcp-mixed"
    upstream.replies[model] = [
        oai_tool_step(("call_m1", "get_weather", {"city": "Paris"}),
                      ("call_m2", "everything__get-sum", {"a": 1, "b": 2})),
        oai_text_step("Done.")]
    loop_id, sid = begin(sidecar, f"oai:{model}", mcp_servers=["everything"], tools=APP_TOOLS)
    requested = wait_event(sidecar, sid, "tool_calls_requested")
    assert requested["calls"] == [{"tool_call_id": "call_m1", "name": "get_weather", "arguments": {"city": "Paris"}}]
    wait_event(sidecar, sid, "tool_result")  # the MCP call ran meanwhile; the step waits for the app's result
    assert len(bodies(upstream, model)) == 1
    sidecar.call("llm_submit_tool_results", {"loop_id": loop_id, "results": [
        {"tool_call_id": "call_m1", "content": "18 °C"}]})
    events = ended(sidecar, sid)
    assert events[-1]["type"] == "done"
    tools = tool_messages(bodies(upstream, model)[1])
    assert [(t["tool_call_id"], t["content"]) for t in tools] == [
        ("call_m1", "18 °C"), ("call_m2", "The sum of 1 and 2 is 3.")]


@needs_everything
def test_images_and_embedded_resources_go_back_in_the_protocols_form(sidecar: Sidecar, upstream: Upstream) -> None:
    """OpenAI's tool messages hold text: the image follows in a user message, as for the app's own results."""
    model = "mcp-media"
    upstream.replies[model] = [
        oai_tool_step(("call_i1", "everything__get-tiny-image", {}),
                      ("call_r1", "everything__get-resource-reference", {"resourceType": "Text", "resourceId": 2})),
        oai_text_step("A logo and a resource.")]
    _, sid = begin(sidecar, f"oai:{model}", mcp_servers=["everything"])
    assert ended(sidecar, sid)[-1]["type"] == "done"
    second = bodies(upstream, model)[1]
    image_tool, resource_tool = tool_messages(second)
    assert image_tool["tool_call_id"] == "call_i1" and resource_tool["tool_call_id"] == "call_r1"
    assert "[resource demo://resource/dynamic/text/2]" in resource_tool["content"]
    assert "Resource 2: This is a plaintext resource" in resource_tool["content"]
    images = [part["image_url"]["url"] for m in second["messages"] if m["role"] == "user"
              and isinstance(m["content"], list) for part in m["content"] if part.get("type") == "image_url"]
    assert len(images) == 1 and images[0].startswith("data:image/png;base64,iVBORw0KGgo")


def test_collision_with_an_app_tool_is_refused(sidecar: Sidecar) -> None:
    resp = sidecar.request("llm_chat_loop_start", {
        "model": "oai:x", "messages": [USER], "mcp_servers": ["time"],
        "tools": [{"name": "time__convert_time", "parameters": {"type": "object"}}]}, timeout=60)
    code, message = domain_error(resp)
    assert code == "invalid_request" and "time__convert_time" in message


# --- faults: a crash, a hang, an abort -----------------------------------------------------------------------


def test_crash_mid_call_fails_the_call_and_the_server_comes_back(sidecar: Sidecar, home: Path) -> None:
    record = home / "record.txt"
    record.unlink(missing_ok=True)
    sidecar.send({"jsonrpc": "2.0", "id": "crash", "method": "mcp_call_tool",
                  "params": {"server": "rec", "name": "wait", "input": {"seconds": 60}}})
    lines = wait_lines(record, "started wait", sidecar)
    pid = int(lines[0].split()[-1])
    [server] = [s for s in sidecar.call("mcp_list_servers") if s["id"] == "rec"]
    assert server["pid"] == pid
    os.kill(pid, signal.SIGKILL)
    answer = sidecar.wait_for(lambda m: m.get("id") == "crash", timeout=20)
    code, message = domain_error(answer)
    assert code == "upstream_unavailable" and "ended during the call" in message
    back = sidecar.wait_for(lambda m: m.get("method") == "mcp-status" and m["params"]["id"] == "rec"
                            and m["params"]["status"] == "ready" and m["params"]["restarts"] == 1, timeout=30)
    assert back["params"]["pid"] != pid
    assert sidecar.call("mcp_call_tool", {"server": "rec", "name": "echo", "input": {"text": "again"}})[
        "content"] == [{"type": "text", "text": "again"}]


@needs_everything
def test_a_hanging_call_times_out(sidecar: Sidecar) -> None:
    resp = sidecar.request("mcp_call_tool", {"server": "everything", "name": "trigger-long-running-operation",
                                             "input": {"duration": 60, "steps": 2}, "timeout_ms": 500}, timeout=30)
    code, message = domain_error(resp)
    assert code == "timeout" and "500 ms" in message
    # the server is still usable
    assert sidecar.call("mcp_call_tool", {"server": "everything", "name": "echo", "input": {"message": "hi"}})[
        "is_error"] is False


def test_loop_call_timeout_goes_back_to_the_model(sidecar: Sidecar, upstream: Upstream, home: Path) -> None:
    model = "mcp-hang"
    record = home / "record.txt"
    record.unlink(missing_ok=True)
    upstream.replies[model] = [oai_tool_step(("call_h1", "rec__wait", {"seconds": 60})), oai_text_step("Too slow.")]
    _, sid = begin(sidecar, f"oai:{model}", mcp_servers=["rec"], mcp_call_timeout_ms=300)
    events = ended(sidecar, sid)
    assert events[-1]["type"] == "done"
    [result] = [e for e in events if e["type"] == "tool_result"]
    assert result["is_error"] is True and "300 ms" in result["preview"]
    [tool] = tool_messages(bodies(upstream, model)[1])
    assert "300 ms" in tool["content"]
    wait_lines(record, "cancelled wait", sidecar)  # the timed-out call was cancelled on the server too


def test_abort_during_a_call_cancels_it_on_the_server(sidecar: Sidecar, upstream: Upstream, home: Path) -> None:
    model = "mcp-abort"
    record = home / "record.txt"
    record.unlink(missing_ok=True)
    upstream.replies[model] = [oai_tool_step(("call_a1", "rec__wait", {"seconds": 60})), oai_text_step("never")]
    _, sid = begin(sidecar, f"oai:{model}", mcp_servers=["rec"])
    wait_lines(record, "started wait", sidecar)
    assert sidecar.call("llm_abort_stream", {"stream_id": sid}) == {"aborted": True}
    events = ended(sidecar, sid)
    assert events[-1]["type"] == "error" and events[-1]["error"]["code"] == "cancelled"
    lines = wait_lines(record, "cancelled wait", sidecar)
    assert "finished wait" not in lines
    assert len(bodies(upstream, model)) == 1


# --- security: who may configure, and secrets -----------------------------------------------------------------


def test_without_allow_mcp_adding_and_removing_are_refused(tmp_path: Path) -> None:
    sc = spawn(tmp_path / "data")
    try:
        code, message = domain_error(sc.request("mcp_add_server", time_server()))
        assert code == "permission_denied" and "--allow-mcp" in message
        code, _ = domain_error(sc.request("mcp_remove_server", {"id": "time"}))
        assert code == "permission_denied"
        assert sc.call("mcp_list_servers") == []
        assert not (tmp_path / "data" / "settings.json").exists() or "mcp_servers" not in json.loads(
            (tmp_path / "data" / "settings.json").read_text()) or json.loads(
            (tmp_path / "data" / "settings.json").read_text())["mcp_servers"] == []
    finally:
        sc.kill()


def test_servers_declared_by_the_app_are_usable_not_changeable(tmp_path: Path) -> None:
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"time": {
        "command": sys.executable, "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"],
        "env": {"DECLARED_TOKEN": SECRET}}}}))
    sc = spawn(tmp_path / "data", "--mcp-config", str(config), "--allow-mcp")
    try:
        [server] = sc.call("mcp_list_servers")
        assert server["id"] == "time" and server["source"] == "config" and server["status"] == "stopped"
        assert server["env_names"] == ["DECLARED_TOKEN"]
        result = sc.call("mcp_call_tool", {"server": "time", "name": "convert_time", "input": CONVERT}, timeout=60)
        assert "21:00" in result["content"][0]["text"]
        code, message = domain_error(sc.request("mcp_add_server", time_server()))
        assert code == "invalid_request" and "--mcp-config" in message
        assert domain_error(sc.request("mcp_remove_server", {"id": "time"}))[0] == "invalid_request"
        sc.close_stdin()
        sc.wait_exit(10)
        assert SECRET.encode() not in b"".join(sc.raw_lines) and SECRET.encode() not in sc.stderr
    finally:
        sc.kill()


def test_a_bad_config_file_stops_the_start(tmp_path: Path) -> None:
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"t": {"args": ["x"]}}}))
    proc = subprocess.run([sys.executable, "-m", "sidecar", "--mcp-config", str(config)], cwd=ROOT,
                          capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2
    assert b"--mcp-config" in proc.stderr and b"command" in proc.stderr


@needs_everything
def test_secret_env_goes_to_the_keychain_and_the_server_only(sidecar: Sidecar, home: Path) -> None:
    sidecar.call("mcp_add_server", everything_server(
        "vault", env={"MY_TOKEN": SECRET, "PLAIN_SETTING": "visible"}, secret_env=["MY_TOKEN"], start=True), timeout=60)
    # the server got it (its get-env tool shows its environment)
    env = sidecar.call("mcp_call_tool", {"server": "vault", "name": "get-env", "input": {}})
    shown = json.loads(env["content"][0]["text"])
    assert shown["MY_TOKEN"] == SECRET and shown["PLAIN_SETTING"] == "visible"
    assert "OPENAI_API_KEY" not in shown  # the sidecar's own environment is not passed on
    # the keychain holds it; the settings do not
    keychain = json.loads((home / "keyring.json").read_text())
    assert keychain["llm-sidecar/mcp:vault:env:MY_TOKEN"] == SECRET
    settings = (home / "data" / "settings.json").read_text()
    assert SECRET not in settings
    [saved] = [s for s in json.loads(settings)["mcp_servers"] if s["id"] == "vault"]
    assert saved["env"] == {"PLAIN_SETTING": "visible"} and saved["secret_env"] == ["MY_TOKEN"]
    # nor the list, the status notifications or the log
    listed = json.dumps(sidecar.call("mcp_list_servers"))
    assert SECRET not in listed and "MY_TOKEN" in listed
    statuses = json.dumps([m for m in sidecar.messages if m.get("method") == "mcp-status"])
    assert SECRET not in statuses
    assert SECRET.encode() not in sidecar.stderr
    assert sidecar.call("mcp_remove_server", {"id": "vault"}) == {"removed": True}
    assert "llm-sidecar/mcp:vault:env:MY_TOKEN" not in json.loads((home / "keyring.json").read_text())


# --- no server outlives the sidecar ------------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
@pytest.mark.parametrize("end", ["stdin", "sigterm"])
def test_no_server_process_is_left_after_the_sidecar_ends(tmp_path: Path, end: str) -> None:
    """Both real servers and a launcher (``sh -c``) that leaves a child of its own: after the sidecar's stdin
    closes (or it gets SIGTERM), not one process of their groups is left."""
    sc = spawn(tmp_path / "data", "--allow-mcp")
    sc.call("mcp_add_server", time_server(), timeout=60)
    sc.call("mcp_add_server", {"id": "launcher", "transport": "stdio", "command": "sh", "args": [
        "-c", f"sleep 600 & exec {sys.executable} -m mcp_server_time --local-timezone UTC"]}, timeout=60)
    ids = ["time", "launcher"]
    if EVERYTHING.exists():
        sc.call("mcp_add_server", everything_server(), timeout=60)
        ids.append("everything")
    sc.call("mcp_list_tools", {}, timeout=60)
    servers = {s["id"]: s for s in sc.call("mcp_list_servers")}
    assert all(servers[i]["status"] == "ready" for i in ids), servers
    groups = {i: servers[i]["pid"] for i in ids}
    members = {pid for pgid in groups.values() for pid in group_members(pgid)}
    assert len(group_members(groups["launcher"])) >= 2  # the server and its sleep
    assert all(alive(pid) for pid in members)
    if end == "stdin":
        sc.close_stdin()
    else:
        sc.proc.send_signal(signal.SIGTERM)
    assert sc.wait_exit(10) == 0
    left = [pid for pid in members if alive(pid)] + [p for g in groups.values() for p in group_members(g)]
    assert left == [], f"MCP server processes outlived the sidecar: {left}"


# --- a tool list that changes; a Streamable HTTP server ------------------------------------------------------------


def test_a_changed_tool_list_is_read_again(sidecar: Sidecar) -> None:
    before = {t["name"] for t in sidecar.call("mcp_list_tools", {"server": "rec"}, timeout=60)}
    assert "grown" not in before
    sidecar.call("mcp_call_tool", {"server": "rec", "name": "grow", "input": {}})
    sidecar.wait_for(lambda m: m.get("method") == "mcp-status" and m["params"]["id"] == "rec"
                     and m["params"].get("tool_count") == len(before) + 1, timeout=30)
    after = {t["name"] for t in sidecar.call("mcp_list_tools", {"server": "rec"})}
    assert after == before | {"grown"}
    assert sidecar.call("mcp_call_tool", {"server": "rec", "name": "grown", "input": {}})["content"] == [
        {"type": "text", "text": "grown"}]


def test_streamable_http_server_with_a_secret_header(sidecar: Sidecar, home: Path) -> None:
    record = home / "http-record.txt"
    server = subprocess.Popen([sys.executable, str(RECORDER), "--http"], env={**os.environ, "MCP_RECORD_FILE":
                              str(record)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port = int(wait_lines(record, "listening", sidecar)[0].split()[1])
        token = "http-" + SECRET
        info = sidecar.call("mcp_add_server", {
            "id": "remote", "transport": "http", "url": f"http://127.0.0.1:{port}/mcp",
            "headers": {"x-api-token": token}, "secret_headers": ["x-api-token"], "start": True}, timeout=60)
        assert info["status"] == "ready" and info["header_names"] == ["x-api-token"] and "pid" not in info
        result = sidecar.call("mcp_call_tool", {"server": "remote", "name": "echo", "input": {"text": "over http"}})
        assert result["content"] == [{"type": "text", "text": "over http"}]
        assert f"token {token}" in record.read_text().splitlines()  # the keychain's value reached the server
        assert token not in (home / "data" / "settings.json").read_text()
        assert token not in json.dumps(sidecar.call("mcp_list_servers"))
        assert token.encode() not in sidecar.stderr
        assert sidecar.call("mcp_remove_server", {"id": "remote"}) == {"removed": True}
    finally:
        server.terminate()
        server.wait(10)
