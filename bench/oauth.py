"""What signing in costs a request: complete_chat with a signed-in provider's token beside the same request with
the same token saved as an API key, against one loopback server; and a refresh across an expiry with N requests
waiting on it.

    python bench/oauth.py [--requests N] [--concurrent N] [--write]

The server is the tests' authlib authorization server (tests/oauth_server.py; it also serves the OpenAI-style
chat API the token opens), in this process; the sidecar is a real ``python -m sidecar`` over pipes with a file
keychain (tests/fake_keyrings/file.py), debug logs off. Both providers point at the same server and send the
same bearer token, so the difference is the token lookup (the sign-in's in-memory cache and expiry check) and
nothing else. Then the access token is made to expire (issued for 2 s) and --concurrent complete_chat calls are
sent at once after its end: the figure is the wall time until all answered (one refresh at the token endpoint,
which is counted and must be 1).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from harness import Sidecar  # noqa: E402
from oauth_server import CLIENT_ID, OAuthServer  # noqa: E402

HI = [{"role": "user", "content": "hi"}]


def median_ms(sc: Sidecar, model: str, n: int) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        resp = sc.request("complete_chat", {"model": model, "messages": HI}, timeout=30)
        times.append((time.perf_counter() - t) * 1000)
        assert resp["result"]["content"] == "gateway says hi", resp
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--concurrent", type=int, default=20)
    p.add_argument("--write", action="store_true", help="replace the figures in bench/README.md")
    args = p.parse_args()
    server = OAuthServer()
    tmp = Path(tempfile.mkdtemp(prefix="bench-oauth-"))
    env = {"PYTHONPATH": str(ROOT / "tests"), "PYTHON_KEYRING_BACKEND": "fake_keyrings.file.Keyring",
           "FAKE_KEYRING_FILE": str(tmp / "keychain.json")}
    (tmp / "data").mkdir()
    sc = Sidecar(tmp / "data", env=env)
    try:
        sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
        oauth = {"flow": "device", "device_authorization_endpoint": f"{server.url}/device/code",
                 "token_endpoint": f"{server.url}/token", "client_id": CLIENT_ID, "scopes": ["chat"]}
        base = {"name": "Gateway", "protocol": "openai", "base_url": f"{server.url}/v1"}
        sc.call("llm_register_custom_provider", {"id": "gw", **base, "oauth": oauth})
        started = sc.call("oauth_sign_in_start", {"provider": "gw"})
        server.decide(started["user_code"])
        sc.wait_for(lambda m: m.get("method") == f"oauth-{started['flow_id']}" and m["params"]["type"] == "signed_in")
        token = json.loads(json.loads((tmp / "keychain.json").read_text())["llm-sidecar/oauth:gw"])["access_token"]
        sc.call("llm_register_custom_provider", {"id": "keyed", **base})
        sc.call("save_api_key", {"provider": "keyed", "api_key": token})
        median_ms(sc, "gw:m", 20)  # warm-up: connections, imports
        median_ms(sc, "keyed:m", 20)
        keyed = median_ms(sc, "keyed:m", args.requests)
        signed = median_ms(sc, "gw:m", args.requests)

        server.state.expires_in = 2
        server.revoke_access()
        median_ms(sc, "gw:m", 1)  # 401, refresh: the new token lives 2 s
        server.state.expires_in = 3600
        entry = json.loads(json.loads((tmp / "keychain.json").read_text())["llm-sidecar/oauth:gw"])
        while time.time() < entry["expires_at"]:
            time.sleep(0.02)
        before = server.state.refreshes()
        ids = list(range(90_000, 90_000 + args.concurrent))
        t = time.perf_counter()
        for rid in ids:
            sc.send({"jsonrpc": "2.0", "id": rid, "method": "complete_chat", "params": {"model": "gw:m",
                                                                                        "messages": HI}})
        for rid in ids:
            assert "result" in sc.wait_for(lambda m, r=rid: m.get("id") == r, timeout=30)
        burst = (time.perf_counter() - t) * 1000
        refreshes = server.state.refreshes() - before
        assert refreshes == 1, refreshes
    finally:
        sc.kill()
        server.close()
    lines = [
        "| figure | value |",
        "|---|---|",
        f"| complete_chat median, saved API key ({args.requests} sequential) | {keyed:.2f} ms |",
        f"| complete_chat median, signed-in token ({args.requests} sequential) | {signed:.2f} ms |",
        f"| {args.concurrent} concurrent complete_chat right after the token expired: all answered | "
        f"{burst:.1f} ms, {refreshes} refresh |",
    ]
    section = "\n".join(lines)
    print(section)
    if args.write:
        from readme import write_section

        intro = ("## Signing in (OAuth)\n\n`.venv/bin/python bench/oauth.py [--write]` (method in its docstring): "
                 "a signed-in provider's request beside the same request with a saved key, and a refresh that "
                 "concurrent requests wait on.")
        write_section("oauth", section, intro)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "bench"))
    main()
