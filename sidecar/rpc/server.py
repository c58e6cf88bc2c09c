"""JSON-RPC 2.0 over NDJSON: framing in, dispatch, lifecycle.

This layer knows nothing of LLMs. It parses each line once with msgspec, splits batches
so every member gets its own answer, decodes params into the method's msgspec Struct
(a bad field is -32602 naming it), serves requests concurrently in one task group and
owns the process lifecycle: EOF drains, stop cancels, a hard deadline backs both up.
Dispatch goes through jsonrpcserver with its jsonschema validator switched off: the checks it
would make are made here once, on the object parsed once.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.lowlevel
import msgspec
from anyio.abc import TaskGroup, TaskStatus
from jsonrpcserver import Error, Success
from jsonrpcserver.async_main import dispatch_to_serializable

from .decode import MAX_DEPTH, LineError, decode_line, may_nest_deeper, too_deep
from .stdio import LINE_TOO_LONG, LineReader, LineWriter, Marker

log = logging.getLogger("sidecar.rpc")

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603


class RpcError(Exception):
    """Raise from a method to answer with this exact JSON-RPC error."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


class RequestContext:
    """What a method gets besides its params: a way to start work that outlives it."""

    def __init__(self, server: RpcServer) -> None:
        self.server = server
        self.responded = anyio.Event()
        """Set once this request's response is queued, so later notifications follow it."""

    def spawn(self, fn: Callable[[], Awaitable[None]]) -> None:
        self.server.spawn(fn)


Handler = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class MethodSpec:
    fn: Handler
    """``fn(ctx, params)`` when ``params`` is a type, else ``fn(ctx)``"""
    params: type | None = None
    result: Any = None
    summary: str = ""


ErrorMapper = Callable[[Exception], RpcError | None]

_encoder = msgspec.json.Encoder()


class _Notification(msgspec.Struct):
    jsonrpc: str
    method: str
    params: Any


def _error(code: int, message: str, id_: Any = None, data: Any = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return {"jsonrpc": "2.0", "error": err, "id": id_}


def _encode_reply(reply: dict[str, Any]) -> bytes:
    try:
        return _encoder.encode(reply)
    except Exception:
        return _encoder.encode(_error(INTERNAL_ERROR, "Internal error", reply.get("id")))


def _valid_id(value: Any) -> bool:
    return value is None or (isinstance(value, str | int | float) and not isinstance(value, bool))


class RpcServer:
    def __init__(
        self,
        methods: dict[str, MethodSpec],
        *,
        map_error: ErrorMapper | None = None,
        drain_timeout: float = 60.0,
        exit_deadline: float = 2.0,
        parent_pid: int | None = None,
        owns_process: bool = True,
    ) -> None:
        """``owns_process``: a stop that overruns ``exit_deadline`` ends the process, and signals stop the
        server; False when it serves inside another program (a test), which must outlive it."""
        self._map_error = map_error
        self.reader_thread: threading.Thread | None = None
        """the thread reading ``in_fd``: whoever closes that fd after ``serve`` waits for it first (in a
        process it is stdin and never closed; an embedder that closes it must, or the thread could read
        from whatever file reuses the number)"""
        self._methods = {name: self._wrap(spec) for name, spec in methods.items()}
        self._drain_timeout = drain_timeout
        self._exit_deadline = exit_deadline
        self._parent_pid = parent_pid
        self._owns_process = owns_process
        self._writer: LineWriter | None = None
        self._tg: TaskGroup | None = None
        self._inflight = 0
        self._idle = anyio.Event()
        self.stopping = False
        self.input_closed = anyio.Event()
        """Set once stdin has ended and every request read from it was answered: no request can come any
        more, so work that waits for one (a tool loop waiting for results) can give up."""
        self._eof = False
        self._answering = 0

    # --- public surface for methods -------------------------------------------------

    async def notify(self, method: str, params: Any) -> None:
        """Send a notification; waits only while the reader is slow (backpressure)."""
        assert self._writer is not None
        await self._writer.write(_encoder.encode(_Notification("2.0", method, params)) + b"\n")

    def spawn(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Run ``fn`` beside the requests; EOF waits for it, stop cancels it."""
        if self._tg is None:
            raise RuntimeError("server is not running")
        self._inflight += 1  # counted from now: a drain that starts before the task does must wait for it
        self._tg.start_soon(self._tracked, fn)

    def stop(self) -> None:
        """Cancel everything in flight, let it send its last words, and exit."""
        if self.stopping:
            return
        self.stopping = True
        log.info("stopping")
        if self._tg is not None:
            self._tg.cancel_scope.cancel()
        if not self._owns_process:
            return
        # Whatever happens to stdout or a stuck task, the process ends in time.
        timer = threading.Timer(self._exit_deadline - 0.2, _hard_exit)
        timer.daemon = True
        timer.start()

    # --- serving -----------------------------------------------------------------

    async def serve(self, in_fd: int, out_fd: int, ready: tuple[str, Any] | None = None) -> None:
        self._writer = writer = LineWriter(out_fd, on_broken=self.stop)
        async with anyio.create_task_group() as outer:
            outer.start_soon(writer.run)
            await outer.start(self._watch_signals)  # before ready: a signal right after it must count
            if self._parent_pid:
                outer.start_soon(self._watch_parent, self._parent_pid)
            reader = LineReader(in_fd)
            self.reader_thread = reader.start()
            if ready is not None:
                await self.notify(*ready)
            async with anyio.create_task_group() as tg:
                self._tg = tg
                while (line := await reader.receive()) is not None:
                    self._answering += 1
                    self.spawn(lambda line=line: self._answer(line))  # type: ignore[misc]
                    # One line per loop iteration: a burst of lines cannot hold up the streams already running.
                    await anyio.lowlevel.checkpoint()
                self._eof = True
                if self._answering == 0:
                    self.input_closed.set()
                log.debug("stdin closed; draining %d task(s)", self._inflight)
                if self._inflight:
                    with anyio.move_on_after(self._drain_timeout):
                        await self._idle.wait()
                tg.cancel_scope.cancel()
            writer.close()
            with anyio.move_on_after(1.0):
                await writer.finished.wait()
            outer.cancel_scope.cancel()

    async def _tracked(self, fn: Callable[[], Awaitable[None]]) -> None:
        try:
            await fn()
        except Exception:  # a bug in one request must not take the server down
            log.exception("unexpected error while serving")
        finally:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.set()
                self._idle = anyio.Event()

    async def _answer(self, line: bytes | Marker) -> None:
        try:
            await self._handle_line(line)
        finally:
            self._answering -= 1
            if self._eof and self._answering == 0:
                self.input_closed.set()

    async def _handle_line(self, line: bytes | Marker) -> None:
        assert self._writer is not None
        if line is LINE_TOO_LONG:
            await self._send(_error(PARSE_ERROR, "Parse error: line longer than the 16 MiB limit"))
            return
        assert isinstance(line, bytes)
        if not line.strip():
            return
        try:
            obj = decode_line(line)
        except LineError as exc:
            await self._send(_error(PARSE_ERROR, f"Parse error: {exc}"))
            return
        check_depth = may_nest_deeper(line)
        if isinstance(obj, list):
            if not obj:
                await self._send(_error(INVALID_REQUEST, "Invalid request: empty batch"))
                return
            ctxs = [RequestContext(self) for _ in obj]
            answers: list[Any] = [None] * len(obj)

            async def one(i: int) -> None:
                answers[i] = await self._dispatch(obj[i], ctxs[i], check_depth)

            async with anyio.create_task_group() as tg:
                for i in range(len(obj)):
                    tg.start_soon(one, i)
            replies = [a for a in answers if a is not None]
            if replies:
                await self._send(replies)
            for ctx in ctxs:
                ctx.responded.set()
        else:
            ctx = RequestContext(self)
            reply = await self._dispatch(obj, ctx, check_depth)
            if reply is not None:
                await self._send(reply)
            ctx.responded.set()

    async def _send(self, message: Any) -> None:
        assert self._writer is not None
        try:
            data = _encoder.encode(message)
        except Exception:  # a result that cannot be encoded is our bug, not the caller's
            log.exception("could not encode a response")
            if isinstance(message, list):  # a batch: only the members that cannot be encoded fail
                data = b"[" + b",".join(map(_encode_reply, message)) + b"]"
            else:
                data = _encode_reply(message)
        await self._writer.write(data + b"\n")

    async def _dispatch(self, req: Any, ctx: RequestContext, check_depth: bool = False) -> Any:
        """Answer one request object (None for a notification)."""
        if not isinstance(req, dict):
            return _error(INVALID_REQUEST, "Invalid request: expected an object")
        id_ = req.get("id")
        if not _valid_id(id_):
            return _error(INVALID_REQUEST, "Invalid request: id must be a string, a number or null")
        if check_depth and too_deep(req):
            return _error(INVALID_REQUEST, f"Invalid request: nested deeper than {MAX_DEPTH} levels", id_)
        if req.get("jsonrpc") != "2.0":
            return _error(INVALID_REQUEST, 'Invalid request: "jsonrpc" must be "2.0"', id_)
        if not isinstance(req.get("method"), str):
            return _error(INVALID_REQUEST, 'Invalid request: "method" must be a string', id_)
        if "params" in req and not isinstance(req["params"], dict | list):
            return _error(INVALID_REQUEST, 'Invalid request: "params" must be an object or an array', id_)
        extra = set(req) - {"jsonrpc", "method", "params", "id"}
        if extra:
            return _error(INVALID_REQUEST, f"Invalid request: unexpected member {sorted(extra)[0]!r}", id_)
        if req["method"] not in self._methods:
            if "id" not in req:
                return None  # a notification is never answered, not even with an error
            return _error(METHOD_NOT_FOUND, f"Method not found: {req['method']}", id_)
        return await dispatch_to_serializable(
            req,  # ignored: the deserializer hands back the object parsed once above
            self._methods,
            context=ctx,
            deserializer=lambda _: req,
            validator=lambda r: r,  # every check jsonschema would make is made above, without its cost
        )

    def _wrap(self, spec: MethodSpec) -> Handler:
        map_error = self._map_error

        async def method(ctx: RequestContext, /, *args: Any, **kwargs: Any) -> Any:
            try:
                if spec.params is None:
                    if args or kwargs:
                        return Error(INVALID_PARAMS, "Invalid params: this method takes none")
                    result = await spec.fn(ctx)
                else:
                    if args:
                        return Error(INVALID_PARAMS, "Invalid params: expected an object (by-name params)")
                    try:
                        params: Any = msgspec.convert(kwargs, spec.params)
                    except msgspec.ValidationError as exc:
                        return Error(INVALID_PARAMS, f"Invalid params: {exc}")
                    result = await spec.fn(ctx, params)
            except RpcError as exc:
                return Error(exc.code, exc.message, exc.data) if exc.data is not None else Error(
                    exc.code, exc.message
                )
            except Exception as exc:
                mapped = map_error(exc) if map_error is not None else None
                if mapped is not None:
                    return Error(mapped.code, mapped.message, mapped.data)
                log.exception("internal error in a method")
                return Error(INTERNAL_ERROR, "Internal error", {"code": "internal"})
            return Success(result)

        return method

    # --- lifecycle watchers ------------------------------------------------------

    async def _watch_signals(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        if not self._owns_process:
            task_status.started()
            return
        if os.name != "posix":
            token = anyio.lowlevel.current_token()
            for sig in (signal.SIGINT, getattr(signal, "SIGBREAK", signal.SIGINT)):
                signal.signal(sig, lambda *_: anyio.from_thread.run_sync(self.stop, token=token))
            task_status.started()
            await anyio.sleep_forever()
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            task_status.started()
            async for signum in signals:
                log.info("received signal %d", signum)
                self.stop()

    async def _watch_parent(self, pid: int) -> None:
        ppid = os.getppid()  # a change means we were reparented: our parent has exited
        while _process_alive(pid) and (ppid == 1 or os.getppid() == ppid):
            await anyio.sleep(0.25)
        log.info("parent process %d is gone", pid)
        self.stop()


def _hard_exit() -> None:
    try:
        sys.stderr.flush()
    finally:
        os._exit(0)


def _process_alive(pid: int) -> bool:
    if os.name == "posix":
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    import ctypes  # Windows: a process handle that is signalled once the process ends

    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    handle = kernel32.OpenProcess(0x00100000, False, pid)  # SYNCHRONIZE
    if not handle:
        return False
    try:
        return bool(kernel32.WaitForSingleObject(handle, 0) == 0x102)  # WAIT_TIMEOUT
    finally:
        kernel32.CloseHandle(handle)
