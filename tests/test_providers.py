"""The catalog, configure_provider (Azure included), live model lists and local discovery, over real pipes:
a sidecar served in this process where the test needs nothing else (the ``sidecar`` fixture below), the real
process where it restarts one or gives it a command line or an environment."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import register_upstream
from harness import Reply, Sidecar, Upstream, check_stream_invariants, sse, text_of

CATALOG = {"openai", "anthropic", "gemini", "mistral", "ollama", "openrouter", "azure-openai", "groq", "together",
           "cohere", "deepseek", "xai", "fireworks", "perplexity", "lmstudio", "llamacpp", "vllm", "mock"}
INFO_FIELDS = {"id", "name", "protocol", "base_url", "is_custom", "is_local", "has_api_key", "key_source",
               "requires_api_key"}
HI = [{"role": "user", "content": "hi"}]


def json_reply(obj: Any, status: int = 200) -> Reply:
    return Reply(status=status, chunks=[json.dumps(obj).encode()], headers={"content-type": "application/json"})


def text_reply(text: str) -> Reply:
    return Reply(chunks=sse([{"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": "stop"}]}]))


@pytest.fixture
def servers() -> Iterator[list[Upstream]]:
    made: list[Upstream] = []
    yield made
    for s in made:
        s.close()


def new_server(servers: list[Upstream], routes: dict[str, Reply]) -> Upstream:
    s = Upstream()
    s.replies.update(routes)
    servers.append(s)
    return s


@pytest.fixture
def sidecar(rpc: Sidecar) -> Sidecar:
    return rpc


def restart(sc: Sidecar, data_dir: Path, **env: str) -> Sidecar:
    sc.kill()
    new = Sidecar(data_dir, env=env or None)
    new.wait_for(lambda m: m.get("method") == "sidecar-ready")
    return new


# --- the catalog ---------------------------------------------------------------------------------


def test_every_catalog_provider_is_listed_with_its_fields(sidecar: Sidecar) -> None:
    providers = sidecar.call("list_providers")
    ids = [p["id"] for p in providers]
    assert set(ids) >= CATALOG and ids == sorted(ids)
    for p in providers:
        assert set(p) >= INFO_FIELDS, p
    by_id = {p["id"]: p for p in providers}
    assert by_id["anthropic"]["protocol"] == "anthropic" and by_id["anthropic"]["base_url"] == "https://api.anthropic.com"
    assert by_id["gemini"]["base_url"] == "https://generativelanguage.googleapis.com/v1beta"
    assert by_id["ollama"]["is_local"] is True and by_id["ollama"]["requires_api_key"] is False
    assert by_id["cohere"]["api_key_env"] == "COHERE_API_KEY"
    models = {m["id"]: m for m in sidecar.call("llm_list_available_models", {"provider": "anthropic"})}
    expected = {"id": "anthropic:claude-sonnet-4-5", "provider": "anthropic", "name": "Claude Sonnet 4.5",
                "context_window": 200000, "max_output_tokens": 64000, "supports_tools": True,
                "supports_vision": True, "supports_reasoning": True}
    assert expected.items() <= models["anthropic:claude-sonnet-4-5"].items()


# --- configure_provider ------------------------------------------------------------------------------


def test_configure_a_builtin_and_it_persists(sidecar: Sidecar, data_dir: Path, upstream: Upstream) -> None:
    upstream.replies["qwen"] = text_reply("from lm studio")
    info = sidecar.call("configure_provider", {"id": "lmstudio", "base_url": upstream.base_url,
                                                "headers": {"X-Team": "blue"}})
    assert info["base_url"] == upstream.base_url and info["headers"] == {"X-Team": "blue"}
    events = sidecar.stream({"model": "lmstudio:qwen", "messages": HI})
    check_stream_invariants(events)
    assert text_of(events) == "from lm studio"
    assert upstream.seen[-1].headers["x-team"] == "blue"

    sc = restart(sidecar, data_dir)
    try:
        lm = {p["id"]: p for p in sc.call("list_providers")}["lmstudio"]
        assert lm["base_url"] == upstream.base_url
        # null puts the catalog default back; untouched fields stay
        info = sc.call("configure_provider", {"id": "lmstudio", "base_url": None})
        assert info["base_url"] == "http://127.0.0.1:1234/v1" and info["headers"] == {"X-Team": "blue"}
        info = sc.call("configure_provider", {"id": "lmstudio", "headers": None})
        assert "headers" not in info
    finally:
        sc.kill()
    assert json.loads((data_dir / "settings.json").read_text())["overrides"] == {}


def test_configure_merges_headers_and_changes_the_key_variable(data_dir: Path, upstream: Upstream) -> None:
    # The app allowed the variable, for the gateway's host (trusted side); the RPC call then may name it.
    sc = Sidecar(data_dir, "--allow-env", "CORP_GATEWAY_KEY=127.0.0.1", env={"CORP_GATEWAY_KEY": "gw-key-123456"})
    sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
    try:
        info = sc.call("configure_provider", {"id": "openrouter", "base_url": upstream.base_url,
                                               "api_key_env": "CORP_GATEWAY_KEY",
                                               "headers": {"HTTP-Referer": "https://example.app"}})
        assert info["headers"] == {"X-Title": "llm-sidecar", "HTTP-Referer": "https://example.app"}
        assert info["has_api_key"] is True and info["key_source"] == "env"
        upstream.replies["openai/gpt-4o-mini"] = text_reply("ok")
        events = sc.stream({"model": "openrouter:openai/gpt-4o-mini", "messages": HI})
        assert events[-1]["type"] == "done"
        seen = upstream.seen[-1].headers
        assert seen["authorization"] == "Bearer gw-key-123456"
        assert seen["http-referer"] == "https://example.app" and seen["x-title"] == "llm-sidecar"
    finally:
        sc.kill()


def test_configure_errors(sidecar: Sidecar, upstream: Upstream) -> None:
    def code(params: dict[str, Any]) -> str:
        resp = sidecar.request("configure_provider", params)
        return resp["error"]["data"]["code"] if resp.get("error", {}).get("code") == -32000 else str(resp)

    assert code({"id": "nope", "base_url": "http://127.0.0.1:1/v1"}) == "unknown_provider"
    assert code({"id": "openai", "base_url": "ftp://x"}) == "invalid_request"
    assert code({"id": "mock", "base_url": "http://127.0.0.1:1"}) == "invalid_request"
    register_upstream(sidecar, upstream, "mine")
    assert code({"id": "mine", "base_url": None}) == "invalid_request"
    info = sidecar.call("configure_provider", {"id": "mine", "headers": {"A": "b"}})
    assert info["is_custom"] is True and info["headers"] == {"A": "b"}


def test_azure_openai_deployment_url_and_api_key_header(data_dir: Path, servers: list[Upstream]) -> None:
    azure = new_server(servers, {})
    path = "/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21"
    azure.replies[path] = text_reply("from azure")
    # The catalog's variable goes to the endpoint the app set at start (an RPC override could not take it there).
    sc = Sidecar(data_dir, "--base-url", f"azure-openai=http://127.0.0.1:{azure.port}/openai",
                 env={"AZURE_OPENAI_API_KEY": "azure-key-abcdef"})
    sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
    try:
        events = sc.stream({"model": "azure-openai:my-gpt4o", "messages": HI})
        assert text_of(events) == "from azure", events
        seen = azure.seen[-1]
        assert seen.path == path
        assert seen.headers["api-key"] == "azure-key-abcdef" and "authorization" not in seen.headers
        assert "model" not in seen.body
    finally:
        sc.kill()


# --- live model lists ----------------------------------------------------------------------------------


def test_live_models_are_merged_with_the_catalog_and_cached(data_dir: Path, servers: list[Upstream]) -> None:
    groq = new_server(servers, {"/v1/models": json_reply({"object": "list", "data": [
        {"id": "llama-3.3-70b-versatile", "owned_by": "Meta", "context_window": 131072},
        {"id": "brand-new-model", "owned_by": "x", "context_window": 65536}]})})
    sc = Sidecar(data_dir, "--base-url", f"groq={groq.base_url}", env={"GROQ_API_KEY": "gsk-test-1234567890"})
    sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
    try:
        models = sc.call("llm_list_available_models", {"provider": "groq"})
        ids = [m["id"] for m in models]
        assert ids[:3] == ["groq:llama-3.3-70b-versatile", "groq:llama-3.1-8b-instant", "groq:openai/gpt-oss-120b"]
        assert ids[3:] == ["groq:brand-new-model"]  # the live one the catalog lacks, after the catalog's
        assert models[3]["context_window"] == 65536
        assert groq.seen[-1].headers["authorization"] == "Bearer gsk-test-1234567890"
        requests = len(groq.seen)
        sc.call("llm_list_available_models", {"provider": "groq"})
        assert len(groq.seen) == requests  # cached
        sc.call("llm_list_available_models", {"provider": "groq", "refresh": True})
        assert len(groq.seen) == requests + 1
    finally:
        sc.kill()


def test_unreachable_provider_still_lists_its_catalog_models(sidecar: Sidecar) -> None:
    sidecar.call("configure_provider", {"id": "lmstudio", "base_url": "http://127.0.0.1:9/v1"})
    models = sidecar.call("llm_list_available_models", {"provider": "lmstudio"})
    assert models == []  # no catalog models for LM Studio, and no failure of the call
    every = sidecar.call("llm_list_available_models", {})
    assert "openai:gpt-4o" in {m["id"] for m in every}  # providers without a key give their catalog


def test_custom_provider_lists_its_live_models(sidecar: Sidecar, upstream: Upstream) -> None:
    upstream.replies["/v1/models"] = json_reply({"data": [{"id": "served-a", "owned_by": "vllm", "max_model_len": 8192},
                                                          {"id": "served-b", "owned_by": "vllm"}]})
    register_upstream(sidecar, upstream, "srv")
    models = sidecar.call("llm_list_available_models", {"provider": "srv"})
    assert models == [{"id": "srv:served-a", "provider": "srv", "name": "served-a", "context_window": 8192},
                      {"id": "srv:served-b", "provider": "srv", "name": "served-b"}]


# --- discovery ------------------------------------------------------------------------------------------


def test_discovery_tells_servers_apart_by_their_answers(sidecar: Sidecar, servers: list[Upstream]) -> None:
    ollama = new_server(servers, {
        "/": Reply(chunks=[b"Ollama is running"], headers={"content-type": "text/plain"}),
        "/api/version": json_reply({"version": "0.12.3"}),
        "/api/tags": json_reply({"models": [{"name": "llama3.2:3b", "model": "llama3.2:3b"},
                                            {"name": "qwen3:8b", "model": "qwen3:8b"}]}),
    })
    llamacpp = new_server(servers, {
        "/v1/models": json_reply({"object": "list", "data": [{"id": "gemma-3-4b.gguf", "owned_by": "llamacpp"}]}),
        "/props": json_reply({"default_generation_settings": {}, "build_info": "b6500-abc"}),
        "/health": json_reply({"status": "ok"}),
    })
    lmstudio = new_server(servers, {
        "/v1/models": json_reply({"data": [{"id": "qwen2.5-7b-instruct", "owned_by": "organization_owner"}]}),
        "/api/v0/models": json_reply({"data": [{"id": "qwen2.5-7b-instruct", "type": "llm", "state": "loaded"}]}),
    })
    vllm = new_server(servers, {
        "/v1/models": json_reply({"data": [{"id": "meta-llama/Llama-3.1-8B", "owned_by": "vllm",
                                            "max_model_len": 8192}]}),
        "/version": json_reply({"version": "0.11.0"}),
    })
    kobold = new_server(servers, {  # imitates Ollama's and OpenAI's routes: must not pass for either
        "/": Reply(chunks=[b"Ollama is running? no, KoboldCpp"], headers={"content-type": "text/plain"}),
        "/api/extra/version": json_reply({"result": "KoboldCpp", "version": "1.98"}),
        "/v1/models": json_reply({"data": [{"id": "koboldcpp/x", "owned_by": "koboldcpp"}]}),
    })
    unrelated = new_server(servers, {"/": Reply(chunks=[b"<html>hello</html>"], headers={"content-type": "text/html"})})
    closed = 9  # discard port: nothing listens there
    ports = [ollama.port, llamacpp.port, lmstudio.port, vllm.port, kobold.port, unrelated.port, closed]
    found = sidecar.call("discover_local_providers", {"ports": ports, "timeout_ms": 3000})
    assert found == [
        {"provider": "ollama", "base_url": f"http://127.0.0.1:{ollama.port}", "models": ["llama3.2:3b", "qwen3:8b"],
         "version": "0.12.3"},
        {"provider": "llamacpp", "base_url": f"http://127.0.0.1:{llamacpp.port}/v1", "models": ["gemma-3-4b.gguf"],
         "version": "b6500-abc"},
        {"provider": "lmstudio", "base_url": f"http://127.0.0.1:{lmstudio.port}/v1",
         "models": ["qwen2.5-7b-instruct"]},
        {"provider": "vllm", "base_url": f"http://127.0.0.1:{vllm.port}/v1", "models": ["meta-llama/Llama-3.1-8B"],
         "version": "0.11.0"},
    ]


def test_discovery_leaves_out_what_does_not_answer_in_time(sidecar: Sidecar, servers: list[Upstream]) -> None:
    stuck = new_server(servers, {"/": Reply(chunks=[b"Ollama is running"], delay=5.0,
                                            headers={"content-type": "text/plain"})})
    ollama = new_server(servers, {"/": Reply(chunks=[b"Ollama is running"], headers={"content-type": "text/plain"}),
                                  "/api/tags": json_reply({"models": []})})
    found = sidecar.call("discover_local_providers", {"ports": [stuck.port, ollama.port], "timeout_ms": 800})
    assert [f["base_url"] for f in found] == [f"http://127.0.0.1:{ollama.port}"]
    assert sidecar.call("discover_local_providers", {"ports": [9], "timeout_ms": 200}) == []


def test_a_connection_test_to_a_base_url_that_is_not_a_url_is_invalid_request(sidecar: Sidecar) -> None:
    """Found by the stdin fuzz: a control character in base_url was an internal error."""
    for bad in ("\u001f", "http://a/\u0000b", "http://exa mple.com/v1", "ftp://x"):
        resp = sidecar.request("test_provider_connection", {"provider": "ollama", "base_url": bad})
        assert resp["error"]["code"] == -32000 and resp["error"]["data"]["code"] == "invalid_request", (bad, resp)
    assert sidecar.call("sidecar_info")["protocol_version"] == 1
