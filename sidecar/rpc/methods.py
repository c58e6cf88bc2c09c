"""RPC methods declared once: a decorator on a typed method registers it.

The method's own signature says what it takes and returns (``async def name(self, ctx, params: P) -> R``;
no ``params`` argument: it takes none); the decorator adds the one-line summary. The server's dispatch
table (``bind``) and a schema generator (``declared``) are both read from the same registry, so they
cannot drift apart. Knows nothing of what the methods do.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from .server import MethodSpec

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Declaration:
    name: str
    """the RPC method name: the Python method's name"""
    params: type | None
    """the params Struct; None: the method takes none"""
    result: Any
    summary: str


class MethodRegistry:
    """The RPC methods of one class, in the order they are defined (the schema keeps it)."""

    def __init__(self) -> None:
        self._declared: dict[str, Declaration] = {}

    def __call__(self, summary: str) -> Callable[[F], F]:
        """``@methods("What it does.")`` on ``async def name(self, ctx, [params: P]) -> R``."""

        def register(fn: F) -> F:
            name = fn.__name__
            if name in self._declared:
                raise ValueError(f"RPC method {name!r} is declared twice")
            hints = typing.get_type_hints(fn)
            code = fn.__code__
            args = code.co_varnames[2 : code.co_argcount]  # the positional parameters after self and ctx
            if len(args) > 1:
                raise TypeError(f"RPC method {name!r} takes at most one params argument")
            if "return" not in hints or (args and args[0] not in hints):
                raise TypeError(f"RPC method {name!r} must annotate its params and its result")
            params = hints[args[0]] if args else None
            self._declared[name] = Declaration(name, params, hints["return"], summary)
            return fn

        return register

    @property
    def declared(self) -> tuple[Declaration, ...]:
        return tuple(self._declared.values())

    def bind(self, target: object) -> dict[str, MethodSpec]:
        """The dispatch table: each declared method bound to ``target``, an instance of the declaring class."""
        return {
            d.name: MethodSpec(getattr(target, d.name), d.params, d.result, d.summary) for d in self._declared.values()
        }
