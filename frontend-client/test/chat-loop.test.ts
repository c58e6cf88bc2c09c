// client.chatLoop and the stream views (fullStream, textStream, text, usage) against the real sidecar.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { after, before, it } from "node:test";
import { SidecarClient, SidecarError, type ApprovalCall, type ChatLoopEvent, type StreamOutputEvent } from "llm-sidecar-client";
import { connectSidecar, describeNeeding, describeWithSidecar, sidecarProblem, sidecarPython, spawnSidecar, user } from "./helpers.js";
import { Upstream, textReply, toolReply } from "./upstream.js";

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

/** A promise and its resolve, to make two tools wait for each other. */
function signal(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

const objectSchema = (properties: Record<string, unknown>): Record<string, unknown> => ({
  type: "object",
  properties,
  required: Object.keys(properties),
});

describeWithSidecar("client.chatLoop + real sidecar", () => {
  let client: SidecarClient;
  const upstreams: Upstream[] = [];

  before(async () => {
    ({ client } = await connectSidecar());
  });

  after(async () => {
    await client.close();
    await Promise.all(upstreams.map((u) => u.close()));
  });

  it("two tools run in parallel, one fails: the model gets a result and an error result, the loop ends with text and the total usage", { timeout: 30_000 }, async () => {
    const script = [
      {
        text: "Working on it.",
        tool_calls: [
          { name: "add", arguments: { a: 2, b: 3 }, id: "call_add" },
          { name: "explode", arguments: { why: "test" }, id: "call_boom" },
        ],
        usage: { input_tokens: 10, output_tokens: 5 },
      },
      { text: "2 + 3 = 5, and explode failed.", usage: { input_tokens: 20, output_tokens: 7 } },
    ];
    // Each tool waits until the other has started: run one after the other, they never finish.
    const addStarted = signal();
    const explodeStarted = signal();
    const events: ChatLoopEvent[] = [];
    const result = await client.chatLoop({
      model: "mock:script",
      messages: [user("add 2 and 3, then explode")],
      provider_options: { script },
      tools: {
        add: {
          description: "Adds two numbers",
          parameters: objectSchema({ a: { type: "number" }, b: { type: "number" } }),
          execute: async ({ a, b }: { a: number; b: number }) => {
            addStarted.resolve();
            await explodeStarted.promise;
            return a + b;
          },
        },
        explode: {
          parameters: objectSchema({ why: { type: "string" } }),
          execute: async () => {
            explodeStarted.resolve();
            await addStarted.promise;
            throw new Error("the tool blew up");
          },
        },
      },
      onEvent: (event) => events.push(event),
    });
    assert.equal(result.text, "2 + 3 = 5, and explode failed.");
    assert.equal(result.finishReason, "stop");
    assert.equal(result.steps, 2);
    assert.deepEqual([result.usage.input_tokens, result.usage.output_tokens], [30, 12]);
    assert.deepEqual(
      events.filter((e) => e.type === "tool_calls_requested").map((e) => (e.type === "tool_calls_requested" ? e.calls.map((c) => c.name) : [])),
      [["add", "explode"]],
    );
    assert.equal(events.at(-1)?.type, "done");
    // The conversation the sidecar kept: the input, the first step's turn, two tool results, the last turn.
    assert.deepEqual(
      result.messages.map((m) => m.role),
      ["user", "assistant", "tool", "tool", "assistant"],
    );
    const [add, boom] = result.messages.slice(2, 4);
    assert.deepEqual(add, { role: "tool", tool_call_id: "call_add", content: "5" });
    assert.deepEqual(boom, { role: "tool", tool_call_id: "call_boom", content: "the tool blew up", is_error: true });
  });

  it("bar: a tool's returned value reaches the upstream's second request, and the loop ends with text", async () => {
    const upstream = await Upstream.start([
      toolReply("call_w_1", "weather", { city: "Oslo" }),
      textReply("Oslo: 4 °C and rain."),
    ]);
    upstreams.push(upstream);
    await upstream.register(client, "loopback-loop");
    const result = await client.chatLoop({
      model: "loopback-loop:loop-model",
      messages: [user("Weather in Oslo?")],
      tools: {
        weather: {
          description: "Current weather",
          parameters: objectSchema({ city: { type: "string" } }),
          execute: ({ city }: { city: string }) => ({ city, celsius: 4, sky: "rain" }),
        },
      },
    });
    assert.equal(result.text, "Oslo: 4 °C and rain.");
    assert.equal(upstream.requests.length, 2);
    assert.deepEqual(
      (upstream.requests[0]?.body.tools as { function: { name: string; description: string } }[]).map((t) => [t.function.name, t.function.description]),
      [["weather", "Current weather"]],
    );
    const second = upstream.requests[1]?.body.messages ?? [];
    const toolMessage = second.find((m) => m.role === "tool");
    assert.ok(toolMessage, JSON.stringify(second));
    assert.equal(toolMessage.tool_call_id, "call_w_1");
    assert.equal(toolMessage.content, '{"city":"Oslo","celsius":4,"sky":"rain"}');
  });

  it("an unknown tool name goes back as an error result; a string result goes as it is", async () => {
    const script = [{ tool_calls: [{ name: "echo", arguments: { s: "plain text" }, id: "e1" }, { name: "nope", id: "n1" }] }, { text: "ok" }];
    const result = await client.chatLoop({
      model: "mock:script",
      messages: [user("go")],
      provider_options: { script },
      tools: { echo: { parameters: objectSchema({ s: { type: "string" } }), execute: ({ s }: { s: string }) => s } },
    });
    assert.deepEqual(result.messages.slice(2, 4), [
      { role: "tool", tool_call_id: "e1", content: "plain text" },
      { role: "tool", tool_call_id: "n1", content: 'there is no tool named "nope"', is_error: true },
    ]);
  });

  it("the signal aborts the loop while a tool runs: chatLoop rejects with cancelled and the tool's signal fires", async () => {
    const script = [{ tool_calls: [{ name: "wait", id: "w1" }] }, { text: "never" }];
    const ac = new AbortController();
    let toolSignal: AbortSignal | undefined;
    const running = signal();
    const pending = client.chatLoop({
      model: "mock:script",
      messages: [user("wait")],
      provider_options: { script },
      signal: ac.signal,
      tools: {
        wait: {
          parameters: { type: "object" },
          execute: async (_args: unknown, context) => {
            toolSignal = context.signal;
            running.resolve();
            await new Promise((resolve) => context.signal.addEventListener("abort", resolve));
            return "late";
          },
        },
      },
    });
    await running.promise;
    ac.abort();
    await assert.rejects(pending, (e: unknown) => e instanceof SidecarError && e.errorCode === "cancelled");
    assert.equal(toolSignal?.aborted, true);
  });
});

describeWithSidecar("stream views + real sidecar", () => {
  let client: SidecarClient;

  before(async () => {
    ({ client } = await connectSidecar());
  });

  after(async () => {
    await client.close();
  });

  it("two consumers of one fullStream (and a textStream) each get every event, in order; text and usage resolve", async () => {
    const input = "two readers, one stream: every event twice ✓";
    const stream = client.streamText({ model: "mock:echo", messages: [user(input)], provider_options: { chunk_delay_ms: 2 } });
    const [a, b, texts] = await Promise.all([collect(stream.fullStream), collect(stream.fullStream), collect(stream.textStream)]);
    assert.deepEqual(a, b);
    assert.deepEqual(a.map((e) => e.seq), a.map((_, i) => i));
    assert.equal(a[0]?.type, "start");
    assert.equal(a.at(-1)?.type, "done");
    assert.equal(texts.join(""), input);
    assert.equal(await stream.text, input);
    const usage = await stream.usage;
    assert.equal(usage.output_tokens, Math.ceil(input.length / 4));
    assert.equal(await stream.finishReason, "stop");
    // A consumer that starts after the end still reads it all.
    assert.deepEqual(await collect(stream.fullStream), a);
  });

  it("one view leaving early does not stop the others; an error reaches every reader", async () => {
    const stream = client.streamText({ model: "mock:echo", messages: [user("abcdefgh".repeat(8))], provider_options: { chunk_delay_ms: 2 } });
    let first: StreamOutputEvent | undefined;
    for await (const event of stream.fullStream) {
      first = event;
      break;
    }
    assert.equal(first?.type, "start");
    assert.equal(await stream.text, "abcdefgh".repeat(8));

    const failing = client.streamText({
      model: "mock:script",
      messages: [user("x")],
      provider_options: { script: [{ text: "so far", error: { code: "upstream_unavailable", message: "gone" } }] },
    });
    const check = (e: unknown): boolean => e instanceof SidecarError && e.errorCode === "upstream_unavailable";
    await Promise.all([
      assert.rejects(collect(failing.fullStream), check),
      assert.rejects(collect(failing.textStream), check),
      assert.rejects(failing.text, check),
    ]);
  });

  it("streamChatLoop: the loop's events as a stream, loopId once started", async () => {
    const script = [{ text: "only text" }];
    const stream = client.streamChatLoop({ model: "mock:script", messages: [user("hi")], provider_options: { script } });
    const events = await collect(stream);
    assert.deepEqual(events.map((e) => e.type).slice(0, 2), ["step_start", "start"]);
    assert.equal(await stream.text, "only text");
    const state = await client.getLoopMessages({ loop_id: await stream.loopId });
    assert.equal(state.state, "done");
  });
});

/** Why the approval suite cannot run: no sidecar, or no real MCP server (mcp-server-time, the dev extra's). */
function mcpProblem(): string | false {
  const problem = sidecarProblem();
  if (problem) return problem;
  const probe = spawnSync(sidecarPython, ["-c", "import mcp, mcp_server_time"], { encoding: "utf8" });
  return probe.status === 0 ? false : `${sidecarPython} cannot import mcp and mcp_server_time: install the dev extra (scripts/setup.sh --dev)`;
}

// 12:00 UTC is 21:00 in Tokyo (no DST there): a value from outside the sidecar.
const CONVERT = { source_timezone: "UTC", time: "12:00", target_timezone: "Asia/Tokyo" };

describeNeeding(mcpProblem(), "client.chatLoop approves MCP tool calls (a real MCP server: mcp-server-time)", () => {
  let client: SidecarClient;
  const upstreams: Upstream[] = [];

  before(async () => {
    client = await SidecarClient.connect(spawnSidecar({}, ["--allow-mcp"]));
    await client.mcpAddServer({ id: "time", transport: "stdio", command: sidecarPython, args: ["-m", "mcp_server_time", "--local-timezone", "UTC"] });
  });

  after(async () => {
    await client.close();
    await Promise.all(upstreams.map((u) => u.close()));
  });

  async function loopback(id: string, text: string): Promise<Upstream> {
    const upstream = await Upstream.start([toolReply("call_t1", "time__convert_time", CONVERT), textReply(text)]);
    upstreams.push(upstream);
    await upstream.register(client, id);
    return upstream;
  }

  it("approve says yes: the call runs on the MCP server and its real result reaches the model", { timeout: 60_000 }, async () => {
    const upstream = await loopback("loopback-approve", "It is 21:00 in Tokyo.");
    const asked: [ApprovalCall, number][] = [];
    const events: ChatLoopEvent[] = [];
    const result = await client.chatLoop({
      model: "loopback-approve:m",
      messages: [user("What time is it in Tokyo when it is noon in UTC?")],
      mcp_servers: ["time"],
      tool_approval: "always",
      approve: (call, { step }) => {
        asked.push([call, step]);
        return true;
      },
      onEvent: (event) => events.push(event),
    });
    assert.deepEqual(asked, [[{ id: "call_t1", server: "time", name: "convert_time", arguments: CONVERT }, 1]]);
    assert.equal(result.text, "It is 21:00 in Tokyo.");
    const kinds = events.map((e) => e.type);
    assert.ok(kinds.indexOf("tool_approval_requested") < kinds.indexOf("tool_result"), kinds.join(","));
    const toolResult = events.find((e) => e.type === "tool_result");
    assert.equal(toolResult?.type === "tool_result" && toolResult.is_error, false);
    const toolMessage = upstream.requests[1]?.body.messages?.find((m) => m.role === "tool");
    assert.ok(toolMessage, JSON.stringify(upstream.requests[1]?.body));
    assert.equal(toolMessage.tool_call_id, "call_t1");
    const answer = JSON.parse(String(toolMessage.content)) as { target: { datetime: string; timezone: string } };
    assert.equal(answer.target.timezone, "Asia/Tokyo");
    assert.ok(answer.target.datetime.split("T")[1]?.startsWith("21:00"), answer.target.datetime);
  });

  it("approve says no, with a reason: the model gets an error result that says why", { timeout: 60_000 }, async () => {
    const upstream = await loopback("loopback-deny", "Understood.");
    const result = await client.chatLoop({
      model: "loopback-deny:m",
      messages: [user("What time is it in Tokyo when it is noon in UTC?")],
      mcp_servers: ["time"],
      tool_approval: { "time/convert_time": "always" },
      approve: async () => ({ approved: false, reason: "not during the meeting" }),
    });
    assert.equal(result.text, "Understood.");
    const toolMessage = upstream.requests[1]?.body.messages?.find((m) => m.role === "tool");
    assert.match(String(toolMessage?.content), /not during the meeting/);
  });
});
