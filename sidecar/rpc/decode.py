"""One input line to a JSON value, with limits that hold whatever the line holds.

msgspec is the only parser: it refuses ``NaN``/``Infinity`` and lone UTF-16 surrogate escapes,
and stops at the interpreter's recursion limit without harm. Lone surrogates are valid JSON
that JavaScript's ``JSON.stringify`` writes for a string cut inside an emoji, so they are
replaced by U+FFFD in the bytes and the line is parsed again. Nothing here recurses in Python,
so no line can raise past the caller.
"""

from __future__ import annotations

import re
from typing import Any, Final

import msgspec

MAX_DEPTH: Final = 128
"""The deepest a request object may nest (serde_json's default limit too). Deeper ones are refused
before any method sees them, so no recursive code further on can hit the interpreter's limit."""

_decoder = msgspec.json.Decoder()

# An escape in a JSON string: a valid surrogate pair, a lone surrogate, or any other escape (so that
# ``\\ud800``, an escaped backslash followed by text, is skipped as a whole).
_ESCAPE = re.compile(
    rb"\\(?:u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|u[dD][89a-fA-F][0-9a-fA-F]{2}|[\s\S])"
)


class LineError(ValueError):
    """The line is not JSON this server accepts; the message follows ``Parse error: ``."""


def decode_line(line: bytes) -> Any:
    """The JSON value of ``line``; raises :class:`LineError`, never anything else."""
    try:
        return _decode(line)
    except LineError:
        if b"\\u" not in line:
            raise
        fixed = _ESCAPE.sub(_replace_lone_surrogate, line)
        if fixed == line:
            raise
        return _decode(fixed)


def _decode(line: bytes) -> Any:
    try:
        return _decoder.decode(line)
    except RecursionError:
        raise LineError(f"nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # DecodeError, and UnicodeDecodeError inside strings
        raise LineError(str(exc)) from None


def _replace_lone_surrogate(match: re.Match[bytes]) -> bytes:
    escape = match.group()
    return b"\\ufffd" if len(escape) == 6 else escape


def may_nest_deeper(line: bytes, limit: int = MAX_DEPTH) -> bool:
    """False when ``line`` cannot hold more than ``limit`` levels: a cheap test before :func:`too_deep`."""
    return line.count(b"[") + line.count(b"{") > limit


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``value`` nests more than ``limit`` arrays/objects deep (a bare scalar is depth 0)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, dict | list):
            continue
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False
