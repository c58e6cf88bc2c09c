"""MCP server configurations: checked the same way whoever gives them, read from the app's ``--mcp-config``
file (Claude Desktop's ``mcpServers`` shape), and split into what the settings keep and what the keychain keeps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
from msgspec import UNSET

from ..errors import SidecarError
from ..types import McpAddServerParams, McpServerConfig

HTTP_TYPES = frozenset({"http", "streamable-http", "streamable_http", "streamableHttp"})
"""what a config file may call a Streamable HTTP server (``type``); ``url`` without ``type`` means one too"""


def check(cfg: McpServerConfig) -> McpServerConfig:
    """A usable configuration, or invalid_request naming what is wrong."""
    where = f"MCP server {cfg.id!r}"
    if cfg.transport == "stdio":
        if not isinstance(cfg.command, str) or not cfg.command.strip():
            raise SidecarError("invalid_request", f"{where}: a stdio server needs a command")
        if cfg.url is not UNSET or cfg.headers is not UNSET or cfg.secret_headers is not UNSET:
            raise SidecarError("invalid_request", f"{where}: url and headers are for http servers")
    else:
        if not isinstance(cfg.url, str) or not cfg.url.startswith(("http://", "https://")):
            raise SidecarError("invalid_request", f"{where}: an http server needs an http(s) url")
        if cfg.command is not UNSET or cfg.args is not UNSET or cfg.env is not UNSET or cfg.cwd is not UNSET \
                or cfg.secret_env is not UNSET:
            raise SidecarError("invalid_request", f"{where}: command, args, env and cwd are for stdio servers")
    for names, values, what in ((cfg.secret_env, cfg.env, "env"), (cfg.secret_headers, cfg.headers, "headers")):
        if isinstance(names, list):
            given = values if isinstance(values, dict) else {}
            missing = [n for n in names if n not in given]
            if missing:
                raise SidecarError("invalid_request", f"{where}: secret {what} {', '.join(missing)} "
                                   f"must have a value in {what}")
    return cfg


def secret_name(server: str, kind: str, name: str) -> str:
    """The keychain entry of one secret value: ``mcp:<server>:<env|header>:<NAME>``."""
    return f"mcp:{server}:{kind}:{name}"


def secret_names(cfg: McpServerConfig) -> list[str]:
    """Every keychain entry ``cfg``'s secret values live in."""
    env = cfg.secret_env if isinstance(cfg.secret_env, list) else []
    headers = cfg.secret_headers if isinstance(cfg.secret_headers, list) else []
    return [secret_name(cfg.id, "env", n) for n in env] + [secret_name(cfg.id, "header", n) for n in headers]


def split_secrets(params: McpAddServerParams) -> tuple[McpServerConfig, dict[str, str]]:
    """What the settings keep (the secret values taken out) and the secret values by keychain entry."""
    fields = msgspec.structs.asdict(params)
    fields.pop("start")
    cfg = check(McpServerConfig(**fields))
    secrets: dict[str, str] = {}
    for names, kind, field in ((cfg.secret_env, "env", "env"), (cfg.secret_headers, "header", "headers")):
        if not isinstance(names, list):
            continue
        values: dict[str, str] = dict(getattr(cfg, field))
        for name in names:
            secrets[secret_name(cfg.id, kind, name)] = values.pop(name)
        setattr(cfg, field, values or UNSET)
    return cfg, secrets


def load_file(path: str) -> dict[str, McpServerConfig]:
    """The servers of an ``--mcp-config`` file: ``{"mcpServers": {"<id>": {"command", "args"?, "env"?,
    "cwd"?} | {"url", "type"?: "http", "headers"?}}}``. Raises ValueError saying what is wrong."""
    try:
        raw = json.loads(Path(path).expanduser().read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"--mcp-config: cannot read {path} ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise ValueError(f"--mcp-config: {path} is not JSON ({exc})") from None
    servers = raw.get("mcpServers") if isinstance(raw, dict) else None
    if not isinstance(servers, dict):
        raise ValueError(f'--mcp-config: {path} must be an object with "mcpServers"')
    out: dict[str, McpServerConfig] = {}
    for server_id, entry in servers.items():
        try:
            out[server_id] = _entry(server_id, entry)
        except (msgspec.ValidationError, SidecarError, TypeError) as exc:
            message = exc.info.message if isinstance(exc, SidecarError) else str(exc)
            raise ValueError(f"--mcp-config: server {server_id!r}: {message}") from None
    return out


def _entry(server_id: str, entry: Any) -> McpServerConfig:
    if not isinstance(entry, dict):
        raise TypeError("expected an object")
    entry = dict(entry)
    kind = entry.pop("type", None) or entry.pop("transport", None)
    entry.pop("disabled", None)
    if kind in HTTP_TYPES or (kind is None and "url" in entry):
        transport = "http"
    elif kind in (None, "stdio"):
        transport = "stdio"
    else:
        raise TypeError(f"type {kind!r} is not supported (stdio or http)")
    return check(msgspec.convert({"id": server_id, "transport": transport, **entry}, McpServerConfig))
