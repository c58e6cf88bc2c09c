"""A redirect from an upstream is reported, never followed (issue 11, item 7).

Following it would send the key to whatever host ``Location`` names; so ``test_provider_connection``
answers ``ok: false`` with the status and the target's host, and the other host hears nothing.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from harness import Reply, Sidecar, Upstream

KEY = "sk-redirect-test-0123456789abcdef"


@pytest.fixture
def other_host() -> Iterator[socket.socket]:
    """A listener on 127.0.0.2, standing in for another host: it must never be connected to."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.2", 0))
    except OSError as exc:
        pytest.skip(f"127.0.0.2 is not usable here: {exc}")
    sock.listen(8)
    sock.setblocking(False)
    yield sock
    sock.close()


def connections_to(sock: socket.socket) -> int:
    count = 0
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_connection_test_reports_a_redirect(sidecar: Sidecar, upstream: Upstream, other_host: socket.socket,
                                            status: int) -> None:
    port = other_host.getsockname()[1]
    upstream.replies["/v1/models"] = Reply(status=status, headers={"location": f"http://127.0.0.2:{port}/v1/models"},
                                           chunks=[b"moved"])
    sidecar.call("llm_register_custom_provider", {"id": "moved", "name": "Moved", "protocol": "openai",
                                                  "base_url": upstream.base_url, "requires_api_key": True})
    result = sidecar.call("test_provider_connection", {"provider": "moved", "api_key": KEY})
    assert result["ok"] is False, result
    error = result["error"]
    assert error["code"] == "invalid_request" and error["status"] == status and error["retryable"] is False, error
    assert "127.0.0.2" in error["message"] and "127.0.0.1" in error["message"], error
    assert [s.path for s in upstream.seen] == ["/v1/models"]
    assert upstream.seen[0].headers["authorization"] == f"Bearer {KEY}"  # the key went to its own host only
    assert connections_to(other_host) == 0
    assert KEY.encode() not in b"".join(sidecar.raw_lines) + bytes(sidecar.stderr)


def test_redirect_on_the_same_host_is_reported_too(sidecar: Sidecar, upstream: Upstream) -> None:
    upstream.replies["/v1/models"] = Reply(status=302, headers={"location": "/login"})
    sidecar.call("llm_register_custom_provider", {"id": "portal", "name": "Portal", "protocol": "openai",
                                                  "base_url": upstream.base_url, "requires_api_key": False})
    result = sidecar.call("test_provider_connection", {"provider": "portal"})
    assert result["ok"] is False and result["error"]["status"] == 302, result
    assert "same host" in result["error"]["message"], result
    assert [s.path for s in upstream.seen] == ["/v1/models"]


def test_a_plain_200_still_passes(sidecar: Sidecar, upstream: Upstream) -> None:
    upstream.replies["/v1/models"] = Reply(headers={"content-type": "application/json"},
                                           chunks=[b'{"object":"list","data":[{"id":"m1","object":"model"}]}'])
    sidecar.call("llm_register_custom_provider", {"id": "fine", "name": "Fine", "protocol": "openai",
                                                  "base_url": upstream.base_url, "requires_api_key": False})
    result = sidecar.call("test_provider_connection", {"provider": "fine"})
    assert result["ok"] is True, result
