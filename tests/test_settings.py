"""Settings in the data dir: written atomically, survive a kill, and a corrupt file is kept aside, not lost."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from harness import Sidecar


def start(data_dir: Path) -> Sidecar:
    sc = Sidecar(data_dir)
    sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
    return sc


def provider(i: int) -> dict:
    return {"id": f"p{i}", "name": f"Provider {i}", "protocol": "openai", "base_url": f"http://127.0.0.1:{9000 + i}/v1",
            "requires_api_key": False}


def test_settings_file_is_written_and_read_back(data_dir: Path) -> None:
    sc = start(data_dir)
    try:
        sc.call("llm_register_custom_provider", provider(1))
        sc.call("set_active_provider", {"provider": "p1", "model": "m"})
    finally:
        sc.kill()
    saved = json.loads((data_dir / "settings.json").read_text())
    assert saved["custom_providers"][0]["base_url"] == "http://127.0.0.1:9001/v1"
    assert saved["active"] == {"provider": "p1", "model": "m"}
    # no temp file left behind; settings.lock is the writers' lock file
    assert sorted(p.name for p in data_dir.iterdir()) == ["settings.json", "settings.lock"]


def test_corrupt_settings_are_kept_aside_and_reported(data_dir: Path) -> None:
    garbage = b'{"custom_providers": [{"id": "half'
    (data_dir / "settings.json").write_bytes(garbage)
    sc = start(data_dir)
    try:
        assert not [p for p in sc.call("list_providers") if p["is_custom"]]
        sc.call("llm_register_custom_provider", provider(2))
    finally:
        sc.kill()
    aside = [p for p in data_dir.iterdir() if p.name.startswith("settings.json.corrupt-")]
    assert len(aside) == 1 and aside[0].read_bytes() == garbage
    assert b"corrupt" in bytes(sc.stderr) and aside[0].name.encode() in bytes(sc.stderr)
    assert json.loads((data_dir / "settings.json").read_text())["custom_providers"][0]["id"] == "p2"


def test_settings_of_the_wrong_shape_are_kept_aside(data_dir: Path) -> None:
    (data_dir / "settings.json").write_text('{"custom_providers": "not a list"}')
    sc = start(data_dir)
    try:
        assert sc.call("get_active_provider") is None
    finally:
        sc.kill()
    assert any(p.name.startswith("settings.json.corrupt-") for p in data_dir.iterdir())


def test_settings_survive_a_kill_in_the_middle_of_writing(data_dir: Path) -> None:
    """SIGKILL while providers are being registered as fast as possible: the file always parses."""
    registered = 0
    for round_ in range(4):
        sc = start(data_dir)
        for i in range(60):
            sc.send({"jsonrpc": "2.0", "id": i, "method": "llm_register_custom_provider",
                     "params": provider(round_ * 100 + i)})
        time.sleep(0.05 * (round_ + 1))
        sc.proc.send_signal(signal.SIGKILL)
        sc.wait_exit(5)
        answered = sum(1 for m in sc.messages if "result" in m)
        registered += answered
        path = data_dir / "settings.json"
        saved = json.loads(path.read_text()) if path.exists() else {"custom_providers": []}  # never half-written
        ids = {p["id"] for p in saved["custom_providers"]}
        # every acknowledged registration is on disk
        assert {f"p{round_ * 100 + m['id']}" for m in sc.messages if "result" in m} <= ids
    assert registered > 0
