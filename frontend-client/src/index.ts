/**
 * llm-sidecar-client: a typed JSON-RPC client for the llm-sidecar.
 *
 * Transports live in their own entry points so this one runs anywhere (webview, Node,
 * Electron): `llm-sidecar-client/node` (child_process) and `llm-sidecar-client/tauri`
 * (`@tauri-apps/plugin-shell`).
 */
export {
  SidecarClient,
  type CallArgs,
  type CallOptions,
  type CloseOptions,
  type ConnectOptions,
  type MethodParams,
  type MethodResult,
  type NotificationName,
  type NotificationParams,
  type StreamEventOf,
  type StreamEventType,
  type StreamHandle,
  type StreamHandlers,
  type StreamOptions,
  type StreamOutputEvent,
  type StreamResult,
  type SignedIn,
  type SignInOptions,
} from "./client.js";
export { SidecarStream } from "./stream.js";
export {
  ChatLoopStream,
  type ApprovalDecision,
  type ChatLoopEvent,
  type ChatLoopOptions,
  type ChatLoopResult,
  type ChatLoopTool,
  type ToolCallContext,
} from "./chat-loop.js";
export {
  RpcErrorCode,
  SidecarError,
  isSidecarError,
  type ClientErrorCode,
  type SidecarErrorCode,
  type SidecarErrorData,
  type SidecarErrorOptions,
} from "./errors.js";
export { LineSplitter, type Chunk } from "./lines.js";
export { TransportEvents, type ExitInfo, type Transport } from "./transport.js";
export { randomId } from "./ids.js";
// Every wire type, the method and notification maps, and the schema constants.
export * from "./generated.js";
