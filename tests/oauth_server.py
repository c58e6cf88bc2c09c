"""A loopback OAuth 2.0 authorization server built on authlib (the device-code grant, the authorization-code
grant with PKCE required, refresh tokens with rotation), behind a small Flask (WSGI) app served on 127.0.0.1 in
a thread; plus the resources the tokens open: an OpenAI-style chat API that checks the bearer token, and
GitHub-Copilot-shaped routes (GitHub's device flow answering its errors with HTTP 200, the Copilot token
exchange, a Copilot chat API that wants its editor headers).

The grants, PKCE, ``state`` and the grant errors are checked by authlib, not by code written here: this module
only stores what authlib asks it to store and answers the questions it asks (is this code approved yet?).
Test-only; it imports nothing from the sidecar.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc8628 import DeviceAuthorizationEndpoint, DeviceCodeGrant, DeviceCredentialDict
from flask import Flask, Response, jsonify, request
from werkzeug.serving import make_server

CLIENT_ID = "sidecar-test"
COPILOT_CLIENT_ID = "Iv1.b507a08c87ecfe98"  # the catalog's: the test server plays GitHub for it
CHATGPT_CLIENT_ID = "app_EMoamEEZ73f0CkXaXp7hrann"  # the catalog's: the test server plays auth.openai.com for it
CHATGPT_REDIRECT = "http://localhost:1455/auth/callback"  # the one redirect registered for that client
LOOPBACK_REDIRECT = re.compile(r"^http://127\.0\.0\.1:\d{1,5}/callback$")  # RFC 8252 7.3: any port
ACCOUNT_EMAIL = "ada@example.test"
ACCOUNT_ID = "acct-7f3e"


@dataclass
class Client:
    client_id: str
    grant_types: tuple[str, ...]
    scopes: tuple[str, ...] = ("chat", "read:user", "openid", "profile", "email", "offline_access")
    redirect: str | None = None
    """the exact redirect registered; None: any loopback port at /callback"""

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(s for s in (scope or "").split() if s in self.scopes)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri == self.redirect if self.redirect else bool(LOOPBACK_REDIRECT.match(redirect_uri))

    def check_client_secret(self, client_secret: str) -> bool:
        return False  # a public client: it has none

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "none"

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


@dataclass
class Token:
    access_token: str
    client_id: str
    scope: str
    user: str
    issued_at: float
    expires_in: int
    refresh_token: str | None = None
    revoked: bool = False
    """the refresh token is dead (rotated away or revoked); so is the access token"""
    access_revoked: bool = False

    def check_client(self, client: Client) -> bool:
        return client.client_id == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    def is_expired(self) -> bool:
        return time.time() >= self.issued_at + self.expires_in

    def is_revoked(self) -> bool:
        return self.revoked

    def get_user(self) -> str:
        return self.user

    def get_client(self) -> Client:
        raise NotImplementedError


@dataclass
class AuthCode:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: str
    code_challenge: str | None
    code_challenge_method: str | None

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> None:
        return None

    def get_auth_time(self) -> None:
        return None


@dataclass
class State:
    """Everything the server knows, guarded by ``lock``; tests read and change it directly."""

    lock: threading.RLock = field(default_factory=threading.RLock)
    expires_in: int = 3600
    """lifetime of the next access tokens"""
    interval: int = 1
    device_expires_in: int = 600
    """what the device code answer says"""
    device_lifetime: int = 600
    """how long the code really lives (shorter: the server answers expired_token before the client gives up)"""
    slow_down_on_poll: int | None = None
    """the device poll (1-based) that gets slow_down"""
    grants: dict[str, tuple[str, bool]] = field(default_factory=dict)
    """user_code -> (user, approved)"""
    devices: dict[str, DeviceCredentialDict] = field(default_factory=dict)
    polls: dict[str, int] = field(default_factory=dict)
    codes: dict[str, AuthCode] = field(default_factory=dict)
    access: dict[str, Token] = field(default_factory=dict)
    refresh: dict[str, Token] = field(default_factory=dict)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    """every token endpoint request's form, in order"""
    device_answers: list[str] = field(default_factory=list)
    """each device poll's outcome: the error code, or "token\""""
    api_calls: list[dict[str, Any]] = field(default_factory=list)
    copilot: dict[str, tuple[str, float]] = field(default_factory=dict)
    """Copilot token -> (the GitHub token it was exchanged for, expires_at)"""
    copilot_expires_in: int = 1500
    exchanges: int = 0
    forbid: bool = False
    """the chat API answers 403 with an error message that echoes the bearer token (as some servers do)"""
    id_token: bool = False
    """add an (unsigned) ID token with an e-mail and ChatGPT-style account claims to token answers"""

    def refreshes(self) -> int:
        return sum(1 for f in self.token_requests if f.get("grant_type") == "refresh_token")


def _unsigned_jwt(claims: dict[str, Any]) -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}.sig"


class OAuthServer:
    def __init__(self) -> None:
        self.state = state = State()
        clients = {
            CLIENT_ID: Client(CLIENT_ID, ("authorization_code", "refresh_token", DeviceCodeGrant.GRANT_TYPE)),
            COPILOT_CLIENT_ID: Client(COPILOT_CLIENT_ID, (DeviceCodeGrant.GRANT_TYPE,)),
            CHATGPT_CLIENT_ID: Client(CHATGPT_CLIENT_ID, ("authorization_code", "refresh_token"),
                                      redirect=CHATGPT_REDIRECT),
        }
        app = Flask("oauth-test-server")
        server_ref: dict[str, str] = {}

        def save_token(token: dict[str, Any], req: Any) -> None:
            user = req.user if isinstance(req.user, str) else "ada"
            record = Token(token["access_token"], req.client.client_id, token.get("scope", ""), user, time.time(),
                           int(token.get("expires_in", 0)), token.get("refresh_token"))
            state.access[record.access_token] = record
            if record.refresh_token:
                state.refresh[record.refresh_token] = record

        auth = AuthorizationServer(app, query_client=clients.get, save_token=save_token)
        auth.register_token_generator("default", _generator(state))

        class CodeGrant(grants.AuthorizationCodeGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = ["none"]

            def save_authorization_code(self, code: str, req: Any) -> None:
                state.codes[code] = AuthCode(code, req.client.client_id, req.payload.redirect_uri,
                                             req.payload.scope or "", req.user,
                                             req.payload.data.get("code_challenge"),
                                             req.payload.data.get("code_challenge_method"))

            def query_authorization_code(self, code: str, client: Client) -> AuthCode | None:
                found = state.codes.get(code)
                return found if found and found.client_id == client.client_id else None

            def delete_authorization_code(self, code: AuthCode) -> None:
                state.codes.pop(code.code, None)

            def authenticate_user(self, code: AuthCode) -> str:
                return code.user

        class RefreshGrant(grants.RefreshTokenGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = ["none"]
            INCLUDE_NEW_REFRESH_TOKEN = True  # rotation

            def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
                found = state.refresh.get(refresh_token)
                return found if found and not found.revoked else None

            def authenticate_user(self, credential: Token) -> str:
                return credential.user

            def revoke_old_credential(self, credential: Token) -> None:
                credential.revoked = True  # the old refresh token (and its access token) are dead

        class DeviceGrant(DeviceCodeGrant):
            def query_device_credential(self, device_code: str) -> DeviceCredentialDict | None:
                return state.devices.get(device_code)

            def query_user_grant(self, user_code: str) -> tuple[str, bool] | None:
                return state.grants.get(user_code)

            def should_slow_down(self, credential: DeviceCredentialDict) -> bool:
                return state.polls.get(credential["device_code"]) == state.slow_down_on_poll

        class DeviceEndpoint(DeviceAuthorizationEndpoint):
            def get_verification_uri(self) -> str:
                return server_ref["url"] + "/device"

            def save_device_credential(self, client_id: str, scope: str, data: dict[str, Any]) -> None:
                state.devices[data["device_code"]] = DeviceCredentialDict(
                    client_id=client_id, scope=scope, expires_at=int(time.time()) + state.device_lifetime, **data)

            def create_endpoint_response(self, req: Any) -> Any:
                self.INTERVAL = state.interval
                self.EXPIRES_IN = state.device_expires_in
                return super().create_endpoint_response(req)

        auth.register_grant(CodeGrant, [CodeChallenge(required=True)])
        auth.register_grant(RefreshGrant)
        auth.register_grant(DeviceGrant)
        auth.register_endpoint(DeviceEndpoint)

        def token_view(github: bool) -> Response:
            with state.lock:
                form = request.form.to_dict()
                state.token_requests.append(form)
                code = form.get("device_code")
                if code:
                    state.polls[code] = state.polls.get(code, 0) + 1
                response = auth.create_token_response()
                body = json.loads(response.get_data() or b"{}")
                if code:
                    state.device_answers.append(body.get("error", "token"))
                if response.status_code == 200 and state.id_token and "access_token" in body:
                    claims = {"email": ACCOUNT_EMAIL, "sub": "user-1",
                              "https://api.openai.com/auth": {"chatgpt_account_id": ACCOUNT_ID}}
                    body["id_token"] = _unsigned_jwt(claims)
                status = 200 if github else response.status_code  # GitHub: errors with HTTP 200 and an error field
                return Response(json.dumps(body), status=status, mimetype="application/json")

        @app.post("/token")
        @app.post("/oauth/token")  # auth.openai.com's path
        def token() -> Response:
            return token_view(False)

        @app.post("/device/code")
        def device_code() -> Response:
            with state.lock:
                return auth.create_endpoint_response("device_authorization")

        @app.post("/device")
        def verification_page() -> Response:
            """The verification page: the user enters the code and approves (or denies)."""
            self.decide(request.form["user_code"], request.form.get("decision") == "approve")
            return Response("done", mimetype="text/plain")

        @app.get("/authorize")
        @app.get("/oauth/authorize")  # auth.openai.com's path
        def authorize() -> Response:
            """The user is already signed in here and consents at once: authlib validates the request (client,
            redirect_uri, PKCE challenge required) and redirects back with code and state."""
            with state.lock:
                try:
                    grant = auth.get_consent_grant(end_user="ada")
                except OAuth2Error as exc:
                    return Response(json.dumps(dict(exc.get_body())), status=exc.status_code,
                                    mimetype="application/json")
                return auth.create_authorization_response(grant=grant, grant_user="ada")

        # --- GitHub-shaped routes (the github-copilot provider, with --oauth-url) ---------------------------

        @app.post("/login/device/code")
        def github_device_code() -> Response:
            with state.lock:
                return auth.create_endpoint_response("device_authorization")

        @app.post("/login/oauth/access_token")
        def github_token() -> Response:
            return token_view(True)

        @app.get("/copilot_internal/v2/token")
        def copilot_exchange() -> Response:
            with state.lock:
                state.exchanges += 1
                header = request.headers.get("authorization", "")
                github = header.removeprefix("token ")
                found = state.access.get(github) if header.startswith("token ") else None
                if found is None or found.revoked or found.access_revoked or found.client_id != COPILOT_CLIENT_ID:
                    return Response('{"message":"Bad credentials"}', status=401, mimetype="application/json")
                token = "tid=" + secrets.token_hex(12) + ";exp=1;sku=test:" + secrets.token_hex(16)
                expires_at = int(time.time()) + state.copilot_expires_in
                state.copilot[token] = (github, expires_at)
                return jsonify({"token": token, "expires_at": expires_at, "refresh_in": state.copilot_expires_in - 60,
                                "endpoints": {"api": server_ref["url"] + "/copilot"}})

        @app.post("/copilot/chat/completions")
        def copilot_chat() -> Response:
            with state.lock:
                bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
                held = state.copilot.get(bearer)
                headers = {k.lower(): v for k, v in request.headers.items()}
                state.api_calls.append({"path": request.path, "headers": headers, "body": request.get_json()})
                if held is None or held[1] <= time.time():
                    return _api_error(401, "unauthorized: token expired or invalid")
                if not headers.get("copilot-integration-id") or not headers.get("editor-version"):
                    return _api_error(400, "missing Copilot-Integration-Id or Editor-Version")
            return _sse_answer(request.get_json(), "copilot says hi")

        @app.get("/copilot/models")
        def copilot_models() -> Response:
            with state.lock:
                bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
                if bearer not in state.copilot:
                    return _api_error(401, "unauthorized")
            return jsonify({"object": "list", "data": [{"id": "gpt-4.1", "object": "model"},
                                                       {"id": "claude-sonnet-live", "object": "model"}]})

        # --- a ChatGPT-plan-shaped Responses endpoint (the chatgpt provider, with --base-url) -------------------

        @app.post("/backend-api/codex/responses")
        def chatgpt_responses() -> Response:
            with state.lock:
                headers = {k.lower(): v for k, v in request.headers.items()}
                state.api_calls.append({"path": request.path, "headers": headers, "body": request.get_json()})
                if not bearer_ok():
                    return _api_error(401, "invalid or expired access token")
                if headers.get("chatgpt-account-id") != ACCOUNT_ID:
                    return _api_error(403, "no or another ChatGPT account")
            return _responses_answer("chatgpt says hi")

        # --- an OpenAI-compatible API the tokens open ---------------------------------------------

        def bearer_ok() -> bool:
            bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
            found = state.access.get(bearer)
            return found is not None and not (found.revoked or found.access_revoked or found.is_expired())

        @app.post("/v1/chat/completions")
        def chat() -> Response:
            with state.lock:
                state.api_calls.append({"path": request.path, "headers": dict(request.headers),
                                        "body": request.get_json()})
                if not bearer_ok():
                    return _api_error(401, "invalid or expired access token")
                if state.forbid:
                    return _api_error(403, "token " + request.headers.get("authorization", "") + " may not chat")
            return _sse_answer(request.get_json(), "gateway says hi")

        @app.get("/v1/models")
        def models() -> Response:
            with state.lock:
                if not bearer_ok():
                    return _api_error(401, "invalid or expired access token")
            return jsonify({"object": "list", "data": [{"id": "live-model", "object": "model"}]})

        self.app = app
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.port = self._server.server_port
        self.url = server_ref["url"] = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    # --- what a user does at the authorization server ------------------------------------------

    def decide(self, user_code: str, approved: bool = True) -> None:
        with self.state.lock:
            self.state.grants[user_code] = ("ada", approved)

    def revoke_access(self) -> None:
        """Every access token dies now (a server-side revocation: the next request gets 401)."""
        with self.state.lock:
            for token in self.state.access.values():
                token.access_revoked = True

    def revoke_refresh(self) -> None:
        with self.state.lock:
            for token in self.state.refresh.values():
                token.revoked = True

    def latest_refresh_token(self) -> str | None:
        with self.state.lock:
            live = [t for t in self.state.refresh.values() if not t.revoked]
            return live[-1].refresh_token if live else None

    def all_tokens(self) -> list[str]:
        """Every secret the server ever issued (access, refresh, Copilot, device codes, auth codes)."""
        with self.state.lock:
            out = [*self.state.access, *self.state.refresh, *self.state.copilot, *self.state.devices]
            out += [c.code for c in self.state.codes.values()]
            return [t for t in out if t]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _generator(state: State) -> Any:
    from authlib.oauth2.rfc6750 import BearerTokenGenerator

    def access(client: Any, grant_type: str, user: Any, scope: str) -> str:
        return "at-" + secrets.token_urlsafe(24)

    def refresh(client: Any, grant_type: str, user: Any, scope: str) -> str:
        return "rt-" + secrets.token_urlsafe(24)

    return BearerTokenGenerator(access, refresh, lambda client, grant_type: state.expires_in)


def _api_error(status: int, message: str) -> Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "code": "invalid_token"}}
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _sse_answer(body: Any, text: str) -> Response:
    model = body.get("model", "m") if isinstance(body, dict) else "m"
    chunks = [{"id": "c1", "object": "chat.completion.chunk", "model": model,
               "choices": [{"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": None}]},
              {"id": "c1", "object": "chat.completion.chunk", "model": model,
               "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}}]
    data = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    return Response(data, mimetype="text/event-stream")


def _responses_answer(text: str) -> Response:
    """A Responses API stream (``event:`` lines named as the JSON ``type``, no ``[DONE]``)."""
    events = [
        {"type": "response.created", "response": {"id": "resp_1", "status": "in_progress", "output": []}},
        {"type": "response.output_item.added", "output_index": 0,
         "item": {"id": "msg_1", "type": "message", "role": "assistant", "status": "in_progress", "content": []}},
        {"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "content_index": 0,
         "delta": text},
        {"type": "response.output_item.done", "output_index": 0,
         "item": {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
                  "content": [{"type": "output_text", "text": text, "annotations": []}]}},
        {"type": "response.completed", "response": {"id": "resp_1", "status": "completed", "output": [],
                                                    "usage": {"input_tokens": 3, "output_tokens": 3,
                                                              "total_tokens": 6}}},
    ]
    data = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)
    return Response(data, mimetype="text/event-stream")
