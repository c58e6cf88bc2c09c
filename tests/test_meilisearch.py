"""Meilisearch chat workspaces: the provider -> source mapping, and the requests the sidecar sends.

``FakeMeilisearch`` is a loopback server that behaves like Meilisearch's documented routes (v1.16 on):
it checks the bearer key, keeps the chatCompletions experimental feature and each workspace's settings,
refuses unknown (non camelCase) fields and sources it does not have, answers PATCH with the merged,
masked settings, and reports errors as ``{"message", "code", "type", "link"}``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import register_upstream
from harness import Sidecar, Upstream

from sidecar.errors import SidecarError
from sidecar.meilisearch import ChatWorkspaces, chat_model, chat_route, error_code, public_settings, settings_body
from sidecar.providers import Provider, Registry
from sidecar.providers.catalog import BUILTIN
from sidecar.settings import SettingsStore
from sidecar.types import ChatPrompts, ChatWorkspaceParams, ConfigureChatWorkspaceParams, KeySource

CATALOG = {p.id: p for p in BUILTIN}
MASTER = "masterKey-Xy7Qp2Lm9Rt4Vb8N"
OPENAI_KEY = "sk-test-Zq7VtY3pLm9KxW2rNc8BdF5hJ1gA6uE4"  # nothing real
AZURE_KEY = "az-0123456789abcdef0123456789abcdef"
ANTHROPIC_KEY = "sk-ant-test-4Hq8Lw2Zp6Nc1Vx9Bt3Mr7Ky5"
PROXY_TOKEN = "proxy-token-Jm3Xc8Vb2Nq7Lr5Tw9Pz4"

SETTINGS_FIELDS = {"source", "orgId", "projectId", "apiVersion", "deploymentId", "baseUrl", "apiKey", "prompts"}
PROMPT_FIELDS = {"system", "searchDescription", "searchQParam", "searchFilterParam", "searchIndexUidParam"}
SOURCES = {"openAi", "mistral", "azureOpenAi", "vLlm"}
DEFAULT_PROMPTS = {"system": "default system", "searchDescription": "default description",
                   "searchQParam": "default q", "searchFilterParam": "default filter",
                   "searchIndexUidParam": "default index"}


# --- a Meilisearch look-alike ----------------------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeMeilisearch:
    master_key: str | None = MASTER
    chat_enabled: bool = False
    workspaces: dict[str, dict[str, Any]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    fail: dict[str, tuple[int, dict[str, Any] | None]] = field(default_factory=dict)
    """path -> (status, error body) answered instead"""
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                fake.seen.append(Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                status, answer = fake.handle(self.command, self.path, self.headers.get("authorization"), body)
                data = b"" if answer is None else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PATCH = do_POST = do_DELETE = _serve

        self.server = ThreadingHTTPServer((self.host, 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{self.host}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()  # a quick close

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def error(status: int, message: str, code: str, kind: str = "invalid_request") -> tuple[int, dict[str, Any]]:
        return status, {"message": message, "code": code, "type": kind, "link": f"https://docs.meilisearch.com/errors#{code}"}

    @staticmethod
    def masked(settings: dict[str, Any]) -> dict[str, Any]:
        """As Meilisearch hides a key: a few first characters and X's."""
        out = {"source": "openAi", "orgId": None, "projectId": None, "apiVersion": None, "deploymentId": None,
               "baseUrl": None, "apiKey": None, **settings}
        out["prompts"] = {**DEFAULT_PROMPTS, **settings.get("prompts", {})}
        key = out.get("apiKey")
        if isinstance(key, str):
            n = len(key)
            out["apiKey"] = "XXX..." if n < 10 else key[:2] + "XXXX..." if n < 20 else \
                key[:3] + "XXXXX..." if n < 30 else key[:5] + "XXXXXX..."
        return out

    def handle(self, method: str, path: str, auth: str | None, body: Any) -> tuple[int, Any]:
        if path in self.fail:
            return self.fail[path]
        if self.master_key is not None:
            if auth is None:
                return self.error(401, "The Authorization header is missing. It must use the bearer authorization "
                                  "method.", "missing_authorization_header", "auth")
            if auth != f"Bearer {self.master_key}":
                return self.error(403, "The provided API key is invalid.", "invalid_api_key", "auth")
        if path == "/experimental-features":
            if method == "PATCH":
                assert isinstance(body, dict) and set(body) <= {"chatCompletions", "metrics", "network"}, body
                self.chat_enabled = body.get("chatCompletions", self.chat_enabled)
            elif method != "GET":
                return 405, None
            return 200, {"metrics": False, "logsRoute": False, "network": False, "chatCompletions": self.chat_enabled}
        m = re.fullmatch(r"/chats/([^/]+)/settings", path)
        if m is None:
            return self.error(404, "Not found", "not_found")
        if not self.chat_enabled:
            return self.error(400, "Using the /chats settings requires enabling the `chat completions` experimental "
                              "feature.", "feature_not_enabled")
        workspace = m.group(1)
        if method == "GET":
            if workspace not in self.workspaces:
                return self.error(404, f"Chat `{workspace}` not found.", "chat_not_found")
            return 200, self.masked(self.workspaces[workspace])
        if method != "PATCH":
            return 405, None
        if not isinstance(body, dict):
            return self.error(400, "expected an object", "bad_request")
        unknown = set(body) - SETTINGS_FIELDS
        if unknown:
            return self.error(400, f"Unknown field `{sorted(unknown)[0]}`", "bad_request")
        if "source" in body and body["source"] not in SOURCES:
            return self.error(400, f"Unknown value `{body['source']}` at `.source`", "invalid_chat_completion_source")
        for k, v in body.items():
            if k != "prompts" and v is not None and not isinstance(v, str):
                return self.error(400, f"Invalid value type at `.{k}`", "bad_request")
        prompts = body.get("prompts")
        if prompts is not None and (not isinstance(prompts, dict) or set(prompts) - PROMPT_FIELDS):
            return self.error(400, "Unknown field in `.prompts`", "bad_request")
        merged = dict(self.workspaces.get(workspace, {}))
        for k, v in body.items():
            if k == "prompts":
                merged["prompts"] = {**merged.get("prompts", {}), **(v or {})}
            elif v is None:
                merged.pop(k, None)
            else:
                merged[k] = v
        source = merged.get("source", "openAi")
        if source == "azureOpenAi" and not all(merged.get(k) for k in ("baseUrl", "deploymentId", "apiVersion")):
            return self.error(400, "azureOpenAi requires setting a valid `baseUrl`, `deploymentId`, and "
                              "`apiVersion`", "bad_request")
        if source == "vLlm" and not merged.get("baseUrl"):
            return self.error(400, "vLlm requires setting a valid `baseUrl`", "bad_request")
        self.workspaces[workspace] = merged
        return 200, self.masked(merged)

    def requests(self, method: str, path: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method and s.path == path]


@pytest.fixture
def meili() -> Iterator[FakeMeilisearch]:
    server = FakeMeilisearch()
    yield server
    server.close()


def spawn(data_dir: Path, *args: str, **env: str) -> Sidecar:
    sc = Sidecar(data_dir, *args, env=env)
    sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
    return sc


def domain_error(resp: dict[str, Any]) -> dict[str, Any]:
    assert resp.get("error", {}).get("code") == -32000, resp
    data: dict[str, Any] = resp["error"]["data"]
    data["message"] = resp["error"]["message"]
    return data


def assert_no_leak(sc: Sidecar, *secrets: str) -> None:
    """No secret, nor any 6-character run of one, on stdout or stderr (Meilisearch's mask shows 5)."""
    out = b"".join(sc.raw_lines).decode() + sc.stderr.decode(errors="replace")
    for secret in secrets:
        assert secret not in out
        for i in range(len(secret) - 5):
            assert secret[i:i + 6] not in out, f"a part of a secret leaked: {secret[i:i + 6]!r}"
        assert secret[:5] + "X" not in out, "Meilisearch's masked key was passed on"


def configure(meili: FakeMeilisearch, **extra: Any) -> dict[str, Any]:
    return {"meilisearch_url": meili.url, "meilisearch_api_key": MASTER, "workspace": "support", **extra}


# --- the mapping, without the network ---------------------------------------------------------------


def test_native_sources_and_their_settings() -> None:
    assert chat_route(CATALOG["openai"]).source == "openAi"
    assert chat_route(CATALOG["openai"]).base_url is None  # Meilisearch's default is OpenAI's own
    assert chat_route(CATALOG["mistral"]).source == "mistral" and chat_route(CATALOG["mistral"]).native
    own = Provider(id="openai", name="OpenAI", protocol="openai", base_url="https://gw.example.com/v1/")
    assert chat_route(own).base_url == "https://gw.example.com/v1"
    azure = Provider(id="azure-openai", name="Azure", protocol="openai",
                     base_url="https://res.openai.azure.com/openai", api_version="2024-10-21")
    route = chat_route(azure)
    assert (route.source, route.native, route.base_url, route.api_version) == (
        "azureOpenAi", True, "https://res.openai.azure.com", "2024-10-21")
    assert settings_body(route, api_key="k" * 12, model="gpt4o-prod") == {
        "source": "azureOpenAi", "baseUrl": "https://res.openai.azure.com", "deploymentId": "gpt4o-prod",
        "apiVersion": "2024-10-21", "apiKey": "k" * 12}
    with pytest.raises(SidecarError) as err:
        settings_body(route, api_key="k" * 12)
    assert err.value.code == "invalid_request"


@pytest.mark.parametrize("pid", ["anthropic", "gemini", "ollama", "cohere", "groq", "deepseek", "openrouter", "mock"])
def test_every_other_provider_goes_through_the_proxy(pid: str) -> None:
    route = chat_route(CATALOG[pid])
    assert (route.source, route.native) == ("vLlm", False)
    body = settings_body(route, api_key=PROXY_TOKEN, proxy_url="http://127.0.0.1:5000/v1",
                         prompts=ChatPrompts(system="Be brief", search_filter_param="filters"))
    assert body == {"source": "vLlm", "baseUrl": "http://127.0.0.1:5000/v1", "deploymentId": None,
                    "apiVersion": None, "apiKey": PROXY_TOKEN,
                    "prompts": {"system": "Be brief", "searchFilterParam": "filters"}}


def test_custom_providers_go_through_the_proxy() -> None:
    custom = Provider(id="mine", name="Mine", protocol="openai", base_url="http://127.0.0.1:1/v1", is_custom=True)
    assert chat_route(custom).source == "vLlm"
    assert chat_model(custom, "mine:qwen", chat_route(custom)) == "mine:qwen"


def test_the_model_a_chat_request_names() -> None:
    openai, ollama = CATALOG["openai"], CATALOG["ollama"]
    assert chat_model(openai, "openai:gpt-4o", chat_route(openai)) == "gpt-4o"
    assert chat_model(openai, "gpt-4o", chat_route(openai)) == "gpt-4o"
    assert chat_model(ollama, "llama3.2:3b", chat_route(ollama)) == "ollama:llama3.2:3b"
    assert chat_model(ollama, "ollama:llama3.2:3b", chat_route(ollama)) == "ollama:llama3.2:3b"
    assert chat_model(ollama, None, chat_route(ollama)) is None


def test_a_default_base_url_resets_a_previous_one() -> None:
    body = settings_body(chat_route(CATALOG["openai"]), api_key=OPENAI_KEY)
    assert body["baseUrl"] is None and body["deploymentId"] is None and body["apiVersion"] is None


def test_settings_are_returned_without_the_key() -> None:
    raw = FakeMeilisearch.masked({"source": "vLlm", "baseUrl": "http://x/v1", "apiKey": OPENAI_KEY,
                                  "prompts": {"system": "s"}})
    out = public_settings(raw)
    assert out.api_key == "[redacted]" and out.source == "vLlm" and out.base_url == "http://x/v1"
    assert out.prompts is not None and out.prompts.system == "s"  # type: ignore[union-attr]
    assert public_settings({"source": "openAi"}).api_key is None


@pytest.mark.parametrize(("status", "code", "expected"), [
    (401, "missing_authorization_header", "authentication_failed"),
    (403, "invalid_api_key", "permission_denied"),
    (404, "chat_not_found", "not_found"),
    (400, "feature_not_enabled", "invalid_request"),
    (400, "invalid_chat_completion_source", "invalid_request"),
    (429, "too_many_requests", "rate_limited"),
    (500, "internal", "upstream_unavailable"),
    (503, None, "upstream_unavailable"),
])
def test_error_codes(status: int, code: str | None, expected: str) -> None:
    assert error_code(status, code) == expected


# --- the service with a stand-in proxy (the product's proxy is tested through the sidecar below) ----------


class StandInProxy:
    def __init__(self) -> None:
        self.started = 0

    async def ensure_running(self) -> tuple[str, str]:
        self.started += 1
        return "http://127.0.0.1:5999/v1", PROXY_TOKEN


class Keys:
    def __init__(self, keys: dict[str, str]) -> None:
        self.keys = keys

    async def key_for(self, provider: Provider, url: str) -> str | None:
        return self.keys.get(provider.id)

    def known_source(self, provider: Provider) -> KeySource | None:
        return "env" if provider.id in self.keys else None


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_service_proxied_provider_with_a_stand_in_proxy(tmp_path: Path, meili: FakeMeilisearch) -> None:
    proxy = StandInProxy()
    service = ChatWorkspaces(Registry(SettingsStore(tmp_path)), Keys({}), lambda: proxy)
    params = ConfigureChatWorkspaceParams(meilisearch_url=meili.url, meilisearch_api_key=MASTER, workspace="w",
                                          provider="anthropic", model="claude-haiku-4-5")
    result = await service.configure(params)
    assert proxy.started == 1
    assert (result.source, result.uses_proxy, result.model) == ("vLlm", True, "anthropic:claude-haiku-4-5")
    assert result.settings.api_key == "[redacted]" and result.settings.base_url == "http://127.0.0.1:5999/v1"
    (patch,) = meili.requests("PATCH", "/chats/w/settings")
    assert patch.body["apiKey"] == PROXY_TOKEN and patch.body["source"] == "vLlm"
    # a native provider never starts the proxy
    service = ChatWorkspaces(Registry(SettingsStore(tmp_path)), Keys({"mistral": "m" * 32}), lambda: proxy,
                             allowed=lambda url: url == meili.url)
    result = await service.configure(ConfigureChatWorkspaceParams(
        meilisearch_url=meili.url, meilisearch_api_key=MASTER, workspace="w", provider="mistral"))
    assert proxy.started == 1 and result.source == "mistral" and result.settings.base_url is None
    got = await service.get_settings(ChatWorkspaceParams(meilisearch_url=meili.url, workspace="w",
                                                         meilisearch_api_key=MASTER))
    assert got.source == "mistral" and got.api_key == "[redacted]"


# --- through the real sidecar ------------------------------------------------------------------------


def test_list_chat_providers(data_dir: Path) -> None:
    sc = spawn(data_dir, OPENAI_API_KEY=OPENAI_KEY)
    try:
        sc.call("llm_register_custom_provider", {"id": "mine", "name": "Mine", "protocol": "openai",
                                                 "base_url": "http://127.0.0.1:9/v1", "requires_api_key": False})
        rows = {r["provider"]: r for r in sc.call("list_chat_providers")}
        assert rows["openai"] == {"provider": "openai", "name": "OpenAI", "native": True, "source": "openAi",
                                  "needs_proxy": False, "has_api_key": True}
        assert rows["mistral"]["source"] == "mistral" and rows["mistral"]["has_api_key"] is False
        assert rows["azure-openai"]["source"] == "azureOpenAi" and rows["azure-openai"]["native"]
        for pid in ("anthropic", "gemini", "ollama", "cohere", "groq", "deepseek", "openrouter", "mine"):
            assert (rows[pid]["source"], rows[pid]["native"], rows[pid]["needs_proxy"]) == ("vLlm", False, True)
        assert rows["mine"]["has_api_key"] is True  # it needs none
    finally:
        sc.kill()


def test_native_openai_workspace(data_dir: Path, meili: FakeMeilisearch) -> None:
    sc = spawn(data_dir, "--allow-meilisearch", meili.url, OPENAI_API_KEY=OPENAI_KEY)
    try:
        prompts = {"system": "Answer from the docs.", "search_description": "Search the docs",
                   "search_q_param": "keywords", "search_filter_param": "a filter",
                   "search_index_uid_param": "which index"}
        result = sc.call("configure_chat_workspace", configure(meili, provider="openai", model="openai:gpt-4o",
                                                                prompts=prompts))
        # the feature was off: read, then switched on, with the master key
        assert [(s.method, s.path) for s in meili.seen] == [("GET", "/experimental-features"),
                                                            ("PATCH", "/experimental-features"),
                                                            ("PATCH", "/chats/support/settings")]
        assert all(s.headers.get("authorization") == f"Bearer {MASTER}" for s in meili.seen)
        assert meili.seen[1].body == {"chatCompletions": True}
        patch = meili.seen[2]
        assert patch.headers["content-type"] == "application/json"
        assert patch.body == {
            "source": "openAi", "baseUrl": None, "deploymentId": None, "apiVersion": None, "apiKey": OPENAI_KEY,
            "prompts": {"system": "Answer from the docs.", "searchDescription": "Search the docs",
                        "searchQParam": "keywords", "searchFilterParam": "a filter",
                        "searchIndexUidParam": "which index"}}
        assert result["source"] == "openAi" and result["uses_proxy"] is False and result["model"] == "gpt-4o"
        assert result["feature_enabled"] is True and result["workspace"] == "support"
        assert result["settings"]["api_key"] == "[redacted]"
        assert result["settings"]["prompts"] == prompts
        # the stored key is the real one; nothing the sidecar wrote holds it
        assert meili.workspaces["support"]["apiKey"] == OPENAI_KEY
        assert_no_leak(sc, OPENAI_KEY, MASTER)
    finally:
        sc.kill()


def test_a_responses_only_model_goes_through_the_proxy(data_dir: Path, meili: FakeMeilisearch) -> None:
    """Meilisearch's openAi source speaks Chat Completions, which gpt-5-pro (the Responses API only) refuses."""
    sc = spawn(data_dir, "--allow-meilisearch", meili.url, OPENAI_API_KEY=OPENAI_KEY)
    try:
        result = sc.call("configure_chat_workspace", configure(meili, provider="openai", model="openai:gpt-5-pro"),
                         timeout=30)
        body = meili.requests("PATCH", "/chats/support/settings")[0].body
        assert body["source"] == "vLlm" and OPENAI_KEY not in json.dumps(body)
        assert result["uses_proxy"] is True and result["model"] == "openai:gpt-5-pro"
    finally:
        sc.kill()


def test_feature_already_on_is_left_alone(data_dir: Path, meili: FakeMeilisearch) -> None:
    meili.chat_enabled = True
    sc = spawn(data_dir, "--allow-meilisearch", meili.url, "--base-url", "openai=https://gateway.example.com/v1",
               OPENAI_API_KEY=OPENAI_KEY)
    try:
        result = sc.call("configure_chat_workspace", configure(meili, provider="openai"))
        assert [(s.method, s.path) for s in meili.seen] == [
            ("GET", "/experimental-features"), ("PATCH", "/chats/support/settings")]
        assert meili.seen[1].body["baseUrl"] == "https://gateway.example.com/v1"
        assert "prompts" not in meili.seen[1].body
        assert result["feature_enabled"] is False
        assert result["model"] == "gpt-4.1"  # no model given: the catalog's first
    finally:
        sc.kill()


def test_azure_workspace(data_dir: Path, meili: FakeMeilisearch) -> None:
    sc = spawn(data_dir, "--allow-meilisearch", meili.url, AZURE_OPENAI_API_KEY=AZURE_KEY)
    try:
        # the catalog's placeholder resource is refused before any request
        resp = sc.request("configure_chat_workspace", configure(meili, provider="azure-openai", model="prod"))
        assert domain_error(resp)["code"] == "invalid_request"
    finally:
        sc.kill()
    sc = spawn(data_dir, "--allow-meilisearch", meili.url,
               "--base-url", "azure-openai=https://contoso.openai.azure.com/openai", AZURE_OPENAI_API_KEY=AZURE_KEY)
    try:
        resp = sc.request("configure_chat_workspace", configure(meili, provider="azure-openai"))
        assert domain_error(resp)["code"] == "invalid_request" and "deployment" in resp["error"]["message"]
        assert meili.seen == []
        result = sc.call("configure_chat_workspace", configure(meili, provider="azure-openai",
                                                               model="gpt-4o-prod"))
        patch = meili.requests("PATCH", "/chats/support/settings")[0]
        assert patch.body == {"source": "azureOpenAi", "baseUrl": "https://contoso.openai.azure.com",
                              "deploymentId": "gpt-4o-prod", "apiVersion": "2024-10-21", "apiKey": AZURE_KEY}
        assert result["settings"]["deployment_id"] == "gpt-4o-prod"
        assert result["settings"]["api_version"] == "2024-10-21" and result["model"] == "gpt-4o-prod"
        assert_no_leak(sc, AZURE_KEY, MASTER)
    finally:
        sc.kill()


def test_proxied_anthropic_workspace(data_dir: Path, meili: FakeMeilisearch) -> None:
    sc = spawn(data_dir, ANTHROPIC_API_KEY=ANTHROPIC_KEY)
    try:
        result = sc.call("configure_chat_workspace", configure(meili, provider="anthropic",
                                                               model="claude-sonnet-4-5"), timeout=30)
        patch = meili.requests("PATCH", "/chats/support/settings")[0]
        body = patch.body
        assert body["source"] == "vLlm" and set(body) == {"source", "baseUrl", "deploymentId", "apiVersion", "apiKey"}
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", body["baseUrl"]), body["baseUrl"]
        token = body["apiKey"]
        assert token and ANTHROPIC_KEY not in token
        assert result["uses_proxy"] is True and result["model"] == "anthropic:claude-sonnet-4-5"
        assert result["settings"]["base_url"] == body["baseUrl"] and result["settings"]["api_key"] == "[redacted]"
        # the proxy runs afterwards, and the token Meilisearch holds opens it
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        req = urllib.request.Request(body["baseUrl"] + "/models", headers={"authorization": f"Bearer {token}"})
        with opener.open(req, timeout=10) as answer:
            assert answer.status == 200
        with pytest.raises(urllib.error.HTTPError) as refused:
            opener.open(urllib.request.Request(body["baseUrl"] + "/models"), timeout=10)
        assert refused.value.code == 401
        # configuring again reuses the running proxy: same URL, same token
        sc.call("configure_chat_workspace", configure(meili, provider="anthropic"), timeout=30)
        again = meili.requests("PATCH", "/chats/support/settings")[1].body
        assert (again["baseUrl"], again["apiKey"]) == (body["baseUrl"], token)
        assert_no_leak(sc, ANTHROPIC_KEY, MASTER, token)
    finally:
        sc.kill()


def test_reading_settings_back(data_dir: Path, meili: FakeMeilisearch) -> None:
    sc = spawn(data_dir, "--allow-meilisearch", meili.url, OPENAI_API_KEY=OPENAI_KEY)
    try:
        sc.call("configure_chat_workspace", configure(meili, provider="openai", prompts={"system": "Short."}))
        got = sc.call("get_chat_workspace_settings", configure(meili))
        assert meili.seen[-1].method == "GET" and meili.seen[-1].path == "/chats/support/settings"
        assert meili.seen[-1].headers["authorization"] == f"Bearer {MASTER}"
        assert got["source"] == "openAi" and got["api_key"] == "[redacted]" and got["base_url"] is None
        assert got["prompts"]["system"] == "Short." and got["prompts"]["search_q_param"] == "default q"
        # a workspace name is one path segment
        resp = sc.request("get_chat_workspace_settings", configure(meili, workspace="a/b c"))
        assert meili.seen[-1].path == "/chats/a%2Fb%20c/settings"
        err = domain_error(resp)
        assert err["code"] == "not_found" and "chat_not_found" in err["message"] and err["status"] == 404
        assert_no_leak(sc, OPENAI_KEY, MASTER)
    finally:
        sc.kill()


def test_errors(data_dir: Path, meili: FakeMeilisearch) -> None:
    sc = spawn(data_dir, "--allow-meilisearch", meili.url, OPENAI_API_KEY=OPENAI_KEY)
    try:
        # no key for a native source: refused before any request
        resp = sc.request("configure_chat_workspace", configure(meili, provider="mistral"))
        assert domain_error(resp)["code"] == "missing_api_key" and meili.seen == []
        resp = sc.request("configure_chat_workspace", configure(meili, provider="nope"))
        assert domain_error(resp)["code"] == "unknown_provider"

        without_key = {"meilisearch_url": meili.url, "workspace": "support", "provider": "openai"}
        err = domain_error(sc.request("configure_chat_workspace", without_key))
        assert err["code"] == "authentication_failed" and err["status"] == 401
        assert "missing_authorization_header" in err["message"] and "Authorization header is missing" in err["message"]

        err = domain_error(sc.request("configure_chat_workspace", {**without_key, "meilisearch_api_key": "wrong-key"}))
        assert err["code"] == "permission_denied" and "invalid_api_key" in err["message"]

        # the feature is off and nobody switched it on: reading a workspace says so
        err = domain_error(sc.request("get_chat_workspace_settings", configure(meili)))
        assert err["code"] == "invalid_request" and "feature_not_enabled" in err["message"]
        assert err["retryable"] is False

        meili.fail["/experimental-features"] = FakeMeilisearch.error(500, "Internal error", "internal", "internal")
        err = domain_error(sc.request("configure_chat_workspace", configure(meili, provider="openai")))
        assert err["code"] == "upstream_unavailable" and err["retryable"] is True and err["status"] == 500

        meili.fail["/experimental-features"] = (502, None)  # a gateway in front, no JSON
        err = domain_error(sc.request("configure_chat_workspace", configure(meili, provider="openai")))
        assert err["code"] == "upstream_unavailable" and "HTTP 502" in err["message"]

        with socket.socket() as s:  # a port nobody listens on
            s.bind(("127.0.0.1", 0))
            closed = s.getsockname()[1]
        err = domain_error(sc.request("configure_chat_workspace",
                                      {**configure(meili, provider="openai"),
                                       "meilisearch_url": f"http://127.0.0.1:{closed}"}))
        assert err["code"] == "network_error" and err["retryable"] is True

        for bad in ({"meilisearch_url": "ftp://x"}, {"workspace": ""}, {"meilisearch_api_key": "a b"}):
            err = domain_error(sc.request("configure_chat_workspace", {**configure(meili, provider="openai"), **bad}))
            assert err["code"] == "invalid_request", bad
        assert_no_leak(sc, OPENAI_KEY, MASTER)
    finally:
        sc.kill()


def test_an_error_message_never_echoes_a_key(data_dir: Path, meili: FakeMeilisearch) -> None:
    meili.chat_enabled = True
    meili.fail["/chats/support/settings"] = FakeMeilisearch.error(
        400, f"Invalid value at `.apiKey`: `{OPENAI_KEY}` and `{MASTER}`", "invalid_chat_completion_api_key")
    sc = spawn(data_dir, "--allow-meilisearch", meili.url, OPENAI_API_KEY=OPENAI_KEY)
    try:
        err = domain_error(sc.request("configure_chat_workspace", configure(meili, provider="openai")))
        assert err["code"] == "invalid_request" and "Invalid value at `.apiKey`" in err["message"]
        assert_no_leak(sc, OPENAI_KEY, MASTER)
    finally:
        sc.kill()


# --- against a real Meilisearch, when one is installed ------------------------------------------------

MEILI_BIN = os.environ.get("LLM_SIDECAR_TEST_MEILISEARCH") or shutil.which("meilisearch")


@pytest.mark.skipif(MEILI_BIN is None, reason="no meilisearch binary: none is published on PyPI, npm or Debian "
                    "(the PyPI/npm 'meilisearch' packages are clients); set LLM_SIDECAR_TEST_MEILISEARCH to one")
def test_against_a_real_meilisearch(tmp_path: Path, data_dir: Path, upstream: Upstream) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert MEILI_BIN is not None
    proc = subprocess.Popen([MEILI_BIN, "--http-addr", f"127.0.0.1:{port}", "--master-key", MASTER,
                             "--db-path", str(tmp_path / "ms"), "--no-analytics"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    sc = spawn(data_dir, "--allow-meilisearch", url, OPENAI_API_KEY=OPENAI_KEY)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url + "/health", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "meilisearch did not start"
                time.sleep(0.2)
        params = {"meilisearch_url": url, "meilisearch_api_key": MASTER, "workspace": "docs"}
        result = sc.call("configure_chat_workspace", {**params, "provider": "openai", "prompts": {"system": "Hi"}})
        assert result["feature_enabled"] is True and result["settings"]["source"] == "openAi"
        got = sc.call("get_chat_workspace_settings", params)
        assert got["api_key"] == "[redacted]" and got["prompts"]["system"] == "Hi"
        again = sc.call("configure_chat_workspace", {**params, "provider": "openai"})
        assert again["feature_enabled"] is False
        err = domain_error(sc.request("get_chat_workspace_settings", {**params, "workspace": "absent"}))
        assert err["code"] == "not_found"
        err = domain_error(sc.request("get_chat_workspace_settings", {**params, "meilisearch_api_key": "nope"}))
        assert err["code"] in ("authentication_failed", "permission_denied")
        register_upstream(sc, upstream)
        proxied = sc.call("configure_chat_workspace", {**params, "provider": "loopback", "model": "m"}, timeout=30)
        assert proxied["settings"]["source"] == "vLlm" and proxied["uses_proxy"] is True
        assert_no_leak(sc, OPENAI_KEY, MASTER)
    finally:
        sc.kill()
        proc.terminate()
        proc.wait(10)
