"""The JSON-RPC layer as a frontend sees it: odd input never kills the process, every
request that carries an id is answered, and each section 4 method answers with its shape.

The read-only tests share one sidecar served in this process over real pipes (tests/inprocess.py: the
same App, server, reader and writer, without a child's start-up); those marked ``ALSO_AS_PROCESS`` run
against the real ``python -m sidecar`` too, and so do the tests of what only a process has (its stdout,
the command line, a restart) (CONTRACT sections 1, 2, 4, 5).
"""

from __future__ import annotations

import itertools
import json
import platform
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
from conftest import ALSO_AS_PROCESS, PROCESS_ONLY
from harness import ROOT, Sidecar, assert_clean, check_stream_invariants, sidecar_env, text_of

VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
USER_HI = [{"role": "user", "content": "hi"}]
_probe_ids = itertools.count(1)


# --- helpers -----------------------------------------------------------------------------------


def started(sc: Sidecar) -> Sidecar:
    sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
    return sc


def req(id_: Any, method: str, params: Any = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "id": id_, "method": method}
    if params is not None:
        msg["params"] = params
    return msg


def line(obj: Any) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def probe(sc: Sidecar) -> dict[str, Any]:
    """A request that must still be answered: the process is alive and serving."""
    pid = f"probe-{next(_probe_ids)}"
    sc.send(req(pid, "get_active_provider"))
    return sc.wait_for(lambda m: m.get("id") == pid and "method" not in m, timeout=20)


def exchange(sc: Sidecar, data: bytes | list[bytes], count: int, *, timeout: float = 20) -> list[dict[str, Any]]:
    """Send raw bytes (pieces with a short pause between them), wait for ``count`` messages, check
    that the process still serves and that nothing else was answered; return those messages."""
    start = len(sc.messages)
    for i, piece in enumerate([data] if isinstance(data, bytes) else data):
        if i:
            time.sleep(0.1)
        sc.send(piece)
    deadline = time.monotonic() + timeout
    while len(sc.messages) < start + count:
        assert sc.proc.poll() is None, f"the sidecar exited ({sc.proc.returncode}): {sc.stderr.decode()[-3000:]}"
        assert time.monotonic() < deadline, f"timed out; got {sc.messages[start:]}"
        time.sleep(0.01)
    got = list(sc.messages[start:start + count])
    first = probe(sc)
    if count == 0:
        time.sleep(0.2)  # an answer that should not exist gets a moment to show up
        second = probe(sc)
        extra = [m for m in sc.messages[start:] if m is not first and m is not second]
    else:
        extra = [m for m in sc.messages[start + count:] if m is not first]
    assert extra == [], f"unexpected extra messages: {extra}"
    return got


def error_of(msg: dict[str, Any], code: int, id_: Any) -> dict[str, Any]:
    assert "result" not in msg, msg
    assert msg.get("jsonrpc") == "2.0" and msg.get("id", "missing") == id_, msg
    assert msg["error"]["code"] == code, msg
    assert isinstance(msg["error"]["message"], str) and msg["error"]["message"], msg
    return msg["error"]




# --- -32700: lines that are not JSON ----------------------------------------------------------

PARSE_ERRORS = {
    "bad_json": b"{bad\n",
    "invalid_utf8": b"\xff\xfe\xfd\n",
    "nul_bytes": b"\x00\x00\n",
    "trailing_garbage": b'{"jsonrpc":"2.0","id":1,"method":"sidecar_info"} xyz\n',
    "deep_nesting_unclosed": b"[" * 100_000 + b"\n",
    "deep_object_nesting": b'{"a":' * 100_000 + b"\n",
}


@pytest.mark.parametrize("data", PARSE_ERRORS.values(), ids=PARSE_ERRORS.keys())
@ALSO_AS_PROCESS
def test_parse_error(sc, data):
    [answer] = exchange(sc, data, 1)
    error_of(answer, -32700, None)


def test_invalid_utf8_inside_a_string_is_a_parse_error(sc):
    [answer] = exchange(sc, b'{"jsonrpc":"2.0","id":1,"method":"sidecar_info","params":{"x":"\xff"}}\n', 1)
    error_of(answer, -32700, None)


def test_invalid_utf8_in_a_method_name_does_not_kill_the_process(data_dir):
    data = b'{"jsonrpc":"2.0","id":1,"method":"\xc3"}\n' + line(req(2, "get_active_provider"))
    done = subprocess.run([sys.executable, "-m", "sidecar"], input=data, capture_output=True,
                          env=sidecar_env(data_dir), cwd=ROOT, timeout=30)
    answers = [m for m in map(json.loads, done.stdout.splitlines()) if "method" not in m]
    assert done.returncode == 0
    assert {"jsonrpc": "2.0", "id": 2, "result": None} in answers
    [error] = [m for m in answers if "error" in m]
    assert error["error"]["code"] in (-32700, -32600, -32601), error


def test_deeply_nested_but_balanced_array(sc):
    """Valid JSON nested too deep for comfort: a parse error or an invalid request, never a crash."""
    [answer] = exchange(sc, b"[" * 100_000 + b"]" * 100_000 + b"\n", 1)
    if isinstance(answer, dict) and answer.get("error", {}).get("code") == -32700:
        error_of(answer, -32700, None)
    else:
        error_of(answer, -32600, None)


def test_half_line_then_newline_is_a_parse_error(sc):
    [answer] = exchange(sc, [b'{"jsonrpc":"2.0","id":1,"meth', b"\n"], 1)
    error_of(answer, -32700, None)


@ALSO_AS_PROCESS
def test_request_split_across_writes_is_one_line(sc):
    [answer] = exchange(sc, [b'{"jsonrpc":"2.0","id":"split","me', b'thod":"get_active_provider"}', b"\n"], 1)
    assert answer == {"jsonrpc": "2.0", "id": "split", "result": None}


@ALSO_AS_PROCESS
def test_line_over_16_mib_is_a_parse_error_and_the_next_request_is_served(sc):
    huge = b'{"jsonrpc":"2.0","id":"huge","method":"sidecar_info","params":{"s":"' + b"a" * (17 << 20) + b'"}}\n'
    answers = exchange(sc, huge + line(req("after", "get_active_provider")), 2, timeout=60)
    [parse_error] = [a for a in answers if a["id"] is None]
    error_of(parse_error, -32700, None)
    assert {"jsonrpc": "2.0", "id": "after", "result": None} in answers


def test_line_just_under_16_mib_is_read(sc):
    big = b'{"jsonrpc":"2.0","id":"big","method":"no_such_method","params":{"s":"' + b"a" * (15 << 20) + b'"}}\n'
    [answer] = exchange(sc, big, 1, timeout=60)
    error_of(answer, -32601, "big")


@ALSO_AS_PROCESS
def test_blank_lines_are_ignored(sc):
    assert exchange(sc, b"\n\n   \n\t\n\r\n", 0) == []


def test_crlf_line_endings_are_accepted(sc):
    [answer] = exchange(sc, b'{"jsonrpc":"2.0","id":"crlf","method":"get_active_provider"}\r\n', 1)
    assert answer == {"jsonrpc": "2.0", "id": "crlf", "result": None}


# --- -32600: JSON that is not a request --------------------------------------------------------

INVALID_REQUESTS = {
    "number": (b"1\n", None),
    "string": (b'"sidecar_info"\n', None),
    "null": (b"null\n", None),
    "true": (b"true\n", None),
    "empty_object": (b"{}\n", None),
    "empty_batch": (b"[]\n", None),
    "wrong_version": (line({"jsonrpc": "1.0", "id": 5, "method": "sidecar_info"}), 5),
    "version_as_number": (line({"jsonrpc": 2.0, "id": 6, "method": "sidecar_info"}), 6),
    "missing_version": (line({"id": 7, "method": "sidecar_info"}), 7),
    "missing_method": (line({"jsonrpc": "2.0", "id": 8}), 8),
    "method_number": (line({"jsonrpc": "2.0", "id": 9, "method": 1}), 9),
    "method_null": (line({"jsonrpc": "2.0", "id": 10, "method": None}), 10),
    "id_true": (line({"jsonrpc": "2.0", "id": True, "method": "sidecar_info"}), None),
    "id_object": (line({"jsonrpc": "2.0", "id": {}, "method": "sidecar_info"}), None),
    "id_array": (line({"jsonrpc": "2.0", "id": [1], "method": "sidecar_info"}), None),
}


@pytest.mark.parametrize(("data", "id_"), INVALID_REQUESTS.values(), ids=INVALID_REQUESTS.keys())
@ALSO_AS_PROCESS
def test_invalid_request(sc, data, id_):
    [answer] = exchange(sc, data, 1)
    assert isinstance(answer, dict), "a single invalid request (even []) gets a single answer, not an array"
    error_of(answer, -32600, id_)


def test_params_that_are_not_structured(sc):
    for n, params in enumerate(["x", 3, True, None]):
        [answer] = exchange(sc, line({"jsonrpc": "2.0", "id": n, "method": "list_providers", "params": params}), 1)
        assert answer["id"] == n and answer["error"]["code"] in (-32600, -32602), answer


@ALSO_AS_PROCESS
def test_request_with_null_id_is_answered(sc):
    """``"id": null`` is a request, not a notification (discouraged by the spec, but answered)."""
    [answer] = exchange(sc, b'{"jsonrpc":"2.0","id":null,"method":"get_active_provider"}\n', 1)
    assert answer == {"jsonrpc": "2.0", "id": None, "result": None}


def test_string_and_number_ids_are_echoed(sc):
    ids = ["abc", "", 0, -7, 2**53, 1.5, "ü"]
    answers = exchange(sc, b"".join(line(req(i, "get_active_provider")) for i in ids), len(ids))
    assert sorted(map(json.dumps, (a["id"] for a in answers))) == sorted(map(json.dumps, ids))
    assert all(a["result"] is None for a in answers)


# --- batches -------------------------------------------------------------------------------------


@ALSO_AS_PROCESS
def test_batch_members_each_get_their_own_answer_in_one_array(sc):
    batch = [
        req(1, "get_active_provider"),
        {"jsonrpc": "2.0", "method": "get_active_provider"},  # a notification: no answer
        {"foo": "boo"},
        req("u", "no_such_method"),
        1,
        req(2, "llm_list_available_models", {"provider": "mock"}),
        req(3, "llm_stream_text", {"model": "mock:echo", "messages": "nope"}),
        {"jsonrpc": "1.0", "id": 4, "method": "sidecar_info"},
    ]
    start = len(sc.raw_lines)
    answers = exchange(sc, line(batch), 7)
    arrays = [json.loads(raw) for raw in sc.raw_lines[start:] if raw.lstrip().startswith(b"[")]
    assert len(arrays) == 1 and len(arrays[0]) == 7, sc.raw_lines[start:]
    by_id: dict[Any, list[dict[str, Any]]] = {}
    for a in answers:
        by_id.setdefault(a["id"], []).append(a)
    assert by_id[1][0]["result"] is None
    assert "mock:echo" in [m["id"] for m in by_id[2][0]["result"]]
    error_of(by_id["u"][0], -32601, "u")
    error_of(by_id[3][0], -32602, 3)
    error_of(by_id[4][0], -32600, 4)
    assert len(by_id[None]) == 2
    for a in by_id[None]:
        error_of(a, -32600, None)


def test_batch_of_one_is_answered_with_an_array(sc):
    start = len(sc.raw_lines)
    [answer] = exchange(sc, line([req(1, "get_active_provider")]), 1)
    assert answer == {"jsonrpc": "2.0", "id": 1, "result": None}
    assert isinstance(json.loads(sc.raw_lines[start]), list)


def test_batch_of_invalid_members(sc):
    answers = exchange(sc, b"[1,2,3]\n", 3)
    for a in answers:
        error_of(a, -32600, None)


def test_all_notification_batch_gets_no_answer(sc):
    batch = [{"jsonrpc": "2.0", "method": "get_active_provider"},
             {"jsonrpc": "2.0", "method": "list_providers"},
             {"jsonrpc": "2.0", "method": "llm_list_available_models", "params": {"provider": 3}}]
    assert exchange(sc, line(batch), 0) == []


# --- notifications -----------------------------------------------------------------------------


@ALSO_AS_PROCESS
def test_notifications_get_no_response(sc):
    data = b"".join(line(n) for n in [
        {"jsonrpc": "2.0", "method": "get_active_provider"},
        {"jsonrpc": "2.0", "method": "list_providers", "params": {}},
        {"jsonrpc": "2.0", "method": "list_providers", "params": {"unexpected": 1}},  # invalid params
        {"jsonrpc": "2.0", "method": "llm_list_available_models", "params": {"provider": "nope"}},  # domain error
    ])
    assert exchange(sc, data, 0) == []


def test_notification_of_an_unknown_method_gets_no_response(sc):
    assert exchange(sc, line({"jsonrpc": "2.0", "method": "no_such_method"}), 0) == []


def test_notification_of_an_unknown_method_in_a_batch_gets_no_response(sc):
    batch = [{"jsonrpc": "2.0", "method": "no_such_method"}, req(1, "get_active_provider")]
    [answer] = exchange(sc, line(batch), 1)
    assert answer == {"jsonrpc": "2.0", "id": 1, "result": None}


# --- -32601 / -32602 -------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["no_such_method", "", "rpc.discover", "LIST_PROVIDERS", "list_providers "])
@ALSO_AS_PROCESS
def test_unknown_method(sc, method):
    [answer] = exchange(sc, line(req(42, method)), 1)
    error_of(answer, -32601, 42)


def _stream(**extra: Any) -> dict[str, Any]:
    return {"model": "mock:echo", "messages": USER_HI, **extra}


INVALID_PARAMS = {
    "max_tokens_as_string": (_stream(max_tokens="100"), "max_tokens"),
    "temperature_as_string": (_stream(temperature="hot"), "temperature"),
    "unknown_field": (_stream(bogus_field=1), "bogus_field"),
    "field_named_ctx": (_stream(ctx=1), "ctx"),
    "messages_not_a_list": ({"model": "mock:echo", "messages": "nope"}, "messages"),
    "messages_missing": ({"model": "mock:echo"}, "messages"),
    "bad_role": ({"model": "mock:echo", "messages": [{"role": "wizard", "content": "hi"}]}, "role"),
    "tool_choice": (_stream(tool_choice="sometimes"), "tool_choice"),
    "stop_not_a_list": (_stream(stop="END"), "stop"),
    "positional": (["mock:echo", USER_HI], None),
}


@pytest.mark.parametrize(("params", "field"), INVALID_PARAMS.values(), ids=INVALID_PARAMS.keys())
@ALSO_AS_PROCESS
def test_invalid_params_names_the_field(sc, params, field):
    [answer] = exchange(sc, line(req(7, "llm_stream_text", params)), 1)
    err = error_of(answer, -32602, 7)
    if field is not None:
        assert field in err["message"], err


def test_invalid_params_for_other_methods(sc):
    cases = [
        ("llm_list_available_models", {"provider": 3}, "provider"),
        ("llm_abort_stream", {}, "stream_id"),
        ("save_api_key", {"provider": "openai"}, "api_key"),
        ("llm_register_custom_provider", {"id": "x", "name": "X", "protocol": "telepathy",
                                          "base_url": "http://127.0.0.1:9/v1"}, "protocol"),
        ("list_providers", {"unexpected": 1}, None),
        ("sidecar_info", [1], None),
    ]
    for n, (method, params, field) in enumerate(cases):
        [answer] = exchange(sc, line(req(n, method, params)), 1)
        err = error_of(answer, -32602, n)
        if field is not None:
            assert field in err["message"], (method, err)


def test_no_stream_starts_after_a_rejected_request(sc):
    [answer] = exchange(sc, line(req(1, "llm_stream_text", _stream(stream_id="rejected", max_tokens="x"))), 1)
    error_of(answer, -32602, 1)
    assert sc.events("rejected") == []


# --- the ready notification and a clean stdout ---------------------------------------------------------


@PROCESS_ONLY
def test_sidecar_ready_is_the_first_line(sc):
    first = json.loads(sc.raw_lines[0])
    assert first == {"jsonrpc": "2.0", "method": "sidecar-ready",
                     "params": {"version": VERSION, "protocol_version": 1, "pid": sc.proc.pid}}


@PROCESS_ONLY
def test_stdout_stays_clean_after_all_kinds_of_garbage(sc):
    garbage = [b"{bad\n", b"\xff\n", b"[" * 100_000 + b"\n", b"[]\n", b"1\n", b"\n",
               line({"jsonrpc": "2.0", "id": True, "method": "x"}), line([1, {"x": 1}])]
    for data in garbage:
        sc.send(data)
    assert probe(sc)["result"] is None
    stream = sc.stream(_stream(stream_id="after-garbage"))
    check_stream_invariants(stream)
    assert text_of(stream) == "hi"
    assert_clean(sc)


# --- section 4 methods: shapes -------------------------------------------------------------------


@ALSO_AS_PROCESS
def test_list_providers(sc):
    providers = sc.call("list_providers")
    ids = [p["id"] for p in providers]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert {"mock", "openai"} <= set(ids)
    for p in providers:
        assert isinstance(p["name"], str) and isinstance(p["base_url"], str) and isinstance(p["protocol"], str)
        assert isinstance(p["is_custom"], bool) and isinstance(p["is_local"], bool), p
        assert isinstance(p["has_api_key"], bool) and p["key_source"] in ("keyring", "env", None), p
        assert p["is_custom"] is False  # a fresh data dir has no custom providers
    by_id = {p["id"]: p for p in providers}
    assert by_id["mock"]["protocol"] == "mock"
    openai = by_id["openai"]
    assert openai["protocol"] == "openai" and openai["base_url"] == "https://api.openai.com/v1"
    assert openai["has_api_key"] is False and openai["key_source"] is None  # null keyring, no env key


def test_list_providers_accepts_empty_params(sc):
    assert sc.call("list_providers", {}) == sc.call("list_providers")


def _check_model(m: dict[str, Any]) -> None:
    assert m["id"] == f"{m['provider']}:{m['id'].split(':', 1)[1]}" and isinstance(m["name"], str), m
    for key in ("context_window", "max_output_tokens"):
        assert key not in m or isinstance(m[key], int), m
    for key in ("supports_tools", "supports_vision", "supports_reasoning"):
        assert key not in m or isinstance(m[key], bool), m


@ALSO_AS_PROCESS
def test_list_available_models(sc):
    models = sc.call("llm_list_available_models")
    for m in models:
        _check_model(m)
    assert "mock:echo" in [m["id"] for m in models]
    providers = {m["provider"] for m in models}
    assert "mock" in providers and providers <= {p["id"] for p in sc.call("list_providers")}

    mock = sc.call("llm_list_available_models", {"provider": "mock"})
    assert mock and {m["provider"] for m in mock} == {"mock"}
    assert "mock:echo" in [m["id"] for m in mock]
    assert sc.call("llm_list_available_models", {}) == models


def test_list_available_models_of_an_unknown_provider(sc):
    resp = sc.request("llm_list_available_models", {"provider": "no-such-provider"})
    err = error_of(resp, -32000, resp["id"])
    assert err["data"]["code"] == "unknown_provider"
    assert err["data"]["retryable"] is False and isinstance(err["data"]["message"], str)


def test_llm_abort_stream_of_an_unknown_stream(sc):
    assert sc.call("llm_abort_stream", {"stream_id": "never-started"}) == {"aborted": False}


@ALSO_AS_PROCESS
def test_complete_chat_with_mock(sc):
    result = sc.call("complete_chat", {"model": "mock:echo", "messages": [{"role": "user", "content": "hello there"}]})
    assert result["content"] == "hello there"
    assert result["parts"] == [{"type": "text", "text": "hello there"}]
    assert result["finish_reason"] == "stop" and result["model"] == "mock:echo"
    assert isinstance(result["usage"]["input_tokens"], int) and isinstance(result["usage"]["output_tokens"], int)


@ALSO_AS_PROCESS
def test_key_methods_with_no_key(sc):
    assert sc.call("get_api_key", {"provider": "openai"})["has_api_key"] is False
    assert sc.call("list_saved_providers") == []
    resp = sc.request("get_api_key", {"provider": "no-such-provider"})
    assert error_of(resp, -32000, resp["id"])["data"]["code"] == "unknown_provider"


def test_sidecar_info(sidecar, data_dir):
    info = sidecar.call("sidecar_info")
    assert info["version"] == VERSION and info["protocol_version"] == 1
    assert info["python"] == platform.python_version()  # the harness runs the sidecar with this interpreter
    assert isinstance(info["keyring_backend"], str) and info["keyring_backend"]
    assert Path(info["data_dir"]) == data_dir


def restart(sc: Sidecar, data_dir: Path) -> Sidecar:
    sc.close_stdin()
    assert sc.wait_exit(10) == 0
    assert_clean(sc, alive=False)
    return started(type(sc)(data_dir))  # the same kind: a process, or served in this process


LOCAL = {"id": "my-local", "name": "My Local", "protocol": "openai", "base_url": "http://127.0.0.1:9/v1",
         "requires_api_key": False, "default_models": ["m1", "m2"]}


def test_custom_provider_register_persist_replace_remove(data_dir):
    sc = started(Sidecar(data_dir))
    try:
        info = sc.call("llm_register_custom_provider", LOCAL)
        assert info["id"] == "my-local" and info["name"] == "My Local" and info["protocol"] == "openai"
        assert info["base_url"] == "http://127.0.0.1:9/v1"
        assert info["is_custom"] is True and info["is_local"] is True
        assert info["has_api_key"] is False and info["key_source"] is None
        ids = [p["id"] for p in sc.call("list_providers")]
        assert "my-local" in ids and ids == sorted(ids)
        models = sc.call("llm_list_available_models", {"provider": "my-local"})
        assert [m["id"] for m in models] == ["my-local:m1", "my-local:m2"]

        sc = restart(sc, data_dir)
        listed = {p["id"]: p for p in sc.call("list_providers")}
        assert listed["my-local"]["name"] == "My Local" and listed["my-local"]["is_custom"] is True

        sc.call("llm_register_custom_provider", {**LOCAL, "name": "Renamed"})  # the same id replaces
        listed_twice = [p for p in sc.call("list_providers") if p["id"] == "my-local"]
        assert [p["name"] for p in listed_twice] == ["Renamed"]

        assert sc.call("llm_remove_custom_provider", {"id": "my-local"}) == {"removed": True}
        assert sc.call("llm_remove_custom_provider", {"id": "my-local"}) == {"removed": False}
        sc = restart(sc, data_dir)
        assert "my-local" not in [p["id"] for p in sc.call("list_providers")]
    finally:
        sc.kill()


@pytest.mark.parametrize("builtin", ["openai", "mock"])
@ALSO_AS_PROCESS
def test_register_refuses_a_builtin_id(sc, builtin):
    resp = sc.request("llm_register_custom_provider", {**LOCAL, "id": builtin})
    err = error_of(resp, -32000, resp["id"])
    assert err["data"]["code"] == "invalid_request"
    by_id = {p["id"]: p for p in sc.call("list_providers")}
    assert by_id[builtin]["is_custom"] is False and by_id[builtin]["name"] != "My Local"


def test_register_refuses_the_offline_protocol(sc):
    resp = sc.request("llm_register_custom_provider", {**LOCAL, "id": "my-mock", "protocol": "mock"})
    assert error_of(resp, -32000, resp["id"])["data"]["code"] == "invalid_request"
    assert "my-mock" not in [p["id"] for p in sc.call("list_providers")]


def test_the_offline_provider_never_reports_a_key(rpc):
    """A key saved for it anyway (the null keychain takes it) is not its: it reaches no service."""
    assert rpc.call("save_api_key", {"provider": "mock", "api_key": "sk-unused-0123456789"})["has_api_key"] is True
    assert rpc.call("save_api_key", {"provider": "groq", "api_key": "gsk-0123456789"})["has_api_key"] is True
    by_id = {p["id"]: p for p in rpc.call("list_providers")}
    assert (by_id["mock"]["has_api_key"], by_id["mock"]["key_source"]) == (False, None)
    assert (by_id["groq"]["has_api_key"], by_id["groq"]["key_source"]) == (True, "keyring")


def test_remove_builtin_or_unknown_provider_removes_nothing(sc):
    assert sc.call("llm_remove_custom_provider", {"id": "unknown-one"}) == {"removed": False}
    resp = sc.request("llm_remove_custom_provider", {"id": "openai"})
    assert resp.get("result") == {"removed": False} or resp["error"]["data"]["code"] == "invalid_request", resp
    assert "openai" in [p["id"] for p in sc.call("list_providers")]


def test_active_provider_persists_and_is_used(rpc, data_dir):
    sc = rpc
    try:
        assert sc.call("get_active_provider") is None
        resp = sc.request("llm_stream_text", {"messages": USER_HI})
        assert error_of(resp, -32000, resp["id"])["data"]["code"] == "invalid_request"  # no model, none active

        info = sc.call("set_active_provider", {"provider": "mock", "model": "echo"})
        assert info["id"] == "mock" and isinstance(info["is_custom"], bool) and "has_api_key" in info
        assert sc.call("get_active_provider") == {"provider": "mock", "model": "echo"}

        sc = restart(sc, data_dir)
        assert sc.call("get_active_provider") == {"provider": "mock", "model": "echo"}

        sc.call("set_active_provider", {"provider": "mock", "model": "mock:echo"})  # provider:model form
        assert sc.call("get_active_provider") == {"provider": "mock", "model": "echo"}

        events = sc.stream({"stream_id": "no-model", "messages": [{"role": "user", "content": "uses the active"}]})
        check_stream_invariants(events)
        assert events[0]["type"] == "start" and events[0]["provider"] == "mock"
        assert events[0]["model"] == "mock:echo"
        assert events[-1]["type"] == "done" and events[-1]["model"] == "mock:echo"
        assert text_of(events) == "uses the active"
    finally:
        sc.kill()


def test_set_active_provider_errors(rpc):
    sc = rpc
    resp = sc.request("set_active_provider", {"provider": "no-such-provider", "model": "x"})
    assert error_of(resp, -32000, resp["id"])["data"]["code"] == "unknown_provider"
    resp = sc.request("set_active_provider", {"provider": "mock"})
    error_of(resp, -32602, resp["id"])
    assert sc.call("get_active_provider") is None


# --- the command line -----------------------------------------------------------------------


def run_cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sidecar", *args], capture_output=True, text=True,
                          env=sidecar_env(data_dir), cwd=ROOT, timeout=30, stdin=subprocess.DEVNULL)


def test_help(data_dir):
    done = run_cli(data_dir, "--help")
    assert done.returncode == 0, done.stderr
    for option in ("--data-dir", "--keyring-service", "--log-level", "--parent-pid", "--drain-timeout"):
        assert option in done.stdout, option


def test_version(data_dir):
    done = run_cli(data_dir, "--version")
    assert done.returncode == 0, done.stderr
    assert VERSION in done.stdout + done.stderr
