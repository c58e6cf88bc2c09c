"""The process and local transports, proven with doubles: a real child process speaking JSON lines
(tests/process_double.py) and a blocking token generator in a worker thread (tests/transport_doubles.py).

The engine runs in this test process (built with a protocol lookup that knows the doubles: a provider's
program is never an RPC param); the children, their pipes, signals and threads are all real.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from transport_doubles import PYTHON, Counters, LocalModel, engine_with, process_protocol, provider

from sidecar.engine import Engine, EventSink
from sidecar.errors import SidecarError
from sidecar.framing import ReadLimits
from sidecar.types import Event, StreamTextParams

pytestmark = pytest.mark.skipif(os.name != "posix", reason="process groups and signals as on POSIX")


def params(content: str | dict[str, Any], **extra: Any) -> StreamTextParams:
    text = content if isinstance(content, str) else json.dumps(content)
    return msgspec.convert({"model": "x:m", "messages": [{"role": "user", "content": text}], **extra},
                           StreamTextParams)


def stream(engine: Engine, prov: Any, request: StreamTextParams,
           abort_when: Callable[[list[dict[str, Any]]], bool] | None = None) -> list[dict[str, Any]]:
    """The stream's events as the frontend would see them (no stream_id/seq); aborts once ``abort_when``."""
    events: list[Event] = []

    async def notify(method: str, event: Event) -> None:
        events.append(event)

    def seen() -> list[dict[str, Any]]:
        return [{k: v for k, v in msgspec.to_builtins(e).items() if k not in ("stream_id", "seq")} for e in events]

    async def main() -> None:
        prepared = await engine.prepare_for(request, prov, "m")
        scope = engine.reserve("s1")
        async with anyio.create_task_group() as tg:
            tg.start_soon(engine.run_stream, prepared, EventSink("s1", notify), scope)
            if abort_when is not None:
                with anyio.fail_after(20):
                    while not abort_when(seen()):
                        await anyio.sleep(0.005)
                assert engine.abort("s1")
        await engine.aclose()

    anyio.run(main)
    return seen()


def text(events: list[dict[str, Any]]) -> str:
    return "".join(e["text"] for e in events if e["type"] == "text_delta")


def gone(pid: int) -> bool:
    """No such process, or (where /proc tells) only its zombie left for init to reap."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        if os.path.isdir("/proc/self"):
            return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def wait_gone(pids: list[int]) -> list[int]:
    """The pids still alive once all are gone or 10 s passed (a grandchild is reaped by init, not by us)."""

    async def poll() -> None:
        with anyio.move_on_after(10):
            while not all(gone(p) for p in pids):
                await anyio.sleep(0.02)

    anyio.run(poll)
    return [p for p in pids if not gone(p)]


def pids_in(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()]


@pytest.fixture
def counters() -> Counters:
    return Counters()


def fresh_engine(tmp_path: Path, doubles: dict[str, Any]) -> Engine:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    return engine_with(data, doubles)


@pytest.fixture
def engine(tmp_path: Path, counters: Counters) -> Engine:
    return fresh_engine(tmp_path, {"double": process_protocol(counters)})


DOUBLE = provider("double", "process", PYTHON)


# --- process ---------------------------------------------------------------------------------


def test_process_streams_json_lines_from_a_fresh_dir_with_only_the_env_given(engine: Engine, tmp_path: Path) -> None:
    seen_file = tmp_path / "seen.json"
    events = stream(engine, DOUBLE, params({"mode": "stream", "text": "one two three", "seenfile": str(seen_file)}))
    assert [e["type"] for e in events] == ["start", "text_delta", "text_delta", "text_delta", "usage", "done"]
    assert text(events) == "one two three "
    assert events[-1]["finish_reason"] == "stop"
    assert events[-1]["usage"] == {"input_tokens": 7, "output_tokens": 3}
    seen = json.loads(seen_file.read_text())
    assert seen["files"] == [] and os.path.basename(seen["cwd"]).startswith("llm-sidecar-")
    assert not os.path.exists(seen["cwd"]), "the temp dir is removed after the run"
    assert seen["env"] == ["LC_ALL", "PATH"], "the child gets the protocol's environment, nothing inherited"


def test_abort_kills_the_process_group(engine: Engine, tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    events = stream(engine, DOUBLE, params({"mode": "hang", "text": "first", "pidfile": str(pidfile)}),
                    abort_when=lambda ev: "ready " in text(ev))
    assert events[-1]["type"] == "error" and events[-1]["error"]["code"] == "cancelled"
    assert text(events) == "first ready "
    pids = pids_in(pidfile)
    assert len(pids) == 2, "the double and the grandchild it started"
    assert gone(pids[0]), "the child is stopped and reaped before the terminal event"
    assert wait_gone(pids) == [], "nothing of the group is left"


def test_a_program_that_lingers_after_its_answer_is_stopped(engine: Engine, tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    events = stream(engine, DOUBLE, params({"mode": "lingers", "text": "a b", "pidfile": str(pidfile)}))
    assert events[-1]["type"] == "done" and text(events) == "a b "
    assert wait_gone(pids_in(pidfile)) == []


def test_exit_before_the_end_goes_through_the_protocols_mapping(engine: Engine) -> None:
    events = stream(engine, DOUBLE, params({"mode": "crash", "text": "first"}))
    assert [e["type"] for e in events] == ["start", "text_delta", "error"]
    err = events[-1]["error"]
    assert (err["code"], err["message"], err["retryable"]) == (
        "upstream_unavailable", "double: exited with status 3", False)


def test_exit_before_the_end_without_a_mapping(tmp_path: Path, counters: Counters) -> None:
    bare = dataclasses.replace(process_protocol(counters), map_process_error=None)
    events = stream(fresh_engine(tmp_path, {"double": bare}), DOUBLE, params({"mode": "crash", "text": "first"}))
    err = events[-1]["error"]
    assert err["code"] == "upstream_unavailable"
    assert err["message"] == "double: the program exited with status 3 before the end of its answer"
    assert "boom" not in json.dumps(events), "stderr never goes into an error unless the protocol puts it there"


def test_a_missing_program_is_not_installed(engine: Engine) -> None:
    missing = provider("double", "process", "/nonexistent/bin/claude-double")
    events = stream(engine, missing, params({"mode": "stream", "text": "a"}))
    assert [e["type"] for e in events] == ["start", "error"]
    err = events[-1]["error"]
    assert err["code"] == "provider_not_installed"
    assert "claude-double" in err["message"] and "/nonexistent" not in err["message"]


def test_the_protocols_check_refuses_before_any_event(tmp_path: Path, counters: Counters) -> None:
    async def check(prov: Any) -> None:
        raise SidecarError("provider_not_installed", "double: install it with: pip install double")

    checked = dataclasses.replace(process_protocol(counters), check=check)
    with pytest.raises(SidecarError) as caught:
        stream(fresh_engine(tmp_path, {"double": checked}), DOUBLE, params({"mode": "stream", "text": "a"}))
    assert caught.value.code == "provider_not_installed"
    assert counters.encoded == 0, "the check comes before anything else"


def test_a_line_over_the_limit_is_a_protocol_error_and_the_child_is_stopped(engine: Engine, tmp_path: Path) -> None:
    engine.read_limits = ReadLimits(max_event_bytes=4096)
    pidfile = tmp_path / "pids"
    events = stream(engine, DOUBLE, params({"mode": "long", "pidfile": str(pidfile)}))
    assert [e["type"] for e in events] == ["start", "error"]
    assert events[-1]["error"]["code"] == "protocol_error"
    assert "4 KiB" in events[-1]["error"]["message"]
    assert wait_gone(pids_in(pidfile)) == []


def test_idle_timeout_stops_a_silent_program(engine: Engine, tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    events = stream(engine, DOUBLE, params({"mode": "idle", "text": "first", "pidfile": str(pidfile)},
                                           timeouts={"idle_ms": 300}))
    assert [e["type"] for e in events] == ["start", "text_delta", "error"]
    err = events[-1]["error"]
    assert err["code"] == "timeout" and "idle_ms" in err["message"]
    assert wait_gone(pids_in(pidfile)) == []


# --- prepare once, warnings ------------------------------------------------------------------------


def test_a_retry_sends_the_request_encoded_once(engine: Engine, counters: Counters, tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    request = {"mode": "fail_once", "text": "a b", "pidfile": str(pidfile), "marker": str(tmp_path / "marker")}
    events = stream(engine, DOUBLE, params(request, retry={"max_retries": 2, "max_delay_ms": 5000}))
    assert [e["type"] for e in events] == ["start", "retry", "text_delta", "text_delta", "usage", "done"]
    assert len(pids_in(pidfile)) == 2, "two runs of the program"
    assert counters.encoded == 1, "the retry reused what prepare encoded"


def test_a_protocol_warning_comes_right_after_start(engine: Engine) -> None:
    events = stream(engine, DOUBLE, params({"mode": "stream", "text": "a", "warn": True}))
    assert [e["type"] for e in events] == ["start", "warning", "text_delta", "usage", "done"]
    assert events[1] == {"type": "warning", "code": "unsupported_setting", "message": "double: seed is ignored"}


# --- local ---------------------------------------------------------------------------------------


@pytest.fixture
def model() -> LocalModel:
    return LocalModel()


@pytest.fixture
def local_engine(tmp_path: Path, model: LocalModel) -> Engine:
    return fresh_engine(tmp_path, {"local-double": model.protocol()})


LOCAL = provider("local-double", "local")


def test_local_streams_from_a_worker_thread(local_engine: Engine, model: LocalModel) -> None:
    events = stream(local_engine, LOCAL, params("a b c"))
    assert [e["type"] for e in events] == ["start", "text_delta", "text_delta", "text_delta", "usage", "done"]
    assert text(events) == "t0 t1 t2 "
    assert events[-1]["usage"] == {"input_tokens": 3, "output_tokens": 3}
    assert model.threads == ["local-local-double"], "generated in the transport's worker thread"


def test_local_abort_stops_generation_and_the_next_request_runs(local_engine: Engine, model: LocalModel) -> None:
    model.token_s = 0.02
    events = stream(local_engine, LOCAL, params("forever"), abort_when=lambda ev: len(text(ev).split()) >= 3)
    assert events[-1]["type"] == "error" and events[-1]["error"]["code"] == "cancelled"
    assert len(model.stopped_at) == 1 and not model.running.is_set(), \
        "the generator was closed before the stream's terminal event"
    emitted = len(text(events).split())
    assert emitted < 10_000
    events = stream(local_engine, LOCAL, params("x y"))
    assert events[-1]["type"] == "done" and text(events) == "t0 t1 "


def test_a_protocol_runs_only_over_its_own_transport(engine: Engine) -> None:
    over_http = provider("double", "http", PYTHON)
    with pytest.raises(SidecarError) as caught:
        stream(engine, over_http, params({"mode": "stream", "text": "a"}))
    assert caught.value.code == "invalid_request"
    assert "runs over the process transport, not http" in caught.value.info.message
