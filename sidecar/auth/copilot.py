"""GitHub Copilot's second step: the GitHub token (from the device flow) is exchanged at
``api.github.com/copilot_internal/v2/token`` for a short-lived Copilot token, whose answer also names the API
base the account uses (``endpoints.api``: individual, business or enterprise). Requests carry the Copilot token."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import SidecarError
from ..providers import Provider
from ..trust import host_of
from .http import send
from .tokens import MARGIN_SHARE, MAX_MARGIN_S

if TYPE_CHECKING:
    import httpx


class GitHubTokenRefused(Exception):
    """The exchange answered 401: the GitHub token is revoked or expired; sign in again."""


@dataclass(frozen=True)
class CopilotToken:
    token: str
    base_url: str
    expires_at: float
    obtained_at: float
    source: str
    """the GitHub token it was exchanged for (a new sign-in needs a new exchange)"""

    def due(self) -> bool:
        margin = min(MARGIN_SHARE * max(self.expires_at - self.obtained_at, 0.0), MAX_MARGIN_S)
        return time.time() >= self.expires_at - margin


def on_allowed_host(url: str, hosts: tuple[str, ...]) -> bool:
    """``url`` is https on one of ``hosts`` or a subdomain; http only to this machine."""
    host = host_of(url)
    if not any(host == h or host.endswith("." + h) for h in hosts):
        return False
    return url.startswith("https://") or (url.startswith("http://") and (host.startswith("127.") or host == "::1"))


async def exchange(client: httpx.AsyncClient, provider: Provider, github_token: str,
                   fixed_base: str | None) -> CopilotToken:
    """A Copilot token for ``github_token``; ``fixed_base``: the API base the app set (the answer's is ignored)."""
    assert provider.session_endpoint is not None
    headers = {**provider.headers, "authorization": f"token {github_token}", "accept": "application/json"}
    status, answer = await send(client, "GET", provider.session_endpoint, provider.id, headers=headers)
    if status == 401:
        raise GitHubTokenRefused
    if status in (403, 404):
        raise SidecarError("permission_denied", f"{provider.id}: this GitHub account has no Copilot access "
                           f"(the token exchange answered {status})", provider=provider.id, status=status)
    if status >= 400:
        raise SidecarError("upstream_unavailable" if status >= 500 else "authentication_failed",
                           f"{provider.id}: the Copilot token exchange answered {status}",
                           provider=provider.id, status=status, retryable=status >= 500)
    token, expires_at = answer.get("token"), answer.get("expires_at")
    endpoints = answer.get("endpoints")
    api = endpoints.get("api") if isinstance(endpoints, dict) else None
    if not isinstance(token, str) or not token or not isinstance(expires_at, int | float):
        raise SidecarError("protocol_error", f"{provider.id}: the Copilot token answer has no token or expires_at",
                           provider=provider.id)
    base = fixed_base or (api.rstrip("/") if isinstance(api, str) else provider.base_url)
    if fixed_base is None and not on_allowed_host(base, provider.session_hosts):
        raise SidecarError("protocol_error", f"{provider.id}: the Copilot token answer names an API base on an "
                           f"unexpected host ({host_of(base)[:100]!r}); it is not used", provider=provider.id)
    return CopilotToken(token=token, base_url=base, expires_at=float(expires_at), obtained_at=time.time(),
                        source=github_token)
