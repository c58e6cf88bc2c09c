"""The authorization code grant with PKCE (RFC 7636) and a loopback redirect (RFC 8252): a one-shot listener on
127.0.0.1 (the provider's registered port, else an ephemeral one), the app opens ``authorize_url``, the browser
comes back to the listener with ``code`` and ``state``; ``state`` is checked, the code exchanged, a small page
says the tab can close, and the listener closes after that one callback or when the flow's time is up."""

from __future__ import annotations

import contextlib
import html
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

import anyio
import anyio.abc

from ..errors import SidecarError
from ..providers import Provider
from . import pkce
from .http import OAuthError, token_request

if TYPE_CHECKING:
    import httpx

TIMEOUT_S = 600
"""how long the listener waits for the browser"""
MAX_REQUEST = 16 * 1024
READ_S = 10.0


def _page(title: str, text: str) -> bytes:
    body = (f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title></head>"
            f"<body style=\"font-family:sans-serif;margin:3em\"><h1>{html.escape(title)}</h1>"
            f"<p>{html.escape(text)}</p></body></html>").encode()
    return body


def _response(status: str, body: bytes) -> bytes:
    head = (f"HTTP/1.1 {status}\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {len(body)}\r\n"
            "cache-control: no-store\r\nconnection: close\r\n\r\n")
    return head.encode() + body


class BrowserSignIn:
    """One sign-in's listener and PKCE values; ``open`` binds, ``wait`` serves until the one callback."""

    def __init__(self, provider: Provider, client: httpx.AsyncClient, listener: anyio.abc.Listener[Any],
                 redirect_uri: str) -> None:
        oauth = provider.oauth
        assert oauth is not None and isinstance(oauth.authorization_endpoint, str)
        self.provider = provider
        self._client = client
        self.redirect_uri = redirect_uri
        self._listener = listener
        self._path = urlsplit(redirect_uri).path or "/"
        self._verifier = pkce.verifier()
        self._state = pkce.state()
        query = {"response_type": "code", "client_id": oauth.client_id, "redirect_uri": redirect_uri,
                 "scope": " ".join(oauth.scopes), "state": self._state,
                 "code_challenge": pkce.challenge(self._verifier), "code_challenge_method": "S256",
                 **(oauth.extra_params or {})}
        if not oauth.scopes:
            del query["scope"]
        sep = "&" if "?" in oauth.authorization_endpoint else "?"
        self.authorize_url = oauth.authorization_endpoint + sep + urlencode(query)
        self._answer: dict[str, Any] | None = None
        self._error: SidecarError | None = None
        self._called = False

    @classmethod
    async def open(cls, provider: Provider, client: httpx.AsyncClient) -> BrowserSignIn:
        """Bind the listener (``invalid_request`` when the registered port is taken)."""
        registered = provider.redirect_uri
        port = urlsplit(registered).port or 80 if registered else 0
        try:
            listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=port)
        except OSError as exc:
            raise SidecarError("invalid_request", f"{provider.id}: cannot listen on 127.0.0.1:{port} for the sign-in's "
                               f"redirect ({exc.strerror or exc}); is another sign-in running?",
                               provider=provider.id) from None
        if registered is None:
            bound = listener.listeners[0].extra(anyio.abc.SocketAttribute.local_port)
            registered = f"http://127.0.0.1:{bound}/callback"
        return cls(provider, client, listener, registered)

    async def aclose(self) -> None:
        await self._listener.aclose()

    async def wait(self, on_listening: Callable[[], Awaitable[None]] | None = None) -> dict[str, Any]:
        """Serve until one callback came (or ``TIMEOUT_S``); its token answer, or the flow's error."""
        provider = self.provider
        try:
            with anyio.fail_after(TIMEOUT_S):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._listener.serve, lambda s: self._handle(s, tg.cancel_scope))
                    if on_listening is not None:
                        await on_listening()
        except TimeoutError:
            raise SidecarError("timeout", f"{provider.id}: no answer from the browser within {TIMEOUT_S} s; start "
                               "again", provider=provider.id) from None
        finally:
            await self.aclose()
        if self._error is not None:
            raise self._error
        assert self._answer is not None
        return self._answer

    async def _handle(self, stream: anyio.abc.ByteStream, done: anyio.CancelScope) -> None:
        async with stream:
            try:
                with anyio.fail_after(READ_S):
                    target = await _request_target(stream)
            except (TimeoutError, anyio.EndOfStream, anyio.BrokenResourceError, ValueError):
                return
            split = urlsplit(target)
            if split.path != self._path or self._called:
                await _send(stream, _response("404 Not Found", _page("Not found", "Nothing here.")))
                return
            self._called = True  # one callback: any other is turned away, even while this one is exchanged
            status, title, text = self._outcome_page(await self._callback(parse_qs(split.query)))
            await _send(stream, _response(status, _page(title, text)))
            done.cancel()  # one callback: the listener closes

    def _outcome_page(self, ok: bool) -> tuple[str, str, str]:
        if ok:
            return "200 OK", "Signed in", "You can close this tab and go back to the app."
        return "400 Bad Request", "Sign-in failed", "You can close this tab; the app says what went wrong."

    async def _callback(self, query: dict[str, list[str]]) -> bool:
        """The one callback: ``state`` checked, then the code exchanged (PKCE verifier, same redirect_uri)."""
        provider = self.provider
        oauth = provider.oauth
        assert oauth is not None

        def one(name: str) -> str | None:
            values = query.get(name)
            return values[0] if values and len(values) == 1 else None

        if one("state") != self._state:
            self._error = SidecarError("authentication_failed", f"{provider.id}: the browser came back with a wrong "
                                       "state (not the sign-in this app started); refused", provider=provider.id)
            return False
        error = one("error")
        if error is not None:
            self._error = SidecarError(
                "permission_denied" if error == "access_denied" else "authentication_failed",
                f"{provider.id}: the sign-in was not completed ({error[:64]})", provider=provider.id)
            return False
        code_value = one("code")
        if not code_value:
            self._error = SidecarError("authentication_failed", f"{provider.id}: the browser came back without a "
                                       "code", provider=provider.id)
            return False
        form = {"grant_type": "authorization_code", "code": code_value, "redirect_uri": self.redirect_uri,
                "client_id": oauth.client_id, "code_verifier": self._verifier}
        try:
            self._answer = await token_request(self._client, oauth.token_endpoint, form, provider.id)
        except OAuthError as exc:
            self._error = exc.as_sidecar(provider.id, "exchanging the code")
            return False
        except SidecarError as exc:
            self._error = exc
            return False
        return True


async def _request_target(stream: anyio.abc.ByteStream) -> str:
    """The request line's target of one HTTP request (GET only), its head read up to MAX_REQUEST bytes."""
    data = b""
    while b"\r\n\r\n" not in data and b"\n\n" not in data:
        data += await stream.receive()
        if len(data) > MAX_REQUEST:
            raise ValueError("request too large")
    method, target, _ = data.split(b"\r\n", 1)[0].split(b"\n", 1)[0].decode("latin-1").split(" ", 2)
    if method != "GET":
        raise ValueError(method)
    return target


async def _send(stream: anyio.abc.ByteStream, data: bytes) -> None:
    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
        await stream.send(data)
