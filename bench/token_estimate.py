"""How good the token estimate is (sidecar/tokens.py, used by ``count_tokens`` and the ``context`` option when
the provider cannot count): characters a token per protocol family, measured on the recorded upstream streams
(tests/fixtures/upstream and the shared set) against the usage each provider reported.

Each stream is decoded by the sidecar's own decoder; its visible output (text, and each tool call's name and
JSON arguments) is set against the ``output_tokens`` the provider reported. Left out: streams with reasoning
(its tokens are counted but mostly not shown), streams that end in an error, and answers under 8 tokens (where
one token of framing is an eighth of the figure). Per family: characters a token over the text-only answers,
and the tokens a tool call costs beyond its text (median); then the error of the sidecar's estimate against the
reported count, per stream.

    .venv/bin/python bench/token_estimate.py [--write]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from sidecar.errors import SidecarError  # noqa: E402
from sidecar.protocols import get_protocol  # noqa: E402
from sidecar.tokens import calibration, estimate  # noqa: E402
from sidecar.types import ReasoningDeltaEvent, RedactedReasoningEvent, TextDeltaEvent, ToolCallEvent  # noqa: E402

SOURCES = (ROOT / "tests" / "fixtures" / "upstream", Path("/work/shared/fixtures/upstream"))
FAMILY = {"anthropic": "anthropic", "gemini": "gemini", "cohere": "cohere", "ollama": "ollama"}
"""fixture folder -> protocol; every other folder is an OpenAI-style chat stream"""
SKIP_FOLDERS = {"openai-responses", "gemini-interactions", "amazon-bedrock", "openai-completions"}
MIN_TOKENS = 8
HIDDEN = ("citations", "web-search", "web-fetch", "compaction")


@dataclass
class Sample:
    name: str
    family: str
    text: str
    tokens: int
    calls: int

    @property
    def hidden(self) -> bool:
        """Server-side search or citations: the provider counts text the stream does not show."""
        return any(w in self.name for w in HIDDEN)


def payloads(path: Path) -> list[tuple[str, str]]:
    text = path.read_text(encoding="utf-8")
    if path.name.endswith(".chunks.txt") or path.suffix == ".ndjson":
        return [("", line) for line in text.splitlines() if line.strip()]
    if path.suffix == ".json":
        return [("", json.dumps(json.loads(text)))]
    out = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        names = [ln[6:].strip() for ln in block.split("\n") if ln.startswith("event:")]
        data = [ln[5:].lstrip(" ") for ln in block.split("\n") if ln.startswith("data:")]
        if data and data != ["[DONE]"]:
            out.append((names[0] if names else "", "\n".join(data)))
    return out


def sample(path: Path, family: str) -> Sample | None:
    decoder = get_protocol(family).new_decoder("fixture")
    parts: list[str] = []
    calls = 0
    try:
        events = []
        for name, data in payloads(path):
            if family == "anthropic" and not name:
                name = json.loads(data).get("type", "")
            events += decoder.feed(name, data)
        events += decoder.end()
    except (SidecarError, ValueError):
        return None
    for e in events:
        if isinstance(e, ReasoningDeltaEvent | RedactedReasoningEvent):
            return None
        if isinstance(e, TextDeltaEvent):
            parts.append(e.text)
        elif isinstance(e, ToolCallEvent):
            parts.append(e.name + json.dumps(e.arguments))
            calls += 1
    usage = decoder.usage
    if usage is None or usage.output_tokens < MIN_TOKENS or (isinstance(usage.reasoning_tokens, int) and (
            usage.reasoning_tokens > 0)):
        return None
    text = "".join(parts)
    return Sample(f"{path.parent.name}/{path.name}", family, text, usage.output_tokens, calls) if text else None


def samples() -> list[Sample]:
    seen: set[str] = set()
    out = []
    for root in SOURCES:
        if not root.is_dir():
            continue
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name not in SKIP_FOLDERS):
            for path in sorted(folder.iterdir()):
                key = f"{folder.name}/{path.name}"
                if key in seen or "responses" in path.name:
                    continue
                seen.add(key)
                found = sample(path, FAMILY.get(folder.name, "openai"))
                if found is not None:
                    out.append(found)
    return out


def ascii_chars(text: str) -> int:
    return len(text.encode("ascii", "ignore"))


def sidecar_estimate(s: Sample) -> int:
    cal = calibration(s.family)
    return estimate(s.text, cal.chars_per_token) + s.calls * cal.tool_call


def rel(value: int, s: Sample) -> float:
    return (value - s.tokens) / s.tokens


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true", help="put the figures in bench/README.md")
    args = parser.parse_args()
    found = samples()
    rows = ["| family | streams | tokens | chars/token, text answers | tool call framing, tokens (median) "
            "| sidecar: chars/token, tool call | median abs. error, sidecar | worst | median abs. error, 4.0 and no "
            "framing |", "|---|---|---|---|---|---|---|---|---|"]
    for family in ("openai", "anthropic", "gemini", "cohere", "ollama"):
        group = [s for s in found if s.family == family and not s.hidden]
        cal = calibration(family)
        if not group:
            rows.append(f"| {family} | 0 | | | | {cal.chars_per_token}, {cal.tool_call} | | | |")
            continue
        text = [s for s in group if not s.calls]
        tools = [s for s in group if s.calls]
        cpt = (f"{sum(ascii_chars(s.text) for s in text) / sum(s.tokens for s in text):.2f} ({len(text)})"
               if text else "")
        framing = (f"{statistics.median((s.tokens - estimate(s.text)) / s.calls for s in tools):.0f} ({len(tools)})"
                   if tools else "")
        ours = [abs(rel(sidecar_estimate(s), s)) for s in group]
        plain = [abs(rel(estimate(s.text), s)) for s in group]
        rows.append(f"| {family} | {len(group)} | {sum(s.tokens for s in group)} | {cpt} | {framing} | "
                    f"{cal.chars_per_token}, {cal.tool_call} | {statistics.median(ours):.0%} | {max(ours):.0%} | "
                    f"{statistics.median(plain):.0%} |")
    detail = ["", "Per stream (streams marked * are left out above: server-side search or citations, whose tokens "
              "the stream does not show):", "",
              "| stream | tool calls | reported tokens | sidecar's estimate | error |", "|---|---|---|---|---|"]
    for s in found:
        mine = sidecar_estimate(s)
        detail.append(f"| {s.name}{' *' if s.hidden else ''} | {s.calls} | {s.tokens} | {mine} | {rel(mine, s):+.0%} |")
    section = "\n".join(rows + detail)
    print(section)
    if args.write:
        from readme import write_section

        write_section("token-estimate", section, "## The token estimate against the providers' counts\n\n"
                      "`count_tokens` (where the provider cannot count) and the `context` option fit by the "
                      "estimate of sidecar/tokens.py: characters a token, plus a tool call's framing, per protocol "
                      "family. Measured by `bench/token_estimate.py --write` on the recorded streams: each stream's "
                      "visible output (text, tool calls' names and JSON arguments) against the output tokens its "
                      "provider reported; streams with reasoning, errors, or under 8 tokens are left out. The "
                      "recordings are few (a handful per family), so the figures are in-sample. What they cannot "
                      "measure: input-side overhead (chat templates, tool schemas as the provider renders them), "
                      "which is why fitting adds a 15% margin and fits again after an upstream overflow.")


if __name__ == "__main__":
    main()
