#!/usr/bin/env bash
# Set up everything the tests need, then run them all: lint, types, schema freshness, pytest
# (under a real, unlocked Secret Service), and the TypeScript client's tests once it exists.
set -euo pipefail
cd "$(dirname "$0")/.."

# A real Secret Service for the keychain tests: gnome-keyring on a private D-Bus session; a C compiler
# for the binary test (Nuitka) and llama-cpp-python's build. apt-get installs them on Linux where there
# is one; elsewhere (macOS, other distributions) say what it takes, and run the suite without the
# Secret Service (the tests that need it skip).
have_secret_service() {
  command -v gnome-keyring-daemon >/dev/null && command -v dbus-run-session >/dev/null \
    && command -v secret-tool >/dev/null
}
have_apt() { [ "$(uname -s)" = Linux ] && command -v apt-get >/dev/null; }
if { ! have_secret_service || ! command -v cc >/dev/null; } && have_apt; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq gnome-keyring dbus dbus-x11 libsecret-tools gcc >/dev/null
fi

# Nuitka compiles against Python's headers: Debian's python3 ships them separately.
if have_apt && ! python3 -c 'import os, sys, sysconfig; sys.exit(not os.path.isfile(sysconfig.get_paths()["include"] + "/Python.h"))'; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-dev >/dev/null
fi
if ! have_secret_service; then
  echo "note: no gnome-keyring-daemon, dbus-run-session and secret-tool here, so the tests against a real" >&2
  echo "  Secret Service will skip. On Linux install gnome-keyring, dbus and libsecret's secret-tool" >&2
  echo "  (Fedora: gnome-keyring dbus-daemon libsecret; Arch: gnome-keyring libsecret) to run them too." >&2
fi

scripts/setup.sh --dev
export PATH="$PWD/.venv/bin:$PATH"
# A real llama-cpp-python server and a small real model (SmolLM2-135M, ~100 MB, fetched once into
# ~/.cache/llm-sidecar-test) for the usage tests (tests/test_usage_estimate.py).
python -m pip install --quiet --disable-pip-version-check -e ".[local-model]"
LLM_SIDECAR_TEST_GGUF=$(scripts/test-model.sh .venv/bin/python)
export LLM_SIDECAR_TEST_GGUF
# The real Claude Code program, pinned, for the claude-code provider's tests (tests/test_claude_code.py): installed
# here, never globally; it only ever talks to a loopback fake in the tests. Also the real MCP server
# @modelcontextprotocol/server-everything (stdio) for tests/test_mcp.py, run from tests/tools/node_modules/.bin.
(cd tests/tools && npm ci --no-audit --no-fund)
# The TypeScript client's packages first: the binary test drives the built binary through its Node transport.
if [ -f frontend-client/package.json ]; then
  (cd frontend-client && npm ci --no-audit --no-fund)
fi

echo "== ruff";  ruff check sidecar tests bench
echo "== mypy";  mypy
echo "== schema freshness"; python -m sidecar schema --check

if have_secret_service; then
  echo "== pytest (with a real Secret Service)"
  dbus-run-session -- bash -c '
    set -euo pipefail
    export HOME=$(mktemp -d)
    eval "$(printf %s testpass | gnome-keyring-daemon --unlock --components=secrets)"
    export LLM_SIDECAR_TEST_SECRET_SERVICE=1
    python -m pytest -q -p no:cacheprovider
  ' 2> >(grep -v "Failed to set fd limit" >&2)
else
  echo "== pytest (no Secret Service: its tests skip)"
  python -m pytest -q -p no:cacheprovider
fi

if [ -f frontend-client/package.json ]; then
  echo "== frontend-client"
  (cd frontend-client && npm test)
fi
