// The webview side of the Tauri example: start the sidecar, list providers and their
// models, stream a reply into the page, stop it with an AbortController.
import { SidecarClient, SidecarError, type Message } from "llm-sidecar-client";
import { tauriSidecar } from "llm-sidecar-client/tauri";
import { invoke } from "@tauri-apps/api/core";
import { appDataDir } from "@tauri-apps/api/path";

// The same string as `identifier` in tauri.conf.json and as the allowed
// `--keyring-service` argument in capabilities/default.json: keys this app saves live
// in the OS keychain under this service name.
const APP_IDENTIFIER = "com.example.llmchat";

function element<T extends HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing`);
  return el as T;
}

const form = element<HTMLFormElement>("form");
const modelSelect = element<HTMLSelectElement>("model");
const promptInput = element<HTMLInputElement>("prompt");
const stopButton = element<HTMLButtonElement>("stop");
const statusLine = element<HTMLParagraphElement>("status");
const output = element<HTMLPreElement>("output");

async function startSidecar(): Promise<SidecarClient> {
  // The arguments must match the capability's `args` exactly, in this order; the
  // shell plugin refuses to spawn anything else.
  const args = [
    "--data-dir", await appDataDir(),
    "--keyring-service", APP_IDENTIFIER,
    "--parent-pid", String(await invoke<number>("app_pid")), // see src-tauri/src/main.rs
  ];
  return SidecarClient.connect(
    tauriSidecar("binaries/llm-sidecar", args, { onStderr: (line) => console.debug("[sidecar]", line) }),
  );
}

async function fillModels(client: SidecarClient): Promise<void> {
  const providers = await client.listProviders();
  // A provider is usable when it needs no key (local servers, mock) or has one
  // (saved in the keychain, or in its environment variable).
  const usable = providers.filter((p) => p.has_api_key || p.requires_api_key === false);
  for (const provider of usable) {
    const models = await client.listAvailableModels({ provider: provider.id }).catch(() => []);
    for (const model of models) {
      modelSelect.add(new Option(`${provider.name}: ${model.name}`, model.id));
    }
  }
  statusLine.textContent = `${usable.length} of ${providers.length} providers ready`;
}

async function main(): Promise<void> {
  const client = await startSidecar();
  statusLine.textContent = `sidecar ${client.ready?.version ?? "?"} started`;
  await fillModels(client);

  const history: Message[] = [];
  let current: AbortController | null = null;
  stopButton.addEventListener("click", () => current?.abort());

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = promptInput.value.trim();
    if (!text || current) return;
    promptInput.value = "";
    history.push({ role: "user", content: text });
    output.textContent += `\n> ${text}\n`;

    const ac = new AbortController();
    current = ac;
    stopButton.disabled = false;
    void (async () => {
      let reply = "";
      try {
        for await (const ev of client.streamText({ model: modelSelect.value, messages: history }, { signal: ac.signal })) {
          if (ev.type === "text_delta") {
            reply += ev.text;
            output.textContent += ev.text;
          } else if (ev.type === "retry") {
            statusLine.textContent = `retrying (${ev.reason})...`;
          } else if (ev.type === "done") {
            statusLine.textContent = `${ev.model}: ${ev.usage.output_tokens} tokens in ${Math.round(ev.latency_ms)} ms`;
          }
        }
        history.push({ role: "assistant", content: reply });
      } catch (e) {
        // Error events are thrown, never yielded; an abort ends with code "cancelled".
        if (e instanceof SidecarError && e.data?.code === "cancelled") statusLine.textContent = "stopped";
        else if (e instanceof SidecarError && e.data?.code === "missing_api_key") statusLine.textContent = "add an API key first";
        else statusLine.textContent = e instanceof Error ? e.message : String(e);
        history.pop(); // forget the unanswered question
      } finally {
        current = null;
        stopButton.disabled = true;
      }
    })();
  });

  // Ask the sidecar to exit when the window goes; `--parent-pid` covers every other ending.
  window.addEventListener("beforeunload", () => void client.close());
}

main().catch((e: unknown) => {
  statusLine.textContent = `could not start the sidecar: ${e instanceof Error ? e.message : String(e)}`;
});
