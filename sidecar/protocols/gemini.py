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
- ``parallel_tool_calls`` has no Gemini counterpart (functionCallingConfig has no such switch) and is not sent.
- Images: base64 ``data`` (or a ``data:`` URL) is ``inlineData``; any other URL is ``fileData.fileUri``,
  which the API fetches itself (Files API URIs, and public or signed HTTPS URLs).
- ``provider.extra_body`` and then ``provider_options`` are merged into the body, objects key by
  key (``{"generationConfig": {"topK": 3}}`` adds to the generationConfig, it does not replace it).
"""

from __future__ import annotations

import itertools
import re
from typing import Any
from urllib.parse import quote

import msgspec

from ..errors import SidecarError
from ..providers import Model, Provider
from ..types import (
    AssistantMessage,
    ContentPart,
    ErrorCode,
    Event,
    FinishReason,
    ImagePart,
    ReasoningDeltaEvent,
    ReasoningEndEvent,
    ReasoningPart,
    StreamTextParams,
    SystemMessage,
    TextDeltaEvent,
    TextPart,
    ToolCallDeltaEvent,
    ToolCallEvent,
    ToolCallPart,
    ToolCallStartEvent,
    ToolChoiceName,
    ToolMessage,
    Usage,
    UserMessage,
)
from .base import HttpRequest, WireProtocol
from .http_errors import MAX_MESSAGE, classify, error_fields, upstream_error

THINKING_BUDGET = {"low": 1024, "medium": 8192, "high": 24576}
SKIP_SIGNATURE = "skip_thought_signature_validator"
"""Google's documented stand-in for a functionCall signature that was lost (Gemini 3 only)."""

# --- encode -----------------------------------------------------------------------------

_DATA_URL = re.compile(r"data:([^;,]+);base64,(.*)", re.DOTALL)


def _image(part: ImagePart) -> dict[str, Any]:
    if isinstance(part.data, str):
        return {"inlineData": {"mimeType": part.media_type, "data": part.data}}
    if isinstance(part.url, str):
        inline = _DATA_URL.fullmatch(part.url)
        if inline:
            return {"inlineData": {"mimeType": inline[1], "data": inline[2]}}
        return {"fileData": {"mimeType": part.media_type, "fileUri": part.url}}
    raise SidecarError("invalid_request", "an image part needs data or url")


def _user_parts(content: str | list[ContentPart]) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[dict[str, Any]] = []
    for p in content:
        if isinstance(p, TextPart):
            if p.text:
                parts.append({"text": p.text})
        elif isinstance(p, ImagePart):
            parts.append(_image(p))
        else:
            kind = p.__struct_config__.tag  # the tag field is not an attribute
            raise SidecarError("invalid_request", f"a user message cannot hold a {kind} part")
    return parts


def _model_parts(content: str | list[ContentPart], gemini3: bool) -> list[dict[str, Any]]:
    """An assistant message's parts; its reasoning signatures go back onto parts (module docstring)."""
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[dict[str, Any]] = []
    signatures: list[tuple[int, str]] = []
    """(how many parts came before it, signature)"""
    for p in content:
        if isinstance(p, TextPart):
            if p.text:
                parts.append({"text": p.text})
        elif isinstance(p, ToolCallPart):
            parts.append({"functionCall": {"id": p.id, "name": p.name, "args": p.arguments}})
        elif isinstance(p, ReasoningPart):
            if p.text:
                parts.append({"text": p.text, "thought": True})
            if isinstance(p.signature, str) and p.signature:
                signatures.append((len(parts), p.signature))
        elif isinstance(p, ImagePart):
            parts.append(_image(p))
        # redacted_reasoning is another provider's opaque data: nothing Gemini can read
    _place_signatures(parts, signatures, gemini3)
    return parts


def _place_signatures(parts: list[dict[str, Any]], signatures: list[tuple[int, str]], gemini3: bool) -> None:
    """The first call takes the last signature before it (Gemini 3 refuses an unsigned one); the rest go
    on the nearest text. The client may keep reasoning parts first (as complete_chat returns them) or in
    stream order: this placement gives the same result for both."""
    calls = [i for i, p in enumerate(parts) if "functionCall" in p]
    if calls:
        first = calls[0]
        before = [k for k, (at, _) in enumerate(signatures) if at <= first]
        if before or signatures:
            parts[first]["thoughtSignature"] = signatures.pop(before[-1] if before else 0)[1]
        elif gemini3:
            parts[first]["thoughtSignature"] = SKIP_SIGNATURE
    for at, signature in signatures:
        slot = _free_slot(parts, at, thought=False)
        slot = _free_slot(parts, at, thought=True) if slot is None else slot
        if slot is not None:
            parts[slot]["thoughtSignature"] = signature


def _free_slot(parts: list[dict[str, Any]], at: int, *, thought: bool) -> int | None:
    """The nearest text part (after ``at`` first, then before) that has no signature yet."""
    order = [*range(at, len(parts)), *range(at - 1, -1, -1)]
    for i in order:
        p = parts[i]
        if "text" in p and "thoughtSignature" not in p and bool(p.get("thought")) is thought:
            return i
    return None


def _tool_result(msg: ToolMessage, names: dict[str, str]) -> list[dict[str, Any]]:
    """A functionResponse (Gemini wants the function's name, which only the earlier call knows)."""
    name = names.get(msg.tool_call_id)
    if name is None:
        raise SidecarError(
            "invalid_request", f"the tool message for {msg.tool_call_id!r} answers no earlier assistant tool_call"
        )
    if isinstance(msg.content, str):
        text, images = msg.content, []
    else:
        text = "".join(p.text for p in msg.content if isinstance(p, TextPart))
        images = [_image(p) for p in msg.content if isinstance(p, ImagePart)]
    key = "error" if msg.is_error is True else "content"  # Google's docs name "error" for a failure
    return [{"functionResponse": {"id": msg.tool_call_id, "name": name, "response": {key: text}}}, *images]


def encode_contents(params: StreamTextParams, model: str) -> tuple[list[dict[str, Any]], list[str]]:
    """(contents, system texts). Same-role neighbours are merged: parallel tool results form one turn."""
    system = [params.system] if isinstance(params.system, str) and params.system else []
    gemini3 = "gemini-3" in model
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    """tool_call id -> name, as of this point in the conversation (ids like call_0 recur across turns)"""

    def add(role: str, parts: list[dict[str, Any]]) -> None:
        if not parts:
            return
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})

    for msg in params.messages:
        if isinstance(msg, SystemMessage):
            if msg.content:
                system.append(msg.content)  # Gemini has no system turn: every one joins the instruction
        elif isinstance(msg, UserMessage):
            add("user", _user_parts(msg.content))
        elif isinstance(msg, AssistantMessage):
            if not isinstance(msg.content, str):
                names.update((p.id, p.name) for p in msg.content if isinstance(p, ToolCallPart))
            add("model", _model_parts(msg.content, gemini3))
        elif isinstance(msg, ToolMessage):
            add("user", _tool_result(msg, names))
    if not contents:
        raise SidecarError("invalid_request", "there is no user or assistant message to send")
    return contents, system


_SCHEMA_KEYS = frozenset({
    "type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems", "minProperties",
    "maxProperties", "minLength", "maxLength", "pattern", "example", "propertyOrdering", "default", "minimum",
    "maximum", "required",
})


def gemini_schema(schema: Any) -> Any:
    """A JSON Schema cut down to the OpenAPI subset Gemini takes (it refuses unknown keywords with a 400)."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type" and isinstance(value, list):
            types = [t for t in value if t != "null"]
            if len(types) < len(value):
                out["nullable"] = True
            if len(types) == 1:
                out["type"] = types[0]
            elif types:
                out["anyOf"] = [{"type": t} for t in types]
        elif key == "properties" and isinstance(value, dict):
            out[key] = {name: gemini_schema(sub) for name, sub in value.items()}
        elif key == "items":
            out[key] = gemini_schema(value)
        elif key in ("anyOf", "oneOf") and isinstance(value, list):
            variants = [v for v in value if not (isinstance(v, dict) and v.get("type") == "null")]
            if len(variants) < len(value):
                out["nullable"] = True
            if len(variants) == 1:
                out.update(gemini_schema(variants[0]))
            elif variants:
                out["anyOf"] = [gemini_schema(v) for v in variants]
        elif key == "const":
            out["enum"] = [value]
        elif key in _SCHEMA_KEYS:
            out[key] = value
    return out


def _function_declaration(name: str, description: str | None, parameters: dict[str, Any]) -> dict[str, Any]:
    decl: dict[str, Any] = {"name": name}
    if description is not None:
        decl["description"] = description
    schema = gemini_schema(parameters)
    if not (schema.get("type") == "object" and not schema.get("properties")):
        decl["parameters"] = schema  # an object without properties is refused: no parameters at all
    return decl


def _generation_config(params: StreamTextParams) -> dict[str, Any]:
    gen: dict[str, Any] = {}
    for name, key in (("temperature", "temperature"), ("top_p", "topP"), ("max_tokens", "maxOutputTokens"),
                      ("stop", "stopSequences"), ("seed", "seed")):
        value = getattr(params, name)
        if value is not msgspec.UNSET:
            gen[key] = value
    rf = params.response_format
    if not isinstance(rf, msgspec.UnsetType) and rf.type != "text":
        gen["responseMimeType"] = "application/json"
        if rf.type == "json_schema" and isinstance(rf.schema, dict):
            gen["responseSchema"] = gemini_schema(rf.schema)
    reasoning = params.reasoning
    if not isinstance(reasoning, msgspec.UnsetType):
        thinking: dict[str, Any] = {"includeThoughts": True}
        if isinstance(reasoning.budget_tokens, int):
            thinking["thinkingBudget"] = reasoning.budget_tokens
        elif isinstance(reasoning.effort, str):
            thinking["thinkingBudget"] = THINKING_BUDGET[reasoning.effort]
        gen["thinkingConfig"] = thinking
    return gen


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    """``extra`` over ``into``; where both hold an object, key by key."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def encode_body(params: StreamTextParams, provider: Provider, model: str) -> dict[str, Any]:
    contents, system = encode_contents(params, model)
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": [{"text": s} for s in system]}
    if isinstance(params.tools, list) and params.tools:
        decls = [
            _function_declaration(t.name, t.description if isinstance(t.description, str) else None, t.parameters)
            for t in params.tools
        ]
        body["tools"] = [{"functionDeclarations": decls}]
    choice = params.tool_choice
    if isinstance(choice, ToolChoiceName):
        body["toolConfig"] = {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [choice.name]}}
    elif isinstance(choice, str):
        mode = {"auto": "AUTO", "none": "NONE", "required": "ANY"}[choice]
        body["toolConfig"] = {"functionCallingConfig": {"mode": mode}}
    gen = _generation_config(params)
    if gen:
        body["generationConfig"] = gen
    _merge(body, provider.extra_body)
    if isinstance(params.provider_options, dict):
        _merge(body, params.provider_options)
    return body


def _model_path(model: str) -> str:
    """``models/<id>``; an id that already names its collection (``tunedModels/x``) is kept."""
    return quote(model if "/" in model else f"models/{model}", safe="/")


def _headers(provider: Provider, api_key: str | None, accept: str) -> dict[str, str]:
    headers = {"content-type": "application/json", "accept": accept, **provider.headers}
    if api_key:
        headers["x-goog-api-key"] = api_key
    return headers


def encode_request(params: StreamTextParams, provider: Provider, model: str, api_key: str | None) -> HttpRequest:
    body = encode_body(params, provider, model)
    url = f"{provider.base_url}/{_model_path(model)}:streamGenerateContent?alt=sse"
    return HttpRequest("POST", url, _headers(provider, api_key, "text/event-stream"), msgspec.json.encode(body))


def models_request(provider: Provider, api_key: str | None) -> HttpRequest:
    """The model list; one page of up to 1000, so nothing is cut off at the default 50."""
    headers = _headers(provider, api_key, "application/json")
    return HttpRequest("GET", f"{provider.base_url}/models?pageSize=1000", headers)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def parse_models(body: bytes) -> list[Model]:
    try:
        obj = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return []
    entries = obj.get("models") if isinstance(obj, dict) else None
    out: list[Model] = []
    for e in entries if isinstance(entries, list) else ():
        if not isinstance(e, dict) or not isinstance(e.get("name"), str) or not e["name"]:
            continue
        methods = e.get("supportedGenerationMethods")
        if isinstance(methods, list) and "generateContent" not in methods:
            continue  # embeddings, image and audio-only models: nothing to chat with
        name = e.get("displayName")
        thinking = e.get("thinking")
        out.append(Model(
            e["name"].removeprefix("models/"),
            name=name if isinstance(name, str) else "",
            context_window=_int(e.get("inputTokenLimit")),
            max_output_tokens=_int(e.get("outputTokenLimit")),
            reasoning=thinking if isinstance(thinking, bool) else None,
        ))
    return out


# --- errors -----------------------------------------------------------------------------

_BAD_KEY_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED"})
_BAD_KEY_WORDS = ("api key not valid", "api key expired", "unregistered callers", "api_key_invalid")
_RPC_STATUS: dict[str, ErrorCode] = {
    "UNAUTHENTICATED": "authentication_failed",
    "RESOURCE_EXHAUSTED": "rate_limited",
    "PERMISSION_DENIED": "permission_denied",
    "FAILED_PRECONDITION": "permission_denied",  # "User location is not supported", billing not enabled
    "INVALID_ARGUMENT": "invalid_request",
    "OUT_OF_RANGE": "invalid_request",
    "UNAVAILABLE": "upstream_unavailable",
    "INTERNAL": "upstream_unavailable",
    "UNKNOWN": "upstream_unavailable",
    "ABORTED": "upstream_unavailable",
    "DEADLINE_EXCEEDED": "timeout",
}


def _details(err: dict[str, Any]) -> list[dict[str, Any]]:
    details = err.get("details")
    return [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []


def _kind(status: int | None, rpc: str, err: dict[str, Any], message: str) -> ErrorCode:
    text = message.lower()
    reasons = {d.get("reason") for d in _details(err)}
    if reasons & _BAD_KEY_REASONS or any(w in text for w in _BAD_KEY_WORDS):
        return "authentication_failed"  # Google answers 400 INVALID_ARGUMENT for a bad key
    too_long = "input token count" in text or "exceeds the maximum number of tokens" in text
    if rpc in ("INVALID_ARGUMENT", "OUT_OF_RANGE") and too_long:
        return "context_length_exceeded"
    if rpc == "NOT_FOUND":
        return "unknown_model" if "model" in text else "not_found"
    return _RPC_STATUS.get(rpc) or classify(status, rpc, message)


def _waiting_helps(err: dict[str, Any]) -> bool:
    """A per-minute limit passes; a daily quota, or one of zero (no free tier for the model), does not."""
    for d in _details(err):
        for v in d.get("violations") or ():
            if isinstance(v, dict) and ("PerDay" in str(v.get("quotaId", "")) or str(v.get("quotaValue")) == "0"):
                return False
    return True


def google_error(provider: str, status: int | None, err: dict[str, Any]) -> SidecarError:
    """Google's ``{"error": {"code", "message", "status", "details"}}`` (its ``error`` member)."""
    message = str(err.get("message") or "")
    rpc = str(err.get("status") or "")
    if status is None and isinstance(err.get("code"), int):
        status = err["code"]
    kind = _kind(status, rpc, err, message)
    retryable = _waiting_helps(err) if kind == "rate_limited" else None
    text = message.strip() or rpc or (f"HTTP {status}" if status else "upstream error")
    if len(text) > MAX_MESSAGE:
        text = text[:MAX_MESSAGE] + "…"
    status = status if status is not None and status >= 400 else None
    return SidecarError(kind, f"{provider}: {text}", provider=provider, status=status, retryable=retryable)


def map_http_error(status: int, body: bytes, provider: str) -> SidecarError:
    try:
        obj = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return upstream_error(provider, status, "", body.decode("utf-8", "replace").strip()[:200])
    if isinstance(obj, list) and obj:  # the non-SSE stream endpoint wraps its error in an array
        obj = obj[0]
    err = obj.get("error") if isinstance(obj, dict) else None
    if isinstance(err, dict):
        return google_error(provider, status, err)
    code, message = error_fields(obj)
    return upstream_error(provider, status, code, message)


# --- decode -----------------------------------------------------------------------------


class _PartialArg(msgspec.Struct, rename="camel"):
    json_path: str = ""
    string_value: str | None = None
    number_value: int | float | None = None
    bool_value: bool | None = None
    null_value: Any = msgspec.UNSET
    will_continue: bool = False


class _FunctionCall(msgspec.Struct, rename="camel"):
    name: str | None = None
    id: str | None = None
    args: dict[str, Any] | None = None
    partial_args: list[_PartialArg] | None = None
    will_continue: bool = False


class _Part(msgspec.Struct, rename="camel"):
    text: str | None = None
    thought: bool = False
    thought_signature: str | None = None
    function_call: _FunctionCall | None = None


class _Content(msgspec.Struct):
    parts: list[_Part] | None = None


class _Candidate(msgspec.Struct, rename="camel"):
    content: _Content | None = None
    finish_reason: str | None = None
    index: int = 0


class _UsageMetadata(msgspec.Struct, rename="camel"):
    prompt_token_count: int | None = None
    candidates_token_count: int | None = None
    thoughts_token_count: int | None = None
    tool_use_prompt_token_count: int | None = None
    cached_content_token_count: int | None = None
    total_token_count: int | None = None


class _PromptFeedback(msgspec.Struct, rename="camel"):
    block_reason: str | None = None
    block_reason_message: str | None = None


class _Chunk(msgspec.Struct, rename="camel"):
    candidates: list[_Candidate] | None = None
    usage_metadata: _UsageMetadata | None = None
    prompt_feedback: _PromptFeedback | None = None
    error: Any = None


_decode_chunk = msgspec.json.Decoder(_Chunk).decode
_encode = msgspec.json.encode

_FILTERED = ("SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY",
             "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION")
FINISH: dict[str, FinishReason] = {"STOP": "stop", "MAX_TOKENS": "length", **dict.fromkeys(_FILTERED, "content_filter")}


def convert_usage(u: _UsageMetadata) -> Usage | None:
    """None for a chunk whose usageMetadata has no counts yet (streamed calls send only trafficType)."""
    counts = (u.prompt_token_count, u.candidates_token_count, u.thoughts_token_count, u.total_token_count)
    if all(c is None for c in counts):
        return None
    thoughts = u.thoughts_token_count or 0
    usage = Usage(
        input_tokens=(u.prompt_token_count or 0) + (u.tool_use_prompt_token_count or 0),
        output_tokens=(u.candidates_token_count or 0) + thoughts,
    )
    if thoughts:
        usage.reasoning_tokens = thoughts
    if u.cached_content_token_count:
        usage.cached_input_tokens = u.cached_content_token_count
    return usage


# --- streamed function-call arguments --------------------------------------------------

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

    def add(self, arg: _PartialArg) -> str:
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


class _StreamedCall:
    __slots__ = ("builder", "id", "name")

    def __init__(self, id_: str, name: str) -> None:
        self.id = id_
        self.name = name
        self.builder = ArgsBuilder()


# --- the decoder ------------------------------------------------------------------------


class Decoder:
    """GenerateContentResponse chunks to events. Gemini has no end marker: the finishReason ends a stream."""

    def __init__(self, provider: str = "gemini") -> None:
        self.provider = provider
        self.finish_reason: FinishReason | None = None
        self.usage: Usage | None = None
        self.complete = False
        self._usage_meta: _UsageMetadata | None = None
        self._calls = 0
        """tool calls started so far; also the next one's index"""
        self._streamed: _StreamedCall | None = None
        self._reasoning = False
        self._signature: str | None = None
        """a signature that came on a thought part, sent when its run of thoughts closes"""

    def feed(self, event: str, data: str) -> list[Event]:
        if data == "[DONE]":  # not Gemini's, but a proxy in front of it may add one
            self.complete = True
            return []
        try:
            chunk = _decode_chunk(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            err = _loose_error(data)
            if err is not None:
                raise self._error(err) from None
            raise SidecarError("protocol_error", f"{self.provider}: unparseable stream chunk ({exc})",
                               provider=self.provider) from None
        if chunk.error is not None:
            raise self._error(chunk.error)
        meta = chunk.usage_metadata
        if meta is not None and meta != self._usage_meta:  # most chunks repeat the last counts
            self._usage_meta = meta
            self.usage = convert_usage(meta) or self.usage
        feedback = chunk.prompt_feedback
        if feedback is not None and feedback.block_reason:
            why = f": {feedback.block_reason_message}" if feedback.block_reason_message else ""
            raise SidecarError("content_filtered", f"{self.provider}: the prompt was blocked "
                               f"({feedback.block_reason}){why}", provider=self.provider)
        out: list[Event] = []
        for candidate in chunk.candidates or ():
            if candidate.index != 0:
                continue
            if candidate.content is not None:
                for part in candidate.content.parts or ():
                    self._part(part, out)
            if candidate.finish_reason:
                finish = FINISH.get(candidate.finish_reason, "other")
                self.finish_reason = "tool_calls" if finish == "stop" and self._calls else finish
        return out

    def end(self) -> list[Event]:
        out: list[Event] = []
        self._finish_streamed(out)  # a streamed call whose closing fragment never came
        self._end_reasoning(out)
        if self.finish_reason == "stop" and self._calls:
            self.finish_reason = "tool_calls"
        return out

    def _error(self, err: Any) -> SidecarError:
        if isinstance(err, dict):
            return google_error(self.provider, None, err)
        code, message = error_fields({"error": err})
        return upstream_error(self.provider, None, code, message)

    def _part(self, part: _Part, out: list[Event]) -> None:
        signature = part.thought_signature or None
        if part.function_call is not None:
            self._function_call(part.function_call, signature, out)
            return
        self._finish_streamed(out)
        if part.thought:
            if self._signature is not None:  # a signed run is over; this part starts the next one
                self._end_reasoning(out)
            if part.text:
                self._reasoning = True
                out.append(ReasoningDeltaEvent(text=part.text))
            self._signature = signature or self._signature
        elif part.text is not None:
            self._end_reasoning(out, signature)
            if part.text:
                out.append(TextDeltaEvent(text=part.text))
        else:  # executableCode, codeExecutionResult, toolCall, toolResponse, inlineData: no contract event
            self._end_reasoning(out)

    def _end_reasoning(self, out: list[Event], signature: str | None = None) -> None:
        """Close the open thought run (with its signature), then hand over the next part's own signature."""
        pending, self._signature = self._signature, None
        if pending is None and self._reasoning:
            pending, signature = signature, None  # the part that ends the thoughts carries their signature
        if self._reasoning or pending:
            out.append(ReasoningEndEvent() if pending is None else ReasoningEndEvent(signature=pending))
            self._reasoning = False
        if signature:
            out.append(ReasoningEndEvent(signature=signature))

    def _start(self, fc: _FunctionCall, name: str, out: list[Event]) -> str:
        index = self._calls
        self._calls += 1
        call_id = fc.id or f"call_{index}"
        out.append(ToolCallStartEvent(tool_call_id=call_id, name=name, index=index))
        return call_id

    def _function_call(self, fc: _FunctionCall, signature: str | None, out: list[Event]) -> None:
        """A whole call, or one piece of a streamed one: {name, willContinue}, {partialArgs}..., {}."""
        if fc.name:
            self._finish_streamed(out)  # a named part always starts a new call
            self._end_reasoning(out, signature)
            call_id = self._start(fc, fc.name, out)
            if not fc.will_continue and not fc.partial_args:
                args = fc.args or {}
                out.append(ToolCallDeltaEvent(tool_call_id=call_id, arguments_delta=_encode(args).decode()))
                out.append(ToolCallEvent(tool_call_id=call_id, name=fc.name, arguments=args))
                return
            self._streamed = _StreamedCall(call_id, fc.name)
        else:
            self._end_reasoning(out, signature)
        call = self._streamed
        if call is None:
            return  # an end marker or fragment with no call open: nothing to add to
        delta = "".join(call.builder.add(arg) for arg in fc.partial_args or ())
        if delta:
            out.append(ToolCallDeltaEvent(tool_call_id=call.id, arguments_delta=delta))
        if not fc.will_continue:
            self._finish_streamed(out)

    def _finish_streamed(self, out: list[Event]) -> None:
        call, self._streamed = self._streamed, None
        if call is None:
            return
        closing = call.builder.finish()
        if closing:
            out.append(ToolCallDeltaEvent(tool_call_id=call.id, arguments_delta=closing))
        out.append(ToolCallEvent(tool_call_id=call.id, name=call.name, arguments=call.builder.args))


def _loose_error(data: str) -> Any:
    """The ``error`` member of a payload that is not a valid chunk (also inside a one-element array)."""
    try:
        obj = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return None
    if isinstance(obj, list) and obj:
        obj = obj[0]
    return obj.get("error") if isinstance(obj, dict) else None


PROTOCOL = WireProtocol(
    name="gemini",
    framing="sse",
    encode_request=encode_request,
    new_decoder=Decoder,
    map_http_error=map_http_error,
    models_request=models_request,
    parse_models=parse_models,
)
