"""Which messages a too-long conversation can lose: pure functions over the message list and each message's
token count, no I/O.

The invariants both strategies keep: every system message (the system prompt) stays, but for an earlier
summary, which is compacted again; the last user message stays, and so does everything after it that the
caller pins (``keep_last``, and at least the last assistant turn with its tool results); an assistant message
and the tool results that answer its calls go or stay together; and what is left starts with a user message
after the system messages, as Anthropic and Gemini require.

Dropping goes oldest first, whole turns (a user message and all up to the next one) before the last user
message; when those are gone, the assistant turns after the last user message (a long tool loop), oldest first.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..types import AssistantMessage, Message, SystemMessage, ToolMessage, UserMessage

SUMMARY_PREFIX = "Summary of the earlier conversation:\n\n"
"""how a compacted conversation's summary message begins (a system message in place of the messages it replaced)"""


def is_summary(msg: Message) -> bool:
    return isinstance(msg, SystemMessage) and msg.content.startswith(SUMMARY_PREFIX)


def pinned_system(msg: Message) -> bool:
    """A system message that is part of the system prompt (not an earlier summary)."""
    return isinstance(msg, SystemMessage) and not is_summary(msg)


def lead(messages: Sequence[Message]) -> int:
    """Where compaction starts: after the system messages the conversation opens with."""
    i = 0
    while i < len(messages) and pinned_system(messages[i]):
        i += 1
    return i


def units(messages: Sequence[Message]) -> list[tuple[int, int]]:
    """The messages as ``(start, end)`` units that go or stay whole: an assistant message with the tool
    messages after it, or any other single message (a tool message with no call before it joins the unit
    before it, so it is never left alone)."""
    out: list[tuple[int, int]] = []
    for i, msg in enumerate(messages):
        if isinstance(msg, ToolMessage) and out:
            out[-1] = (out[-1][0], i + 1)
        else:
            out.append((i, i + 1))
    return out


def kept_tail(messages: Sequence[Message], keep_last: int) -> int:
    """The index from which the trailing messages are kept: the last unit at least; with ``keep_last``, from the
    turn (the user message) that holds the ``keep_last``-th message from the end."""
    if not messages:
        return 0
    start = units(messages)[-1][0]
    want = len(messages) - keep_last
    if want < start:
        start = 0
        for i in range(max(want, 0), -1, -1):
            if isinstance(messages[i], UserMessage):
                start = i
                break
    return start


def last_user(messages: Sequence[Message]) -> int:
    """The index of the last user message (-1: none)."""
    for i in range(len(messages) - 1, -1, -1):
        if isinstance(messages[i], UserMessage):
            return i
    return -1


def turns_before(messages: Sequence[Message], stop: int) -> list[list[int]]:
    """The droppable messages before index ``stop`` grouped in turns (each from a user message up to the next,
    the first from the start), system messages of the prompt left out."""
    out: list[list[int]] = []
    for i in range(stop):
        msg = messages[i]
        if pinned_system(msg):
            continue
        if isinstance(msg, UserMessage) or not out:
            out.append([i])
        else:
            out[-1].append(i)
    return out


def trim(messages: Sequence[Message], sizes: Sequence[int], budget: int, keep_last: int = 0) -> list[int] | None:
    """The indexes of the messages to keep so that their ``sizes`` add up to at most ``budget``; None when even
    what must stay does not fit. Keeps everything when it already fits."""
    total = sum(sizes)
    if total <= budget:
        return list(range(len(messages)))
    tail = kept_tail(messages, keep_last)
    user = last_user(messages)
    stop = min(tail, user) if user >= 0 else tail
    dropped: set[int] = set()
    for turn in turns_before(messages, stop):
        if total <= budget:
            break
        dropped.update(turn)
        total -= sum(sizes[i] for i in turn)
    if total > budget and 0 <= user < tail:  # inside the last turn: its older assistant turns, whole units
        for s, e in units(messages):
            if total <= budget:
                break
            if s > user and e <= tail:
                dropped.update(range(s, e))
                total -= sum(sizes[s:e])
    if total > budget:
        return None
    return [i for i in range(len(messages)) if i not in dropped]


def compaction(messages: Sequence[Message], sizes: Sequence[int], target: int, keep_last: int = 0) -> int:
    """How many messages after the leading system messages (``lead``) to replace with a summary so that the
    rest adds up to at most ``target``: whole turns, oldest first, never past the last user message, the kept
    tail, or a system message of the prompt; 0 when there is nothing to replace."""
    start = lead(messages)
    tail = kept_tail(messages, keep_last)
    user = last_user(messages)
    stop = min(tail, user) if user >= 0 else tail
    total = sum(sizes)
    end = start
    i = start
    while i < stop and total > target:
        if pinned_system(messages[i]):
            break
        j = i + 1  # the turn: up to the next user message (or a system message of the prompt)
        while j < stop and not isinstance(messages[j], UserMessage) and not pinned_system(messages[j]):
            j += 1
        total -= sum(sizes[i:j])
        end = i = j
    return end - start


def summary_message(summary: str) -> SystemMessage:
    return SystemMessage(content=SUMMARY_PREFIX + summary)


def apply_compaction(messages: Sequence[Message], removed: int, summary: str) -> list[Message]:
    """The ``removed`` messages after the leading system messages replaced by the summary message: the change
    a ``compacted`` event describes."""
    start = lead(messages)
    return [*messages[:start], summary_message(summary), *messages[start + removed:]]


def transcript(messages: Sequence[Message], texts: Sequence[str]) -> str:
    """Messages as plain text for the summary model: one block per message, named by its role."""
    lines = []
    for msg, text in zip(messages, texts, strict=True):
        if is_summary(msg):
            lines.append(f"[earlier summary]\n{text.removeprefix(SUMMARY_PREFIX)}")
        elif isinstance(msg, ToolMessage):
            lines.append(f"[tool result {msg.tool_call_id}]\n{text}")
        elif isinstance(msg, AssistantMessage):
            lines.append(f"[assistant]\n{text}")
        else:
            lines.append(f"[{'system' if isinstance(msg, SystemMessage) else 'user'}]\n{text}")
    return "\n\n".join(lines)
