"""``mock:script``: the offline provider that plays back ``provider_options.script``, through the real
sidecar process. Step n answers a conversation that already holds n assistant turns, so a tool loop
advances step by step and ends when the script does; a bad script is refused before any event.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from harness import Sidecar, check_stream_invariants, text_of

USER = {"role": "user", "content": "What is the weather in Paris?"}
TOOLS = [{"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
NO_RETRY = {"max_retries": 0}
DOMAIN_ERROR = -32000
HEAD = ("stream_id", "seq")


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    sc = Sidecar(tmp_path_factory.mktemp("data"))
    sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
    yield sc
    sc.kill()
    assert sc.bad_lines == []


def req(script: Any, *messages: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"model": "mock:script", "messages": list(messages or [USER]),
            "provider_options": {"script": script}, **more}


def bare(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events without their stream head (stream_id, seq) and without the timing of ``done``."""
    out = []
    for e in events:
        e = {k: v for k, v in e.items() if k not in HEAD}
        if e["type"] == "done":
            e.pop("latency_ms"), e.pop("ttft_ms", None)
        out.append(e)
    return out


def domain_error(resp: dict[str, Any]) -> tuple[str, str]:
    assert "result" not in resp, resp
    assert resp["error"]["code"] == DOMAIN_ERROR, resp
    return resp["error"]["data"]["code"], resp["error"]["data"]["message"]


# --- one step, streamed ---------------------------------------------------------------------------


def test_a_step_streams_reasoning_then_text_then_tool_calls(sidecar: Sidecar) -> None:
    step = {"reasoning": "Weather: ask", "text": "Let me check.",
            "tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}],
            "usage": {"input_tokens": 12, "output_tokens": 34, "reasoning_tokens": 5}}
    events = sidecar.stream(req([step], tools=TOOLS))
    check_stream_invariants(events)
    usage = {"input_tokens": 12, "output_tokens": 34, "reasoning_tokens": 5}
    assert bare(events) == [
        {"type": "start", "provider": "mock", "model": "mock:script"},
        {"type": "reasoning_delta", "text": "Weat"},
        {"type": "reasoning_delta", "text": "her:"},
        {"type": "reasoning_delta", "text": " ask"},
        {"type": "reasoning_end"},
        {"type": "text_delta", "text": "Let "},
        {"type": "text_delta", "text": "me c"},
        {"type": "text_delta", "text": "heck"},
        {"type": "text_delta", "text": "."},
        {"type": "tool_call_start", "tool_call_id": "mock_0_0", "name": "get_weather", "index": 0},
        {"type": "tool_call_delta", "tool_call_id": "mock_0_0", "arguments_delta": '{"ci'},
        {"type": "tool_call_delta", "tool_call_id": "mock_0_0", "arguments_delta": 'ty":'},
        {"type": "tool_call_delta", "tool_call_id": "mock_0_0", "arguments_delta": '"Par'},
        {"type": "tool_call_delta", "tool_call_id": "mock_0_0", "arguments_delta": 'is"}'},
        {"type": "tool_call", "tool_call_id": "mock_0_0", "name": "get_weather", "arguments": {"city": "Paris"}},
        {"type": "usage", **usage},
        {"type": "done", "finish_reason": "tool_calls", "usage": usage, "model": "mock:script"},
    ]


def test_text_as_a_list_is_one_delta_per_item_and_finish_reason_is_the_scripts(sidecar: Sidecar) -> None:
    events = sidecar.stream(req([{"text": ["Hé", "llo wörld", "!"], "finish_reason": "length"}]))
    assert [e["text"] for e in events if e["type"] == "text_delta"] == ["Hé", "llo wörld", "!"]
    done = events[-1]
    assert (done["type"], done["finish_reason"]) == ("done", "length")


def test_parallel_tool_calls_keep_their_order_and_given_ids(sidecar: Sidecar) -> None:
    step = {"tool_calls": [{"name": "a", "arguments": {}, "id": "call_A"}, {"name": "b"}]}
    events = sidecar.stream(req([step]))
    check_stream_invariants(events)
    starts = [(e["tool_call_id"], e["name"], e["index"]) for e in events if e["type"] == "tool_call_start"]
    assert starts == [("call_A", "a", 0), ("mock_0_1", "b", 1)]
    calls = [(e["tool_call_id"], e["arguments"]) for e in events if e["type"] == "tool_call"]
    assert calls == [("call_A", {}), ("mock_0_1", {})]


def test_default_usage_is_an_estimate_of_prompt_and_answer(sidecar: Sidecar) -> None:
    events = sidecar.stream(req([{"text": "12345678"}], {"role": "user", "content": "abcdefghijkl"}))
    assert events[-1]["usage"] == {"input_tokens": 3, "output_tokens": 2}  # about 4 characters a token


def test_the_step_is_the_number_of_assistant_turns_so_far(sidecar: Sidecar) -> None:
    script = [{"text": "first"}, {"text": "second"}, {"text": "third"}]
    history = [USER, {"role": "assistant", "content": "first"}, {"role": "user", "content": "and?"}]
    assert text_of(sidecar.stream(req(script, *history))) == "second"
    history += [{"role": "assistant", "content": [{"type": "text", "text": "second"}]},
                {"role": "user", "content": "?"}]
    assert text_of(sidecar.stream(req(script, *history))) == "third"


def test_past_the_end_of_the_script_the_answer_is_empty(sidecar: Sidecar) -> None:
    events = sidecar.stream(req([{"text": "only"}], USER, {"role": "assistant", "content": "only"}, USER))
    assert [e["type"] for e in events] == ["start", "usage", "done"]
    assert events[-1]["finish_reason"] == "stop" and events[-1]["usage"]["output_tokens"] == 0


# --- errors ---------------------------------------------------------------------------------------------


def test_an_error_step_ends_the_stream_with_that_error(sidecar: Sidecar) -> None:
    step = {"error": {"code": "context_length_exceeded", "message": "prompt is too long"}}
    events = sidecar.stream(req([step]))
    check_stream_invariants(events)
    assert bare(events) == [
        {"type": "start", "provider": "mock", "model": "mock:script"},
        {"type": "error", "error": {"code": "context_length_exceeded", "message": "prompt is too long",
                                    "retryable": False, "provider": "mock"}},
    ]


def test_an_error_after_text_comes_after_the_text(sidecar: Sidecar) -> None:
    step = {"text": "Partial answ", "error": {"code": "network_error", "message": "connection dropped"}}
    events = sidecar.stream(req([step]))
    assert [e["type"] for e in events] == ["start", "text_delta", "text_delta", "text_delta", "error"]
    assert text_of(events) == "Partial answ"
    assert events[-1]["error"] == {"code": "network_error", "message": "connection dropped", "retryable": True,
                                   "provider": "mock"}


def test_a_retryable_error_is_retried_like_any_providers(sidecar: Sidecar) -> None:
    step = {"error": {"code": "rate_limited", "message": "slow down"}}
    events = sidecar.stream(req([step], retry={"max_retries": 1}))
    assert [e["type"] for e in events] == ["start", "retry", "error"]
    assert events[1]["reason"] == "rate_limited"
    assert events[-1]["error"]["code"] == "rate_limited" and events[-1]["error"]["retryable"] is True
    no_retry = sidecar.stream(req([{"error": {**step["error"], "retryable": False}}], retry={"max_retries": 1}))
    assert [e["type"] for e in no_retry] == ["start", "error"] and no_retry[-1]["error"]["retryable"] is False


def test_complete_chat_plays_the_step_and_its_error(sidecar: Sidecar) -> None:
    step = {"reasoning": "hmm", "text": "Sunny, 21 °C.",
            "tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}],
            "usage": {"input_tokens": 7, "output_tokens": 9}}
    result = sidecar.call("complete_chat", req([step]))
    assert result == {
        "content": "Sunny, 21 °C.",
        "parts": [{"type": "reasoning", "text": "hmm"}, {"type": "text", "text": "Sunny, 21 °C."},
                  {"type": "tool_call", "id": "mock_0_0", "name": "get_weather", "arguments": {"city": "Paris"}}],
        "finish_reason": "tool_calls",
        "usage": {"input_tokens": 7, "output_tokens": 9},
        "model": "mock:script",
    }
    code, msg = domain_error(sidecar.request("complete_chat", req([{"error": {"code": "content_filtered",
                                                                              "message": "blocked"}}])))
    assert (code, msg) == ("content_filtered", "blocked")


def test_an_aborted_slow_step_ends_cancelled(sidecar: Sidecar) -> None:
    sid = "slow-script"
    sidecar.call("llm_stream_text", req([{"text": "x" * 400, "delay_ms": 50}], stream_id=sid))
    sidecar.wait_for(lambda m: m.get("method") == f"llm-stream-{sid}" and m["params"]["type"] == "text_delta")
    assert sidecar.call("llm_abort_stream", {"stream_id": sid}) == {"aborted": True}
    events = sidecar.wait_stream_end(sid)
    assert events[-1]["type"] == "error" and events[-1]["error"]["code"] == "cancelled"
    assert len(text_of(events)) < 400


# --- bad scripts: refused before any event, naming the place ----------------------------------------------


@pytest.mark.parametrize(("script", "where", "what"), [
    ({"text": "hi"}, "`provider_options.script`", "Expected `array`, got `object`"),
    ([{"text": 5}], "`provider_options.script[0].text`", "Expected `str | array`, got `int`"),
    ([{"text": "ok"}, {"tool_calls": [{"arguments": {}}]}], "`provider_options.script[1].tool_calls[0]`",
     "missing required field `name`"),
    ([{"tool_calls": [{"name": "f", "arguments": "{}"}]}], "`provider_options.script[0].tool_calls[0].arguments`",
     "Expected `object`, got `str`"),
    ([{"error": {"code": "teapot", "message": "x"}}], "`provider_options.script[0].error.code`", "Invalid enum"),
    ([{"finish_reason": "done"}], "`provider_options.script[0].finish_reason`", "Invalid enum"),
    ([{"usage": {"input_tokens": "3"}}], "`provider_options.script[0].usage.input_tokens`", "Expected `int`"),
    ([{"delay_ms": -1}], "`provider_options.script[0].delay_ms`", "Expected `float` >= 0"),
    ([{"txt": "typo"}], "`provider_options.script[0]`", "unknown field `txt`"),
])
def test_a_bad_script_is_invalid_request_naming_the_path(
    sidecar: Sidecar, script: Any, where: str, what: str
) -> None:
    sid = f"bad-{abs(hash(where + what))}"
    for method in ("llm_stream_text", "complete_chat", "llm_chat_loop_start"):
        code, msg = domain_error(sidecar.request(method, req(script, stream_id=sid)))
        assert code == "invalid_request" and where in msg and what in msg, msg
    assert sidecar.events(sid) == [], "nothing streamed"


def test_no_script_or_an_unknown_mock_model(sidecar: Sidecar) -> None:
    code, msg = domain_error(sidecar.request("llm_stream_text", {"model": "mock:script", "messages": [USER]}))
    assert code == "invalid_request" and "provider_options.script" in msg
    code, msg = domain_error(sidecar.request("llm_stream_text", {"model": "mock:scripted", "messages": [USER]}))
    assert code == "unknown_model" and "'scripted'" in msg


def test_the_model_is_listed(sidecar: Sidecar) -> None:
    models = sidecar.call("llm_list_available_models", {"provider": "mock"})
    assert {m["id"]: m.get("supports_tools") for m in models} == {"mock:echo": False, "mock:script": True,
                                                                  "mock:embed": None}


# --- the tool loop, offline -------------------------------------------------------------------------------


TWO_STEPS = [
    {"text": "Checking.", "tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]},
    {"text": "It is sunny in Paris.", "usage": {"input_tokens": 40, "output_tokens": 6}},
]


def test_a_two_step_tool_loop_runs_offline(sidecar: Sidecar) -> None:
    started = sidecar.call("llm_chat_loop_start", req(TWO_STEPS, tools=TOOLS))
    loop_id, sid = started["loop_id"], started["stream_id"]
    asked = sidecar.wait_for(lambda m: m.get("method") == f"llm-stream-{sid}"
                             and m["params"]["type"] == "tool_calls_requested")["params"]
    assert (asked["loop_id"], asked["step"]) == (loop_id, 1)
    assert asked["calls"] == [{"tool_call_id": "mock_0_0", "name": "get_weather", "arguments": {"city": "Paris"}}]
    ok = sidecar.call("llm_submit_tool_results", {"loop_id": loop_id, "results": [
        {"tool_call_id": "mock_0_0", "content": '{"sky": "sunny", "c": 21}'}]})
    assert ok == {"accepted": True}
    events = sidecar.wait_stream_end(sid)
    check_stream_invariants(events)
    assert [e["step"] for e in events if e["type"] == "step_start"] == [1, 2]
    assert text_of(events) == "Checking.It is sunny in Paris."
    done = events[-1]
    assert (done["type"], done["finish_reason"], done["model"]) == ("done", "stop", "mock:script")
    # step 1's estimate (29 prompt characters; 9 + 11 + 16 answer characters, ~4 a token) + step 2's own
    assert done["usage"] == {"input_tokens": 8 + 40, "output_tokens": 9 + 6}
    final = sidecar.call("llm_get_loop_messages", {"loop_id": loop_id})
    assert (final["state"], final["step"]) == ("done", 2)
    assert final["messages"] == [
        USER,
        {"role": "assistant", "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_call", "id": "mock_0_0", "name": "get_weather", "arguments": {"city": "Paris"}}]},
        {"role": "tool", "tool_call_id": "mock_0_0", "content": '{"sky": "sunny", "c": 21}'},
        {"role": "assistant", "content": [{"type": "text", "text": "It is sunny in Paris."}]},
    ]


def test_a_loops_usage_adds_up_the_costs_its_steps_report(sidecar: Sidecar) -> None:
    steps = [{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}],
              "usage": {"input_tokens": 10, "output_tokens": 2, "cost_usd": 0.0125}},
             {"text": "Snow.", "usage": {"input_tokens": 20, "output_tokens": 3, "cost_usd": 0.0250}}]
    started = sidecar.call("llm_chat_loop_start", req(steps, tools=TOOLS))
    loop_id, sid = started["loop_id"], started["stream_id"]
    sidecar.wait_for(lambda m: m.get("method") == f"llm-stream-{sid}" and m["params"]["type"] == "tool_calls_requested")
    sidecar.call("llm_submit_tool_results", {"loop_id": loop_id, "results": [
        {"tool_call_id": "mock_0_0", "content": "snow"}]})
    done = sidecar.wait_stream_end(sid)[-1]
    assert done["usage"]["input_tokens"] == 30 and done["usage"]["output_tokens"] == 5
    assert done["usage"]["cost_usd"] == pytest.approx(0.0375)


def test_a_loop_ends_when_its_script_does(sidecar: Sidecar) -> None:
    calls_only = [{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]}]
    started = sidecar.call("llm_chat_loop_start", req(calls_only, tools=TOOLS))
    loop_id, sid = started["loop_id"], started["stream_id"]
    sidecar.wait_for(lambda m: m.get("method") == f"llm-stream-{sid}" and m["params"]["type"] == "tool_calls_requested")
    sidecar.call("llm_submit_tool_results", {"loop_id": loop_id, "results": [
        {"tool_call_id": "mock_0_0", "content": "snow"}]})
    events = sidecar.wait_stream_end(sid)
    assert (events[-1]["type"], events[-1]["finish_reason"]) == ("done", "stop")
    assert [e["step"] for e in events if e["type"] == "step_start"] == [1, 2]


def test_an_error_step_ends_the_loop_with_it(sidecar: Sidecar) -> None:
    script = [TWO_STEPS[0], {"error": {"code": "content_filtered", "message": "refused"}}]
    started = sidecar.call("llm_chat_loop_start", req(script, tools=TOOLS, retry=NO_RETRY))
    loop_id, sid = started["loop_id"], started["stream_id"]
    sidecar.wait_for(lambda m: m.get("method") == f"llm-stream-{sid}" and m["params"]["type"] == "tool_calls_requested")
    sidecar.call("llm_submit_tool_results", {"loop_id": loop_id, "results": [
        {"tool_call_id": "mock_0_0", "content": "?"}]})
    events = sidecar.wait_stream_end(sid)
    assert events[-1]["type"] == "error" and events[-1]["error"]["code"] == "content_filtered"
    assert sidecar.call("llm_get_loop_messages", {"loop_id": loop_id})["state"] == "error"
