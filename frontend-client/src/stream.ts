import { SidecarError } from "./errors.js";
import type { DoneEvent, StreamEvent, Usage } from "./generated.js";

/** Every `type` a stream event can have. */
export type StreamEventType = StreamEvent["type"];
/** The stream event with the given `type`, e.g. `StreamEventOf<"text_delta">`. */
export type StreamEventOf<T extends StreamEventType> = Extract<StreamEvent, { type: T }>;
/**
 * What `streamText` yields: every event but `error` (an `error` event is thrown as a
 * SidecarError instead). The last one is always `done`.
 */
export type StreamOutputEvent = Exclude<StreamEvent, { type: "error" }>;

/** What a finished stream produced. */
export interface StreamResult {
  streamId: string;
  /** The concatenated `text_delta` texts. */
  text: string;
  /** The concatenated `reasoning_delta` texts. */
  reasoning: string;
  /** Every complete tool call, in order. */
  toolCalls: StreamEventOf<"tool_call">[];
  finishReason: StreamEventOf<"done">["finish_reason"];
  usage: StreamEventOf<"done">["usage"];
  model: string;
  /** The `done` event itself. */
  done: StreamEventOf<"done">;
}

const ignore = (): void => undefined;

/** A promise whose rejection is not reported as unhandled when nobody awaits it. */
function quiet<T>(promise: Promise<T>): Promise<T> {
  promise.catch(ignore);
  return promise;
}

/**
 * A running stream (`client.streamText`'s result) and its views.
 *
 * - Iterating it (`for await (const ev of stream)`) yields every event in seq order, the last
 *   one `done`; an `error` event is thrown as a SidecarError. Leaving that loop early (`break`,
 *   `return`, a throw) aborts the stream, as it always has.
 * - `fullStream` and `textStream` are views that any number of consumers can read at once, each
 *   from the first event, whenever it starts; leaving one of them early only stops that consumer
 *   (call `abort()` to stop the stream).
 * - `text`, `usage`, `finishReason` and `result` resolve when the stream is done and reject with
 *   the error that ended it (a rejection nobody awaits is not reported as unhandled).
 *
 * The stream starts at once, whether or not anything reads it; its events are kept until it is
 * garbage (one answer's worth), so a late consumer still sees them all.
 */
export class SidecarStream implements AsyncIterable<StreamOutputEvent> {
  readonly streamId: string;
  /** Every event, `done` last; an `error` event is thrown as a SidecarError. Any number of readers. */
  readonly fullStream: AsyncIterable<StreamOutputEvent>;
  /** The text deltas only. Any number of readers. */
  readonly textStream: AsyncIterable<string>;
  /** The whole text (every `text_delta`), once the stream is done. */
  readonly text: Promise<string>;
  /** The usage of the `done` event. */
  readonly usage: Promise<Usage>;
  /** The finish reason of the `done` event. */
  readonly finishReason: Promise<DoneEvent["finish_reason"]>;
  /** Text, reasoning, tool calls, usage and the `done` event, once the stream is done. */
  readonly result: Promise<StreamResult>;

  private readonly events: StreamOutputEvent[] = [];
  private ended: { ok: true } | { ok: false; error: unknown } | undefined;
  private wake: (() => void)[] = [];
  private readonly controller: AbortController;
  private readonly cleanup: (() => void) | undefined;

  /**
   * Reads `source` to its end at once. `controller` is the one whose signal `source` obeys:
   * `abort()` and leaving the default iteration early abort it. `cleanup` runs when `source` ends.
   */
  constructor(
    streamId: string,
    source: AsyncIterable<StreamOutputEvent>,
    controller: AbortController,
    cleanup?: () => void,
  ) {
    this.streamId = streamId;
    this.controller = controller;
    this.cleanup = cleanup;
    this.fullStream = { [Symbol.asyncIterator]: () => this.cursor(false) };
    this.textStream = {
      [Symbol.asyncIterator]: () => {
        const events = this.cursor(false);
        return {
          next: async (): Promise<IteratorResult<string>> => {
            for (;;) {
              const item = await events.next();
              if (item.done) return { done: true, value: undefined };
              if (item.value.type === "text_delta") return { done: false, value: item.value.text };
            }
          },
          return: async (): Promise<IteratorResult<string>> => {
            await events.return?.();
            return { done: true, value: undefined };
          },
        };
      },
    };
    this.result = quiet(this.collect());
    this.text = quiet(this.result.then((r) => r.text));
    this.usage = quiet(this.result.then((r) => r.usage));
    this.finishReason = quiet(this.result.then((r) => r.finishReason));
    void this.pump(source);
  }

  /** Aborts the stream (`llm_abort_stream`); readers then get the `cancelled` SidecarError. */
  abort(reason?: unknown): void {
    this.controller.abort(reason);
  }

  /** Every event, `done` last; leaving the loop before the end aborts the stream. */
  [Symbol.asyncIterator](): AsyncIterator<StreamOutputEvent> {
    return this.cursor(true);
  }

  private async pump(source: AsyncIterable<StreamOutputEvent>): Promise<void> {
    try {
      for await (const event of source) {
        this.events.push(event);
        this.notify();
      }
      this.ended = { ok: true };
    } catch (error) {
      this.ended = { ok: false, error };
    }
    this.cleanup?.();
    this.notify();
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = [];
    for (const w of wake) w();
  }

  private cursor(owner: boolean): AsyncIterator<StreamOutputEvent> {
    let index = 0;
    let left = false;
    let sawDone = false;
    return {
      next: async (): Promise<IteratorResult<StreamOutputEvent>> => {
        for (;;) {
          if (left) return { done: true, value: undefined };
          const event = this.events[index];
          if (event !== undefined) {
            index++;
            if (event.type === "done") sawDone = true;
            return { done: false, value: event };
          }
          const ended = this.ended;
          if (ended) {
            left = true;
            if (!ended.ok) throw ended.error;
            return { done: true, value: undefined };
          }
          await new Promise<void>((resolve) => this.wake.push(resolve));
        }
      },
      return: async (): Promise<IteratorResult<StreamOutputEvent>> => {
        if (!left && owner && !sawDone && !this.ended) this.abort();
        left = true;
        return { done: true, value: undefined };
      },
    };
  }

  private async collect(): Promise<StreamResult> {
    const text: string[] = [];
    const reasoning: string[] = [];
    const toolCalls: StreamEventOf<"tool_call">[] = [];
    let done: DoneEvent | undefined;
    for await (const event of this.fullStream) {
      if (event.type === "text_delta") text.push(event.text);
      else if (event.type === "reasoning_delta") reasoning.push(event.text);
      else if (event.type === "tool_call") toolCalls.push(event);
      else if (event.type === "done") done = event;
    }
    if (!done) throw SidecarError.local("sidecar_exited", "the stream ended without a done event", { streamId: this.streamId });
    return {
      streamId: this.streamId,
      text: text.join(""),
      reasoning: reasoning.join(""),
      toolCalls,
      finishReason: done.finish_reason,
      usage: done.usage,
      model: done.model,
      done,
    };
  }
}
