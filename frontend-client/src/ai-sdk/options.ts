// The AI SDK's call options as the sidecar's request params, and warnings for what it cannot take.
import type { LanguageModelV4CallOptions, SharedV4Warning } from "@ai-sdk/provider";
import type { ReasoningOptions, StreamTextParams, ToolDefinition } from "../generated.js";
import { PROVIDER_KEY } from "./names.js";
import { toMessages } from "./prompt.js";

/** Params the model itself sets; `providerOptions.sidecar` cannot override them. */
const RESERVED = new Set(["messages", "model", "stream_id", "tools", "tool_choice", "response_format"]);

const EFFORT: Record<string, ReasoningOptions["effort"]> = {
  minimal: "low",
  low: "low",
  medium: "medium",
  high: "high",
  xhigh: "high",
  max: "high",
};

/**
 * The request params for a call, and a warning for each option the sidecar does not take.
 *
 * `providerOptions.sidecar` is merged in last: any StreamTextParams field by its wire name
 * (`provider_options`, `fallback_models`, `reasoning`, `parallel_tool_calls`, `timeouts`, `retry`,
 * `cache`, ...); the sidecar checks them (an unknown field is its -32602 error).
 */
export function toParams(options: LanguageModelV4CallOptions, model: string): { params: StreamTextParams; warnings: SharedV4Warning[] } {
  const warnings: SharedV4Warning[] = [];
  const params: StreamTextParams = { model, messages: toMessages(options.prompt) };
  if (options.maxOutputTokens !== undefined) params.max_tokens = options.maxOutputTokens;
  if (options.temperature !== undefined) params.temperature = options.temperature;
  if (options.topP !== undefined) params.top_p = options.topP;
  if (options.stopSequences !== undefined && options.stopSequences.length > 0) params.stop = options.stopSequences;
  if (options.seed !== undefined) params.seed = options.seed;
  for (const [feature, value] of [
    ["topK", options.topK],
    ["presencePenalty", options.presencePenalty],
    ["frequencyPenalty", options.frequencyPenalty],
  ] as const) {
    if (value !== undefined) warnings.push({ type: "unsupported", feature, details: "the sidecar has no such setting; it was not sent" });
  }
  const headers = Object.entries(options.headers ?? {}).filter(([name, value]) => value !== undefined && name.toLowerCase() !== "user-agent");
  if (headers.length > 0) {
    warnings.push({ type: "unsupported", feature: "headers", details: "the sidecar makes the HTTP requests; per-call headers are not sent (set a provider's headers with configure_provider)" });
  }

  const reasoning = options.reasoning;
  if (reasoning !== undefined && reasoning !== "provider-default") {
    const effort = EFFORT[reasoning];
    if (effort) params.reasoning = { effort };
    else warnings.push({ type: "unsupported", feature: `reasoning: ${reasoning}`, details: "the sidecar cannot turn reasoning off; the model's default applies" });
    if (reasoning === "xhigh" || reasoning === "max" || reasoning === "minimal") {
      warnings.push({ type: "compatibility", feature: `reasoning: ${reasoning}`, details: `sent as effort ${String(effort)}` });
    }
  }

  const tools: ToolDefinition[] = [];
  for (const tool of options.tools ?? []) {
    if (tool.type !== "function") {
      warnings.push({ type: "unsupported", feature: `provider tool ${tool.id}`, details: "only function tools go through the sidecar" });
      continue;
    }
    const definition: ToolDefinition = { name: tool.name, parameters: tool.inputSchema as Record<string, unknown> };
    if (tool.description !== undefined) definition.description = tool.description;
    tools.push(definition);
  }
  if (tools.length > 0) {
    params.tools = tools;
    const choice = options.toolChoice;
    if (choice) params.tool_choice = choice.type === "tool" ? { name: choice.toolName } : choice.type;
  }

  const format = options.responseFormat;
  if (format?.type === "json") {
    params.response_format = format.schema
      ? { type: "json_schema", schema: format.schema as Record<string, unknown>, ...(format.name ? { name: format.name } : {}) }
      : { type: "json_object" };
  }

  const own = options.providerOptions?.[PROVIDER_KEY];
  if (own && typeof own === "object") {
    for (const [key, value] of Object.entries(own)) {
      if (value === undefined) continue;
      if (RESERVED.has(key)) {
        warnings.push({ type: "other", message: `providerOptions.${PROVIDER_KEY}.${key} is ignored: the model sets it from the call` });
        continue;
      }
      (params as unknown as Record<string, unknown>)[key] = value;
    }
  }
  return { params, warnings };
}
