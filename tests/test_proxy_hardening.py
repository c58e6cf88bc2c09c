"""The proxy under a hostile neighbour: the real sidecar process with its open-file limit lowered to
256 (as a small default or a container can leave it), raw sockets that connect and send nothing or
half a request, bodies nested too deeply, uploads cut short.

Limits under test (README, "The local proxy"): at most 64 connections at once, the next closed at
once; a connection that sends nothing is closed after 5 s, one whose request headers are not
complete 10 s after its first byte too; the sidecar's own files keep working meanwhile.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import register_upstream
from harness import Reply, Sidecar, Upstream, sse

pytestmark = pytest.mark.skipif(os.name != "posix", reason="RLIMIT_NOFILE is POSIX")

FD_LIMIT = 256
CAP = 64
IDLE_BAR = 15.0
"""the issue's bar: idle connections closed within 15 s (the proxy closes them after 5)"""


def lower_fd_limit() -> None:
    """Runs in the child before Python starts: soft and hard limit 256, so the sidecar cannot raise it."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


@pytest.fixture
def sidecar(data_dir: Path) -> Iterator[Sidecar]:
    sc = Sidecar(data_dir, "--log-level", "info", preexec_fn=lower_fd_limit)
    sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
    yield sc
    sc.kill()


@pytest.fixture
def proxy(sidecar: Sidecar) -> dict[str, Any]:
    started = sidecar.call("start_llm_proxy", {})
    started["port"] = int(started["url"].split(":")[2].split("/")[0])
    return started


def open_idle(port: int, n: int) -> list[socket.socket]:
    """n connections that send nothing; connects run in parallel (the kernel's queue may be full)."""
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        assert s.connect_ex(("127.0.0.1", port)) in (0, errno.EINPROGRESS)
        socks.append(s)
    pending = list(socks)
    deadline = time.monotonic() + 10
    while pending and time.monotonic() < deadline:
        _, writable, _ = select.select([], pending, [], 0.5)
        pending = [s for s in pending if s not in writable]
    assert not pending, f"{len(pending)} connects did not finish"
    return socks


def closed_by_server(s: socket.socket) -> bool:
    """Whether the server closed this connection (EOF or reset); it sent nothing else."""
    try:
        data = s.recv(1024)
    except BlockingIOError:
        return False
    except (ConnectionResetError, OSError):
        return True
    assert data == b"", data
    return True


def wait_closed(socks: list[socket.socket], timeout: float) -> dict[socket.socket, float]:
    """When each socket was closed by the server (monotonic time); those still open are missing."""
    closed: dict[socket.socket, float] = {}
    deadline = time.monotonic() + timeout
    while len(closed) < len(socks) and time.monotonic() < deadline:
        open_now = [s for s in socks if s not in closed]
        readable, _, _ = select.select(open_now, [], [], 0.25)
        for s in readable:
            if closed_by_server(s):
                closed[s] = time.monotonic()
    return closed


class PeakFds:
    """The most descriptors the process held, sampled from /proc every few ms (0 where there is no /proc)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.value = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        if os.path.isdir(f"/proc/{pid}/fd"):
            self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            try:
                self.value = max(self.value, len(os.listdir(f"/proc/{self.pid}/fd")))
            except OSError:
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def post(proxy: dict[str, Any], body: bytes) -> httpx.Response:
    return httpx.post(f"{proxy['url']}/chat/completions", content=body, timeout=20,
                      headers={"authorization": f"Bearer {proxy['token']}", "content-type": "application/json"})


def echo(proxy: dict[str, Any], text: str) -> str:
    answer = post(proxy, json.dumps({"model": "mock:echo", "messages": [{"role": "user", "content": text}]}).encode())
    assert answer.status_code == 200, answer.text
    content: str = answer.json()["choices"][0]["message"]["content"]
    return content


def test_the_soft_open_file_limit_is_raised_to_the_hard_limit(data_dir: Path) -> None:
    if not os.path.exists("/proc/self/limits"):
        pytest.skip("reads the child's limits from /proc")

    def soft_256_hard_1024() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 1024))

    sc = Sidecar(data_dir, preexec_fn=soft_256_hard_1024)
    try:
        sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
        limits = Path(f"/proc/{sc.proc.pid}/limits").read_text().splitlines()
        [line] = [ln for ln in limits if ln.startswith("Max open files")]
        assert line.split()[3:5] == ["1024", "1024"], line
    finally:
        sc.kill()


# --- starvation ---------------------------------------------------------------------------------------------------


def test_a_flood_of_idle_connections_does_not_starve_the_sidecar(sidecar: Sidecar, proxy: dict[str, Any]) -> None:
    peak = PeakFds(sidecar.proc.pid)
    opened = time.monotonic()
    flood = open_idle(proxy["port"], 300)
    try:
        # the sidecar's own files: settings (twice), the usage log (a write, then a read), while flooded
        configured = sidecar.call("configure_provider", {"id": "openai", "base_url": "http://127.0.0.1:9/v1"})
        assert configured["base_url"] == "http://127.0.0.1:9/v1"
        sidecar.call("llm_register_custom_provider", {"id": "flooded", "name": "Flooded", "protocol": "openai",
                                                      "base_url": "http://127.0.0.1:9/v1", "requires_api_key": False})
        assert "flooded" in {p["id"] for p in sidecar.call("list_providers")}
        events = sidecar.stream({"model": "mock:echo", "messages": [{"role": "user", "content": "still here"}]})
        assert events[-1]["type"] == "done"
        assert sidecar.call("get_usage_stats", {})["total"]["requests"] == 1
        assert sidecar.call("list_saved_providers") == []

        closed = wait_closed(flood, IDLE_BAR + 5)
        still_open = len(flood) - len(closed)
        assert still_open == 0, f"{still_open} idle connections still open after {IDLE_BAR + 5} s"
        slowest = max(closed.values()) - opened
        assert slowest <= IDLE_BAR, f"the last idle connection closed after {slowest:.1f} s"
    finally:
        peak.stop()
        for s in flood:
            s.close()
    if peak.value:
        assert peak.value < FD_LIMIT - 32, f"the sidecar held {peak.value} descriptors: the reserve was eaten"
    err = bytes(sidecar.stderr).decode(errors="replace")
    assert "Too many open files" not in err and "Traceback" not in err, err[-3000:]
    assert echo(proxy, "after the flood") == "after the flood"


def test_connection_over_the_cap_is_closed_at_once(sidecar: Sidecar, proxy: dict[str, Any]) -> None:
    first = open_idle(proxy["port"], CAP)
    try:
        time.sleep(0.5)  # all accepted (idle ones are closed only after 5 s)
        [extra] = open_idle(proxy["port"], 1)
        closed = wait_closed([extra], IDLE_BAR)
        assert extra in closed, "connection number 65 was kept open"
        assert wait_closed(first, 0) == {}, "the first 64 are still open when the 65th is closed"
        extra.close()
    finally:
        for s in first:
            s.close()
    # once they are gone, the proxy serves again
    assert echo(proxy, "room again") == "room again"


def test_headers_that_never_complete_are_cut_off(proxy: dict[str, Any]) -> None:
    """Half a request line and one header byte a second: not idle (bytes keep coming), but the
    headers are not complete 10 s after the first byte."""
    s = socket.create_connection(("127.0.0.1", proxy["port"]))
    s.setblocking(False)
    started = time.monotonic()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    closed_at = None
    try:
        while time.monotonic() - started < 25:
            try:
                s.sendall(b"a")
            except OSError:
                closed_at = time.monotonic()
                break
            if wait_closed([s], 1.0):
                closed_at = time.monotonic()
                break
    finally:
        s.close()
    assert closed_at is not None, "a request whose headers never ended was kept open"
    took = closed_at - started
    assert 9.0 <= took <= 20.0, f"closed after {took:.1f} s, expected about 10"


def test_a_refused_request_closes_its_connection(proxy: dict[str, Any]) -> None:
    """Without the token the body is never read: the connection closes, so a trickled body cannot hold it."""
    s = socket.create_connection(("127.0.0.1", proxy["port"]))
    s.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{proxy['port']}\r\n"
              "Content-Length: 1000000\r\n\r\n{".encode())
    s.settimeout(10)
    answer = b""
    while chunk := s.recv(65536):
        answer += chunk
    s.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401") and b"connection: close" in head.lower()
    assert json.loads(body)["error"]["code"] == "authentication_failed"


# --- bodies --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    b'{"model":"mock:echo","messages":[{"role":"user","content":[{"type":"text","x":' + b"[" * 100_000
    + b"]" * 100_000 + b"}]}]}",
    b'{"model":"mock:echo","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function",'
    b'"function":{"name":"f","parameters":' + b'{"a":' * 100_000 + b"1" + b"}" * 100_000 + b"}}]}",
    b"[" * 100_000,
    b'{"model":"mock:echo","messages":[',
    b"\xff\xfe not json",
], ids=["nested-content", "nested-tool-schema", "nested-top-level", "truncated", "not-utf8"])
def test_nested_or_invalid_json_is_an_openai_400(proxy: dict[str, Any], body: bytes) -> None:
    answer = post(proxy, body)
    assert answer.status_code == 400, answer.text[:500]
    assert answer.headers["content-type"] == "application/json"
    error = answer.json()["error"]
    assert error["code"] == "invalid_request" and error["type"] == "invalid_request_error"
    assert echo(proxy, "next") == "next"


def test_nesting_near_the_recursion_limit_is_served_or_an_openai_400(
        sidecar: Sidecar, proxy: dict[str, Any], upstream: Upstream) -> None:
    """Tool schemas nested just under msgspec's limit decode, and then meet Python's recursion limit
    further on (a protocol's encoder): every depth gets an answer, a 200 or an OpenAI-shaped 400."""
    chunk = {"id": "c", "object": "chat.completion.chunk", "model": "m",
             "choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}]}
    upstream.replies["m"] = Reply(chunks=sse([chunk]))
    register_upstream(sidecar, upstream, "deep")
    statuses = set()
    for depth in range(940, 1001, 2):
        schema = b'{"a":' * depth + b"1" + b"}" * depth
        for stream in (b"false", b"true"):
            answer = post(proxy, b'{"model":"deep:m","stream":' + stream
                          + b',"messages":[{"role":"user","content":"x"}],'
                          b'"tools":[{"type":"function","function":{"name":"f","parameters":' + schema + b"}}]}")
            statuses.add(answer.status_code)
            assert answer.status_code in (200, 400), (depth, stream, answer.status_code, answer.text[:300])
            if answer.status_code == 400:
                assert answer.json()["error"]["code"] == "invalid_request"
    assert statuses == {200, 400}
    assert "Traceback" not in bytes(sidecar.stderr).decode(errors="replace")


def test_an_aborted_upload_logs_one_line(sidecar: Sidecar, proxy: dict[str, Any]) -> None:
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", proxy["port"]))
        s.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{proxy['port']}\r\n"
                  f"Authorization: Bearer {proxy['token']}\r\nContent-Type: application/json\r\n"
                  "Content-Length: 100000\r\n\r\n".encode() + b'{"model":"mock:echo","messages":')
        time.sleep(0.2)
        s.close()
    assert echo(proxy, "after") == "after"  # served after the aborted ones, so their lines are written
    deadline = time.monotonic() + 5
    while bytes(sidecar.stderr).count(b"during its upload") < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = bytes(sidecar.stderr).decode(errors="replace").splitlines()
    assert len([ln for ln in lines if "during its upload" in ln]) == 3, lines
    assert not any("Traceback" in ln or "Exception in ASGI" in ln for ln in lines), lines
