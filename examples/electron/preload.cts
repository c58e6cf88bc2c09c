// The preload script: exposes `window.llm` (an LlmApi) to the page through contextBridge.
// It is CommonJS (.cts -> .cjs) because a sandboxed preload cannot be an ES module, and it
// requires nothing but "electron" because a sandboxed preload cannot require other files.
import { contextBridge, ipcRenderer, type IpcRendererEvent } from "electron";
import type { LlmApi, StreamMessage } from "./api.js";

const api: LlmApi = {
  listProviders: () => ipcRenderer.invoke("llm:list-providers"),
  listModels: (provider) => ipcRenderer.invoke("llm:list-models", provider),
  saveApiKey: (provider, apiKey) => ipcRenderer.invoke("llm:save-api-key", provider, apiKey),
  startStream: (request) => ipcRenderer.invoke("llm:start-stream", request),
  abortStream: (streamId) => ipcRenderer.invoke("llm:abort-stream", streamId),
  onStream(listener) {
    const forward = (_event: IpcRendererEvent, streamId: string, message: StreamMessage): void =>
      listener(streamId, message);
    ipcRenderer.on("llm:stream-event", forward);
    return () => {
      ipcRenderer.removeListener("llm:stream-event", forward);
    };
  },
};

contextBridge.exposeInMainWorld("llm", api);
