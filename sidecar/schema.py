"""The OpenRPC document, generated from the msgspec types and the methods the Api declares.

Two adjustments make it a faithful source for TypeScript: the unions (Message,
ContentPart, StreamEvent) get named components, and in types that only ever flow out
of the sidecar every field msgspec always writes is marked required.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import msgspec

from . import PROTOCOL_VERSION, __version__
from .api import rpc_method
from .types import ContentPart, Message, OAuthFlowEvent, SidecarReady, StreamEvent

REF = "#/components/schemas/{name}"
UNIONS: dict[str, Any] = {"Message": Message, "ContentPart": ContentPart, "StreamEvent": StreamEvent,
                          "OAuthFlowEvent": OAuthFlowEvent}


def _walk_refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            found.add(ref.rsplit("/", 1)[-1])
        for v in node.values():
            found |= _walk_refs(v)
    elif isinstance(node, list):
        for v in node:
            found |= _walk_refs(v)
    return found


def _closure(names: set[str], components: dict[str, Any]) -> set[str]:
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen or name not in components:
            continue
        seen.add(name)
        todo.extend(_walk_refs(components[name]))
    return seen


def _name_unions(node: Any, unions: dict[str, Any]) -> Any:
    for name, schema in unions.items():
        if node == schema:
            return {"$ref": REF.format(name=name)}
    if isinstance(node, dict):
        return {k: _name_unions(v, unions) for k, v in node.items()}
    if isinstance(node, list):
        return [_name_unions(v, unions) for v in node]
    return node


def _always_written(cls: type) -> list[str]:
    """Fields msgspec writes on every encode: all but those left UNSET."""
    return [f.encode_name for f in msgspec.structs.fields(cls) if f.default is not msgspec.UNSET]


def build() -> dict[str, Any]:
    declared = rpc_method.declared
    types: list[Any] = [SidecarReady, *UNIONS.values()]
    for d in declared:
        if d.params is not None:
            types.append(d.params)
        types.append(d.result)
    schemas, components = msgspec.json.schema_components(types, ref_template=REF)
    by_type = dict(zip(map(id, types), schemas, strict=True))

    unions = {name: by_type[id(t)] for name, t in UNIONS.items()}
    components = {k: _name_unions(v, unions) for k, v in components.items()}
    components.update(unions)

    inputs = _closure({d.params.__name__ for d in declared if d.params is not None}, components)
    structs = {
        cls.__name__: cls
        for cls in _all_struct_types(types)
        if cls.__name__ in components and cls.__name__ not in inputs
    }
    for name, cls in structs.items():
        required = _always_written(cls)
        if required:
            components[name]["required"] = sorted(set(components[name].get("required", [])) | set(required))

    methods = []
    for d in declared:
        params = d.params
        method: dict[str, Any] = {"name": d.name, "summary": d.summary, "paramStructure": "by-name", "params": []}
        if params is not None:
            spec = components[params.__name__]
            method["x-params-type"] = params.__name__
            method["params"] = [
                {"name": field, "required": field in spec.get("required", []), "schema": schema}
                for field, schema in spec["properties"].items()
            ]
        method["result"] = {"name": "result", "schema": _name_unions(by_type[id(d.result)], unions)}
        methods.append(method)

    return {
        "openrpc": "1.3.2",
        "info": {
            "title": "llm-sidecar",
            "version": __version__,
            "description": "JSON-RPC 2.0 over stdio (NDJSON). Domain errors are code -32000 with "
            "data: ErrorInfo. Server-to-client notifications are listed under x-notifications.",
            "x-protocol-version": PROTOCOL_VERSION,
        },
        "methods": methods,
        "components": {"schemas": dict(sorted(components.items()))},
        "x-notifications": [
            {"name": "sidecar-ready", "summary": "Sent once, as soon as the sidecar can serve.",
             "params": {"$ref": REF.format(name="SidecarReady")}},
            {"name": "llm-stream-{stream_id}", "summary": "One event of a stream; exactly one done or error "
             "event ends it.", "params": {"$ref": REF.format(name="StreamEvent")}},
            {"name": "oauth-{flow_id}", "summary": "Progress of a sign-in (oauth_sign_in_start): pending while "
             "waiting, then exactly one signed_in or error.", "params": {"$ref": REF.format(name="OAuthFlowEvent")}},
            {"name": "mcp-status", "summary": "An MCP server's status changed (starting, ready, failed, stopped) "
             "or its tool list did.", "params": {"$ref": REF.format(name="McpServerInfo")}},
        ],
    }


def _all_struct_types(roots: list[Any]) -> set[type]:
    """Every Struct type reachable from ``roots`` (through unions, lists and fields)."""
    import typing

    seen: set[type] = set()

    def visit(t: Any) -> None:
        if isinstance(t, type) and issubclass(t, msgspec.Struct):
            if t in seen:
                return
            seen.add(t)
            for f in msgspec.structs.fields(t):
                visit(f.type)
        for arg in typing.get_args(t):
            visit(arg)

    for root in roots:
        visit(root)
    return seen


def render() -> bytes:
    return msgspec.json.format(msgspec.json.encode(build()), indent=2) + b"\n"


def write_schema(output: str, *, check: bool = False) -> int:
    data = render()
    if output == "-":
        sys.stdout.buffer.write(data)
        return 0
    path = Path(output)
    if check:
        if not path.exists() or path.read_bytes() != data:
            print(f"{path} is stale: run `python -m sidecar schema` and commit it", file=sys.stderr)
            return 1
        print(f"{path} is up to date", file=sys.stderr)
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    print(f"wrote {path}", file=sys.stderr)
    return 0
