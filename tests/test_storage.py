"""The data dir under stress: two sidecars writing at once, private modes, and writes that either
fully happen or leave nothing changed (a read-only data dir, a full disk, a failing keychain)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from harness import ROOT, Sidecar

TESTS = str(ROOT / "tests")
KEY = "sk-test-Zq7VtY3pLm9KxW2rNc8BdF5hJ1gA6uE4"  # 40 characters of nothing real
SERVICE = "llm-sidecar"  # the default --keyring-service
NOBODY = 65534
AS_NOBODY = ("setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups")


def start(data_dir: Path, *, keyring: Path | None = None, broken: bool = False, prefix: Sequence[str] = (),
          env: dict[str, str] | None = None) -> Sidecar:
    """A sidecar on ``data_dir`` whose keychain is the JSON file ``keyring`` (else one in memory)."""
    extra = {"PYTHONPATH": TESTS, **(env or {})}
    if keyring is None:
        extra["PYTHON_KEYRING_BACKEND"] = "fake_keyrings.memory.Keyring"
    else:
        extra |= {"PYTHON_KEYRING_BACKEND": "fake_keyrings.file.Keyring", "FAKE_KEYRING_FILE": str(keyring),
                  "FAKE_KEYRING_BROKEN": "1" if broken else "0"}
    sc = Sidecar(data_dir, env=extra, prefix=prefix)
    sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
    return sc


def provider(pid: str, host: str = "127.0.0.1") -> dict[str, Any]:
    return {"id": pid, "name": f"Provider {pid}", "protocol": "openai", "base_url": f"http://{host}:9/v1",
            "requires_api_key": False}


def custom_ids(sc: Sidecar) -> set[str]:
    return {p["id"] for p in sc.call("list_providers") if p["is_custom"]}


def storage_error(resp: dict[str, Any]) -> str:
    """The message of a ``storage_error`` answer (a domain error, never -32603)."""
    assert resp.get("error", {}).get("code") == -32000, resp
    assert resp["error"]["data"]["code"] == "storage_error", resp
    return str(resp["error"]["data"]["message"])


def send_all(sc: Sidecar, calls: Sequence[tuple[int, str, dict[str, Any]]]) -> None:
    for rid, method, params in calls:
        sc.send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})


def wait_all_ok(sc: Sidecar, ids: Sequence[int]) -> None:
    for rid in ids:
        resp = sc.wait_for(lambda m, rid=rid: m.get("id") == rid and "method" not in m, timeout=120)
        assert "result" in resp, resp


# --- two sidecars on one data dir ---------------------------------------------------------------


@pytest.mark.parametrize("n", [20, 100])
def test_two_sidecars_registering_at_once_lose_nothing(data_dir: Path, n: int) -> None:
    """Each registers n providers, the requests interleaved: all 2n are on disk and seen by a third."""
    a, b = start(data_dir), start(data_dir)
    try:
        for i in range(n):  # interleaved: a0, b0, a1, b1, ... each sidecar working through its own queue
            send_all(a, [(i, "llm_register_custom_provider", provider(f"a{i}"))])
            send_all(b, [(i, "llm_register_custom_provider", provider(f"b{i}"))])
        wait_all_ok(a, range(n))
        wait_all_ok(b, range(n))
        expected = {f"a{i}" for i in range(n)} | {f"b{i}" for i in range(n)}
        assert custom_ids(a) == expected  # a running sidecar sees the other's registrations
        assert custom_ids(b) == expected
    finally:
        a.kill()
        b.kill()
    c = start(data_dir)
    try:
        assert custom_ids(c) == expected
    finally:
        c.kill()
    saved = json.loads((data_dir / "settings.json").read_text())
    assert sorted(p["id"] for p in saved["custom_providers"]) == sorted(expected)


def test_concurrent_configure_set_active_and_keys_lose_nothing(data_dir: Path) -> None:
    """One sidecar registers, configures and keys its providers while the other configures built-ins
    and switches the active provider: every change is there at the end."""
    n = 25
    a, b = start(data_dir), start(data_dir)
    try:
        builtins = [p["id"] for p in a.call("list_providers") if not p["is_custom"] and p["id"] != "mock"]
        assert len(builtins) >= 5
        a_calls: list[tuple[int, str, dict[str, Any]]] = []
        b_calls: list[tuple[int, str, dict[str, Any]]] = []
        for i in range(n):
            a_calls += [(3 * i, "llm_register_custom_provider", provider(f"x{i}")),
                        (3 * i + 1, "configure_provider", {"id": f"x{i}", "headers": {"x-n": str(i)}}),
                        (3 * i + 2, "save_api_key", {"provider": f"x{i}", "api_key": KEY})]
            target = builtins[i % len(builtins)]
            b_calls += [(2 * i, "configure_provider", {"id": target, "extra_body": {"b": i}}),
                        (2 * i + 1, "set_active_provider", {"provider": target, "model": f"m{i}"})]
        for i in range(max(len(a_calls), len(b_calls))):
            send_all(a, a_calls[i:i + 1])
            send_all(b, b_calls[i:i + 1])
        wait_all_ok(a, [c[0] for c in a_calls])
        wait_all_ok(b, [c[0] for c in b_calls])
    finally:
        a.kill()
        b.kill()
    c = start(data_dir)
    try:
        listed = {p["id"]: p for p in c.call("list_providers")}
        for i in range(n):
            assert listed[f"x{i}"]["headers"] == {"x-n": str(i)}
            assert listed[f"x{i}"]["key_source"] == "keyring"  # from the key index: c's keychain is empty
        last = {builtins[i % len(builtins)]: i for i in range(n)}  # the last extra_body each built-in got
        for pid, i in last.items():
            assert listed[pid]["extra_body"].get("b") == i, pid
        assert c.call("get_active_provider") == {"provider": builtins[(n - 1) % len(builtins)], "model": f"m{n - 1}"}
    finally:
        c.kill()
    saved = json.loads((data_dir / "settings.json").read_text())
    assert saved["saved_keys"] == sorted(f"x{i}" for i in range(n))
    assert saved["key_hosts"] == {f"x{i}": "127.0.0.1" for i in range(n)}


# --- the files themselves ---------------------------------------------------------------------------


def test_stale_temp_files_are_removed_at_start(data_dir: Path) -> None:
    (data_dir / "settings.json").write_text(json.dumps({"custom_providers": [provider("kept")]}))
    stale = [data_dir / ".settings-x.tmp", data_dir / ".settings-k2j4h_9q.tmp"]
    for p in stale:
        p.write_text('{"half')
    other = data_dir / "notes.tmp"
    other.write_text("not ours")
    sc = start(data_dir)
    try:
        assert custom_ids(sc) == {"kept"}  # nothing written yet: the start itself cleaned up
        assert not any(p.exists() for p in stale)
        assert other.exists()
    finally:
        sc.kill()


def test_the_data_dir_is_0700_and_every_file_in_it_0600(tmp_path: Path) -> None:
    """Whatever the umask (0 here): settings, the lock file and the SQLite usage log with its -wal and -shm."""
    data_dir = tmp_path / "fresh" / "data"  # the sidecar creates it
    sc = start(data_dir, prefix=("sh", "-c", 'umask 000 && exec "$@"', "sh"))
    try:
        sc.call("llm_register_custom_provider", provider("p"))
        sc.call("save_api_key", {"provider": "p", "api_key": KEY})
        events = sc.stream({"model": "mock:echo", "messages": [{"role": "user", "content": "hi"}]})
        assert events[-1]["type"] == "done"
        assert sc.call("get_usage_stats", {})["total"]["requests"] == 1  # the stream is in the log
        names = sorted(p.name for p in data_dir.iterdir())
        assert names == ["settings.json", "settings.lock", "usage.sqlite3", "usage.sqlite3-shm", "usage.sqlite3-wal"]
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
        modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in data_dir.iterdir()}
        assert modes == dict.fromkeys(names, "0o600")
    finally:
        sc.kill()


# --- honest writes ------------------------------------------------------------------------------------


def test_a_saved_key_records_its_host_and_delete_removes_both(data_dir: Path, tmp_path: Path) -> None:
    keyring = tmp_path / "keyring.json"
    sc = start(data_dir, keyring=keyring)
    try:
        sc.call("llm_register_custom_provider", provider("lo"))
        sc.call("llm_register_custom_provider", provider("named", host="localhost"))
        sc.call("save_api_key", {"provider": "lo", "api_key": KEY})
        sc.call("set_active_provider", {"provider": "named", "model": "m", "api_key": KEY[::-1]})
        saved = json.loads((data_dir / "settings.json").read_text())
        assert (saved["saved_keys"], saved["key_hosts"]) == (["lo", "named"], {"lo": "127.0.0.1", "named": "localhost"})
        assert json.loads(keyring.read_text()) == {f"{SERVICE}/lo": KEY, f"{SERVICE}/named": KEY[::-1]}
        assert sc.call("delete_api_key", {"provider": "lo"}) == {"deleted": True}
        saved = json.loads((data_dir / "settings.json").read_text())
        assert (saved["saved_keys"], saved["key_hosts"]) == (["named"], {"named": "localhost"})
        assert json.loads(keyring.read_text()) == {f"{SERVICE}/named": KEY[::-1]}
    finally:
        sc.kill()


def test_a_failing_keychain_leaves_the_key_index_as_it_was(data_dir: Path, tmp_path: Path) -> None:
    keyring = tmp_path / "keyring.json"
    sc = start(data_dir, keyring=keyring)
    try:
        sc.call("llm_register_custom_provider", provider("had"))
        sc.call("llm_register_custom_provider", provider("new"))
        sc.call("save_api_key", {"provider": "had", "api_key": KEY})
    finally:
        sc.kill()
    settings_before, keyring_before = (data_dir / "settings.json").read_bytes(), keyring.read_bytes()

    sc = start(data_dir, keyring=keyring, broken=True)
    try:
        for method, params in [("save_api_key", {"provider": "new", "api_key": KEY}),
                               ("set_active_provider", {"provider": "new", "model": "m", "api_key": KEY}),
                               ("delete_api_key", {"provider": "had"})]:
            resp = sc.request(method, params)
            assert resp["error"]["data"]["code"] == "keyring_unavailable", resp
        assert [p["provider"] for p in sc.call("list_saved_providers")] == ["had"]
        assert sc.call("get_active_provider") is None  # set_active_provider failed as a whole
    finally:
        sc.kill()
    assert (data_dir / "settings.json").read_bytes() == settings_before
    assert keyring.read_bytes() == keyring_before


@contextlib.contextmanager
def nobody_dirs() -> Iterator[Path]:
    """A folder the unprivileged user can reach (pytest's tmp_path is private to root)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run the sidecar as another (unprivileged) user")
    probe = subprocess.run([*AS_NOBODY, "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot run a process as uid {NOBODY} with setpriv: {probe.stderr.strip()}")
    base = Path(tempfile.mkdtemp(prefix="llm-sidecar-storage-"))
    try:
        os.chmod(base, 0o755)
        yield base
    finally:
        for p in base.rglob("*"):
            if p.is_dir():
                os.chmod(p, 0o700)
        shutil.rmtree(base)


def owned_by_nobody(*paths: Path) -> None:
    for p in paths:
        os.chown(p, NOBODY, NOBODY)


def test_a_read_only_data_dir_changes_nothing() -> None:
    """Run as an unprivileged user on a data dir of mode 0500: every write is a storage_error naming the
    file and the reason, the keychain gets nothing, no setting moves, and the sidecar keeps serving."""
    with nobody_dirs() as base:
        data_dir, home = base / "data", base / "home"
        keyring = home / "keyring.json"  # a keychain the user can write: only the data dir is read-only
        data_dir.mkdir()
        home.mkdir()
        settings = data_dir / "settings.json"
        settings.write_text(json.dumps({"custom_providers": [provider("before"), provider("indexed")],
                                        "saved_keys": ["indexed"], "key_hosts": {"indexed": "127.0.0.1"}}))
        keyring.write_text(json.dumps({f"{SERVICE}/indexed": "a-key-saved-earlier"}))
        owned_by_nobody(data_dir, home, keyring, settings)
        os.chmod(settings, 0o600)
        os.chmod(data_dir, 0o500)
        settings_before, keyring_before = settings.read_bytes(), keyring.read_bytes()

        sc = start(data_dir, keyring=keyring, prefix=AS_NOBODY,
                   env={"HOME": str(home), "XDG_CONFIG_HOME": str(home), "XDG_DATA_HOME": str(home)})
        try:
            message = storage_error(sc.request("save_api_key", {"provider": "before", "api_key": KEY}))
            assert str(settings) in message and "Permission denied" in message
            assert KEY not in message
            assert keyring.read_bytes() == keyring_before  # the keychain holds nothing new
            assert sc.call("get_api_key", {"provider": "before"})["has_api_key"] is False
            assert [p["provider"] for p in sc.call("list_saved_providers")] == ["indexed"]

            storage_error(sc.request("set_active_provider", {"provider": "before", "model": "m", "api_key": KEY}))
            assert sc.call("get_active_provider") is None
            storage_error(sc.request("delete_api_key", {"provider": "indexed"}))
            assert keyring.read_bytes() == keyring_before

            storage_error(sc.request("llm_register_custom_provider", provider("after")))
            assert custom_ids(sc) == {"before", "indexed"}  # not listed: the failed registration took no effect
            storage_error(sc.request("configure_provider", {"id": "before", "base_url": "http://127.0.0.1:7/v1"}))
            storage_error(sc.request("llm_remove_custom_provider", {"id": "before"}))
            listed = {p["id"]: p for p in sc.call("list_providers")}
            assert listed["before"]["base_url"] == "http://127.0.0.1:9/v1"

            # a usage log that cannot be written costs one log line, not the stream
            events = sc.stream({"model": "mock:echo", "messages": [{"role": "user", "content": "hi"}]})
            assert events[-1]["type"] == "done"
            sc.call("list_providers")

            # a change that needs no settings write still works: a new key for a provider already indexed
            assert sc.call("save_api_key", {"provider": "indexed", "api_key": KEY})["has_api_key"] is True
            assert json.loads(keyring.read_bytes()) == {f"{SERVICE}/indexed": KEY}
        finally:
            sc.kill()
        assert settings.read_bytes() == settings_before
        assert sorted(p.name for p in data_dir.iterdir()) == ["settings.json"]
        log = bytes(sc.stderr).decode()
        assert log.count("not recorded") == 1 and "Traceback" not in log, log


@contextlib.contextmanager
def small_tmpfs(where: Path) -> Iterator[Path]:
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill ({done.stderr.strip() or done.returncode})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(directory: Path) -> None:
    """Write until the file system has no space left."""
    with open(directory / "filler", "wb", buffering=0) as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(b"x" * 4096)
        with contextlib.suppress(OSError):
            while True:
                f.write(b"x")


def test_a_full_disk_changes_nothing(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "small") as mnt:
        data_dir, keyring = mnt / "data", tmp_path / "keyring.json"
        sc = start(data_dir, keyring=keyring)
        try:
            sc.call("llm_register_custom_provider", provider("before"))
            sc.call("save_api_key", {"provider": "before", "api_key": KEY})
            fill(mnt)
            settings = data_dir / "settings.json"
            settings_before, keyring_before = settings.read_bytes(), keyring.read_bytes()

            message = storage_error(sc.request("llm_register_custom_provider", provider("after")))
            assert str(settings) in message and "No space left on device" in message
            assert custom_ids(sc) == {"before"}
            message = storage_error(sc.request("save_api_key", {"provider": "openai", "api_key": KEY}))
            assert "No space left on device" in message
            storage_error(sc.request("set_active_provider", {"provider": "before", "model": "m"}))
            storage_error(sc.request("delete_api_key", {"provider": "before"}))
            assert sc.call("get_active_provider") is None
            assert [p["provider"] for p in sc.call("list_saved_providers")] == ["before"]
            assert settings.read_bytes() == settings_before
            assert keyring.read_bytes() == keyring_before
            assert not list(data_dir.glob(".settings-*"))  # the failed temp files are gone too

            (mnt / "filler").unlink()  # space again: the same call now works
            sc.call("llm_register_custom_provider", provider("after"))
            assert custom_ids(sc) == {"before", "after"}
        finally:
            sc.kill()
