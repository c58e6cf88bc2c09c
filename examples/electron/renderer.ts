// The page: lists providers with a key (or needing none), streams a reply, stops it.
// It only sees `window.llm` (preload.cts); no Node, no sidecar client.
import type { LlmApi } from "./api.js";

declare global {
  interface Window {
    llm: LlmApi;
  }
}

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;
const modelSelect = $<HTMLSelectElement>("model");
const promptInput = $<HTMLInputElement>("prompt");
const output = $<HTMLPreElement>("output");
const statusLine = $<HTMLParagraphElement>("status");
let current: string | null = null;

window.llm.onStream((streamId, message) => {
  if (streamId !== current) return;
  if (message.type === "text_delta") output.textContent += message.text;
  else if (message.type === "done") {
    statusLine.textContent = `${message.model}: ${message.usage.output_tokens} tokens`;
    current = null;
  } else if (message.type === "error") {
    statusLine.textContent = message.error.code === "cancelled" ? "stopped" : message.error.message;
    current = null;
  }
});

$<HTMLFormElement>("form").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = promptInput.value.trim();
  if (!text || current) return;
  output.textContent += `\n> ${text}\n`;
  void window.llm
    .startStream({ model: modelSelect.value, messages: [{ role: "user", content: text }] })
    .then((id) => (current = id));
});

$<HTMLButtonElement>("stop").addEventListener("click", () => {
  if (current) void window.llm.abortStream(current);
});

for (const provider of await window.llm.listProviders()) {
  if (!provider.has_api_key && provider.requires_api_key !== false) continue;
  for (const model of await window.llm.listModels(provider.id)) modelSelect.add(new Option(model.name, model.id));
}
