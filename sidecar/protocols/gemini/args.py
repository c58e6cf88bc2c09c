"""Gemini's streamed function-call arguments (``partialArgs``): the arguments object, and its JSON text
as it grows."""

from __future__ import annotations

import itertools
import re
from typing import Any

import msgspec


class PartialArg(msgspec.Struct, rename="camel"):
    """One fragment: a JSON path and the value there."""

    json_path: str = ""
    string_value: str | None = None
    number_value: int | float | None = None
    bool_value: bool | None = None
    null_value: Any = msgspec.UNSET
    will_continue: bool = False


_encode = msgspec.json.encode

JsonPath = tuple[str | int, ...]
_SEGMENT = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]")


def parse_json_path(path: str) -> JsonPath | None:
    """``$.a.b[0]['c d']`` -> ("a", "b", 0, "c d"); None for what is not such a path."""
    if not path.startswith("$"):
        return None
    out: list[str | int] = []
    pos = 1
    while pos < len(path):
        m = _SEGMENT.match(path, pos)
        if m is None:
            return None
        name, index, single, double = m.groups()
        out.append(int(index) if index is not None else next(s for s in (name, single, double) if s is not None))
        pos = m.end()
    return tuple(out)


def _get(root: Any, path: JsonPath) -> Any:
    node = root
    for seg in path:
        found = (isinstance(node, dict) and isinstance(seg, str) and seg in node) or (
            isinstance(node, list) and isinstance(seg, int) and seg < len(node)
        )
        if not found:
            return None
        node = node[seg]
    return node


def _put(node: Any, seg: str | int, value: Any) -> bool:
    if isinstance(node, dict) and isinstance(seg, str):
        node[seg] = value
    elif isinstance(node, list) and isinstance(seg, int):
        node.extend([None] * (seg + 1 - len(node)))
        node[seg] = value
    else:
        return False
    return True


def _set(root: dict[str, Any], path: JsonPath, value: Any) -> bool:
    """Set ``value`` at ``path``, making the objects and arrays on the way; False where the shapes clash."""
    node: Any = root
    for seg, nxt in itertools.pairwise(path):
        child = _get(node, (seg,))
        if not isinstance(child, dict | list):
            child = [] if isinstance(nxt, int) else {}
            if not _put(node, seg, child):
                return False
        node = child
    return _put(node, path[-1], value)


class _Open:
    __slots__ = ("is_array", "items", "path")

    def __init__(self, path: JsonPath, is_array: bool) -> None:
        self.path = path
        self.is_array = is_array
        self.items = 0


class ArgsBuilder:
    """Gemini's ``partialArgs`` into the arguments object, and that object's JSON text as it grows.

    The text is written depth first as the paths come (objects and arrays opened and closed on the way,
    a string left open while ``willContinue``), so the fragments concatenate to the object's JSON.
    """

    def __init__(self) -> None:
        self.args: dict[str, Any] = {}
        self.in_order = True
        """False once a path went back to JSON already written: no more fragments from then on"""
        self._stack: list[_Open] = []
        self._string: JsonPath | None = None
        """the string whose closing quote is still to come in the text"""
        self._growing: JsonPath | None = None
        """the string value the next stringValue on the same path adds to (``willContinue``)"""
        self._written: set[JsonPath] = set()
        """closed containers and finished values: the text cannot go back to them"""

    def add(self, arg: PartialArg) -> str:
        """Take one fragment; return the JSON text it adds (empty when there is none)."""
        path = parse_json_path(arg.json_path)
        if not path:
            return ""
        if arg.string_value is not None:
            value: Any = arg.string_value
        elif arg.number_value is not None:
            value = arg.number_value
        elif arg.bool_value is not None:
            value = arg.bool_value
        elif arg.null_value is not msgspec.UNSET:
            value = None
        else:
            return ""
        growing = isinstance(value, str) and path == self._growing
        self._growing = path if isinstance(value, str) and arg.will_continue else None
        if growing:  # the next piece of a string value
            current = _get(self.args, path)
            _set(self.args, path, (current if isinstance(current, str) else "") + value)
            if not self.in_order or path != self._string:
                return ""
            text = _encode(value).decode()[1:-1]
            if not arg.will_continue:
                text += '"'
                self._string = None
                self._written.add(path)
            return text
        if not _set(self.args, path, value):
            return ""  # a fragment that contradicts the shape so far: nothing sensible to do with it
        if not self.in_order:
            return ""
        if not self._fits(path):
            self.in_order = False
            return ""
        text = self._close_string() + self._navigate(path)
        parent = self._stack[-1]
        text += "," if parent.items else ""
        parent.items += 1
        text += "" if parent.is_array else _encode(path[-1]).decode() + ":"
        encoded = _encode(value).decode()
        if isinstance(value, str) and arg.will_continue:
            self._string = path
            return text + encoded[:-1]
        self._written.add(path)
        return text + encoded

    def finish(self) -> str:
        """The text that closes the object (all of it, ``{}``, when no fragment came)."""
        if not self.in_order:
            return ""
        if not self._stack:
            return "{}"
        text = self._close_string()
        while self._stack:
            text += "]" if self._stack.pop().is_array else "}"
        return text

    def _fits(self, path: JsonPath) -> bool:
        """Whether ``path`` can be written next: nothing on it written (or open) already, array items in order."""
        keep = self._common(path[:-1])
        open_paths = {o.path for o in self._stack}
        for depth in range(keep, len(path)):
            prefix = path[: depth + 1]
            if prefix in self._written or prefix == self._string or (prefix in open_paths and prefix == path):
                return False
            seg = path[depth]
            if isinstance(seg, int):
                items = self._stack[depth].items if depth == keep and depth < len(self._stack) else 0
                if seg != items:
                    return False
        return True

    def _common(self, container: JsonPath) -> int:
        """How many of ``container``'s levels are open already (the root not counted)."""
        common = 0
        for opened, seg in zip(self._stack[1:], container, strict=False):
            if opened.path[-1] != seg:
                break
            common += 1
        return common

    def _close_string(self) -> str:
        if self._string is None:
            return ""
        self._written.add(self._string)
        self._string = None
        return '"'

    def _navigate(self, path: JsonPath) -> str:
        """Close what is open below the common part, then open the containers down to ``path``'s parent."""
        text = ""
        if not self._stack:
            self._stack.append(_Open((), False))
            text = "{"
        keep = self._common(path[:-1]) + 1
        while len(self._stack) > keep:
            closed = self._stack.pop()
            self._written.add(closed.path)
            text += "]" if closed.is_array else "}"
        for depth in range(len(self._stack) - 1, len(path) - 1):
            parent = self._stack[-1]
            text += "," if parent.items else ""
            parent.items += 1
            seg = path[depth]
            text += "" if parent.is_array else _encode(seg).decode() + ":"
            is_array = isinstance(path[depth + 1], int)
            text += "[" if is_array else "{"
            self._stack.append(_Open(path[: depth + 1], is_array))
        return text
