"""Sign-in flows for the RPC methods: each started one runs in the background under its ``flow_id`` and reports
as ``oauth-<flow_id>`` notifications (``pending`` while waiting, then ``signed_in`` or ``error``); one flow per
provider at a time (a new start cancels the one before), at most ``MAX_FLOWS`` at once."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import anyio

from ..errors import SidecarError
from ..providers import Provider, Registry
from ..types import (
    ErrorInfo,
    OAuthErrorEvent,
    OAuthFlowEvent,
    OAuthPendingEvent,
    OAuthSignedInEvent,
    OAuthSignInStarted,
)
from . import device
from .browser import TIMEOUT_S, BrowserSignIn
from .sessions import SignIns

log = logging.getLogger("sidecar.auth")

MAX_FLOWS = 8

Notify = Callable[[str, Any], Awaitable[None]]


class Flows:
    def __init__(self, registry: Registry, sign_ins: SignIns) -> None:
        self._registry = registry
        self._sign_ins = sign_ins
        self._scopes: dict[str, anyio.CancelScope] = {}
        self._by_provider: dict[str, str] = {}

    def provider(self, provider_id: str) -> Provider:
        """The provider, which must be one that signs in (``invalid_request`` otherwise)."""
        provider = self._registry.get(provider_id)
        if provider.oauth is None:
            raise SidecarError("invalid_request", f"{provider.id} has no sign-in (it uses an API key: save_api_key)",
                               provider=provider.id)
        return provider

    async def start(self, provider_id: str, notify: Notify, spawn: Callable[[Callable[[], Awaitable[None]]], None],
                    responded: anyio.Event, input_closed: anyio.Event) -> OAuthSignInStarted:
        """Start a sign-in: what the app shows (device) or opens (browser) now; the rest comes as notifications."""
        provider = self.provider(provider_id)
        assert provider.oauth is not None
        earlier = self._by_provider.get(provider.id)
        if earlier is not None:
            self.cancel(earlier)
        if len(self._scopes) >= MAX_FLOWS:
            raise SidecarError("rate_limited", f"{MAX_FLOWS} sign-ins are already running; cancel one first")
        flow_id = "oauth_" + secrets.token_hex(8)
        client = self._sign_ins.client()
        work: Callable[[Callable[[], Awaitable[None]]], Awaitable[dict[str, Any]]]
        close: Callable[[], Awaitable[None]] | None = None
        if provider.oauth.flow == "device":
            code = await device.request_code(client, provider)
            started = OAuthSignInStarted(flow_id=flow_id, kind="device", verification_uri=code.verification_uri,
                                         user_code=code.user_code, expires_in=code.expires_in)
            if code.verification_uri_complete:
                started.verification_uri_complete = code.verification_uri_complete
            work = partial(device.poll, client, provider, code)
        else:
            sign_in = await BrowserSignIn.open(provider, client)
            started = OAuthSignInStarted(flow_id=flow_id, kind="browser", authorize_url=sign_in.authorize_url,
                                         expires_in=TIMEOUT_S)
            work, close = sign_in.wait, sign_in.aclose

        scope = anyio.CancelScope()
        self._scopes[flow_id] = scope
        self._by_provider[provider.id] = flow_id

        async def emit(event: OAuthFlowEvent) -> None:
            event.flow_id = flow_id
            await notify(f"oauth-{flow_id}", event)

        async def pending() -> None:
            await emit(OAuthPendingEvent())

        async def run() -> None:
            await responded.wait()  # the answer with the flow_id goes first
            event: OAuthFlowEvent = OAuthErrorEvent(error=ErrorInfo(
                code="cancelled", message=f"{provider.id}: the sign-in was cancelled", provider=provider.id))
            try:
                async with anyio.create_task_group() as tg:
                    async def stop_at_eof() -> None:
                        await input_closed.wait()
                        scope.cancel()

                    tg.start_soon(stop_at_eof)
                    with scope:
                        try:
                            tokens = await self._sign_ins.save(provider, await work(pending))
                            event = OAuthSignedInEvent()
                            if tokens.account:
                                event.account = tokens.account
                        except SidecarError as exc:
                            event = OAuthErrorEvent(error=exc.info)
                    tg.cancel_scope.cancel()
            finally:
                if close is not None:  # the listener, even when the flow ended before it served
                    with anyio.CancelScope(shield=True):
                        await close()
                self._scopes.pop(flow_id, None)
                if self._by_provider.get(provider.id) == flow_id:
                    del self._by_provider[provider.id]
            log.info("sign-in %s to %s ended: %s", flow_id, provider.id, event.__struct_config__.tag)
            await emit(event)

        spawn(run)
        return started

    def cancel(self, flow_id: str) -> bool:
        scope = self._scopes.get(flow_id)
        if scope is None:
            return False
        scope.cancel()
        return True
