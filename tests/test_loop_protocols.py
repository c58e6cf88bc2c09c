"""The tool loop end to end on the Gemini, Ollama and Cohere protocols (test_loop covers Anthropic and
OpenAI): the real sidecar process against the harness's HTTP upstream on 127.0.0.1 playing scripted
three-step conversations in each protocol's own wire format.

Each loop: step 1 answers with reasoning and a parallel pair of tool calls in one response, step 2 with
one tool call, step 3 with the final text. What is checked is what matters for a loop: that
``tool_calls_requested`` lists the right calls with parsed arguments, that the second and third request
carry the assistant turns (with their tool calls, and their reasoning the way the protocol takes it back)
and the tool results in the protocol's native form and in order, and that the loop ends with one ``done``
whose usage is the sum of the steps'.

How each protocol takes reasoning back (what the encoders do, pinned here):

- Gemini: thought summaries go back as ``thought: true`` text parts of the ``model`` turn, and a step's
  ``thoughtSignature`` goes back on the first ``functionCall`` part of that step.
- Ollama: the thinking goes back as the assistant message's ``thinking`` field.
- Cohere: next to tool calls, reasoning (a thinking block as well as a tool plan) goes back as the
  assistant message's ``tool_plan``. ``is_error`` of a tool result is not carried (Cohere and Ollama
  tool messages have no such field); Gemini sends it as ``response.error`` instead of ``response.content``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from harness import Reply, Sidecar, Upstream, text_of
from test_loop import ANY_JSON, USER, Script, begin, ended, messages_of, submit, types, wait_requested

GEM_KEY = "AIzaSyLoop-0123456789abcdefGEMSECRET"
GEM_KEY_ENV = "MY_LOOP_GEM_KEY"
CO_KEY = "co-loop-0123456789abcdefCOHERESECRET"
CO_KEY_ENV = "MY_LOOP_CO_KEY"
NDJSON = {"content-type": "application/x-ndjson"}


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    server.replies = Script()
    yield server
    server.close()


@pytest.fixture(scope="module")
def sidecar(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    """One sidecar for the module: a gemini and a cohere provider keyed from the environment, an ollama one
    without a key, all three on the same loopback upstream."""
    sc = Sidecar(tmp_path_factory.mktemp("data"), "--allow-env", f"{GEM_KEY_ENV}=127.0.0.1",
                 "--allow-env", f"{CO_KEY_ENV}=127.0.0.1", env={GEM_KEY_ENV: GEM_KEY, CO_KEY_ENV: CO_KEY})
    sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
    root = f"http://127.0.0.1:{upstream.port}"
    sc.call("llm_register_custom_provider", {"id": "gem", "name": "G", "protocol": "gemini",
                                             "base_url": f"{root}/v1beta", "api_key_env": GEM_KEY_ENV})
    sc.call("llm_register_custom_provider", {"id": "oll", "name": "O", "protocol": "ollama", "base_url": root,
                                             "requires_api_key": False})
    sc.call("llm_register_custom_provider", {"id": "co", "name": "C", "protocol": "cohere", "base_url": root,
                                             "api_key_env": CO_KEY_ENV})
    yield sc
    sc.kill()
    assert sc.bad_lines == [], "stdout carried a line that is not JSON"
    out = b"".join(sc.raw_lines)
    assert GEM_KEY.encode() not in out and CO_KEY.encode() not in out, "a key never goes to the frontend"


def seen_at(upstream: Upstream, path: str, model: str | None = None) -> list[Any]:
    """The requests that went to ``path`` (for ``model``, when the model is in the body), in order."""
    return [s for s in upstream.seen if s.path == path and (model is None or s.body.get("model") == model)]


def requested_calls(event: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(c["name"], c["arguments"]) for c in event["calls"]]


def finished(sc: Sidecar, sid: str) -> list[dict[str, Any]]:
    """test_loop's ``ended`` but for the uniqueness of tool call ids on the stream (see
    test_gemini_call_ids_are_unique_across_steps): seq, one terminal event, each start with its call."""
    sc.wait_stream_end(sid)
    sc.call("sidecar_info")  # a round trip: anything wrongly sent after the terminal event is in by now
    events = sc.events(sid)
    assert [e["seq"] for e in events] == list(range(len(events)))
    terminal = [e for e in events if e["type"] in ("done", "error")]
    assert len(terminal) == 1 and events[-1] is terminal[0]
    starts = Counter(e["tool_call_id"] for e in events if e["type"] == "tool_call_start")
    assert starts == Counter(e["tool_call_id"] for e in events if e["type"] == "tool_call")
    return events


def check_loop_events(events: list[dict[str, Any]], steps: int) -> None:
    """One seq over all steps, one terminal event (a done), no step's own done."""
    assert [e["seq"] for e in events] == list(range(len(events)))
    t = types(events)
    assert t.count("done") == 1 and t.count("error") == 0 and t[-1] == "done"
    assert [e["step"] for e in events if e["type"] == "step_start"] == list(range(1, steps + 1))
    assert [e["step"] for e in events if e["type"] == "tool_calls_requested"] == list(range(1, steps))
    assert t.count("start") == steps and t.count("usage") == steps
    assert all(t[i + 1] == "start" for i, x in enumerate(t) if x == "step_start")


def total(*usages: dict[str, int]) -> dict[str, int]:
    """The loop's usage: each count summed over the steps that report it."""
    out: dict[str, int] = {}
    for u in usages:
        for k, v in u.items():
            out[k] = out.get(k, 0) + v
    return out


# --- Gemini: SSE, the model in the path, the key in x-goog-api-key ------------------------------------

GEM_MODEL = "gemini-3-flash-preview"
GEM_PATH = f"/v1beta/models/{GEM_MODEL}:streamGenerateContent?alt=sse"
SIG1 = "CiQB0e2Kb7loopSignatureOne+/AAAA=="
SIG2 = "CiQB0e2Kb7loopSignatureTwo+/BBBB=="


def gemini_sse(*payloads: dict[str, Any]) -> Reply:
    """``data:`` lines only, CRLF CRLF between events, no end marker (the finishReason ends a stream)."""
    return Reply(chunks=[b"data: " + json.dumps(p).encode() + b"\r\n\r\n" for p in payloads])


def gem_chunk(*parts: dict[str, Any], finish: str | None = None, usage: dict[str, int] | None = None
              ) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": list(parts)}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    chunk: dict[str, Any] = {"candidates": [candidate], "modelVersion": GEM_MODEL, "responseId": "loop"}
    if usage:
        counted = ("promptTokenCount", "candidatesTokenCount", "thoughtsTokenCount")
        chunk["usageMetadata"] = {**usage, "totalTokenCount": sum(usage.get(k, 0) for k in counted)}
    return chunk


def test_three_step_gemini_loop(sidecar: Sidecar, upstream: Upstream) -> None:
    u1 = {"promptTokenCount": 40, "candidatesTokenCount": 20, "thoughtsTokenCount": 30}
    u2 = {"promptTokenCount": 120, "candidatesTokenCount": 10}
    u3 = {"promptTokenCount": 160, "candidatesTokenCount": 8, "cachedContentTokenCount": 100}
    upstream.replies[GEM_PATH] = [
        # thought summaries, then the parallel pair in one content, the step's signature on the first call
        gemini_sse(
            gem_chunk({"text": "Time and weather: ", "thought": True}),
            gem_chunk({"text": "two lookups.", "thought": True}),
            gem_chunk({"functionCall": {"name": "get_time", "args": {"tz": "Europe/Paris"}}, "thoughtSignature": SIG1},
                      {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}),
            gem_chunk({"text": ""}, finish="STOP", usage=u1)),
        gemini_sse(
            gem_chunk({"text": "Now Lyon."}),
            gem_chunk({"functionCall": {"name": "get_weather", "args": {"city": "Lyon"}}, "thoughtSignature": SIG2},
                      finish="STOP", usage=u2)),
        gemini_sse(gem_chunk({"text": "Paris: sunny at 12:00; "}),
                   gem_chunk({"text": "no data for Lyon."}, finish="STOP", usage=u3)),
    ]
    loop_id, sid = begin(sidecar, f"gem:{GEM_MODEL}", reasoning={"budget_tokens": 1024})

    # Gemini sends no call ids: the sidecar makes them up (read from the events, so that a fix of
    # test_gemini_call_ids_are_unique_across_steps does not break this test)
    step1 = wait_requested(sidecar, sid, 1)
    assert step1["loop_id"] == loop_id
    assert requested_calls(step1) == [("get_time", {"tz": "Europe/Paris"}), ("get_weather", {"city": "Paris"})]
    id_t, id_w = (c["tool_call_id"] for c in step1["calls"])
    assert submit(sidecar, loop_id, [{"tool_call_id": id_w, "content": [{"type": "text", "text": "sunny"}]},
                                     {"tool_call_id": id_t, "content": "12:00"}])["result"] == {"accepted": True}
    step2 = wait_requested(sidecar, sid, 2)
    assert requested_calls(step2) == [("get_weather", {"city": "Lyon"})]
    [id_l] = (c["tool_call_id"] for c in step2["calls"])
    assert submit(sidecar, loop_id, [{"tool_call_id": id_l, "content": "no station in Lyon",
                                      "is_error": True}])["result"]["accepted"]
    events = finished(sidecar, sid)

    r1, r2, r3 = seen_at(upstream, GEM_PATH)
    for r in (r1, r2, r3):
        assert r.method == "POST" and r.headers["x-goog-api-key"] == GEM_KEY
        assert GEM_KEY not in r.path
        assert r.body["generationConfig"]["thinkingConfig"] == {"includeThoughts": True, "thinkingBudget": 1024}
        assert r.body["tools"] == r1.body["tools"]
    user = {"role": "user", "parts": [{"text": USER["content"]}]}
    after_1 = [
        user,
        # the thought summary as a thought part, the step's signature on its first call
        {"role": "model", "parts": [
            {"text": "Time and weather: two lookups.", "thought": True},
            {"functionCall": {"id": id_t, "name": "get_time", "args": {"tz": "Europe/Paris"}},
             "thoughtSignature": SIG1},
            {"functionCall": {"id": id_w, "name": "get_weather", "args": {"city": "Paris"}}},
        ]},
        # both results in one user turn, in the order of the calls, each named after its call
        {"role": "user", "parts": [
            {"functionResponse": {"id": id_t, "name": "get_time", "response": {"content": "12:00"}}},
            {"functionResponse": {"id": id_w, "name": "get_weather", "response": {"content": "sunny"}}},
        ]},
    ]
    assert r1.body["contents"] == [user]
    assert r2.body["contents"] == after_1
    assert r3.body["contents"] == [
        *after_1,
        {"role": "model", "parts": [
            {"text": "Now Lyon."},
            {"functionCall": {"id": id_l, "name": "get_weather", "args": {"city": "Lyon"}},
             "thoughtSignature": SIG2},
        ]},
        # named get_weather even where the id is the one step 1's get_time had; a failed tool is "error"
        {"role": "user", "parts": [
            {"functionResponse": {"id": id_l, "name": "get_weather", "response": {"error": "no station in Lyon"}}},
        ]},
    ]

    check_loop_events(events, 3)
    t = types(events)
    assert t[:t.index("tool_calls_requested") + 1] == [
        "step_start", "start", "reasoning_delta", "reasoning_delta", "reasoning_end",
        "tool_call_start", "tool_call_delta", "tool_call", "tool_call_start", "tool_call_delta", "tool_call",
        "usage", "tool_calls_requested"]
    assert [e["signature"] for e in events if e["type"] == "reasoning_end"] == [SIG1, SIG2]
    assert text_of(events) == "Now Lyon.Paris: sunny at 12:00; no data for Lyon."
    done = events[-1]
    assert (done["finish_reason"], done["model"]) == ("stop", f"gem:{GEM_MODEL}")
    # input = prompt, output = candidates + thoughts, reasoning = thoughts, cached = cachedContent
    assert done["usage"] == {
        "input_tokens": 40 + 120 + 160, "output_tokens": (20 + 30) + 10 + 8,
        "reasoning_tokens": 30, "cached_input_tokens": 100}

    final = messages_of(sidecar, loop_id)
    assert (final["state"], final["step"]) == ("done", 3)
    assert [m["role"] for m in final["messages"]] == ["user", "assistant", "tool", "tool", "assistant", "tool",
                                                      "assistant"]
    assert final["messages"][1]["content"][0] == {"type": "reasoning", "text": "Time and weather: two lookups.",
                                                  "signature": SIG1}
    assert final["messages"][4]["content"] == [
        {"type": "reasoning", "text": "", "signature": SIG2},
        {"type": "text", "text": "Now Lyon."},
        {"type": "tool_call", "id": id_l, "name": "get_weather", "arguments": {"city": "Lyon"}}]
    assert final["messages"][5] == {"role": "tool", "tool_call_id": id_l, "content": "no station in Lyon",
                                    "is_error": True}


def test_gemini_call_ids_are_unique_across_steps(sidecar: Sidecar, upstream: Upstream) -> None:
    path = "/v1beta/models/gemini-2.5-flash-ids:streamGenerateContent?alt=sse"
    usage = {"promptTokenCount": 10, "candidatesTokenCount": 2}
    upstream.replies[path] = [
        gemini_sse(gem_chunk({"functionCall": {"name": "get_time", "args": {"tz": "UTC"}}}, finish="STOP",
                             usage=usage)),
        gemini_sse(gem_chunk({"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}}, finish="STOP",
                             usage=usage)),
        gemini_sse(gem_chunk({"text": "Done."}, finish="STOP", usage=usage)),
    ]
    loop_id, sid = begin(sidecar, "gem:gemini-2.5-flash-ids")
    first = wait_requested(sidecar, sid, 1)["calls"][0]["tool_call_id"]
    assert submit(sidecar, loop_id, [{"tool_call_id": first, "content": "00:00"}])["result"]["accepted"]
    second = wait_requested(sidecar, sid, 2)["calls"][0]["tool_call_id"]
    assert submit(sidecar, loop_id, [{"tool_call_id": second, "content": "snow"}])["result"]["accepted"]
    events = finished(sidecar, sid)
    assert events[-1]["type"] == "done"
    # the conversation the frontend persists, and may send to another provider: one id, one call
    ids = [p["id"] for m in messages_of(sidecar, loop_id)["messages"] if m["role"] == "assistant"
           for p in m["content"] if p["type"] == "tool_call"]
    assert len(ids) == 2 and first != second, f"both steps' calls are {first!r}"
    ended(sidecar, sid)  # the stream's invariants: a tool_call_id once per stream


# --- Ollama: NDJSON /api/chat, no key ------------------------------------------------------------------

OLL_MODEL = "qwen3-loop:8b"


def oll_line(content: str = "", *, thinking: str | None = None, tool_calls: list[Any] | None = None
             ) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking is not None:
        message["thinking"] = thinking
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    return {"model": OLL_MODEL, "created_at": "2025-08-01T10:00:00Z", "message": message, "done": False}


def oll_done(prompt: int, completion: int, reason: str = "stop") -> dict[str, Any]:
    return {**oll_line(), "done": True, "done_reason": reason, "total_duration": 1000, "prompt_eval_count": prompt,
            "eval_count": completion}


def ndjson(*objs: dict[str, Any]) -> Reply:
    return Reply(chunks=[json.dumps(o, separators=(",", ":")).encode() + b"\n" for o in objs], headers=NDJSON)


def oll_call(name: str, args: dict[str, Any], id_: str | None = None) -> dict[str, Any]:
    call: dict[str, Any] = {"function": {"name": name, "arguments": args}}
    if id_:
        call["id"] = id_
    return call


def test_three_step_ollama_loop(sidecar: Sidecar, upstream: Upstream) -> None:
    upstream.replies[OLL_MODEL] = [
        # thinking, then the parallel pair whole in one line, without ids (as older servers send them)
        ndjson(oll_line(thinking="The user wants "), oll_line(thinking="weather and time."),
               oll_line(tool_calls=[oll_call("get_weather", {"city": "Paris"}),
                                    oll_call("get_time", {"tz": "Europe/Paris"})]),
               oll_done(30, 15)),
        # a call with an id (as recent servers send them)
        ndjson(oll_line("Checking "), oll_line("Lyon."),
               oll_line(tool_calls=[oll_call("get_weather", {"city": "Lyon", "days": 2}, "call_lyon")]),
               oll_done(50, 7)),
        ndjson(oll_line("Sunny in Paris at noon, "), oll_line("rain in Lyon."), oll_done(70, 9)),
    ]
    loop_id, sid = begin(sidecar, f"oll:{OLL_MODEL}", reasoning={"effort": "high"})

    step1 = wait_requested(sidecar, sid, 1)
    assert requested_calls(step1) == [("get_weather", {"city": "Paris"}), ("get_time", {"tz": "Europe/Paris"})]
    id_w, id_t = (c["tool_call_id"] for c in step1["calls"])
    assert id_w.startswith("call_") and id_t.startswith("call_") and id_w != id_t, "ids made up by the sidecar"
    assert submit(sidecar, loop_id, [{"tool_call_id": id_t, "content": "12:00"},
                                     {"tool_call_id": id_w, "content": [{"type": "text", "text": "sunny"}]}
                                     ])["result"] == {"accepted": True}
    step2 = wait_requested(sidecar, sid, 2)
    assert step2["calls"] == [{"tool_call_id": "call_lyon", "name": "get_weather",
                               "arguments": {"city": "Lyon", "days": 2}}]
    assert submit(sidecar, loop_id, [{"tool_call_id": "call_lyon", "content": "rain"}])["result"]["accepted"]
    events = ended(sidecar, sid)

    r1, r2, r3 = seen_at(upstream, "/api/chat", OLL_MODEL)
    for r in (r1, r2, r3):
        assert "authorization" not in r.headers
        assert "application/x-ndjson" in r.headers["accept"]
        assert (r.body["stream"], r.body["think"]) == (True, "high")
        assert r.body["tools"] == r1.body["tools"]
    user = {"role": "user", "content": USER["content"]}
    after_1 = [
        user,
        # the thinking goes back as the message's thinking; the calls with object arguments and no id
        {"role": "assistant", "content": "", "thinking": "The user wants weather and time.", "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
            {"function": {"name": "get_time", "arguments": {"tz": "Europe/Paris"}}}]},
        # Ollama matches a result to its call by tool_name, and by order
        {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
        {"role": "tool", "content": "12:00", "tool_name": "get_time"},
    ]
    assert r1.body["messages"] == [user]
    assert r2.body["messages"] == after_1
    assert r3.body["messages"] == [
        *after_1,
        {"role": "assistant", "content": "Checking Lyon.", "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "Lyon", "days": 2}}}]},
        {"role": "tool", "content": "rain", "tool_name": "get_weather"},
    ]

    check_loop_events(events, 3)
    t = types(events)
    assert t[:t.index("tool_calls_requested") + 1] == [
        "step_start", "start", "reasoning_delta", "reasoning_delta", "reasoning_end",
        "tool_call_start", "tool_call_delta", "tool_call", "tool_call_start", "tool_call_delta", "tool_call",
        "usage", "tool_calls_requested"]
    assert text_of(events) == "Checking Lyon.Sunny in Paris at noon, rain in Lyon."
    done = events[-1]
    assert (done["finish_reason"], done["model"]) == ("stop", f"oll:{OLL_MODEL}")
    assert done["usage"] == {"input_tokens": 30 + 50 + 70, "output_tokens": 15 + 7 + 9}

    final = messages_of(sidecar, loop_id)
    assert (final["state"], final["step"]) == ("done", 3)
    assert [m.get("tool_call_id") for m in final["messages"]] == [None, None, id_w, id_t, None, "call_lyon", None]
    assert final["messages"][1]["content"][0] == {"type": "reasoning", "text": "The user wants weather and time."}


def test_max_steps_on_ollama(sidecar: Sidecar, upstream: Upstream) -> None:
    model = "llama-loop-max:3b"
    upstream.replies[model] = [
        ndjson({**oll_line(tool_calls=[oll_call("get_time", {"tz": "UTC"}, "call_m1"),
                                       oll_call("get_time", {"tz": "CET"}, "call_m2")]), "model": model},
               {**oll_done(11, 3), "model": model}),
        ndjson({**oll_line(tool_calls=[oll_call("get_time", {"tz": "JST"}, "call_m3")]), "model": model},
               {**oll_done(22, 4), "model": model}),
        ndjson({**oll_line("never asked for"), "model": model}, {**oll_done(1, 1), "model": model}),
    ]
    loop_id, sid = begin(sidecar, f"oll:{model}", max_steps=2)
    step1 = wait_requested(sidecar, sid, 1)
    assert requested_calls(step1) == [("get_time", {"tz": "UTC"}), ("get_time", {"tz": "CET"})]
    assert submit(sidecar, loop_id, [{"tool_call_id": "call_m1", "content": "00:00"},
                                     {"tool_call_id": "call_m2", "content": "01:00"}])["result"]["accepted"]
    events = ended(sidecar, sid)

    assert [e["seq"] for e in events] == list(range(len(events)))
    done = events[-1]
    assert (done["type"], done["finish_reason"], done["model"]) == ("done", "max_steps", f"oll:{model}")
    assert done["usage"] == {"input_tokens": 11 + 22, "output_tokens": 3 + 4}
    assert [e["step"] for e in events if e["type"] == "tool_calls_requested"] == [1], "no request at the last step"
    assert [e["tool_call_id"] for e in events if e["type"] == "tool_call"] == ["call_m1", "call_m2", "call_m3"]
    assert len(seen_at(upstream, "/api/chat", model)) == 2, "no third step"

    state = messages_of(sidecar, loop_id)
    assert (state["state"], state["step"]) == ("done", 2)
    assert "pending_tool_calls" not in state
    assert [m["role"] for m in state["messages"]] == ["user", "assistant", "tool", "tool", "assistant"]
    assert state["messages"][-1]["content"] == [
        {"type": "tool_call", "id": "call_m3", "name": "get_time", "arguments": {"tz": "JST"}}]
    code = submit(sidecar, loop_id, [{"tool_call_id": "call_m3", "content": "09:00"}])["error"]["data"]["code"]
    assert code == "invalid_request"


# --- Cohere: SSE /v2/chat, Bearer key ----------------------------------------------------------------

CO_MODEL = "command-a-reasoning-loop"
CO_START = {"id": "loop-msg", "type": "message-start", "delta": {"message": {
    "role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}}}


def cohere_sse(*payloads: dict[str, Any]) -> Reply:
    """``event: <type>`` + ``data: <json>`` per event; no [DONE] (message-end ends the stream)."""
    return Reply(chunks=[f"event: {p['type']}\ndata: {json.dumps(p)}\n\n".encode() for p in payloads])


def co_block(index: int, kind: str, *pieces: str) -> list[dict[str, Any]]:
    return [{"type": "content-start", "index": index, "delta": {"message": {"content": {"type": kind, kind: ""}}}},
            *({"type": "content-delta", "index": index, "delta": {"message": {"content": {kind: p}}}}
              for p in pieces),
            {"type": "content-end", "index": index}]


def co_call(index: int, id_: str, name: str, *pieces: str) -> list[dict[str, Any]]:
    """A call as Cohere streams it: the start (with empty arguments), argument fragments, the end."""
    return [{"type": "tool-call-start", "index": index, "delta": {"message": {"tool_calls": {
                "id": id_, "type": "function", "function": {"name": name, "arguments": ""}}}}},
            *({"type": "tool-call-delta", "index": index,
               "delta": {"message": {"tool_calls": {"function": {"arguments": p}}}}} for p in pieces),
            {"type": "tool-call-end", "index": index}]


def co_plan(*pieces: str) -> list[dict[str, Any]]:
    return [{"type": "tool-plan-delta", "delta": {"message": {"tool_plan": p}}} for p in pieces]


def co_end(reason: str, inp: int, out: int, cached: int | None = None) -> dict[str, Any]:
    usage: dict[str, Any] = {"billed_units": {"input_tokens": 1, "output_tokens": 1},
                             "tokens": {"input_tokens": inp, "output_tokens": out}}
    if cached is not None:
        usage["cached_tokens"] = cached
    return {"type": "message-end", "delta": {"finish_reason": reason, "usage": usage}}


def test_three_step_cohere_loop(sidecar: Sidecar, upstream: Upstream) -> None:
    upstream.replies[CO_MODEL] = [
        # a reasoning model: a thinking block (no tool plan), then the parallel pair one call after the other
        cohere_sse(CO_START, *co_block(0, "thinking", "Two lookups: ", "weather and time."),
                   *co_call(0, "get_weather_a1b2", "get_weather", '{"city":', ' "Paris"}'),
                   *co_call(1, "get_time_c3d4", "get_time", '{"tz": "Europe/Paris"}'),
                   co_end("TOOL_CALL", 500, 40)),
        # a tool plan before the call
        cohere_sse(CO_START, *co_plan("I will check ", "Lyon too."),
                   *co_call(0, "get_weather_e5f6", "get_weather", '{"city": "Lyon"}'),
                   co_end("TOOL_CALL", 800, 20, cached=450)),
        cohere_sse(CO_START, *co_block(0, "text", "Paris: sunny, 12:00. ", "Lyon: rain."),
                   co_end("COMPLETE", 900, 12, cached=600)),
    ]
    loop_id, sid = begin(sidecar, f"co:{CO_MODEL}", reasoning={"budget_tokens": 2000})

    step1 = wait_requested(sidecar, sid, 1)
    assert step1["calls"] == [
        {"tool_call_id": "get_weather_a1b2", "name": "get_weather", "arguments": {"city": "Paris"}},
        {"tool_call_id": "get_time_c3d4", "name": "get_time", "arguments": {"tz": "Europe/Paris"}},
    ]
    assert submit(sidecar, loop_id, [
        {"tool_call_id": "get_time_c3d4", "content": "12:00"},
        {"tool_call_id": "get_weather_a1b2", "content": [{"type": "text", "text": "sunny"}]},
    ])["result"] == {"accepted": True}
    step2 = wait_requested(sidecar, sid, 2)
    assert step2["calls"] == [{"tool_call_id": "get_weather_e5f6", "name": "get_weather",
                               "arguments": {"city": "Lyon"}}]
    assert submit(sidecar, loop_id, [{"tool_call_id": "get_weather_e5f6", "content": "rain"}])["result"]["accepted"]
    events = ended(sidecar, sid)

    r1, r2, r3 = seen_at(upstream, "/v2/chat", CO_MODEL)
    for r in (r1, r2, r3):
        assert r.headers["authorization"] == f"Bearer {CO_KEY}"
        assert r.body["stream"] is True
        assert r.body["thinking"] == {"type": "enabled", "token_budget": 2000}
        assert r.body["tools"] == r1.body["tools"]
    user = {"role": "user", "content": USER["content"]}
    after_1 = [
        user,
        # the thinking goes back as the tool_plan next to the calls; arguments as a JSON string
        {"role": "assistant", "tool_plan": "Two lookups: weather and time.", "tool_calls": [
            {"id": "get_weather_a1b2", "type": "function", "function": {"name": "get_weather", "arguments": ANY_JSON}},
            {"id": "get_time_c3d4", "type": "function", "function": {"name": "get_time", "arguments": ANY_JSON}}]},
        {"role": "tool", "tool_call_id": "get_weather_a1b2", "content": "sunny"},
        {"role": "tool", "tool_call_id": "get_time_c3d4", "content": "12:00"},
    ]
    assert r1.body["messages"] == [user]
    assert r2.body["messages"] == after_1
    assert [json.loads(c["function"]["arguments"]) for c in r2.body["messages"][1]["tool_calls"]] == [
        {"city": "Paris"}, {"tz": "Europe/Paris"}]
    assert r3.body["messages"] == [
        *after_1,
        {"role": "assistant", "tool_plan": "I will check Lyon too.", "tool_calls": [{
            "id": "get_weather_e5f6", "type": "function", "function": {"name": "get_weather", "arguments": ANY_JSON}}]},
        {"role": "tool", "tool_call_id": "get_weather_e5f6", "content": "rain"},
    ]
    assert json.loads(r3.body["messages"][4]["tool_calls"][0]["function"]["arguments"]) == {"city": "Lyon"}

    check_loop_events(events, 3)
    t = types(events)
    assert t[:t.index("tool_calls_requested") + 1] == [
        "step_start", "start", "reasoning_delta", "reasoning_delta", "reasoning_end",
        "tool_call_start", "tool_call_delta", "tool_call_delta", "tool_call",
        "tool_call_start", "tool_call_delta", "tool_call", "usage", "tool_calls_requested"]
    assert "".join(e["text"] for e in events if e["type"] == "reasoning_delta") == (
        "Two lookups: weather and time.I will check Lyon too.")
    assert text_of(events) == "Paris: sunny, 12:00. Lyon: rain."
    done = events[-1]
    assert (done["finish_reason"], done["model"]) == ("stop", f"co:{CO_MODEL}")
    assert done["usage"] == total({"input_tokens": 500, "output_tokens": 40},
                                  {"input_tokens": 800, "output_tokens": 20, "cached_input_tokens": 450},
                                  {"input_tokens": 900, "output_tokens": 12, "cached_input_tokens": 600})

    final = messages_of(sidecar, loop_id)
    assert (final["state"], final["step"]) == ("done", 3)
    assert [m["role"] for m in final["messages"]] == ["user", "assistant", "tool", "tool", "assistant", "tool",
                                                      "assistant"]
    assert final["messages"][4]["content"] == [
        {"type": "reasoning", "text": "I will check Lyon too."},
        {"type": "tool_call", "id": "get_weather_e5f6", "name": "get_weather", "arguments": {"city": "Lyon"}}]
    assert final["messages"][6]["content"] == [{"type": "text", "text": "Paris: sunny, 12:00. Lyon: rain."}]
