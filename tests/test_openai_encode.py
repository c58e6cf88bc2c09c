"""The OpenAI chat-completions request body, headers and HTTP error mapping.

Requests are built from plain dicts (as a frontend sends them) and the expected bodies are written
out by hand in the shape OpenAI's API reference documents.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import msgspec
import pytest

from sidecar.errors import SidecarError
from sidecar.protocols.openai import encode_body, encode_request, map_http_error, models_request
from sidecar.providers import Provider
from sidecar.providers.catalog import BUILTIN
from sidecar.types import StreamTextParams

CATALOG = {p.id: p for p in BUILTIN}
OPENAI = CATALOG["openai"]
GROQ = CATALOG["groq"]
MISTRAL = CATALOG["mistral"]
LMSTUDIO = CATALOG["lmstudio"]

HI = [{"role": "user", "content": "hi"}]
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()


def params(**fields: Any) -> StreamTextParams:
    fields.setdefault("messages", HI)
    return msgspec.convert(fields, StreamTextParams)


def body(provider: Provider = GROQ, model: str = "m-1", **fields: Any) -> dict[str, Any]:
    """The body as it goes on the wire: encoded by encode_request, read back with json."""
    req = encode_request(params(**fields), provider, model, "sk-test")
    assert req.body is not None
    decoded: dict[str, Any] = json.loads(req.body)
    return decoded


# --- the request ------------------------------------------------------------------------------


def test_request_line_and_headers() -> None:
    req = encode_request(params(), OPENAI, "gpt-4o-mini", "sk-test-123")
    assert req.method == "POST"
    assert req.url == "https://api.openai.com/v1/chat/completions"
    assert req.url.endswith("/chat/completions")
    assert req.headers["authorization"] == "Bearer sk-test-123"
    assert req.headers["content-type"] == "application/json"
    assert req.headers["accept"] == "text/event-stream"


@pytest.mark.parametrize(
    "provider_id", ["openai", "groq", "together", "deepseek", "mistral", "openrouter", "xai"]
)
def test_every_builtin_openai_provider_posts_to_chat_completions(provider_id: str) -> None:
    provider = CATALOG[provider_id]
    req = encode_request(params(), provider, "m", "k")
    assert req.url == provider.base_url + "/chat/completions"
    assert req.headers["authorization"] == "Bearer k"


def test_groq_url() -> None:
    assert encode_request(params(), GROQ, "m", "k").url == "https://api.groq.com/openai/v1/chat/completions"


def test_no_key_no_authorization_header() -> None:
    req = encode_request(params(), LMSTUDIO, "qwen", None)
    assert req.url == "http://127.0.0.1:1234/v1/chat/completions"
    assert not any(k.lower() == "authorization" for k in req.headers)


def test_provider_headers_are_sent() -> None:
    custom = Provider(id="custom", name="Custom", protocol="openai", base_url="https://llm.example/v1",
                      headers={"HTTP-Referer": "https://app.example", "X-Title": "App"})
    req = encode_request(params(), custom, "m", "k")
    assert req.headers["HTTP-Referer"] == "https://app.example"
    assert req.headers["X-Title"] == "App"
    assert req.url == "https://llm.example/v1/chat/completions"


def test_minimal_body() -> None:
    assert body(OPENAI, "gpt-4.1") == {
        "model": "gpt-4.1",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_no_stream_options_when_the_provider_rejects_them() -> None:
    assert MISTRAL.stream_usage is False
    b = body(MISTRAL, "mistral-small-latest")
    assert b["stream"] is True
    assert "stream_options" not in b


def test_non_streaming_body_has_no_stream_options() -> None:
    b = encode_body(params(), OPENAI, "gpt-4.1", stream=False)
    assert b["stream"] is False
    assert "stream_options" not in b


def test_models_request() -> None:
    req = models_request(OPENAI, "sk-probe")
    assert (req.method, req.url) == ("GET", "https://api.openai.com/v1/models")
    assert req.headers["authorization"] == "Bearer sk-probe"
    assert req.body is None


# --- messages ---------------------------------------------------------------------------------------


def test_system_param_comes_first() -> None:
    b = body(system="Be brief.", messages=[
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "hi"},
    ])
    assert b["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "hi"},
    ]


def test_user_parts_text_and_images() -> None:
    b = body(messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is in these?"},
        {"type": "image", "media_type": "image/png", "data": PNG},
        {"type": "image", "media_type": "image/jpeg", "url": "https://img.example/cat.jpg"},
    ]}])
    assert b["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG}},
        {"type": "image_url", "image_url": {"url": "https://img.example/cat.jpg"}},
    ]}]


def test_image_without_data_or_url_is_refused() -> None:
    with pytest.raises(SidecarError) as err:
        body(messages=[{"role": "user", "content": [{"type": "image", "media_type": "image/png"}]}])
    assert err.value.info.code == "invalid_request"


def test_user_tool_call_part_is_refused() -> None:
    with pytest.raises(SidecarError) as err:
        body(messages=[{"role": "user", "content": [
            {"type": "tool_call", "id": "c1", "name": "f", "arguments": {}},
        ]}])
    assert err.value.info.code == "invalid_request"
    assert "tool_call" in err.value.info.message


def test_assistant_tool_calls_and_tool_results() -> None:
    b = body(messages=[
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": [
            {"type": "reasoning", "text": "two lookups", "signature": "s"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}},
            {"type": "tool_call", "id": "call_2", "name": "get_weather",
             "arguments": {"city": "Rome", "units": ["c", "f"], "n": 2}},
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C, sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": [
            {"type": "text", "text": "22C, "}, {"type": "text", "text": "cloudy"},
        ], "is_error": False},
    ])
    user, assistant, tool1, tool2 = b["messages"]
    assert user == {"role": "user", "content": "Weather in Paris and Rome?"}
    assert assistant["role"] == "assistant"
    assert assistant["content"] == "Checking."
    calls = assistant["tool_calls"]
    assert [(c["id"], c["type"], c["function"]["name"]) for c in calls] == [
        ("call_1", "function", "get_weather"),
        ("call_2", "function", "get_weather"),
    ]
    assert all(isinstance(c["function"]["arguments"], str) for c in calls), "arguments are a JSON string"
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris"}
    assert json.loads(calls[1]["function"]["arguments"]) == {"city": "Rome", "units": ["c", "f"], "n": 2}
    assert tool1 == {"role": "tool", "tool_call_id": "call_1", "content": "18C, sunny"}
    assert tool2 == {"role": "tool", "tool_call_id": "call_2", "content": "22C, cloudy"}


def test_assistant_with_only_tool_calls_has_null_content() -> None:
    b = body(messages=[
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [{"type": "tool_call", "id": "c", "name": "f", "arguments": {}}]},
    ])
    assistant = b["messages"][1]
    assert assistant["content"] is None
    assert assistant["tool_calls"][0]["function"] == {"name": "f", "arguments": "{}"}


def test_assistant_plain_text() -> None:
    b = body(messages=[*HI, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "again"}])
    assert b["messages"][1] == {"role": "assistant", "content": "hello"}


def test_assistant_without_text_or_calls_is_not_null() -> None:
    # OpenAI refuses "content": null on an assistant message unless it has tool_calls
    b = body(messages=[*HI, {"role": "assistant", "content": [{"type": "reasoning", "text": "hmm"}]},
                       {"role": "user", "content": "well?"}])
    assert b["messages"][1] == {"role": "assistant", "content": ""}


# --- tools and options -----------------------------------------------------------------------------

WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def test_tools() -> None:
    b = body(tools=[
        {"name": "get_weather", "description": "Weather for a city", "parameters": WEATHER_SCHEMA},
        {"name": "now", "parameters": {"type": "object", "properties": {}}},
    ])
    assert b["tools"] == [
        {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                          "parameters": WEATHER_SCHEMA}},
        {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}},
    ]
    assert "tool_choice" not in b


def test_no_tools_key_for_an_empty_list() -> None:
    assert "tools" not in body(tools=[])


@pytest.mark.parametrize("choice", ["auto", "none", "required"])
def test_tool_choice_string(choice: str) -> None:
    b = body(tools=[{"name": "f", "parameters": {"type": "object"}}], tool_choice=choice)
    assert b["tool_choice"] == choice


def test_tool_choice_by_name() -> None:
    tools = [{"name": "get_weather", "parameters": WEATHER_SCHEMA}]
    b = body(tools=tools, tool_choice={"name": "get_weather"})
    assert b["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


def test_sampling_options() -> None:
    b = body(temperature=0.2, top_p=0.9, stop=["\n\n", "END"], seed=42)
    assert (b["temperature"], b["top_p"], b["stop"], b["seed"]) == (0.2, 0.9, ["\n\n", "END"], 42)


def test_unset_options_are_left_out() -> None:
    b = body()
    for key in ("temperature", "top_p", "stop", "seed", "max_tokens", "max_completion_tokens", "tools",
                "tool_choice", "response_format", "reasoning_effort"):
        assert key not in b


def test_max_completion_tokens_for_openai() -> None:
    b = body(OPENAI, "o4-mini", max_tokens=256)
    assert b["max_completion_tokens"] == 256
    assert "max_tokens" not in b


@pytest.mark.parametrize("provider_id", ["groq", "deepseek", "mistral", "openrouter", "xai", "lmstudio"])
def test_max_tokens_elsewhere(provider_id: str) -> None:
    b = body(CATALOG[provider_id], "m", max_tokens=256)
    assert b["max_tokens"] == 256
    assert "max_completion_tokens" not in b


def test_response_format_json_schema() -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    b = body(response_format={"type": "json_schema", "name": "answer", "schema": schema})
    assert b["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "answer", "schema": schema},
    }


def test_response_format_json_schema_without_a_name() -> None:
    b = body(response_format={"type": "json_schema", "schema": {"type": "object"}})
    assert b["response_format"]["type"] == "json_schema"
    assert b["response_format"]["json_schema"]["schema"] == {"type": "object"}
    assert isinstance(b["response_format"]["json_schema"]["name"], str)
    assert b["response_format"]["json_schema"]["name"]


def test_response_format_json_object_and_text() -> None:
    assert body(response_format={"type": "json_object"})["response_format"] == {"type": "json_object"}
    assert "response_format" not in body(response_format={"type": "text"})


def test_reasoning_effort() -> None:
    assert body(OPENAI, "o4-mini", reasoning={"effort": "high"})["reasoning_effort"] == "high"
    assert "reasoning_effort" not in body(reasoning={"budget_tokens": 2048})


def test_extra_body_then_provider_options_are_merged_last() -> None:
    provider = Provider(id="acme", name="Acme", protocol="openai", base_url="https://acme.example/v1",
                        extra_body={"safe_prompt": True, "temperature": 0.9, "top_k": 40})
    b = body(provider, "m", temperature=0.5, provider_options={"top_k": 5, "user": "u-1",
                                                               "stream_options": {"include_usage": False}})
    assert b["safe_prompt"] is True  # from the provider
    assert b["temperature"] == 0.9  # extra_body is applied after the request's own fields
    assert b["top_k"] == 5  # provider_options win over extra_body
    assert b["user"] == "u-1"
    assert b["stream_options"] == {"include_usage": False}  # as-is, even over ours
    assert b["model"] == "m"


def test_custom_provider_from_config_extra_body() -> None:
    from sidecar.types import ProviderConfig

    cfg = msgspec.convert({"id": "loop", "name": "Loop", "protocol": "openai",
                           "base_url": "http://127.0.0.1:9999/v1/", "requires_api_key": False,
                           "extra_body": {"keep_alive": "5m"}}, ProviderConfig)
    provider = Provider.from_config(cfg)
    req = encode_request(params(), provider, "llama", None)
    assert req.url == "http://127.0.0.1:9999/v1/chat/completions"
    assert req.body is not None
    assert json.loads(req.body)["keep_alive"] == "5m"


# --- HTTP errors ---------------------------------------------------------------------------------


def err_body(message: str, type_: str | None = None, code: str | None = None,
             param: str | None = None) -> bytes:
    return json.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}}).encode()


@pytest.mark.parametrize(
    ("status", "payload", "code", "retryable"),
    [
        (400, err_body("Invalid value for 'temperature': expected a number.", "invalid_request_error",
                       None, "temperature"), "invalid_request", False),
        (401, err_body("Incorrect API key provided: sk-abc***xyz.", "invalid_request_error",
                       "invalid_api_key"), "authentication_failed", False),
        (403, err_body("Country, region, or territory not supported", "request_forbidden",
                       "unsupported_country_region_territory"), "permission_denied", False),
        (404, err_body("The model `gpt-9` does not exist or you do not have access to it.",
                       "invalid_request_error", "model_not_found"), "unknown_model", False),
        (404, err_body("Invalid URL (POST /v1/chat/completion)", "invalid_request_error"),
         "not_found", False),
        (429, err_body("Rate limit reached for gpt-4o on requests per min (RPM): Limit 500, Used 500.",
                       "requests", "rate_limit_exceeded"), "rate_limited", True),
        (500, err_body("The server had an error while processing your request. Sorry about that!",
                       "server_error"), "upstream_unavailable", True),
        (503, err_body("The engine is currently overloaded, please try again later", "server_error"),
         "upstream_unavailable", True),
    ],
)
def test_map_http_error(status: int, payload: bytes, code: str, retryable: bool) -> None:
    err = map_http_error(status, payload, "openai")
    assert isinstance(err, SidecarError)
    info = err.info
    assert info.code == code
    assert info.retryable is retryable
    assert info.status == status
    assert info.provider == "openai"
    assert json.loads(payload)["error"]["message"] in info.message


def test_context_length_exceeded() -> None:
    payload = err_body("This model's maximum context length is 128000 tokens. However, your messages "
                       "resulted in 130512 tokens. Please reduce the length of the messages.",
                       "invalid_request_error", "context_length_exceeded", "messages")
    info = map_http_error(400, payload, "openai").info
    assert info.code == "context_length_exceeded"
    assert info.retryable is False
    assert info.status == 400


def test_insufficient_quota_is_not_retryable() -> None:
    payload = err_body("You exceeded your current quota, please check your plan and billing details.",
                       "insufficient_quota", "insufficient_quota")
    info = map_http_error(429, payload, "openai").info
    assert info.code == "rate_limited"
    assert info.retryable is False


def test_openrouter_numeric_code_body() -> None:
    payload = json.dumps({"error": {"code": 402, "message": "Insufficient credits"}}).encode()
    info = map_http_error(402, payload, "openrouter").info
    assert info.code == "permission_denied"
    assert info.message == "openrouter: Insufficient credits"


def test_non_json_body() -> None:
    info = map_http_error(502, b"<html><body><h1>502 Bad Gateway</h1></body></html>\n", "groq").info
    assert info.code == "upstream_unavailable"
    assert info.retryable is True
    assert info.status == 502
    assert "502 Bad Gateway" in info.message
    assert info.message.startswith("groq: ")


def test_non_json_400() -> None:
    info = map_http_error(400, b"Bad Request", "loopback").info
    assert (info.code, info.retryable) == ("invalid_request", False)
    assert info.message == "loopback: Bad Request"


def test_empty_body_names_the_status() -> None:
    info = map_http_error(503, b"", "xai").info
    assert info.code == "upstream_unavailable"
    assert "503" in info.message


def test_json_body_without_an_error_object() -> None:
    info = map_http_error(500, b'["unexpected"]', "xai").info
    assert info.code == "upstream_unavailable"
    assert "500" in info.message


def test_long_messages_are_cut() -> None:
    info = map_http_error(400, err_body("x" * 5000, "invalid_request_error"), "openai").info
    assert len(info.message) < 600
