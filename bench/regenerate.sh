#!/usr/bin/env bash
# Regenerate every figure in bench/README.md (and the plot) in one go: start-up and relay, per-protocol
# decoding, the single-file binary's start-up (built first), and the comparison report.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || { scripts/setup.sh --dev; }
"$PY" -m pip install --quiet -e ".[dev,bench]"
"$PY" bench/run.py --write
"$PY" bench/decode.py --write
"$PY" -m sidecar build-binary --output dist
"$PY" bench/binary.py --pyinstaller --write
"$PY" bench/report.py --write
"$PY" bench/proxy_latency.py --write
"$PY" bench/first_token.py --write
