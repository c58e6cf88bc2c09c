"""Each RPC method is declared once, by a decorator on its typed method: the dispatch table and the schema are
both read from that one registry, in process (no sidecar needed)."""

from __future__ import annotations

import inspect
import json
from typing import Any

import msgspec
import pytest
from harness import ROOT

from sidecar.api import Api, rpc_method
from sidecar.rpc import MethodRegistry, RequestContext
from sidecar.types import ActiveProvider, ProviderInfo, StreamStarted, StreamTextParams

SCHEMA = json.loads((ROOT / "schema" / "openrpc.json").read_text())


class Params(msgspec.Struct):
    x: int


class Result(msgspec.Struct):
    y: int


def test_the_signature_gives_the_types_and_the_decorator_the_summary() -> None:
    methods = MethodRegistry()

    class Service:
        @methods("Doubles x.")
        async def double(self, ctx: RequestContext, params: Params) -> Result:
            return Result(y=2 * params.x)

        @methods("Takes nothing.")
        async def nothing(self, ctx: RequestContext) -> list[Result] | None:
            return None

        async def helper(self, ctx: RequestContext) -> None:  # not declared: not an RPC method
            return None

    [double, nothing] = methods.declared
    assert (double.name, double.params, double.result, double.summary) == ("double", Params, Result, "Doubles x.")
    assert (nothing.name, nothing.params, nothing.result) == ("nothing", None, list[Result] | None)
    table = methods.bind(Service())
    assert list(table) == ["double", "nothing"]
    assert table["double"].params is Params and table["double"].summary == "Doubles x."
    assert table["double"].fn.__self__.__class__ is Service  # bound to the instance given


def test_a_name_declared_twice_is_refused() -> None:
    methods = MethodRegistry()

    async def same(self: Any, ctx: RequestContext) -> None: ...

    methods("first")(same)
    with pytest.raises(ValueError, match="declared twice"):
        methods("second")(same)


def test_a_method_without_its_types_is_refused() -> None:
    methods = MethodRegistry()

    async def untyped(self: Any, ctx: RequestContext, params):  # the params are not annotated
        return None

    with pytest.raises(TypeError, match="must annotate"):
        methods("x")(untyped)

    async def two(self: Any, ctx: RequestContext, a: Params, b: Params) -> None: ...

    with pytest.raises(TypeError, match="at most one params argument"):
        methods("x")(two)


def test_the_api_declares_every_method_of_the_schema_in_its_order() -> None:
    declared = {d.name: d for d in rpc_method.declared}
    assert [m["name"] for m in SCHEMA["methods"]] == list(declared)
    assert [m["summary"] for m in SCHEMA["methods"]] == [d.summary for d in declared.values()]
    assert list(declared)[:3] == ["llm_stream_text", "llm_abort_stream", "complete_chat"]
    stream = declared["llm_stream_text"]
    assert (stream.params, stream.result) == (StreamTextParams, StreamStarted)
    assert (declared["list_providers"].params, declared["list_providers"].result) == (None, list[ProviderInfo])
    assert declared["get_active_provider"].result == ActiveProvider | None


def test_every_rpc_shaped_method_of_the_api_is_declared() -> None:
    """A method that takes a RequestContext but is not declared would be unreachable: none is forgotten."""
    declared = {d.name for d in rpc_method.declared}
    rpc_shaped = {name for name, fn in inspect.getmembers(Api, inspect.iscoroutinefunction)
                  if list(inspect.signature(fn).parameters)[1:2] == ["ctx"]}
    assert rpc_shaped == declared
