"""The trust boundary: what the app's native side allowed at start, against which RPC params are checked.

Trusted: the command line and the environment the app gives the sidecar. Untrusted: every RPC param, since a
webview can be compromised. So:

- a key goes only to the host it belongs to (``KeyBinding.check``): a saved key to the host of the provider's
  base URL when it was saved; a catalog variable (``OPENAI_API_KEY``) to the catalog's host or to the host of a
  base URL the app set (``--base-url openai=URL``); any other variable only when the app allowed it, to the
  host it named (``--allow-env NAME=HOST``);
- a provider's own key goes to a Meilisearch only when the app allowed that Meilisearch
  (``--allow-meilisearch URL``);
- a built-in provider's sign-in endpoints (and Copilot's token exchange) are the catalog's, unless the app moved
  them to another origin (``--oauth-url PROVIDER=URL``: an enterprise host, or a loopback server in tests); RPC
  can point a *custom* provider's sign-in anywhere, but its tokens then go only to the hosts they were issued for.
- an MCP server is a program the sidecar starts: RPC may use the servers the app declared
  (``--mcp-config FILE``) but add or remove servers only when the app allowed it (``--allow-mcp``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .errors import SidecarError
from .types import McpServerConfig


def host_of(url: str) -> str:
    """The host a URL sends to, lower-cased, without port or brackets ('' when it has none)."""
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def origin_of(url: str) -> str:
    """``scheme://host:port`` with the scheme's default port made explicit."""
    split = urlsplit(url.strip())
    try:
        port = split.port
    except ValueError:
        port = None
    port = port or (443 if split.scheme == "https" else 80)
    host = split.hostname or ""
    return f"{split.scheme}://{f'[{host}]' if ':' in host else host}:{port}"


@dataclass(frozen=True)
class Trust:
    """What the app allowed on its trusted side; empty means nothing beyond the catalog."""

    base_urls: Mapping[str, str] = field(default_factory=dict)
    """provider id -> base URL the app set (``--base-url``, ``LLM_SIDECAR_BASE_URLS``)"""
    allowed_env: Mapping[str, str] = field(default_factory=dict)
    """variable name -> the host its value may be sent to (``--allow-env``, ``LLM_SIDECAR_ALLOW_ENV``)"""
    meilisearch: frozenset[str] = frozenset()
    """origins of the Meilisearch instances that may receive a provider's key (``--allow-meilisearch``)"""
    programs: Mapping[str, str] = field(default_factory=dict)
    """provider id -> the program it runs (``--claude-path``, then ``CLAUDE_CODE_PATH``, for ``claude-code``)"""
    oauth_urls: Mapping[str, str] = field(default_factory=dict)
    """provider id -> the origin that replaces its catalog sign-in endpoints' (``--oauth-url``,
    ``LLM_SIDECAR_OAUTH_URLS``)"""
    allow_mcp: bool = False
    """mcp_add_server and mcp_remove_server may be used (``--allow-mcp``, ``LLM_SIDECAR_ALLOW_MCP=1``): the UI
    can then start programs"""
    mcp_servers: Mapping[str, McpServerConfig] = field(default_factory=dict)
    """the MCP servers the app declared (``--mcp-config FILE``, ``LLM_SIDECAR_MCP_CONFIG``); RPC cannot change them"""

    @classmethod
    def from_options(cls, base_urls: Iterable[str] = (), allow_env: Iterable[str] = (),
                     allow_meilisearch: Iterable[str] = (), environ: Mapping[str, str] = os.environ,
                     claude_path: str | None = None, oauth_urls: Iterable[str] = (), allow_mcp: bool = False,
                     mcp_config: str | None = None) -> Trust:
        """From the command line's repeatable options and their ``NAME=VALUE,...`` environment twins."""
        urls = _pairs([*_split(environ.get("LLM_SIDECAR_BASE_URLS")), *base_urls], "--base-url PROVIDER=URL")
        for provider, url in urls.items():
            if not url.startswith(("http://", "https://")) or not host_of(url):
                raise ValueError(f"--base-url {provider}=: {url!r} is not an http(s) URL")
        env = _pairs([*_split(environ.get("LLM_SIDECAR_ALLOW_ENV")), *allow_env], "--allow-env NAME=HOST")
        hosts = {name: host.strip().lower().strip("[]") for name, host in env.items()}
        meili = [*_split(environ.get("LLM_SIDECAR_ALLOW_MEILISEARCH")), *allow_meilisearch]
        for url in meili:
            if not url.startswith(("http://", "https://")) or not host_of(url):
                raise ValueError(f"--allow-meilisearch: {url!r} is not an http(s) URL")
        claude = claude_path or environ.get("CLAUDE_CODE_PATH") or ""
        programs = {"claude-code": claude.strip()} if claude.strip() else {}
        oauth = _pairs([*_split(environ.get("LLM_SIDECAR_OAUTH_URLS")), *oauth_urls], "--oauth-url PROVIDER=URL")
        for provider, url in oauth.items():
            if not url.startswith(("http://", "https://")) or not host_of(url):
                raise ValueError(f"--oauth-url {provider}=: {url!r} is not an http(s) URL")
        mcp_file = mcp_config or environ.get("LLM_SIDECAR_MCP_CONFIG") or ""
        mcp_servers = {}
        if mcp_file.strip():
            from .mcp.config import load_file

            mcp_servers = load_file(mcp_file.strip())
        allow_mcp = allow_mcp or environ.get("LLM_SIDECAR_ALLOW_MCP", "") not in ("", "0")
        return cls(base_urls={k: v.rstrip("/") for k, v in urls.items()}, allowed_env=hosts,
                   meilisearch=frozenset(origin_of(u) for u in meili), programs=programs,
                   oauth_urls={k: v.rstrip("/") for k, v in oauth.items()}, allow_mcp=allow_mcp,
                   mcp_servers=mcp_servers)

    def allows_meilisearch(self, url: str) -> bool:
        return origin_of(url) in self.meilisearch

    def check_env_name(self, name: str, own: str | None) -> None:
        """An ``api_key_env`` given over RPC: the provider's own catalog variable, or one the app allowed."""
        if name != own and name not in self.allowed_env:
            raise SidecarError(
                "invalid_request",
                f"api_key_env {name!r} is not allowed: the app can allow it at start with "
                f"--allow-env {name}=HOST (or LLM_SIDECAR_ALLOW_ENV)",
            )


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _pairs(items: Iterable[str], form: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ValueError(f"expected {form}, got {item!r}")
        out[name.strip()] = value.strip()
    return out


@dataclass(frozen=True)
class KeyBinding:
    """The hosts one key may be sent to, and why (for the error)."""

    hosts: frozenset[str]
    why: str
    """e.g. "saved for api.openai.com" — never the key"""

    def check(self, url: str, provider: str) -> None:
        host = host_of(url)
        if host in self.hosts:
            return
        bound = ", ".join(sorted(self.hosts)) or "no host"
        raise SidecarError(
            "key_host_mismatch",
            f"{provider}: the API key ({self.why}) may be sent only to {bound}, not to {host or repr(url)}. "
            f"To use {host or 'this address'}, save the key again for it (save_api_key after configuring the "
            f"base URL), or have the app set the base URL at start (--base-url {provider}=URL)",
            provider=provider,
        )
