"""A small MCP server (the official SDK's MCPServer, on stdio) that writes what happens to it, one line each,
to the file named by MCP_RECORD_FILE: ``started <tool> <pid>`` when a call begins, ``finished <tool>`` when it
returns, ``cancelled <tool>`` when the client's ``notifications/cancelled`` stops it. The tests use it where
they must know that a call is under way, or that the server heard of a cancellation.

``grow`` adds a tool (``grown``) and tells the client its tool list changed. With ``--http``, it serves
Streamable HTTP on 127.0.0.1 (a port of its own, written as ``listening <port>``) instead of stdio and
records the ``x-api-token`` header of each request as ``token <value>``."""

from __future__ import annotations

import os
import sys

import anyio
from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("recorder")


def record(line: str) -> None:
    with open(os.environ["MCP_RECORD_FILE"], "a", encoding="utf-8") as f:
        f.write(line + "\n")


@server.tool()
async def wait(seconds: float) -> str:
    """Wait, then say so."""
    record(f"started wait {os.getpid()}")
    try:
        await anyio.sleep(seconds)
    except anyio.get_cancelled_exc_class():
        record("cancelled wait")
        raise
    record("finished wait")
    return f"waited {seconds} s"


@server.tool()
def echo(text: str) -> str:
    """Say it back."""
    return text


@server.tool()
async def grow(ctx: Context) -> str:
    """Add the tool `grown`."""

    def grown() -> str:
        """A tool added while the server runs."""
        return "grown"

    server.add_tool(grown)
    await ctx.session.send_tool_list_changed()
    return "added grown"


async def serve_http() -> None:
    import socket

    import uvicorn

    app = server.streamable_http_app()

    async def recording(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"x-api-token":
                    record(f"token {value.decode()}")
        await app(scope, receive, send)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    record(f"listening {sock.getsockname()[1]}")
    config = uvicorn.Config(recording, log_level="warning", lifespan="on")
    await uvicorn.Server(config).serve(sockets=[sock])


if __name__ == "__main__":
    if sys.argv[1:] == ["--http"]:
        anyio.run(serve_http)
    else:
        print("recorder: serving on stdio", file=sys.stderr, flush=True)
        server.run("stdio")
