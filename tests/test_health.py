"""Provider health: the circuit breaker, FIFO concurrency limit, token bucket and counters (sidecar/health.py).

Unit tests drive time by hand (an injected clock and sleep), so nothing here depends on how fast the
machine is; one test goes through the real process for the get_provider_health method.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import msgspec
import pytest
from harness import Sidecar

from sidecar.errors import SidecarError
from sidecar.health import Health
from sidecar.providers import Provider
from sidecar.types import ProviderLimits


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class ManualTime:
    """A clock that moves only when the test says so; sleepers wake when it passes their deadline."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleepers: list[tuple[float, anyio.Event]] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        event = anyio.Event()
        self.sleepers.append((self.now + seconds, event))
        await event.wait()

    def advance(self, seconds: float) -> None:
        self.now += seconds
        due = [s for s in self.sleepers if s[0] <= self.now + 1e-9]
        self.sleepers = [s for s in self.sleepers if s not in due]
        for _, event in due:
            event.set()


def provider(**limits: Any) -> Provider:
    return Provider(id="p", name="P", protocol="openai", base_url="http://127.0.0.1:9/v1",
                    limits=ProviderLimits(**limits) if limits else None)


def view(health: Health, pid: str = "p") -> dict[str, Any]:
    return msgspec.to_builtins(health.snapshot([pid])[0])


async def fail(health: Health, p: Provider, code: str = "upstream_unavailable") -> None:
    async with health.slot(p):
        health.record(p.id, ok=False, latency_ms=None, code=code)


async def succeed(health: Health, p: Provider, latency_ms: float = 10.0) -> None:
    async with health.slot(p):
        health.record(p.id, ok=True, latency_ms=latency_ms, code=None)


async def refused(health: Health, p: Provider) -> SidecarError:
    with pytest.raises(SidecarError) as caught:
        async with health.slot(p):
            pytest.fail("the circuit should have refused the attempt")
    return caught.value


# --- the circuit breaker ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_breaker_opens_after_threshold_and_fails_fast() -> None:
    clock = ManualTime()
    health = Health(clock=clock, sleep=clock.sleep)
    p = provider(breaker_threshold=3, breaker_cooldown_ms=10_000)
    await fail(health, p)
    await fail(health, p, "timeout")
    assert view(health)["state"] == "closed"
    await fail(health, p, "network_error")
    assert view(health)["state"] == "open"
    assert view(health)["consecutive_failures"] == 3

    err = await refused(health, p)
    # retryable and retry_after_ms agree: the caller may try again once the cooldown is over
    assert err.info.code == "upstream_unavailable" and err.info.retryable is True and err.info.provider == "p"
    assert err.info.retry_after_ms == 10_000
    assert err.info.message == ("p: temporarily failing (circuit open after 3 consecutive failures); "
                                "requests are refused for another 10 s")
    clock.advance(4)
    assert (await refused(health, p)).info.message.endswith("refused for another 6 s")
    assert view(health)["requests"] == 3, "a refused attempt is not an attempt"


@pytest.mark.anyio
async def test_defaults_are_five_failures_and_thirty_seconds() -> None:
    clock = ManualTime()
    health = Health(clock=clock, sleep=clock.sleep)
    p = provider()
    for _ in range(4):
        await fail(health, p)
    assert view(health)["state"] == "closed"
    await fail(health, p)
    assert (await refused(health, p)).info.message.endswith(
        "after 5 consecutive failures); requests are refused for another 30 s")
    clock.advance(29.5)
    assert view(health)["state"] == "open"
    clock.advance(0.5)
    assert view(health)["state"] == "half_open"


@pytest.mark.anyio
async def test_half_open_lets_exactly_one_probe_and_success_closes() -> None:
    clock = ManualTime()
    health = Health(clock=clock, sleep=clock.sleep)
    p = provider(breaker_threshold=1, breaker_cooldown_ms=1000)
    await fail(health, p)
    clock.advance(1)
    assert view(health)["state"] == "half_open"
    async with health.slot(p):  # the probe
        for _ in range(3):
            assert (await refused(health, p)).info.message.endswith("one trial request is in flight")
        health.record("p", ok=True, latency_ms=5, code=None)
    assert view(health)["state"] == "closed" and view(health)["consecutive_failures"] == 0
    async with health.slot(p), health.slot(p):  # closed again: no longer one at a time
        pass


@pytest.mark.anyio
async def test_failed_probe_reopens_for_another_cooldown() -> None:
    clock = ManualTime()
    health = Health(clock=clock, sleep=clock.sleep)
    p = provider(breaker_threshold=2, breaker_cooldown_ms=10_000)
    await fail(health, p)
    await fail(health, p)
    clock.advance(10)
    await fail(health, p, "timeout")  # the probe
    assert view(health)["state"] == "open"
    assert (await refused(health, p)).info.message.endswith(
        "after 3 consecutive failures); requests are refused for another 10 s")
    clock.advance(10)
    await succeed(health, p)
    assert view(health)["state"] == "closed"


@pytest.mark.anyio
async def test_probe_without_a_verdict_lets_the_next_one_try() -> None:
    clock = ManualTime()
    health = Health(clock=clock, sleep=clock.sleep)
    p = provider(breaker_threshold=1, breaker_cooldown_ms=1000)
    await fail(health, p)
    clock.advance(1)
    with pytest.raises(RuntimeError):  # the attempt blew up without recording anything
        async with health.slot(p):
            raise RuntimeError("boom")
    await fail(health, p, "invalid_request")  # a probe with a neutral answer
    assert view(health)["state"] == "half_open"
    await succeed(health, p)  # so another probe could go, and it closed the circuit
    assert view(health)["state"] == "closed"


@pytest.mark.anyio
async def test_failures_already_in_flight_do_not_extend_the_cooldown() -> None:
    clock = ManualTime()
    health = Health(clock=clock, sleep=clock.sleep)
    p = provider(breaker_threshold=1, breaker_cooldown_ms=10_000)
    async with health.slot(p):  # started while the circuit was still closed
        await fail(health, p)
        clock.advance(4)
        health.record("p", ok=False, latency_ms=None, code="timeout")
    assert (await refused(health, p)).info.message.endswith(
        "after 2 consecutive failures); requests are refused for another 6 s")


@pytest.mark.anyio
async def test_errors_about_the_request_neither_count_nor_reset() -> None:
    health = Health()
    p = provider(breaker_threshold=2)
    await fail(health, p, "network_error")
    for code in ("invalid_request", "authentication_failed", "rate_limited", "context_length_exceeded", "cancelled"):
        await fail(health, p, code)
    v = view(health)
    assert v["state"] == "closed" and v["consecutive_failures"] == 1
    assert v["requests"] == 6
    assert v["errors"] == 5, "a cancelled attempt is no error of the provider"
    assert v["error_counts"] == {"authentication_failed": 1, "context_length_exceeded": 1, "invalid_request": 1,
                                 "network_error": 1, "rate_limited": 1}
    await fail(health, p, "upstream_unavailable")
    assert view(health)["state"] == "open"


# --- concurrency ------------------------------------------------------------------------------------------


async def queue_behind_holder(
    health: Health, p: Provider, tg: anyio.abc.TaskGroup, n: int, order: list[int]
) -> tuple[anyio.Event, list[anyio.CancelScope]]:
    """One task holds the only slot until the returned event is set; n more queue behind it, in order."""
    release = anyio.Event()

    async def holder() -> None:
        async with health.slot(p):
            await release.wait()

    async def waiter(i: int, scope: anyio.CancelScope) -> None:
        with scope:
            async with health.slot(p):
                order.append(i)
                await anyio.lowlevel.checkpoint()

    tg.start_soon(holder)
    await anyio.wait_all_tasks_blocked()
    scopes = []
    for i in range(n):
        scopes.append(anyio.CancelScope())
        tg.start_soon(waiter, i, scopes[-1])
        await anyio.wait_all_tasks_blocked()  # each is queued before the next arrives
    return release, scopes


@pytest.mark.anyio
async def test_concurrency_limit_serves_waiters_in_arrival_order() -> None:
    health = Health()
    p = provider(max_concurrency=1)
    order: list[int] = []
    async with anyio.create_task_group() as tg:
        release, _ = await queue_behind_holder(health, p, tg, 5, order)
        v = view(health)
        assert (v["in_flight"], v["queued"]) == (1, 5)
        assert order == []
        release.set()
    assert order == [0, 1, 2, 3, 4]
    v = view(health)
    assert (v["in_flight"], v["queued"]) == (0, 0)


@pytest.mark.anyio
async def test_cancelled_while_queued_frees_nothing_and_keeps_the_order() -> None:
    health = Health()
    p = provider(max_concurrency=1)
    order: list[int] = []
    async with anyio.create_task_group() as tg:
        release, scopes = await queue_behind_holder(health, p, tg, 5, order)
        scopes[2].cancel()
        await anyio.wait_all_tasks_blocked()
        v = view(health)
        assert (v["in_flight"], v["queued"]) == (1, 4), "the cancelled waiter held no slot and gave none back"
        release.set()
    assert order == [0, 1, 3, 4]
    assert (view(health)["in_flight"], view(health)["queued"]) == (0, 0)


@pytest.mark.anyio
async def test_cancelled_just_after_being_handed_the_slot_passes_it_on() -> None:
    # anyio delays a cancel until the task's next checkpoint, so plain asyncio makes the window reachable
    health = Health()
    p = provider(max_concurrency=1)
    order: list[int] = []

    async def waiter(i: int) -> None:
        async with health.slot(p):
            order.append(i)

    async with health.slot(p):  # hold the only slot
        tasks = [asyncio.create_task(waiter(i)) for i in range(3)]
        await anyio.wait_all_tasks_blocked()
    tasks[0].cancel()  # leaving handed the slot to waiter 0, which has not run yet
    with anyio.fail_after(10):  # a leaked slot would leave the others waiting forever
        await asyncio.gather(*tasks, return_exceptions=True)
    assert tasks[0].cancelled()
    assert order == [1, 2]
    assert (view(health)["in_flight"], view(health)["queued"]) == (0, 0)


@pytest.mark.anyio
async def test_raising_the_limit_at_runtime_lets_waiters_in() -> None:
    health = Health()
    order: list[int] = []
    async with anyio.create_task_group() as tg:
        release, _ = await queue_behind_holder(health, provider(max_concurrency=1), tg, 3, order)
        async with health.slot(provider(max_concurrency=5)):  # configure_provider changed it
            await anyio.wait_all_tasks_blocked()
            assert order == [0, 1, 2]
        release.set()


# --- the token bucket -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_token_bucket_bursts_one_minutes_worth_then_paces_in_order() -> None:
    clock = ManualTime()
    health = Health(clock=clock, sleep=clock.sleep)
    p = provider(requests_per_minute=2)  # a burst of 2, then one every 30 s
    passed: list[tuple[int, float]] = []

    async def request(i: int) -> None:
        async with health.slot(p):
            passed.append((i, clock.now - 1000))

    async with anyio.create_task_group() as tg:
        for i in range(5):
            tg.start_soon(request, i)
            await anyio.wait_all_tasks_blocked()
        assert passed == [(0, 0), (1, 0)]
        assert view(health)["queued"] == 3
        for _ in range(3):
            clock.advance(29)
            await anyio.wait_all_tasks_blocked()
            before = len(passed)
            clock.advance(1)
            await anyio.wait_all_tasks_blocked()
            assert len(passed) == before + 1
    assert passed == [(0, 0), (1, 0), (2, 30), (3, 60), (4, 90)]


@pytest.mark.anyio
async def test_token_bucket_refills_continuously_up_to_capacity() -> None:
    clock = ManualTime()
    health = Health(clock=clock, sleep=clock.sleep)
    p = provider(requests_per_minute=0.5)  # capacity is at least 1; one every 120 s
    await succeed(health, p)
    clock.advance(10_000)  # a long idle time does not bank more than capacity
    await succeed(health, p)
    entered = anyio.Event()

    async def request() -> None:
        async with health.slot(p):
            entered.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(request)
        await anyio.wait_all_tasks_blocked()
        clock.advance(119)
        await anyio.wait_all_tasks_blocked()
        assert not entered.is_set()
        clock.advance(1)
    assert entered.is_set()


@pytest.mark.anyio
async def test_cancelled_while_waiting_for_a_token_keeps_the_order() -> None:
    clock = ManualTime()
    health = Health(clock=clock, sleep=clock.sleep)
    p = provider(requests_per_minute=1)  # one every 60 s
    passed: list[int] = []
    scopes = [anyio.CancelScope() for _ in range(5)]

    async def request(i: int) -> None:
        with scopes[i]:
            async with health.slot(p):
                passed.append(i)

    async with anyio.create_task_group() as tg:
        for i in range(5):
            tg.start_soon(request, i)
            await anyio.wait_all_tasks_blocked()
        assert passed == [0]
        scopes[1].cancel()  # the head, pacing
        scopes[3].cancel()  # one behind it
        await anyio.wait_all_tasks_blocked()
        assert view(health)["queued"] == 2
        clock.advance(60)
        await anyio.wait_all_tasks_blocked()
        assert passed == [0, 2]
        clock.advance(60)
    assert passed == [0, 2, 4]
    assert (view(health)["in_flight"], view(health)["queued"]) == (0, 0)


# --- the snapshot ------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_snapshot_counters_and_percentiles() -> None:
    health = Health()
    p = provider()
    for ms in [50, 10, 40, 20, 30, 100, 90, 60, 80, 70]:  # 10 samples, shuffled
        await succeed(health, p, ms)
    await fail(health, p, "timeout")
    v = view(health)
    # nearest rank: p50 is the 5th of 10 sorted values, p95 the 10th
    assert v == {"provider": "p", "state": "closed", "requests": 11, "errors": 1, "consecutive_failures": 1,
                 "in_flight": 0, "queued": 0, "error_counts": {"timeout": 1},
                 "latency_p50_ms": 50, "latency_p95_ms": 100, "queued_by_priority": {"interactive": 0, "background": 0}}

    for ms in range(1, 251):  # the window keeps the last 200: 51..250
        health.record("p", ok=True, latency_ms=ms, code=None)
    v = view(health)
    assert (v["latency_p50_ms"], v["latency_p95_ms"]) == (150, 240)

    never = view(health, "other")
    assert never == {"provider": "other", "state": "closed", "requests": 0, "errors": 0, "consecutive_failures": 0,
                     "in_flight": 0, "queued": 0, "error_counts": {},
                     "queued_by_priority": {"interactive": 0, "background": 0}}, "no samples: no percentiles"
    assert [h.provider for h in health.snapshot(["b", "a"])] == ["b", "a"]


# --- through the real process --------------------------------------------------------------------------------

HEALTH_FIELDS = {"provider", "state", "requests", "errors", "consecutive_failures", "in_flight", "queued",
                 "error_counts"}


def test_get_provider_health_and_limits_through_the_process(sidecar: Sidecar) -> None:
    (mock,) = sidecar.call("get_provider_health", {"provider": "mock"})
    assert mock.keys() >= HEALTH_FIELDS and mock["provider"] == "mock" and mock["state"] == "closed"

    everyone = sidecar.call("get_provider_health")
    assert [h["provider"] for h in everyone] == [p["id"] for p in sidecar.call("list_providers")]
    for h in everyone:
        assert h.keys() >= HEALTH_FIELDS and h["state"] in ("closed", "open", "half_open")
        assert h["in_flight"] >= 0 and h["queued"] >= 0 and isinstance(h["error_counts"], dict)

    sidecar.call("complete_chat", {"model": "mock:echo", "messages": [{"role": "user", "content": "hi"}]})
    (mock,) = sidecar.call("get_provider_health", {"provider": "mock"})
    assert (mock["requests"], mock["errors"], mock["in_flight"]) == (1, 0, 0)
    assert mock["latency_p50_ms"] >= 0 and mock["latency_p95_ms"] >= 0

    resp = sidecar.request("get_provider_health", {"provider": "nope"})
    assert resp["error"]["data"]["code"] == "unknown_provider"

    info = sidecar.call("configure_provider", {"id": "groq", "limits": {"max_concurrency": 1,
                                                                         "requests_per_minute": 30}})
    assert info["limits"] == {"max_concurrency": 1, "requests_per_minute": 30}
    listed = {p["id"]: p for p in sidecar.call("list_providers")}
    assert listed["groq"]["limits"] == {"max_concurrency": 1, "requests_per_minute": 30}
    assert "limits" not in listed["openai"]
    (groq,) = sidecar.call("get_provider_health", {"provider": "groq"})
    assert groq["state"] == "closed" and groq["requests"] == 0
