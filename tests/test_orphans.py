"""No orphaned sidecar: when the app that spawned it is killed outright, the sidecar goes too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness import ROOT, sidecar_env

PARENT = r"""
import os, subprocess, sys, time
args = [sys.executable, "-m", "sidecar"] + (["--parent-pid", str(os.getpid())] if sys.argv[1] == "pid" else [])
child = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(child.pid, flush=True)
time.sleep(600)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purpose; it only waits to be reaped
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
@pytest.mark.parametrize("mode", ["pid", "stdin"])
def test_sidecar_exits_when_its_parent_is_killed(tmp_path: Path, mode: str) -> None:
    """`pid`: --parent-pid names the parent; `stdin`: no flag, the parent's end of stdin closes as it dies."""
    env = sidecar_env(tmp_path)
    parent = subprocess.Popen([sys.executable, "-c", PARENT, mode], stdout=subprocess.PIPE, env=env, cwd=ROOT)
    assert parent.stdout is not None
    sidecar_pid = int(parent.stdout.readline())
    time.sleep(1.0)  # let it reach sidecar-ready and settle
    assert alive(sidecar_pid)
    parent.send_signal(signal.SIGKILL)
    parent.wait(5)
    deadline = time.monotonic() + 5
    while alive(sidecar_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(sidecar_pid), "the sidecar outlived its parent"
