"""Signing in (issue 17): the device and browser flows against a loopback authorization server built on authlib
(tests/oauth_server.py), tokens in the keychain (a file keychain the test reads from outside), refresh before
expiry and on 401, single-flight refresh, rotation, invalid_grant, sign-out, restart, GitHub Copilot's token
exchange, and no token anywhere on stdout, stderr or in the settings."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import ROOT, Sidecar, assert_clean, text_of
from oauth_server import ACCOUNT_EMAIL, ACCOUNT_ID, CHATGPT_REDIRECT, CLIENT_ID, COPILOT_CLIENT_ID, OAuthServer

TESTS = str(ROOT / "tests")
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def server() -> Iterator[OAuthServer]:
    s = OAuthServer()
    yield s
    s.close()


@pytest.fixture
def keychain(tmp_path: Path) -> Path:
    return tmp_path / "keychain.json"


def spawn(data_dir: Path, keychain: Path, *args: str) -> Sidecar:
    env = {"PYTHONPATH": TESTS, "PYTHON_KEYRING_BACKEND": "fake_keyrings.file.Keyring",
           "FAKE_KEYRING_FILE": str(keychain)}
    sc = Sidecar(data_dir, "--log-level", "debug", *args, env=env)
    sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
    return sc


@pytest.fixture
def sc(data_dir: Path, keychain: Path) -> Iterator[Sidecar]:
    proc = spawn(data_dir, keychain)
    yield proc
    proc.kill()


def register(sc: Sidecar, server: OAuthServer, flow: str = "device", pid: str = "gw") -> None:
    """A custom provider (an app's own OpenAI-compatible gateway) that signs in at the loopback server."""
    oauth: dict[str, Any] = {"flow": flow, "token_endpoint": f"{server.url}/token", "client_id": CLIENT_ID,
                             "scopes": ["chat"]}
    if flow == "device":
        oauth["device_authorization_endpoint"] = f"{server.url}/device/code"
    else:
        oauth["authorization_endpoint"] = f"{server.url}/authorize"
    info = sc.call("llm_register_custom_provider", {"id": pid, "name": "Gateway", "protocol": "openai",
                                                    "base_url": f"{server.url}/v1", "oauth": oauth})
    assert info["auth"] == "oauth" and info["signed_in"] is False


def events(sc: Sidecar, flow_id: str) -> list[dict[str, Any]]:
    with sc._cond:
        return [m["params"] for m in sc.messages if m.get("method") == f"oauth-{flow_id}"]


def wait_event(sc: Sidecar, flow_id: str, kind: str, count: int = 1, timeout: float = 30) -> dict[str, Any]:
    sc.wait_for(lambda m: len([e for e in events(sc, flow_id) if e["type"] == kind]) >= count, timeout=timeout)
    return [e for e in events(sc, flow_id) if e["type"] == kind][count - 1]


def wait_end(sc: Sidecar, flow_id: str, timeout: float = 30) -> dict[str, Any]:
    sc.wait_for(lambda m: any(e["type"] in ("signed_in", "error") for e in events(sc, flow_id)), timeout=timeout)
    ends = [e for e in events(sc, flow_id) if e["type"] in ("signed_in", "error")]
    assert len(ends) == 1, ends
    return ends[0]


def sign_in(sc: Sidecar, server: OAuthServer, provider: str = "gw") -> dict[str, Any]:
    started = sc.call("oauth_sign_in_start", {"provider": provider})
    assert started["kind"] == "device"
    server.decide(started["user_code"])
    end = wait_end(sc, started["flow_id"])
    assert end["type"] == "signed_in", end
    return started


def chat(sc: Sidecar, model: str = "gw:m") -> dict[str, Any]:
    return sc.request("complete_chat", {"model": model, "messages": HI}, timeout=30)


def stored(keychain: Path, provider: str = "gw") -> dict[str, Any] | None:
    data = json.loads(keychain.read_text()) if keychain.exists() else {}
    raw = data.get(f"llm-sidecar/oauth:{provider}")
    return json.loads(raw) if raw else None


def bearers(server: OAuthServer, path: str = "/v1/chat/completions") -> list[str]:
    with server.state.lock:
        return [c["headers"].get("Authorization", c["headers"].get("authorization", "")).removeprefix("Bearer ")
                for c in server.state.api_calls if c["path"] == path]


def assert_no_token(sc: Sidecar, server: OAuthServer, data_dir: Path) -> None:
    """No token the server issued (nor a 12-character piece of one) is on stdout, stderr or in the data dir."""
    seen = b"".join(sc.raw_lines) + bytes(sc.stderr)
    files = b"".join(p.read_bytes() for p in data_dir.rglob("*") if p.is_file() and p.suffix != ".db")
    tokens = server.all_tokens()
    assert tokens
    for token in tokens:
        for i in range(0, len(token) - 11, 4):
            piece = token[i:i + 12].encode()
            assert piece not in seen, f"a piece of a token leaked: {piece!r}"
            assert piece not in files, f"a piece of a token is in the data dir: {piece!r}"


# --- the device flow ---------------------------------------------------------------------------


def test_bar_device_flow_signs_in_and_no_token_shows(sc: Sidecar, server: OAuthServer, data_dir: Path,
                                                     keychain: Path) -> None:
    register(sc, server)
    started = sc.call("oauth_sign_in_start", {"provider": "gw"})
    assert started["kind"] == "device" and started["user_code"]
    assert started["verification_uri"] == f"{server.url}/device" and started["expires_in"] == 600
    wait_event(sc, started["flow_id"], "pending")  # polled once: authorization_pending
    server.decide(started["user_code"])
    end = wait_end(sc, started["flow_id"])
    assert end == {"type": "signed_in", "flow_id": started["flow_id"]}
    status = sc.call("oauth_status", {"provider": "gw"})
    assert status["signed_in"] is True and status["expires_at"] > 0
    info = next(p for p in sc.call("list_providers") if p["id"] == "gw")
    assert info["auth"] == "oauth" and info["signed_in"] is True
    # the tokens are in the keychain, as one JSON entry, and used
    entry = stored(keychain)
    assert entry is not None and entry["refresh_token"] == server.latest_refresh_token()
    resp = chat(sc)
    assert resp["result"]["content"] == "gateway says hi", resp
    assert bearers(server) == [entry["access_token"]]
    # the token requests were form-encoded with the public client id in the body (authlib read request.form)
    with server.state.lock:
        assert all(f["client_id"] == CLIENT_ID for f in server.state.token_requests)
    assert_clean(sc)
    assert_no_token(sc, server, data_dir)


def test_device_flow_pending_then_slow_down_then_success(sc: Sidecar, server: OAuthServer) -> None:
    server.state.slow_down_on_poll = 2
    register(sc, server)
    started = sc.call("oauth_sign_in_start", {"provider": "gw"})
    wait_event(sc, started["flow_id"], "pending", count=2)
    with server.state.lock:
        assert server.state.device_answers == ["authorization_pending", "slow_down"]
    server.decide(started["user_code"])
    assert wait_end(sc, started["flow_id"])["type"] == "signed_in"
    with server.state.lock:
        assert server.state.device_answers == ["authorization_pending", "slow_down", "token"]


def test_device_code_expiry(sc: Sidecar, server: OAuthServer) -> None:
    server.state.device_lifetime = 1  # the code dies while the client still polls
    register(sc, server)
    started = sc.call("oauth_sign_in_start", {"provider": "gw"})
    end = wait_end(sc, started["flow_id"])
    assert end["type"] == "error" and end["error"]["code"] == "timeout" and "expired" in end["error"]["message"]
    with server.state.lock:
        assert server.state.device_answers[-1] == "expired_token"
    assert sc.call("oauth_status", {"provider": "gw"})["signed_in"] is False


def test_device_flow_denied(sc: Sidecar, server: OAuthServer) -> None:
    register(sc, server)
    started = sc.call("oauth_sign_in_start", {"provider": "gw"})
    server.decide(started["user_code"], approved=False)
    end = wait_end(sc, started["flow_id"])
    assert end["type"] == "error" and end["error"]["code"] == "permission_denied"
    with server.state.lock:
        assert server.state.device_answers == ["access_denied"]
    assert sc.call("oauth_status", {"provider": "gw"})["signed_in"] is False


def test_cancel_ends_the_flow(sc: Sidecar, server: OAuthServer) -> None:
    register(sc, server)
    started = sc.call("oauth_sign_in_start", {"provider": "gw"})
    assert sc.call("oauth_sign_in_cancel", {"flow_id": started["flow_id"]}) == {"cancelled": True}
    end = wait_end(sc, started["flow_id"])
    assert end["type"] == "error" and end["error"]["code"] == "cancelled"
    assert sc.call("oauth_sign_in_cancel", {"flow_id": started["flow_id"]}) == {"cancelled": False}
    resp = sc.request("oauth_sign_in_start", {"provider": "openai"})
    assert resp["error"]["data"]["code"] == "invalid_request"


# --- the browser flow (PKCE, loopback redirect) ---------------------------------------------------


def test_browser_flow(sc: Sidecar, server: OAuthServer, data_dir: Path) -> None:
    server.state.id_token = True
    register(sc, server, flow="browser")
    started = sc.call("oauth_sign_in_start", {"provider": "gw"})
    assert started["kind"] == "browser" and started["authorize_url"].startswith(f"{server.url}/authorize?")
    wait_event(sc, started["flow_id"], "pending")  # listening
    # the "browser": the authorization server (authlib) checks the request and redirects back
    answer = httpx.get(started["authorize_url"], follow_redirects=False)
    assert answer.status_code == 302, answer.text
    callback = answer.headers["location"]
    assert callback.startswith("http://127.0.0.1:") and "code=" in callback and "state=" in callback
    page = httpx.get(callback)
    assert page.status_code == 200 and "close this tab" in page.text
    end = wait_end(sc, started["flow_id"])
    assert end == {"type": "signed_in", "flow_id": started["flow_id"], "account": ACCOUNT_EMAIL}
    with server.state.lock:
        form = server.state.token_requests[-1]
    assert form["grant_type"] == "authorization_code" and len(form["code_verifier"]) >= 43  # PKCE, checked by authlib
    status = sc.call("oauth_status", {"provider": "gw"})
    assert status["signed_in"] is True and status["account"] == ACCOUNT_EMAIL
    assert chat(sc)["result"]["content"] == "gateway says hi"
    with pytest.raises(httpx.ConnectError):  # one callback: the listener is closed
        httpx.get(callback)
    assert_no_token(sc, server, data_dir)


def test_browser_flow_wrong_state_is_refused_and_the_listener_closes(sc: Sidecar, server: OAuthServer) -> None:
    register(sc, server, flow="browser")
    started = sc.call("oauth_sign_in_start", {"provider": "gw"})
    callback = httpx.get(started["authorize_url"], follow_redirects=False).headers["location"]
    forged = callback.split("state=")[0] + "state=not-the-one"
    page = httpx.get(forged)
    assert page.status_code == 400
    end = wait_end(sc, started["flow_id"])
    assert end["type"] == "error" and end["error"]["code"] == "authentication_failed"
    assert "state" in end["error"]["message"]
    with pytest.raises(httpx.ConnectError):
        httpx.get(callback)  # even the right callback finds nobody listening now
    with server.state.lock:
        assert server.state.token_requests == []  # the code was never exchanged
    assert sc.call("oauth_status", {"provider": "gw"})["signed_in"] is False


# --- tokens in use: refresh, rotation, invalid_grant ------------------------------------------------


def test_refresh_before_expiry(sc: Sidecar, server: OAuthServer, keychain: Path) -> None:
    server.state.expires_in = 2
    register(sc, server)
    sign_in(sc, server)
    first = stored(keychain)
    assert first is not None
    server.state.expires_in = 3600
    _wait_past(first["expires_at"] - 0.1)  # inside the refresh margin (10% of 2 s), not yet expired
    resp = chat(sc)
    assert resp["result"]["content"] == "gateway says hi", resp
    assert server.state.refreshes() == 1
    second = stored(keychain)
    assert second is not None and second["access_token"] != first["access_token"]
    assert bearers(server) == [second["access_token"]]  # refreshed before sending: no 401 first


def _wait_past(unix_time: float) -> None:
    import time

    while time.time() < unix_time:
        time.sleep(0.05)


def test_refresh_on_401_then_retry_once(sc: Sidecar, server: OAuthServer, keychain: Path) -> None:
    register(sc, server)
    sign_in(sc, server)
    first = stored(keychain)
    assert first is not None
    assert chat(sc)["result"]["content"] == "gateway says hi"
    server.revoke_access()  # the server drops the access token early
    resp = chat(sc)
    assert resp["result"]["content"] == "gateway says hi", resp
    second = stored(keychain)
    assert second is not None
    assert bearers(server) == [first["access_token"], first["access_token"], second["access_token"]]
    assert server.state.refreshes() == 1


def test_the_local_proxy_and_a_tool_loop_use_the_token(sc: Sidecar, server: OAuthServer, keychain: Path) -> None:
    register(sc, server)
    sign_in(sc, server)
    token = stored(keychain)["access_token"]  # type: ignore[index]
    proxy = sc.call("start_llm_proxy", {"port": 0})
    auth = {"authorization": f"Bearer {proxy['token']}"}
    listed = httpx.get(f"{proxy['url']}/models", headers=auth).json()
    assert "gw:live-model" in [m["id"] for m in listed["data"]]
    answer = httpx.post(f"{proxy['url']}/chat/completions", headers=auth, timeout=30,
                        json={"model": "gw:m", "messages": HI}).json()
    assert answer["choices"][0]["message"]["content"] == "gateway says hi", answer
    loop = sc.call("llm_chat_loop_start", {"model": "gw:m", "messages": HI})
    events = sc.wait_stream_end(loop["stream_id"], timeout=30)
    assert text_of(events) == "gateway says hi" and events[-1]["type"] == "done"
    assert set(bearers(server)) == {token}
    sc.call("stop_llm_proxy")


def test_rotation_saves_each_new_refresh_token(sc: Sidecar, server: OAuthServer, keychain: Path) -> None:
    register(sc, server)
    sign_in(sc, server)
    refresh_tokens = [stored(keychain)["refresh_token"]]  # type: ignore[index]
    for _ in range(2):
        server.revoke_access()
        assert chat(sc)["result"]["content"] == "gateway says hi"
        refresh_tokens.append(stored(keychain)["refresh_token"])  # type: ignore[index]
    assert len(set(refresh_tokens)) == 3  # each refresh rotated it, and the keychain has the newest
    assert refresh_tokens[-1] == server.latest_refresh_token()
    with server.state.lock:
        used = [f["refresh_token"] for f in server.state.token_requests if f["grant_type"] == "refresh_token"]
    assert used == refresh_tokens[:2]  # the second refresh used the rotated token (the old one is revoked)


@pytest.mark.parametrize("n", [10, 20])
def test_bar_concurrent_requests_across_expiry_refresh_once(sc: Sidecar, server: OAuthServer, keychain: Path,
                                                            n: int) -> None:
    server.state.expires_in = 2
    register(sc, server)
    sign_in(sc, server)
    first = stored(keychain)
    assert first is not None
    server.state.expires_in = 3600
    _wait_past(first["expires_at"])  # expired, not merely near its end
    ids = list(range(50_000, 50_000 + n))
    for rid in ids:
        sc.send({"jsonrpc": "2.0", "id": rid, "method": "complete_chat", "params": {"model": "gw:m", "messages": HI}})
    results = [sc.wait_for(lambda m, r=rid: m.get("id") == r, timeout=30) for rid in ids]
    assert all(r.get("result", {}).get("content") == "gateway says hi" for r in results), results
    assert server.state.refreshes() == 1
    fresh = stored(keychain)
    assert fresh is not None and set(bearers(server)) == {fresh["access_token"]}


def test_bar_invalid_grant_signs_out(sc: Sidecar, server: OAuthServer, keychain: Path) -> None:
    register(sc, server)
    sign_in(sc, server)
    server.revoke_refresh()
    server.revoke_access()
    resp = chat(sc)
    err = resp["error"]["data"]
    assert err["code"] == "authentication_failed" and "sign in again" in err["message"], err
    assert sc.call("oauth_status", {"provider": "gw"}) == {"provider": "gw", "signed_in": False}
    assert stored(keychain) is None
    assert next(p for p in sc.call("list_providers") if p["id"] == "gw")["signed_in"] is False
    # a stream is refused the same way, before it starts
    resp = sc.request("llm_stream_text", {"model": "gw:m", "messages": HI})
    assert resp["error"]["data"]["code"] == "authentication_failed"


def test_sign_out(sc: Sidecar, server: OAuthServer, keychain: Path) -> None:
    register(sc, server)
    sign_in(sc, server)
    assert sc.call("oauth_sign_out", {"provider": "gw"}) == {"signed_out": True}
    assert stored(keychain) is None
    assert sc.call("oauth_status", {"provider": "gw"})["signed_in"] is False
    err = chat(sc)["error"]["data"]
    assert err["code"] == "authentication_failed" and "not signed in" in err["message"]
    assert sc.call("oauth_sign_out", {"provider": "gw"}) == {"signed_out": False}


def test_tokens_survive_a_restart(data_dir: Path, keychain: Path, server: OAuthServer) -> None:
    first = spawn(data_dir, keychain)
    try:
        register(first, server)
        sign_in(first, server)
        first.call("shutdown")
        first.wait_exit(10)
    finally:
        first.kill()
    with server.state.lock:
        requests_before = len(server.state.token_requests)
    second = spawn(data_dir, keychain)
    try:
        assert second.call("oauth_status", {"provider": "gw"})["signed_in"] is True
        assert chat(second)["result"]["content"] == "gateway says hi"
        with server.state.lock:
            assert len(server.state.token_requests) == requests_before  # no new sign-in, no refresh
    finally:
        second.kill()


@pytest.mark.skipif(os.environ.get("LLM_SIDECAR_TEST_SECRET_SERVICE") != "1",
                    reason="needs the unlocked gnome-keyring session that scripts/test.sh starts")
def test_tokens_survive_a_restart_in_the_secret_service(data_dir: Path, server: OAuthServer) -> None:
    """The real Secret Service: one entry, ``oauth:gw``, read back with libsecret's own tool."""
    service = f"llm-sidecar-oauth-{os.getpid()}"

    def start() -> Sidecar:
        sc = Sidecar(data_dir, "--keyring-service", service, unset=("PYTHON_KEYRING_BACKEND",))
        sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
        return sc

    first = start()
    try:
        assert first.call("sidecar_info")["keyring_backend"] == "keyring.backends.SecretService.Keyring"
        register(first, server)
        sign_in(first, server)
    finally:
        first.kill()
    out = subprocess.run(["secret-tool", "lookup", "service", service, "username", "oauth:gw"],
                         capture_output=True, text=True, timeout=10).stdout
    assert json.loads(out)["refresh_token"] == server.latest_refresh_token()
    second = start()
    try:
        assert second.call("oauth_status", {"provider": "gw"})["signed_in"] is True
        assert chat(second)["result"]["content"] == "gateway says hi"
        assert second.call("oauth_sign_out", {"provider": "gw"}) == {"signed_out": True}
    finally:
        second.kill()
    assert subprocess.run(["secret-tool", "lookup", "service", service, "username", "oauth:gw"],
                          capture_output=True, text=True, timeout=10).stdout == ""


def test_changing_an_endpoint_host_invalidates_the_tokens(sc: Sidecar, server: OAuthServer, keychain: Path) -> None:
    register(sc, server)
    sign_in(sc, server)
    moved = {"flow": "device", "device_authorization_endpoint": f"http://localhost:{server.port}/device/code",
             "token_endpoint": f"http://localhost:{server.port}/token", "client_id": CLIENT_ID}
    sc.call("configure_provider", {"id": "gw", "oauth": moved})
    assert sc.call("oauth_status", {"provider": "gw"})["signed_in"] is False
    err = chat(sc)["error"]["data"]
    assert err["code"] == "authentication_failed" and "sign in again" in err["message"]
    assert stored(keychain) is None
    assert bearers(server) == []


def test_rpc_cannot_move_a_builtin_sign_in(sc: Sidecar) -> None:
    for change in ({"base_url": "http://127.0.0.1:9/v1"},
                   {"oauth": {"flow": "device", "device_authorization_endpoint": "http://127.0.0.1:9/d",
                              "token_endpoint": "http://127.0.0.1:9/t", "client_id": "x"}}):
        resp = sc.request("configure_provider", {"id": "github-copilot", **change})
        assert resp["error"]["data"]["code"] == "invalid_request", resp
    bad = {"id": "evil", "name": "E", "protocol": "openai", "base_url": "https://example.test/v1",
           "oauth": {"flow": "device", "device_authorization_endpoint": "http://example.test/d",
                     "token_endpoint": "http://example.test/t", "client_id": "x"}}
    assert sc.request("llm_register_custom_provider", bad)["error"]["data"]["code"] == "invalid_request"


# --- GitHub Copilot ------------------------------------------------------------------------------


def test_copilot_device_flow_token_exchange_and_chat(data_dir: Path, keychain: Path, server: OAuthServer) -> None:
    sc = spawn(data_dir, keychain, "--oauth-url", f"github-copilot={server.url}")
    try:
        info = next(p for p in sc.call("list_providers") if p["id"] == "github-copilot")
        assert info["auth"] == "oauth" and info["signed_in"] is False
        started = sc.call("oauth_sign_in_start", {"provider": "github-copilot"})
        wait_event(sc, started["flow_id"], "pending")  # GitHub's HTTP 200 with error: authorization_pending
        with server.state.lock:
            assert server.state.token_requests[0]["client_id"] == COPILOT_CLIENT_ID
        server.decide(started["user_code"])
        assert wait_end(sc, started["flow_id"])["type"] == "signed_in"
        github_token = stored(keychain, "github-copilot")["access_token"]  # type: ignore[index]

        events = sc.stream({"model": "github-copilot:gpt-4.1", "messages": HI})
        assert text_of(events) == "copilot says hi", events
        with server.state.lock:
            call = server.state.api_calls[-1]
            copilot_tokens = list(server.state.copilot)
        assert call["path"] == "/copilot/chat/completions"  # the API base from the exchange's answer
        assert call["headers"]["authorization"] == f"Bearer {copilot_tokens[0]}" != f"Bearer {github_token}"
        assert call["headers"]["copilot-integration-id"] == "vscode-chat"
        assert call["headers"]["editor-version"].startswith("vscode/")
        models = sc.call("llm_list_available_models", {"provider": "github-copilot", "refresh": True})
        assert "github-copilot:claude-sonnet-live" in [m["id"] for m in models]
        assert server.state.exchanges == 1  # the Copilot token is reused while it lives

        with server.state.lock:
            server.state.copilot.clear()  # the Copilot token dies early: 401, exchanged again, retried
        assert chat(sc, "github-copilot:gpt-4.1")["result"]["content"] == "copilot says hi"
        assert server.state.exchanges == 2
        assert_no_token(sc, server, data_dir)
    finally:
        sc.kill()


def test_copilot_revoked_github_token_signs_out(data_dir: Path, keychain: Path, server: OAuthServer) -> None:
    sc = spawn(data_dir, keychain, "--oauth-url", f"github-copilot={server.url}")
    try:
        sign_in(sc, server, "github-copilot")
        server.revoke_access()  # GitHub revoked the app's token: the exchange answers 401
        err = chat(sc, "github-copilot:gpt-4.1")["error"]["data"]
        assert err["code"] == "authentication_failed" and "sign in again" in err["message"]
        assert sc.call("oauth_status", {"provider": "github-copilot"})["signed_in"] is False
    finally:
        sc.kill()



def test_tokens_never_leak(sc: Sidecar, server: OAuthServer, data_dir: Path) -> None:
    """Tokens through every method and error path, with debug logs on: none shows on stdout (answers, events,
    errors), stderr (logs) or in the data dir (the settings hold only which providers are signed in)."""
    server.state.id_token = True
    register(sc, server)
    sign_in(sc, server)
    sc.stream({"model": "gw:m", "messages": HI})
    server.revoke_access()
    chat(sc)  # 401, refresh, retry
    sc.call("llm_list_available_models", {"provider": "gw", "refresh": True})
    assert sc.call("test_provider_connection", {"provider": "gw"})["ok"] is True
    sc.call("list_providers")
    sc.call("oauth_status", {"provider": "gw"})
    sc.call("get_api_key", {"provider": "gw"})
    server.state.forbid = True
    events = sc.stream({"model": "gw:m", "messages": HI})
    assert events[-1]["error"]["code"] == "permission_denied" and "may not chat" in events[-1]["error"]["message"]
    server.state.forbid = False
    server.revoke_refresh()
    server.revoke_access()
    assert chat(sc)["error"]["data"]["code"] == "authentication_failed"  # invalid_grant
    register(sc, server, flow="browser")
    started = sc.call("oauth_sign_in_start", {"provider": "gw"})
    page = httpx.get(httpx.get(started["authorize_url"]).headers["location"])
    assert page.status_code == 200
    wait_end(sc, started["flow_id"])
    sc.call("oauth_sign_out", {"provider": "gw"})
    settings = json.loads((data_dir / "settings.json").read_text())
    assert settings["signed_in"] == []
    sc.call("shutdown")
    sc.wait_exit(10)
    assert_no_token(sc, server, data_dir)


# --- ChatGPT (a ChatGPT plan through the Responses API) --------------------------------------------------


def test_chatgpt_browser_sign_in_and_account_header(data_dir: Path, keychain: Path, server: OAuthServer) -> None:
    """The chatgpt provider's sign-in and backend moved to the loopback server by the app's trusted side: its
    registered redirect (localhost:1455), PKCE, the Codex parameters, and the account id from the ID token's
    claims sent as chatgpt-account-id on the Responses request."""
    server.state.id_token = True
    sc = spawn(data_dir, keychain, "--oauth-url", f"chatgpt={server.url}",
               "--base-url", f"chatgpt={server.url}/backend-api/codex")
    try:
        resp = sc.request("oauth_sign_in_start", {"provider": "chatgpt"})
        if "error" in resp and "1455" in resp["error"]["message"]:
            pytest.skip("port 1455 (the redirect ChatGPT's client registered) is taken on this machine")
        started = resp["result"]
        url = httpx.URL(started["authorize_url"])
        assert str(url).startswith(f"{server.url}/oauth/authorize?")
        query = dict(url.params)
        assert query["redirect_uri"] == CHATGPT_REDIRECT and query["code_challenge_method"] == "S256"
        assert query["codex_cli_simplified_flow"] == "true" and query["id_token_add_organizations"] == "true"
        assert query["scope"] == "openid profile email offline_access"
        callback = httpx.get(started["authorize_url"]).headers["location"]
        assert callback.startswith(CHATGPT_REDIRECT + "?")
        assert httpx.get(callback.replace("localhost", "127.0.0.1")).status_code == 200
        end = wait_end(sc, started["flow_id"])
        assert end["type"] == "signed_in" and end["account"] == ACCOUNT_EMAIL
        events = sc.stream({"model": "chatgpt:gpt-5", "messages": HI})
        assert text_of(events) == "chatgpt says hi", events
        with server.state.lock:
            call = server.state.api_calls[-1]
        assert call["path"] == "/backend-api/codex/responses"
        assert call["headers"]["chatgpt-account-id"] == ACCOUNT_ID
        assert call["headers"]["originator"] == "codex_cli_rs" and call["body"]["store"] is False
        assert_no_token(sc, server, data_dir)
    finally:
        sc.kill()
