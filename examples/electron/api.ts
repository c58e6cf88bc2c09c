// The IPC API between the main process (main.ts) and the page (renderer.ts), shared by
// both sides. Types only: the page never loads the client or Node modules, and the
// sandboxed preload can require nothing but "electron", so the channel names are spelled
// out in main.ts and preload.cts.
import type { Message, ModelInfo, ProviderInfo, SidecarErrorCode, StreamOutputEvent } from "llm-sidecar-client";

export interface StreamRequest {
  model: string;
  messages: Message[];
}

/** What a stream sends to the page: every event, then `done` or one `error`. */
export type StreamMessage = StreamOutputEvent | { type: "error"; error: StreamFailure };

/** Why a stream failed: the sidecar's error code (`cancelled` after an abort) or the client's. */
export interface StreamFailure {
  code: SidecarErrorCode;
  message: string;
}

/** `window.llm` in the page, as preload.cts exposes it. */
export interface LlmApi {
  listProviders(): Promise<ProviderInfo[]>;
  listModels(provider: string): Promise<ModelInfo[]>;
  saveApiKey(provider: string, apiKey: string): Promise<void>;
  /** Starts a stream; its events arrive through `onStream`. Resolves with its id. */
  startStream(request: StreamRequest): Promise<string>;
  abortStream(streamId: string): Promise<void>;
  /** Subscribes to every stream's events; returns the unsubscribe function. */
  onStream(listener: (streamId: string, message: StreamMessage) => void): () => void;
}

