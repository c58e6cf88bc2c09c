#!/usr/bin/env bash
# Set up, then pipe one offline streaming request (the built-in mock:echo model) into the sidecar
# and print every line it answers: the ready notification, the response, the stream's events.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
DATA=$(mktemp -d)
trap 'rm -rf "$DATA"' EXIT
echo '{"jsonrpc":"2.0","id":1,"method":"llm_stream_text","params":{"stream_id":"demo","model":"mock:echo","messages":[{"role":"user","content":"Hello from llm-sidecar!"}]}}' \
  | .venv/bin/llm-sidecar --data-dir "$DATA"
