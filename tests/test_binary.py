"""The one-file binary (``python -m sidecar build-binary``), built once for the module and driven over
real pipes as Tauri or Electron would: no Python source on the path, every lazily imported piece
(protocol modules, anyio's backend, keyring's backends) has to be inside it.

It unpacks once into ``$XDG_CACHE_HOME/llm-sidecar/<version>-<build id>`` and reuses that folder: the
tests point the temp and cache dirs at fresh folders and check that SIGKILL (Tauri's ``child.kill()``)
leaves nothing new, that a cached file that does not match the binary is replaced, and that instances
started together all come up on the same folder.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import ROOT, Reply, Sidecar, Upstream, check_stream_invariants, sidecar_env, sse, text_of
from test_anthropic_e2e import delta, finish, frames, message_start, start, stop

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("nuitka") is None,
                       reason="Nuitka is not installed (python3 -m pip install -e '.[build]')"),
    # the first test also pays for the module's one build (several minutes on 2 cores, with llama.cpp)
    pytest.mark.timeout(1800),
]

PROTOCOLS = ("openai", "anthropic", "gemini", "ollama", "cohere")
WITH_LOCAL = importlib.util.find_spec("llama_cpp") is not None
"""the module's one build bundles llama.cpp (``--with-local``) when llama-cpp-python is installed, as in CI:
one build for both (a second build would add minutes; the bundle adds little, bench/README.md)"""


class BinarySidecar(Sidecar):
    """The harness's Sidecar, spawning the binary instead of ``python -m sidecar``."""

    def __init__(self, binary: Path, data_dir: Path, cache_dir: Path, **env: str) -> None:
        import itertools

        self.proc = subprocess.Popen([str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, cwd=data_dir,
                                     env=sidecar_env(data_dir, XDG_CACHE_HOME=str(cache_dir), **env))
        self.messages, self.raw_lines, self.bad_lines, self.stderr = [], [], [], bytearray()
        self._cond = threading.Condition()
        self._ids = itertools.count(1000)
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    local = ["--with-local"] if WITH_LOCAL else []
    done = subprocess.run([sys.executable, "-m", "sidecar", "build-binary", "--output", str(out), *local],
                          cwd=ROOT, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    path = Path(done.stdout.strip().splitlines()[-1])
    assert path.parent == out.resolve() and path.is_file()
    return path


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cache dir of the module's shared sidecar (never the user's own ~/.cache)."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.close()


@pytest.fixture(scope="module")
def sidecar(binary: Path, cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BinarySidecar]:
    sc = BinarySidecar(binary, tmp_path_factory.mktemp("data"), cache)
    sc.wait_for(lambda m: m.get("method") == "sidecar-ready", timeout=30)
    yield sc
    sc.kill()
    assert sc.bad_lines == [], "stdout carried a line that is not JSON"


def test_named_with_the_target_triple(binary: Path) -> None:
    from sidecar.build import target_triple

    triple = target_triple()
    assert binary.name == f"llm-sidecar-{triple}" + (".exe" if sys.platform == "win32" else "")
    if sys.platform.startswith("linux") and os.uname().machine == "x86_64":
        assert binary.name == "llm-sidecar-x86_64-unknown-linux-gnu"
    assert target_triple("arm64", "darwin") == "aarch64-apple-darwin"
    assert target_triple("AMD64", "win32") == "x86_64-pc-windows-msvc"


def test_list_providers_and_mock_stream(sidecar: BinarySidecar) -> None:
    providers = sidecar.call("list_providers")
    assert any(p["id"] == "mock" for p in providers)
    events = sidecar.stream({"model": "mock:echo", "messages": [{"role": "user", "content": "Hi from the binary ✓"}]})
    check_stream_invariants(events)
    assert text_of(events) == "Hi from the binary ✓"
    assert events[-1]["type"] == "done"


def test_protocol_modules_load_inside_the_binary(sidecar: BinarySidecar, upstream: Upstream) -> None:
    for protocol in PROTOCOLS:
        sidecar.call("llm_register_custom_provider", {
            "id": f"p-{protocol}", "name": protocol, "protocol": protocol,
            "base_url": f"http://127.0.0.1:{upstream.port}/{protocol}", "requires_api_key": False,
        })
        before = len(upstream.seen)
        resp = sidecar.request("test_provider_connection", {"provider": f"p-{protocol}"}, timeout=20)
        assert "result" in resp, resp  # an import failure inside the binary would be an internal error
        assert len(upstream.seen) > before, f"{protocol}: nothing reached the upstream"
        assert upstream.seen[-1].path.startswith(f"/{protocol}")

    upstream.replies["anth-model"] = Reply(chunks=frames(
        message_start(), start(0, type="text", text=""), delta(0, type="text_delta", text="Hello"),
        delta(0, type="text_delta", text=", binary"), stop(0), *finish("end_turn", 3)))
    events = sidecar.stream({"model": "p-anthropic:anth-model", "messages": [{"role": "user", "content": "hi"}],
                             "retry": {"max_retries": 0}})
    check_stream_invariants(events)
    assert text_of(events) == "Hello, binary"

    upstream.replies["oai-model"] = Reply(chunks=sse([
        {"choices": [{"index": 0, "delta": {"content": "Hi "}}]},
        {"choices": [{"index": 0, "delta": {"content": "there"}, "finish_reason": "stop"}]}]))
    events = sidecar.stream({"model": "p-openai:oai-model", "messages": [{"role": "user", "content": "hi"}],
                             "retry": {"max_retries": 0}})
    check_stream_invariants(events)
    assert text_of(events) == "Hi there"


def test_a_local_model_runs_inside_the_binary(sidecar: BinarySidecar) -> None:
    """llama-cpp-python and llama.cpp's shared libraries come with the binary (``--with-local``)."""
    from test_local_models import ASK, _gguf

    if not WITH_LOCAL:
        if os.environ.get("CI") == "true":
            pytest.fail("llama-cpp-python is not installed: the binary was built without --with-local")
        pytest.skip("llama-cpp-python is not installed: the binary was built without --with-local")
    gguf = _gguf()
    sidecar.call("register_local_model", {"id": "bin", "path": str(gguf)})
    events = sidecar.stream({"model": "local:bin", "messages": ASK, "max_tokens": 8}, timeout=120)
    check_stream_invariants(events)
    assert events[-1]["type"] == "done" and text_of(events).strip()
    assert events[-1]["usage"]["input_tokens"] > 0 and events[-1]["usage"]["output_tokens"] > 0
    assert sidecar.call("unload_local_model", {"id": "bin"}) == {"unloaded": True}


def test_exits_0_on_stdin_eof(binary: Path, cache: Path, tmp_path: Path) -> None:
    sc = BinarySidecar(binary, tmp_path, cache)
    try:
        sc.wait_for(lambda m: m.get("method") == "sidecar-ready", timeout=30)
        sc.close_stdin()
        assert sc.wait_exit(10) == 0
    finally:
        sc.kill()


def test_node_transport_drives_the_binary(binary: Path, cache: Path, tmp_path: Path) -> None:
    """The issue's bar: the TypeScript client's Node transport talks to the binary."""
    client = ROOT / "frontend-client"
    npm, node = shutil.which("npm"), shutil.which("node")
    if not (npm and node and (client / "node_modules").is_dir()):
        why = "node/npm or frontend-client/node_modules missing (npm ci in frontend-client)"
        if os.environ.get("CI"):  # CI installs them first: a skip there would hide the bar
            pytest.fail(why)
        pytest.skip(why)
    for script in ("build", "build:test"):  # the compiled tests import the built package
        subprocess.run([npm, "run", script], cwd=client, check=True, capture_output=True, timeout=120)
    env = {**sidecar_env(tmp_path), "SIDECAR_BINARY": str(binary), "XDG_CACHE_HOME": str(cache)}
    done = subprocess.run([node, "--test", "build/test/binary.test.js"], cwd=client, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "# pass 2" in done.stdout and "# skipped 0" in done.stdout, done.stdout[-2000:]


# --- the unpack folder ---------------------------------------------------------------------------


def tree(root: Path) -> dict[str, str]:
    """Every file and folder under ``root``: relative path -> sha256 of the content ("dir" for folders)."""
    return {p.relative_to(root).as_posix(): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if not p.is_symlink() or p.exists()}


def start_binary(binary: Path, tmp_path: Path, name: str, cache: Path, temp: Path) -> tuple[BinarySidecar, int]:
    """A binary started with its own temp and cache dirs, up to ``sidecar-ready``; returns it and the pid
    of the Python process (the ready line's ``pid``), which is not the pid Popen knows."""
    data = tmp_path / name
    data.mkdir()
    sc = BinarySidecar(binary, data, cache, TMPDIR=str(temp), TMP=str(temp), TEMP=str(temp))
    ready = sc.wait_for(lambda m: m.get("method") == "sidecar-ready", timeout=60)
    return sc, int(ready["params"]["pid"])


def gone(pid: int, timeout: float = 20) -> bool:
    """Whether ``pid`` (not our child: the orphaned program) ended within ``timeout``; an unreaped zombie
    counts as ended."""
    stat = Path(f"/proc/{pid}/stat")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            if sys.platform.startswith("linux") and stat.read_text().rpartition(")")[2].split()[0] == "Z":
                return True
        except (ProcessLookupError, FileNotFoundError):
            return True
        time.sleep(0.05)
    return False


def the_unpack_folder(cache: Path) -> Path:
    """The one folder the binary unpacks into, checked to be named ``<version>-<12 hex digits>``."""
    from sidecar import __version__

    assert [p.name for p in cache.iterdir()] == ["llm-sidecar"], tree(cache).keys()
    folders = list((cache / "llm-sidecar").iterdir())
    assert len(folders) == 1, folders
    assert re.fullmatch(re.escape(__version__) + r"-[0-9a-f]{12}", folders[0].name), folders[0].name
    return folders[0]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX; TerminateProcess is the same thing")
def test_sigkill_after_ready_leaves_nothing_behind(binary: Path, tmp_path: Path) -> None:
    """The issue's bar: killed 20 times right after ``sidecar-ready``, the temp dir is as it was and the
    cache dir holds one reused folder, the same after the first start and after the last."""
    temp, cache = tmp_path / "tmp", tmp_path / "cache"
    temp.mkdir()
    cache.mkdir()
    first: dict[str, str] | None = None
    for i in range(20):
        sc, pid = start_binary(binary, tmp_path, f"data{i}", cache, temp)
        assert pid != sc.proc.pid  # the bootstrap forks the program: Tauri holds the bootstrap's pid
        os.kill(sc.proc.pid, signal.SIGKILL)
        assert sc.proc.wait(10) == -signal.SIGKILL
        sc.close_stdin()  # the app's end of the pipe goes with it: the orphaned program sees EOF
        assert gone(pid), f"the program (pid {pid}) outlived its killed bootstrap and stdin EOF"
        assert list(temp.iterdir()) == [], f"start {i} left {sorted(tree(temp))[:5]} in the temp dir"
        first = first or tree(cache)
        assert tree(cache) == first, f"start {i} changed the cache: {set(tree(cache)) ^ set(first)}"
    folder = the_unpack_folder(cache)
    assert any(p.name.startswith("libpython") or p.suffix in (".so", ".dylib") for p in folder.rglob("*"))


def test_a_changed_cached_file_is_replaced_not_run(binary: Path, tmp_path: Path) -> None:
    """A folder with the right name but other content (a stale or half-written unpack) is repaired
    from the binary's payload before anything runs."""
    temp, cache = tmp_path / "tmp", tmp_path / "cache"
    temp.mkdir()
    cache.mkdir()
    sc, _ = start_binary(binary, tmp_path, "data0", cache, temp)
    sc.close_stdin()
    assert sc.wait_exit(10) == 0
    folder = the_unpack_folder(cache)
    good = tree(cache)
    program = max((p for p in folder.iterdir() if p.is_file() and os.access(p, os.X_OK)),
                  key=lambda p: p.stat().st_size)
    data_file = next(p for p in folder.rglob("*.json") if p.is_file())  # jsonrpcserver's request schema
    program.write_bytes(b"#!/bin/sh\necho stale >&2\nexit 3\n")
    data_file.write_text("{}", encoding="utf-8")
    (folder / "a-file-a-newer-build-dropped").write_text("x", encoding="utf-8")
    sc, _ = start_binary(binary, tmp_path, "data1", cache, temp)
    events = sc.stream({"model": "mock:echo", "messages": [{"role": "user", "content": "fresh"}]})
    assert text_of(events) == "fresh"
    sc.close_stdin()
    assert sc.wait_exit(10) == 0
    assert b"stale" not in sc.stderr
    after = tree(cache)
    after.pop(f"llm-sidecar/{folder.name}/a-file-a-newer-build-dropped")
    assert after == good


def ready_or_gone(sc: BinarySidecar, timeout: float = 60) -> bool:
    """True once ``sidecar-ready`` arrives, False if the process ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(isinstance(m, dict) and m.get("method") == "sidecar-ready" for m in list(sc.messages)):
            return True
        if sc.proc.poll() is not None:
            return False
        time.sleep(0.02)
    raise AssertionError("neither sidecar-ready nor an exit")


def test_instances_started_together_leave_one_intact_folder(binary: Path, tmp_path: Path) -> None:
    """Four first starts at once on an empty cache: those that come up answer, every start after them
    comes up, and the folder then matches a lone start's into another empty cache, file by file.

    Nuitka's bootstrap writes the files in place, not under a temp name: when two first starts overlap,
    one can die before ``sidecar-ready`` (SIGBUS: a file it was reading got rewritten under it; seen in
    about 1 of 20 overlapping first starts), possibly leaving a file half-written, which the next
    start's CRC check rewrites. So this checks what holds: no start after them runs damaged files."""
    temp, cache, lone = tmp_path / "tmp", tmp_path / "cache", tmp_path / "lone"
    for d in (temp, cache, lone):
        d.mkdir()
    started = []
    for i in range(4):
        data = tmp_path / f"data{i}"
        data.mkdir()
        started.append(BinarySidecar(binary, data, cache, TMPDIR=str(temp)))
    for i, sc in enumerate(started):
        if ready_or_gone(sc):
            events = sc.stream({"model": "mock:echo", "messages": [{"role": "user", "content": f"n{i}"}]})
            assert text_of(events) == f"n{i}"
            sc.close_stdin()
            assert sc.wait_exit(10) == 0
        else:
            assert sc.proc.returncode != 0
    for i in range(2):
        sc, _ = start_binary(binary, tmp_path, f"after{i}", cache, temp)
        sc.close_stdin()
        assert sc.wait_exit(10) == 0
    sc, _ = start_binary(binary, tmp_path, "lone-data", lone, temp)
    sc.close_stdin()
    assert sc.wait_exit(10) == 0
    assert tree(cache) == tree(lone)
    assert list(temp.iterdir()) == []


def test_the_folder_is_named_for_this_source(binary: Path, cache: Path, sidecar: BinarySidecar,
                                             tmp_path: Path) -> None:
    """A binary built from other code unpacks elsewhere: the folder name carries a hash of the source
    (and of the installed distributions, Python and the build options), checked on a copy of the package."""
    from sidecar.build import PACKAGE_DIR, build_id, cache_folder_name, nuitka_options, target_triple

    options = tuple(nuitka_options(target_triple(), WITH_LOCAL))
    assert the_unpack_folder(cache).name == cache_folder_name(build_id(options=options))
    copy = tmp_path / "sidecar"
    shutil.copytree(PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = build_id(copy, options)
    assert build_id(copy, options) == before
    module = copy / "trust.py"
    module.write_text(module.read_text(encoding="utf-8") + "\n# changed\n", encoding="utf-8")
    assert build_id(copy, options) != before
    assert build_id(copy, (*options, "--lto=yes")) != build_id(copy, options)
