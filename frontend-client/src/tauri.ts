/**
 * The Tauri transport: runs the sidecar binary with `@tauri-apps/plugin-shell`'s
 * `Command.sidecar` (the binary must be listed in `bundle.externalBin` and allowed by a
 * `shell:allow-spawn` capability with `"sidecar": true`).
 *
 * ```ts
 * import { SidecarClient } from "llm-sidecar-client";
 * import { tauriSidecar } from "llm-sidecar-client/tauri";
 * const client = await SidecarClient.connect(tauriSidecar("binaries/llm-sidecar"));
 * ```
 */
import { Command, type Child, type SpawnOptions } from "@tauri-apps/plugin-shell";
import { TransportEvents, type Transport } from "./transport.js";

export type { ExitInfo, Transport } from "./transport.js";

/** Options of {@link tauriSidecar}: the shell plugin's spawn options plus a stderr hook. */
export interface TauriSidecarOptions extends SpawnOptions {
  /**
   * Receives the sidecar's stderr (its logs): in text mode one call per line, each ending in
   * exactly one `"\n"`; with `encoding: "raw"` the text as it arrives, decoded across reads.
   */
  onStderr?: (text: string) => void;
  /** How many characters of stderr to keep for the exit message (default 4096). */
  stderrTailBytes?: number;
}

/** A Transport over a Tauri shell-plugin child, with access to it. */
export interface TauriSidecarTransport extends Transport {
  /** The spawned child (`pid`, `write`, `kill`). */
  readonly child: Child;
  close(): Promise<void>;
}

type Output = string | Uint8Array | number[];

/**
 * Spawns the sidecar `program` (as configured in `bundle.externalBin`, e.g.
 * `"binaries/llm-sidecar"`) with `args` and returns it as a Transport.
 *
 * Output handling: in the default text encoding the shell plugin splits stdout into lines
 * itself (and may or may not keep the newline), so each `data` event is treated as one
 * whole line; with `encoding: "raw"` events are byte chunks cut anywhere, and the client's
 * line splitter reassembles them. Writes are serialized, so lines reach stdin whole and in
 * order.
 */
export async function tauriSidecar(
  program: string,
  args: string | string[] = [],
  options: TauriSidecarOptions = {},
): Promise<TauriSidecarTransport> {
  const { onStderr, stderrTailBytes = 4096, ...spawnOptions } = options;
  const events = new TransportEvents();
  let tail = "";
  const command = Command.sidecar(program, args, spawnOptions as SpawnOptions);
  command.stdout.on("data", (data: Output) => {
    if (typeof data === "string") {
      // One line per event in text mode: make sure it ends a line for the splitter.
      events.emitData(data.endsWith("\n") ? data : `${data}\n`);
    } else {
      events.emitData(data);
    }
  });
  // Raw stderr reads are cut anywhere, also inside a UTF-8 sequence: decode them as one stream.
  const stderrDecoder = new TextDecoder();
  const takeStderr = (text: string): void => {
    if (!text) return;
    tail = (tail + text).slice(-stderrTailBytes);
    onStderr?.(text);
  };
  command.stderr.on("data", (data: Output) => {
    if (typeof data === "string") {
      // One line per event in text mode, its "\n" kept by the plugin (a last line may lack one).
      takeStderr(data.endsWith("\n") ? data : `${data}\n`);
    } else {
      takeStderr(stderrDecoder.decode(Uint8Array.from(data), { stream: true }));
    }
  });
  command.on("close", (payload: { code: number | null; signal: number | null }) => {
    takeStderr(stderrDecoder.decode()); // an incomplete sequence left at the end
    events.emitExit({ code: payload.code, signal: payload.signal, stderr: tail });
  });
  command.on("error", (error: string) => {
    // An I/O error reading a pipe; the process may still run. Keep it for the exit message.
    tail = `${tail}[shell plugin error] ${error}\n`.slice(-stderrTailBytes);
  });
  const child = await command.spawn();

  let writes: Promise<void> = Promise.resolve();
  let closed = false;
  return {
    child,
    send(line: string): Promise<void> {
      if (closed || events.exited) return Promise.reject(new Error("the sidecar is not running"));
      const write = writes.then(() => child.write(line));
      writes = write.catch(() => undefined);
      return write;
    },
    onData: (listener) => events.onData(listener),
    onExit: (listener) => events.onExit(listener),
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      if (events.exited) return;
      try {
        await child.kill();
      } catch {
        // already gone
      }
    },
  };
}
