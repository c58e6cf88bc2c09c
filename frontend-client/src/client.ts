import { RpcErrorCode, SidecarError } from "./errors.js";
import { ChatLoopStream, runChatLoop, type ChatLoopOptions, type ChatLoopResult } from "./chat-loop.js";
import {
  PROTOCOL_VERSION,
  SIDECAR_METHODS,
  type ChatLoopParams,
  type ChatLoopStarted,
  type SidecarMethodFunctions,
  type SidecarMethodName,
  type SidecarMethods,
  type SidecarNotifications,
  type OAuthFlowEvent,
  type OAuthSignInStarted,
  type SidecarReady,
  type StreamEvent,
  type StreamTextParams,
} from "./generated.js";
import { randomId } from "./ids.js";
import { LineSplitter, type Chunk } from "./lines.js";
import { SidecarStream, type StreamEventOf, type StreamOutputEvent, type StreamResult } from "./stream.js";
import type { ExitInfo, Transport } from "./transport.js";

export type { StreamEventOf, StreamEventType, StreamOutputEvent, StreamResult } from "./stream.js";

// ---------------------------------------------------------------------------------------------
// Types derived from the generated schema types
// ---------------------------------------------------------------------------------------------

/** A notification name the schema knows (`sidecar-ready`, `llm-stream-${string}`, ...). */
export type NotificationName = keyof SidecarNotifications & string;
/** The params of a notification. */
export type NotificationParams<N extends NotificationName> = SidecarNotifications[N];

/** The params of a method. */
export type MethodParams<M extends SidecarMethodName> = SidecarMethods[M]["params"];
/** The result of a method. */
export type MethodResult<M extends SidecarMethodName> = SidecarMethods[M]["result"];
/** The arguments of `call(method, ...)`: params are optional when the method needs none. */
export type CallArgs<M extends SidecarMethodName> =
  {} extends MethodParams<M>
    ? [params?: MethodParams<M>, options?: CallOptions]
    : [params: MethodParams<M>, options?: CallOptions];

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

/** Options of {@link SidecarClient.signIn}. */
export interface SignInOptions {
  /**
   * Called once the sign-in started, with what the user needs: for `kind: "device"` show `user_code` and
   * `verification_uri` (the user types the code there); for `kind: "browser"` open `authorize_url` in the
   * user's browser (the sidecar never opens windows). A throw here cancels the sign-in.
   */
  onCode?: (started: OAuthSignInStarted) => void;
  /** Called for each `pending` notification (still waiting for the user). */
  onPending?: () => void;
  /** Cancels the sign-in (`oauth_sign_in_cancel`); `signIn` then rejects with SidecarError `cancelled`. */
  signal?: AbortSignal;
}

/** What {@link SidecarClient.signIn} resolves with. */
export interface SignedIn {
  flowId: string;
  /** Who signed in, when the provider says (an e-mail, a login). */
  account?: string;
}

/** Options of one call. */
export interface CallOptions {
  /**
   * Fail with a SidecarError `timeout` (local) when no answer came within this many
   * milliseconds. Default: the client's `defaultTimeoutMs` (none unless set). The sidecar is
   * not told; a late answer is dropped.
   */
  timeoutMs?: number;
  /** Fail with a SidecarError `cancelled` (local) when this signal fires. */
  signal?: AbortSignal;
}

/** Options of `SidecarClient.connect`. */
export interface ConnectOptions {
  /** How long to wait for `sidecar-ready` (default 30000 ms: a one-file binary unpacks first). */
  readyTimeoutMs?: number;
  /** Default `timeoutMs` of every call (default: none). */
  defaultTimeoutMs?: number;
  /** Refuse a sidecar that announces another protocol version (default true). */
  checkProtocolVersion?: boolean;
  /** Called for a stdout line that is not JSON (a sidecar bug; ignored otherwise). */
  onInvalidLine?: (line: string, error: unknown) => void;
}

/** Options of `streamText`. */
export interface StreamOptions {
  /**
   * Aborts the stream: the client calls `llm_abort_stream`, and the stream ends by throwing
   * the sidecar's SidecarError `cancelled` (or a local one if the sidecar does not confirm
   * within `abortTimeoutMs`).
   */
  signal?: AbortSignal;
  /** Timeout of the `llm_stream_text` request itself (not of the whole stream). */
  timeoutMs?: number;
  /** How long to wait for the sidecar's `cancelled` event after an abort (default 5000 ms). */
  abortTimeoutMs?: number;
}

/** Callbacks of `startStream`. */
export interface StreamHandlers extends StreamOptions {
  /** Every event except `error`, in seq order. */
  onEvent?: (event: StreamOutputEvent) => void;
  onStart?: (event: StreamEventOf<"start">) => void;
  onText?: (text: string, event: StreamEventOf<"text_delta">) => void;
  onReasoning?: (text: string, event: StreamEventOf<"reasoning_delta">) => void;
  onToolCall?: (call: StreamEventOf<"tool_call">) => void;
  onDone?: (result: StreamResult) => void;
  /** The stream failed: an `error` event (code `cancelled` after `abort()`), a failed start, or the process exited. */
  onError?: (error: SidecarError) => void;
}

/** A running `startStream`. */
export interface StreamHandle {
  readonly streamId: string;
  /** Abort the stream (`llm_abort_stream`); `result` then rejects with a `cancelled` SidecarError. */
  abort(): void;
  /** Resolves with the final result after `done`; rejects with the SidecarError that ended it. */
  readonly result: Promise<StreamResult>;
}

/** Options of `close`. */
export interface CloseOptions {
  /** How long to wait for the process to exit after `shutdown` before killing it (default 3000 ms). */
  timeoutMs?: number;
}

// ---------------------------------------------------------------------------------------------
// Internals
// ---------------------------------------------------------------------------------------------

type Timer = ReturnType<typeof setTimeout>;
type Listener = (params: unknown) => void;

interface Pending {
  method: string;
  resolve: (value: unknown) => void;
  reject: (error: SidecarError) => void;
  cleanup: () => void;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** A controller that aborts when `outer` does (at once if it has), and how to stop listening to `outer`. */
function linkedController(outer: AbortSignal | undefined): [AbortController, () => void] {
  const controller = new AbortController();
  const forward = (): void => controller.abort(outer?.reason);
  if (outer?.aborted) forward();
  else outer?.addEventListener("abort", forward, { once: true });
  return [controller, () => outer?.removeEventListener("abort", forward)];
}

function reportAsync(error: unknown): void {
  const report = (globalThis as { reportError?: (e: unknown) => void }).reportError;
  if (typeof report === "function") report(error);
  else
    setTimeout(() => {
      throw error;
    }, 0);
}

function describeExit(info: ExitInfo): string {
  const how =
    info.error !== undefined
      ? `failed (${info.error instanceof Error ? info.error.message : String(info.error)})`
      : info.signal !== undefined && info.signal !== null
        ? `was killed by signal ${String(info.signal)}`
        : `exited with code ${info.code === null ? "unknown" : String(info.code)}`;
  const stderr = info.stderr?.trim();
  return `the sidecar ${how}${stderr ? `; its stderr ended with:\n${stderr}` : ""}`;
}

/** A queue that a single async consumer reads; a failure is delivered after the queued items. */
class Queue<T> {
  private items: T[] = [];
  private failure: { error: unknown } | undefined;
  private waiter: { resolve: (item: T) => void; reject: (error: unknown) => void } | undefined;

  push(item: T): void {
    if (this.failure) return;
    const waiter = this.waiter;
    if (waiter) {
      this.waiter = undefined;
      waiter.resolve(item);
    } else this.items.push(item);
  }

  fail(error: unknown): void {
    if (this.failure) return;
    this.failure = { error };
    const waiter = this.waiter;
    if (waiter && this.items.length === 0) {
      this.waiter = undefined;
      waiter.reject(error);
    }
  }

  next(): Promise<T> {
    if (this.items.length > 0) return Promise.resolve(this.items.shift() as T);
    if (this.failure) return Promise.reject(this.failure.error);
    return new Promise<T>((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }
}

// ---------------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------------

// One typed camelCase method per RPC method (`listProviders`, `saveApiKey`, `completeChat`, ...),
// declared by the generated `SidecarMethodFunctions` and installed on the prototype below.
// `streamText` (for `llm_stream_text`) is hand-written: it streams the events.
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export interface SidecarClient extends Omit<SidecarMethodFunctions<CallOptions>, "streamText"> {}

/**
 * A JSON-RPC 2.0 client for the llm-sidecar over any {@link Transport}.
 *
 * ```ts
 * const client = await SidecarClient.connect(nodeProcess("llm-sidecar"));
 * const providers = await client.listProviders();
 * for await (const ev of client.streamText({ model: "mock:echo", messages })) { ... }
 * await client.close();
 * ```
 */
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export class SidecarClient {
  /** Resolves when the sidecar has exited (or the transport closed). */
  readonly exited: Promise<ExitInfo>;

  private readonly transport: Transport;
  private readonly options: ConnectOptions;
  private readonly splitter = new LineSplitter();
  private readonly pending = new Map<number, Pending>();
  private readonly listeners = new Map<string, Set<Listener>>();
  private readonly anyListeners = new Set<(method: string, params: unknown) => void>();
  private readonly failureListeners = new Set<(error: SidecarError) => void>();
  private nextId = 1;
  private exitInfo: ExitInfo | undefined;
  private failure: SidecarError | undefined;
  private closing: Promise<ExitInfo> | undefined;
  private resolveExited!: (info: ExitInfo) => void;
  private readyWaiter: Promise<SidecarReady>;
  private readyInfo: SidecarReady | undefined;

  /** Wraps a transport; prefer {@link SidecarClient.connect}, which also waits for `sidecar-ready`. */
  constructor(transport: Transport, options: ConnectOptions = {}) {
    this.transport = transport;
    this.options = options;
    this.exited = new Promise<ExitInfo>((resolve) => {
      this.resolveExited = resolve;
    });
    // Subscribe before the transport hands over what it buffered, so the ready line is seen.
    this.readyWaiter = new Promise<SidecarReady>((resolve, reject) => {
      const off = this.on("sidecar-ready", (params) => {
        off();
        offFailure();
        this.readyInfo = params;
        resolve(params);
      });
      const offFailure = this.onFailure((error) => {
        off();
        offFailure();
        reject(error);
      });
    });
    this.readyWaiter.catch(() => undefined);
    transport.onData((chunk) => this.handleData(chunk));
    transport.onExit((info) => this.handleExit(info));
  }

  /**
   * Starts using a sidecar: waits for its `sidecar-ready` notification (and checks its
   * protocol version). On failure the transport is closed and a SidecarError is thrown
   * (`timeout`, `sidecar_exited` with the exit code and stderr tail, or `protocol_error`).
   */
  static async connect(
    transport: Transport | PromiseLike<Transport>,
    options: ConnectOptions = {},
  ): Promise<SidecarClient> {
    const client = new SidecarClient(await transport, options);
    try {
      await client.waitReady(options.readyTimeoutMs ?? 30_000);
      return client;
    } catch (error) {
      await client.close({ timeoutMs: 0 });
      throw error;
    }
  }

  /** Waits for `sidecar-ready` (already received after `connect`). */
  async waitReady(timeoutMs = 30_000): Promise<SidecarReady> {
    let timer: Timer | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(SidecarError.local("timeout", `no sidecar-ready within ${timeoutMs} ms`, { retryable: true })),
        timeoutMs,
      );
    });
    try {
      const ready = await Promise.race([this.readyWaiter, timeout]);
      if ((this.options.checkProtocolVersion ?? true) && ready.protocol_version !== PROTOCOL_VERSION) {
        throw SidecarError.local(
          "protocol_error",
          `the sidecar speaks protocol ${ready.protocol_version}; this client speaks ${PROTOCOL_VERSION}`,
        );
      }
      return ready;
    } finally {
      clearTimeout(timer);
    }
  }

  /** The `sidecar-ready` params (version, protocol version, pid); set once connected. */
  get ready(): SidecarReady | undefined {
    return this.readyInfo;
  }

  /** Whether the sidecar has exited (or the transport closed). */
  get isClosed(): boolean {
    return this.exitInfo !== undefined;
  }

  // --- calls ---------------------------------------------------------------------------

  /** Calls a method by its wire name, with typed params and result. */
  call<M extends SidecarMethodName>(method: M, ...args: CallArgs<M>): Promise<MethodResult<M>>;
  /** Calls a method the generated schema does not know (yet); the result is `unknown`. */
  call<M extends string>(
    method: M extends SidecarMethodName ? never : M,
    params?: Record<string, unknown> | unknown[],
    options?: CallOptions,
  ): Promise<unknown>;
  call(method: string, params?: unknown, options?: CallOptions): Promise<unknown> {
    return this.request(method, params, options);
  }

  private request(method: string, params: unknown, options: CallOptions = {}): Promise<unknown> {
    if (this.failure) {
      return Promise.reject(
        SidecarError.local("sidecar_exited", this.failure.message, { method, cause: this.failure }),
      );
    }
    const { signal } = options;
    if (signal?.aborted) {
      return Promise.reject(SidecarError.local("cancelled", `${method} was aborted`, { method, cause: signal.reason }));
    }
    const id = this.nextId++;
    const message =
      params === undefined ? { jsonrpc: "2.0", id, method } : { jsonrpc: "2.0", id, method, params };
    const line = `${JSON.stringify(message)}\n`;
    return new Promise<unknown>((resolve, reject) => {
      let timer: Timer | undefined;
      const onAbort = (): void => {
        settle();
        reject(SidecarError.local("cancelled", `${method} was aborted`, { method, cause: signal?.reason }));
      };
      const settle = (): void => {
        this.pending.delete(id);
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
      };
      this.pending.set(id, { method, resolve, reject, cleanup: settle });
      const timeoutMs = options.timeoutMs ?? this.options.defaultTimeoutMs;
      if (timeoutMs !== undefined && timeoutMs > 0 && Number.isFinite(timeoutMs)) {
        timer = setTimeout(() => {
          settle();
          reject(SidecarError.local("timeout", `${method} got no answer within ${timeoutMs} ms`, { method, retryable: true }));
        }, timeoutMs);
      }
      signal?.addEventListener("abort", onAbort, { once: true });
      const writeFailed = (error: unknown): void => {
        if (!this.pending.has(id)) return;
        settle();
        reject(
          SidecarError.local("sidecar_exited", `could not send ${method} to the sidecar: ${String(error)}`, {
            method,
            cause: error,
          }),
        );
      };
      try {
        const sent = this.transport.send(line);
        if (sent && typeof (sent as Promise<void>).then === "function") (sent as Promise<void>).then(undefined, writeFailed);
      } catch (error) {
        writeFailed(error);
      }
    });
  }

  // --- notifications ---------------------------------------------------------------------

  /**
   * Listens to one notification by name (`"sidecar-ready"`, `` `llm-stream-${id}` ``, ...).
   * Returns a function that removes the listener.
   */
  on<N extends NotificationName>(name: N, listener: (params: NotificationParams<N>) => void): () => void {
    let set = this.listeners.get(name);
    if (!set) {
      set = new Set();
      this.listeners.set(name, set);
    }
    const l = listener as Listener;
    set.add(l);
    return () => {
      const current = this.listeners.get(name);
      if (!current) return;
      current.delete(l);
      if (current.size === 0) this.listeners.delete(name);
    };
  }

  /** Listens to every notification, including ones the schema does not know. */
  onNotification(listener: (method: string, params: unknown) => void): () => void {
    this.anyListeners.add(listener);
    return () => this.anyListeners.delete(listener);
  }

  private onFailure(listener: (error: SidecarError) => void): () => void {
    if (this.failure) {
      const failure = this.failure;
      queueMicrotask(() => listener(failure));
      return () => undefined;
    }
    this.failureListeners.add(listener);
    return () => this.failureListeners.delete(listener);
  }

  // --- streaming ---------------------------------------------------------------------------

  /**
   * Streams a model's answer (`llm_stream_text`). Iterate the result for the stream's events in
   * seq order, `done` last: an `error` event is thrown as a SidecarError (`data` is its
   * ErrorInfo, `event` the event), never yielded. `options.signal` or `abort()` aborts the
   * stream (the loop then throws SidecarError `cancelled`); leaving the loop early (`break`,
   * `return`, a throw) aborts it too. The result also has `fullStream` and `textStream`, views
   * that several consumers can read at once, and `text`, `usage`, `finishReason` and `result`
   * promises (see {@link SidecarStream}).
   *
   * The client picks the `stream_id` (unless `params.stream_id` is given) and subscribes
   * before sending the request, so no event is missed. The stream starts at once.
   */
  streamText(params: StreamTextParams, options: StreamOptions = {}): SidecarStream {
    const streamId = params.stream_id ?? randomId();
    const [controller, release] = linkedController(options.signal);
    const source = this.events("llm_stream_text", { ...params, stream_id: streamId }, { ...options, signal: controller.signal });
    return new SidecarStream(streamId, source, controller, release);
  }

  /**
   * Starts a tool loop (`llm_chat_loop_start`) and streams its events, every step's in one seq,
   * `step_start` and `tool_calls_requested` included: the low-level form of {@link chatLoop},
   * for an app that answers `llm_submit_tool_results` itself. `loopId` resolves once the
   * sidecar has started the loop.
   */
  streamChatLoop(params: ChatLoopParams, options: StreamOptions = {}): ChatLoopStream {
    const streamId = params.stream_id ?? randomId();
    const [controller, release] = linkedController(options.signal);
    let started!: (loopId: string) => void;
    let failed!: (error: unknown) => void;
    const loopId = new Promise<string>((resolve, reject) => {
      started = resolve;
      failed = reject;
    });
    const source = this.events(
      "llm_chat_loop_start",
      { ...params, stream_id: streamId },
      { ...options, signal: controller.signal },
      (result) => started((result as ChatLoopStarted).loop_id),
    );
    const stream = new ChatLoopStream(streamId, source, controller, release, loopId);
    stream.result.catch(failed); // a loop that never started
    return stream;
  }

  /**
   * Runs a tool loop to its end: the sidecar calls the model step after step, this runs each
   * requested tool's `execute` (in parallel; a throw goes back to the model as an error result),
   * submits the results, answers `tool_approval_requested` through `approve` when given, and
   * resolves with the last step's text, the whole conversation and the total usage. See
   * {@link ChatLoopOptions}.
   */
  chatLoop(options: ChatLoopOptions): Promise<ChatLoopResult> {
    return runChatLoop(this, options);
  }

  private async *events(
    method: "llm_stream_text" | "llm_chat_loop_start",
    params: StreamTextParams & { stream_id: string },
    options: StreamOptions,
    onStarted?: (result: unknown) => void,
  ): AsyncGenerator<StreamOutputEvent, void, undefined> {
    const streamId = params.stream_id;
    const { signal } = options;
    if (signal?.aborted) {
      throw SidecarError.local("cancelled", "the stream was aborted before it started", { streamId, cause: signal.reason });
    }
    const queue = new Queue<StreamEvent>();
    // Events are delivered in seq order even if a transport reorders them (stdio never does).
    const early = new Map<number, StreamEvent>();
    let nextSeq = 0;
    let gapTimer: Timer | undefined;
    const flushEarly = (): void => {
      clearTimeout(gapTimer);
      for (const seq of [...early.keys()].sort((x, y) => x - y)) queue.push(early.get(seq) as StreamEvent);
      early.clear();
    };
    const off = this.on(`llm-stream-${streamId}` as const, (event) => {
      if (event.seq === nextSeq) {
        queue.push(event);
        nextSeq++;
        for (let e = early.get(nextSeq); e !== undefined; e = early.get(nextSeq)) {
          early.delete(nextSeq);
          queue.push(e);
          nextSeq++;
        }
        if (early.size === 0) clearTimeout(gapTimer);
      } else if (event.seq > nextSeq) {
        early.set(event.seq, event);
        // A terminal event came before some others: wait for them, but not forever.
        if (event.type === "done" || event.type === "error") gapTimer = setTimeout(flushEarly, 1000);
      }
    });
    const offFailure = this.onFailure((error) =>
      queue.fail(SidecarError.local("sidecar_exited", error.message, { streamId, cause: error })),
    );
    let finished = false; // a terminal event arrived, or the start request failed
    let abortSent = false;
    let abortTimer: Timer | undefined;
    const sendAbort = (): void => {
      if (abortSent || finished || this.failure) return;
      abortSent = true;
      this.request("llm_abort_stream", { stream_id: streamId }).catch(() => undefined);
    };
    const onAbort = (): void => {
      sendAbort();
      abortTimer ??= setTimeout(
        () => queue.fail(SidecarError.local("cancelled", "the stream was aborted", { streamId, cause: signal?.reason })),
        options.abortTimeoutMs ?? 5000,
      );
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      const startOptions: CallOptions = {};
      if (options.timeoutMs !== undefined) startOptions.timeoutMs = options.timeoutMs;
      if (signal) startOptions.signal = signal; // an abort before the answer ends the wait at once
      try {
        const started = await this.request(method, params, startOptions);
        onStarted?.(started);
      } catch (error) {
        if (!(error instanceof SidecarError && error.local)) finished = true; // refused: no stream exists
        throw error;
      }
      for (;;) {
        const event = await queue.next();
        if (event.type === "error") {
          finished = true;
          throw SidecarError.fromEvent(event);
        }
        if (event.type === "done") {
          finished = true;
          yield event;
          return;
        }
        yield event;
      }
    } finally {
      signal?.removeEventListener("abort", onAbort);
      clearTimeout(abortTimer);
      clearTimeout(gapTimer);
      off();
      offFailure();
      if (!finished) sendAbort(); // left early: break, return, a throw, a local failure
    }
  }

  /**
   * Callback style of {@link streamText}: starts the stream at once and calls the handlers;
   * `result` resolves after `done` and rejects with the SidecarError that ended the stream
   * (also passed to `onError`). A rejection that nobody awaits is not reported as unhandled.
   */
  startStream(params: StreamTextParams, handlers: StreamHandlers = {}): StreamHandle {
    const streamId = params.stream_id ?? randomId();
    const controller = new AbortController();
    const outer = handlers.signal;
    const forward = (): void => controller.abort(outer?.reason);
    if (outer?.aborted) forward();
    else outer?.addEventListener("abort", forward, { once: true });
    const options: StreamOptions = { signal: controller.signal };
    if (handlers.timeoutMs !== undefined) options.timeoutMs = handlers.timeoutMs;
    if (handlers.abortTimeoutMs !== undefined) options.abortTimeoutMs = handlers.abortTimeoutMs;

    const run = async (): Promise<StreamResult> => {
      const text: string[] = [];
      const reasoning: string[] = [];
      const toolCalls: StreamEventOf<"tool_call">[] = [];
      try {
        for await (const event of this.streamText({ ...params, stream_id: streamId }, options)) {
          handlers.onEvent?.(event);
          switch (event.type) {
            case "start":
              handlers.onStart?.(event);
              break;
            case "text_delta":
              text.push(event.text);
              handlers.onText?.(event.text, event);
              break;
            case "reasoning_delta":
              reasoning.push(event.text);
              handlers.onReasoning?.(event.text, event);
              break;
            case "tool_call":
              toolCalls.push(event);
              handlers.onToolCall?.(event);
              break;
            case "done": {
              const result: StreamResult = {
                streamId,
                text: text.join(""),
                reasoning: reasoning.join(""),
                toolCalls,
                finishReason: event.finish_reason,
                usage: event.usage,
                model: event.model,
                done: event,
              };
              handlers.onDone?.(result);
              return result;
            }
            default:
              break;
          }
        }
        throw SidecarError.local("sidecar_exited", "the stream ended without a done event", { streamId });
      } catch (error) {
        if (error instanceof SidecarError) handlers.onError?.(error);
        throw error;
      } finally {
        outer?.removeEventListener("abort", forward);
      }
    };
    const result = run();
    result.catch(() => undefined);
    return { streamId, abort: () => controller.abort(), result };
  }

  // --- signing in ------------------------------------------------------------------------------

  /**
   * Signs in to a provider that uses OAuth (`auth: "oauth"` in `listProviders`): starts the flow
   * (`oauth_sign_in_start`), hands the code or URL to `options.onCode`, and resolves when the sidecar
   * reports `signed_in` (the tokens are then in the OS keychain). Rejects with the flow's error as a
   * SidecarError (`permission_denied` when the user denied, `timeout` when the code expired, `cancelled`
   * after `options.signal` fired), or when the start itself failed.
   *
   * The flow's notifications are listened to before the start is sent, so none is missed.
   */
  signIn(provider: string, options: SignInOptions = {}): Promise<SignedIn> {
    const { signal } = options;
    if (signal?.aborted) {
      return Promise.reject(SidecarError.local("cancelled", "the sign-in was aborted before it started", { cause: signal.reason }));
    }
    return new Promise<SignedIn>((resolve, reject) => {
      let flowId: string | undefined;
      let settled = false;
      const early: Array<[string, OAuthFlowEvent]> = [];
      const cancelFlow = (): void => {
        if (flowId !== undefined) this.call("oauth_sign_in_cancel", { flow_id: flowId }).catch(() => undefined);
      };
      const finish = (settle: () => void): void => {
        if (settled) return;
        settled = true;
        offAny();
        offFailure();
        signal?.removeEventListener("abort", onAbort);
        settle();
      };
      const handle = (event: OAuthFlowEvent): void => {
        if (event.type === "pending") {
          options.onPending?.();
        } else if (event.type === "signed_in") {
          const done: SignedIn = { flowId: event.flow_id };
          if (event.account !== undefined) done.account = event.account;
          finish(() => resolve(done));
        } else {
          finish(() => reject(new SidecarError(RpcErrorCode.Domain, event.error.message, { data: event.error })));
        }
      };
      const offAny = this.onNotification((method, params) => {
        if (!method.startsWith("oauth-")) return;
        if (flowId === undefined) early.push([method, params as OAuthFlowEvent]);
        else if (method === `oauth-${flowId}`) handle(params as OAuthFlowEvent);
      });
      const offFailure = this.onFailure((error) => finish(() => reject(error)));
      const onAbort = (): void => {
        cancelFlow();
        finish(() => reject(SidecarError.local("cancelled", "the sign-in was aborted", { cause: signal?.reason })));
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.call("oauth_sign_in_start", { provider }).then(
        (started) => {
          flowId = started.flow_id;
          if (settled) {
            cancelFlow();
            return;
          }
          try {
            options.onCode?.(started);
          } catch (error) {
            cancelFlow();
            finish(() => reject(error));
            return;
          }
          for (const [method, event] of early.splice(0)) if (method === `oauth-${started.flow_id}`) handle(event);
        },
        (error: unknown) => finish(() => reject(error)),
      );
    });
  }

  // --- lifecycle -----------------------------------------------------------------------------

  /**
   * Stops the sidecar: asks it to `shutdown` (it cancels its streams and exits), waits for
   * the exit, and closes the transport (kills the process) if it has not exited by then.
   * Pending calls fail with `sidecar_exited`. Resolves with how the process ended.
   */
  close(options: CloseOptions = {}): Promise<ExitInfo> {
    if (this.exitInfo) return Promise.resolve(this.exitInfo);
    this.closing ??= this.doClose(options.timeoutMs ?? 3000);
    return this.closing;
  }

  private async doClose(timeoutMs: number): Promise<ExitInfo> {
    const waitExit = async (ms: number): Promise<boolean> => {
      if (this.exitInfo) return true;
      let timer: Timer | undefined;
      const expired = new Promise<false>((resolve) => {
        timer = setTimeout(() => resolve(false), ms);
      });
      try {
        return await Promise.race([this.exited.then(() => true as const), expired]);
      } finally {
        clearTimeout(timer);
      }
    };
    if (timeoutMs > 0 && this.ready) {
      await this.request("shutdown", undefined, { timeoutMs }).catch(() => undefined);
      await waitExit(timeoutMs);
    }
    if (!this.exitInfo) {
      try {
        await this.transport.close();
      } catch {
        // already gone
      }
      if (!(await waitExit(2000))) this.handleExit({ code: null, error: new Error("closed by the client") });
    }
    return this.exitInfo ?? (await this.exited);
  }

  // --- input ---------------------------------------------------------------------------------

  private handleData(chunk: Chunk): void {
    if (this.exitInfo) return;
    for (const line of this.splitter.push(chunk)) this.handleLine(line);
  }

  private handleLine(line: string): void {
    let message: unknown;
    try {
      message = JSON.parse(line);
    } catch (error) {
      this.options.onInvalidLine?.(line, error);
      return;
    }
    if (Array.isArray(message)) for (const m of message) this.handleMessage(m, line);
    else this.handleMessage(message, line);
  }

  private handleMessage(message: unknown, line: string): void {
    if (!isObject(message) || message.jsonrpc !== "2.0") {
      this.options.onInvalidLine?.(line, new Error("not a JSON-RPC 2.0 message"));
      return;
    }
    if (typeof message.method === "string") {
      if ("id" in message) {
        // The sidecar sends no requests; answer one anyway, as JSON-RPC wants.
        const reply = {
          jsonrpc: "2.0",
          id: message.id,
          error: { code: RpcErrorCode.MethodNotFound, message: "the client serves no methods" },
        };
        try {
          void Promise.resolve(this.transport.send(`${JSON.stringify(reply)}\n`)).catch(() => undefined);
        } catch {
          // ignore
        }
        return;
      }
      this.dispatch(message.method, message.params);
      return;
    }
    if (typeof message.id !== "number") return; // not ours (e.g. a parse error answer with id null)
    const pending = this.pending.get(message.id);
    if (!pending) return; // timed out or aborted already
    pending.cleanup();
    if (isObject(message.error)) {
      const err = message.error;
      const code = typeof err.code === "number" ? err.code : RpcErrorCode.InternalError;
      const text = typeof err.message === "string" ? err.message : "unknown error";
      pending.reject(new SidecarError(code, text, { data: err.data, method: pending.method }));
    } else {
      pending.resolve(message.result);
    }
  }

  private dispatch(method: string, params: unknown): void {
    const set = this.listeners.get(method);
    if (set) {
      for (const listener of [...set]) {
        try {
          listener(params);
        } catch (error) {
          reportAsync(error);
        }
      }
    }
    for (const listener of [...this.anyListeners]) {
      try {
        listener(method, params);
      } catch (error) {
        reportAsync(error);
      }
    }
  }

  private handleExit(info: ExitInfo): void {
    if (this.exitInfo) return;
    for (const line of this.splitter.flush()) this.handleLine(line);
    this.exitInfo = info;
    const failure = SidecarError.local("sidecar_exited", describeExit(info), { cause: info.error });
    this.failure = failure;
    for (const pending of [...this.pending.values()]) {
      pending.cleanup();
      pending.reject(
        SidecarError.local("sidecar_exited", `${pending.method}: ${failure.message}`, { method: pending.method, cause: info.error }),
      );
    }
    for (const listener of [...this.failureListeners]) listener(failure);
    this.failureListeners.clear();
    this.resolveExited(info);
  }
}

// Install the generated camelCase methods; hand-written members (streamText) take precedence.
type Requester = { request(method: string, params: unknown, options?: CallOptions): Promise<unknown> };
for (const [name, spec] of Object.entries(SIDECAR_METHODS) as [string, { method: string; params: string }][]) {
  if (Object.prototype.hasOwnProperty.call(SidecarClient.prototype, name)) continue;
  const method = spec.method;
  const fn =
    spec.params === "none"
      ? function (this: Requester, options?: CallOptions): Promise<unknown> {
          return this.request(method, undefined, options);
        }
      : function (this: Requester, params?: unknown, options?: CallOptions): Promise<unknown> {
          return this.request(method, params, options);
        };
  Object.defineProperty(fn, "name", { value: name });
  Object.defineProperty(SidecarClient.prototype, name, { value: fn, writable: true, configurable: true });
}
