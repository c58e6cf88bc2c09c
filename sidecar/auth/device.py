"""The device authorization grant (RFC 8628): request a code, show the user ``verification_uri`` and
``user_code``, poll the token endpoint every ``interval`` seconds until the user approved (``slow_down`` adds
5 s), the code expired, or the user denied."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from ..errors import SidecarError
from ..providers import Provider
from .http import OAuthError, send, token_request

if TYPE_CHECKING:
    import httpx

GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEFAULT_INTERVAL = 5
SLOW_DOWN_S = 5
DEFAULT_EXPIRES_S = 900


@dataclass(frozen=True)
class DeviceCode:
    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: int
    interval: float


def _page(value: object) -> str | None:
    """A page the app will open: only an http(s) URL (never ``javascript:`` from a hostile server)."""
    ok = isinstance(value, str) and value.startswith(("https://", "http://")) and value.isprintable()
    if ok and isinstance(value, str) and len(value) < 2048:
        return value
    return None


async def request_code(client: httpx.AsyncClient, provider: Provider) -> DeviceCode:
    oauth = provider.oauth
    assert oauth is not None and isinstance(oauth.device_authorization_endpoint, str)
    form = {"client_id": oauth.client_id, **({"scope": " ".join(oauth.scopes)} if oauth.scopes else {}),
            **(oauth.extra_params or {})}
    status, answer = await send(client, "POST", oauth.device_authorization_endpoint, provider.id, form=form)
    error = answer.get("error")
    if (isinstance(error, str) and error) or status >= 400:
        description = answer.get("error_description")
        raise OAuthError(error if isinstance(error, str) and error else "invalid_request",
                         description if isinstance(description, str) else f"HTTP {status}",
                         status).as_sidecar(provider.id, "requesting a device code")
    device_code, user_code = answer.get("device_code"), answer.get("user_code")
    page = _page(answer.get("verification_uri") or answer.get("verification_url"))  # Google says _url
    if not (isinstance(device_code, str) and isinstance(user_code, str) and user_code.isprintable() and page):
        raise SidecarError("protocol_error", f"{provider.id}: the device code answer lacks device_code, user_code "
                           "or an http(s) verification_uri", provider=provider.id)
    return DeviceCode(device_code=device_code, user_code=user_code[:64], verification_uri=page,
                      verification_uri_complete=_page(answer.get("verification_uri_complete")),
                      expires_in=_number(answer.get("expires_in"), DEFAULT_EXPIRES_S),
                      interval=_number(answer.get("interval"), DEFAULT_INTERVAL))


def _number(value: object, default: int) -> int:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    return value if isinstance(value, int) and 0 <= value <= 86_400 else default


async def poll(client: httpx.AsyncClient, provider: Provider, code: DeviceCode,
               pending: Callable[[], Awaitable[None]]) -> dict[str, Any]:
    """The token answer once the user approved; ``pending`` after each poll that says to wait."""
    oauth = provider.oauth
    assert oauth is not None
    form = {"grant_type": GRANT, "device_code": code.device_code, "client_id": oauth.client_id}
    interval = code.interval
    deadline = anyio.current_time() + code.expires_in
    while True:
        await anyio.sleep(interval)
        if anyio.current_time() >= deadline:
            raise expired(provider)
        try:
            return await token_request(client, oauth.token_endpoint, form, provider.id)
        except OAuthError as exc:
            if exc.error == "authorization_pending":
                pass
            elif exc.error == "slow_down":
                interval += SLOW_DOWN_S
            elif exc.error == "expired_token":
                raise expired(provider) from None
            elif exc.error == "access_denied":
                raise SidecarError("permission_denied", f"{provider.id}: the sign-in was denied",
                                   provider=provider.id) from None
            else:
                raise exc.as_sidecar(provider.id, "signing in") from None
        await pending()


def expired(provider: Provider) -> SidecarError:
    return SidecarError("timeout", f"{provider.id}: the code expired before it was approved; start again",
                        provider=provider.id)
