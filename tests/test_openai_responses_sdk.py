"""A cross-check of the Responses API's wire shapes against the official ``openai`` package.

- Its ``responses.stream`` helper, pointed at the loopback upstream, parses the replayed recordings the other
  tests feed the sidecar: the replay is the wire the package expects, and what it makes of it (text, usage, the
  reasoning item) is what the sidecar reports.
- For one conversation (a system prompt, an image, a reasoning item, a tool call and its output, tools, a JSON
  schema), the body the sidecar sends upstream equals the body the package builds from the same request written
  in its documented types, and the package's own ``ResponseInputParam`` type accepts the sidecar's ``input``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import openai
import pydantic
import pytest
from harness import FIXTURES, Reply, Sidecar, Upstream, fixture_body, fixture_payloads
from openai.types.responses import ResponseInputParam, ToolParam

RECORDINGS = sorted(f"openai-responses/{p.name}" for p in (FIXTURES / "openai-responses").iterdir()
                    if "error" not in p.name and "resume" not in p.name)
"""every recording but the error (its own test) and the resumed background stream, which starts after
``response.created``: the package's stream helper refuses that (the sidecar's decoder takes it)"""
OK_STREAM = [b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","item_id":"msg_1",'
             b'"output_index":0,"content_index":0,"delta":"{\\"city\\":\\"Oslo\\"}"}\n\n',
             b'event: response.completed\ndata: {"type":"response.completed","response":{"id":"resp_1",'
             b'"object":"response","created_at":1,"status":"completed","model":"m","output":[],"parallel_tool_calls":'
             b'true,"tool_choice":"auto","tools":[],"usage":{"input_tokens":1,"output_tokens":1,"total_tokens":2,'
             b'"input_tokens_details":{"cached_tokens":0},"output_tokens_details":{"reasoning_tokens":0}}}}\n\n']
"""a minimal finished stream (hand-written), for the requests whose body is what is checked"""


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.close()


@pytest.fixture
def client(upstream: Upstream) -> openai.OpenAI:
    return openai.OpenAI(base_url=upstream.base_url, api_key="sk-sdk-test", max_retries=0, timeout=15)


def body_of(name: str) -> list[bytes]:
    if name.endswith(".sse"):
        return fixture_body(name)
    return [f"event: {json.loads(p)['type']}\ndata: {p}\n\n".encode() for p in fixture_payloads(name)]


@pytest.mark.parametrize("name", RECORDINGS)
def test_the_package_parses_the_replayed_recordings(client: openai.OpenAI, upstream: Upstream, name: str) -> None:
    model = f"sdk-{uuid.uuid4().hex[:8]}"
    upstream.replies[model] = Reply(chunks=body_of(name))
    with client.responses.stream(model=model, input="hi") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    recorded = [json.loads(p) for p in fixture_payloads(name)]
    assert kinds == [p["type"] for p in recorded]
    completed = next(p["response"] for p in recorded if p["type"] == "response.completed")
    assert final.output_text == "".join(p["text"] for p in recorded if p["type"] == "response.output_text.done")
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens) == (
        completed["usage"]["input_tokens"], completed["usage"]["output_tokens"])
    reasoning = [item for item in final.output if item.type == "reasoning"]
    assert [r.id for r in reasoning] == [it["id"] for it in completed["output"] if it["type"] == "reasoning"]


def test_the_package_reports_the_error_event(client: openai.OpenAI, upstream: Upstream) -> None:
    model = f"sdk-{uuid.uuid4().hex[:8]}"
    upstream.replies[model] = Reply(chunks=body_of("openai-responses/error-insufficient-quota.chunks.txt"))
    with pytest.raises(openai.APIError) as exc, client.responses.stream(model=model, input="hi") as stream:
        for _ in stream:
            pass
    assert "exceeded your current quota" in str(exc.value)


# --- the request ----------------------------------------------------------------------------------------------

REASONING_ITEM: dict[str, Any] = {
    "id": "rs_68c3509b2ee0819eba32735182d275ad0f2d670b80edc507", "type": "reasoning",
    "encrypted_content": "gAAAAABow1CfwMTF6GjgPzWVr8oKbF3qM2qnldMGM_sXMoJ2SSXHrcL4lsIK69rnKn43STNM",
    "summary": [{"type": "summary_text", "text": "**Calculating a large integer**"}]}
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}}


def test_the_sidecar_sends_the_body_the_package_builds(client: openai.OpenAI, upstream: Upstream,
                                                      tmp_path_factory: pytest.TempPathFactory) -> None:
    ours, theirs = f"ours-{uuid.uuid4().hex[:8]}", f"theirs-{uuid.uuid4().hex[:8]}"
    upstream.replies[ours] = upstream.replies[theirs] = Reply(chunks=OK_STREAM)
    sc = Sidecar(tmp_path_factory.mktemp("data"))
    try:
        sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
        sc.call("llm_register_custom_provider", {"id": "resp", "name": "R", "protocol": "openai-responses",
                                                 "base_url": upstream.base_url, "requires_api_key": False})
        sid = f"sdk-{uuid.uuid4().hex[:8]}"
        sc.call("llm_stream_text", {
            "stream_id": sid, "model": f"resp:{ours}", "system": "Be brief.",
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Weather in Oslo?"},
                                             {"type": "image", "media_type": "image/png", "data": "iVBORw0KGgo="}]},
                {"role": "assistant", "content": [
                    {"type": "reasoning", "text": "**Calculating a large integer**",
                     "signature": json.dumps(REASONING_ITEM)},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_call", "id": "call_1", "name": "weather", "arguments": {"city": "Oslo"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "12 C"},
            ],
            "tools": [{"name": "weather", "description": "Weather now", "parameters": SCHEMA}],
            "tool_choice": {"name": "weather"}, "parallel_tool_calls": False, "max_tokens": 300, "top_p": 0.5,
            "reasoning": {"effort": "low"},
            "response_format": {"type": "json_schema", "name": "weather", "schema": SCHEMA},
        })
        events = sc.wait_stream_end(sid)
        assert events[-1]["type"] == "done", events[-1]
    finally:
        sc.kill()

    # the same request, written in the package's documented types
    stream = client.responses.create(
        model=theirs, stream=True, instructions="Be brief.",
        input=[
            {"role": "user", "content": [
                {"type": "input_text", "text": "Weather in Oslo?"},
                {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "auto"}]},
            {"id": REASONING_ITEM["id"], "type": "reasoning", "encrypted_content": REASONING_ITEM["encrypted_content"],
             "summary": [{"type": "summary_text", "text": "**Calculating a large integer**"}]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
            {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": '{"city":"Oslo"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "12 C"},
        ],
        tools=[{"type": "function", "name": "weather", "description": "Weather now", "parameters": SCHEMA,
                "strict": False}],
        tool_choice={"type": "function", "name": "weather"}, parallel_tool_calls=False, max_output_tokens=300,
        top_p=0.5, reasoning={"effort": "low", "summary": "auto"},
        text={"format": {"type": "json_schema", "name": "weather", "schema": SCHEMA, "strict": False}},
        store=False, include=["reasoning.encrypted_content"],
    )
    for _ in stream:
        pass
    [sent] = [s.body for s in upstream.seen if isinstance(s.body, dict) and s.body.get("model") == ours]
    [built] = [s.body for s in upstream.seen if isinstance(s.body, dict) and s.body.get("model") == theirs]
    assert {**sent, "model": "-"} == {**built, "model": "-"}

    # and the package's own types accept what the sidecar sent; but the assistant's text: the API wants
    # ``output_text`` parts there (it refuses ``input_text`` for an assistant), which the package types only as a
    # stored output message (with the id and status that nothing stored has), so that one is checked by hand
    items = [it for it in sent["input"] if it.get("role") != "assistant"]
    assert len(items) == len(sent["input"]) - 1
    pydantic.TypeAdapter(ResponseInputParam).validate_python(items, strict=True)
    assert sent["input"][2] == {"type": "message", "role": "assistant",
                                "content": [{"type": "output_text", "text": "Checking."}]}
    pydantic.TypeAdapter(list[ToolParam]).validate_python(sent["tools"], strict=True)
