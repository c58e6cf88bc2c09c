from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Sidecar, Upstream


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


@pytest.fixture
def sidecar(data_dir: Path) -> Iterator[Sidecar]:
    proc = Sidecar(data_dir)
    proc.wait_for(lambda m: m.get("method") == "sidecar-ready")
    yield proc
    proc.kill()


def register_upstream(sc: Sidecar, upstream: Upstream, provider_id: str = "local", **extra: object) -> None:
    """A custom openai-protocol provider pointing at the loopback upstream, no key needed."""
    cfg = {"id": provider_id, "name": "Loopback", "protocol": "openai", "base_url": upstream.base_url,
           "requires_api_key": False, **extra}
    sc.call("llm_register_custom_provider", cfg)
