// The client's SidecarErrors as the AI SDK's errors.
import { APICallError } from "@ai-sdk/provider";
import { SidecarError } from "../errors.js";

/**
 * What a failed call throws to the AI SDK: the abort reason when the SDK's own signal aborted it;
 * an APICallError for every SidecarError (its `data` is the sidecar's ErrorInfo, `cause` the
 * SidecarError, `statusCode` the upstream's HTTP status, `isRetryable` the sidecar's `retryable`,
 * and a `retry-after-ms` header when the sidecar said how long to wait); anything else as it is.
 */
export function sdkError(error: unknown, method: string, params: unknown, signal: AbortSignal | undefined): unknown {
  if (signal?.aborted && (!(error instanceof SidecarError) || error.errorCode === "cancelled")) {
    return signal.reason ?? error;
  }
  if (!(error instanceof SidecarError)) return error;
  const data = error.data;
  const options: ConstructorParameters<typeof APICallError>[0] = {
    message: error.message,
    url: `llm-sidecar:${method}`,
    requestBodyValues: params,
    isRetryable: error.retryable,
    data: error.rawData,
    cause: error,
  };
  if (data?.status !== undefined) options.statusCode = data.status;
  if (data?.retry_after_ms !== undefined) options.responseHeaders = { "retry-after-ms": String(data.retry_after_ms) };
  return new APICallError(options);
}
