"""The Gemini API's own protocol: ``POST {base}/models/{model}:streamGenerateContent?alt=sse``.

The key goes in the ``x-goog-api-key`` header, never in the URL (a URL ends up in logs and error texts).

Decisions worth knowing:

- **Thought signatures.** Gemini 2.5+ puts an opaque ``thoughtSignature`` on a response part (a text
  part, a functionCall part, or an empty text part at the end) and wants it back on the next turn;
  Gemini 3 answers 400 when the first functionCall of a replayed step has none. The contract has no
  signature on text or tool_call parts, so a signature travels as reasoning: the decoder emits
  ``reasoning_end`` with the signature right before the events of the part that carried it (it
  closes the open thought-summary run, or stands alone without any ``reasoning_delta``). A client that
  keeps reasoning parts in its history (``complete_chat`` returns them) gives it back, and the
  encoder puts each reasoning signature on a part again: the last one before an assistant message's
  first tool call goes on that call, the others on the nearest text. For ``gemini-3`` models an
  unsigned first call gets Google's documented ``skip_thought_signature_validator`` instead, so a
  history from another provider still goes through. Signatures of parts the contract cannot hold
  (executableCode, built-in toolCall/toolResponse, inline data) are dropped with those parts.
- **Usage.** ``input_tokens`` = promptTokenCount + toolUsePromptTokenCount and ``output_tokens`` =
  candidatesTokenCount + thoughtsTokenCount, so input + output = totalTokenCount and output is what
  is billed as output (thoughts are, as with OpenAI's reasoning tokens); ``reasoning_tokens`` =
  thoughtsTokenCount (a part of output), ``cached_input_tokens`` = cachedContentTokenCount.
- **Streamed function-call arguments** (``partialArgs``: a JSON path and a value per fragment) are
  assembled into the arguments object, and its JSON text goes out as ``tool_call_delta`` fragments
  as it grows. Should a fragment go back to a part of the object already written out (Gemini has
  not been seen doing so), the deltas stop there; the ``tool_call`` event is always complete.
- Built-in tool parts (executableCode, codeExecutionResult, toolCall, toolResponse) and
  groundingMetadata produce no events; the model's text around them does.
- ``reasoning.effort`` low/medium/high is a thinking budget of 1024/8192/24576 tokens (Google's own
  mapping for its OpenAI-compatible endpoint), ``budget_tokens`` is sent as it is; thoughts are
  always requested when ``reasoning`` is given.
- Tool schemas and ``response_format`` schemas are cut down to the OpenAPI subset Gemini accepts;
  ``response_format`` is ``responseMimeType: application/json`` plus ``responseSchema``.
- ``parallel_tool_calls`` has no Gemini counterpart (functionCallingConfig has no such switch): it is not
  sent, and a ``warning`` event says so.
- Images: base64 ``data`` (or a ``data:`` URL) is ``inlineData``; any other URL is ``fileData.fileUri``,
  which the API fetches itself (Files API URIs, and public or signed HTTPS URLs).
- ``provider.extra_body`` and then ``provider_options`` are merged into the body, objects key by
  key (``{"generationConfig": {"topK": 3}}`` adds to the generationConfig, it does not replace it;
  ``toolkit.merge``).

The package: ``encode`` (the request body, the model-list request), ``decode`` (the stream decoder, the
model list), ``args`` (streamed function-call arguments), ``errors`` (Google's error bodies).
"""

from __future__ import annotations

from ..base import WireProtocol
from .args import ArgsBuilder, parse_json_path
from .decode import Decoder, parse_embeddings, parse_models
from .encode import (
    EMBED_BATCH,
    SKIP_SIGNATURE,
    embed_request,
    encode_body,
    encode_request,
    gemini_schema,
    models_request,
)
from .errors import google_error, map_http_error

PROTOCOL = WireProtocol(
    name="gemini",
    framing="sse",
    encode_request=encode_request,
    new_decoder=Decoder,
    map_http_error=map_http_error,
    models_request=models_request,
    parse_models=parse_models,
    embed_request=embed_request,
    parse_embeddings=parse_embeddings,
    embed_batch=EMBED_BATCH,
)

__all__ = [
    "PROTOCOL",
    "SKIP_SIGNATURE",
    "ArgsBuilder",
    "Decoder",
    "embed_request",
    "encode_body",
    "encode_request",
    "gemini_schema",
    "google_error",
    "map_http_error",
    "models_request",
    "parse_embeddings",
    "parse_json_path",
    "parse_models",
]
