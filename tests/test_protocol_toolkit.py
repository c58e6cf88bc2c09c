"""What the protocols share (``sidecar.protocols.toolkit``, ``http_errors``): the rule by which
``extra_body`` and then ``provider_options`` are merged into every protocol's body, the ``warning``
events for settings a protocol cannot send, the headers, data: URLs and error bodies.

Each protocol is driven through its ``PROTOCOL.encode_request`` (as the engine calls it) and the body
read back with the stdlib ``json``; the expected bodies are written out by hand from each API's shape.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import msgspec
import pytest

from sidecar.errors import SidecarError
from sidecar.protocols import HttpRequest, get_protocol
from sidecar.protocols.http_errors import error_body, stream_error
from sidecar.protocols.toolkit import (
    BEARER,
    KeyHeader,
    image_url,
    json_headers,
    merge,
    parse_data_url,
    unsupported,
)
from sidecar.providers import Provider
from sidecar.types import ImagePart, StreamTextParams, WarningEvent

BASE_URLS = {
    "openai": "http://127.0.0.1:9/v1",
    "anthropic": "http://127.0.0.1:9",
    "gemini": "http://127.0.0.1:9/v1beta",
    "ollama": "http://127.0.0.1:9",
    "cohere": "http://127.0.0.1:9",
}
USER = {"role": "user", "content": "Hi"}
TOOL = {"name": "weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}


def provider(protocol: str, **fields: Any) -> Provider:
    return Provider(id=f"my-{protocol}", name=protocol, protocol=protocol,  # type: ignore[arg-type]
                    base_url=BASE_URLS[protocol], **fields)


def request(protocol: str, prov: Provider | None = None, **fields: Any) -> HttpRequest:
    params = msgspec.convert({"messages": [USER], **fields}, StreamTextParams)
    return get_protocol(protocol).encode_request(params, prov or provider(protocol), "some-model", "sk-test")


def body(protocol: str, prov: Provider | None = None, **fields: Any) -> dict[str, Any]:
    req = request(protocol, prov, **fields)
    assert req.body is not None
    decoded: dict[str, Any] = json.loads(req.body)
    return decoded


# --- the merge rule, as a function ----------------------------------------------------------------


def test_merge_objects_key_by_key_at_every_depth() -> None:
    into = {"a": {"b": {"c": 1, "d": 2}, "e": 3}, "f": 4}
    merge(into, {"a": {"b": {"c": 10, "x": 11}}, "g": 5})
    assert into == {"a": {"b": {"c": 10, "d": 2, "x": 11}, "e": 3}, "f": 4, "g": 5}


def test_merge_anything_else_replaces() -> None:
    into: dict[str, Any] = {"list": [1, 2], "obj": {"k": 1}, "num": 1, "str": "s"}
    merge(into, {"list": [3], "obj": "now a string", "num": {"now": "an object"}, "str": [1]})
    assert into == {"list": [3], "obj": "now a string", "num": {"now": "an object"}, "str": [1]}


def test_merge_null_deletes() -> None:
    into: dict[str, Any] = {"a": 1, "b": {"c": 2, "d": 3}}
    merge(into, {"a": None, "b": {"c": None}, "missing": None})
    assert into == {"b": {"d": 3}}


def test_merge_never_changes_what_it_merges() -> None:
    """A provider's extra_body serves every request: nothing merged over it later may reach it."""
    extra = {"cfg": {"a": 1, "deep": {"x": 1}}}
    kept = copy.deepcopy(extra)
    into: dict[str, Any] = {}
    merge(into, extra)
    merge(into, {"cfg": {"b": 2, "deep": {"y": 2}}})
    assert into == {"cfg": {"a": 1, "b": 2, "deep": {"x": 1, "y": 2}}}
    assert extra == kept


# --- the merge rule in every protocol -------------------------------------------------------------

SCHEMA = {"type": "object", "properties": {"a": {"type": "string"}}}

# (protocol, request fields, provider_options, the nested key, what it holds after the merge)
NESTED = [
    # OpenAI's strict mode, added to the json_schema the sidecar built
    ("openai", {"response_format": {"type": "json_schema", "name": "answer", "schema": SCHEMA}},
     {"response_format": {"json_schema": {"strict": True}}},
     "response_format", {"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA, "strict": True}}),
    ("anthropic", {"reasoning": {"budget_tokens": 2000}, "max_tokens": 8000},
     {"thinking": {"budget_tokens": 3000}},
     "thinking", {"type": "enabled", "budget_tokens": 3000}),
    ("gemini", {"temperature": 0.5},
     {"generationConfig": {"topK": 3}},
     "generationConfig", {"temperature": 0.5, "topK": 3}),
    ("ollama", {"temperature": 0.5, "max_tokens": 100},
     {"options": {"num_ctx": 8192}},
     "options", {"temperature": 0.5, "num_predict": 100, "num_ctx": 8192}),
    ("cohere", {"response_format": {"type": "json_schema", "schema": SCHEMA}},
     {"response_format": {"json_schema": {"required": ["a"]}}},
     "response_format", {"type": "json_object", "json_schema": {**SCHEMA, "required": ["a"]}}),
]


@pytest.mark.parametrize(("protocol", "fields", "options", "key", "merged"), NESTED, ids=[n[0] for n in NESTED])
def test_provider_options_merge_into_a_nested_key(
    protocol: str, fields: dict[str, Any], options: dict[str, Any], key: str, merged: Any
) -> None:
    assert body(protocol, **fields, provider_options=options)[key] == merged


# (protocol, request fields, provider_options with nulls, the nested key, what is left of it)
DELETED = [
    ("openai", {"response_format": {"type": "json_schema", "name": "answer", "schema": SCHEMA}},
     {"response_format": {"json_schema": {"name": None}}},
     "response_format", {"type": "json_schema", "json_schema": {"schema": SCHEMA}}),
    ("anthropic", {"reasoning": {"budget_tokens": 2000}, "max_tokens": 8000},
     {"thinking": {"type": "disabled", "budget_tokens": None}},
     "thinking", {"type": "disabled"}),
    ("gemini", {"temperature": 0.5, "top_p": 0.9},
     {"generationConfig": {"temperature": None}},
     "generationConfig", {"topP": 0.9}),
    ("ollama", {"temperature": 0.5, "seed": 7},
     {"options": {"seed": None}},
     "options", {"temperature": 0.5}),
    ("cohere", {"reasoning": {"budget_tokens": 100}},
     {"thinking": {"token_budget": None}},
     "thinking", {"type": "enabled"}),
]


@pytest.mark.parametrize(("protocol", "fields", "options", "key", "left"), DELETED, ids=[d[0] for d in DELETED])
def test_null_in_provider_options_deletes_a_nested_key(
    protocol: str, fields: dict[str, Any], options: dict[str, Any], key: str, left: Any
) -> None:
    assert body(protocol, **fields, provider_options=options)[key] == left


@pytest.mark.parametrize("protocol", list(BASE_URLS))
def test_null_deletes_a_top_level_key(protocol: str) -> None:
    with_it = body(protocol, temperature=0.5)
    without = body(protocol, temperature=0.5, provider_options={"stream": None, "temperature": None,
                                                                 "generationConfig": None})
    assert "stream" in with_it or "generationConfig" in with_it  # gemini streams by URL, not by a field
    for key in ("stream", "temperature", "generationConfig"):
        assert key not in without


@pytest.mark.parametrize("protocol", list(BASE_URLS))
def test_extra_body_then_provider_options(protocol: str) -> None:
    prov = provider(protocol, extra_body={"custom": {"a": 1, "b": 1}, "flag": "from extra_body"})
    kept = copy.deepcopy(prov.extra_body)
    b = body(protocol, prov, provider_options={"custom": {"b": 2, "c": 2}})
    assert b["custom"] == {"a": 1, "b": 2, "c": 2}
    assert b["flag"] == "from extra_body"
    assert body(protocol, prov, provider_options={"flag": "from the request"})["flag"] == "from the request"
    assert prov.extra_body == kept  # the provider's extra_body is the same for the next request
    assert body(protocol, prov)["custom"] == {"a": 1, "b": 1}


# --- settings a protocol cannot send ----------------------------------------------------------------


def warning(message: str) -> WarningEvent:
    return WarningEvent(code="unsupported_setting", message=message)


DROPPED = [
    ("anthropic", {"seed": 42}, ["anthropic: seed is not supported and was not sent"]),
    ("gemini", {"tools": [TOOL], "parallel_tool_calls": False},
     ["gemini: parallel_tool_calls is not supported and was not sent"]),
    ("cohere", {"tools": [TOOL], "parallel_tool_calls": False},
     ["cohere: parallel_tool_calls is not supported and was not sent"]),
    ("ollama", {"tools": [TOOL], "parallel_tool_calls": True},
     ["ollama: parallel_tool_calls is not supported and was not sent"]),
    ("ollama", {"tools": [TOOL], "tool_choice": "required"},
     ["ollama: tool_choice 'required' is not supported and was not sent"]),
    ("ollama", {"tools": [TOOL], "tool_choice": {"name": "weather"}},
     ["ollama: tool_choice (a named tool) is not supported and was not sent"]),
    ("cohere", {"reasoning": {"effort": "high"}},
     ["cohere: reasoning.effort is not supported and was not sent"]),
    ("ollama", {"reasoning": {"budget_tokens": 2048}},
     ["ollama: reasoning.budget_tokens is not supported and was not sent"]),
    ("openai", {"reasoning": {"budget_tokens": 2048}},
     ["openai: reasoning.budget_tokens is not supported and was not sent"]),
    ("ollama", {"tools": [TOOL], "tool_choice": "required", "parallel_tool_calls": False, "seed": 1},
     ["ollama: tool_choice 'required' is not supported and was not sent",
      "ollama: parallel_tool_calls is not supported and was not sent"]),
]


@pytest.mark.parametrize(("protocol", "fields", "messages"), DROPPED,
                         ids=[f"{d[0]}-{i}" for i, d in enumerate(DROPPED)])
def test_a_dropped_setting_is_a_warning(protocol: str, fields: dict[str, Any], messages: list[str]) -> None:
    assert request(protocol, **fields).warnings == [warning(m) for m in messages]


# everything each protocol sends: no warning
SENT = {
    "openai": {"tools": [TOOL], "parallel_tool_calls": False, "tool_choice": "required", "seed": 1,
               "reasoning": {"effort": "low"}},
    "anthropic": {"tools": [TOOL], "parallel_tool_calls": False, "tool_choice": "required",
                  "reasoning": {"budget_tokens": 2048}, "max_tokens": 4096},
    "gemini": {"tools": [TOOL], "tool_choice": "required", "seed": 1, "reasoning": {"budget_tokens": 2048}},
    "ollama": {"tools": [TOOL], "tool_choice": "none", "seed": 1, "reasoning": {"effort": "low"}},
    "cohere": {"tools": [TOOL], "tool_choice": "required", "seed": 1, "reasoning": {"budget_tokens": 2048}},
}


@pytest.mark.parametrize("protocol", list(BASE_URLS))
def test_no_warning_when_everything_is_sent(protocol: str) -> None:
    common = {"temperature": 0.3, "top_p": 0.9, "stop": ["END"], "response_format": {"type": "json_object"}}
    assert request(protocol, **common, **SENT[protocol]).warnings == []


@pytest.mark.parametrize("protocol", ["gemini", "ollama", "cohere"])
def test_parallel_tool_calls_without_tools_says_nothing(protocol: str) -> None:
    """Without tools the switch means nothing anywhere (OpenAI itself is not sent it then)."""
    assert request(protocol, parallel_tool_calls=False).warnings == []


def test_warning_wire_shape() -> None:
    (w,) = unsupported("anthropic", "seed")
    wire = json.loads(msgspec.json.encode(w))  # seq and stream_id are the engine's to set
    assert {k: wire[k] for k in ("type", "code", "message")} == {
        "type": "warning",
        "code": "unsupported_setting",
        "message": "anthropic: seed is not supported and was not sent",
    }


# --- headers ---------------------------------------------------------------------------------------

KEY_HEADERS = [
    ("openai", "authorization", "Bearer sk-test"),
    ("anthropic", "x-api-key", "sk-test"),
    ("gemini", "x-goog-api-key", "sk-test"),
    ("ollama", "authorization", "Bearer sk-test"),
    ("cohere", "authorization", "Bearer sk-test"),
]


@pytest.mark.parametrize(("protocol", "name", "value"), KEY_HEADERS, ids=[k[0] for k in KEY_HEADERS])
def test_key_header_of_each_protocol(protocol: str, name: str, value: str) -> None:
    prov = provider(protocol, headers={"x-app": "desk"})
    proto = get_protocol(protocol)
    for req in (request(protocol, prov), proto.models_request(prov, "sk-test")):
        assert req.headers[name] == value
        assert req.headers["x-app"] == "desk"
        assert req.headers["content-type"] == "application/json"
        others = {"authorization", "x-api-key", "x-goog-api-key", "api-key"} - {name}
        assert not others & set(req.headers)
    assert name not in proto.models_request(prov, None).headers  # no key, no header


def test_azure_key_header() -> None:
    prov = provider("openai", api_version="2024-10-21")
    assert request("openai", prov).headers["api-key"] == "sk-test"
    assert "authorization" not in request("openai", prov).headers


def test_json_headers() -> None:
    prov = provider("openai", headers={"anthropic-version": "2099-01-01", "x-app": "desk"})
    assert json_headers(prov, "k", "text/event-stream", KeyHeader("x-key"), {"anthropic-version": "2023-06-01"}) == {
        "content-type": "application/json", "accept": "text/event-stream",
        "anthropic-version": "2099-01-01",  # the provider's own headers win over the protocol's fixed ones
        "x-app": "desk", "x-key": "k",
    }
    assert json_headers(prov, "", "application/json", BEARER) == {
        "content-type": "application/json", "accept": "application/json",
        "anthropic-version": "2099-01-01", "x-app": "desk",
    }
    assert json_headers(prov, "k", "application/json")["authorization"] == "Bearer k"


def test_anthropic_version_header() -> None:
    assert request("anthropic").headers["anthropic-version"] == "2023-06-01"


# --- data: URLs ----------------------------------------------------------------------------------


def test_parse_data_url() -> None:
    assert parse_data_url("data:image/png;base64,iVBORw0K") == ("image/png", "iVBORw0K")
    assert parse_data_url("data:image/png;name=a.png;base64,AAAA") == ("image/png", "AAAA")
    assert parse_data_url("data:;base64,AAAA") == ("", "AAAA")
    assert parse_data_url("data:text/plain,hello") is None  # not base64
    assert parse_data_url("https://example.com/a.png") is None


def test_image_url() -> None:
    assert image_url(ImagePart(media_type="image/png", data="AAAA")) == "data:image/png;base64,AAAA"
    assert image_url(ImagePart(media_type="image/png", url="https://x/a.png")) == "https://x/a.png"
    with pytest.raises(SidecarError) as exc:
        image_url(ImagePart(media_type="image/png"))
    assert exc.value.info.code == "invalid_request"


def image_message(url: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": "What is it?"},
                                         {"type": "image", "media_type": "image/jpeg", "url": url}]}


def test_a_data_url_goes_inline_where_the_api_takes_base64() -> None:
    url = "data:image/png;base64,iVBORw0K"
    anthropic = body("anthropic", messages=[image_message(url)])["messages"][0]["content"][1]
    assert anthropic == {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"}}
    gemini = body("gemini", messages=[image_message(url)])["contents"][0]["parts"][1]
    assert gemini == {"inlineData": {"mimeType": "image/png", "data": "iVBORw0K"}}
    ollama = body("ollama", messages=[image_message(url)])["messages"][0]
    assert ollama == {"role": "user", "content": "What is it?", "images": ["iVBORw0K"]}
    # a data: URL naming no media type takes the part's
    gemini = body("gemini", messages=[image_message("data:;base64,AAAA")])["contents"][0]["parts"][1]
    assert gemini == {"inlineData": {"mimeType": "image/jpeg", "data": "AAAA"}}
    openai = body("openai", messages=[image_message(url)])["messages"][0]["content"][1]
    assert openai == {"type": "image_url", "image_url": {"url": url}}


# --- error bodies --------------------------------------------------------------------------------


def test_error_body() -> None:
    assert error_body(b'{"error": {"type": "overloaded_error", "message": "Overloaded"}}') == (
        "overloaded_error", "Overloaded")
    assert error_body(b'{"message": "invalid api token"}') == ("", "invalid api token")
    assert error_body(b'{"error": "model \'x\' not found"}') == ("", "model 'x' not found")
    assert error_body(b"  <html>Bad Gateway</html>\n") == ("", "<html>Bad Gateway</html>")
    assert error_body(b"x" * 300) == ("", "x" * 200)


def test_stream_error() -> None:
    assert stream_error('{"error": {"message": "boom", "code": 500}}') == {"message": "boom", "code": 500}
    assert stream_error('{"message": "boom"}') == {"message": "boom"}
    assert stream_error("not json at all") == {"message": "not json at all"}
    assert stream_error('"just a string"') == {"message": "just a string"}


@pytest.mark.parametrize("protocol", list(BASE_URLS))
def test_an_error_body_that_is_not_json_is_the_message(protocol: str) -> None:
    err = get_protocol(protocol).map_http_error(502, b"<html>Bad Gateway</html>", "prov")
    assert err.info.code == "upstream_unavailable"
    assert err.info.message == "prov: <html>Bad Gateway</html>"
