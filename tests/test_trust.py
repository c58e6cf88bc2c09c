"""The trust boundary: RPC params (a compromised webview) can't send a key anywhere the app didn't allow.

A second loopback address, 127.0.0.2, stands in for "another host": it must receive no key, and for the
egress paths that would carry one, no connection at all. Keys still reach the host they belong to.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import ROOT, Reply, Sidecar, Upstream, sse
from test_meilisearch import MASTER, FakeMeilisearch

TESTS = str(ROOT / "tests")
SAVED_KEY = "sk-saved-7Hq2Lm9XzVb4Rt6Ny8Pk3Wd5"
OPENAI_ENV_KEY = "sk-envkey-Jc4Gt8Qm2Zx6Bv9Lp3Rw7Hn5"
GITHUB_TOKEN = "ghp_NotReal0123456789abcdefGHIJKLMNOPqr"
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def other_host() -> Iterator[Upstream]:
    """A server on 127.0.0.2 that records every connection: another host, as far as the sidecar can tell."""
    try:
        server = Upstream(host="127.0.0.2")
    except OSError as exc:  # pragma: no cover - Linux routes all of 127/8 to lo
        pytest.skip(f"cannot listen on 127.0.0.2: {exc}")
    yield server
    server.close()


def spawn(data_dir: Path, *args: str, backend: str = "fake_keyrings.memory.Keyring", **env: str) -> Sidecar:
    sc = Sidecar(data_dir, *args, env={"PYTHONPATH": TESTS, "PYTHON_KEYRING_BACKEND": backend, **env})
    sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
    return sc


def domain_error(resp: dict[str, Any]) -> dict[str, Any]:
    assert resp.get("error", {}).get("code") == -32000, resp
    return {**resp["error"]["data"], "message": resp["error"]["message"]}


def text_reply(text: str) -> Reply:
    return Reply(chunks=sse([{"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": "stop"}]}]))


def models_reply() -> Reply:
    return Reply(chunks=[b'{"object":"list","data":[{"id":"m","object":"model"}]}'],
                 headers={"content-type": "application/json"})


def assert_never_reached(server: Upstream) -> None:
    assert server.connections == 0 and server.seen == [], [s.headers for s in server.seen]


def assert_no_leak(sc: Sidecar, *secrets: str) -> None:
    out = b"".join(sc.raw_lines).decode() + sc.stderr.decode(errors="replace")
    for secret in secrets:
        for i in range(len(secret) - 5):
            assert secret[i:i + 6] not in out, f"a part of a secret leaked: {secret[i:i + 6]!r}"


def stream_messages(sc: Sidecar) -> int:
    return len([m for m in sc.messages if str(m.get("method", "")).startswith("llm-stream-")])


def custom(sc: Sidecar, pid: str, base_url: str, **extra: Any) -> None:
    sc.call("llm_register_custom_provider", {"id": pid, "name": pid, "protocol": "openai", "base_url": base_url,
                                             "requires_api_key": True, **extra})


# --- a saved key is bound to the host it was saved for -------------------------------------------------------


def test_saved_key_goes_only_to_its_host(data_dir: Path, upstream: Upstream, other_host: Upstream) -> None:
    sc = spawn(data_dir)
    try:
        custom(sc, "gw", upstream.base_url)
        sc.call("save_api_key", {"provider": "gw", "api_key": SAVED_KEY})
        upstream.replies["m"] = text_reply("ok")
        upstream.replies["/v1/models"] = models_reply()
        # the host it was saved for gets it
        assert sc.stream({"model": "gw:m", "messages": HI})[-1]["type"] == "done"
        assert upstream.seen[-1].headers["authorization"] == f"Bearer {SAVED_KEY}"
        assert sc.call("test_provider_connection", {"provider": "gw"})["ok"] is True

        # 1. test_provider_connection with a base_url of the caller's choosing
        result = sc.call("test_provider_connection", {"provider": "gw", "base_url": other_host.base_url})
        assert result["ok"] is False and result["error"]["code"] == "key_host_mismatch"
        assert "127.0.0.1" in result["error"]["message"] and "127.0.0.2" in result["error"]["message"]
        assert "save the key again" in result["error"]["message"]

        # 2. configure_provider moves the provider: requests, model lists and tests refuse before the network
        sc.call("configure_provider", {"id": "gw", "base_url": other_host.base_url})
        before = stream_messages(sc)
        resp = sc.request("llm_stream_text", {"model": "gw:m", "messages": HI})
        err = domain_error(resp)
        assert err["code"] == "key_host_mismatch" and err["provider"] == "gw" and err["retryable"] is False
        sc.call("sidecar_info")
        assert stream_messages(sc) == before, "the refusal is the RPC error, with no events"
        assert domain_error(sc.request("complete_chat", {"model": "gw:m", "messages": HI}))["code"] == \
            "key_host_mismatch"
        sc.call("llm_list_available_models", {"provider": "gw", "refresh": True})
        assert sc.call("test_provider_connection", {"provider": "gw"})["error"]["code"] == "key_host_mismatch"
        assert_never_reached(other_host)

        # the fix the message names: save the key again for the new address
        other_host.replies["m"] = text_reply("moved")
        sc.call("save_api_key", {"provider": "gw", "api_key": SAVED_KEY})
        assert sc.stream({"model": "gw:m", "messages": HI})[-1]["type"] == "done"
        assert other_host.seen[-1].headers["authorization"] == f"Bearer {SAVED_KEY}"
        # ... and now the old host is "another host"
        seen_before = len(upstream.seen)
        sc.call("configure_provider", {"id": "gw", "base_url": upstream.base_url})
        assert domain_error(sc.request("llm_stream_text", {"model": "gw:m", "messages": HI}))["code"] == \
            "key_host_mismatch"
        assert len(upstream.seen) == seen_before
        assert_no_leak(sc, SAVED_KEY)
    finally:
        sc.kill()


def test_a_key_the_caller_gives_may_go_where_the_caller_says(data_dir: Path, other_host: Upstream) -> None:
    """test_provider_connection's own api_key is the caller's: it is no escalation to send it where asked."""
    sc = spawn(data_dir)
    try:
        other_host.replies["/v1/models"] = models_reply()
        result = sc.call("test_provider_connection", {"provider": "openai", "api_key": "sk-callers-own-key-123456",
                                                      "base_url": other_host.base_url})
        assert result["ok"] is True
        assert other_host.seen[-1].headers["authorization"] == "Bearer sk-callers-own-key-123456"
    finally:
        sc.kill()


def test_a_redirect_is_never_followed_with_a_key(data_dir: Path, upstream: Upstream, other_host: Upstream) -> None:
    sc = spawn(data_dir)
    try:
        custom(sc, "rd", upstream.base_url)
        sc.call("save_api_key", {"provider": "rd", "api_key": SAVED_KEY})
        away = {"location": f"{other_host.base_url}/chat/completions", "content-type": "application/json"}
        upstream.replies["m"] = Reply(status=307, chunks=[b"{}"], headers=away)
        upstream.replies["/v1/models"] = Reply(status=302, chunks=[b"{}"], headers=away)
        events = sc.stream({"model": "rd:m", "messages": HI, "retry": {"max_retries": 0}})
        assert events[-1]["type"] == "error"
        sc.call("llm_list_available_models", {"provider": "rd", "refresh": True})
        sc.call("test_provider_connection", {"provider": "rd"})
        assert_never_reached(other_host)
    finally:
        sc.kill()


# --- environment variables ------------------------------------------------------------------------------------


def test_catalog_variable_goes_only_to_the_catalog_host_or_the_one_the_app_set(
    data_dir: Path, upstream: Upstream, other_host: Upstream
) -> None:
    sc = spawn(data_dir, OPENAI_API_KEY=OPENAI_ENV_KEY)
    try:
        sc.call("configure_provider", {"id": "openai", "base_url": other_host.base_url})
        err = domain_error(sc.request("llm_stream_text", {"model": "openai:gpt-4o", "messages": HI}))
        assert err["code"] == "key_host_mismatch" and "api.openai.com" in err["message"]
        assert "--base-url openai=URL" in err["message"]
        result = sc.call("test_provider_connection", {"provider": "openai"})
        assert result["error"]["code"] == "key_host_mismatch"
        sc.call("llm_list_available_models", {"provider": "openai", "refresh": True})
        assert_never_reached(other_host)
        assert_no_leak(sc, OPENAI_ENV_KEY)
    finally:
        sc.kill()

    # The app set the base URL on its trusted side: the variable goes there, and only there.
    upstream.replies["gpt-4o"] = text_reply("ok")
    sc = spawn(data_dir, "--base-url", f"openai={upstream.base_url}", OPENAI_API_KEY=OPENAI_ENV_KEY)
    try:
        sc.call("configure_provider", {"id": "openai", "base_url": None})  # forget the RPC override above
        assert sc.stream({"model": "openai:gpt-4o", "messages": HI})[-1]["type"] == "done"
        assert upstream.seen[-1].headers["authorization"] == f"Bearer {OPENAI_ENV_KEY}"
        info = {p["id"]: p for p in sc.call("list_providers")}["openai"]
        assert info["base_url"] == upstream.base_url
        sc.call("configure_provider", {"id": "openai", "base_url": other_host.base_url})
        assert domain_error(sc.request("llm_stream_text", {"model": "openai:gpt-4o", "messages": HI}))["code"] == \
            "key_host_mismatch"
        assert_never_reached(other_host)
    finally:
        sc.kill()


def test_an_environment_variable_the_app_did_not_allow_is_refused(
    data_dir: Path, upstream: Upstream, other_host: Upstream
) -> None:
    sc = spawn(data_dir, GITHUB_TOKEN=GITHUB_TOKEN)
    try:
        resp = sc.request("configure_provider", {"id": "openai", "api_key_env": "GITHUB_TOKEN",
                                                 "base_url": other_host.base_url})
        err = domain_error(resp)
        assert err["code"] == "invalid_request" and "--allow-env GITHUB_TOKEN=HOST" in err["message"]
        resp = sc.request("llm_register_custom_provider", {"id": "x", "name": "x", "protocol": "openai",
                                                           "base_url": other_host.base_url,
                                                           "api_key_env": "GITHUB_TOKEN"})
        assert domain_error(resp)["code"] == "invalid_request"
        assert "x" not in {p["id"] for p in sc.call("list_providers")}
        # nothing changed, so nothing previews or sends the variable
        status = sc.call("get_api_key", {"provider": "openai"})
        assert status["has_api_key"] is False and status["preview"] is None
        assert sc.call("list_saved_providers") == []
        assert_never_reached(other_host)
        # the provider's own catalog variable may be named again
        assert sc.call("configure_provider", {"id": "openai", "api_key_env": "OPENAI_API_KEY"})["id"] == "openai"
        assert_no_leak(sc, GITHUB_TOKEN)
    finally:
        sc.kill()


def test_an_allowed_variable_goes_only_to_its_host(data_dir: Path, upstream: Upstream, other_host: Upstream) -> None:
    sc = spawn(data_dir, "--allow-env", "GITHUB_TOKEN=127.0.0.1", GITHUB_TOKEN=GITHUB_TOKEN)
    try:
        custom(sc, "gh", upstream.base_url, api_key_env="GITHUB_TOKEN")
        upstream.replies["m"] = text_reply("ok")
        assert sc.stream({"model": "gh:m", "messages": HI})[-1]["type"] == "done"
        assert upstream.seen[-1].headers["authorization"] == f"Bearer {GITHUB_TOKEN}"
        sc.call("configure_provider", {"id": "gh", "base_url": other_host.base_url})
        err = domain_error(sc.request("llm_stream_text", {"model": "gh:m", "messages": HI}))
        assert err["code"] == "key_host_mismatch" and "GITHUB_TOKEN" in err["message"]
        assert sc.call("test_provider_connection", {"provider": "gh"})["error"]["code"] == "key_host_mismatch"
        assert_never_reached(other_host)
        assert_no_leak(sc, GITHUB_TOKEN)
    finally:
        sc.kill()


def test_trusted_options_from_the_environment_and_bad_ones(data_dir: Path, upstream: Upstream) -> None:
    upstream.replies["m"] = text_reply("ok")
    sc = spawn(data_dir, LLM_SIDECAR_ALLOW_ENV="SOME_TOKEN=127.0.0.1", SOME_TOKEN="tok-0123456789abcdef")
    try:
        custom(sc, "s", upstream.base_url, api_key_env="SOME_TOKEN")
        assert sc.stream({"model": "s:m", "messages": HI})[-1]["type"] == "done"
        assert upstream.seen[-1].headers["authorization"] == "Bearer tok-0123456789abcdef"
    finally:
        sc.kill()
    for bad in (["--allow-env", "NOHOST"], ["--base-url", "openai=ftp://x"], ["--allow-meilisearch", "nope"]):
        proc = Sidecar(data_dir, *bad)
        assert proc.wait_exit(10) == 2, bad
        assert b"llm-sidecar:" in proc.stderr or proc.proc.stderr is not None


# --- Meilisearch ----------------------------------------------------------------------------------------------


@pytest.fixture
def meili_elsewhere() -> Iterator[FakeMeilisearch]:
    server = FakeMeilisearch(host="127.0.0.2")
    yield server
    server.close()


def test_meilisearch_gets_a_provider_key_only_when_the_app_allowed_it(
    data_dir: Path, meili_elsewhere: FakeMeilisearch
) -> None:
    params = {"meilisearch_url": meili_elsewhere.url, "meilisearch_api_key": MASTER, "workspace": "w",
              "provider": "openai", "model": "gpt-4o"}
    sc = spawn(data_dir, OPENAI_API_KEY=OPENAI_ENV_KEY)
    try:
        result = sc.call("configure_chat_workspace", params, timeout=30)
        # not allowed: configured through the local proxy, which sends Meilisearch only the proxy's token
        assert result["uses_proxy"] is True and result["source"] == "vLlm" and result["model"] == "openai:gpt-4o"
        (patch,) = meili_elsewhere.requests("PATCH", "/chats/w/settings")
        assert patch.body["source"] == "vLlm" and patch.body["apiKey"] != OPENAI_ENV_KEY
        assert patch.body["baseUrl"].startswith("http://127.0.0.1:")
        for seen in meili_elsewhere.seen:
            assert OPENAI_ENV_KEY not in repr(seen.body) and OPENAI_ENV_KEY not in repr(seen.headers)
        assert_no_leak(sc, OPENAI_ENV_KEY)
    finally:
        sc.kill()
    # allowed at start: the native source, with the provider's own key
    sc = spawn(data_dir, "--allow-meilisearch", meili_elsewhere.url, OPENAI_API_KEY=OPENAI_ENV_KEY)
    try:
        result = sc.call("configure_chat_workspace", params, timeout=30)
        assert result["uses_proxy"] is False and result["source"] == "openAi"
        assert meili_elsewhere.requests("PATCH", "/chats/w/settings")[-1].body["apiKey"] == OPENAI_ENV_KEY
    finally:
        sc.kill()


# --- no keychain is a normal state (issue 12) ---------------------------------------------------------------


def test_without_any_keychain_keyless_providers_work_and_keyed_ones_say_missing_api_key(
    data_dir: Path, upstream: Upstream
) -> None:
    sc = spawn(data_dir, backend="keyring.backends.fail.Keyring")
    try:
        sc.call("configure_provider", {"id": "vllm", "base_url": upstream.base_url})
        upstream.replies["qwen"] = text_reply("local and keyless")
        events = sc.stream({"model": "vllm:qwen", "messages": HI})
        assert events[-1]["type"] == "done"
        assert "".join(e["text"] for e in events if e["type"] == "text_delta") == "local and keyless"
        assert "authorization" not in upstream.seen[-1].headers
        assert sc.call("test_provider_connection", {"provider": "vllm"})["error"]["code"] != "keyring_unavailable"
        err = domain_error(sc.request("llm_stream_text", {"model": "openai:gpt-4o", "messages": HI}))
        assert err["code"] == "missing_api_key" and err["keychain"] == "unavailable"
        assert err["retryable"] is False
    finally:
        sc.kill()
