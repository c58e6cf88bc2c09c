/**
 * The Node.js transport: spawns the sidecar with `child_process.spawn` (Electron main
 * process, Node scripts, tests).
 *
 * ```ts
 * import { SidecarClient } from "llm-sidecar-client";
 * import { nodeProcess } from "llm-sidecar-client/node";
 * const client = await SidecarClient.connect(nodeProcess("python", ["-m", "sidecar"]));
 * ```
 */
import { spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { TransportEvents, type ExitInfo, type Transport } from "./transport.js";
import type { Chunk } from "./lines.js";

export type { ExitInfo, Transport } from "./transport.js";

/** Options of {@link nodeProcess}: `child_process.spawn` options (stdio excepted) plus stderr handling. */
export interface NodeProcessOptions extends Omit<SpawnOptions, "stdio"> {
  /**
   * The sidecar's stderr (its logs):
   * - `"inherit"` (default): passed through to this process's stderr;
   * - `"pipe"`: collected (the last `stderrTailBytes` are kept for error messages) and
   *   handed to `onStderr` if given;
   * - `"ignore"`: discarded.
   */
  stderr?: "inherit" | "pipe" | "ignore";
  /** Receives the sidecar's stderr text when `stderr` is `"pipe"`. */
  onStderr?: (text: string) => void;
  /** How much of stderr to keep for the exit message with `stderr: "pipe"` (default 4096 characters). */
  stderrTailBytes?: number;
  /** How long `close()` waits after SIGTERM before it sends SIGKILL (default 3000 ms). */
  killTimeoutMs?: number;
}

/** A Transport over a child process, with access to the process. */
export interface NodeProcessTransport extends Transport {
  /** The spawned process. */
  readonly child: ChildProcess;
  /** The last part of stderr collected so far (with `stderr: "pipe"`). */
  stderrTail(): string;
  /** Ends stdin, sends SIGTERM (SIGKILL after `killTimeoutMs`) and resolves once the process exited. */
  close(): Promise<void>;
}

/**
 * Spawns `command args` with piped stdin/stdout and returns it as a Transport. Spawning is
 * immediate; output is kept until the client listens, so pass the result straight to
 * `SidecarClient.connect`.
 */
export function nodeProcess(command: string, args: readonly string[] = [], options: NodeProcessOptions = {}): NodeProcessTransport {
  const { stderr = "inherit", onStderr, stderrTailBytes = 4096, killTimeoutMs = 3000, ...spawnOptions } = options;
  const events = new TransportEvents();
  let tail = "";
  const child = spawn(command, [...args], {
    windowsHide: true,
    ...spawnOptions,
    stdio: ["pipe", "pipe", stderr],
  });
  const exited = new Promise<void>((resolve) => {
    child.once("close", (code: number | null, signal: NodeJS.Signals | null) => {
      const info: ExitInfo = { code, signal };
      if (stderr === "pipe") info.stderr = tail;
      events.emitExit(info);
      resolve();
    });
    child.once("error", (error: Error) => {
      // Spawn failures (ENOENT, EACCES) come without a "close" in some Node versions.
      if (child.pid === undefined) {
        const info: ExitInfo = { code: null, error };
        if (stderr === "pipe") info.stderr = tail;
        events.emitExit(info);
        resolve();
      }
    });
  });
  child.stdout?.setEncoding("utf8");
  child.stdout?.on("data", (chunk: Chunk) => events.emitData(chunk));
  if (child.stderr) {
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (text: string) => {
      tail = (tail + text).slice(-stderrTailBytes);
      onStderr?.(text);
    });
  }
  // A write after the process died reports EPIPE here; the exit is reported by "close".
  child.stdin?.on("error", () => undefined);

  const isRunning = (): boolean => child.exitCode === null && child.signalCode === null && child.pid !== undefined;

  return {
    child,
    stderrTail: () => tail,
    send(line: string): Promise<void> {
      const stdin = child.stdin;
      if (!stdin || stdin.destroyed || !stdin.writable || events.exited) {
        return Promise.reject(new Error("the sidecar's stdin is closed"));
      }
      return new Promise<void>((resolve, reject) => {
        stdin.write(line, (error) => (error ? reject(error) : resolve()));
      });
    },
    onData: (listener) => events.onData(listener),
    onExit: (listener) => events.onExit(listener),
    async close(): Promise<void> {
      child.stdin?.end();
      if (isRunning()) {
        child.kill("SIGTERM");
        const timer = setTimeout(() => {
          if (isRunning()) child.kill("SIGKILL");
        }, killTimeoutMs);
        await exited;
        clearTimeout(timer);
      }
      await exited;
    },
  };
}
