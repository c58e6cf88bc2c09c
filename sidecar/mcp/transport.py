"""How the sidecar reaches an MCP server: a program on stdio, or a Streamable HTTP endpoint.

Both yield the SDK's pair of message streams, so the SDK's ``ClientSession`` speaks the protocol over either.
The stdio one is ours rather than the SDK's ``stdio_client`` because the sidecar must know the program's pid
and must stop its whole process group whatever happens: the SDK kills the group only when the program does
not exit by itself, and launchers (``npx``, ``uvx``, ``sh -c``) exit and leave their child running. So the
program starts in its own process group (``own_group``); to stop it its stdin is closed, it gets a moment
to exit, then the group gets SIGTERM and SIGKILL (``end_group``, the claude-code transport's), and the group
gets SIGKILL even when the program did exit, so nothing it started outlives it. Its stderr goes to the log
at debug, line by line (each cut at 2 KiB); a stdout line longer than ``MAX_LINE`` ends the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio

from ..engine.transports.process import end_group, own_group

log = logging.getLogger("sidecar.mcp")

MAX_LINE = 16 << 20
"""longest JSON-RPC line read from a server"""
STDIN_GRACE_S = 0.5
"""after its stdin closes, how long a server has to exit by itself before its group gets SIGTERM"""
STDERR_LINE = 2048
READ_CHUNK = 64 * 1024

Streams = tuple[Any, Any]
"""the SDK's (read stream, write stream)"""


@asynccontextmanager
async def stdio(server_id: str, command: str, args: list[str], env: dict[str, str], cwd: str | None,
                started: Callable[[int], None]) -> AsyncIterator[tuple[Streams, anyio.Event]]:
    """Run the program; yields the streams and an event set when its stdout ends (it exited or crashed).
    ``started`` gets its pid. OSError when it cannot be started."""
    import mcp_types
    from mcp.client.stdio import get_default_environment
    from mcp.shared.message import SessionMessage

    proc = await asyncio.create_subprocess_exec(
        command, *args, env=get_default_environment() | env, cwd=cwd, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, **own_group())  # type: ignore[arg-type]
    started(proc.pid)
    incoming_in, incoming = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    outgoing, outgoing_out = anyio.create_memory_object_stream[SessionMessage](0)
    ended = anyio.Event()

    async def read_stdout() -> None:
        assert proc.stdout is not None
        buffer = bytearray()
        try:
            async with incoming_in:
                while chunk := await proc.stdout.read(READ_CHUNK):
                    buffer += chunk
                    while (end := buffer.find(b"\n")) >= 0:
                        line = bytes(buffer[:end])
                        del buffer[: end + 1]
                        if line.strip():
                            await incoming_in.send(_message(line, mcp_types, SessionMessage))
                    if len(buffer) > MAX_LINE:
                        log.warning("MCP server %s wrote a line longer than %d bytes; disconnecting", server_id,
                                    MAX_LINE)
                        return
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass
        finally:
            ended.set()

    async def write_stdin() -> None:
        assert proc.stdin is not None
        try:
            async with outgoing_out:
                async for message in outgoing_out:
                    data = message.message.model_dump_json(by_alias=True, exclude_unset=True)
                    proc.stdin.write(data.encode() + b"\n")
                    await proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError, anyio.ClosedResourceError):
            pass

    async def stderr_to_log() -> None:
        assert proc.stderr is not None
        rest = b""
        while chunk := await proc.stderr.read(READ_CHUNK):
            *lines, rest = (rest + chunk).split(b"\n")
            rest = rest[:STDERR_LINE]  # a line without end is cut, never held whole
            for line in lines:
                log.debug("MCP server %s: %s", server_id, line[:STDERR_LINE].decode("utf-8", "replace").rstrip())

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(read_stdout)
            tg.start_soon(write_stdin)
            tg.start_soon(stderr_to_log)
            try:
                yield (incoming, outgoing), ended
            finally:
                tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await stop(proc)


def _message(line: bytes, mcp_types: Any, session_message: Any) -> Any:
    try:
        return session_message(mcp_types.jsonrpc_message_adapter.validate_json(line, by_name=False))
    except ValueError as exc:
        log.debug("an MCP server wrote a line that is not a JSON-RPC message: %s", exc)
        return exc


async def stop(proc: asyncio.subprocess.Process) -> None:
    """Close its stdin, give it ``STDIN_GRACE_S`` to exit, then stop its whole group (see the module doc)."""
    if proc.stdin is not None:
        with contextlib.suppress(OSError, RuntimeError):
            proc.stdin.close()
    if proc.returncode is None:
        with anyio.move_on_after(STDIN_GRACE_S):
            await proc.wait()
    await end_group(proc)


@asynccontextmanager
async def http(url: str, headers: dict[str, str]) -> AsyncIterator[tuple[Streams, anyio.Event]]:
    """A Streamable HTTP endpoint; the event is never set (a dead server shows in its calls' errors)."""
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=300.0)) as client, \
            streamable_http_client(url, http_client=client) as streams:
        yield streams, anyio.Event()
