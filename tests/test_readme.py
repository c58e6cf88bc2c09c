"""The README's examples, run as written against the real sidecar (offline: ``mock`` models only).

What counts as an example (the README says so where they are):

- **Sessions**: a fenced code block with lines starting ``> ``. Those lines are requests written to
  stdin; every other line of the block is the sidecar's stdout. The block is played in order on a
  fresh sidecar: each documented output line is awaited (a response by its ``id``, a stream event by
  its method and ``seq``) and compared, and a ``> `` line is sent once everything above it came.
  Compared: stream events and results field for field, errors by code. Left aside: timings
  (``latency_ms``, ``ttft_ms``), the ``pid``, and ids the sidecar makes up (``loop_id``: the documented
  one is read from the documented answer and replaced by the real one in later requests).
- **The Methods table**: each row's example ``params``, sent in table order to one sidecar (a memory
  keychain, so key methods work), must answer with a result of the shape the last column gives
  (``{a, b, c?}``, ``[{...}]``, ``X[]``, ``X``, ``... or `null```). A tool loop row waits for its
  ``tool_calls_requested`` as a frontend would, and takes the ``loop_id`` the loop start answered.
  Meilisearch's rows answer ``network_error`` here: nothing listens on the documented 127.0.0.1:7700.
- **Inline requests**: a code span holding a whole JSON-RPC request must be answered with a result.
"""

from __future__ import annotations

import json
import re
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import ROOT, Sidecar

README = (ROOT / "README.md").read_text()
VOLATILE = frozenset({"latency_ms", "ttft_ms", "pid"})
NO_KEYCHAIN = "keyring.backends.fail.Keyring"
GENERATED = ("loop_id",)
"""values the sidecar makes up; a documented one stands for the real one"""


# --- reading the README ---------------------------------------------------------------------------------


def fenced_blocks(text: str) -> list[list[str]]:
    return [m.group(1).splitlines() for m in re.finditer(r"^```[a-z]*\n(.*?)^```$", text, re.M | re.S)]


def sessions() -> list[list[str]]:
    return [b for b in fenced_blocks(README) if any(line.startswith("> {") for line in b)]


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start: end if end != -1 else len(README)]


def table_rows() -> list[tuple[str, Any, str]]:
    """(method, params or None, answers) per row of the Methods table."""
    rows = []
    for line in section("Methods").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        method, params, answers = cells
        rows.append((method.strip("`"), None if params == "none" else json.loads(params.strip("`")), answers))
    return rows


def inline_requests() -> list[dict[str, Any]]:
    outside = re.sub(r"^```.*?^```$", "", README, flags=re.M | re.S)
    found = []
    for span in re.findall(r"`(\{\"jsonrpc\".*?\})`", outside):
        msg = json.loads(span)
        if "method" in msg and "id" in msg:
            found.append(msg)
    return found


def test_the_readme_has_the_examples_this_module_runs() -> None:
    assert len(sessions()) >= 2  # "A real session" and the mock:script tool loop
    assert any("llm_submit_tool_results" in line for b in sessions() for line in b)
    assert len(table_rows()) >= 30 and inline_requests()


# --- sessions ------------------------------------------------------------------------------------------------


def normal(value: Any, ids: dict[str, str]) -> Any:
    """``value`` without volatile fields, and with documented generated ids replaced by the real ones."""
    if isinstance(value, dict):
        return {k: normal(v, ids) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [normal(v, ids) for v in value]
    if isinstance(value, str):
        return ids.get(value, value)
    return value


def learn_ids(documented: Any, actual: Any, ids: dict[str, str]) -> None:
    if isinstance(documented, dict) and isinstance(actual, dict):
        for name in GENERATED:
            if isinstance(documented.get(name), str) and isinstance(actual.get(name), str):
                ids[documented[name]] = actual[name]


def counterpart(sc: Sidecar, doc: dict[str, Any]) -> dict[str, Any]:
    if "id" in doc and "method" not in doc:
        return sc.wait_for(lambda m: m.get("id") == doc["id"] and "method" not in m)
    if doc.get("method", "").startswith("llm-stream-"):
        seq = doc["params"]["seq"]
        return sc.wait_for(lambda m: m.get("method") == doc["method"] and m["params"].get("seq") == seq)
    return sc.wait_for(lambda m: m.get("method") == doc["method"])


@pytest.mark.parametrize("block", sessions(), ids=lambda b: next(ln for ln in b if ln.startswith(">"))[:60])
def test_a_session_plays_as_shown(block: list[str], tmp_path: Path) -> None:
    sc = Sidecar(tmp_path, env={"PYTHON_KEYRING_BACKEND": NO_KEYCHAIN})  # as on the machine the README shows
    ids: dict[str, str] = {}
    try:
        for line in block:
            if line.startswith("> "):
                request = line[2:]
                for documented, real in ids.items():
                    request = request.replace(documented, real)
                sc.send(request.encode() + b"\n")
                continue
            doc = json.loads(line)
            got = counterpart(sc, doc)
            if "error" in doc:
                assert "error" in got, (doc, got)
                assert got["error"]["code"] == doc["error"]["code"], (doc, got)
                assert got["error"].get("data", {}).get("code") == doc["error"].get("data", {}).get("code")
            elif "result" in doc:
                assert "result" in got, (doc, got)
                learn_ids(doc["result"], got["result"], ids)
                assert normal(got["result"], {}) == normal(doc["result"], ids), line
            elif doc["method"] == "sidecar-ready":
                assert set(got["params"]) == set(doc["params"])
            else:
                learn_ids(doc["params"], got["params"], ids)
                assert normal(got["params"], {}) == normal(doc["params"], ids), line
    finally:
        sc.kill()
    assert sc.bad_lines == []


# --- the Methods table -------------------------------------------------------------------------------------

SHAPE = re.compile(r"^`(\{[^`]*\}|\[\{[^`]*\}\])`")
NAMED = re.compile(r"^([A-Z][A-Za-z]+)(\[\])?(?![A-Za-z\[])")


def check_shape(result: Any, answers: str) -> None:
    """The first thing the answers column says: `{a, b?}`, `[{a, b}]`, ModelInfo[], ProviderInfo; or prose."""
    if m := SHAPE.match(answers):
        shape = m.group(1)
        if result is None:
            assert "or `null`" in answers, answers
            return
        inner = shape.strip("[]").strip("{}")
        names = [k.split(":")[0].strip() for k in inner.split(",") if k.strip()]
        required = {n for n in names if not n.endswith("?")}
        allowed = required | {n.rstrip("?") for n in names}
        items = result if shape.startswith("[") else [result]
        assert isinstance(items, list), (result, answers)
        for item in items:
            assert isinstance(item, dict) and required <= set(item) <= allowed, (item, answers)
    elif m := NAMED.match(answers):
        assert isinstance(result, list if m.group(2) else dict), (result, answers)


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def memory_keychain_sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    home = tmp_path_factory.mktemp("data")
    mcp_config = home / "mcp.json"  # the MCP server `time` the loop row uses: mcp-server-time (a dev dependency)
    server = {"command": sys.executable, "args": ["-m", "mcp_server_time"]}
    mcp_config.write_text(json.dumps({"mcpServers": {"time": server}}))
    sc = Sidecar(home / "data", "--allow-mcp", "--mcp-config", str(mcp_config), env={
        "PYTHONPATH": str(ROOT / "tests"), "PYTHON_KEYRING_BACKEND": "fake_keyrings.memory.Keyring"})
    sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
    yield sc
    sc.kill()


def tiny_gguf(path: Path) -> Path:
    """A GGUF header with one tensor and an architecture: all register_local_model reads of a file."""
    def text(s: str) -> bytes:
        return len(s).to_bytes(8, "little") + s.encode()

    path.write_bytes(b"GGUF" + (3).to_bytes(4, "little") + (1).to_bytes(8, "little") + (1).to_bytes(8, "little")
                     + text("general.architecture") + (8).to_bytes(4, "little") + text("llama"))
    return path


def test_every_methods_table_example_runs(memory_keychain_sidecar: Sidecar, tmp_path: Path) -> None:
    sc = memory_keychain_sidecar
    no_meilisearch = not port_open(7700)
    loop: dict[str, Any] = {}
    for method, params, answers in table_rows():
        if isinstance(params, dict) and "loop_id" in params:
            assert loop, f"{method}: a loop_id before any llm_chat_loop_start row"
            params["loop_id"] = loop["loop_id"]
        if method == "llm_submit_tool_results":  # a frontend answers when the loop asks
            events = f"llm-stream-{loop['stream_id']}"
            asked = sc.wait_for(lambda m: m.get("method") == events  # noqa: B023 (called at once)
                                and m["params"]["type"] in ("tool_calls_requested", "done", "error"))["params"]
            assert asked["type"] == "tool_calls_requested", f"the table's loop ended without calling a tool: {asked}"
        if method == "llm_submit_tool_approval":  # the app decides when the loop asks
            events = f"llm-stream-{loop['stream_id']}"
            asked = sc.wait_for(lambda m: m.get("method") == events  # noqa: B023 (called at once)
                                and m["params"]["type"] in ("tool_approval_requested", "done", "error"))["params"]
            assert asked["type"] == "tool_approval_requested", f"the table's loop asked no approval: {asked}"
        if method == "register_local_model":  # the documented path, played by a header of our own
            params["path"] = str(tiny_gguf(tmp_path / "model.gguf"))
        resp = sc.request(method, params)
        if "meilisearch_url" in (params or {}) and (no_meilisearch or "error" in resp):
            if no_meilisearch:  # otherwise something else listens there: its answer is not the README's
                assert resp["error"]["data"]["code"] == "network_error", resp
            continue
        assert "result" in resp, (method, params, resp)
        check_shape(resp["result"], answers)
        if method == "llm_chat_loop_start":
            loop = resp["result"]
    assert method == "shutdown" and sc.wait_exit() == 0
    done = [m for m in sc.messages if m.get("method") == f"llm-stream-{loop['stream_id']}"][-1]["params"]
    assert (done["type"], done["finish_reason"]) == ("done", "stop"), "the table's loop ran both its steps"


def test_the_methods_table_lists_the_schemas_methods_in_order() -> None:
    schema = json.loads((ROOT / "schema" / "openrpc.json").read_text())
    assert [row[0] for row in table_rows()] == [m["name"] for m in schema["methods"]]


def test_the_error_list_is_the_schemas() -> None:
    schema = json.loads((ROOT / "schema" / "openrpc.json").read_text())
    codes = schema["components"]["schemas"]["ErrorInfo"]["properties"]["code"]
    codes = codes.get("enum") or schema["components"]["schemas"][codes["$ref"].rsplit("/", 1)[-1]]["enum"]
    errors = section("The contract in brief").split("**Errors**", 1)[1].split("- **", 1)[0]
    listed = re.findall(r"`([a-z_]+)`", errors.split("one of", 1)[1].split("(and", 1)[0])
    assert sorted(listed) == sorted(codes) and len(set(listed)) == len(listed)


@pytest.mark.parametrize("request_", inline_requests(), ids=lambda r: r["method"])
def test_an_inline_request_runs(request_: dict[str, Any], tmp_path: Path) -> None:
    sc = Sidecar(tmp_path)
    try:
        sc.send(request_)
        resp = sc.wait_for(lambda m: m.get("id") == request_["id"] and "method" not in m)
        assert "result" in resp, resp
    finally:
        sc.kill()
