// The AI SDK's prompt (LanguageModelV4Prompt, or V3's) as the sidecar's messages.
import {
  UnsupportedFunctionalityError,
  type LanguageModelV4FilePart,
  type LanguageModelV4Message,
  type LanguageModelV4Prompt,
  type LanguageModelV4ToolResultOutput,
  type SharedV4ProviderOptions,
} from "@ai-sdk/provider";
import type { ContentPart, ImagePart, Message, TextPart, ToolMessage } from "../generated.js";
import { PROVIDER_KEY } from "./names.js";

type Part = Extract<LanguageModelV4Message, { role: "assistant" }>["content"][number];
/** V3's file part data: bytes, base64 or a URL (V4 tags it instead). */
type AnyFileData = LanguageModelV4FilePart["data"] | Uint8Array | string | URL;

function base64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

function utf8(data: Uint8Array | string): string {
  return typeof data === "string" ? new TextDecoder().decode(Uint8Array.from(atob(data), (c) => c.charCodeAt(0))) : new TextDecoder().decode(data);
}

/** The media type of image bytes from their first bytes, for a part that says only `image`. */
function sniffImage(bytes: Uint8Array): string | undefined {
  const starts = (...sig: number[]): boolean => sig.every((b, i) => bytes[i] === b);
  if (starts(0x89, 0x50, 0x4e, 0x47)) return "image/png";
  if (starts(0xff, 0xd8, 0xff)) return "image/jpeg";
  if (starts(0x47, 0x49, 0x46, 0x38)) return "image/gif";
  if (starts(0x52, 0x49, 0x46, 0x46) && bytes[8] === 0x57 && bytes[9] === 0x45 && bytes[10] === 0x42 && bytes[11] === 0x50) {
    return "image/webp";
  }
  return undefined;
}

/** A file part as a sidecar part: images (bytes, base64 or URL) and text documents; anything else is refused. */
function filePart(mediaType: string, raw: AnyFileData): ImagePart | TextPart {
  // V4 tags the data; V3 gives bytes, base64 or a URL as they are.
  const data: LanguageModelV4FilePart["data"] =
    raw instanceof Uint8Array || typeof raw === "string"
      ? { type: "data", data: raw }
      : raw instanceof URL
        ? { type: "url", url: raw }
        : raw;
  const topLevel = mediaType.split("/")[0];
  if (data.type === "text") return { type: "text", text: data.text };
  if (topLevel === "text" && data.type === "data") return { type: "text", text: utf8(data.data) };
  if (topLevel === "image") {
    if (data.type === "url") return { type: "image", media_type: mediaType.includes("/") && !mediaType.endsWith("/*") ? mediaType : "image/*", url: data.url.href };
    if (data.type === "data") {
      const bytes = typeof data.data === "string" ? undefined : data.data;
      let full = mediaType.includes("/") && !mediaType.endsWith("/*") ? mediaType : undefined;
      if (!full && bytes) full = sniffImage(bytes);
      if (!full && typeof data.data === "string") full = sniffImage(Uint8Array.from(atob(data.data.slice(0, 24)), (c) => c.charCodeAt(0)));
      if (!full) throw new UnsupportedFunctionalityError({ functionality: "an image whose media type is not known" });
      return { type: "image", media_type: full, data: typeof data.data === "string" ? data.data : base64(data.data) };
    }
  }
  throw new UnsupportedFunctionalityError({
    functionality: `${data.type === "reference" ? "provider file references" : `file parts of type ${mediaType}`} (the sidecar takes text and images)`,
  });
}

function sidecarOptions(options: SharedV4ProviderOptions | undefined): Record<string, unknown> | undefined {
  const own = options?.[PROVIDER_KEY];
  return own && typeof own === "object" ? (own as Record<string, unknown>) : undefined;
}

/** A tool call's input as the object the sidecar wants (the SDK's is already one; a JSON string is read). */
function argumentsOf(input: unknown): Record<string, unknown> {
  let value = input;
  if (typeof value === "string") {
    try {
      value = JSON.parse(value);
    } catch {
      return { input: value };
    }
  }
  return value !== null && typeof value === "object" && !Array.isArray(value) ? (value as Record<string, unknown>) : { input: value };
}

/** A tool's output as a tool message's content and whether it is an error. */
function toolOutput(output: LanguageModelV4ToolResultOutput): { content: string | ContentPart[]; isError: boolean } {
  switch (output.type) {
    case "text":
      return { content: output.value, isError: false };
    case "json":
      return { content: JSON.stringify(output.value), isError: false };
    case "error-text":
      return { content: output.value, isError: true };
    case "error-json":
      return { content: JSON.stringify(output.value), isError: true };
    case "execution-denied":
      return { content: `The tool was not run: ${output.reason ?? "the user denied it"}`, isError: true };
    case "content": {
      const parts: ContentPart[] = [];
      for (const item of output.value) {
        if (item.type === "text") parts.push({ type: "text", text: item.text });
        else if (item.type === "file") parts.push(filePart(item.mediaType, item.data));
      }
      return { content: parts, isError: false };
    }
  }
}

function assistantPart(part: Part): ContentPart | undefined {
  switch (part.type) {
    case "text":
      return { type: "text", text: part.text };
    case "reasoning": {
      const own = sidecarOptions(part.providerOptions);
      if (typeof own?.redactedData === "string") return { type: "redacted_reasoning", data: own.redactedData };
      const out: ContentPart = { type: "reasoning", text: part.text };
      if (typeof own?.signature === "string") out.signature = own.signature;
      return out;
    }
    case "tool-call":
      return { type: "tool_call", id: part.toolCallId, name: part.toolName, arguments: argumentsOf(part.input) };
    case "file":
      return filePart(part.mediaType, part.data as AnyFileData);
    default:
      // Provider-executed tool results, reasoning files and custom parts: nothing the sidecar can send.
      return undefined;
  }
}

/** The sidecar's messages for an AI SDK prompt (V4, or V3's, whose file parts differ). */
export function toMessages(prompt: LanguageModelV4Prompt): Message[] {
  const messages: Message[] = [];
  for (const message of prompt) {
    switch (message.role) {
      case "system":
        messages.push({ role: "system", content: message.content });
        break;
      case "user": {
        const parts: ContentPart[] = message.content.map((part) =>
          part.type === "text" ? { type: "text", text: part.text } : filePart(part.mediaType, part.data as AnyFileData),
        );
        messages.push({ role: "user", content: parts });
        break;
      }
      case "assistant": {
        const parts = message.content.map(assistantPart).filter((p): p is ContentPart => p !== undefined);
        messages.push({ role: "assistant", content: parts });
        break;
      }
      case "tool":
        for (const part of message.content) {
          if (part.type !== "tool-result") continue; // approval responses are for provider-executed tools
          const { content, isError } = toolOutput(part.output);
          const tool: ToolMessage = { role: "tool", tool_call_id: part.toolCallId, content };
          if (isError) tool.is_error = true;
          messages.push(tool);
        }
        break;
    }
  }
  return messages;
}
