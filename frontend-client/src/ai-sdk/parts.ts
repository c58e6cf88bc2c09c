// The sidecar's stream events and results as the AI SDK's stream parts, content, usage and finish reasons.
import type {
  JSONObject,
  LanguageModelV4Content,
  LanguageModelV4FinishReason,
  LanguageModelV4StreamPart,
  LanguageModelV4Usage,
  SharedV4ProviderMetadata,
  SharedV4Warning,
} from "@ai-sdk/provider";
import type { CompleteChatResult, ContentPart, DoneEvent, Usage } from "../generated.js";
import type { StreamOutputEvent } from "../stream.js";
import { PROVIDER_KEY } from "./names.js";

const UNIFIED: Record<DoneEvent["finish_reason"], LanguageModelV4FinishReason["unified"]> = {
  stop: "stop",
  length: "length",
  tool_calls: "tool-calls",
  content_filter: "content-filter",
  other: "other",
  max_steps: "other",
};

export function finishReason(reason: DoneEvent["finish_reason"]): LanguageModelV4FinishReason {
  return { unified: UNIFIED[reason] ?? "other", raw: reason };
}

/** The sidecar's usage (input_tokens counts cached ones too; output_tokens counts reasoning) as the SDK's. */
export function usageOf(usage: Usage): LanguageModelV4Usage {
  const cacheRead = usage.cached_input_tokens;
  const cacheWrite = usage.cache_creation_tokens;
  const reasoning = usage.reasoning_tokens;
  return {
    inputTokens: {
      total: usage.input_tokens,
      noCache: Math.max(0, usage.input_tokens - (cacheRead ?? 0) - (cacheWrite ?? 0)),
      cacheRead,
      cacheWrite,
    },
    outputTokens: {
      total: usage.output_tokens,
      text: reasoning === undefined ? usage.output_tokens : Math.max(0, usage.output_tokens - reasoning),
      reasoning,
    },
    raw: { ...usage } as JSONObject,
  };
}

function meta(fields: Record<string, unknown>): SharedV4ProviderMetadata {
  const own: JSONObject = {};
  for (const [key, value] of Object.entries(fields)) if (value !== undefined) own[key] = value as JSONObject[string];
  return { [PROVIDER_KEY]: own };
}

/** What `done` (or complete_chat's result) tells beyond text and usage, under `providerMetadata.sidecar`. */
export function doneMetadata(done: Pick<DoneEvent, "model" | "provider_metadata"> & Partial<DoneEvent>): SharedV4ProviderMetadata {
  return meta({
    model: done.model,
    latencyMs: done.latency_ms,
    ttftMs: done.ttft_ms,
    costUsd: done.usage?.cost_usd,
    estimatedUsage: done.usage?.estimated,
    providerMetadata: done.provider_metadata,
  });
}

/** complete_chat's parts as the SDK's content. */
export function contentOf(result: CompleteChatResult): LanguageModelV4Content[] {
  const content: LanguageModelV4Content[] = [];
  for (const part of result.parts as ContentPart[]) {
    switch (part.type) {
      case "text":
        content.push({ type: "text", text: part.text });
        break;
      case "reasoning":
        content.push(part.signature === undefined ? { type: "reasoning", text: part.text } : { type: "reasoning", text: part.text, providerMetadata: meta({ signature: part.signature }) });
        break;
      case "redacted_reasoning":
        content.push({ type: "reasoning", text: "", providerMetadata: meta({ redactedData: part.data }) });
        break;
      case "tool_call":
        content.push({ type: "tool-call", toolCallId: part.id, toolName: part.name, input: JSON.stringify(part.arguments) });
        break;
      default:
        break;
    }
  }
  return content;
}

/**
 * Turns one stream's events into the SDK's parts, in order. `stream-start` (with the call's
 * warnings and the sidecar's `warning` events, which come before any output) goes first, once the
 * first output event (or the end) shows no more warnings will come.
 */
export class PartMapper {
  private readonly warnings: SharedV4Warning[];
  private readonly raw: boolean;
  private held: LanguageModelV4StreamPart[] | undefined = [];
  private text: string | undefined;
  private reasoning: string | undefined;
  private blocks = 0;
  private readonly toolInputs = new Set<string>();

  constructor(warnings: SharedV4Warning[], includeRaw: boolean) {
    this.warnings = [...warnings];
    this.raw = includeRaw;
  }

  /** The parts for one event. */
  event(event: StreamOutputEvent): LanguageModelV4StreamPart[] {
    const out: LanguageModelV4StreamPart[] = [];
    if (this.raw) out.push({ type: "raw", rawValue: event });
    switch (event.type) {
      case "start":
        out.push({ type: "response-metadata", modelId: event.model, timestamp: new Date() });
        return this.hold(out);
      case "warning":
        this.warnings.push({ type: "other", message: `${event.code}: ${event.message}` });
        return this.hold(out);
      case "retry":
      case "fallback":
      case "usage":
      case "step_start":
      case "tool_calls_requested":
        return this.hold(out);
      case "text_delta":
        this.endReasoning(out);
        if (this.text === undefined) {
          this.text = `text-${this.blocks++}`;
          out.push({ type: "text-start", id: this.text });
        }
        out.push({ type: "text-delta", id: this.text, delta: event.text });
        break;
      case "reasoning_delta":
        this.endText(out);
        if (this.reasoning === undefined) {
          this.reasoning = `reasoning-${this.blocks++}`;
          out.push({ type: "reasoning-start", id: this.reasoning });
        }
        out.push({ type: "reasoning-delta", id: this.reasoning, delta: event.text });
        break;
      case "reasoning_end":
        this.endText(out);
        if (this.reasoning === undefined) {
          this.reasoning = `reasoning-${this.blocks++}`;
          out.push({ type: "reasoning-start", id: this.reasoning });
        }
        this.endReasoning(out, event.signature === undefined ? undefined : meta({ signature: event.signature }));
        break;
      case "redacted_reasoning": {
        this.endText(out);
        this.endReasoning(out);
        const id = `reasoning-${this.blocks++}`;
        out.push({ type: "reasoning-start", id }, { type: "reasoning-end", id, providerMetadata: meta({ redactedData: event.data }) });
        break;
      }
      case "tool_call_start":
        this.endBlocks(out);
        this.toolInputs.add(event.tool_call_id);
        out.push({ type: "tool-input-start", id: event.tool_call_id, toolName: event.name });
        break;
      case "tool_call_delta":
        if (this.toolInputs.has(event.tool_call_id)) out.push({ type: "tool-input-delta", id: event.tool_call_id, delta: event.arguments_delta });
        break;
      case "tool_call":
        this.endBlocks(out);
        if (this.toolInputs.delete(event.tool_call_id)) out.push({ type: "tool-input-end", id: event.tool_call_id });
        out.push({
          type: "tool-call",
          toolCallId: event.tool_call_id,
          toolName: event.name,
          input: event.arguments_raw ?? JSON.stringify(event.arguments),
        });
        break;
      case "done":
        this.endBlocks(out);
        out.push({ type: "finish", usage: usageOf(event.usage), finishReason: finishReason(event.finish_reason), providerMetadata: doneMetadata(event) });
        break;
      default:
        return this.hold(out); // an event this client does not know yet: raw only
    }
    return this.release(out);
  }

  /** The parts that end a stream that failed with `error`. */
  failed(error: unknown): LanguageModelV4StreamPart[] {
    const out: LanguageModelV4StreamPart[] = [];
    this.endBlocks(out);
    for (const id of this.toolInputs) out.push({ type: "tool-input-end", id });
    this.toolInputs.clear();
    out.push({ type: "error", error });
    out.push({
      type: "finish",
      usage: { inputTokens: { total: undefined, noCache: undefined, cacheRead: undefined, cacheWrite: undefined }, outputTokens: { total: undefined, text: undefined, reasoning: undefined } },
      finishReason: { unified: "error", raw: undefined },
    });
    return this.release(out);
  }

  /** Before the first output: keep the parts back, behind stream-start. */
  private hold(parts: LanguageModelV4StreamPart[]): LanguageModelV4StreamPart[] {
    if (this.held === undefined) return parts;
    this.held.push(...parts);
    return [];
  }

  private release(parts: LanguageModelV4StreamPart[]): LanguageModelV4StreamPart[] {
    if (this.held === undefined) return parts;
    const out: LanguageModelV4StreamPart[] = [{ type: "stream-start", warnings: this.warnings }, ...this.held, ...parts];
    this.held = undefined;
    return out;
  }

  private endText(out: LanguageModelV4StreamPart[]): void {
    if (this.text === undefined) return;
    out.push({ type: "text-end", id: this.text });
    this.text = undefined;
  }

  private endReasoning(out: LanguageModelV4StreamPart[], providerMetadata?: SharedV4ProviderMetadata): void {
    if (this.reasoning === undefined) return;
    out.push(providerMetadata ? { type: "reasoning-end", id: this.reasoning, providerMetadata } : { type: "reasoning-end", id: this.reasoning });
    this.reasoning = undefined;
  }

  private endBlocks(out: LanguageModelV4StreamPart[]): void {
    this.endText(out);
    this.endReasoning(out);
  }
}
