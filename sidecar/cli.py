"""Command line: ``llm-sidecar`` serves JSON-RPC on stdio; ``schema`` writes the OpenRPC document."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from . import __version__

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


def _serve_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    d = (lambda v: v) if defaults else (lambda v: argparse.SUPPRESS)
    parser.add_argument("--drain-timeout", type=float, metavar="SECONDS", default=d(60.0),
                        help="at end of stdin, wait this long for requests in flight (default 60)")
    parser.add_argument("--parent-pid", type=int, metavar="N", default=d(None),
                        help="exit when process N ends (pass the app's pid)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="llm-sidecar", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"llm-sidecar {__version__}")
    _common(p, True)
    _serve_options(p, True)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    serve = sub.add_parser("serve", help="serve JSON-RPC on stdio (the default)")
    _common(serve, False)
    _serve_options(serve, False)
    schema = sub.add_parser("schema", help="write the OpenRPC document (schema/openrpc.json)")
    _common(schema, False)
    schema.add_argument("--output", "-o", metavar="PATH", default="schema/openrpc.json",
                        help="where to write it, - for stdout (default schema/openrpc.json)")
    schema.add_argument("--check", action="store_true", help="exit 1 if PATH is not up to date; write nothing")
    chat = sub.add_parser("chat", help="chat with a model in the terminal (mock:echo works offline)")
    _common(chat, False)
    chat.add_argument("--model", metavar="PROVIDER:MODEL", default=None,
                      help="the model to chat with (default: the active provider, else mock:echo)")
    build = sub.add_parser("build-binary", help="build a one-file executable for Tauri's externalBin (needs Nuitka and a C compiler)")
    _common(build, False)
    build.add_argument("--output", "-o", metavar="DIR", default="dist",
                       help="where to write llm-sidecar-<target triple>[.exe] (default dist)")
    build.add_argument("--target-triple", metavar="TRIPLE", default=None,
                       help="name the file for this Rust target triple (default: this machine's)")
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

        print(build(Path(args.output), args.target_triple))
        return 0
    return _serve(args)


def _chat(args: argparse.Namespace) -> int:
    """The terminal chat: the same App and engine, but this command owns the terminal (no stdout guard)."""
    from .app import App
    from .chat import run
    from .settings import default_data_dir

    data_dir = Path(args.data_dir).expanduser() if args.data_dir else default_data_dir()
    app = App(data_dir, args.keyring_service)
    app.engine.log_requests = args.log_requests
    return run(app, args.model)


def _serve(args: argparse.Namespace) -> int:
    import anyio

    from .app import App
    from .settings import default_data_dir

    data_dir = Path(args.data_dir).expanduser() if args.data_dir else default_data_dir()
    app = App(data_dir, args.keyring_service)
    app.engine.log_requests = args.log_requests
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
