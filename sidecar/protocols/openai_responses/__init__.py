"""OpenAI's Responses API (``POST {base_url}/responses``, streamed as SSE with ``event:`` lines): the only API
of the ``-pro`` and codex models, and the one where a reasoning model's reasoning survives a tool loop.

Choices where the API allows several readings:

- Nothing is kept at OpenAI unless the app asks: ``store: false`` with ``include: ["reasoning.encrypted_content"]``
  (left out for a catalog model that does not reason, which the API refuses it for). ``provider_options.store:
  true`` stores the response instead (and asks for no encrypted reasoning).
- A reasoning item comes back as a ``reasoning_end`` whose ``signature`` is the finished item exactly as the
  stream had it (``{"id": "rs_...", "type": "reasoning", "encrypted_content": ..., "summary": [...]}``, from
  ``output_item.done``: the item ``output_item.added`` announced carries another ``encrypted_content``); a
  ``reasoning`` part with such a signature goes back as that item, byte for byte. Its summary text streams as
  ``reasoning_delta`` (``reasoning.summary: "auto"`` is asked for whenever the request gives ``reasoning``);
  reasoning parts from other providers, and redacted reasoning, are not sent.
- Tool turns are ``function_call`` items (``call_id`` is the contract's tool-call id) and ``function_call_output``
  items; with nothing stored, each output needs its call earlier in ``input``: a request without it is refused
  before the network (``invalid_request``). Tools go with ``strict: false`` (strict mode, the API's default,
  refuses schemas that leave properties optional); ``response_format`` is ``text.format``, also not strict.
- Finish reasons: ``response.completed`` is ``tool_calls`` when the model called a function, ``content_filter``
  when it refused (the refusal's text is relayed as text), else ``stop``; ``response.incomplete`` is ``length``
  for ``max_output_tokens``, ``content_filter`` for ``content_filter``, else ``other``. ``response.failed`` and
  ``error`` events (code and message inside an ``error`` object, or at the top) are errors classified by their
  code and words (``insufficient_quota`` is ``rate_limited``, not retryable).
- Server-side tools' items (web search, file search, code interpreter, MCP, image generation, custom tools) and
  event types added later are skipped: they give no events; the text around them is text as usual.
- ``stop`` and ``seed`` have no Responses counterpart, nor ``reasoning.budget_tokens``: not sent, and a ``warning``
  event says so.
- ``provider.extra_body`` and then ``provider_options`` are merged into the body (``toolkit.merge``), except the
  routing field ``api`` (``providers.routing``), which is never sent.
"""

from __future__ import annotations

from ..base import WireProtocol
from ..openai import map_http_error, models_request, parse_models
from .decode import Decoder
from .encode import NAME, encode_body, encode_input, encode_request, reasoning_item

PROTOCOL = WireProtocol(
    name=NAME,
    framing="sse",
    encode_request=encode_request,
    new_decoder=Decoder,
    map_http_error=map_http_error,
    models_request=models_request,
    parse_models=parse_models,
)

__all__ = ["PROTOCOL", "Decoder", "encode_body", "encode_input", "encode_request", "reasoning_item"]
