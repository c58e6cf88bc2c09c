"""The proxy's gate: who may talk to it. Pure checks, no I/O.

A local HTTP port is reachable by every web page the user opens (DNS rebinding, simple
cross-origin POSTs), so besides the bearer token a request must name a loopback Host and
must not come from a page (any ``Origin`` header is refused; desktop tools send none).
"""

from __future__ import annotations

import hmac
import ipaddress

MAX_BODY = 10 * 1024 * 1024
"""bytes; larger request bodies are refused with 413"""

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def is_loopback(host: str) -> bool:
    if host.strip("[]").lower() in {"localhost", "::1"}:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_allowed(header: str | None, port: int, bound_host: str) -> bool:
    """A Host header naming this server: a loopback name (or the host it was explicitly bound to), with
    our port or none. Bound to a wildcard address, any name is accepted: the user opened it to the network."""
    if not header:
        return False
    if bound_host in ("0.0.0.0", "::", ""):
        return True
    name, port_given = _split_host(header.strip().lower())
    if port_given is not None and port_given != port:
        return False
    return name in LOOPBACK_NAMES or name.strip("[]") == bound_host.strip("[]").lower()


def _split_host(value: str) -> tuple[str, int | None]:
    if value.startswith("["):
        end = value.find("]")
        name, rest = value[: end + 1], value[end + 1 :]
    else:
        name, _, port = value.rpartition(":")
        if not name:
            return value, None
        rest = ":" + port
    if not rest:
        return name, None
    try:
        return name, int(rest.lstrip(":"))
    except ValueError:
        return name, -1


def token_ok(header: str | None, token: str) -> bool:
    """``Authorization: Bearer <token>``, compared in constant time."""
    if not header:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())
