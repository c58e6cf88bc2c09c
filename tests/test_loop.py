"""The tool loop end to end: ``llm_chat_loop_start`` / ``llm_submit_tool_results`` /
``llm_get_loop_messages`` through the real sidecar process, against the harness's HTTP upstream on
127.0.0.1 playing scripted multi-step conversations (the n-th request for a model gets the n-th reply).

What is checked on the wire is the point: that the second and later requests carry the
conversation back the way each protocol wants it (thinking blocks with their exact signatures,
tool_use/tool_result pairs, OpenAI's assistant tool_calls and role-tool messages).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import Reply, Sidecar, Upstream, check_stream_invariants, sse, text_of
from test_anthropic_e2e import delta, finish, frames, message_start, start, stop

KEY = "sk-ant-api03-loop-secret-0123456789abcdef"
KEY_ENV = "MY_LOOP_ANTH_KEY"
NO_RETRY = {"max_retries": 0}
USER = {"role": "user", "content": "What is the weather in Paris, and the time there?"}
TOOLS = [{"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
         {"name": "get_time", "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}}]
DOMAIN_ERROR = -32000


class Script(dict):  # type: ignore[type-arg]
    """``Upstream.replies`` whose values may be lists: the n-th request for a key gets the n-th reply
    (the last one again once the list is used up)."""

    def __init__(self) -> None:
        super().__init__()
        self.count: Counter[str] = Counter()
        self._lock = threading.Lock()

    def get(self, key: str, default: Any = None) -> Any:
        plan = super().get(key)
        if not isinstance(plan, list):
            return plan if plan is not None else default
        with self._lock:
            n = self.count[key]
            self.count[key] += 1
        return plan[min(n, len(plan) - 1)]


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    server.replies = Script()
    yield server
    server.close()


@pytest.fixture(scope="module")
def sidecar(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    """One sidecar for the module: an anthropic provider keyed from the environment, and an openai one."""
    sc = Sidecar(tmp_path_factory.mktemp("data"), "--allow-env", f"{KEY_ENV}=127.0.0.1", env={KEY_ENV: KEY})
    sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
    sc.call("llm_register_custom_provider", {
        "id": "anth", "name": "A", "protocol": "anthropic", "base_url": f"http://127.0.0.1:{upstream.port}",
        "api_key_env": KEY_ENV})
    sc.call("llm_register_custom_provider", {
        "id": "oai", "name": "O", "protocol": "openai", "base_url": upstream.base_url, "requires_api_key": False})
    yield sc
    sc.kill()
    assert sc.bad_lines == [], "stdout carried a line that is not JSON"
    assert KEY.encode() not in b"".join(sc.raw_lines), "the key never goes to the frontend"


# --- helpers -----------------------------------------------------------------------------------------


def begin(sc: Sidecar, model: str, **params: Any) -> tuple[str, str]:
    """Start a loop; return (loop_id, stream_id)."""
    sid = f"loop-{uuid.uuid4().hex[:10]}"
    result = sc.call("llm_chat_loop_start", {"model": model, "messages": [USER], "tools": TOOLS,
                                             "retry": NO_RETRY, "stream_id": sid, **params})
    assert result["stream_id"] == sid and isinstance(result["loop_id"], str) and result["loop_id"]
    return result["loop_id"], sid


def wait_requested(sc: Sidecar, sid: str, step: int) -> dict[str, Any]:
    found = sc.wait_for(lambda m: m.get("method") == f"llm-stream-{sid}"
                        and m["params"]["type"] in ("tool_calls_requested", "done", "error")
                        and m["params"].get("step", step) == step)
    assert found["params"]["type"] == "tool_calls_requested", found
    return found["params"]


def ended(sc: Sidecar, sid: str, timeout: float = 15) -> list[dict[str, Any]]:
    sc.wait_stream_end(sid, timeout=timeout)
    sc.call("sidecar_info")  # a round trip: anything wrongly sent after the terminal event is in by now
    events = sc.events(sid)
    check_stream_invariants(events)
    return events


def submit(sc: Sidecar, loop_id: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    return sc.request("llm_submit_tool_results", {"loop_id": loop_id, "results": results})


def domain_error(resp: dict[str, Any]) -> tuple[str, str]:
    assert "error" in resp, resp
    assert resp["error"]["code"] == DOMAIN_ERROR, resp
    return resp["error"]["data"]["code"], resp["error"]["message"]


def bodies(upstream: Upstream, model: str) -> list[Any]:
    return [s.body for s in upstream.seen if isinstance(s.body, dict) and s.body.get("model") == model]


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def messages_of(sc: Sidecar, loop_id: str) -> dict[str, Any]:
    return sc.call("llm_get_loop_messages", {"loop_id": loop_id})


# openai-protocol chunks


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "chatcmpl-loop", "object": "chat.completion.chunk", "created": 1754432618, "model": "gpt-test",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def usage_chunk(prompt: int, completion: int) -> dict[str, Any]:
    return {"id": "chatcmpl-loop", "object": "chat.completion.chunk", "created": 1754432618, "model": "gpt-test",
            "choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                                     "total_tokens": prompt + completion}}


def tc(index: int, args: str, id_: str | None = None, name: str | None = None) -> dict[str, Any]:
    call: dict[str, Any] = {"index": index, "function": {"arguments": args}}
    if id_:
        call.update(id=id_, type="function")
        call["function"]["name"] = name
    return chunk({"tool_calls": [call]})


def oai_tool_step(*calls: tuple[str, str, dict[str, Any]], text: str = "", usage: tuple[int, int] = (10, 5)) -> Reply:
    """One call after the other, each with its arguments in two pieces."""
    payloads = [chunk({"role": "assistant", "content": text or None})]
    for i, (id_, name, args) in enumerate(calls):
        raw = json.dumps(args)
        payloads += [tc(i, "", id_, name), tc(i, raw[:4]), tc(i, raw[4:])]
    payloads += [chunk({}, "tool_calls"), usage_chunk(*usage)]
    return Reply(chunks=sse(payloads))


def oai_text_step(text: str, usage: tuple[int, int] = (30, 4)) -> Reply:
    return Reply(chunks=sse([chunk({"role": "assistant", "content": ""}), chunk({"content": text}),
                             chunk({}, "stop"), usage_chunk(*usage)]))


# --- (1) the bar: two steps on the anthropic protocol --------------------------------------------

SIG = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pk+/loop=="


def test_two_step_anthropic_loop_sends_thinking_and_tool_results_back(sidecar: Sidecar, upstream: Upstream) -> None:
    upstream.replies["m-two"] = [
        Reply(chunks=frames(
            message_start(40), start(0, type="thinking", thinking="", signature=""),
            delta(0, type="thinking_delta", thinking="Two lookups. "), delta(0, type="thinking_delta", thinking="Go."),
            delta(0, type="signature_delta", signature=SIG), stop(0),
            start(1, type="tool_use", id="toolu_w", name="get_weather", input={}),
            delta(1, type="input_json_delta", partial_json='{"city": "Pa'),
            delta(1, type="input_json_delta", partial_json='ris"}'), stop(1),
            start(2, type="tool_use", id="toolu_t", name="get_time", input={}),
            delta(2, type="input_json_delta", partial_json='{"tz": "Europe/Paris"}'), stop(2),
            *finish("tool_use", 60))),
        Reply(chunks=frames(
            message_start(120), start(0, type="text", text=""),
            delta(0, type="text_delta", text="Sunny, 21 C; "), delta(0, type="text_delta", text="it is noon."),
            stop(0), *finish("end_turn", 12))),
    ]
    loop_id, sid = begin(sidecar, "anth:m-two", reasoning={"budget_tokens": 2048}, max_tokens=4096)

    requested = wait_requested(sidecar, sid, 1)
    assert requested["loop_id"] == loop_id
    assert requested["calls"] == [
        {"tool_call_id": "toolu_w", "name": "get_weather", "arguments": {"city": "Paris"}},
        {"tool_call_id": "toolu_t", "name": "get_time", "arguments": {"tz": "Europe/Paris"}},
    ]
    waiting = messages_of(sidecar, loop_id)
    assert (waiting["state"], waiting["step"]) == ("waiting_for_tools", 1)
    assert waiting["pending_tool_calls"] == requested["calls"]
    assert len(bodies(upstream, "m-two")) == 1, "nothing goes upstream before the results are in"

    # in the other order: the tool messages still follow the order of the calls
    assert submit(sidecar, loop_id, [
        {"tool_call_id": "toolu_t", "content": "12:00"},
        {"tool_call_id": "toolu_w", "content": [{"type": "text", "text": "Sunny, 21 C"}]},
    ])["result"] == {"accepted": True}
    events = ended(sidecar, sid)

    # the second request carries the whole conversation back
    first, second = bodies(upstream, "m-two")
    assert first["messages"] == [{"role": "user", "content": USER["content"]}]
    assert second["messages"] == [
        {"role": "user", "content": USER["content"]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "Two lookups. Go.", "signature": SIG},
            {"type": "tool_use", "id": "toolu_w", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_t", "name": "get_time", "input": {"tz": "Europe/Paris"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_w", "content": [{"type": "text", "text": "Sunny, 21 C"}]},
            {"type": "tool_result", "tool_use_id": "toolu_t", "content": "12:00"},
        ]},
    ]
    assert second["thinking"] == first["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert second["tools"] == first["tools"]

    # the events: both steps on one stream, one seq, no step's done, one terminal
    t = types(events)
    assert t == ["step_start", "start", "reasoning_delta", "reasoning_delta", "reasoning_end",
                 "tool_call_start", "tool_call_delta", "tool_call_delta", "tool_call",
                 "tool_call_start", "tool_call_delta", "tool_call", "usage", "tool_calls_requested",
                 "step_start", "start", "text_delta", "text_delta", "usage", "done"]
    assert [e["step"] for e in events if e["type"] == "step_start"] == [1, 2]
    assert events[4]["signature"] == SIG
    assert text_of(events) == "Sunny, 21 C; it is noon."
    done = events[-1]
    assert (done["finish_reason"], done["model"]) == ("stop", "anth:m-two")
    assert done["usage"] == {"input_tokens": 160, "output_tokens": 72}
    assert done["latency_ms"] > 0 and 0 < done["ttft_ms"] <= done["latency_ms"]

    # (8) the conversation, field by field, for the frontend to persist
    final = messages_of(sidecar, loop_id)
    assert final == {"loop_id": loop_id, "stream_id": sid, "state": "done", "step": 2, "messages": [
        USER,
        {"role": "assistant", "content": [
            {"type": "reasoning", "text": "Two lookups. Go.", "signature": SIG},
            {"type": "tool_call", "id": "toolu_w", "name": "get_weather", "arguments": {"city": "Paris"}},
            {"type": "tool_call", "id": "toolu_t", "name": "get_time", "arguments": {"tz": "Europe/Paris"}},
        ]},
        {"role": "tool", "tool_call_id": "toolu_w", "content": [{"type": "text", "text": "Sunny, 21 C"}]},
        {"role": "tool", "tool_call_id": "toolu_t", "content": "12:00"},
        {"role": "assistant", "content": [{"type": "text", "text": "Sunny, 21 C; it is noon."}]},
    ]}
    # an ended loop takes no results
    code, msg = domain_error(submit(sidecar, loop_id, [{"tool_call_id": "toolu_w", "content": "x"}]))
    assert code == "invalid_request" and "ended" in msg


# --- (2) three steps on the openai protocol, a parallel pair first ------------------------------------


def test_three_step_openai_loop_with_parallel_calls(sidecar: Sidecar, upstream: Upstream) -> None:
    interleaved = [chunk({"role": "assistant", "content": None}),
                   tc(0, "", "call_a", "get_weather"), tc(1, "", "call_b", "get_weather"),
                   tc(0, '{"city": '), tc(1, '{"city": "Ly'), tc(0, '"Paris"}'), tc(1, 'on"}'),
                   chunk({}, "tool_calls"), usage_chunk(10, 20)]
    upstream.replies["m-three"] = [
        Reply(chunks=sse(interleaved)),
        oai_tool_step(("call_c", "get_time", {"tz": "CET"}), text="Now the time.", usage=(50, 8)),
        oai_text_step("Both sunny; 12:00.", usage=(80, 6)),
    ]
    loop_id, sid = begin(sidecar, "oai:m-three")

    step1 = wait_requested(sidecar, sid, 1)
    assert step1["calls"] == [
        {"tool_call_id": "call_a", "name": "get_weather", "arguments": {"city": "Paris"}},
        {"tool_call_id": "call_b", "name": "get_weather", "arguments": {"city": "Lyon"}},
    ]
    assert submit(sidecar, loop_id, [{"tool_call_id": "call_a", "content": "sunny"},
                                     {"tool_call_id": "call_b", "content": "also sunny"}])["result"]["accepted"]
    step2 = wait_requested(sidecar, sid, 2)
    assert step2["calls"] == [{"tool_call_id": "call_c", "name": "get_time", "arguments": {"tz": "CET"}}]
    assert submit(sidecar, loop_id, [{"tool_call_id": "call_c", "content": [{"type": "text", "text": "12:00"}],
                                      "is_error": False}])["result"] == {"accepted": True}
    events = ended(sidecar, sid)

    b1, b2, b3 = bodies(upstream, "m-three")
    call_ab = [{"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": ANY_JSON}},
               {"id": "call_b", "type": "function", "function": {"name": "get_weather", "arguments": ANY_JSON}}]
    after_1 = [{"role": "user", "content": USER["content"]},
               {"role": "assistant", "content": None, "tool_calls": call_ab},
               {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
               {"role": "tool", "tool_call_id": "call_b", "content": "also sunny"}]
    assert b1["messages"] == after_1[:1]
    assert b2["messages"] == after_1
    assert [json.loads(c["function"]["arguments"]) for c in b2["messages"][1]["tool_calls"]] == [
        {"city": "Paris"}, {"city": "Lyon"}]
    assert b3["messages"][:4] == after_1
    assert b3["messages"][4:] == [
        {"role": "assistant", "content": "Now the time.", "tool_calls": [
            {"id": "call_c", "type": "function", "function": {"name": "get_time", "arguments": ANY_JSON}}]},
        {"role": "tool", "tool_call_id": "call_c", "content": "12:00"},
    ]
    assert json.loads(b3["messages"][4]["tool_calls"][0]["function"]["arguments"]) == {"tz": "CET"}
    assert all(b["tools"] == b1["tools"] for b in (b2, b3))

    # (7) one seq over the three steps, one terminal event, no step's done
    assert [e["seq"] for e in events] == list(range(len(events)))
    t = types(events)
    assert t.count("done") == 1 and t.count("error") == 0 and t[-1] == "done"
    assert [e["step"] for e in events if e["type"] == "step_start"] == [1, 2, 3]
    assert [e["step"] for e in events if e["type"] == "tool_calls_requested"] == [1, 2]
    assert t.count("start") == 3 and t.count("usage") == 3
    # each step's start follows its step_start
    assert all(t[i + 1] == "start" for i, x in enumerate(t) if x == "step_start")
    assert [e["tool_call_id"] for e in events if e["type"] == "tool_call_start"] == ["call_a", "call_b", "call_c"]
    assert text_of(events) == "Now the time.Both sunny; 12:00."
    done = events[-1]
    assert (done["finish_reason"], done["model"]) == ("stop", "oai:m-three")
    assert done["usage"] == {"input_tokens": 140, "output_tokens": 34}

    final = messages_of(sidecar, loop_id)
    assert (final["state"], final["step"]) == ("done", 3)
    assert "pending_tool_calls" not in final and "error" not in final
    assert [m["role"] for m in final["messages"]] == ["user", "assistant", "tool", "tool", "assistant", "tool",
                                                      "assistant"]
    assert final["messages"][4] == {"role": "assistant", "content": [
        {"type": "text", "text": "Now the time."},
        {"type": "tool_call", "id": "call_c", "name": "get_time", "arguments": {"tz": "CET"}}]}
    assert final["messages"][5] == {"role": "tool", "tool_call_id": "call_c",
                                    "content": [{"type": "text", "text": "12:00"}], "is_error": False}
    assert final["messages"][6] == {"role": "assistant", "content": [{"type": "text", "text": "Both sunny; 12:00."}]}


class _AnyJson:
    """Equal to any string that holds JSON (the arguments' exact spacing is the encoder's business)."""

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, str):
            return False
        try:
            json.loads(other)
        except ValueError:
            return False
        return True

    def __repr__(self) -> str:
        return "<any JSON string>"


ANY_JSON = _AnyJson()


# --- (3) abort while waiting, (4) max_steps, (5) the tool timeout --------------------------------------


def test_abort_while_waiting_for_tool_results(sidecar: Sidecar, upstream: Upstream) -> None:
    upstream.replies["m-abort"] = [oai_tool_step(("call_x", "get_time", {"tz": "UTC"}))]
    loop_id, sid = begin(sidecar, "oai:m-abort")
    wait_requested(sidecar, sid, 1)
    assert sidecar.call("llm_abort_stream", {"stream_id": sid}) == {"aborted": True}
    events = ended(sidecar, sid)
    assert events[-1]["type"] == "error" and events[-1]["error"]["code"] == "cancelled"
    assert types(events).count("error") == 1

    state = messages_of(sidecar, loop_id)
    assert (state["state"], state["step"]) == ("cancelled", 1)
    assert state["error"]["code"] == "cancelled"
    assert "pending_tool_calls" not in state
    assert [m["role"] for m in state["messages"]] == ["user", "assistant"]
    code, _ = domain_error(submit(sidecar, loop_id, [{"tool_call_id": "call_x", "content": "late"}]))
    assert code == "invalid_request"
    assert sidecar.call("llm_abort_stream", {"stream_id": sid}) == {"aborted": False}
    assert len(bodies(upstream, "m-abort")) == 1


def test_abort_mid_step(sidecar: Sidecar, upstream: Upstream) -> None:
    upstream.replies["m-abort-mid"] = Reply(chunks=sse([chunk({"role": "assistant", "content": "Thinking"})],
                                                       done=False), hang=True)
    loop_id, sid = begin(sidecar, "oai:m-abort-mid")
    sidecar.wait_for(lambda m: m.get("method") == f"llm-stream-{sid}" and m["params"]["type"] == "text_delta")
    assert sidecar.call("llm_abort_stream", {"stream_id": sid}) == {"aborted": True}
    events = ended(sidecar, sid)
    assert events[-1]["error"]["code"] == "cancelled"
    state = messages_of(sidecar, loop_id)
    assert state["state"] == "cancelled"
    assert state["messages"] == [USER], "a step cut short adds no assistant turn"


def test_max_steps_reached_while_the_model_still_calls_tools(sidecar: Sidecar, upstream: Upstream) -> None:
    upstream.replies["m-max"] = [oai_tool_step(("call_1", "get_time", {"tz": "UTC"}), usage=(10, 1)),
                                 oai_tool_step(("call_2", "get_time", {"tz": "CET"}), usage=(20, 2))]
    loop_id, sid = begin(sidecar, "oai:m-max", max_steps=2)
    wait_requested(sidecar, sid, 1)
    assert submit(sidecar, loop_id, [{"tool_call_id": "call_1", "content": "00:00"}])["result"]["accepted"]
    events = ended(sidecar, sid)
    done = events[-1]
    assert (done["type"], done["finish_reason"], done["model"]) == ("done", "max_steps", "oai:m-max")
    assert done["usage"] == {"input_tokens": 30, "output_tokens": 3}
    assert [e["step"] for e in events if e["type"] == "tool_calls_requested"] == [1], "no request at the last step"
    assert [e["tool_call_id"] for e in events if e["type"] == "tool_call"] == ["call_1", "call_2"]
    assert len(bodies(upstream, "m-max")) == 2

    state = messages_of(sidecar, loop_id)
    assert (state["state"], state["step"]) == ("done", 2)
    assert [m["role"] for m in state["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert state["messages"][-1]["content"] == [
        {"type": "tool_call", "id": "call_2", "name": "get_time", "arguments": {"tz": "CET"}}]


def test_tool_timeout_ends_the_loop(sidecar: Sidecar, upstream: Upstream) -> None:
    upstream.replies["m-slow-tools"] = [oai_tool_step(("call_s", "get_time", {"tz": "UTC"}))]
    t0 = time.monotonic()
    loop_id, sid = begin(sidecar, "oai:m-slow-tools", tool_timeout_ms=300)
    wait_requested(sidecar, sid, 1)
    events = ended(sidecar, sid, timeout=10)
    assert time.monotonic() - t0 < 5
    err = events[-1]
    assert err["type"] == "error" and err["error"]["code"] == "timeout"
    assert "300 ms" in err["error"]["message"]
    state = messages_of(sidecar, loop_id)
    assert (state["state"], state["error"]["code"]) == ("error", "timeout")
    code, _ = domain_error(submit(sidecar, loop_id, [{"tool_call_id": "call_s", "content": "late"}]))
    assert code == "invalid_request"


# --- (6) every refusal of llm_submit_tool_results ----------------------------------------------------


def test_submit_errors(sidecar: Sidecar, upstream: Upstream) -> None:
    # an unknown loop
    code, msg = domain_error(submit(sidecar, "no-such-loop", [{"tool_call_id": "x", "content": "y"}]))
    assert code == "not_found" and "no-such-loop" in msg
    assert domain_error(sidecar.request("llm_get_loop_messages", {"loop_id": "no-such-loop"}))[0] == "not_found"
    # params that do not decode
    bad = sidecar.request("llm_submit_tool_results", {"loop_id": "x"})
    assert bad["error"]["code"] == -32602 and "results" in bad["error"]["message"]
    bad = sidecar.request("llm_submit_tool_results", {"loop_id": "x", "results": [{"tool_call_id": "a"}]})
    assert bad["error"]["code"] == -32602 and "content" in bad["error"]["message"]

    upstream.replies["m-errors"] = [
        oai_tool_step(("call_p", "get_weather", {"city": "Paris"}), ("call_q", "get_time", {"tz": "CET"})),
        Reply(chunks=sse([chunk({"role": "assistant", "content": "ok"})], done=False), delay=0.5, hang=True),
    ]
    loop_id, sid = begin(sidecar, "oai:m-errors")
    wait_requested(sidecar, sid, 1)
    p = {"tool_call_id": "call_p", "content": "sunny"}
    q = {"tool_call_id": "call_q", "content": "12:00"}
    refusals = {
        "unknown id": [p, q, {"tool_call_id": "call_zzz", "content": "?"}],
        "missing": [p],
        "none": [],
        "twice": [p, p, q],
        "a tool_call part": [p, {"tool_call_id": "call_q", "content": [
            {"type": "tool_call", "id": "c", "name": "n", "arguments": {}}]}],
    }
    for why, results in refusals.items():
        code, msg = domain_error(submit(sidecar, loop_id, results))
        assert code == "invalid_request", why
        assert messages_of(sidecar, loop_id)["state"] == "waiting_for_tools", f"{why}: a refusal changes nothing"
    assert "call_zzz" in domain_error(submit(sidecar, loop_id, refusals["unknown id"]))[1]
    assert "call_q" in domain_error(submit(sidecar, loop_id, refusals["missing"]))[1]

    assert submit(sidecar, loop_id, [q, p])["result"] == {"accepted": True}
    # the loop runs step 2 now (its upstream hangs): not waiting, so a second answer is refused
    sidecar.wait_for(lambda m: m.get("method") == f"llm-stream-{sid}" and m["params"].get("step") == 2)
    code, msg = domain_error(submit(sidecar, loop_id, [p, q]))
    assert code == "invalid_request" and "not waiting" in msg
    assert messages_of(sidecar, loop_id)["state"] == "running"
    assert sidecar.call("llm_abort_stream", {"stream_id": sid}) == {"aborted": True}
    assert ended(sidecar, sid)[-1]["error"]["code"] == "cancelled"
    code, msg = domain_error(submit(sidecar, loop_id, [p, q]))
    assert code == "invalid_request" and "ended" in msg


# --- starting ---------------------------------------------------------------------------------------------


def test_errors_before_the_network_are_the_response(sidecar: Sidecar) -> None:
    sid = f"loop-{uuid.uuid4().hex[:10]}"
    resp = sidecar.request("llm_chat_loop_start", {"model": "nope:x", "messages": [USER], "stream_id": sid})
    assert domain_error(resp)[0] == "unknown_provider"
    resp = sidecar.request("llm_chat_loop_start", {"model": "mock:echo", "messages": [USER], "max_steps": 0})
    assert resp["error"]["code"] == -32602 and "max_steps" in resp["error"]["message"]
    resp = sidecar.request("llm_chat_loop_start", {"model": "mock:echo", "messages": [], "stream_id": sid})
    assert domain_error(resp)[0] == "invalid_request"
    sidecar.call("sidecar_info")
    assert sidecar.events(sid) == [], "no event for a loop that never started"
    # the id was released: it can be used now
    result = sidecar.call("llm_chat_loop_start", {"model": "mock:echo", "messages": [USER], "stream_id": sid})
    assert ended(sidecar, sid)[-1]["type"] == "done"
    assert messages_of(sidecar, result["loop_id"])["state"] == "done"


def test_a_running_stream_id_is_refused(sidecar: Sidecar) -> None:
    sid = f"loop-{uuid.uuid4().hex[:10]}"
    slow = {"model": "mock:echo", "messages": [USER], "stream_id": sid, "provider_options": {"chunk_delay_ms": 20}}
    sidecar.call("llm_stream_text", slow)
    code, msg = domain_error(sidecar.request("llm_chat_loop_start", slow))
    assert code == "invalid_request" and "already running" in msg
    ended(sidecar, sid)


def test_mock_loop_is_one_step(sidecar: Sidecar) -> None:
    result = sidecar.call("llm_chat_loop_start", {"model": "mock:echo", "messages": [USER], "tools": TOOLS})
    sid, loop_id = result["stream_id"], result["loop_id"]
    events = ended(sidecar, sid)
    assert types(events)[:2] == ["step_start", "start"] and events[0]["step"] == 1
    assert text_of(events) == USER["content"]
    done = events[-1]
    assert (done["type"], done["finish_reason"], done["model"]) == ("done", "stop", "mock:echo")
    assert "tool_calls_requested" not in types(events)
    final = messages_of(sidecar, loop_id)
    assert final["messages"] == [USER, {"role": "assistant", "content": [{"type": "text", "text": USER["content"]}]}]
    assert (final["state"], final["step"]) == ("done", 1)


def test_upstream_error_in_a_later_step(sidecar: Sidecar, upstream: Upstream) -> None:
    upstream.replies["m-later-error"] = [
        oai_tool_step(("call_e", "get_time", {"tz": "UTC"})),
        Reply(status=400, chunks=[b'{"error": {"message": "bad tool result", "type": "invalid_request_error"}}'],
              headers={"content-type": "application/json"}),
    ]
    loop_id, sid = begin(sidecar, "oai:m-later-error")
    wait_requested(sidecar, sid, 1)
    submit(sidecar, loop_id, [{"tool_call_id": "call_e", "content": "x", "is_error": True}])
    events = ended(sidecar, sid)
    assert events[-1]["type"] == "error" and events[-1]["error"]["status"] == 400
    assert "bad tool result" in events[-1]["error"]["message"]
    state = messages_of(sidecar, loop_id)
    assert (state["state"], state["step"]) == ("error", 2)
    assert state["messages"][-1] == {"role": "tool", "tool_call_id": "call_e", "content": "x", "is_error": True}


def test_ended_loops_are_kept_for_a_while(sidecar: Sidecar) -> None:
    first = sidecar.call("llm_chat_loop_start", {"model": "mock:echo", "messages": [USER]})
    ended(sidecar, first["stream_id"])
    later = []
    for _ in range(49):
        r = sidecar.call("llm_chat_loop_start", {"model": "mock:echo", "messages": [USER]})
        later.append(r)
    for r in later:
        ended(sidecar, r["stream_id"])
    assert messages_of(sidecar, first["loop_id"])["state"] == "done"  # other tests' loops went before it
    for _ in range(60):
        r = sidecar.call("llm_chat_loop_start", {"model": "mock:echo", "messages": [USER]})
        ended(sidecar, r["stream_id"])
    assert domain_error(sidecar.request("llm_get_loop_messages", {"loop_id": first["loop_id"]}))[0] == "not_found"
    assert messages_of(sidecar, r["loop_id"])["state"] == "done"


# --- the process ends while a loop waits -----------------------------------------------------------------


def stopping_sidecar(tmp_path: Path, upstream: Upstream) -> Sidecar:
    sc = Sidecar(tmp_path, "--drain-timeout", "30")
    sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
    sc.call("llm_register_custom_provider", {"id": "oai", "name": "O", "protocol": "openai",
                                             "base_url": upstream.base_url, "requires_api_key": False})
    return sc


@pytest.mark.parametrize("how", ["eof", "shutdown"])
def test_a_waiting_loop_ends_when_the_sidecar_stops(tmp_path: Path, upstream: Upstream, how: str) -> None:
    sc = stopping_sidecar(tmp_path, upstream)
    try:
        upstream.replies[f"m-stop-{how}"] = [oai_tool_step(("call_w", "get_time", {"tz": "UTC"}))]
        _, sid = begin(sc, f"oai:m-stop-{how}")
        wait_requested(sc, sid, 1)
        t0 = time.monotonic()
        if how == "eof":
            sc.close_stdin()  # no result can come any more: the loop gives up at once, not at the drain timeout
        else:
            sc.request("shutdown")
        assert sc.wait_exit(10) == 0
        assert time.monotonic() - t0 < 5
        events = sc.events(sid)
        check_stream_invariants(events)
        assert events[-1]["type"] == "error" and events[-1]["error"]["code"] == "cancelled"
        assert sc.bad_lines == []
    finally:
        sc.kill()


def test_results_sent_just_before_eof_still_count(tmp_path: Path, upstream: Upstream) -> None:
    sc = stopping_sidecar(tmp_path, upstream)
    try:
        upstream.replies["m-last-words"] = [oai_tool_step(("call_l", "get_time", {"tz": "UTC"})),
                                            oai_text_step("It is midnight.")]
        loop_id, sid = begin(sc, "oai:m-last-words")
        wait_requested(sc, sid, 1)
        sc.send({"jsonrpc": "2.0", "id": "last", "method": "llm_submit_tool_results",
                 "params": {"loop_id": loop_id, "results": [{"tool_call_id": "call_l", "content": "00:00"}]}})
        sc.close_stdin()  # at once: the request above was read before the end, so it is served and the loop goes on
        assert sc.wait_exit(10) == 0
        assert sc.wait_for(lambda m: m.get("id") == "last")["result"] == {"accepted": True}
        events = sc.events(sid)
        check_stream_invariants(events)
        assert (events[-1]["type"], events[-1]["finish_reason"]) == ("done", "stop")
        assert text_of(events) == "It is midnight."
    finally:
        sc.kill()
