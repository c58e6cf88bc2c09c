// A loopback upstream for the tests: a tiny HTTP server on 127.0.0.1 that speaks OpenAI's chat
// completions as SSE (or Anthropic's Messages stream), answers the Nth request with the Nth scripted
// reply, and records every request.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { SidecarClient } from "llm-sidecar-client";

export interface SeenRequest {
  path: string;
  body: { model?: string; messages?: Record<string, unknown>[]; tools?: unknown[]; [k: string]: unknown };
}

const HEAD = { id: "chatcmpl-loopback", object: "chat.completion.chunk", created: 1754432618, model: "loop-model" };

function chunk(delta: Record<string, unknown>, finish: string | null = null): Record<string, unknown> {
  return { ...HEAD, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] };
}

function usage(prompt: number, completion: number): Record<string, unknown> {
  return { ...HEAD, choices: [], usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion } };
}

/** A reply that streams `text` in two pieces and stops. */
export function textReply(text: string, tokens: [number, number] = [30, 4]): Record<string, unknown>[] {
  const half = Math.ceil(text.length / 2);
  return [
    chunk({ role: "assistant", content: "" }),
    chunk({ content: text.slice(0, half) }),
    chunk({ content: text.slice(half) }),
    chunk({}, "stop"),
    usage(...tokens),
  ];
}

/** A reply that asks for one tool call (its arguments in two pieces). */
export function toolReply(id: string, name: string, args: Record<string, unknown>, tokens: [number, number] = [10, 5]): Record<string, unknown>[] {
  const raw = JSON.stringify(args);
  return [
    chunk({ role: "assistant", content: null }),
    chunk({ tool_calls: [{ index: 0, id, type: "function", function: { name, arguments: "" } }] }),
    chunk({ tool_calls: [{ index: 0, function: { arguments: raw.slice(0, 4) } }] }),
    chunk({ tool_calls: [{ index: 0, function: { arguments: raw.slice(4) } }] }),
    chunk({}, "tool_calls"),
    usage(...tokens),
  ];
}

/** Anthropic's stream for one answer: optional thinking with its signature, text, one tool call. */
export function anthropicReply(answer: {
  thinking?: { text: string; signature: string };
  text?: string;
  tool?: { id: string; name: string; input: Record<string, unknown> };
}): Record<string, unknown>[] {
  const frames: Record<string, unknown>[] = [
    {
      type: "message_start",
      message: { id: "msg_loop", type: "message", role: "assistant", model: "claude-loop", content: [], stop_reason: null, usage: { input_tokens: 12, output_tokens: 1 } },
    },
  ];
  let index = 0;
  const block = (start: Record<string, unknown>, ...deltas: Record<string, unknown>[]): void => {
    frames.push({ type: "content_block_start", index, content_block: start });
    for (const delta of deltas) frames.push({ type: "content_block_delta", index, delta });
    frames.push({ type: "content_block_stop", index });
    index++;
  };
  if (answer.thinking) {
    block({ type: "thinking", thinking: "", signature: "" }, { type: "thinking_delta", thinking: answer.thinking.text }, { type: "signature_delta", signature: answer.thinking.signature });
  }
  if (answer.text) block({ type: "text", text: "" }, { type: "text_delta", text: answer.text });
  if (answer.tool) {
    block({ type: "tool_use", id: answer.tool.id, name: answer.tool.name, input: {} }, { type: "input_json_delta", partial_json: JSON.stringify(answer.tool.input) });
  }
  frames.push({ type: "message_delta", delta: { stop_reason: answer.tool ? "tool_use" : "end_turn", stop_sequence: null }, usage: { output_tokens: 20 } });
  frames.push({ type: "message_stop" });
  return frames;
}

/** The loopback upstream; reply N answers request N (past the end: an empty stop). */
export class Upstream {
  readonly requests: SeenRequest[] = [];
  private constructor(
    private readonly server: Server,
    private readonly replies: Record<string, unknown>[][],
    private readonly protocol: "openai" | "anthropic",
  ) {}

  static async start(replies: Record<string, unknown>[][], protocol: "openai" | "anthropic" = "openai"): Promise<Upstream> {
    let upstream: Upstream | undefined;
    const server = createServer((req, res) => {
      const parts: Buffer[] = [];
      req.on("data", (b: Buffer) => parts.push(b));
      req.on("end", () => {
        const self = upstream as Upstream;
        const body = JSON.parse(Buffer.concat(parts).toString("utf8") || "{}") as SeenRequest["body"];
        const index = self.requests.push({ path: req.url ?? "", body }) - 1;
        res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
        if (self.protocol === "anthropic") {
          for (const payload of self.replies[index] ?? anthropicReply({})) res.write(`event: ${String(payload.type)}\ndata: ${JSON.stringify(payload)}\n\n`);
          res.end();
          return;
        }
        for (const payload of self.replies[index] ?? textReply("")) res.write(`data: ${JSON.stringify(payload)}\n\n`);
        res.end("data: [DONE]\n\n");
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    upstream = new Upstream(server, replies, protocol);
    return upstream;
  }

  get baseUrl(): string {
    const origin = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this.protocol === "openai" ? `${origin}/v1` : origin;
  }

  /** Registers this upstream with the sidecar as a custom provider of its protocol (no key). */
  async register(client: SidecarClient, id: string): Promise<void> {
    await client.registerCustomProvider({ id, name: id, protocol: this.protocol, base_url: this.baseUrl, requires_api_key: false });
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
