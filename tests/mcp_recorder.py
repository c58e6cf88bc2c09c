"""A small MCP server (the official SDK's MCPServer, on stdio) that writes what happens to it, one line each,
to the file named by MCP_RECORD_FILE: ``started <tool> <pid>`` when a call begins, ``finished <tool>`` when it
returns, ``cancelled <tool>`` when the client's ``notifications/cancelled`` stops it. The tests use it where
they must know that a call is under way, or that the server heard of a cancellation."""

from __future__ import annotations

import os
import sys

import anyio
from mcp.server.mcpserver import MCPServer

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


if __name__ == "__main__":
    print("recorder: serving on stdio", file=sys.stderr, flush=True)
    server.run("stdio")
