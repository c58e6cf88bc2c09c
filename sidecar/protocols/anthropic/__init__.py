"""The Anthropic Messages API (``POST {base_url}/v1/messages``, streamed as SSE with ``event:`` lines).

Choices where the API allows several readings:

- Usage: Anthropic's ``input_tokens`` leaves out the tokens read from or written to the prompt cache;
  the contract's ``input_tokens`` is every input token (as OpenAI's ``prompt_tokens`` is), so it is the
  sum ``input_tokens + cache_read_input_tokens + cache_creation_input_tokens``, with the two cache
  counts also reported on their own (``cached_input_tokens``, ``cache_creation_tokens``). A count in
  ``message_delta`` replaces the one from ``message_start`` (they are cumulative there), as the
  official SDK does.
- Server-side blocks (``server_tool_use``, ``web_search_tool_result``, ``web_fetch_tool_result``,
  ``mcp_tool_use``, ``mcp_tool_result``, code-execution results, ``compaction``, and any block type
  added later) are skipped: Anthropic has already run those tools, the client could not, so they give
  no ``tool_call`` events. The text blocks around them (citations included) are text as usual.
- ``pause_turn`` and unknown stop reasons finish as ``other``; ``model_context_window_exceeded``
  is a length limit (``length``).
- Reasoning parts without a signature are not sent back: Anthropic refuses a thinking block whose
  signature it cannot verify (such parts come from another provider's model).
- ``response_format`` (``json_object`` / ``json_schema``): the Messages API has no JSON mode, so the
  answer is asked for as a tool call, Anthropic's documented way to get JSON: one extra tool, ``json_response``,
  whose ``input_schema`` is the schema (``{"type": "object"}`` for json_object; a schema must describe an
  object, as a tool input always is one), chosen with ``tool_choice``. Without other tools it is forced
  (``{"type": "tool"}``); next to the caller's tools the choice is ``any``, so the model either calls one of
  them or answers through ``json_response``; with thinking on it is ``auto`` (Anthropic refuses a forced
  choice then). The decoder (made for the request, ``request_decoder``) turns that call back into text: its
  input's JSON goes out as ``text_delta`` events as it streams, no tool-call events, and a ``tool_use``
  stop with no other call finishes as ``stop``, so the frontend sees the JSON as the answer. Plain text the
  model writes around it (possible only under ``auto``) is held back: dropped once the JSON tool is called,
  relayed at the end otherwise (the engine then validates it like any answer).
- ``parallel_tool_calls: false`` is ``disable_parallel_tool_use`` on the tool choice (``auto`` when none given).
- ``seed`` has no Messages API counterpart: it is not sent, and a ``warning`` event says so.
- ``provider.extra_body`` and then ``provider_options`` are merged into the body (``toolkit.merge``), so they
  can add anything the API grows.

The package: ``encode`` (the request body, the model-list request), ``decode`` (the stream decoder, the
model list), ``errors`` (HTTP and stream errors).
"""

from __future__ import annotations

from ...types import StreamTextParams
from ..base import WireProtocol
from .decode import Decoder, parse_models
from .encode import JSON_TOOL, encode_body, encode_request, models_request, wants_json
from .errors import map_http_error


def request_decoder(provider: str, params: StreamTextParams) -> Decoder:
    """The decoder for one request: in JSON mode it relays the JSON tool's input as text."""
    return Decoder(provider, json_tool=JSON_TOOL if wants_json(params) else None)


PROTOCOL = WireProtocol(
    name="anthropic",
    framing="sse",
    encode_request=encode_request,
    new_decoder=Decoder,
    map_http_error=map_http_error,
    models_request=models_request,
    parse_models=parse_models,
    request_decoder=request_decoder,
)

__all__ = [
    "JSON_TOOL",
    "PROTOCOL",
    "Decoder",
    "encode_body",
    "encode_request",
    "map_http_error",
    "models_request",
    "parse_models",
    "request_decoder",
]
