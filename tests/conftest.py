from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Sidecar, Upstream, assert_clean


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


def register_upstream(sc: Sidecar, upstream: Upstream, provider_id: str = "loopback", **extra: object) -> None:
    """A custom openai-protocol provider pointing at the loopback upstream, no key needed."""
    cfg = {"id": provider_id, "name": "Loopback", "protocol": "openai", "base_url": upstream.base_url,
           "requires_api_key": False, **extra}
    sc.call("llm_register_custom_provider", cfg)


class ModuleSidecar:
    """One sidecar for a whole test module (its start-up costs more than most tests), started again when a
    test killed it; and upstreams made per test, all kept open until the module ends (a stream may still
    be reading one) and then closed at once."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._tmp = tmp_path_factory
        self.proc: Sidecar | None = None
        self.upstreams: list[Upstream] = []

    def get(self, *args: str, env: dict[str, str] | None = None) -> Sidecar:
        """The module's sidecar, started with ``args`` and ``env`` on first use (or after a test killed it)."""
        if self.proc is None or self.proc.proc.poll() is not None:
            self.proc = Sidecar(self._tmp.mktemp("data"), *args, env=env)
            self.proc.wait_for(lambda m: m.get("method") == "sidecar-ready")
        return self.proc

    def upstream(self) -> Upstream:
        server = Upstream()
        self.upstreams.append(server)
        return server

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
        closers = [threading.Thread(target=u.close) for u in self.upstreams]
        for t in closers:
            t.start()
        for t in closers:
            t.join(5)


@pytest.fixture(scope="module")
def module_sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleSidecar]:
    shared = ModuleSidecar(tmp_path_factory)
    yield shared
    shared.close()


@pytest.fixture(scope="module")
def module_rpc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    """One sidecar for a module, served in this process (tests/inprocess.py): for tests of the RPC layer."""
    from inprocess import InProcessSidecar, sidecar_environment

    with sidecar_environment():
        sc = InProcessSidecar(tmp_path_factory.mktemp("data"))
        sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
        yield sc
        sc.kill()


@pytest.fixture
def rpc(data_dir: Path) -> Iterator[Sidecar]:
    """A fresh sidecar on this test's data dir, served in this process (tests/inprocess.py)."""
    from inprocess import InProcessSidecar, sidecar_environment

    with sidecar_environment():
        sc = InProcessSidecar(data_dir)
        sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
        yield sc
        sc.kill()


@pytest.fixture(params=["in-process"])
def sc(request: pytest.FixtureRequest, module_rpc: Sidecar, module_sidecar: ModuleSidecar) -> Iterator[Sidecar]:
    """The sidecar the read-only tests of a module share: served in this process, or the real
    ``python -m sidecar`` for a test marked ``ALSO_AS_PROCESS`` or ``PROCESS_ONLY``. Its stdout must stay clean."""
    proc = module_sidecar.get() if request.param == "process" else module_rpc
    yield proc
    assert_clean(proc)


ALSO_AS_PROCESS = pytest.mark.parametrize("sc", ["in-process", "process"], indirect=True)
"""on a test using ``sc``: it runs against the real process too (at least one test of each behaviour does)"""
PROCESS_ONLY = pytest.mark.parametrize("sc", ["process"], indirect=True)
"""on a test using ``sc``: what it checks only a process has (its stdout, its pid)"""
