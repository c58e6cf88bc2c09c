// client.chatLoop: a tool loop (llm_chat_loop_start) whose tools are the app's own functions.
import type { SidecarClient, StreamOptions } from "./client.js";
import { SidecarError } from "./errors.js";
import type { ApprovalCall, ChatLoopParams, DoneEvent, Message, ToolApprovalDecision, ToolResult, Usage } from "./generated.js";
import { SidecarStream, type StreamEventOf, type StreamOutputEvent } from "./stream.js";

/** One of the app's tools: its JSON Schema and the function that runs it. */
export interface ChatLoopTool<Args = Record<string, unknown>> {
  description?: string;
  /** The JSON Schema of the arguments (an object schema). */
  parameters: Record<string, unknown>;
  /**
   * Runs the call. A string result goes to the model as it is, anything else as JSON; a throw
   * (or rejection) goes to the model as an error result with the error's message.
   */
  execute(args: Args, context: ToolCallContext): unknown;
}

/** What `execute` learns about the call besides its arguments. */
export interface ToolCallContext {
  toolCallId: string;
  /** The loop's step (1-based) that asked for the call. */
  step: number;
  loopId: string;
  /** Aborted when the loop ends (or is aborted) before the tool is done. */
  signal: AbortSignal;
}

/** `true` runs the call, `false` refuses it; `reason` is told to the model. */
export type ApprovalDecision = boolean | { approved: boolean; reason?: string };

/**
 * Every event a tool loop sends: a stream's events, plus `step_start`, `tool_calls_requested`, and
 * for MCP tools `tool_approval_requested` and `tool_result`.
 */
export type ChatLoopEvent = StreamOutputEvent;

/** What `client.chatLoop` takes: the loop's params, with the tools as functions. */
export interface ChatLoopOptions extends Omit<ChatLoopParams, "tools"> {
  /** The app's tools by name; the model sees their name, description and parameters. */
  tools?: Record<string, ChatLoopTool<any>>;
  /** Aborts the loop (and the signal each running `execute` got); `chatLoop` rejects with `cancelled`. */
  signal?: AbortSignal;
  /** Every event of the loop, in seq order, as it comes. */
  onEvent?: (event: ChatLoopEvent) => void;
  /**
   * Answers `tool_approval_requested`: called once per call (the calls of one request in
   * parallel, all submitted together); a throw refuses the call with the error's message as the
   * reason. Without it such a request is left to the app (`onEvent`, `client.submitToolApproval`).
   */
  approve?: (call: ApprovalCall, context: { step: number; loopId: string; signal: AbortSignal }) => ApprovalDecision | Promise<ApprovalDecision>;
}

/** How a tool loop ended. */
export interface ChatLoopResult {
  loopId: string;
  streamId: string;
  /** The text of the last step (the model's answer after its last tool call). */
  text: string;
  /** The input messages, then every step's assistant turn and its tool results. */
  messages: Message[];
  /** The usage of every step, added up. */
  usage: Usage;
  finishReason: DoneEvent["finish_reason"];
  /** How many model turns ran. */
  steps: number;
  /** The loop's `done` event. */
  done: DoneEvent;
}

/** `client.streamChatLoop`'s result: a stream whose `loopId` resolves once the loop has started. */
export class ChatLoopStream extends SidecarStream {
  readonly loopId: Promise<string>;

  constructor(
    streamId: string,
    source: AsyncIterable<StreamOutputEvent>,
    controller: AbortController,
    cleanup: () => void,
    loopId: Promise<string>,
  ) {
    super(streamId, source, controller, cleanup);
    loopId.catch(() => undefined);
    this.loopId = loopId;
  }
}

const message = (error: unknown): string => (error instanceof Error ? error.message : String(error));

/** What a tool's return value becomes for the model. */
function toolContent(value: unknown): string {
  if (typeof value === "string") return value;
  return JSON.stringify(value === undefined ? null : value);
}

async function runTool(
  tools: Record<string, ChatLoopTool<any>>,
  call: { tool_call_id: string; name: string; arguments: Record<string, unknown> },
  context: ToolCallContext,
): Promise<ToolResult> {
  const tool = Object.prototype.hasOwnProperty.call(tools, call.name) ? tools[call.name] : undefined;
  if (!tool) {
    return { tool_call_id: call.tool_call_id, content: `there is no tool named ${JSON.stringify(call.name)}`, is_error: true };
  }
  try {
    return { tool_call_id: call.tool_call_id, content: toolContent(await tool.execute(call.arguments, context)) };
  } catch (error) {
    return { tool_call_id: call.tool_call_id, content: message(error), is_error: true };
  }
}

function decision(id: string, answer: ApprovalDecision): ToolApprovalDecision {
  if (typeof answer === "boolean") return { id, approved: answer };
  const out: ToolApprovalDecision = { id, approved: answer.approved === true };
  if (typeof answer.reason === "string") out.reason = answer.reason;
  return out;
}

/** The body of `client.chatLoop`. */
export async function runChatLoop(client: SidecarClient, options: ChatLoopOptions): Promise<ChatLoopResult> {
  const { tools = {}, signal, onEvent, approve, ...params } = options;
  const definitions = Object.entries(tools).map(([name, tool]) => {
    const definition: { name: string; parameters: Record<string, unknown>; description?: string } = {
      name,
      parameters: tool.parameters,
    };
    if (tool.description !== undefined) definition.description = tool.description;
    return definition;
  });
  const loopParams: ChatLoopParams = definitions.length > 0 ? { ...params, tools: definitions } : params;
  const streamOptions: StreamOptions = {};
  if (signal) streamOptions.signal = signal;
  const stream = client.streamChatLoop(loopParams, streamOptions);
  // Running tools and approvals get this signal: aborted when the loop ends, however it ends.
  const work = new AbortController();
  let failure: { error: unknown } | undefined;
  const fail = (error: unknown): void => {
    failure ??= { error };
    stream.abort(error);
  };

  const answerTools = async (event: StreamEventOf<"tool_calls_requested">): Promise<void> => {
    const context = { step: event.step, loopId: event.loop_id, signal: work.signal };
    const results = await Promise.all(
      event.calls.map((call) => runTool(tools, call, { ...context, toolCallId: call.tool_call_id })),
    );
    if (work.signal.aborted) return;
    await client.submitToolResults({ loop_id: event.loop_id, results });
  };

  const answerApproval = async (event: StreamEventOf<"tool_approval_requested">, ask: NonNullable<ChatLoopOptions["approve"]>): Promise<void> => {
    const context = { step: event.step, loopId: event.loop_id, signal: work.signal };
    const decisions = await Promise.all(
      event.calls.map(async (call) => {
        try {
          return decision(call.id, await ask(call, context));
        } catch (error) {
          return { id: call.id, approved: false, reason: message(error) };
        }
      }),
    );
    if (work.signal.aborted) return;
    await client.submitToolApproval({ loop_id: event.loop_id, decisions });
  };

  let stepText: string[] = [];
  let steps = 0;
  let done: DoneEvent | undefined;
  try {
    for await (const loopEvent of stream) {
      onEvent?.(loopEvent);
      switch (loopEvent.type) {
        case "step_start":
          steps = loopEvent.step;
          stepText = [];
          break;
        case "text_delta":
          stepText.push(loopEvent.text);
          break;
        case "tool_calls_requested":
          answerTools(loopEvent).catch(fail);
          break;
        case "tool_approval_requested":
          if (approve) answerApproval(loopEvent, approve).catch(fail);
          break;
        case "done":
          done = loopEvent;
          break;
        default:
          break;
      }
    }
  } catch (error) {
    // A failed submit aborted the loop: its cancelled error says less than the submit's own.
    throw failure && error instanceof SidecarError && error.errorCode === "cancelled" ? failure.error : error;
  } finally {
    work.abort();
  }
  if (!done) throw SidecarError.local("sidecar_exited", "the tool loop ended without a done event", { streamId: stream.streamId });
  const loopId = await stream.loopId;
  const { messages } = await client.getLoopMessages({ loop_id: loopId });
  return {
    loopId,
    streamId: stream.streamId,
    text: stepText.join(""),
    messages,
    usage: done.usage,
    finishReason: done.finish_reason,
    steps,
    done,
  };
}
