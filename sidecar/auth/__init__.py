"""Signing in instead of pasting a key: OAuth 2.0 flows as data (each provider's endpoints, client id, scopes and
extra parameters are in the catalog or a custom provider's ``oauth`` block), tokens in the keychain, refreshed.

- ``device``: the device authorization grant (RFC 8628);
- ``browser`` and ``pkce``: the authorization code grant with PKCE and a loopback redirect (RFC 7636, 8252);
- ``http``: form-encoded token requests and their answers, whatever the status;
- ``tokens``: what is kept per provider, and the refresh margin;
- ``sessions``: the tokens requests get (refresh single-flight, rotation, Copilot's exchange in ``copilot``);
- ``flows``: the sign-ins the RPC methods start, cancel and report on.
"""

from .flows import Flows
from .sessions import SignIns

__all__ = ["Flows", "SignIns"]
