"""``llm-sidecar chat`` driven through a real pseudo-terminal, as a person at a terminal would."""

from __future__ import annotations

import errno
import json
import os
import pty
import select
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import ROOT, Reply, Upstream, sidecar_env, sse

SECRET = "sk-chat-test-0123456789abcdefSECRET"


class Term:
    """``python -m sidecar ... chat`` on a pty; ``expect`` reads until a text shows up."""

    def __init__(self, data_dir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        env = env if env is not None else sidecar_env(data_dir)
        env.setdefault("TERM", "dumb")
        argv = [sys.executable, "-m", "sidecar", "chat", "--data-dir", str(data_dir), *args]
        pid, fd = pty.fork()
        if pid == 0:  # the child: becomes the sidecar
            os.chdir(ROOT)
            os.execve(sys.executable, argv, env)
        self.pid, self.fd = pid, fd
        self.output = b""
        self.pos = 0
        self.status: int | None = None

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.fd, 65536)
        except OSError as exc:  # EIO: the child closed the terminal
            if exc.errno != errno.EIO:
                raise
            return False
        if not data:
            return False
        self.output += data
        return True

    def expect(self, text: str, timeout: float = 20) -> str:
        """Wait for ``text`` after the last match; return what came before it."""
        want = text.encode()
        deadline = time.monotonic() + timeout
        while True:
            at = self.output.find(want, self.pos)
            if at >= 0:
                before = self.output[self.pos:at].decode(errors="replace")
                self.pos = at + len(want)
                return before
            if time.monotonic() > deadline or not self._read(0.1):
                if self.output.find(want, self.pos) >= 0:
                    continue
                raise AssertionError(f"{text!r} never came; output after the last match: "
                                     f"{self.output[self.pos:].decode(errors='replace')!r}")

    def send(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def line(self, text: str) -> None:
        self.send(text + "\r")

    def wait_exit(self, timeout: float = 15) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._read(0.05)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
                return self.status
        raise AssertionError("the chat did not exit")

    def close(self) -> None:
        if self.status is None:
            with_exit = os.waitpid(self.pid, os.WNOHANG)[0]
            if not with_exit:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
        os.close(self.fd)


@pytest.fixture
def term_factory(tmp_path: Path) -> Iterator[type[Term]]:
    made: list[Term] = []

    class Made(Term):
        def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
            super().__init__(tmp_path / "data", *args, env=env)
            made.append(self)

    yield Made
    for t in made:
        t.close()


def test_echo_model_providers_reset_and_eof(term_factory: type[Term]) -> None:
    t = term_factory("--model", "mock:echo")
    t.expect("llm-sidecar chat with mock:echo")
    t.expect("you> ")
    t.line("hello there")
    t.expect("hello there")  # the line as typed
    t.expect("\nhello there")  # the answer, streamed back by mock:echo
    t.expect("you> ")
    t.line("/model")
    t.expect("model: mock:echo")
    t.expect("you> ")
    t.line("/providers")
    listing = t.expect("you> ")
    assert "mock" in listing and "no key needed" in listing and "openai" in listing
    t.line("/reset")
    t.expect("conversation cleared")
    t.expect("you> ")
    t.line("second turn")
    t.expect("second turn")
    t.expect("\nsecond turn")
    t.expect("you> ")
    t.send("\x04")  # Ctrl-D
    assert t.wait_exit() == 0


def test_model_switch_unknown_command_and_quit(term_factory: type[Term]) -> None:
    t = term_factory()  # no --model, no active provider: mock:echo
    t.expect("chat with mock:echo")
    t.expect("you> ")
    t.line("/model nosuch:thing")
    t.expect("error: ")
    t.expect("you> ")
    t.line("/model mock:echo")
    t.expect("model: mock:echo")
    t.expect("you> ")
    t.line("/frobnicate")
    t.expect("unknown command /frobnicate")
    t.expect("you> ")
    t.line("/quit")
    assert t.wait_exit() == 0


def test_key_set_is_not_echoed(term_factory: type[Term]) -> None:
    t = term_factory("--model", "mock:echo")
    t.expect("you> ")
    t.line("/key set openai")
    t.expect("API key for openai (not shown): ")
    t.line(SECRET)
    t.expect("saved the API key for openai")
    t.expect("you> ")
    t.line("/providers")
    listing = t.expect("you> ")
    assert any("openai" in ln and "key: keyring" in ln for ln in listing.splitlines())
    t.send("\x04")
    assert t.wait_exit() == 0
    assert SECRET.encode() not in t.output and SECRET[-10:].encode() not in t.output


def test_key_set_without_a_keychain(term_factory: type[Term], tmp_path: Path) -> None:
    env = sidecar_env(tmp_path / "data", PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    t = term_factory("--model", "mock:echo", env=env)
    t.expect("you> ")
    t.line("/key set openai")
    t.expect("(not shown): ")
    t.line(SECRET)
    t.expect("No usable OS keychain")
    t.expect("you> ")
    t.send("\x04")
    assert t.wait_exit() == 0
    assert SECRET.encode() not in t.output


def test_ctrl_c_stops_a_slow_answer(term_factory: type[Term], tmp_path: Path) -> None:
    upstream = Upstream()
    try:
        def deltas(words: list[str]) -> list[bytes]:
            return sse([{"choices": [{"index": 0, "delta": {"content": w}}]} for w in words]
                       + [{"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}])

        upstream.replies["slow"] = Reply(chunks=deltas(["tick "] * 200), delay=0.2)
        upstream.replies["fast"] = Reply(chunks=deltas(["quick ", "answer"]))
        data = tmp_path / "data"
        data.mkdir(parents=True, exist_ok=True)
        (data / "settings.json").write_text(json.dumps({"version": 1, "custom_providers": [{
            "id": "loop", "name": "Loopback", "protocol": "openai", "base_url": upstream.base_url,
            "requires_api_key": False}]}))
        t = term_factory("--model", "loop:slow")
        t.expect("chat with loop:slow")
        t.expect("you> ")
        t.line("count slowly")
        t.expect("tick tick ")
        t.send("\x03")  # Ctrl-C while the answer streams
        t.expect("[stopped]")  # a stop, not an error
        t.expect("you> ")
        assert b"error" not in t.output, t.output
        deadline = time.monotonic() + 15
        while not upstream.seen[0].disconnected.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert upstream.seen[0].disconnected.is_set(), "the upstream connection stayed open"
        assert not upstream.seen[0].finished.is_set()
        t.line("/model loop:fast")
        t.expect("model: loop:fast")
        t.expect("you> ")
        t.line("and now?")
        t.expect("quick answer")
        t.expect("you> ")
        # the stopped turn was not kept: the second request carries only the new question
        assert [m["content"] for m in upstream.seen[-1].body["messages"]] == ["and now?"]
        # CPython's readline misses a SIGINT that lands between printing the prompt and waiting for
        # input (it is seen at the next key), so give input() a moment before each Ctrl-C at the prompt.
        time.sleep(0.5)
        t.send("\x03")  # Ctrl-C at the prompt: clears the line, says how to leave
        t.expect("Ctrl-C again")
        t.expect("you> ")
        time.sleep(0.5)
        t.send("\x03")  # a second one in a row leaves
        assert t.wait_exit() == 0
    finally:
        upstream.close()
