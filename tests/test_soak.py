"""Soak: 1,000 streams through one sidecar process, 100 at a time, with about 5% of them faulty.

The faults are a seeded random choice among the fault server's kinds (no long stalls). Every stream
must end exactly once with gap-free seq numbers, every healthy stream must come through whole, and
the process must not grow: RSS at the end within 20% of RSS after the first 100 streams, and no
leaked file descriptors (a small allowance for the connection pool).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from faultserver import Act, FaultServer, TimedSidecar, drop, ok, raw, reset, stall, status, trickle, truncated
from harness import check_stream_invariants, text_of

STREAMS = 1_000
BATCH = 100
FAULT_RATE = 0.05
SEED = 20_260_422
WORDS = ("soak", " ", "ok")
MSGS = [{"role": "user", "content": "hi"}]
POOL_FILL = 30
"""more than the sidecar's pool keeps alive (20)"""

FAULTS: dict[str, tuple[Callable[[], tuple[Act, ...]], dict[str, Any]]] = {
    "429-retry-after-1": (lambda: (status(429, headers={"retry-after": "1"}), ok(*WORDS)), {}),
    "500-then-ok": (lambda: (status(500), ok(*WORDS)), {}),
    "503-forever": (lambda: (status(503),), {}),
    "529-then-ok": (lambda: (status(529), ok(*WORDS)), {}),
    "reset-then-ok": (lambda: (reset(), ok(*WORDS)), {}),
    "reset-forever": (lambda: (reset(),), {}),
    "drop-mid-stream": (lambda: (drop("so", "ak"),), {}),
    "drop-before-text": (lambda: (drop(), ok(*WORDS)), {}),
    "malformed-json": (lambda: (raw(b"data: {not json\n\n", b"data: [DONE]\n\n"),), {}),
    "truncated": (lambda: (truncated("so", "ak"),), {}),
    "trickle": (lambda: (trickle(*WORDS),), {}),
    "short-stall-first": (lambda: (stall(seconds=0.2, resume=WORDS),), {}),
    "short-stall-mid": (lambda: (stall("so", seconds=0.2, resume=("ak", " ok")),), {}),
    "stall-mid-idle-timeout": (lambda: (stall("so", seconds=1.0),), {"timeouts": {"idle_ms": 300}}),
    "stall-first-timeout": (lambda: (stall(seconds=1.0), ok(*WORDS)), {"timeouts": {"first_byte_ms": 300}}),
}
ALWAYS_DONE = {"ok", "trickle", "short-stall-first", "short-stall-mid"}
ALWAYS_ERROR = {"429-retry-after-1", "503-forever", "reset-forever", "drop-mid-stream", "malformed-json", "truncated",
                "stall-mid-idle-timeout"}
"""the rest end either way: whether they are retried depends on the sidecar's jittered backoff (up to 500 ms
for a first retry) against the 200 ms that max_delay_ms allows"""


@pytest.fixture
def server() -> Iterator[FaultServer]:
    srv = FaultServer()
    yield srv
    srv.close()


@pytest.fixture
def sc(tmp_path: Path) -> Iterator[TimedSidecar]:
    data = tmp_path / "data"
    data.mkdir()
    proc = TimedSidecar(data)
    proc.wait_for(lambda m: m.get("method") == "sidecar-ready")
    yield proc
    proc.kill()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def fill_pool(sc: TimedSidecar, server: FaultServer, tag: str) -> None:
    """Bring the sidecar's connection pool to the same state before each measurement: more overlapping
    streams than it keeps alive, so afterwards it holds exactly its keep-alive maximum of idle connections
    (otherwise the count of pooled sockets, not a leak, would decide the comparison)."""
    ids = [f"fill-{tag}-{i}" for i in range(POOL_FILL)]
    for sid in ids:
        server.plan(sid, ok(*WORDS, delay=0.1))
        sc.send({"jsonrpc": "2.0", "id": sid, "method": "llm_stream_text",
                 "params": {"model": f"soak:{sid}", "messages": MSGS, "stream_id": sid}})
    sc.wait_ended(ids, timeout=60)
    for sid in ids:
        assert sc.stream_events(sid)[-1]["type"] == "done"
    sc.call("sidecar_info")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_soak_thousand_streams(sc: TimedSidecar, server: FaultServer) -> None:
    began = time.monotonic()
    sc.call("llm_register_custom_provider", {"id": "soak", "name": "Soak", "protocol": "openai",
                                             "base_url": server.base_url, "requires_api_key": False})
    # The faults arrive in bursts here; the breaker (tested on its own) would turn them into outages.
    sc.call("configure_provider", {"id": "soak", "limits": {"breaker_threshold": 1_000_000}})
    rng = random.Random(SEED)
    kinds: dict[str, str] = {}
    pid = sc.proc.pid
    first_rss = first_fds = 0
    for batch in range(STREAMS // BATCH):
        ids = []
        for i in range(BATCH):
            sid = f"soak-{batch}-{i}"
            kind = rng.choice(sorted(FAULTS)) if rng.random() < FAULT_RATE else "ok"
            acts, extra = FAULTS[kind] if kind != "ok" else ((lambda: (ok(*WORDS, delay=0.05),)), {})
            kinds[sid] = kind
            server.plan(sid, *acts())
            params = {"model": f"soak:{sid}", "messages": MSGS, "stream_id": sid,
                      "retry": {"max_retries": 1, "max_delay_ms": 200}, **extra}
            sc.send({"jsonrpc": "2.0", "id": sid, "method": "llm_stream_text", "params": params})
            ids.append(sid)
        sc.wait_answered(ids, timeout=60)
        sc.wait_ended(ids, timeout=60)
        sc.call("sidecar_info")
        if batch == 0:
            fill_pool(sc, server, "first")
            first_rss, first_fds = rss_kib(pid), fd_count(pid)

    fill_pool(sc, server, "end")
    end_rss, end_fds = rss_kib(pid), fd_count(pid)
    took = time.monotonic() - began
    faults = {k: sum(1 for v in kinds.values() if v == k) for k in sorted(set(kinds.values()))}
    print(f"soak: {STREAMS} streams in {took:.1f} s; RSS {first_rss} KiB after {BATCH} -> {end_rss} KiB; "
          f"fds {first_fds} -> {end_fds}; at most {server.peak} requests at once upstream; kinds {faults}")

    responses = {m["id"]: m for m in sc.messages if isinstance(m, dict) and "id" in m and "method" not in m}
    outcomes: dict[str, int] = {}
    for sid, kind in kinds.items():
        assert "result" in responses[sid], responses[sid]
        events = sc.stream_events(sid)
        check_stream_invariants(events)  # seq without gaps; exactly one terminal event, and last
        end = events[-1]
        key = end["type"] if end["type"] == "done" else end["error"]["code"]
        outcomes[key] = outcomes.get(key, 0) + 1
        if kind in ALWAYS_DONE:
            assert end["type"] == "done", (sid, kind, end)
        elif kind in ALWAYS_ERROR:
            assert end["type"] == "error", (sid, kind, end)
        if end["type"] == "done":
            assert text_of(events) == "".join(WORDS), (sid, kind)
    print(f"soak: outcomes {outcomes}")
    assert sum(v for k, v in faults.items() if k != "ok") >= 20, "the seed should inject a few dozen faults"
    assert sc.bad_lines == []
    assert sc.proc.poll() is None

    assert abs(end_rss - first_rss) <= 0.2 * first_rss, (first_rss, end_rss)
    assert end_fds <= first_fds + 10, (first_fds, end_fds)
