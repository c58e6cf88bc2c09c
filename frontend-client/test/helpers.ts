import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { SidecarClient, type ConnectOptions } from "llm-sidecar-client";
import { nodeProcess, type NodeProcessOptions, type NodeProcessTransport } from "llm-sidecar-client/node";

/** frontend-client/ (tests run from build/test/). */
export const packageRoot = fileURLToPath(new URL("../../", import.meta.url));
/** The repository root, where the Python package lives. */
export const repoRoot = path.resolve(packageRoot, "..");
/** The Python that runs the sidecar (`SIDECAR_PYTHON`, default ../.venv/bin/python). */
export const sidecarPython = process.env.SIDECAR_PYTHON
  ? path.resolve(packageRoot, process.env.SIDECAR_PYTHON)
  : path.join(repoRoot, ".venv", "bin", "python");
export const sidecarArgs = ["-m", "sidecar"];

const dataDirs: string[] = [];
process.on("exit", () => {
  for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true });
});

/** Environment for a test sidecar: no keychain, a fresh data dir. */
export function sidecarEnv(): NodeJS.ProcessEnv {
  const dataDir = mkdtempSync(path.join(tmpdir(), "llm-sidecar-client-test-"));
  dataDirs.push(dataDir);
  return {
    ...process.env,
    PYTHON_KEYRING_BACKEND: "keyring.backends.null.Keyring",
    LLM_SIDECAR_DATA_DIR: dataDir,
    LLM_SIDECAR_LOG_LEVEL: process.env.LLM_SIDECAR_LOG_LEVEL ?? "warning",
  };
}

/** Spawns the real Python sidecar with the Node transport. */
export function spawnSidecar(options: NodeProcessOptions = {}): NodeProcessTransport {
  return nodeProcess(sidecarPython, sidecarArgs, { cwd: repoRoot, env: sidecarEnv(), stderr: "pipe", ...options });
}

/** Spawns and connects; the caller closes. */
export async function connectSidecar(
  options: ConnectOptions = {},
): Promise<{ client: SidecarClient; transport: NodeProcessTransport }> {
  const transport = spawnSidecar();
  const client = await SidecarClient.connect(transport, options);
  return { client, transport };
}

/** A small seeded PRNG (mulberry32), so random tests are reproducible. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export function user(text: string): { role: "user"; content: string } {
  return { role: "user", content: text };
}
