"""The proxy's pure parts (translation, the gate's checks) and its self-restart, in process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from sidecar.errors import SidecarError
from sidecar.proxy import security
from sidecar.proxy.translate import ChunkWriter, parse_request, to_params
from sidecar.types import ToolCallEvent, ToolCallStartEvent, Usage


def params(**body: Any) -> Any:
    import json

    return to_params(parse_request(json.dumps({"model": "p:m", "messages": [{"role": "user", "content": "x"}],
                                               **body}).encode()))


def test_request_options_map_to_the_contract() -> None:
    p = params(stop="END", max_tokens=5, max_completion_tokens=7, reasoning_effort="minimal",
               response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}},
               tool_choice={"type": "function", "function": {"name": "f"}}, parallel_tool_calls=False)
    assert p.stop == ["END"] and p.max_tokens == 7 and p.reasoning.effort == "low"
    assert (p.response_format.type, p.response_format.name, p.response_format.schema) == (
        "json_schema", "a", {"type": "object"})
    assert p.tool_choice.name == "f" and p.parallel_tool_calls is False


@pytest.mark.parametrize("body", [
    {"messages": [{"role": "function", "content": "x"}]},
    {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
    {"temperature": "hot"},
    {"n": 3},
    {"messages": [{"role": "tool", "content": "x"}]},
])
def test_what_cannot_be_expressed_is_refused(body: dict[str, Any]) -> None:
    with pytest.raises(SidecarError) as err:
        params(**body)
    assert err.value.code == "invalid_request"


def test_a_tool_call_without_fragments_gets_its_arguments_in_one() -> None:
    w = ChunkWriter("p:m", include_usage=True)
    first = w.event(ToolCallStartEvent(tool_call_id="c1", name="f", index=3))
    assert first is not None and first["choices"][0]["delta"]["tool_calls"][0]["index"] == 0
    whole = w.event(ToolCallEvent(tool_call_id="c1", name="f", arguments={"a": 1}))
    assert whole is not None and whole["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] == '{"a": 1}'
    end = w.finish("other", Usage(input_tokens=2, output_tokens=3))
    assert end[0]["choices"][0]["finish_reason"] == "stop"
    assert end[1]["choices"] == [] and end[1]["usage"]["total_tokens"] == 5


def test_host_and_token_checks() -> None:
    assert security.host_allowed("127.0.0.1:8080", 8080, "127.0.0.1")
    assert security.host_allowed("localhost", 8080, "127.0.0.1")
    assert security.host_allowed("[::1]:8080", 8080, "::1")
    assert not security.host_allowed("127.0.0.1:9999", 8080, "127.0.0.1")
    assert not security.host_allowed("evil.example:8080", 8080, "127.0.0.1")
    assert not security.host_allowed("localhost.evil.example", 8080, "127.0.0.1")
    assert not security.host_allowed(None, 8080, "127.0.0.1")
    assert security.token_ok("Bearer abc", "abc") and security.token_ok("bearer abc", "abc")
    assert not security.token_ok("Basic abc", "abc") and not security.token_ok("Bearer abd", "abc")


class FakeHost:
    """Just what the proxy uses of the RPC server (its ``TaskHost``): spawn, and the end-of-input event."""

    def __init__(self, tg: Any) -> None:
        self.tg = tg
        self.input_closed = anyio.Event()

    def spawn(self, fn: Any) -> None:
        self.tg.start_soon(fn)


def test_the_server_restarts_when_its_task_dies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")
    from sidecar.app import App
    from sidecar.proxy import ProxyManager

    async def main() -> None:
        app = App(tmp_path, "llm-sidecar-test")
        async with anyio.create_task_group() as tg:
            proxy = ProxyManager(app.engine, app.registry, app.credentials, FakeHost(tg))
            url, token = await proxy.ensure_running()
            assert await proxy.ensure_running() == (url, token)
            auth = {"authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(trust_env=False) as client:
                assert (await client.get(f"{url}/models", headers=auth)).status_code == 200
                run = proxy._run
                assert run is not None
                first = run.server
                first.should_exit = True  # the server ends without being asked to stop: a crash
                with anyio.fail_after(5):
                    while run.server is first or not run.server.started:
                        await anyio.sleep(0.05)
                assert proxy.running and proxy.url == url
                assert (await client.get(f"{url}/models", headers=auth)).status_code == 200
            assert await proxy.stop() and not proxy.running
            await app.engine.aclose()

    anyio.run(main)
