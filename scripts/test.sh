#!/usr/bin/env bash
# Set up everything the tests need, then run them all: lint, types, schema freshness, pytest
# (under a real, unlocked Secret Service), and the TypeScript client's tests once it exists.
set -euo pipefail
cd "$(dirname "$0")/.."

# A real Secret Service for the keychain tests: gnome-keyring on a private D-Bus session;
# a C compiler for the binary test (Nuitka).
if ! command -v gnome-keyring-daemon >/dev/null || ! command -v dbus-run-session >/dev/null \
   || ! command -v secret-tool >/dev/null || ! command -v cc >/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq gnome-keyring dbus dbus-x11 libsecret-tools gcc >/dev/null
fi

# Nuitka compiles against Python's headers: Debian's python3 ships them separately.
if ! python3 -c 'import os, sys, sysconfig; sys.exit(not os.path.isfile(sysconfig.get_paths()["include"] + "/Python.h"))'; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-dev >/dev/null
fi

scripts/setup.sh --dev
export PATH="$PWD/.venv/bin:$PATH"
# The TypeScript client's packages first: the binary test drives the built binary through its Node transport.
if [ -f frontend-client/package.json ]; then
  (cd frontend-client && npm ci --no-audit --no-fund)
fi

echo "== ruff";  ruff check sidecar tests bench
echo "== mypy";  mypy
echo "== schema freshness"; python -m sidecar schema --check

echo "== pytest (with a real Secret Service)"
dbus-run-session -- bash -c '
  set -euo pipefail
  export HOME=$(mktemp -d)
  eval "$(printf %s testpass | gnome-keyring-daemon --unlock --components=secrets)"
  export LLM_SIDECAR_TEST_SECRET_SERVICE=1
  python -m pytest -q -p no:cacheprovider
' 2> >(grep -v "Failed to set fd limit" >&2)

if [ -f frontend-client/package.json ]; then
  echo "== frontend-client"
  (cd frontend-client && npm test)
fi
