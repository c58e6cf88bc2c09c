"""The token estimate against what providers reported for the recorded streams (bench/token_estimate.py measures
and reports it; this keeps it from drifting): the sidecar's estimate of each family's recorded answers is within
the error bench/README.md states."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import token_estimate  # noqa: E402


def test_the_estimate_is_within_its_stated_error_on_the_recordings() -> None:
    found = [s for s in token_estimate.samples() if not s.hidden]
    families = {s.family for s in found}
    assert {"openai", "anthropic"} <= families
    for family in families:
        group = [s for s in found if s.family == family]
        errors = [abs(token_estimate.rel(token_estimate.sidecar_estimate(s), s)) for s in group]
        assert statistics.median(errors) <= 0.3, (family, errors)
        assert max(errors) <= 0.6, (family, errors)


def test_tool_calls_cost_their_framing() -> None:
    """Without the per-call framing the estimate of the tool-call answers falls well short."""
    calls = [s for s in token_estimate.samples() if s.calls and not s.hidden]
    assert len(calls) >= 5
    short = [token_estimate.rel(token_estimate.estimate(s.text), s) for s in calls]
    ours = [token_estimate.rel(token_estimate.sidecar_estimate(s), s) for s in calls]
    assert statistics.median(short) < -0.25 and abs(statistics.median(ours)) < 0.2
