import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { SidecarClient, type ConnectOptions } from "llm-sidecar-client";
import { nodeProcess, type NodeProcessOptions, type NodeProcessTransport } from "llm-sidecar-client/node";

/** frontend-client/ (tests run from build/test/). */
export const packageRoot = fileURLToPath(new URL("../../", import.meta.url));
/** The repository root, where the Python package lives. */
export const repoRoot = path.resolve(packageRoot, "..");
const venvPython = path.join(repoRoot, ".venv", process.platform === "win32" ? "Scripts/python.exe" : "bin/python");

/** The first `names` found on PATH, as an absolute path. */
function onPath(...names: string[]): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(path.delimiter).filter(Boolean)) {
    for (const name of names) {
      const candidate = path.join(dir, name);
      if (existsSync(candidate)) return candidate;
    }
  }
  return undefined;
}

/**
 * The Python that runs the sidecar: `SIDECAR_PYTHON` (relative to frontend-client/) when set,
 * else ../.venv's (what scripts/setup.sh makes), else python3/python on PATH. Always absolute.
 */
export const sidecarPython = process.env.SIDECAR_PYTHON
  ? path.resolve(packageRoot, process.env.SIDECAR_PYTHON)
  : existsSync(venvPython)
    ? venvPython
    : (onPath("python3", "python", "python.exe") ?? venvPython);
export const sidecarArgs = ["-m", "sidecar"];

/** CI=true (or any value but "", "0", "false"): tests that need the sidecar must fail, not skip. */
export const inCI = !["", "0", "false"].includes((process.env.CI ?? "").toLowerCase());

let sidecarProblemMemo: string | false | undefined;

/** Why `sidecarPython -m sidecar` cannot run here, or false when it can (checked once per process). */
export function sidecarProblem(): string | false {
  if (sidecarProblemMemo !== undefined) return sidecarProblemMemo;
  const source = process.env.SIDECAR_PYTHON ? `SIDECAR_PYTHON=${process.env.SIDECAR_PYTHON}` : "no SIDECAR_PYTHON";
  const probe = spawnSync(sidecarPython, ["-c", "import sidecar.app"], { cwd: repoRoot, encoding: "utf8", timeout: 60_000 });
  if (probe.error || probe.status !== 0) {
    const why = probe.error ? probe.error.message : (probe.stderr.trim().split("\n").at(-1) ?? `exit ${String(probe.status)}`);
    sidecarProblemMemo =
      `the Python sidecar cannot run: ${sidecarPython} -c "import sidecar.app" (cwd ${repoRoot}, ${source}) failed: ${why}. ` +
      "Run scripts/setup.sh --dev at the repository root (it makes .venv), or set SIDECAR_PYTHON to a Python " +
      "that has the sidecar's dependencies";
  } else {
    sidecarProblemMemo = false;
  }
  return sidecarProblemMemo;
}

/**
 * `describe` for a suite that needs something this machine may lack (`problem`: why it can't
 * run, or false). Locally it is skipped with that reason; under CI one failing test says why
 * instead, since a skip there would hide the suite.
 */
export function describeNeeding(problem: string | false, name: string, fn: () => void): void {
  if (!problem) {
    describe(name, fn);
  } else if (inCI) {
    describe(name, () => {
      it("can run here", () => {
        throw new Error(`${problem} (CI is set, so this fails instead of skipping)`);
      });
    });
  } else {
    describe(name, { skip: problem }, fn);
  }
}

/** `describe` for suites that run the real Python sidecar; see {@link describeNeeding}. */
export function describeWithSidecar(name: string, fn: () => void): void {
  describeNeeding(sidecarProblem(), name, fn);
}

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

/** Spawns the real Python sidecar with the Node transport (`extraArgs` after `-m sidecar`). */
export function spawnSidecar(options: NodeProcessOptions = {}, extraArgs: string[] = []): NodeProcessTransport {
  return nodeProcess(sidecarPython, [...sidecarArgs, ...extraArgs], { cwd: repoRoot, env: sidecarEnv(), stderr: "pipe", ...options });
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
