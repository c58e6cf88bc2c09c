// The sidecar as an AI SDK language model (specification v4, and v3 for `ai` 6).
import type {
  LanguageModelV3,
  LanguageModelV3CallOptions,
  LanguageModelV3GenerateResult,
  LanguageModelV3StreamResult,
  LanguageModelV4,
  LanguageModelV4CallOptions,
  LanguageModelV4GenerateResult,
  LanguageModelV4StreamPart,
  LanguageModelV4StreamResult,
} from "@ai-sdk/provider";
import type { SidecarClient } from "../client.js";
import type { CompleteChatResult } from "../generated.js";
import { randomId } from "../ids.js";
import type { StreamOutputEvent } from "../stream.js";
import { sdkError } from "./errors.js";
import { PROVIDER_KEY } from "./names.js";
import { toParams } from "./options.js";
import { PartMapper, contentOf, doneMetadata, finishReason, usageOf } from "./parts.js";

/**
 * A sidecar model (`provider:model`, e.g. `anthropic:claude-sonnet-4-5`, `mock:echo`) as an AI
 * SDK LanguageModelV4: `doStream` runs `llm_stream_text`, `doGenerate` runs `complete_chat`; the
 * SDK's abort signal aborts either in the sidecar (`llm_abort_stream`).
 */
export class SidecarLanguageModel implements LanguageModelV4 {
  readonly specificationVersion = "v4";
  readonly provider = PROVIDER_KEY;
  readonly modelId: string;
  /** None: the SDK downloads URLs and hands over the bytes (the sidecar sends images inline). */
  readonly supportedUrls: Record<string, RegExp[]> = {};
  private readonly client: SidecarClient;

  constructor(client: SidecarClient, modelId: string) {
    this.client = client;
    this.modelId = modelId;
  }

  async doGenerate(options: LanguageModelV4CallOptions): Promise<LanguageModelV4GenerateResult> {
    const { params, warnings } = toParams(options, this.modelId);
    // With a stream_id, llm_abort_stream cancels complete_chat in the sidecar too.
    params.stream_id = randomId();
    const signal = options.abortSignal;
    const abort = (): void => void this.client.abortStream({ stream_id: params.stream_id as string }).catch(() => undefined);
    signal?.addEventListener("abort", abort, { once: true });
    let result: CompleteChatResult;
    try {
      result = await this.client.completeChat(params, signal ? { signal } : {});
    } catch (error) {
      throw sdkError(error, "complete_chat", params, signal);
    } finally {
      signal?.removeEventListener("abort", abort);
    }
    return {
      content: contentOf(result),
      finishReason: finishReason(result.finish_reason),
      usage: usageOf(result.usage),
      providerMetadata: doneMetadata(result),
      warnings,
      request: { body: params },
      response: { modelId: result.model, timestamp: new Date() },
    };
  }

  async doStream(options: LanguageModelV4CallOptions): Promise<LanguageModelV4StreamResult> {
    const { params, warnings } = toParams(options, this.modelId);
    const signal = options.abortSignal;
    const events = this.client.streamText(params, signal ? { signal } : {})[Symbol.asyncIterator]();
    // The first event comes once the sidecar took the request: a refusal rejects doStream itself.
    let next: IteratorResult<StreamOutputEvent> | undefined;
    try {
      next = await events.next();
    } catch (error) {
      throw sdkError(error, "llm_stream_text", params, signal);
    }
    const mapper = new PartMapper(warnings, options.includeRawChunks === true);
    const stream = new ReadableStream<LanguageModelV4StreamPart>({
      async pull(controller) {
        try {
          // Some events give no part yet (held behind stream-start): read on until one does.
          for (;;) {
            const item = next ?? (await events.next());
            next = undefined;
            if (item.done) {
              controller.close();
              return;
            }
            const parts = mapper.event(item.value);
            for (const part of parts) controller.enqueue(part);
            if (item.value.type === "done") {
              controller.close();
              return;
            }
            if (parts.length > 0) return;
          }
        } catch (error) {
          const mapped = sdkError(error, "llm_stream_text", params, signal);
          if (signal?.aborted) {
            controller.error(mapped);
            return;
          }
          for (const part of mapper.failed(mapped)) controller.enqueue(part);
          controller.close();
        }
      },
      async cancel() {
        await events.return?.(); // aborts the sidecar stream
      },
    });
    return { stream, request: { body: params } };
  }
}

/**
 * The same model for `ai` 6 (LanguageModelV3). The v3 interface differs from v4 where this model
 * does not reach: v3's file parts carry bytes or a URL untagged (read either way), and the parts and
 * finish reasons this model produces exist in both.
 */
export class SidecarLanguageModelV3 implements LanguageModelV3 {
  readonly specificationVersion = "v3";
  readonly provider = PROVIDER_KEY;
  readonly modelId: string;
  readonly supportedUrls: Record<string, RegExp[]> = {};
  private readonly model: SidecarLanguageModel;

  constructor(client: SidecarClient, modelId: string) {
    this.modelId = modelId;
    this.model = new SidecarLanguageModel(client, modelId);
  }

  doGenerate(options: LanguageModelV3CallOptions): Promise<LanguageModelV3GenerateResult> {
    return this.model.doGenerate(options as unknown as LanguageModelV4CallOptions) as unknown as Promise<LanguageModelV3GenerateResult>;
  }

  doStream(options: LanguageModelV3CallOptions): Promise<LanguageModelV3StreamResult> {
    return this.model.doStream(options as unknown as LanguageModelV4CallOptions) as unknown as Promise<LanguageModelV3StreamResult>;
  }
}
