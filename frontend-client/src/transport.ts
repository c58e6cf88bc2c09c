import type { Chunk } from "./lines.js";

/** How the other side ended. */
export interface ExitInfo {
  /** Exit status, or null when killed by a signal or unknown. */
  code: number | null;
  /** The signal that ended the process, when known. */
  signal?: string | number | null;
  /** Why the transport ended, when it was not a normal exit (spawn failure, I/O error). */
  error?: unknown;
  /** The last part of the process's stderr, when the transport collected it. */
  stderr?: string;
}

/**
 * A byte pipe to a sidecar. Anything that can carry lines both ways works: a child process
 * (see `llm-sidecar-client/node` and `llm-sidecar-client/tauri`), an Electron
 * `utilityProcess`, a WebSocket bridge, an in-memory pair for tests.
 *
 * Contract for implementations:
 * - `send(line)` writes one protocol line; `line` already ends with `"\n"`. Writes must keep
 *   their order. Throw (or reject) when the line cannot be written.
 * - `onData(listener)` receives the other side's output in any chunking (partial lines,
 *   several lines, bytes); the client splits lines itself. Output that arrives before a
 *   listener is registered must be kept and delivered to it (see {@link TransportEvents}).
 * - `onExit(listener)` is called once, after the last data, when the other side is gone
 *   (also when it was gone before the listener was registered).
 * - `close()` ends the other side (kill the process, close the socket); idempotent.
 */
export interface Transport {
  send(line: string): void | Promise<void>;
  onData(listener: (chunk: Chunk) => void): void;
  onExit(listener: (info: ExitInfo) => void): void;
  close(): void | Promise<void>;
}

/**
 * The listener plumbing of a Transport: buffers data and the exit until the client has
 * registered its listeners, and delivers the exit only once. Transports call `emitData` and
 * `emitExit`, and forward `onData` / `onExit` to it.
 */
export class TransportEvents {
  private dataListeners: ((chunk: Chunk) => void)[] = [];
  private exitListeners: ((info: ExitInfo) => void)[] = [];
  private queued: Chunk[] = [];
  private exitInfo: ExitInfo | undefined;

  /** Whether the exit has been emitted. */
  get exited(): boolean {
    return this.exitInfo !== undefined;
  }

  emitData(chunk: Chunk): void {
    if (this.exitInfo) return;
    if (this.dataListeners.length === 0) {
      this.queued.push(chunk);
      return;
    }
    for (const listener of this.dataListeners) listener(chunk);
  }

  emitExit(info: ExitInfo): void {
    if (this.exitInfo) return;
    this.exitInfo = info;
    for (const listener of this.exitListeners) listener(info);
  }

  onData(listener: (chunk: Chunk) => void): void {
    this.dataListeners.push(listener);
    if (this.queued.length > 0) {
      const queued = this.queued;
      this.queued = [];
      for (const chunk of queued) listener(chunk);
    }
  }

  onExit(listener: (info: ExitInfo) => void): void {
    this.exitListeners.push(listener);
    const info = this.exitInfo;
    if (info) queueMicrotask(() => listener(info));
  }
}
