"""MCP tools as a model sees them: their names (``<server>__<tool>``), and their results as tool-result parts.

The names keep to the rules every protocol shares (OpenAI's and Anthropic's ``^[a-zA-Z0-9_-]{1,64}$``;
Gemini's also wants a letter or ``_`` first, which a server id gives): other characters become ``_`` and a
longer name is cut to 64. Two tools that end up with one name are refused, never silently merged.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import SidecarError
from ..types import ContentPart, ImagePart, TextPart, ToolDefinition

MAX_NAME = 64
PREVIEW_CHARS = 200
_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9_-]")


def tool_name(server: str, tool: str) -> str:
    """The name a model calls an MCP tool by."""
    return _NOT_ALLOWED.sub("_", f"{server}__{tool}")[:MAX_NAME]


@dataclass(frozen=True)
class McpTool:
    server: str
    name: str
    """the tool's own name on its server"""
    definition: ToolDefinition
    """as offered to the model (named by ``tool_name``)"""


def offer(tools: list[McpTool], app_tools: list[ToolDefinition]) -> dict[str, McpTool]:
    """The MCP tools by the name the model sees; invalid_request when a name is taken twice."""
    taken = {t.name: "one of the request's tools" for t in app_tools}
    out: dict[str, McpTool] = {}
    for tool in tools:
        name = tool.definition.name
        if name in taken or name in out:
            other = taken.get(name) or f"{out[name].server}/{out[name].name}"
            raise SidecarError("invalid_request", f"the MCP tool {tool.server}/{tool.name} would be offered as "
                               f"{name!r}, which is already {other}'s name")
        out[name] = tool
    return out


Approval = Literal["never", "always"]


def needs_approval(policy: Approval | dict[str, Approval] | None, server: str, tool: str) -> bool:
    """``never`` (the default) or ``always``; per tool: ``<server>/<tool>``, then ``<server>/*``, then ``*``,
    and a tool no key names needs approval."""
    if policy is None or isinstance(policy, str):
        return policy == "always"
    for key in (f"{server}/{tool}", f"{server}/*", "*"):
        if key in policy:
            return policy[key] == "always"
    return True


def result_parts(content: list[Any], structured: dict[str, Any] | None) -> list[ContentPart]:
    """An MCP result's content blocks as the text and image parts every protocol's tool result takes:
    text and images as they are, an embedded text resource as text, anything else (audio, a binary
    resource, a resource link) described in a line of text."""
    parts: list[ContentPart] = []
    for block in content:
        kind = getattr(block, "type", None)
        if kind == "text":
            parts.append(TextPart(text=block.text))
        elif kind == "image":
            parts.append(ImagePart(media_type=block.mime_type, data=block.data))
        elif kind == "audio":
            parts.append(TextPart(text=f"[audio: {block.mime_type}, {len(block.data) * 3 // 4} bytes]"))
        elif kind == "resource_link":
            parts.append(TextPart(text=f"[resource: {block.name} {block.uri}]"))
        elif kind == "resource":
            resource = block.resource
            mime = resource.mime_type or "application/octet-stream"
            text = getattr(resource, "text", None)
            if isinstance(text, str):
                parts.append(TextPart(text=f"[resource {resource.uri}]\n{text}"))
            elif mime.startswith("image/"):
                parts.append(ImagePart(media_type=mime, data=resource.blob))
            else:
                parts.append(TextPart(text=f"[resource {resource.uri}: {mime}, {len(resource.blob) * 3 // 4} bytes]"))
    if not parts and structured is not None:
        parts.append(TextPart(text=json.dumps(structured, ensure_ascii=False)))
    return parts


def preview(parts: list[ContentPart] | str) -> str:
    """The start of a result's text, for the UI's ``tool_result`` event."""
    if isinstance(parts, str):
        text = parts
    else:
        text = " ".join(p.text if isinstance(p, TextPart) else f"[image {p.media_type}]"
                        for p in parts if isinstance(p, TextPart | ImagePart))
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"
