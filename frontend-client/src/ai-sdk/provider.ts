// createSidecar: the AI SDK provider over a connected SidecarClient.
import { NoSuchModelError, type ProviderV4 } from "@ai-sdk/provider";
import type { SidecarClient } from "../client.js";
import { SidecarEmbeddingModel } from "./embedding.js";
import { SidecarLanguageModel, SidecarLanguageModelV3 } from "./model.js";

export interface SidecarProviderOptions {
  /** A connected client (`SidecarClient.connect(...)`); the provider never closes it. */
  client: SidecarClient;
}

/** The sidecar as an AI SDK provider: `sidecar("anthropic:claude-sonnet-4-5")` is a language model. */
export interface SidecarProvider extends ProviderV4 {
  (modelId: string): SidecarLanguageModel;
  /** A `provider:model` id the sidecar knows, as a LanguageModelV4 (`ai` 7). */
  languageModel(modelId: string): SidecarLanguageModel;
  /** The same as a LanguageModelV3, for `ai` 6. */
  languageModelV3(modelId: string): SidecarLanguageModelV3;
  /** An embedding model (`llm_embed`). */
  embeddingModel(modelId: string): SidecarEmbeddingModel;
  /** The sidecar makes no images: throws NoSuchModelError. */
  imageModel(modelId: string): never;
}

/**
 * The AI SDK provider for a sidecar:
 *
 * ```ts
 * const sidecar = createSidecar({ client });
 * const result = streamText({ model: sidecar("anthropic:claude-sonnet-4-5"), prompt: "Hi" });
 * ```
 */
export function createSidecar(options: SidecarProviderOptions): SidecarProvider {
  const { client } = options;
  const languageModel = (modelId: string): SidecarLanguageModel => new SidecarLanguageModel(client, modelId);
  const provider = (modelId: string): SidecarLanguageModel => languageModel(modelId);
  return Object.assign(provider, {
    specificationVersion: "v4" as const,
    languageModel,
    languageModelV3: (modelId: string) => new SidecarLanguageModelV3(client, modelId),
    embeddingModel: (modelId: string) => new SidecarEmbeddingModel(client, modelId),
    imageModel: (modelId: string): never => {
      throw new NoSuchModelError({ modelId, modelType: "imageModel", message: "the sidecar has no image models" });
    },
  });
}
