"""What fitting a long conversation costs before it is sent (sidecar/engine/context.py): the estimate of every
message and the trim or compaction plan, for conversations of 200 and 2,000 turns with tool pairs. Run in this
process (the pure part; the network and the summary call are not in it).

    .venv/bin/python bench/context_fit.py [--write]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from sidecar.context import plan  # noqa: E402
from sidecar.tokens import calibration, message_tokens  # noqa: E402
from sidecar.types import AssistantMessage, Message, SystemMessage, TextPart, ToolCallPart, ToolMessage, UserMessage  # noqa: E402

FILLER = "alpha beta gamma delta epsilon zeta eta theta iota kappa " * 3


def conversation(turns: int) -> list[Message]:
    msgs: list[Message] = [SystemMessage(content="You are a careful assistant.")]
    for i in range(turns):
        msgs.append(UserMessage(content=f"question {i} {FILLER}"))
        if i % 10 == 5:
            msgs.append(AssistantMessage(content=[TextPart(text="looking"), ToolCallPart(
                id=f"c{i}", name="lookup", arguments={"q": f"topic {i}"})]))
            msgs.append(ToolMessage(tool_call_id=f"c{i}", content=f"result {i} {FILLER}"))
        msgs.append(AssistantMessage(content=f"answer {i} {FILLER}"))
    msgs.append(UserMessage(content="and now?"))
    return msgs


def timed(fn: object, reps: int) -> float:
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--reps", type=int, default=20)
    args = parser.parse_args()
    cal = calibration("openai")
    rows = ["| turns | messages | estimate every message, ms | trim plan, ms | compaction plan, ms |",
            "|---|---|---|---|---|"]
    for turns in (200, 2000):
        msgs = conversation(turns)
        sizes = [message_tokens(m, cal) for m in msgs]
        budget = sum(sizes) // 3
        est = timed(lambda msgs=msgs: [message_tokens(m, cal) for m in msgs], args.reps)
        trim = timed(lambda msgs=msgs, sizes=sizes, budget=budget: plan.trim(msgs, sizes, budget), args.reps)
        compact = timed(lambda msgs=msgs, sizes=sizes, budget=budget: plan.compaction(msgs, sizes, budget),
                        args.reps)
        rows.append(f"| {turns} | {len(msgs)} | {est:.2f} | {trim:.2f} | {compact:.2f} |")
    section = "\n".join(rows)
    print(section)
    if args.write:
        from readme import write_section

        write_section("context-fit", section, "## Fitting a long conversation\n\nWhat the `context` option costs "
                      "before a request goes out when it must trim or compact: the estimate of every message and "
                      "the plan, medians of 20 runs in one process (`bench/context_fit.py --write`), to a third of "
                      "the conversation's size. The summary call of `compact` is a model request of its own and "
                      "not in these figures.")


if __name__ == "__main__":
    main()
