"""Priority classes (issue 18): each provider's concurrency queue and token bucket serve waiting
``interactive`` requests before ``background`` ones (sidecar/health.py).

The unit tests drive the queues in this process with a hand-moved clock; the others go through the real
process against a loopback upstream and observe the order in which requests reach it, and the queue
lengths ``get_provider_health`` reports while they wait. Nothing here asserts a duration.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import msgspec
import pytest
from harness import Reply, Sidecar, Upstream, sse, text_of
from test_health import ManualTime, anyio_backend, provider  # noqa: F401  (anyio_backend: a fixture)

from sidecar.health import Health
from sidecar.providers import Provider

# --- the queues, in this process ---------------------------------------------------------------------------


def queued(health: Health) -> dict[str, int]:
    return msgspec.to_builtins(health.snapshot(["p"])[0].queued_by_priority)


class Requests:
    """Requests started one at a time (each queued before the next comes), recording the order they got in."""

    def __init__(self, health: Health, tg: anyio.abc.TaskGroup) -> None:
        self.health = health
        self.tg = tg
        self.order: list[str] = []
        self.scopes: dict[str, anyio.CancelScope] = {}

    async def start(self, name: str, p: Provider, priority: str, hold: anyio.Event | None = None) -> None:
        scope = self.scopes[name] = anyio.CancelScope()

        async def run() -> None:
            with scope:
                async with self.health.slot(p, priority):  # type: ignore[arg-type]
                    self.order.append(name)
                    if hold is not None:
                        await hold.wait()
                    await anyio.lowlevel.checkpoint()

        self.tg.start_soon(run)
        await anyio.wait_all_tasks_blocked()


@pytest.mark.anyio
async def test_an_interactive_request_goes_before_ten_queued_background_ones() -> None:
    health = Health()
    p = provider(max_concurrency=1)
    release = anyio.Event()
    async with anyio.create_task_group() as tg:
        r = Requests(health, tg)
        await r.start("slow", p, "background", hold=release)
        for i in range(10):
            await r.start(f"bg{i}", p, "background")
        await r.start("int", p, "interactive")
        assert queued(health) == {"interactive": 1, "background": 10}
        assert health.snapshot(["p"])[0].queued == 11
        assert r.order == ["slow"]
        release.set()
    assert r.order == ["slow", "int"] + [f"bg{i}" for i in range(10)]
    assert queued(health) == {"interactive": 0, "background": 0}


@pytest.mark.anyio
async def test_each_class_is_served_in_arrival_order() -> None:
    health = Health()
    p = provider(max_concurrency=1)
    release = anyio.Event()
    async with anyio.create_task_group() as tg:
        r = Requests(health, tg)
        await r.start("slow", p, "interactive", hold=release)
        for name in ("bg0", "int0", "bg1", "int1", "bg2", "int2"):
            await r.start(name, p, "interactive" if name.startswith("int") else "background")
        release.set()
    assert r.order == ["slow", "int0", "int1", "int2", "bg0", "bg1", "bg2"]


@pytest.mark.anyio
async def test_background_may_fill_every_slot_while_no_interactive_one_waits() -> None:
    health = Health()
    p = provider(max_concurrency=2)
    first, second, third = anyio.Event(), anyio.Event(), anyio.Event()
    async with anyio.create_task_group() as tg:
        r = Requests(health, tg)
        await r.start("bg0", p, "background", hold=first)
        await r.start("bg1", p, "background", hold=second)
        assert r.order == ["bg0", "bg1"], "nothing is kept free for an interactive request that may never come"
        await r.start("bg2", p, "background")
        await r.start("int", p, "interactive", hold=third)  # both slots are busy: it waits for one to free
        assert queued(health) == {"interactive": 1, "background": 1}
        first.set()
        await anyio.wait_all_tasks_blocked()
        assert r.order == ["bg0", "bg1", "int"], "the slot that came free went to the interactive request"
        assert queued(health) == {"interactive": 0, "background": 1}
        third.set()
        await anyio.wait_all_tasks_blocked()
        assert r.order == ["bg0", "bg1", "int", "bg2"]
        second.set()
    assert r.order == ["bg0", "bg1", "int", "bg2"]


@pytest.mark.anyio
async def test_a_cancelled_interactive_waiter_lets_background_ones_through() -> None:
    health = Health()
    p = provider(max_concurrency=1)
    release = anyio.Event()
    async with anyio.create_task_group() as tg:
        r = Requests(health, tg)
        await r.start("slow", p, "interactive", hold=release)
        await r.start("bg0", p, "background")
        await r.start("int", p, "interactive")
        r.scopes["int"].cancel()
        await anyio.wait_all_tasks_blocked()
        assert queued(health) == {"interactive": 0, "background": 1}
        release.set()
    assert r.order == ["slow", "bg0"]
    assert (health.snapshot(["p"])[0].in_flight, health.snapshot(["p"])[0].queued) == (0, 0)


@pytest.mark.anyio
async def test_token_bucket_serves_interactive_first_even_when_a_background_one_was_pacing() -> None:
    clock = ManualTime()
    health = Health(clock=clock, sleep=clock.sleep)
    p = provider(requests_per_minute=1)  # one token, then one every 60 s
    async with anyio.create_task_group() as tg:
        r = Requests(health, tg)
        await r.start("first", p, "background")  # takes the only token
        for i in range(5):
            await r.start(f"bg{i}", p, "background")  # bg0 heads the queue and sleeps until a token is due
        clock.advance(30)
        await anyio.wait_all_tasks_blocked()
        await r.start("int", p, "interactive")
        assert queued(health) == {"interactive": 1, "background": 5}
        clock.advance(30)  # the token bg0 was waiting for
        await anyio.wait_all_tasks_blocked()
        assert r.order == ["first", "int"]
        assert queued(health) == {"interactive": 0, "background": 5}
        for i in range(5):
            clock.advance(59)
            await anyio.wait_all_tasks_blocked()
            assert r.order[-1] != f"bg{i}", "no token before its time"
            clock.advance(1)
            await anyio.wait_all_tasks_blocked()
            assert r.order[-1] == f"bg{i}"
    assert r.order == ["first", "int", "bg0", "bg1", "bg2", "bg3", "bg4"]
    assert queued(health) == {"interactive": 0, "background": 0}


@pytest.mark.anyio
async def test_token_bucket_cancelled_interactive_hands_the_pacing_back() -> None:
    clock = ManualTime()
    health = Health(clock=clock, sleep=clock.sleep)
    p = provider(requests_per_minute=1)
    async with anyio.create_task_group() as tg:
        r = Requests(health, tg)
        await r.start("first", p, "interactive")
        await r.start("bg0", p, "background")
        await r.start("int", p, "interactive")
        r.scopes["int"].cancel()
        await anyio.wait_all_tasks_blocked()
        assert queued(health) == {"interactive": 0, "background": 1}
        clock.advance(60)
    assert r.order == ["first", "bg0"]


@pytest.mark.anyio
@pytest.mark.parametrize("took_over", [False, True])
async def test_a_changed_rate_takes_effect_for_requests_already_waiting(took_over: bool) -> None:
    """``took_over``: an interactive request became the head while a background one was pacing."""
    clock = ManualTime()
    health = Health(clock=clock, sleep=clock.sleep)
    slow, fast = provider(requests_per_minute=1), provider(requests_per_minute=60)
    async with anyio.create_task_group() as tg:
        r = Requests(health, tg)
        await r.start("first", slow, "interactive")
        await r.start("bg0", slow, "background")  # would wait 60 s at this rate
        if took_over:
            await r.start("int", slow, "interactive")
        await r.start("bg1", fast, "background")  # configure_provider raised the rate
        clock.advance(1)
        await anyio.wait_all_tasks_blocked()
        first_paced = "int" if took_over else "bg0"
        assert r.order == ["first", first_paced], "the waiting one was paced at the new rate"
        clock.advance(1)
        await anyio.wait_all_tasks_blocked()
        if took_over:
            assert r.order == ["first", "int", "bg0"]
            clock.advance(1)
    assert r.order[-1] == "bg1"


# --- through the process ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.close()


@pytest.fixture(scope="module")
def sc(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    proc = Sidecar(tmp_path_factory.mktemp("data"))
    proc.wait_for(lambda m: m.get("method") == "sidecar-ready")
    yield proc
    proc.kill()
    assert proc.bad_lines == [], "stdout carried a line that is not JSON"


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def text_reply(text: str = "ok") -> Reply:
    return Reply(chunks=sse([chunk({"role": "assistant", "content": text}), chunk({}, "stop")]))


SLOW = Reply(chunks=sse([chunk({"role": "assistant", "content": ""})], done=False), hang=True)
"""answers its first bytes, then holds the request (and so the provider's only slot) until it is aborted"""


class Loopback:
    """A provider of its own (its own queues) on the module's upstream; its models answer at once, except
    ``slow``. Requests are told apart by their last message's text, as the upstream receives them."""

    def __init__(self, sc: Sidecar, upstream: Upstream, **limits: Any) -> None:
        self.sc = sc
        self.upstream = upstream
        self.id = f"prio{uuid.uuid4().hex[:8]}"
        self.fast = f"fast-{self.id}"
        self.slow = f"slow-{self.id}"
        self.embed = f"embed-{self.id}"
        self.loop = f"loop-{self.id}"
        upstream.replies[self.fast] = text_reply()
        upstream.replies[self.slow] = SLOW
        upstream.replies[self.embed] = Reply(chunks=[json.dumps({
            "object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.5, 0.25]}],
            "model": self.embed, "usage": {"prompt_tokens": 1, "total_tokens": 1}}).encode()],
            headers={"content-type": "application/json"})
        sc.call("llm_register_custom_provider", {"id": self.id, "name": self.id, "protocol": "openai",
                                                 "base_url": upstream.base_url, "requires_api_key": False})
        sc.call("configure_provider", {"id": self.id, "limits": {"retry": {"max_retries": 0}, **limits}})

    def params(self, tag: str, priority: str | None = None, *, slow: bool = False) -> dict[str, Any]:
        params: dict[str, Any] = {"model": f"{self.id}:{self.slow if slow else self.fast}",
                                  "messages": [{"role": "user", "content": tag}]}
        if priority is not None:
            params["priority"] = priority
        return params

    def sid(self, tag: str) -> str:
        return f"{self.id}-{tag}"

    def stream(self, tag: str, priority: str | None = None, *, slow: bool = False) -> None:
        """Start a stream (its id is ``sid(tag)``); returns at once."""
        self.sc.call("llm_stream_text", {**self.params(tag, priority, slow=slow), "stream_id": self.sid(tag)})

    def arrivals(self) -> list[str]:
        """The tags of the requests the upstream received, in the order they came in: the first message's
        text (the same for every step of a tool loop), or the first text to embed."""
        out = []
        for s in list(self.upstream.seen):
            if not isinstance(s.body, dict) or s.body.get("model") not in (self.fast, self.slow, self.embed, self.loop):
                continue
            out.append(s.body["input"][0] if s.body["model"] == self.embed else s.body["messages"][0]["content"])
        return out

    def wait_arrived(self, n: int) -> None:
        deadline = time.monotonic() + 15
        while len(self.arrivals()) < n:
            assert time.monotonic() < deadline, f"the upstream saw only {self.arrivals()}"
            time.sleep(0.005)

    def health(self) -> dict[str, Any]:
        (h,) = self.sc.call("get_provider_health", {"provider": self.id})
        return h  # type: ignore[no-any-return]

    def wait_queued(self, interactive: int, background: int) -> dict[str, Any]:
        """Polls get_provider_health until it reports these queue lengths (the requests sent are waiting)."""
        want = {"interactive": interactive, "background": background}
        deadline = time.monotonic() + 15
        while True:
            h = self.health()
            if h["queued_by_priority"] == want:
                assert h["queued"] == interactive + background
                return h
            assert time.monotonic() < deadline, f"queues never reached {want}: {h}"
            time.sleep(0.005)


def finished(sc: Sidecar, stream_id: str) -> list[dict[str, Any]]:
    events = sc.wait_stream_end(stream_id)
    assert events[-1]["type"] == "done", events[-1]
    return events


@pytest.mark.parametrize("n", [10, 5])
def test_an_interactive_stream_starts_right_after_the_slow_one(sc: Sidecar, upstream: Upstream, n: int) -> None:
    """The issue's test (10 background requests queued) and its bar (5): the interactive one starts second."""
    lb = Loopback(sc, upstream, max_concurrency=1)
    lb.stream("slow", slow=True)
    lb.wait_arrived(1)
    for i in range(n):  # one by one, so their own order is known
        lb.stream(f"bg{i}", "background")
        lb.wait_queued(0, i + 1)
    lb.stream("int")  # no priority given: interactive
    h = lb.wait_queued(1, n)
    assert h["in_flight"] == 1
    sc.call("llm_abort_stream", {"stream_id": lb.sid("slow")})
    for tag in ["int"] + [f"bg{i}" for i in range(n)]:
        assert text_of(finished(sc, lb.sid(tag))) == "ok"
    assert lb.arrivals() == ["slow", "int"] + [f"bg{i}" for i in range(n)]
    h = lb.health()
    assert (h["in_flight"], h["queued"], h["queued_by_priority"]) == (0, 0, {"interactive": 0, "background": 0})


def test_complete_chat_background_waits_behind_an_interactive_one(sc: Sidecar, upstream: Upstream) -> None:
    lb = Loopback(sc, upstream, max_concurrency=1)
    lb.stream("slow", slow=True)
    lb.wait_arrived(1)
    ids = []
    for i in range(3):
        ids.append(f"cc-bg{i}-{lb.id}")
        sc.send({"jsonrpc": "2.0", "id": ids[-1], "method": "complete_chat",
                 "params": lb.params(f"bg{i}", "background")})
        lb.wait_queued(0, i + 1)
    ids.append(f"cc-int-{lb.id}")
    sc.send({"jsonrpc": "2.0", "id": ids[-1], "method": "complete_chat", "params": lb.params("int", "interactive")})
    lb.wait_queued(1, 3)
    sc.call("llm_abort_stream", {"stream_id": lb.sid("slow")})
    for rid in ids:
        resp = sc.wait_for(lambda m, rid=rid: m.get("id") == rid)
        assert resp["result"]["content"] == "ok", resp
    assert lb.arrivals() == ["slow", "int", "bg0", "bg1", "bg2"]


def test_an_unknown_priority_is_refused(sc: Sidecar, upstream: Upstream) -> None:
    lb = Loopback(sc, upstream)
    resp = sc.request("complete_chat", lb.params("x", "urgent"))
    assert resp["error"]["code"] == -32602 and "priority" in resp["error"]["message"], resp
    resp = sc.request("llm_embed", {"model": f"{lb.id}:e", "input": ["x"], "priority": "low"})
    assert resp["error"]["code"] == -32602 and "priority" in resp["error"]["message"], resp
    assert lb.arrivals() == []


def test_token_bucket_serves_the_interactive_request_first(sc: Sidecar, upstream: Upstream) -> None:
    lb = Loopback(sc, upstream, requests_per_minute=1)  # a burst of one, then one a minute
    lb.stream("first")
    finished(sc, lb.sid("first"))
    for i in range(5):
        lb.stream(f"bg{i}", "background")
        lb.wait_queued(0, i + 1)
    lb.stream("int", "interactive")
    h = lb.wait_queued(1, 5)
    assert h["in_flight"] == 0, "waiting for a token is not being in flight"
    # Two a second from now on; the new rate applies from the next request on, to those waiting too.
    sc.call("configure_provider", {"id": lb.id, "limits": {"retry": {"max_retries": 0}, "requests_per_minute": 120}})
    lb.stream("last", "background")
    for tag in ["int", "last"] + [f"bg{i}" for i in range(5)]:
        finished(sc, lb.sid(tag))
    assert lb.arrivals() == ["first", "int", "bg0", "bg1", "bg2", "bg3", "bg4", "last"]


def test_the_proxy_maps_x_priority_background(sc: Sidecar, upstream: Upstream) -> None:
    lb = Loopback(sc, upstream, max_concurrency=1)
    proxy = sc.call("start_llm_proxy", {})
    answers: dict[str, httpx.Response] = {}

    def post(tag: str, path: str, body: dict[str, Any], priority: str | None) -> None:
        headers = {"authorization": f"Bearer {proxy['token']}"}
        if priority is not None:
            headers["x-priority"] = priority
        answers[tag] = httpx.post(f"{proxy['url']}/{path}", headers=headers, json=body, timeout=30)

    def chat(tag: str) -> dict[str, Any]:
        return {"model": f"{lb.id}:{lb.fast}", "messages": [{"role": "user", "content": tag}]}

    threads: list[threading.Thread] = []
    lb.stream("slow", slow=True)
    lb.wait_arrived(1)
    for tag, path, body, priority, waiting in [
        ("bg-chat", "chat/completions", chat("bg-chat"), "BackGround", (0, 1)),
        ("bg-embed", "embeddings", {"model": f"{lb.id}:{lb.embed}", "input": "bg-embed"}, "background", (0, 2)),
        ("urgent", "chat/completions", chat("urgent"), "urgent", (1, 2)),  # any other value: interactive
        ("plain", "chat/completions", chat("plain"), None, (2, 2)),
    ]:
        threads.append(threading.Thread(target=post, args=(tag, path, body, priority)))
        threads[-1].start()
        lb.wait_queued(*waiting)
    sc.call("llm_abort_stream", {"stream_id": lb.sid("slow")})
    for t in threads:
        t.join(30)
    assert {tag: r.status_code for tag, r in answers.items()} == dict.fromkeys(
        ["bg-chat", "bg-embed", "urgent", "plain"], 200), {tag: r.text for tag, r in answers.items()}
    assert answers["bg-chat"].json()["choices"][0]["message"]["content"] == "ok"
    assert answers["bg-embed"].json()["data"][0]["embedding"] == [0.5, 0.25]
    assert lb.arrivals() == ["slow", "urgent", "plain", "bg-chat", "bg-embed"]


def test_llm_embed_background_waits_behind_an_interactive_stream(sc: Sidecar, upstream: Upstream) -> None:
    lb = Loopback(sc, upstream, max_concurrency=1)
    lb.stream("slow", slow=True)
    lb.wait_arrived(1)
    rid = f"embed-{lb.id}"
    sc.send({"jsonrpc": "2.0", "id": rid, "method": "llm_embed",
             "params": {"model": f"{lb.id}:{lb.embed}", "input": ["bg-embed"], "priority": "background"}})
    lb.wait_queued(0, 1)
    lb.stream("int")
    lb.wait_queued(1, 1)
    sc.call("llm_abort_stream", {"stream_id": lb.sid("slow")})
    assert sc.wait_for(lambda m: m.get("id") == rid)["result"]["embeddings"] == [[0.5, 0.25]]
    finished(sc, lb.sid("int"))
    assert lb.arrivals() == ["slow", "int", "bg-embed"]


def test_the_tool_loop_queues_each_step_with_its_priority(sc: Sidecar, upstream: Upstream) -> None:
    lb = Loopback(sc, upstream, max_concurrency=1)
    upstream.replies[lb.loop] = Reply(chunks=sse([
        chunk({"role": "assistant", "content": None}),
        chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                               "function": {"name": "get_time", "arguments": "{}"}}]}),
        chunk({}, "tool_calls")]))
    sid = lb.sid("loop")

    # step 1 waits behind an interactive request that came later
    lb.stream("slow", slow=True)
    lb.wait_arrived(1)
    started = sc.call("llm_chat_loop_start", {
        "model": f"{lb.id}:{lb.loop}", "messages": [{"role": "user", "content": "loop"}], "stream_id": sid,
        "tools": [{"name": "get_time", "parameters": {"type": "object", "properties": {}}}],
        "priority": "background"})
    lb.wait_queued(0, 1)
    lb.stream("int1")
    lb.wait_queued(1, 1)
    sc.call("llm_abort_stream", {"stream_id": lb.sid("slow")})
    sc.wait_for(lambda m: m.get("method") == f"llm-stream-{sid}" and m["params"]["type"] == "tool_calls_requested")
    finished(sc, lb.sid("int1"))
    assert lb.arrivals() == ["slow", "int1", "loop"]

    # and so does step 2
    upstream.replies[lb.loop] = text_reply("it is noon")
    lb.stream("slow2", slow=True)
    lb.wait_arrived(4)
    sc.call("llm_submit_tool_results", {"loop_id": started["loop_id"], "results": [
        {"tool_call_id": "call_1", "content": "12:00"}]})
    lb.wait_queued(0, 1)
    lb.stream("int2")
    lb.wait_queued(1, 1)
    sc.call("llm_abort_stream", {"stream_id": lb.sid("slow2")})
    assert text_of(finished(sc, sid)) == "it is noon"
    finished(sc, lb.sid("int2"))
    assert lb.arrivals() == ["slow", "int1", "loop", "slow2", "int2", "loop"]


def test_llm_compact_messages_summary_queues_with_its_priority(sc: Sidecar, upstream: Upstream) -> None:
    """A background compaction's summary request waits behind an interactive stream that came later."""
    lb = Loopback(sc, upstream, max_concurrency=1)
    lb.stream("slow", slow=True)
    lb.wait_arrived(1)
    long = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn{i} " + "word " * 50}
            for i in range(20)]
    rid = f"compact-{lb.id}"
    sc.send({"jsonrpc": "2.0", "id": rid, "method": "llm_compact_messages",
             "params": {"model": f"{lb.id}:{lb.fast}", "messages": long, "target_tokens": 300,
                        "priority": "background"}})
    lb.wait_queued(0, 1)
    lb.stream("int")
    lb.wait_queued(1, 1)
    sc.call("llm_abort_stream", {"stream_id": lb.sid("slow")})
    assert text_of(finished(sc, lb.sid("int"))) == "ok"
    resp = sc.wait_for(lambda m: m.get("id") == rid)
    assert resp["result"]["tokens_after"] < resp["result"]["tokens_before"], resp
    summary = resp["result"]["messages"][0]
    assert summary["role"] == "system" and summary["content"].endswith("ok"), summary
    assert lb.arrivals()[:2] == ["slow", "int"] and len(lb.arrivals()) == 3
