// A typed usage example of llm-sidecar-client. It is type-checked (strict) by `npm test`
// (tsconfig.examples.json), against the package's own exports, exactly as an app sees them.
import {
  SidecarClient,
  SidecarError,
  TransportEvents,
  type Message,
  type ProviderInfo,
  type StreamOutputEvent,
  type Transport,
} from "llm-sidecar-client";
import { tauriSidecar } from "llm-sidecar-client/tauri";
import { nodeProcess } from "llm-sidecar-client/node";

declare function render(text: string): void;

export async function inTauri(): Promise<void> {
  const client = await SidecarClient.connect(tauriSidecar("binaries/llm-sidecar"));
  const providers: ProviderInfo[] = await client.listProviders();
  render(providers.map((p) => `${p.name} (${p.is_local ? "local" : "cloud"})`).join(", "));

  const messages: Message[] = [
    { role: "system", content: "Be brief." },
    { role: "user", content: [{ type: "text", text: "Hello!" }] },
  ];
  const ac = new AbortController();
  try {
    for await (const ev of client.streamText({ model: "anthropic:claude-sonnet-4-5", messages }, { signal: ac.signal })) {
      if (ev.type === "text_delta") render(ev.text); // ev is a discriminated union
      else if (ev.type === "tool_call") render(JSON.stringify(ev.arguments));
      else if (ev.type === "done") render(`${ev.finish_reason}: ${ev.usage.output_tokens} tokens`);
      // @ts-expect-error: error events are thrown as SidecarError, never yielded
      else if (ev.type === "error") render(ev.error.message);
    }
  } catch (e) {
    if (e instanceof SidecarError && e.data?.code === "missing_api_key") render("Add an API key first");
    else if (e instanceof SidecarError && e.data?.code === "cancelled") render("Stopped");
    else throw e;
  }
  await client.close();
}

export async function inNode(): Promise<string> {
  const client = await SidecarClient.connect(nodeProcess("llm-sidecar", [], { stderr: "pipe" }), { defaultTimeoutMs: 30_000 });
  const status = await client.getApiKey({ provider: "openai" });
  const preview: string | null = status.preview;
  await client.saveApiKey({ provider: "openai", api_key: "sk-..." }, { timeoutMs: 5000 });
  const active = await client.getActiveProvider(); // ActiveProvider | null
  const models = await client.listAvailableModels(); // params optional
  const result = await client.completeChat({ model: "mock:echo", messages: [{ role: "user", content: "hi" }] });
  const raw = await client.call("sidecar_info"); // typed by wire name too
  const future: unknown = await client.call("some_future_method", { x: 1 }); // not in the schema: unknown

  // Callback style.
  const handle = client.startStream(
    { model: "mock:echo", messages: [{ role: "user", content: "hi" }] },
    { onText: (t) => render(t), onError: (e) => render(e.message) },
  );
  const final = await handle.result;

  // Every notification, typed by name.
  const off = client.on(`llm-stream-${handle.streamId}`, (ev) => render(ev.type));
  off();

  // @ts-expect-error: params are checked (api_key is required)
  await client.saveApiKey({ provider: "openai" });
  // @ts-expect-error: wrong params for a known wire method
  await client.call("get_api_key", { id: "x" });
  // @ts-expect-error: methods without params take only call options
  await client.listProviders({ provider: "x" });

  const kinds: StreamOutputEvent["type"][] = ["start", "text_delta", "done"];
  await client.close();
  return [preview, active?.model, models.length, result.content, raw.version, future, final.text, kinds.length].join();
}

// A custom transport (the README's WebSocket bridge).
export function webSocketTransport(ws: WebSocket): Transport {
  const events = new TransportEvents();
  ws.addEventListener("message", (m) => events.emitData(String(m.data))); // any chunking
  ws.addEventListener("close", (e) => events.emitExit({ code: e.code }));
  return {
    send: (line) => ws.send(line), // one line, ending in "\n"
    onData: (l) => events.onData(l),
    onExit: (l) => events.onExit(l),
    close: () => ws.close(),
  };
}
