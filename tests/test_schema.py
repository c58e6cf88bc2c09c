"""schema/openrpc.json: fresh, a well-formed OpenRPC document, and true to what the sidecar really sends."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from harness import ROOT, Sidecar, check_stream_invariants
from jsonschema import Draft202012Validator

SCHEMA = json.loads((ROOT / "schema" / "openrpc.json").read_text())
CONTRACT_METHODS = {
    "llm_stream_text", "llm_abort_stream", "complete_chat", "list_providers", "llm_list_available_models",
    "llm_register_custom_provider", "llm_remove_custom_provider", "set_active_provider", "get_active_provider",
    "test_provider_connection", "save_api_key", "get_api_key", "delete_api_key", "list_saved_providers",
    "sidecar_info", "shutdown",
}
EVENT_TYPES = {"start", "text_delta", "reasoning_delta", "reasoning_end", "redacted_reasoning", "tool_call_start",
               "tool_call_delta", "tool_call", "usage", "retry", "fallback", "done", "error", "warning",
               "step_start", "tool_calls_requested", "compacted",  # step_start, tool_calls_requested: tool loops only
               "tool_approval_requested", "tool_result"}  # tool loops with MCP servers only


def test_schema_is_fresh() -> None:
    out = subprocess.run([sys.executable, "-m", "sidecar", "schema", "--check"], cwd=ROOT, capture_output=True)
    assert out.returncode == 0, out.stderr.decode()


def test_schema_check_fails_when_stale(tmp_path: Path) -> None:
    stale = tmp_path / "openrpc.json"
    stale.write_text(json.dumps({**SCHEMA, "methods": SCHEMA["methods"][1:]}, indent=2))
    out = subprocess.run([sys.executable, "-m", "sidecar", "schema", "--check", "-o", str(stale)], cwd=ROOT,
                         capture_output=True)
    assert out.returncode == 1 and b"stale" in out.stderr


def test_openrpc_document_shape() -> None:
    assert SCHEMA["openrpc"].startswith("1.")
    assert {m["name"] for m in SCHEMA["methods"]} >= CONTRACT_METHODS
    for m in SCHEMA["methods"]:
        assert m["paramStructure"] == "by-name" and "result" in m and m["summary"]
        for p in m["params"]:
            assert set(p) == {"name", "required", "schema"}
    names = [n["name"] for n in SCHEMA["x-notifications"]]
    assert names == ["sidecar-ready", "llm-stream-{stream_id}", "oauth-{flow_id}", "mcp-status"]
    components = SCHEMA["components"]["schemas"]
    for schema in components.values():
        Draft202012Validator.check_schema(schema)
    refs = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                refs.add(node["$ref"].rsplit("/", 1)[-1])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(SCHEMA)
    assert refs <= set(components), refs - set(components)
    mapping = components["StreamEvent"]["discriminator"]["mapping"]
    assert set(mapping) == EVENT_TYPES


def _pascal(name: str) -> str:
    """How code generators name a method's type: `sidecar_info` -> `SidecarInfo` (@open-rpc/generator)."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", name) if part)


def test_pascal_names_as_generators_make_them() -> None:
    assert _pascal("sidecar_info") == "SidecarInfo"
    assert _pascal("llm_list_available_models") == "LlmListAvailableModels"
    assert _pascal("llm.chat") == "LlmChat"


def test_no_method_type_name_collides_with_a_component() -> None:
    """A generator declares a type per method named after it; a schema of the same name (its key, or its
    title, which @open-rpc/generator names types by) is a TS2300 there."""
    schemas = SCHEMA["components"]["schemas"]
    components = set(schemas) | {s["title"] for s in schemas.values() if "title" in s}
    clashes = {m["name"]: _pascal(m["name"]) for m in SCHEMA["methods"] if _pascal(m["name"]) in components}
    assert not clashes, f"rename these result/params types (e.g. add a Result suffix): {clashes}"


def test_stream_params_mark_only_messages_required() -> None:
    method = next(m for m in SCHEMA["methods"] if m["name"] == "llm_stream_text")
    assert [p["name"] for p in method["params"] if p["required"]] == ["messages"]
    assert {"stream_id", "model", "tools", "tool_choice", "max_tokens", "fallback_models", "timeouts", "retry",
            "cache", "provider_options", "reasoning"} <= {p["name"] for p in method["params"]}


def test_output_types_mark_always_sent_fields_required() -> None:
    components = SCHEMA["components"]["schemas"]
    assert {"stream_id", "seq", "text", "type"} <= set(components["TextDeltaEvent"]["required"])
    assert {"input_tokens", "output_tokens"} <= set(components["Usage"]["required"])
    assert "signature" not in components["ReasoningEndEvent"].get("required", [])


# --- what the sidecar sends validates against the document ---------------------------------------

def _result_schema(method: str) -> dict[str, Any]:
    return next(m for m in SCHEMA["methods"] if m["name"] == method)["result"]["schema"]


def _resolve(schema: Any) -> Any:
    """Inline component refs so plain jsonschema can validate without a resolver."""
    components = SCHEMA["components"]["schemas"]
    if isinstance(schema, dict):
        if "$ref" in schema and len(schema) == 1:
            return _resolve(components[schema["$ref"].rsplit("/", 1)[-1]])
        return {k: _resolve(v) for k, v in schema.items() if k != "discriminator"}
    if isinstance(schema, list):
        return [_resolve(v) for v in schema]
    return schema


@pytest.fixture
def sc(data_dir: Path) -> Any:
    proc = Sidecar(data_dir)
    proc.wait_for(lambda m: m.get("method") == "sidecar-ready")
    yield proc
    proc.kill()


def test_results_and_events_match_the_schema(sc: Sidecar) -> None:
    for method, params in [
        ("list_providers", None),
        ("llm_list_available_models", {}),
        ("get_active_provider", None),
        ("sidecar_info", None),
        ("list_saved_providers", None),
        ("get_api_key", {"provider": "openai"}),
        ("test_provider_connection", {"provider": "mock"}),
        ("complete_chat", {"model": "mock:echo", "messages": [{"role": "user", "content": "schema"}]}),
        ("set_active_provider", {"provider": "mock", "model": "echo"}),
        ("get_active_provider", None),
    ]:
        result = sc.call(method, params)
        Draft202012Validator(_resolve(_result_schema(method))).validate(result)
    events = sc.stream({"model": "mock:echo", "messages": [{"role": "user", "content": "validate me"}]})
    check_stream_invariants(events)
    event_schema = _resolve({"$ref": "#/components/schemas/StreamEvent"})
    for event in events:
        Draft202012Validator(event_schema).validate(event)
    ready = next(m for m in sc.messages if m.get("method") == "sidecar-ready")
    Draft202012Validator(_resolve({"$ref": "#/components/schemas/SidecarReady"})).validate(ready["params"])
