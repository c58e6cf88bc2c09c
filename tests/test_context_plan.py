"""The trim and compaction plans (sidecar.context.plan) over random conversations: whatever is dropped, what is
left keeps the system messages, the last user message, the pinned tail and whole tool pairs, starts with a user
turn, and fits when the plan says it does."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.context import plan
from sidecar.types import AssistantMessage, Message, SystemMessage, TextPart, ToolCallPart, ToolMessage, UserMessage


@st.composite
def conversations(draw: st.DrawFn) -> list[Message]:
    msgs: list[Message] = [SystemMessage(content="system")] if draw(st.booleans()) else []
    n = 0
    for _ in range(draw(st.integers(1, 30))):
        msgs.append(UserMessage(content=f"user {n}"))
        for _ in range(draw(st.integers(0, 3))):  # assistant turns with tool calls, each answered
            calls = [f"c{n}_{k}" for k in range(draw(st.integers(1, 3)))]
            msgs.append(AssistantMessage(content=[TextPart(text="calling"), *(
                ToolCallPart(id=c, name="f", arguments={}) for c in calls)]))
            msgs += [ToolMessage(tool_call_id=c, content="result") for c in calls]
            n += 1
        if draw(st.booleans()):
            msgs.append(AssistantMessage(content=f"answer {n}"))
        if draw(st.integers(0, 9)) == 0:
            msgs.append(SystemMessage(content="a system message in the middle"))
        n += 1
    return msgs


def check_pairs(kept: list[Message]) -> None:
    """Every tool result follows its call's assistant message, and every call has its result."""
    open_calls: set[str] = set()
    for m in kept:
        if isinstance(m, AssistantMessage):
            assert not open_calls, "a call lost its result"
            open_calls = {p.id for p in m.content if isinstance(p, ToolCallPart)} if not isinstance(
                m.content, str) else set()
        elif isinstance(m, ToolMessage):
            assert m.tool_call_id in open_calls, "a result without its call"
            open_calls.discard(m.tool_call_id)
    assert not open_calls


@settings(max_examples=300, deadline=None)
@given(conversations(), st.integers(0, 400), st.integers(0, 12))
def test_trim_keeps_the_invariants(msgs: list[Message], budget: int, keep_last: int) -> None:
    sizes = [1 + (i * 7) % 13 for i in range(len(msgs))]
    kept_idx = plan.trim(msgs, sizes, budget, keep_last)
    user = max(i for i, m in enumerate(msgs) if isinstance(m, UserMessage))
    tail = plan.kept_tail(msgs, keep_last)
    if kept_idx is None:  # only when what must stay is over the budget
        must = {i for i, m in enumerate(msgs) if isinstance(m, SystemMessage)} | {user} | set(range(tail, len(msgs)))
        assert sum(sizes[i] for i in must) > budget
        return
    assert sum(sizes[i] for i in kept_idx) <= budget or kept_idx == list(range(len(msgs)))
    kept = [msgs[i] for i in kept_idx]
    assert all(i in kept_idx for i, m in enumerate(msgs) if isinstance(m, SystemMessage)), "a system message went"
    assert user in kept_idx and all(i in kept_idx for i in range(tail, len(msgs)))
    check_pairs(kept)
    first = next(m for m in kept if not isinstance(m, SystemMessage))
    assert isinstance(first, UserMessage), "what is left starts with a user turn"


@settings(max_examples=300, deadline=None)
@given(conversations(), st.integers(0, 300), st.integers(0, 12))
def test_compaction_replaces_whole_turns_before_the_last_user_message(
        msgs: list[Message], target: int, keep_last: int) -> None:
    sizes = [1 + (i * 5) % 11 for i in range(len(msgs))]
    removed = plan.compaction(msgs, sizes, target, keep_last)
    out = plan.apply_compaction(msgs, removed, "short") if removed else msgs
    start = plan.lead(msgs)
    if removed:
        gone = msgs[start:start + removed]
        assert not any(plan.pinned_system(m) for m in gone)
        assert msgs.index(gone[-1]) < max(i for i, m in enumerate(msgs) if isinstance(m, UserMessage))
        assert plan.is_summary(out[start]) and out[start].content.endswith("short")
        rest = out[start + 1:]
        assert isinstance(rest[0], UserMessage | SystemMessage), "the rest starts with a user turn"
    check_pairs(out)


def test_compaction_of_a_compacted_conversation_summarises_the_summary_too() -> None:
    msgs: list[Message] = [SystemMessage(content="sys"), plan.summary_message("old"), UserMessage(content="u1"),
                           AssistantMessage(content="a1"), UserMessage(content="u2")]
    removed = plan.compaction(msgs, [1, 50, 50, 50, 1], 10)
    assert removed == 3  # the old summary, u1 and a1
    assert plan.apply_compaction(msgs, removed, "new") == [msgs[0], plan.summary_message("new"), msgs[-1]]
