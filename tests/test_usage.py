"""The usage log: the store on its own (totals, groups, since, cost, a corrupt file), and
through the real sidecar (streams and complete_chat counted, nothing lost to a SIGKILL)."""

from __future__ import annotations

import logging
import math
import signal
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import register_upstream
from harness import ROOT, Reply, Sidecar, Upstream

from sidecar.engine import Outcome
from sidecar.errors import SidecarError
from sidecar.providers import Registry
from sidecar.settings import SettingsStore
from sidecar.types import Usage, UsageStatsParams
from sidecar.usage import FILE_NAME, UsageStore, catalog_prices, estimate_cost

PRICES = {("openai", "gpt-4.1"): (2.0, 8.0, 0.5), ("anthropic", "claude-haiku-4-5"): (1.0, 5.0)}


def at(iso: str) -> float:
    return datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp()


def outcome(model: str = "openai:gpt-4.1", *, when: str = "2025-03-01T12:00:00", inp: int = 1000, out: int = 100,
            error: str | None = None, latency: float = 500.0, ttft: float | None = 100.0, **usage: int) -> Outcome:
    return Outcome(
        kind="stream", provider=model.split(":", 1)[0], model=model, started_at=at(when), latency_ms=latency,
        ttft_ms=ttft, usage=Usage(input_tokens=inp, output_tokens=out, **usage),
        finish_reason=None if error else "stop", error=error, stream_id="s1",
    )


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = UsageStore(tmp_path, price=lambda p, m: PRICES.get((p, m)))
    yield s
    s.close()


def stats(store: UsageStore, **params: Any) -> Any:
    return store.stats(UsageStatsParams(**params))


# --- the store --------------------------------------------------------------------------------


def test_nothing_is_created_until_the_first_record(tmp_path: Path, store: UsageStore) -> None:
    empty = stats(store, group_by="model")
    assert empty.total.requests == 0 and empty.total.cost_usd == 0 and empty.groups == []
    assert not (tmp_path / FILE_NAME).exists()
    store.record(outcome())
    assert (tmp_path / FILE_NAME).exists()
    with sqlite3.connect(tmp_path / FILE_NAME) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_totals_sum_tokens_count_errors_and_average_latency(store: UsageStore) -> None:
    store.record(outcome(inp=1000, out=100, latency=400, ttft=100, reasoning_tokens=40, cached_input_tokens=600))
    store.record(outcome(inp=10, out=0, latency=200, ttft=None, error="rate_limited"))
    store.record(outcome("anthropic:claude-haiku-4-5", inp=50, out=20, latency=300, ttft=50))
    t = stats(store).total
    assert (t.key, t.requests, t.errors) == ("total", 3, 1)
    assert (t.input_tokens, t.output_tokens, t.reasoning_tokens, t.cached_input_tokens) == (1060, 120, 40, 600)
    assert t.avg_latency_ms == 300.0
    assert t.avg_ttft_ms == 75.0  # only the requests that produced output


def test_cost_is_estimated_from_the_prices_with_cached_input_cheaper(store: UsageStore) -> None:
    # 400 fresh input at 2.0, 600 cached at 0.5, 100 output at 8.0 (USD per 1M tokens)
    store.record(outcome("openai:gpt-4.1", inp=1000, out=100, cached_input_tokens=600))
    # no cached price: cached tokens cost the input price
    store.record(outcome("anthropic:claude-haiku-4-5", inp=1000, out=200, cached_input_tokens=500))
    by_model = {g.key: g.cost_usd for g in stats(store, group_by="model").groups}
    assert by_model["openai:gpt-4.1"] == pytest.approx((400 * 2.0 + 600 * 0.5 + 100 * 8.0) / 1e6)
    assert by_model["anthropic:claude-haiku-4-5"] == pytest.approx((1000 * 1.0 + 200 * 5.0) / 1e6)
    assert stats(store).total.cost_usd == pytest.approx(sum(by_model.values()))


def test_a_model_without_a_price_costs_nothing(store: UsageStore) -> None:
    store.record(outcome("ollama:llama3.2:3b", inp=5000, out=5000))
    store.record(outcome("openai:some-new-model", inp=5000, out=5000))
    groups = stats(store, group_by="model").groups
    assert [(g.key, g.cost_usd, g.input_tokens) for g in groups] == [
        ("ollama:llama3.2:3b", 0.0, 5000), ("openai:some-new-model", 0.0, 5000)]


def test_the_cost_is_kept_as_recorded_when_prices_change(tmp_path: Path) -> None:
    prices = {("openai", "gpt-4.1"): (2.0, 8.0)}
    s = UsageStore(tmp_path, price=lambda p, m: prices.get((p, m)))
    s.record(outcome(inp=1_000_000, out=0))
    prices[("openai", "gpt-4.1")] = (100.0, 100.0)
    s.record(outcome(inp=1_000_000, out=0))
    assert stats(s).total.cost_usd == pytest.approx(102.0)
    s.close()


def test_groups_by_provider_model_and_utc_day(store: UsageStore) -> None:
    store.record(outcome("openai:gpt-4.1", when="2025-03-01T23:59:00"))
    store.record(outcome("openai:gpt-4o", when="2025-03-02T00:01:00", error="timeout"))
    store.record(outcome("anthropic:claude-haiku-4-5", when="2025-03-02T10:00:00"))

    def view(group_by: str) -> list[tuple[str, int, int]]:
        return [(g.key, g.requests, g.errors) for g in stats(store, group_by=group_by).groups]

    assert view("provider") == [("anthropic", 1, 0), ("openai", 2, 1)]
    assert view("model") == [("anthropic:claude-haiku-4-5", 1, 0), ("openai:gpt-4.1", 1, 0), ("openai:gpt-4o", 1, 1)]
    assert view("day") == [("2025-03-01", 1, 0), ("2025-03-02", 2, 1)]
    assert stats(store).groups == []  # no group_by: the total only


def test_since_takes_a_date_or_a_date_time_in_utc_or_with_an_offset(store: UsageStore) -> None:
    for when in ("2025-03-01T08:00:00", "2025-03-02T08:00:00", "2025-03-03T08:00:00"):
        store.record(outcome(when=when))
    assert stats(store, since="2025-03-02").total.requests == 2
    assert stats(store, since="2025-03-02T08:00:00").total.requests == 2  # inclusive
    assert stats(store, since="2025-03-02T08:00:01Z").total.requests == 1
    assert stats(store, since="2025-03-02T10:00:00+02:00").total.requests == 2  # 08:00 UTC
    assert stats(store, since="2025-03-04").total.requests == 0
    days = stats(store, since="2025-03-02", group_by="day").groups
    assert [g.key for g in days] == ["2025-03-02", "2025-03-03"]


@pytest.mark.parametrize("since", ["yesterday", "2025-13-01", "", "2025-03-02 at noon"])
def test_a_bad_since_is_an_invalid_request(store: UsageStore, since: str) -> None:
    with pytest.raises(SidecarError) as err:
        stats(store, since=since)
    assert err.value.code == "invalid_request"


def test_an_outcome_without_usage_counts_as_a_request(store: UsageStore) -> None:
    o = outcome(error="network_error")
    o.usage = None
    store.record(o)
    t = stats(store).total
    assert (t.requests, t.errors, t.input_tokens, t.cost_usd) == (1, 1, 0, 0.0)


def test_a_corrupt_database_is_moved_aside_and_a_new_one_started(
    tmp_path: Path, store: UsageStore, caplog: pytest.LogCaptureFixture
) -> None:
    garbage = b"this is not an SQLite database, just bytes " * 100
    (tmp_path / FILE_NAME).write_bytes(garbage)
    with caplog.at_level(logging.ERROR, logger="sidecar.usage"):
        store.record(outcome())
    aside = [p for p in tmp_path.iterdir() if p.name.startswith(f"{FILE_NAME}.corrupt-")]
    assert len(aside) == 1 and aside[0].read_bytes() == garbage
    assert aside[0].name in caplog.text
    assert stats(store).total.requests == 1


def test_a_corrupt_database_found_by_stats_is_moved_aside(tmp_path: Path, store: UsageStore) -> None:
    (tmp_path / FILE_NAME).write_bytes(b"\x00garbage" * 1000)
    assert stats(store, group_by="day").total.requests == 0
    assert any(p.name.startswith(f"{FILE_NAME}.corrupt-") for p in tmp_path.iterdir())
    store.record(outcome())
    assert stats(store).total.requests == 1


def test_a_database_from_a_newer_sidecar_is_kept_aside(tmp_path: Path, store: UsageStore) -> None:
    with sqlite3.connect(tmp_path / FILE_NAME) as db:
        db.execute("PRAGMA user_version = 99")
    store.record(outcome())
    assert stats(store).total.requests == 1
    assert any(p.name.startswith(f"{FILE_NAME}.corrupt-") for p in tmp_path.iterdir())


def test_record_never_raises(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("the data dir cannot be created under a file")
    s = UsageStore(blocker / "data", price=lambda p, m: None)
    with caplog.at_level(logging.WARNING, logger="sidecar.usage"):
        s.record(outcome())
    assert "not recorded" in caplog.text
    s.close()


def test_records_survive_the_process_being_killed(tmp_path: Path) -> None:
    """Each record is committed before it returns: SIGKILL right after loses none (no close)."""
    script = f"""
import os, signal, sys
from pathlib import Path
from sidecar.engine import Outcome
from sidecar.types import Usage
from sidecar.usage import UsageStore
s = UsageStore(Path(sys.argv[1]), price=lambda p, m: (1.0, 1.0))
for i in range(300):
    s.record(Outcome(kind="complete", provider="p", model="p:m", started_at={at("2025-03-01T00:00:00")} + i,
                     latency_ms=1.0, ttft_ms=None, usage=Usage(input_tokens=i, output_tokens=1),
                     finish_reason="stop", error=None))
os.kill(os.getpid(), signal.SIGKILL)
"""
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=ROOT, capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    s = UsageStore(tmp_path, price=lambda p, m: None)
    t = stats(s).total
    assert (t.requests, t.input_tokens, t.output_tokens) == (300, sum(range(300)), 300)
    assert t.cost_usd == pytest.approx((sum(range(300)) + 300) / 1e6)  # priced when recorded
    s.close()


def test_catalog_prices_come_from_the_registry(tmp_path: Path) -> None:
    price = catalog_prices(Registry(SettingsStore(tmp_path)))
    assert price("openai", "gpt-4.1") == (2.0, 8.0, 0.5)
    assert price("gemini", "gemini-2.5-flash") == (0.3, 2.5, None)
    assert price("mock", "echo") is None
    assert price("openai", "not-in-the-catalog") is None
    assert price("no-such-provider", "x") is None
    assert estimate_cost(price("anthropic", "claude-sonnet-4-5"), 1_000_000, 1_000_000, 0) == pytest.approx(18.0)


# --- through the real sidecar -----------------------------------------------------------------


def mock_tokens(*texts: str) -> int:
    """The mock's usage: a token per 4 characters, rounded up."""
    return math.ceil(len("".join(texts)) / 4)


def usage_stats(sc: Sidecar, **params: Any) -> dict[str, Any]:
    return sc.call("get_usage_stats", params)


def test_streams_and_complete_chat_are_counted(sidecar: Sidecar, upstream: Upstream) -> None:
    prompts = ["hello there", "a somewhat longer message to echo back", "x"]
    for i, text in enumerate(prompts):
        events = sidecar.stream({"stream_id": f"u{i}", "model": "mock:echo",
                                 "messages": [{"role": "user", "content": text}]})
        assert events[-1]["type"] == "done"
    system, question = "You are terse.", "What is two plus two?"
    result = sidecar.call("complete_chat", {"model": "mock:echo", "messages": [
        {"role": "system", "content": system}, {"role": "user", "content": question}]})
    assert result["content"] == question

    register_upstream(sidecar, upstream)
    upstream.replies["m"] = Reply(status=401, chunks=[b'{"error": {"message": "bad key"}}'],
                                  headers={"content-type": "application/json"})
    events = sidecar.stream({"model": "loopback:m", "messages": [{"role": "user", "content": "hi"}]})
    assert events[-1]["type"] == "error"

    expected_in = sum(mock_tokens(t) for t in prompts) + mock_tokens(system, question)
    expected_out = sum(mock_tokens(t) for t in prompts) + mock_tokens(question)
    total = usage_stats(sidecar)["total"]
    assert total["requests"] == 5 and total["errors"] == 1
    assert (total["input_tokens"], total["output_tokens"]) == (expected_in, expected_out)
    assert total["cost_usd"] == 0  # neither the mock nor the custom provider has a price
    assert "avg_latency_ms" in total

    by_model = {g["key"]: g for g in usage_stats(sidecar, group_by="model")["groups"]}
    assert set(by_model) == {"mock:echo", "loopback:m"}
    assert (by_model["mock:echo"]["requests"], by_model["mock:echo"]["errors"]) == (4, 0)
    assert (by_model["loopback:m"]["requests"], by_model["loopback:m"]["errors"]) == (1, 1)
    assert "avg_ttft_ms" in by_model["mock:echo"] and "avg_ttft_ms" not in by_model["loopback:m"]
    by_provider = {g["key"]: g["requests"] for g in usage_stats(sidecar, group_by="provider")["groups"]}
    assert by_provider == {"loopback": 1, "mock": 4}

    days = usage_stats(sidecar, group_by="day")["groups"]
    today = datetime.now(UTC).date()
    assert {g["key"] for g in days} <= {str(today - timedelta(days=1)), str(today)}  # a run across midnight
    assert sum(g["requests"] for g in days) == 5
    assert usage_stats(sidecar, since=str(today + timedelta(days=1)))["total"]["requests"] == 0
    assert usage_stats(sidecar, since="2000-01-01T00:00:00Z")["total"]["requests"] == 5


def test_a_bad_since_is_refused_over_rpc(sidecar: Sidecar) -> None:
    resp = sidecar.request("get_usage_stats", {"since": "last tuesday"})
    assert resp["error"]["code"] == -32000 and resp["error"]["data"]["code"] == "invalid_request"
    resp = sidecar.request("get_usage_stats", {"group_by": "week"})
    assert resp["error"]["code"] == -32602


def test_nothing_recorded_is_lost_when_the_sidecar_is_killed(data_dir: Path) -> None:
    n = 6
    sc = Sidecar(data_dir)
    try:
        sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
        for i in range(n):
            sc.call("llm_stream_text", {"stream_id": f"k{i}", "model": "mock:echo",
                                        "messages": [{"role": "user", "content": f"message number {i}"}]})
        for i in range(n):
            sc.wait_stream_end(f"k{i}")
        sc.proc.send_signal(signal.SIGKILL)  # right after the last done: no shutdown, no close
        sc.proc.wait(5)
    finally:
        sc.kill()
    assert all(sc.events(f"k{i}")[-1]["type"] == "done" for i in range(n))

    again = Sidecar(data_dir)
    try:
        again.wait_for(lambda m: m.get("method") == "sidecar-ready")
        total = usage_stats(again)["total"]
        assert total["requests"] == n
        assert total["output_tokens"] == sum(mock_tokens(f"message number {i}") for i in range(n))
    finally:
        again.kill()


def test_a_corrupt_usage_database_is_reported_and_kept_aside(data_dir: Path) -> None:
    garbage = b"not a database at all\n" * 200
    (data_dir / FILE_NAME).write_bytes(garbage)
    sc = Sidecar(data_dir)
    try:
        sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
        assert usage_stats(sc)["total"]["requests"] == 0
        sc.stream({"model": "mock:echo", "messages": [{"role": "user", "content": "still works"}]})
        assert usage_stats(sc)["total"]["requests"] == 1
    finally:
        sc.kill()
    aside = [p for p in data_dir.iterdir() if p.name.startswith(f"{FILE_NAME}.corrupt-")]
    assert len(aside) == 1 and aside[0].read_bytes() == garbage
    assert aside[0].name.encode() in bytes(sc.stderr)


def test_model_lists_carry_the_catalog_prices(sidecar: Sidecar) -> None:
    models = {m["id"]: m for m in sidecar.call("llm_list_available_models", {"provider": "openai"})}
    assert (models["openai:gpt-4.1"]["input_price"], models["openai:gpt-4.1"]["output_price"]) == (2.0, 8.0)
    mock = sidecar.call("llm_list_available_models", {"provider": "mock"})[0]
    assert "input_price" not in mock
