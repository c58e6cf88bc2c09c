"""JSON-RPC 2.0 over stdio: framing, dispatch and lifecycle. Knows nothing of LLMs."""

from .methods import Declaration, MethodRegistry
from .server import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    MethodSpec,
    RequestContext,
    RpcError,
    RpcServer,
)
from .stdio import MAX_LINE, protect_stdout

__all__ = [
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "MAX_LINE",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "Declaration",
    "MethodRegistry",
    "MethodSpec",
    "RequestContext",
    "RpcError",
    "RpcServer",
    "protect_stdout",
]
