"""Command line: ``llm-sidecar`` serves JSON-RPC on stdio; ``schema`` writes the OpenRPC document."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__

if TYPE_CHECKING:
    from .app import App
    from .framing import ReadLimits

DESCRIPTION = """\
llm-sidecar: one typed JSON-RPC 2.0 interface to every LLM provider, for desktop apps.

With no command it serves JSON-RPC on stdin/stdout, one JSON value per line, and
streams model output as `llm-stream-<stream_id>` notifications. Logs go to stderr.
Try it offline:

  echo '{"jsonrpc":"2.0","id":1,"method":"llm_stream_text","params":{"model":"mock:echo","messages":[{"role":"user","content":"hi"}]}}' | llm-sidecar
"""


def _common(parser: argparse.ArgumentParser, defaults: bool) -> None:
    d = (lambda v: v) if defaults else (lambda v: argparse.SUPPRESS)
    parser.add_argument("--data-dir", metavar="PATH", default=d(os.environ.get("LLM_SIDECAR_DATA_DIR")),
                        help="where settings live (env LLM_SIDECAR_DATA_DIR; default: the per-user data folder)")
    parser.add_argument("--keyring-service", metavar="NAME",
                        default=d(os.environ.get("LLM_SIDECAR_KEYRING_SERVICE", "llm-sidecar")),
                        help="keychain service name for saved keys (env LLM_SIDECAR_KEYRING_SERVICE; "
                        "default llm-sidecar)")
    parser.add_argument("--log-level", metavar="LEVEL", default=d(os.environ.get("LLM_SIDECAR_LOG_LEVEL", "warning")),
                        choices=["debug", "info", "warning", "error", "DEBUG", "INFO", "WARNING", "ERROR"],
                        help="stderr log level: debug, info, warning (default), error (env LLM_SIDECAR_LOG_LEVEL)")
    parser.add_argument("--log-format", metavar="FORMAT", choices=["text", "json"],
                        default=d(os.environ.get("LLM_SIDECAR_LOG_FORMAT", "text")),
                        help="stderr log lines as text (default) or one JSON object each (env LLM_SIDECAR_LOG_FORMAT)")
    parser.add_argument("--log-requests", action="store_true",
                        default=d(os.environ.get("LLM_SIDECAR_LOG_REQUESTS", "") not in ("", "0")),
                        help="log each upstream request and its outcome at info level: provider, model, URL without "
                        "query, sizes, status, timings; never headers, keys or message text (env LLM_SIDECAR_LOG_REQUESTS=1)")


def _size(text: str) -> int:
    """A size in bytes: ``65536``, ``64KiB``, ``8MiB``, ``1GiB``; at least 1 KiB."""
    number = text.strip()
    unit = 1
    for suffix, factor in (("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30)):
        if number.endswith(suffix):
            number, unit = number[: -len(suffix)].strip(), factor
            break
    if not number.isdigit() or int(number) * unit < 1024:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size of at least 1KiB (e.g. 65536, 64KiB, 8MiB)")
    return int(number) * unit


def _limit_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """What one upstream may make the sidecar hold, and how long a line it writes: the app's side sets
    them (a webview could otherwise lift them), for every provider at once."""
    from .framing import MAX_BODY_BYTES, MAX_DELTA_BYTES, MAX_EVENT_BYTES

    d = (lambda v: v) if defaults else (lambda v: argparse.SUPPRESS)
    env = os.environ.get
    parser.add_argument("--max-event-bytes", type=_size, metavar="SIZE",
                        default=d(env("LLM_SIDECAR_MAX_EVENT_BYTES", str(MAX_EVENT_BYTES))),
                        help="largest SSE event or NDJSON line read from an upstream; a larger one ends the "
                        "request with protocol_error (env LLM_SIDECAR_MAX_EVENT_BYTES; default 8MiB)")
    parser.add_argument("--max-body-bytes", type=_size, metavar="SIZE",
                        default=d(env("LLM_SIDECAR_MAX_BODY_BYTES", str(MAX_BODY_BYTES))),
                        help="largest non-streamed body read from an upstream, such as a model list "
                        "(env LLM_SIDECAR_MAX_BODY_BYTES; default 32MiB)")
    parser.add_argument("--max-delta-bytes", type=_size, metavar="SIZE",
                        default=d(env("LLM_SIDECAR_MAX_DELTA_BYTES", str(MAX_DELTA_BYTES))),
                        help="longest text in one text_delta, reasoning_delta or tool_call_delta written to "
                        "stdout; longer deltas go out as several events (env LLM_SIDECAR_MAX_DELTA_BYTES; "
                        "default 64KiB)")


def _read_limits(args: argparse.Namespace) -> ReadLimits:
    from .framing import ReadLimits

    return ReadLimits(args.max_event_bytes, args.max_body_bytes, args.max_delta_bytes)


def _serve_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    d = (lambda v: v) if defaults else (lambda v: argparse.SUPPRESS)
    parser.add_argument("--drain-timeout", type=float, metavar="SECONDS", default=d(60.0),
                        help="at end of stdin, wait this long for requests in flight (default 60)")
    parser.add_argument("--parent-pid", type=int, metavar="N", default=d(None),
                        help="exit when process N ends (pass the app's pid)")


def _trust_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """The app's trusted side: what RPC params (which a compromised webview controls) may never widen."""
    d = (lambda v: v) if defaults else (lambda v: argparse.SUPPRESS)
    parser.add_argument("--base-url", action="append", metavar="PROVIDER=URL", default=d([]),
                        help="set a provider's base URL; keys from its catalog variable may go there "
                        "(repeatable; env LLM_SIDECAR_BASE_URLS=PROVIDER=URL,...)")
    parser.add_argument("--allow-env", action="append", metavar="NAME=HOST", default=d([]),
                        help="let configure_provider's api_key_env name variable NAME, whose value may be sent only "
                        "to HOST (repeatable; env LLM_SIDECAR_ALLOW_ENV=NAME=HOST,...)")
    parser.add_argument("--allow-meilisearch", action="append", metavar="URL", default=d([]),
                        help="let configure_chat_workspace give a provider's own key to the Meilisearch at URL; "
                        "others are configured through the local proxy (repeatable; env "
                        "LLM_SIDECAR_ALLOW_MEILISEARCH=URL,...)")
    parser.add_argument("--oauth-url", action="append", metavar="PROVIDER=URL", default=d([]),
                        help="move a built-in provider's sign-in endpoints (and Copilot's token exchange) to URL's "
                        "origin, e.g. a GitHub Enterprise host (repeatable; env LLM_SIDECAR_OAUTH_URLS=PROVIDER=URL,...)")
    parser.add_argument("--claude-path", metavar="PATH", default=d(None),
                        help="the Claude Code program the claude-code provider runs (default: env CLAUDE_CODE_PATH, "
                        "then claude on PATH)")
    parser.add_argument("--mcp-config", metavar="FILE", default=d(None),
                        help="MCP servers the app declares, as Claude Desktop's {\"mcpServers\": {...}}; RPC can use "
                        "them but not change them (env LLM_SIDECAR_MCP_CONFIG)")
    parser.add_argument("--allow-mcp", action="store_true", default=d(False),
                        help="let RPC add and remove MCP servers (mcp_add_server): the UI can then start programs "
                        "on this machine (env LLM_SIDECAR_ALLOW_MCP=1)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="llm-sidecar", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"llm-sidecar {__version__}")
    _common(p, True)
    _serve_options(p, True)
    _trust_options(p, True)
    _limit_options(p, True)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    serve = sub.add_parser("serve", help="serve JSON-RPC on stdio (the default)")
    _common(serve, False)
    _serve_options(serve, False)
    _trust_options(serve, False)
    _limit_options(serve, False)
    schema = sub.add_parser("schema", help="write the OpenRPC document (schema/openrpc.json)")
    _common(schema, False)
    schema.add_argument("--output", "-o", metavar="PATH", default="schema/openrpc.json",
                        help="where to write it, - for stdout (default schema/openrpc.json)")
    schema.add_argument("--check", action="store_true", help="exit 1 if PATH is not up to date; write nothing")
    chat = sub.add_parser("chat", help="chat with a model in the terminal (mock:echo works offline)")
    _common(chat, False)
    _trust_options(chat, False)
    _limit_options(chat, False)
    chat.add_argument("--model", metavar="PROVIDER:MODEL", default=None,
                      help="the model to chat with (default: the active provider, else mock:echo)")
    build = sub.add_parser("build-binary", help="build a one-file executable for Tauri's externalBin (needs Nuitka and a C compiler)")
    _common(build, False)
    build.add_argument("--output", "-o", metavar="DIR", default="dist",
                       help="where to write llm-sidecar-<target triple>[.exe] (default dist)")
    build.add_argument("--target-triple", metavar="TRIPLE", default=None,
                       help="name the file for this Rust target triple (default: this machine's)")
    build.add_argument("--with-local", action="store_true",
                       help="bundle llama-cpp-python and llama.cpp's shared library (the local provider: GGUF files)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from .logs import setup

    setup(args.log_level, args.log_format)
    if args.log_requests and logging.getLogger().level > logging.INFO:
        logging.getLogger().setLevel(logging.INFO)
    if args.command == "schema":
        from .schema import write_schema

        return write_schema(args.output, check=args.check)
    if args.command == "chat":
        return _chat(args)
    if args.command == "build-binary":
        from .build import build

        print(build(Path(args.output), args.target_triple, args.with_local))
        return 0
    return _serve(args)


def _app(args: argparse.Namespace) -> App:
    from .app import App
    from .settings import default_data_dir
    from .trust import Trust

    try:
        trust = Trust.from_options(args.base_url, args.allow_env, args.allow_meilisearch, claude_path=args.claude_path,
                                   oauth_urls=args.oauth_url, allow_mcp=args.allow_mcp,
                                   mcp_config=args.mcp_config)
    except ValueError as exc:
        print(f"llm-sidecar: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    data_dir = Path(args.data_dir).expanduser() if args.data_dir else default_data_dir()
    app = App(data_dir, args.keyring_service, trust)
    app.engine.log_requests = args.log_requests
    app.engine.read_limits = _read_limits(args)
    return app


def _chat(args: argparse.Namespace) -> int:
    """The terminal chat: the same App and engine, but this command owns the terminal (no stdout guard)."""
    from .chat import run

    return run(_app(args), args.model)


def _serve(args: argparse.Namespace) -> int:
    import anyio

    raise_open_file_limit()
    app = _app(args)
    status = 0
    try:
        anyio.run(lambda: app.serve(drain_timeout=args.drain_timeout, parent_pid=args.parent_pid),
                  backend="asyncio")
    except KeyboardInterrupt:
        pass
    except Exception:
        logging.getLogger("sidecar").exception("the sidecar failed")
        status = 1
    sys.stderr.flush()
    # Worker threads blocked on stdin or a stuck keychain must not keep the process alive.
    os._exit(status)


def raise_open_file_limit() -> None:
    """Soft ``RLIMIT_NOFILE`` up to the hard limit, so a flood of proxy connections cannot leave the
    settings, the usage log or the keychain without a file descriptor (the proxy also keeps a reserve
    below the limit, see sidecar/proxy/connections.py). Nothing to do on Windows."""
    try:
        import resource
    except ImportError:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # macOS refuses a soft limit over OPEN_MAX (10240) even under an unlimited hard limit
    for want in (hard, 10240):
        if soft == resource.RLIM_INFINITY or (want != resource.RLIM_INFINITY and want <= soft):
            return
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError):
            continue
        logging.getLogger("sidecar").debug("open-file limit raised from %d to %d", soft, want)
        return
