"""The sign-in's HTTP: form-encoded token requests with the public client id in the body, answers read whether
they come as HTTP 400 (RFC 6749) or as HTTP 200 with an ``error`` field (GitHub's device flow), bounded, and
never a redirect followed. No token is ever put in an error or a log line."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from ..errors import SidecarError

if TYPE_CHECKING:
    import httpx

MAX_ANSWER = 64 * 1024
TIMEOUT_S = 30.0


class OAuthError(Exception):
    """An authorization server's error answer (RFC 6749 section 5.2): ``error`` and its description."""

    def __init__(self, error: str, description: str = "", status: int = 400) -> None:
        super().__init__(error)
        self.error = error
        self.description = description
        self.status = status

    def as_sidecar(self, provider: str, doing: str) -> SidecarError:
        """``authentication_failed`` naming the server's error code (its description is the server's, short)."""
        why = f": {self.description[:200]}" if self.description and self.description.isprintable() else ""
        return SidecarError("authentication_failed", f"{provider}: {doing} failed ({self.error[:64]}{why})",
                            provider=provider)


def new_client() -> httpx.AsyncClient:
    import httpx

    from .. import __version__

    return httpx.AsyncClient(timeout=httpx.Timeout(TIMEOUT_S), follow_redirects=False,
                             headers={"user-agent": f"llm-sidecar/{__version__}", "accept": "application/json"})


async def send(client: httpx.AsyncClient, method: str, url: str, provider: str, *,
               form: dict[str, str] | None = None, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    """One request to an authorization server; its status and JSON object answer (``{}`` when not JSON)."""
    import httpx

    from ..framing import read_body

    try:
        async with client.stream(method, url, data=form, headers=headers) as response:
            status = response.status_code
            body = await read_body(response.aiter_bytes(), MAX_ANSWER, provider, "the sign-in answer", provider)
    except (httpx.TimeoutException, TimeoutError):
        raise SidecarError("timeout", f"{provider}: the sign-in server did not answer", provider=provider) from None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        host = url.split("://", 1)[-1].split("/", 1)[0]
        raise SidecarError("network_error", f"{provider}: could not reach {host} to sign in ({type(exc).__name__})",
                           provider=provider) from None
    if 300 <= status < 400:
        raise SidecarError("authentication_failed", f"{provider}: the sign-in server answered a redirect ({status}); "
                           "it is not followed", provider=provider, status=status)
    try:
        answer = msgspec.json.decode(body) if body.strip() else {}
    except msgspec.DecodeError:
        answer = _form(body)
    return status, answer if isinstance(answer, dict) else {}


def _form(body: bytes) -> dict[str, Any]:
    """A form-encoded answer (GitHub's when not asked for JSON)."""
    from urllib.parse import parse_qsl

    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except (UnicodeDecodeError, ValueError):
        return {}


async def token_request(client: httpx.AsyncClient, url: str, form: dict[str, str], provider: str) -> dict[str, Any]:
    """POST a grant to the token endpoint; the answer with an access token, or ``OAuthError`` (either status)."""
    status, answer = await send(client, "POST", url, provider, form=form)
    error = answer.get("error")
    if isinstance(error, str) and error:
        description = answer.get("error_description")
        raise OAuthError(error, description if isinstance(description, str) else "", status)
    if status >= 400:
        raise OAuthError("server_error" if status >= 500 else "invalid_request", f"HTTP {status}", status)
    if not isinstance(answer.get("access_token"), str) or not answer["access_token"]:
        raise SidecarError("protocol_error", f"{provider}: the token endpoint answered without an access_token",
                           provider=provider)
    return answer
