"""A loopback HTTP/1.1 upstream that misbehaves on purpose, for the fault-injection, soak and fuzz tests.

A raw socket server (one thread per connection, keep-alive) that speaks just enough HTTP for the
sidecar's pooled httpx client. What it does to a request is chosen by the ``model`` in the JSON body
and how many requests for that model came before (the attempt counter), so retries, fallbacks and
concurrent streams can each get their own behaviour from the same server:

    server.plan("m1", status(429, headers={"retry-after": "1"}), ok("hi"))   # attempt 0, then 1 and on

Every request is recorded (arrival time, headers, body, when the client closed the connection) so
tests can assert what reached the upstream and when, measured here on the server side.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from harness import Sidecar, sse


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    """One chat.completion.chunk as OpenAI streams it."""
    return {
        "id": "chatcmpl-fault", "object": "chat.completion.chunk", "created": 1754432618, "model": "gpt-fault",
        "choices": [{"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}],
        **extra,
    }


USAGE = {"id": "chatcmpl-fault", "object": "chat.completion.chunk", "created": 1754432618, "model": "gpt-fault",
         "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}
ROLE = sse([chunk({"role": "assistant", "content": ""})], done=False)[0]


def text_frames(texts: Iterable[str]) -> list[bytes]:
    return [sse([chunk({"content": t})], done=False)[0] for t in texts]


def tail_frames() -> list[bytes]:
    """The end of a complete stream: finish_reason, usage, [DONE]."""
    return sse([chunk({}, "stop"), USAGE])


# --- what to do with one request --------------------------------------------------------------


@dataclass(frozen=True)
class Act:
    kind: str
    """ok | status | reset | drop | stall | raw | trickle"""
    frames: tuple[bytes, ...] = ()
    """SSE frames sent (each its own HTTP chunk) before the act's ending"""
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    message: str = ""
    """the error message of a ``status`` reply"""
    delay: float = 0.0
    """seconds before each frame"""
    stall: float = 0.0
    """``stall``: seconds to hold the connection silent (or until the client closes it)"""
    resume: bool = False
    """``stall``: send ``rest`` and the end of a complete stream afterwards (when the client is still there)"""
    rest: tuple[bytes, ...] = ()
    end: str = "done"
    """how the body ends: done (terminating chunk), fin (close mid-body), rst (reset mid-body)"""
    content_type: str = ""
    """of the answer; empty: text/event-stream for a 200, application/json for a ``status`` reply"""


def ok(*texts: str, delay: float = 0.0) -> Act:
    """A complete, well-formed stream of ``texts``."""
    return Act("ok", (ROLE, *text_frames(texts), *tail_frames()), delay=delay)


def status(code: int, *, headers: dict[str, str] | None = None, message: str = "", plain: bool = False) -> Act:
    """An error answer with a JSON body (plain text with ``plain``), which echoes the Authorization header
    when the server is told to."""
    return Act("status", status=code, headers=tuple((headers or {}).items()),
               message=message or f"fault injected: HTTP {code}", content_type="text/plain" if plain else "")


def reset() -> Act:
    """Read the request, then reset the connection before any byte of an answer (SO_LINGER 0, close)."""
    return Act("reset")


def drop(*texts: str, rst: bool = False) -> Act:
    """Headers and some frames, then the connection goes away in the middle of the chunked body."""
    return Act("drop", (ROLE, *text_frames(texts)), end="rst" if rst else "fin")


def stall(*texts: str, seconds: float = 30.0, resume: tuple[str, ...] | None = None) -> Act:
    """Stall before the first byte (no texts: not even the headers) or after some frames; with ``resume``,
    send those texts and the end of a complete stream afterwards (when the client is still there)."""
    frames = (ROLE, *text_frames(texts)) if texts else ()
    return Act("stall", frames, stall=seconds, resume=resume is not None,
               rest=() if resume is None else tuple(text_frames(resume)))


def raw(*frames: bytes, end: str = "done", content_type: str = "") -> Act:
    """A 200 event stream carrying exactly these bytes (malformed SSE or JSON, a truncated stream, ...).
    ``{AUTH}`` in them becomes the Authorization echo when the server is told to echo it."""
    return Act("raw", frames, end=end, content_type=content_type)


def truncated(*texts: str) -> Act:
    """A stream whose body ends cleanly but without its final event (no finish_reason, no [DONE])."""
    return raw(ROLE, *text_frames(texts))


def trickle(*texts: str) -> Act:
    """A complete stream whose body goes out one byte per HTTP chunk, each in its own write."""
    return Act("trickle", (ROLE, *text_frames(texts), *tail_frames()))


# --- what the server saw -----------------------------------------------------------------------


@dataclass
class Hit:
    """One request that reached the server."""

    model: str
    attempt: int
    arrived: float
    """time.monotonic() when the whole request had been read"""
    path: str
    headers: dict[str, str]
    body: Any
    stalled_at: float | None = None
    """when a stall began (after the last byte sent before it)"""
    closed_at: float | None = None
    """when the client was seen closing the connection while the server was still answering"""
    closed: threading.Event = field(default_factory=threading.Event)
    stalling: threading.Event = field(default_factory=threading.Event)
    answered: threading.Event = field(default_factory=threading.Event)
    """the whole answer was written"""
    over: bool = False


class _Gone(Exception):
    """The client closed the connection."""


class FaultServer:
    """Serves until ``close``; thread-safe records in ``hits``."""

    def __init__(self, *, echo_auth: bool = False, trickle_gap: float = 0.001) -> None:
        self.echo_auth = echo_auth
        self.trickle_gap = trickle_gap
        self.plans: dict[str, list[Act]] = {}
        self.default = status(404, message="no plan for this model")
        self.hits: list[Hit] = []
        self.active: dict[str, int] = {}
        self.max_active: dict[str, int] = {}
        self.connections = 0
        self.in_flight = 0
        self.peak = 0
        """the most requests the server was answering at once"""
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._socks: set[socket.socket] = set()
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(512)
        self.port = self._listener.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        threading.Thread(target=self._accept, name="fault-accept", daemon=True).start()

    # --- the test's side -------------------------------------------------------------------------

    def plan(self, model: str, *acts: Act) -> None:
        """Attempt n of ``model`` gets ``acts[n]``; the last act repeats for every later attempt."""
        assert acts
        with self._lock:
            self.plans[model] = list(acts)

    def hits_for(self, model: str) -> list[Hit]:
        with self._lock:
            return [h for h in self.hits if h.model == model]

    def wait_hits(self, model: str, n: int, timeout: float = 15) -> list[Hit]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hits = self.hits_for(model)
            if len(hits) >= n:
                return hits
            time.sleep(0.005)
        raise AssertionError(f"the upstream saw {len(self.hits_for(model))} request(s) for {model}, not {n}")

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()

    # --- serving ---------------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self.connections += 1
                self._socks.add(conn)
            threading.Thread(target=self._serve, args=(conn,), name="fault-conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        try:
            while not self._stop.is_set():
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                _method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    headers[k.strip().lower()] = v.strip()
                length = int(headers.get("content-length") or 0)
                while len(buf) < length:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                raw_body, buf = buf[:length], buf[length:]
                try:
                    body = json.loads(raw_body) if raw_body else None
                except ValueError:
                    body = raw_body
                model = body.get("model") if isinstance(body, dict) and isinstance(body.get("model"), str) else path
                with self._lock:
                    attempt = self._counts.get(model, 0)
                    self._counts[model] = attempt + 1
                    hit = Hit(model, attempt, time.monotonic(), path, headers, body)
                    self.hits.append(hit)
                    acts = self.plans.get(model)
                    act = self.default if not acts else acts[min(attempt, len(acts) - 1)]
                    self.active[model] = self.active.get(model, 0) + 1
                    self.max_active[model] = max(self.max_active.get(model, 0), self.active[model])
                    self.in_flight += 1
                    self.peak = max(self.peak, self.in_flight)
                try:
                    keep = self._answer(conn, hit, act)
                except _Gone:
                    hit.closed_at = hit.closed_at or time.monotonic()
                    hit.closed.set()
                    return
                finally:
                    self._over(hit)
                if not keep:
                    return
        except OSError:
            return
        finally:
            with self._lock:
                self._socks.discard(conn)
            with contextlib.suppress(OSError):
                conn.close()

    def _over(self, hit: Hit) -> None:
        """The request stops counting as active: called just before the last bytes of the answer go out
        (the client cannot have seen the end before that), or when the answer was cut short."""
        with self._lock:
            if not hit.over:
                hit.over = True
                self.active[hit.model] -= 1
                self.in_flight -= 1

    def _send(self, conn: socket.socket, data: bytes) -> None:
        try:
            conn.sendall(data)
        except OSError:
            raise _Gone from None

    def _chunk(self, conn: socket.socket, data: bytes) -> None:
        self._send(conn, b"%x\r\n%s\r\n" % (len(data), data))

    def _auth_echo(self, hit: Hit) -> str:
        return f" (request sent with Authorization: {hit.headers.get('authorization', '')})" if self.echo_auth else ""

    def _answer(self, conn: socket.socket, hit: Hit, act: Act) -> bool:
        """Answer one request; False when the connection must not be reused."""
        if act.kind == "reset":
            self._over(hit)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
            return False
        if act.kind == "status":
            message = act.message + self._auth_echo(hit)
            if act.content_type:
                body = message.encode()
            else:
                body = json.dumps({"error": {"message": message, "type": "fault", "code": None}}).encode()
            extra = "".join(f"{k}: {v}\r\n" for k, v in act.headers)
            self._over(hit)
            self._send(conn, (f"HTTP/1.1 {act.status} Fault\r\ncontent-type: {act.content_type or 'application/json'}"
                              f"\r\n{extra}content-length: {len(body)}\r\n\r\n").encode() + body)
            hit.answered.set()
            return True
        if act.kind == "stall" and not act.frames:
            self._stall(conn, hit, act.stall)
            if not act.resume:
                return False
        ctype = act.content_type or "text/event-stream"
        self._send(conn, f"HTTP/1.1 200 OK\r\ncontent-type: {ctype}\r\ncache-control: no-cache\r\n"
                         "transfer-encoding: chunked\r\n\r\n".encode())
        frames = [f.replace(b"{AUTH}", self._auth_echo(hit).encode()) for f in act.frames]
        if act.kind == "trickle":
            for byte in b"".join(frames):
                self._chunk(conn, bytes([byte]))
                time.sleep(self.trickle_gap)
        else:
            for frame in frames:
                if act.delay:
                    time.sleep(act.delay)
                self._chunk(conn, frame)
        if act.kind == "stall":
            if act.frames:
                self._stall(conn, hit, act.stall)
                if not act.resume:
                    return False
            else:
                self._chunk(conn, ROLE)
            for frame in (*act.rest, *tail_frames()):
                self._chunk(conn, frame)
        self._over(hit)
        if act.end == "fin":
            conn.shutdown(socket.SHUT_RDWR)
            return False
        if act.end == "rst":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
            return False
        self._send(conn, b"0\r\n\r\n")
        hit.answered.set()
        return True

    def _stall(self, conn: socket.socket, hit: Hit, seconds: float) -> None:
        """Say nothing for ``seconds``; raise _Gone the moment the client closes the connection."""
        hit.stalled_at = time.monotonic()
        hit.stalling.set()
        deadline = hit.stalled_at + seconds
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([conn], [], [], min(left, 0.5))
            if readable:
                try:
                    data = conn.recv(1, socket.MSG_PEEK)
                except OSError:
                    data = b""
                if not data:
                    hit.closed_at = time.monotonic()
                    raise _Gone
                time.sleep(0.001)  # the client sent something (it should not); keep watching


# --- the sidecar, with arrival times and a per-stream index --------------------------------------


TERMINAL = ("done", "error")


class TimedSidecar(Sidecar):
    """The harness's Sidecar, also noting when each line arrived and indexing events by stream.

    Waiting on many streams at once costs O(1) per line here, where scanning every message per
    wake-up would be quadratic in a soak run.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.stamps: list[float] = []
        self.by_stream: dict[str, list[dict[str, Any]]] = {}
        self.ended_at: dict[str, float] = {}
        self.responses: dict[str, dict[str, Any]] = {}
        """responses (not notifications) by their id, as ``id_key`` spells it"""
        super().__init__(*args, **kwargs)

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for raw_line in self.proc.stdout:
            now = time.monotonic()
            with self._cond:
                self.raw_lines.append(raw_line)
                try:
                    msg = json.loads(raw_line)
                except ValueError:
                    self.bad_lines.append(raw_line)
                else:
                    for m in msg if isinstance(msg, list) else [msg]:
                        self.messages.append(m)
                        self.stamps.append(now)
                        self._index(m, now)
                self._cond.notify_all()

    def _index(self, m: Any, now: float) -> None:
        if not isinstance(m, dict):
            return
        method = m.get("method")
        if isinstance(method, str) and method.startswith("llm-stream-"):
            sid = method[len("llm-stream-"):]
            self.by_stream.setdefault(sid, []).append(m.get("params"))
            if isinstance(m.get("params"), dict) and m["params"].get("type") in TERMINAL:
                self.ended_at.setdefault(sid, now)
        elif "id" in m and method is None:
            self.responses.setdefault(id_key(m["id"]), m)

    def wait_until(self, cond: Callable[[], bool], *, timeout: float = 15, what: str = "a condition") -> None:
        """Wait (on the reader's condition, no polling) until ``cond()`` holds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not cond():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what}; stderr: "
                                         f"{self.stderr.decode(errors='replace')[-2000:]}")
                self._cond.wait(left)

    def wait_ended(self, stream_ids: Iterable[str], *, timeout: float = 30) -> None:
        ids = list(stream_ids)
        self.wait_until(lambda: all(s in self.ended_at for s in ids), timeout=timeout,
                        what=f"{sum(s not in self.ended_at for s in ids)} stream(s) to end")

    def wait_answered(self, ids: Iterable[Any], *, timeout: float = 30) -> None:
        keys = [id_key(i) for i in ids]
        self.wait_until(lambda: all(k in self.responses for k in keys), timeout=timeout,
                        what=f"answers to {[k for k in keys if k not in self.responses][:5]}")

    def stream_events(self, stream_id: str) -> list[dict[str, Any]]:
        with self._cond:
            return list(self.by_stream.get(stream_id, []))


def id_key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
