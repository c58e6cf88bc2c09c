"""API keys: a real Secret Service, the no-keychain paths, environment fallback, and proof that keys never leak."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import register_upstream
from harness import ROOT, Reply, Sidecar, Upstream, sse

TESTS = str(ROOT / "tests")
REAL_SECRET_SERVICE = os.environ.get("LLM_SIDECAR_TEST_SECRET_SERVICE") == "1"
KEY = "sk-test-Zq7VtY3pLm9KxW2rNc8BdF5hJ1gA6uE4"  # 40 characters of nothing real


def spawn(data_dir: Path, *args: str, backend: str | None, **env: str) -> Sidecar:
    extra = {"PYTHONPATH": TESTS, **env}
    unset = ()
    if backend is None:
        unset = ("PYTHON_KEYRING_BACKEND",)
    else:
        extra["PYTHON_KEYRING_BACKEND"] = backend
    sc = Sidecar(data_dir, *args, env=extra, unset=unset)
    sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
    return sc


def domain_error(resp: dict) -> dict:
    assert resp.get("error", {}).get("code") == -32000, resp
    return resp["error"]["data"]


# --- a real Secret Service (gnome-keyring under dbus-run-session, as .ci/run starts it) -------------

secret_service = pytest.mark.skipif(
    not REAL_SECRET_SERVICE, reason="needs the unlocked gnome-keyring session that the README's test command starts"
)


def secret_tool_lookup(service: str, provider: str) -> str:
    """Read the keychain with libsecret's own tool, not with the code under test."""
    out = subprocess.run(["secret-tool", "lookup", "service", service, "username", provider],
                         capture_output=True, text=True, timeout=10)
    return out.stdout


@secret_service
def test_real_secret_service_round_trip(data_dir: Path, upstream: Upstream) -> None:
    service = f"llm-sidecar-test-{os.getpid()}"
    sc = spawn(data_dir, "--keyring-service", service, backend=None)
    try:
        assert sc.call("sidecar_info")["keyring_backend"] == "keyring.backends.SecretService.Keyring"
        assert sc.call("save_api_key", {"provider": "openai", "api_key": KEY}) == {
            "provider": "openai", "has_api_key": True}
        assert secret_tool_lookup(service, "openai") == KEY
        assert sc.call("get_api_key", {"provider": "openai"}) == {
            "provider": "openai", "has_api_key": True, "source": "keyring", "preview": "sk-…" + KEY[-4:]}
        saved = sc.call("list_saved_providers")
        assert {"provider": "openai", "has_api_key": True, "source": "keyring"} in saved

        # The saved key is what goes upstream, in the Authorization header only.
        register_upstream(sc, upstream, "keyed", requires_api_key=True)
        sc.call("save_api_key", {"provider": "keyed", "api_key": KEY})
        upstream.replies["m"] = Reply(chunks=sse([{"choices": [{"index": 0, "delta": {"content": "ok"},
                                                                 "finish_reason": "stop"}]}]))
        events = sc.stream({"model": "keyed:m", "messages": [{"role": "user", "content": "hi"}]})
        assert events[-1]["type"] == "done"
        assert upstream.seen[-1].headers["authorization"] == f"Bearer {KEY}"

        assert sc.call("delete_api_key", {"provider": "openai"}) == {"deleted": True}
        assert secret_tool_lookup(service, "openai") == ""
        assert sc.call("delete_api_key", {"provider": "openai"}) == {"deleted": False}
        assert sc.call("get_api_key", {"provider": "openai"})["has_api_key"] is False
        sc.call("delete_api_key", {"provider": "keyed"})
    finally:
        sc.kill()


@secret_service
def test_saved_key_survives_a_restart(data_dir: Path) -> None:
    service = f"llm-sidecar-restart-{os.getpid()}"
    sc = spawn(data_dir, "--keyring-service", service, backend=None)
    sc.call("save_api_key", {"provider": "groq", "api_key": KEY})
    sc.kill()
    sc = spawn(data_dir, "--keyring-service", service, backend=None)
    try:
        status = sc.call("get_api_key", {"provider": "groq"})
        assert status["source"] == "keyring" and status["preview"] == "sk-…" + KEY[-4:]
        info = {p["id"]: p for p in sc.call("list_providers")}["groq"]
        assert info["has_api_key"] is True and info["key_source"] == "keyring"
        sc.call("delete_api_key", {"provider": "groq"})
    finally:
        sc.kill()


@pytest.mark.skipif(not shutil.which("dbus-run-session") or not shutil.which("gnome-keyring-daemon"),
                    reason="needs dbus-run-session and gnome-keyring")
def test_locked_secret_service_is_keyring_unavailable(data_dir: Path, tmp_path: Path) -> None:
    """A D-Bus session whose keyring was never unlocked: the prompt cannot show, so the call fails fast."""
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON_KEYRING_BACKEND", "DBUS_SESSION_BUS_ADDRESS")}
    env.update(HOME=str(tmp_path), LLM_SIDECAR_DATA_DIR=str(data_dir))
    requests = (b'{"jsonrpc":"2.0","id":1,"method":"save_api_key","params":{"provider":"openai","api_key":"'
                + KEY.encode() + b'"}}\n')
    out = subprocess.run(["dbus-run-session", "--", sys.executable, "-m", "sidecar"], input=requests,
                         capture_output=True, env=env, timeout=60, cwd=ROOT)
    answers = [line for line in out.stdout.splitlines() if b'"id":1' in line]
    assert len(answers) == 1, out
    assert b'"keyring_unavailable"' in answers[0]
    assert KEY.encode() not in out.stdout + out.stderr


# --- no keychain at all, and a keychain that never answers ---------------------------------------------


def test_no_keychain_is_a_normal_state(data_dir: Path) -> None:
    """Saving needs a keychain (keyring_unavailable); reading without one finds no key (missing_api_key + hint)."""
    sc = spawn(data_dir, backend="keyring.backends.fail.Keyring")
    try:
        data = domain_error(sc.request("save_api_key", {"provider": "openai", "api_key": KEY}))
        assert data["code"] == "keyring_unavailable"
        assert data["retryable"] is False and "retry_after_ms" not in data
        status = sc.call("get_api_key", {"provider": "openai"})
        assert status["has_api_key"] is False and status["source"] is None and status["preview"] is None
        assert status["keychain"] == "unavailable"
        assert "PYTHON_KEYRING_BACKEND" in status["hint"] and "Secret Service" in status["hint"]
        assert sc.call("sidecar_info")["keyring_backend"] is None
        # Nothing was written in plain text instead.
        assert KEY.encode() not in b"".join(p.read_bytes() for p in data_dir.rglob("*") if p.is_file())
        # A stream to a provider that needs a key says which error a frontend prompts on, before any network call.
        resp = sc.request("llm_stream_text", {"model": "openai:gpt-4o",
                                              "messages": [{"role": "user", "content": "x"}]})
        data = domain_error(resp)
        assert data["code"] == "missing_api_key" and data["keychain"] == "unavailable"
        assert "OPENAI_API_KEY" in resp["error"]["message"] and "keychain" in resp["error"]["message"]
        assert not [m for m in sc.messages if str(m.get("method", "")).startswith("llm-stream-")]
        # Deleting needs the keychain too.
        assert domain_error(sc.request("delete_api_key", {"provider": "openai"}))["code"] == "keyring_unavailable"
    finally:
        sc.kill()


def test_no_keychain_but_environment_key_still_works(data_dir: Path) -> None:
    sc = spawn(data_dir, backend="keyring.backends.fail.Keyring", OPENAI_API_KEY=KEY)
    try:
        status = sc.call("get_api_key", {"provider": "openai"})
        assert status == {"provider": "openai", "has_api_key": True, "source": "env", "preview": "sk-…" + KEY[-4:]}
    finally:
        sc.kill()


def test_stuck_keychain_times_out_and_the_sidecar_keeps_serving(data_dir: Path) -> None:
    sc = spawn(data_dir, backend="fake_keyrings.stuck.Keyring")
    try:
        sc.send({"jsonrpc": "2.0", "id": "slow", "method": "get_api_key", "params": {"provider": "openai"}})
        # Other requests are answered while the keychain call hangs.
        assert any(p["id"] == "mock" for p in sc.call("list_providers"))
        resp = sc.wait_for(lambda m: m.get("id") == "slow", timeout=20)
        status = resp["result"]
        assert status["has_api_key"] is False and status["keychain"] == "unavailable"
        assert "did not answer" in status["hint"]
    finally:
        sc.kill()


def test_environment_fallback_and_custom_env_var(data_dir: Path, upstream: Upstream) -> None:
    sc = spawn(data_dir, "--allow-env", "MY_LOCAL_KEY=127.0.0.1", backend="keyring.backends.null.Keyring",
               MY_LOCAL_KEY="local-secret-value-123")
    try:
        register_upstream(sc, upstream, "envy", requires_api_key=True, api_key_env="MY_LOCAL_KEY")
        info = {p["id"]: p for p in sc.call("list_providers")}["envy"]
        assert info["has_api_key"] is True and info["key_source"] == "env"
        upstream.replies["m"] = Reply(chunks=sse([{"choices": [{"index": 0, "delta": {"content": "ok"},
                                                                 "finish_reason": "stop"}]}]))
        events = sc.stream({"model": "envy:m", "messages": [{"role": "user", "content": "hi"}]})
        assert events[-1]["type"] == "done"
        assert upstream.seen[-1].headers["authorization"] == "Bearer local-secret-value-123"
        assert sc.call("list_saved_providers") == [{"provider": "envy", "has_api_key": True, "source": "env"}]
    finally:
        sc.kill()


def test_previews() -> None:
    """CONTRACT: `…` and the last 4, after the first 3 when the key has 20 or more characters."""
    from sidecar.credentials import preview

    assert preview("sk-abcdefghijklmnopqrstuvwxyz") == "sk-…wxyz"
    assert preview("abcdefghij") == "…ghij"
    assert preview("abc") == "…"


# --- keys never leak -------------------------------------------------------------------------


def test_key_never_leaks(data_dir: Path, upstream: Upstream) -> None:
    """Keys go through every method and every error path, with debug logs on; none of it shows the key."""
    sc = spawn(data_dir, "--log-level", "debug", backend="fake_keyrings.memory.Keyring")
    try:
        register_upstream(sc, upstream, "leaky", requires_api_key=True)
        echo = f"Incorrect API key provided: {KEY}. Bearer {KEY}"
        err = {"error": {"message": echo, "type": "invalid_request_error", "code": "invalid_api_key"}}
        import json

        for model, status in (("m401", 401), ("m400", 400), ("m500", 500)):
            upstream.replies[model] = Reply(status=status, chunks=[json.dumps(err).encode()],
                                            headers={"content-type": "application/json"})
        upstream.replies["mid"] = Reply(chunks=sse([{"choices": [{"index": 0, "delta": {"content": "a"}}]},
                                                    err], done=False))
        upstream.replies["/v1/models"] = Reply(status=401, chunks=[json.dumps(err).encode()],
                                               headers={"content-type": "application/json"})

        sc.call("save_api_key", {"provider": "leaky", "api_key": KEY})
        sc.call("set_active_provider", {"provider": "openai", "model": "gpt-4o", "api_key": KEY})
        sc.call("save_api_key", {"provider": "groq", "api_key": KEY})
        assert sc.call("get_api_key", {"provider": "leaky"})["preview"] == "sk-…" + KEY[-4:]
        sc.call("list_providers")
        sc.call("list_saved_providers")
        sc.call("sidecar_info")
        codes = []
        for model in ("m401", "m400", "m500", "mid"):
            events = sc.stream({"model": f"leaky:{model}", "messages": [{"role": "user", "content": "hi"}]})
            codes.append(events[-1]["error"]["code"])
        assert codes == ["authentication_failed", "invalid_request", "upstream_unavailable", "authentication_failed"]
        assert upstream.seen[0].headers["authorization"] == f"Bearer {KEY}"  # it was really used
        result = sc.call("test_provider_connection", {"provider": "leaky"})
        assert result["ok"] is False and result["error"]["code"] == "authentication_failed"
        result = sc.call("test_provider_connection", {"provider": "leaky", "api_key": KEY})
        assert result["ok"] is False
        resp = sc.request("complete_chat", {"model": "leaky:m401", "messages": [{"role": "user", "content": "x"}]})
        assert resp["error"]["data"]["code"] == "authentication_failed"
        # a key in a bad request is not echoed in the -32602 message either
        sc.request("save_api_key", {"provider": "openai", "api_key": KEY, "extra": KEY})
        sc.request("save_api_key", {"provider": "nope", "api_key": KEY})
        sc.call("shutdown")
        sc.wait_exit(5)
    finally:
        sc.kill()
    seen = b"".join(sc.raw_lines) + bytes(sc.stderr)
    assert b"Incorrect API key" in seen  # the upstream's message did arrive, redacted
    for i in range(len(KEY) - 5):
        assert KEY[i:i + 6].encode() not in seen, f"part of the key leaked: {KEY[i:i + 6]!r}"
