"""Counting usage an upstream did not report (sidecar/tokens.py): how good the character estimate is
against a real tokenizer, and how long the count holds back ``done``.

Needs llama-cpp-python (``pip install -e ".[local-model]"``) and the SmolLM2 model
(``scripts/test-model.sh`` prints its path; ``LLM_SIDECAR_TEST_GGUF`` overrides it).

    .venv/bin/python bench/usage_count.py [--reps 15]
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sidecar.providers import Provider  # noqa: E402
from sidecar.tokens import OutputTally, TokenCounter, estimate  # noqa: E402
from sidecar.types import StreamTextParams, SystemMessage, TextDeltaEvent, UserMessage  # noqa: E402

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llm-sidecar-test"
PROSE = ("The sidecar streams the answer as it arrives and counts what the server did not report, "
         "so a desktop app can show what a conversation cost even on a local model. ")


def gguf() -> Path:
    path = Path(os.environ.get("LLM_SIDECAR_TEST_GGUF") or CACHE / "SmolLM2-135M-Instruct.Q4_1.gguf")
    if not path.is_file():
        sys.exit(f"no model at {path}: run scripts/test-model.sh")
    return path


def calibration(model: Path) -> None:
    from llama_cpp import Llama

    llm = Llama(model_path=str(model), vocab_only=True, verbose=False)
    samples = {
        "English prose": PROSE * 40,
        "README.md (markdown)": (ROOT / "README.md").read_text(),
        "sidecar/**/*.py (code)": "".join(Path(f).read_text() for f in sorted(
            glob.glob(str(ROOT / "sidecar/**/*.py"), recursive=True))),
        "schema/openrpc.json (JSON)": (ROOT / "schema/openrpc.json").read_text(),
        "German prose": "Der schnelle braune Fuchs springt über den faulen Hund. Größere Änderungen prüfen wir später. "
                        * 20,
        "Chinese prose": "敏捷的棕色狐狸跳过了懒狗。我们明天再讨论这个问题。" * 20,
    }
    print(f"{'text':28s} {'chars':>8s} {'tokens':>8s} {'chars/token':>11s} {'estimate':>9s} {'est/real':>8s}")
    for name, text in samples.items():
        real = len(llm.tokenize(text.encode(), add_bos=False, special=False))
        est = estimate(text)
        print(f"{name:28s} {len(text):8d} {real:8d} {len(text) / real:11.2f} {est:9d} {est / real:8.2f}")


async def delays(model: Path, reps: int) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryFile() as log:
        command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
                   "--port", str(port), "--n_ctx", "512"]
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            await time_counts(port, reps)
        finally:
            proc.terminate()
            proc.wait(10)


async def time_counts(port: int, reps: int) -> None:
    import httpx

    params = StreamTextParams(messages=[SystemMessage(content=PROSE * 4), UserMessage(content=PROSE)])
    tally = OutputTally()
    for word in (PROSE * 2).split(" "):
        tally.add(TextDeltaEvent(text=word + " "))
    local = Provider(id="llcp", name="llcp", protocol="openai", base_url=f"http://127.0.0.1:{port}/v1", is_local=True)
    hosted = Provider(id="far", name="far", protocol="openai", base_url="https://example.invalid/v1")
    async with httpx.AsyncClient() as http:
        while True:
            try:
                if (await http.get(f"http://127.0.0.1:{port}/v1/models")).status_code == 200:
                    break
            except httpx.HTTPError:
                await asyncio.sleep(0.2)
        for label, provider in (("server tokenizer (llama-cpp-python)", local), ("estimate (no tokenizer)", hosted)):
            counter = TokenCounter()
            usage = await counter.usage(http, provider, params, tally, {})  # finds the tokenizer (once per server)
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                usage = await counter.usage(http, provider, params, tally, {})
                times.append((time.perf_counter() - t0) * 1000)
            times.sort()
            p90 = times[int(len(times) * 0.9)]
            print(f"{label:38s} median {statistics.median(times):7.3f} ms  p90 {p90:7.3f} ms"
                  f"  ({usage.input_tokens} in, {usage.output_tokens} out)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=15)
    args = parser.parse_args()
    model = gguf()
    print("== the character estimate against SmolLM2's tokenizer (49k-token BPE)")
    calibration(model)
    print(f"\n== time a count adds before done ({args.reps} counts; prompt {len(PROSE) * 5} chars, answer "
          f"{len(PROSE) * 2} chars)")
    asyncio.run(delays(model, args.reps))


if __name__ == "__main__":
    main()
