// The Electron main process: runs the sidecar, serves a small IPC API to the page
// (see api.ts and preload.cts) and forwards stream events with webContents.send.
import path from "node:path";
import { fileURLToPath } from "node:url";
import { app, BrowserWindow, ipcMain, type WebContents } from "electron";
import { SidecarClient, SidecarError, randomId } from "llm-sidecar-client";
import { nodeProcess } from "llm-sidecar-client/node";
import type { StreamFailure, StreamMessage, StreamRequest } from "./api.js";

const APP_ID = "com.example.llmchat"; // also the keychain service the keys are saved under
const here = path.dirname(fileURLToPath(import.meta.url));

/** The sidecar binary: shipped with electron-builder's `extraResources`, or on PATH in development. */
function sidecarPath(): string {
  const exe = process.platform === "win32" ? ".exe" : "";
  if (app.isPackaged) return path.join(process.resourcesPath, `llm-sidecar${exe}`);
  return process.env["LLM_SIDECAR_BIN"] ?? "llm-sidecar"; // e.g. the console script of `pip install -e .`
}

let client: SidecarClient | undefined;
const streams = new Map<string, AbortController>();

function send(target: WebContents, streamId: string, message: StreamMessage): void {
  if (!target.isDestroyed()) target.send("llm:stream-event", streamId, message);
}

/** Runs one stream, forwarding each event to the page that asked for it. */
async function pump(sidecar: SidecarClient, target: WebContents, streamId: string, request: StreamRequest, ac: AbortController): Promise<void> {
  try {
    const params = { stream_id: streamId, model: request.model, messages: request.messages };
    for await (const ev of sidecar.streamText(params, { signal: ac.signal })) send(target, streamId, ev);
  } catch (e) {
    // A stream's error (including "cancelled" after an abort) is thrown; the page gets it as an event.
    const error: StreamFailure = {
      code: e instanceof SidecarError ? (e.errorCode ?? "internal") : "internal",
      message: e instanceof Error ? e.message : String(e),
    };
    send(target, streamId, { type: "error", error });
  } finally {
    streams.delete(streamId);
  }
}

function serveIpc(sidecar: SidecarClient): void {
  ipcMain.handle("llm:list-providers", () => sidecar.listProviders());
  ipcMain.handle("llm:list-models", (_event, provider: string) => sidecar.listAvailableModels({ provider }));
  ipcMain.handle("llm:save-api-key", async (_event, provider: string, apiKey: string) => {
    await sidecar.saveApiKey({ provider, api_key: apiKey }); // the key goes to the OS keychain
  });
  ipcMain.handle("llm:start-stream", (event, request: StreamRequest) => {
    const streamId = randomId();
    const ac = new AbortController();
    streams.set(streamId, ac);
    void pump(sidecar, event.sender, streamId, request, ac);
    return streamId;
  });
  ipcMain.handle("llm:abort-stream", (_event, streamId: string) => {
    streams.get(streamId)?.abort();
  });
}

async function start(): Promise<void> {
  await app.whenReady();
  client = await SidecarClient.connect(
    nodeProcess(sidecarPath(), [
      "--data-dir", app.getPath("userData"),
      "--keyring-service", APP_ID,
      "--parent-pid", String(process.pid), // the sidecar exits when this process does, even after a crash
    ]),
  );
  serveIpc(client);

  const win = new BrowserWindow({
    width: 800,
    height: 600,
    title: "LLM Chat",
    webPreferences: { preload: path.join(here, "preload.cjs"), contextIsolation: true, sandbox: true, nodeIntegration: false },
  });
  await win.loadFile(path.join(here, "index.html"));
}

app.on("window-all-closed", () => app.quit());

// Stop the sidecar cleanly before quitting: `shutdown`, wait for it to exit (kill after a timeout).
let closing = false;
app.on("before-quit", (event) => {
  if (closing || !client) return;
  closing = true;
  event.preventDefault();
  void client.close().finally(() => app.quit());
});

start().catch((e: unknown) => {
  console.error("could not start:", e);
  app.quit();
});
