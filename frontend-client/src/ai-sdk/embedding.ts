// The sidecar's llm_embed as an AI SDK embedding model.
import type { EmbeddingModelV4, EmbeddingModelV4CallOptions, EmbeddingModelV4Result } from "@ai-sdk/provider";
import type { SidecarClient } from "../client.js";
import type { EmbedParams } from "../generated.js";
import { sdkError } from "./errors.js";
import { PROVIDER_KEY } from "./names.js";

/** A sidecar embedding model (`provider:model`, e.g. `openai:text-embedding-3-small`, `mock:embed`). */
export class SidecarEmbeddingModel implements EmbeddingModelV4 {
  readonly specificationVersion = "v4";
  readonly provider = PROVIDER_KEY;
  readonly modelId: string;
  /** No limit: the sidecar sends the inputs in batches of the provider's own limit. */
  readonly maxEmbeddingsPerCall = undefined;
  readonly supportsParallelCalls = true;
  private readonly client: SidecarClient;

  constructor(client: SidecarClient, modelId: string) {
    this.client = client;
    this.modelId = modelId;
  }

  async doEmbed(options: EmbeddingModelV4CallOptions): Promise<EmbeddingModelV4Result> {
    const params: EmbedParams = { model: this.modelId, input: options.values };
    if (options.dimensions !== undefined) params.dimensions = options.dimensions;
    const own = options.providerOptions?.[PROVIDER_KEY];
    if (own && typeof own.provider_options === "object" && own.provider_options !== null) {
      params.provider_options = own.provider_options as Record<string, unknown>;
    }
    const signal = options.abortSignal;
    try {
      const result = await this.client.embed(params, signal ? { signal } : {});
      return { embeddings: result.embeddings, usage: { tokens: result.usage.input_tokens }, warnings: [] };
    } catch (error) {
      throw sdkError(error, "llm_embed", params, signal);
    }
  }
}
