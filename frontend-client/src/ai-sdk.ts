/**
 * llm-sidecar-client/ai-sdk: the sidecar as a Vercel AI SDK provider (`ai` 7, LanguageModelV4;
 * LanguageModelV3 for `ai` 6 through `languageModelV3`). Needs the optional peer
 * `@ai-sdk/provider`; the package's other entry points never load it.
 *
 * ```ts
 * import { streamText, stepCountIs } from "ai";
 * import { createSidecar } from "llm-sidecar-client/ai-sdk";
 * const sidecar = createSidecar({ client });
 * const result = streamText({ model: sidecar("anthropic:claude-sonnet-4-5"), tools, stopWhen: stepCountIs(5), prompt });
 * ```
 */
export { createSidecar, type SidecarProvider, type SidecarProviderOptions } from "./ai-sdk/provider.js";
export { SidecarLanguageModel, SidecarLanguageModelV3 } from "./ai-sdk/model.js";
export { SidecarEmbeddingModel } from "./ai-sdk/embedding.js";
export { PROVIDER_KEY } from "./ai-sdk/names.js";
export { sdkError } from "./ai-sdk/errors.js";
