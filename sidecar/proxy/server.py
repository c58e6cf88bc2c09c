"""The proxy's HTTP side: a raw ASGI gate (Host, Origin, token, body size), a few Starlette routes,
and the Uvicorn server run as a task of the sidecar's own event loop.

Imported only when the proxy starts: Starlette and Uvicorn stay out of the sidecar's start-up.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import SidecarError
from ..types import DoneEvent, ErrorEvent, ErrorInfo, Event, FallbackEvent, RetryEvent, StartEvent, WarningEvent
from . import connections, security
from .embeddings import embeddings_body, parse_embeddings_request, to_embed_params
from .translate import (
    NESTED_TOO_DEEPLY,
    ChunkWriter,
    completion_body,
    encode,
    error_body,
    error_status,
    parse_request,
    sse,
    to_params,
)

if TYPE_CHECKING:
    from ..engine import Engine
    from ..types import ModelInfo

log = logging.getLogger("sidecar.proxy")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_BUFFER = 64
"""events held between the upstream and a slow client before the upstream is slowed down"""
_NOT_OUTPUT = (StartEvent, RetryEvent, FallbackEvent, WarningEvent)


@dataclass
class Access:
    """What the gate checks against: the running proxy's token, port and bound host."""

    token: str
    port: int
    host: str


async def _send_json(send: Send, status: int, payload: Any, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = encode(payload)
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(extra or [])]})
    await send({"type": "http.response.body", "body": body})


async def _refuse(send: Send, status: int, code: str, message: str) -> None:
    """An error before the body was read: the connection is closed after it, so an unread body
    (or one still trickling in) cannot keep the connection open."""
    extra = [(b"connection", b"close")]
    if status == 401:
        extra.append((b"www-authenticate", b"Bearer"))
    await _send_json(send, status, error_body(code, message, status), extra)


class Gate:
    """Every request passes here first: a web page (Origin), a foreign Host name (DNS rebinding),
    a missing or wrong token, or a body over the limit never reaches a route. No CORS headers, ever."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers: dict[bytes, bytes] = {}
        for k, v in scope["headers"]:
            headers.setdefault(k, v)
        host = headers.get(b"host", b"").decode("latin-1")
        if not security.host_allowed(host, self.access.port, self.access.host):
            return await _refuse(send, 403, "permission_denied", "the Host header does not name this local proxy")
        if b"origin" in headers:
            return await _refuse(send, 403, "permission_denied", "requests from web pages (with an Origin) are refused")
        if not security.token_ok(headers.get(b"authorization", b"").decode("latin-1"), self.access.token):
            return await _refuse(send, 401, "authentication_failed",
                                 "missing or wrong token: send Authorization: Bearer <token from start_llm_proxy>")
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > security.MAX_BODY):
            return await _refuse(send, 413, "invalid_request",
                                 f"the request body is over the {security.MAX_BODY} byte limit")
        await self.app(scope, receive, send)


class ClientGone(Exception):
    """The client closed its connection before its request body was complete."""

    def __init__(self, received: int) -> None:
        super().__init__(received)
        self.received = received


async def _read_body(receive: Receive) -> bytes | None:
    """The whole body, or None when it grows past the limit (chunked uploads have no Content-Length)."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone(size)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > security.MAX_BODY:
            return None
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


def background(scope: Scope) -> bool:
    """``X-Priority: background`` (in any case) queues the request behind interactive ones at the provider;
    without it, or with any other value, it is interactive."""
    return any(k == b"x-priority" and v.strip().lower() == b"background" for k, v in scope["headers"])


def _too_deep() -> ErrorInfo:
    """A body msgspec could decode but the code after it (conversion, a protocol's encoder) could not
    walk: Python's recursion limit is near msgspec's own nesting limit."""
    return SidecarError("invalid_request", NESTED_TOO_DEEPLY).info


class ChatCompletions:
    """``POST /v1/chat/completions`` as a raw ASGI app: it needs to watch for the client leaving
    while it streams, and to choose the status code only once the upstream has answered."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            body = await _read_body(receive)
        except ClientGone as gone:
            log.info("a proxy client closed its connection during its upload (after %d bytes)", gone.received)
            return
        if body is None:
            return await _refuse(send, 413, "invalid_request",
                                 f"the request body is over the {security.MAX_BODY} byte limit")
        try:
            req = parse_request(body)
            params = to_params(req)
            if background(scope):
                params.priority = "background"
            prepared = await self.engine.prepare(params)
        except SidecarError as exc:
            return await self._error(send, exc.info)
        except RecursionError:
            return await self._error(send, _too_deep())
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                log.debug("proxy client went away; aborting its request")
                tg.cancel_scope.cancel()

            tg.start_soon(watch)
            try:
                if req.stream:
                    await self._stream(send, prepared, req.include_usage)
                else:
                    await self._complete(send, prepared)
            finally:
                tg.cancel_scope.cancel()

    @staticmethod
    async def _error(send: Send, info: ErrorInfo) -> None:
        status = error_status(info)
        await _send_json(send, status, error_body(info.code, info.message, status))

    async def _complete(self, send: Send, prepared: Any) -> None:
        try:
            result = await self.engine.complete(prepared)
        except SidecarError as exc:
            return await self._error(send, exc.info)
        except RecursionError:
            return await self._error(send, _too_deep())
        await _send_json(send, 200, completion_body(result))

    async def _stream(self, send: Send, prepared: Any, include_usage: bool) -> None:
        """Headers wait for the first output: an error before it is a real HTTP error (a 429 stays a 429)."""
        tx, rx = anyio.create_memory_object_stream[Event](_BUFFER)
        model = prepared.model_ref
        stream_id = f"proxy-{int(time.time() * 1000)}-{id(tx):x}"

        async def produce() -> None:
            async with tx:
                try:
                    done = await self.engine.stream(prepared, tx.send, stream_id=stream_id)
                except SidecarError as exc:
                    await tx.send(ErrorEvent(error=exc.info))
                except RecursionError:
                    await tx.send(ErrorEvent(error=_too_deep()))
                except Exception:
                    log.exception("proxy stream failed")
                    await tx.send(ErrorEvent(error=ErrorInfo(code="internal", message="internal error in the sidecar")))
                else:
                    await tx.send(done)

        async with anyio.create_task_group() as tg:
            tg.start_soon(produce)
            try:
                await self._relay(send, rx, model, include_usage)
            finally:
                tg.cancel_scope.cancel()  # the upstream stops with the response, however it ended

    async def _relay(self, send: Send, rx: Any, model: str, include_usage: bool) -> None:
        writer: ChunkWriter | None = None
        async with rx:
            async for event in rx:
                if writer is None:
                    if isinstance(event, FallbackEvent):
                        model = event.to_model
                    if isinstance(event, _NOT_OUTPUT):
                        continue
                    if isinstance(event, ErrorEvent):
                        return await self._error(send, event.error)
                    writer = ChunkWriter(model, include_usage)
                    await send({"type": "http.response.start", "status": 200, "headers": [
                        (b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
                        (b"x-accel-buffering", b"no")]})
                    await self._body(send, sse(writer.role()))
                if isinstance(event, ErrorEvent):
                    status = error_status(event.error)
                    await self._body(send, sse(error_body(event.error.code, event.error.message, status)))
                    break
                if isinstance(event, DoneEvent):
                    for chunk in writer.finish(event.finish_reason, event.usage):
                        await self._body(send, sse(chunk))
                    await self._body(send, b"data: [DONE]\n\n")
                    break
                delta = writer.event(event)
                if delta is not None:
                    await self._body(send, sse(delta))
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    @staticmethod
    async def _body(send: Send, data: bytes) -> None:
        await send({"type": "http.response.body", "body": data, "more_body": True})


class Embeddings:
    """``POST /v1/embeddings`` as a raw ASGI app, read with the same body limit as chat; the upstream calls
    stop when the client leaves."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            body = await _read_body(receive)
        except ClientGone:
            return
        if body is None:
            return await _refuse(send, 413, "invalid_request",
                                 f"the request body is over the {security.MAX_BODY} byte limit")
        try:
            req = parse_embeddings_request(body)
            params = to_embed_params(req)
            if background(scope):
                params.priority = "background"
        except SidecarError as exc:
            return await ChatCompletions._error(send, exc.info)
        answer: list[dict[str, Any]] = []
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                tg.cancel_scope.cancel()

            tg.start_soon(watch)
            try:
                answer.append(embeddings_body(await self.engine.embed(params), req.encoding_format))
            except SidecarError as exc:
                return await ChatCompletions._error(send, exc.info)
            finally:
                tg.cancel_scope.cancel()
        if answer:
            await _send_json(send, 200, answer[0])


def build_app(engine: Engine, access: Access, models: Callable[[], Awaitable[list[ModelInfo]]]) -> ASGIApp:
    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def list_models(request: Request) -> Response:
        found = await models()
        return JSONResponse({"object": "list", "data": [
            {"id": m.id, "object": "model", "created": 0, "owned_by": m.provider} for m in found]})

    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        code = "not_found" if status == 404 else "invalid_request"
        return JSONResponse(error_body(code, f"{request.method} {request.url.path} is not served here", status),
                            status_code=status)

    app = Starlette(routes=[
        Route("/health", health, methods=["GET"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/chat/completions", ChatCompletions(engine), methods=["POST"]),
        Route("/v1/embeddings", Embeddings(engine), methods=["POST"]),
    ], exception_handlers={404: not_found, 405: not_found})
    return Gate(app, access)


# --- the server -----------------------------------------------------------------------------


class QuietServer(uvicorn.Server):
    """Uvicorn without its signal handlers: SIGTERM and SIGINT belong to the sidecar."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # asyncio listened with the accept batch as backlog; the kernel's queue may be longer
        for sock in sockets or ():
            sock.listen(connections.LISTEN_BACKLOG)

    def abandon(self) -> None:
        """After a cancellation: close what a graceful shutdown would have."""
        for server in getattr(self, "servers", ()):
            server.close()
        for conn in list(self.server_state.connections):
            transport = getattr(conn, "transport", None)
            if transport is not None:
                transport.close()
        for task in list(self.server_state.tasks):
            task.cancel()


def make_server(app: ASGIApp) -> QuietServer:
    config = uvicorn.Config(
        app, log_config=None, access_log=False, log_level="warning", lifespan="off", ws="none",
        http=connections.guarded_protocol(connections.connection_cap()),
        timeout_keep_alive=connections.IDLE_TIMEOUT, backlog=connections.ACCEPT_BATCH,
        proxy_headers=False, server_header=False, date_header=True, timeout_graceful_shutdown=None,
    )
    return QuietServer(config)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the server starts so the port is known (and taken) at once.
    ``IPPROTO_TCP``, not 0: asyncio sets ``TCP_NODELAY`` only on sockets made with it (the protocol sets it too)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        if os.name != "nt":  # on Windows SO_REUSEADDR would let another process share the port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(connections.LISTEN_BACKLOG)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise SidecarError("invalid_request", f"cannot listen on {host}:{port} ({exc.strerror or 'error'})") from None
    return sock
