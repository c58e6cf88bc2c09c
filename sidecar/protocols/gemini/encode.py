"""Gemini requests: ``POST {base}/models/{model}:streamGenerateContent?alt=sse`` and the model list."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import msgspec

from ...errors import SidecarError
from ...providers.model import Provider
from ...types import (
    AssistantMessage,
    ContentPart,
    ImagePart,
    ReasoningPart,
    StreamTextParams,
    SystemMessage,
    TextPart,
    ToolCallPart,
    ToolChoiceName,
    ToolMessage,
    UserMessage,
    WarningEvent,
)
from ..base import HttpRequest
from ..toolkit import (
    KeyHeader,
    given,
    given_parallel_tool_calls,
    item_signature,
    json_headers,
    merge,
    merge_options,
    parse_data_url,
    unsupported,
)

THINKING_BUDGET = {"low": 1024, "medium": 8192, "high": 24576}
SKIP_SIGNATURE = "skip_thought_signature_validator"
"""Google's documented stand-in for a functionCall signature that was lost (Gemini 3 only)."""

def _image(part: ImagePart) -> dict[str, Any]:
    if isinstance(part.data, str):
        return {"inlineData": {"mimeType": part.media_type, "data": part.data}}
    if isinstance(part.url, str):
        inline = parse_data_url(part.url)
        if inline is not None:
            return {"inlineData": {"mimeType": inline[0] or part.media_type, "data": inline[1]}}
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
            if isinstance(p.signature, str) and p.signature and not item_signature(p.signature):
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


GENERATION = {"temperature": "temperature", "top_p": "topP", "max_tokens": "maxOutputTokens",
              "stop": "stopSequences", "seed": "seed"}
"""the settings that go in ``generationConfig``, under Gemini's names"""


def _generation_config(params: StreamTextParams) -> dict[str, Any]:
    gen = given(params, GENERATION)
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
    return merge_options(body, provider, params)


def dropped(params: StreamTextParams) -> list[WarningEvent]:
    """The settings the request gave that Gemini has no counterpart for."""
    return unsupported("gemini", "parallel_tool_calls") if given_parallel_tool_calls(params) else []


def _model_path(model: str) -> str:
    """``models/<id>``; an id that already names its collection (``tunedModels/x``) is kept."""
    return quote(model if "/" in model else f"models/{model}", safe="/")


KEY = KeyHeader("x-goog-api-key")
"""never in the URL: a URL ends up in logs and error texts"""


def _headers(provider: Provider, api_key: str | None, accept: str) -> dict[str, str]:
    return json_headers(provider, api_key, accept, KEY)


def encode_request(params: StreamTextParams, provider: Provider, model: str, api_key: str | None) -> HttpRequest:
    body = encode_body(params, provider, model)
    url = f"{provider.base_url}/{_model_path(model)}:streamGenerateContent?alt=sse"
    headers = _headers(provider, api_key, "text/event-stream")
    return HttpRequest("POST", url, headers, msgspec.json.encode(body), warnings=dropped(params))


def models_request(provider: Provider, api_key: str | None) -> HttpRequest:
    """The model list; one page of up to 1000, so nothing is cut off at the default 50."""
    headers = _headers(provider, api_key, "application/json")
    return HttpRequest("GET", f"{provider.base_url}/models?pageSize=1000", headers)



EMBED_BATCH = 100
"""the most requests one ``batchEmbedContents`` takes"""


def embed_request(provider: Provider, model: str, texts: list[str], dimensions: int | None, api_key: str | None,
                  options: dict[str, Any] | None) -> HttpRequest:
    """``POST {base}/models/{model}:batchEmbedContents``, one request per text; ``options`` (the request's
    ``provider_options``, e.g. ``{"taskType": "RETRIEVAL_QUERY"}``) are merged over each of them."""
    path = _model_path(model)
    requests = []
    for text in texts:
        entry: dict[str, Any] = {"model": path, "content": {"parts": [{"text": text}]}}
        if dimensions is not None:
            entry["outputDimensionality"] = dimensions
        if options:
            merge(entry, options)
        requests.append(entry)
    url = f"{provider.base_url}/{path}:batchEmbedContents"
    body = msgspec.json.encode({"requests": requests})
    return HttpRequest("POST", url, _headers(provider, api_key, "application/json"), body)
