import type { ErrorEvent, ErrorInfo } from "./generated.js";

/**
 * Codes the client itself raises, on top of the sidecar's `ErrorInfo` codes:
 * - `sidecar_exited`: the process exited (or the transport closed) before the answer came.
 *
 * The client also raises `timeout` (per-call or connect timeout), `cancelled` (an AbortSignal
 * fired) and `protocol_error` (the sidecar speaks another protocol version) locally; those
 * errors have `local === true`.
 */
export type ClientErrorCode = "sidecar_exited";

/** Every `data.code` a SidecarError can carry. */
export type SidecarErrorCode = ErrorInfo["code"] | ClientErrorCode;

/**
 * The `data` of a JSON-RPC error: the sidecar's ErrorInfo for domain errors (-32000).
 * `message` and `retryable` are absent on some protocol-level errors (e.g. -32603 sends only
 * `{"code": "internal"}`).
 */
export type SidecarErrorData = Omit<ErrorInfo, "code" | "message" | "retryable"> &
  Partial<Pick<ErrorInfo, "message" | "retryable">> & { code: SidecarErrorCode };

/** JSON-RPC error codes (the spec's, plus -32000 for the sidecar's domain errors). */
export const RpcErrorCode = {
  ParseError: -32700,
  InvalidRequest: -32600,
  MethodNotFound: -32601,
  InvalidParams: -32602,
  InternalError: -32603,
  /** Domain errors; `data.code` says which. Client-side errors use it too. */
  Domain: -32000,
} as const;

export interface SidecarErrorOptions {
  data?: unknown;
  method?: string;
  streamId?: string;
  event?: ErrorEvent;
  local?: boolean;
  cause?: unknown;
}

function asErrorData(data: unknown): SidecarErrorData | undefined {
  if (data !== null && typeof data === "object" && typeof (data as { code?: unknown }).code === "string") {
    return data as SidecarErrorData;
  }
  return undefined;
}

/**
 * Marks SidecarErrors across copies of this package: its ES module and CommonJS builds are
 * two copies of the class, and a program can load both (`import` in one file, `require` in
 * another); `instanceof SidecarError` checks this mark, so it holds for either copy.
 */
const BRAND: unique symbol = Symbol.for("llm-sidecar-client.SidecarError");

/**
 * Every failure the client reports: JSON-RPC errors from the sidecar, `error` events of a
 * stream, and client-side failures (timeout, abort, process exit).
 *
 * ```ts
 * try { await client.getApiKey({ provider: "nope" }) }
 * catch (e) { if (e instanceof SidecarError && e.data?.code === "unknown_provider") ... }
 * ```
 */
export class SidecarError extends Error {
  override readonly name = "SidecarError";
  /** The JSON-RPC error code (-32000 for domain and client-side errors, -326xx for protocol errors). */
  readonly code: number;
  /** The error's `data` when it is an ErrorInfo-like object (has a string `code`). */
  readonly data: SidecarErrorData | undefined;
  /** The error's `data` exactly as received, whatever its shape. */
  readonly rawData: unknown;
  /** The RPC method whose call failed, if any. */
  readonly method: string | undefined;
  /** The stream that failed, for errors of `streamText`. */
  readonly streamId: string | undefined;
  /** The stream's `error` event, when the error came from one. */
  readonly event: ErrorEvent | undefined;
  /** True when the client raised it (timeout, AbortSignal, process exit), false when the sidecar sent it. */
  readonly local: boolean;

  /** True for a SidecarError of either build (ESM or CommonJS) of this package. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    if (this !== SidecarError) return Function.prototype[Symbol.hasInstance].call(this, value);
    return typeof value === "object" && value !== null && (value as { [BRAND]?: unknown })[BRAND] === true;
  }

  constructor(code: number, message: string, options: SidecarErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.rawData = options.data;
    this.data = asErrorData(options.data);
    this.method = options.method;
    this.streamId = options.streamId;
    this.event = options.event;
    this.local = options.local ?? false;
    Object.defineProperty(this, BRAND, { value: true });
  }

  /** Shorthand for `data?.code`. */
  get errorCode(): SidecarErrorCode | undefined {
    return this.data?.code;
  }

  /** Whether retrying the same request may succeed (`data.retryable`). */
  get retryable(): boolean {
    return this.data?.retryable === true;
  }

  /** The error of a stream's `error` event. */
  static fromEvent(event: ErrorEvent): SidecarError {
    return new SidecarError(RpcErrorCode.Domain, event.error.message, {
      data: event.error,
      streamId: event.stream_id,
      event,
    });
  }

  /** A client-side error with `data: {code, message, retryable}`. */
  static local(
    code: SidecarErrorCode,
    message: string,
    extra: Omit<SidecarErrorOptions, "data" | "local"> & { retryable?: boolean } = {},
  ): SidecarError {
    const { retryable = false, ...rest } = extra;
    return new SidecarError(RpcErrorCode.Domain, message, {
      ...rest,
      data: { code, message, retryable },
      local: true,
    });
  }
}

/** True when `err` is a SidecarError, optionally with the given `data.code`. */
export function isSidecarError(err: unknown, code?: SidecarErrorCode): err is SidecarError {
  return err instanceof SidecarError && (code === undefined || err.data?.code === code);
}
