// The AI SDK (`ai`, the real package) through llm-sidecar-client/ai-sdk against the real sidecar.
import { offLoopback } from "./no-network.js";
import assert from "node:assert/strict";
import { after, before, it } from "node:test";
import { APICallError, Output, embed, generateText, jsonSchema, stepCountIs, streamText, tool } from "ai";
import { SidecarError, type SidecarClient, type StreamEvent } from "llm-sidecar-client";
import { createSidecar, type SidecarProvider } from "llm-sidecar-client/ai-sdk";
import { connectSidecar, describeWithSidecar } from "./helpers.js";
import { Upstream, anthropicReply, textReply, toolReply } from "./upstream.js";

type Part = { type: string; [k: string]: unknown };

async function parts(stream: AsyncIterable<unknown>): Promise<Part[]> {
  const out: Part[] = [];
  for await (const part of stream) out.push(part as Part);
  return out;
}

/** Every sidecar stream's id as it starts, and its terminal event when it ends. */
function watchStreams(client: SidecarClient): { started: string[]; ended: Map<string, StreamEvent> } {
  const started: string[] = [];
  const ended = new Map<string, StreamEvent>();
  client.onNotification((method, params) => {
    const event = params as StreamEvent;
    if (!method.startsWith("llm-stream-")) return;
    if (event.type === "start") started.push(event.stream_id);
    if (event.type === "done" || event.type === "error") ended.set(event.stream_id, event);
  });
  return { started, ended };
}

const weatherSchema = jsonSchema<{ city: string }>({
  type: "object",
  properties: { city: { type: "string" } },
  required: ["city"],
  additionalProperties: false,
});

describeWithSidecar("AI SDK provider (ai 7, LanguageModelV4) + real sidecar", () => {
  let client: SidecarClient;
  let sidecar: SidecarProvider;
  let streams: ReturnType<typeof watchStreams>;
  const upstreams: Upstream[] = [];

  before(async () => {
    ({ client } = await connectSidecar());
    sidecar = createSidecar({ client });
    streams = watchStreams(client);
  });

  after(async () => {
    await client.close();
    await Promise.all(upstreams.map((u) => u.close()));
    assert.deepEqual(offLoopback, [], "nothing was fetched beyond 127.0.0.1");
  });

  it("bar: streamText on mock:echo streams the echoed text and a finish part with usage; generateText returns the same text", async () => {
    const input = "Hello through the AI SDK ✓ ünïcödé";
    const result = streamText({ model: sidecar("mock:echo"), prompt: input });
    const seen = await parts(result.fullStream);
    const text = seen.filter((p) => p.type === "text-delta").map((p) => p.text).join("");
    assert.equal(text, input);
    assert.equal(await result.text, input);
    const finish = seen.find((p) => p.type === "finish") as { totalUsage: { inputTokens: number; outputTokens: number }; finishReason: string } | undefined;
    assert.ok(finish, `a finish part: ${seen.map((p) => p.type).join(",")}`);
    assert.equal(finish.finishReason, "stop");
    // mock:echo counts about 4 characters a token, prompt and answer.
    assert.equal(finish.totalUsage.outputTokens, Math.ceil(input.length / 4));
    assert.ok(finish.totalUsage.inputTokens > 0);
    const usage = await result.usage;
    assert.equal(usage.outputTokens, Math.ceil(input.length / 4));
    assert.equal((await result.response).modelId, "mock:echo");

    const generated = await generateText({ model: sidecar("mock:echo"), prompt: input });
    assert.equal(generated.text, input);
    assert.equal(generated.finishReason, "stop");
    assert.equal(generated.usage.outputTokens, Math.ceil(input.length / 4));
  });

  it("LanguageModelV3 (for ai 6) works through the same SDK too", async () => {
    const model = sidecar.languageModelV3("mock:echo");
    assert.equal(model.specificationVersion, "v3");
    assert.equal((await generateText({ model, prompt: "version three" })).text, "version three");
    assert.equal(await streamText({ model, prompt: "streamed three" }).text, "streamed three");
  });

  const script = [
    { text: "Let me look.", tool_calls: [{ name: "weather", arguments: { city: "Paris" }, id: "call_w1" }], usage: { input_tokens: 11, output_tokens: 7 } },
    { text: "It is 21 °C in Paris.", usage: { input_tokens: 30, output_tokens: 9 } },
    { text: "never reached" },
  ];

  for (const how of ["streamText", "generateText"] as const) {
    it(`${how} on mock:script: a two-step tool call with stopWhen: stepCountIs(3) runs the tool and ends after 2 steps`, async () => {
      const calls: unknown[] = [];
      const tools = {
        weather: tool({
          description: "The weather in a city",
          inputSchema: weatherSchema,
          execute: async (input: { city: string }) => {
            calls.push(input);
            return { city: input.city, celsius: 21 };
          },
        }),
      };
      const options = {
        model: sidecar("mock:script"),
        prompt: "Weather in Paris?",
        tools,
        stopWhen: stepCountIs(3),
        providerOptions: { sidecar: { provider_options: { script } } },
      };
      const result = how === "streamText" ? streamText(options) : await generateText(options);
      const steps = await result.steps;
      assert.deepEqual(calls, [{ city: "Paris" }]);
      assert.equal(steps.length, 2);
      assert.equal(steps[0]?.finishReason, "tool-calls");
      assert.deepEqual(steps[0]?.toolCalls.map((c) => [c.toolCallId, c.toolName, c.input]), [["call_w1", "weather", { city: "Paris" }]]);
      assert.deepEqual(steps[0]?.toolResults.map((r) => r.output), [{ city: "Paris", celsius: 21 }]);
      assert.equal(steps[1]?.finishReason, "stop");
      assert.equal(await result.text, "It is 21 °C in Paris.");
      const total = await result.totalUsage;
      assert.deepEqual([total.inputTokens, total.outputTokens], [41, 16], "the two steps' usage as the script gave it");
    });
  }

  it("bar: the SDK's own multi-step loop against a loopback upstream finishes in two steps with the tool's result in the second request", async () => {
    const upstream = await Upstream.start([
      toolReply("call_time_1", "get_time", { tz: "Europe/Paris" }),
      textReply("It is 12:34 in Paris."),
    ]);
    upstreams.push(upstream);
    await upstream.register(client, "loopback-sdk");
    const result = streamText({
      model: sidecar("loopback-sdk:loop-model"),
      prompt: "What time is it in Paris?",
      tools: {
        get_time: tool({
          description: "The time in a time zone",
          inputSchema: jsonSchema<{ tz: string }>({ type: "object", properties: { tz: { type: "string" } }, required: ["tz"] }),
          execute: async ({ tz }: { tz: string }) => ({ tz, time: "12:34" }),
        }),
      },
      stopWhen: stepCountIs(5),
    });
    assert.equal(await result.text, "It is 12:34 in Paris.");
    assert.equal((await result.steps).length, 2);
    assert.equal(upstream.requests.length, 2);
    const first = upstream.requests[0]?.body;
    assert.equal(first?.model, "loop-model");
    assert.deepEqual((first?.tools as { function: { name: string } }[]).map((t) => t.function.name), ["get_time"]);
    const second = upstream.requests[1]?.body.messages ?? [];
    const call = second.find((m) => m.role === "assistant") as { tool_calls: { id: string; function: { name: string; arguments: string } }[] };
    assert.equal(call.tool_calls[0]?.id, "call_time_1");
    assert.deepEqual(JSON.parse(call.tool_calls[0]?.function.arguments ?? ""), { tz: "Europe/Paris" });
    const toolMessage = second.find((m) => m.role === "tool");
    assert.ok(toolMessage, `a tool message in the second request: ${JSON.stringify(second)}`);
    assert.equal(toolMessage.tool_call_id, "call_time_1");
    assert.deepEqual(JSON.parse(String(toolMessage.content)), { tz: "Europe/Paris", time: "12:34" });
  });

  it("reasoning with its signature round-trips: the SDK's second request sends the thinking block back as it came", async () => {
    const upstream = await Upstream.start(
      [
        anthropicReply({ thinking: { text: "The user wants the time.", signature: "sig-Ez4fQ9" }, tool: { id: "toolu_01", name: "get_time", input: { tz: "UTC" } } }),
        anthropicReply({ text: "It is noon." }),
      ],
      "anthropic",
    );
    upstreams.push(upstream);
    await upstream.register(client, "loopback-anthropic");
    const result = streamText({
      model: sidecar("loopback-anthropic:claude-loop"),
      prompt: "Time?",
      tools: {
        get_time: tool({
          inputSchema: jsonSchema<{ tz: string }>({ type: "object", properties: { tz: { type: "string" } } }),
          execute: async () => "12:00",
        }),
      },
      stopWhen: stepCountIs(3),
    });
    assert.equal(await result.text, "It is noon.");
    const assistant = upstream.requests[1]?.body.messages?.find((m) => m.role === "assistant") as { content: Record<string, unknown>[] };
    const [first] = await result.steps;
    assert.deepEqual(first?.content[0], { type: "reasoning", text: "The user wants the time.", providerMetadata: { sidecar: { signature: "sig-Ez4fQ9" } } });
    assert.deepEqual(assistant.content[0], { type: "thinking", thinking: "The user wants the time.", signature: "sig-Ez4fQ9" });
    assert.deepEqual(assistant.content.at(-1), { type: "tool_use", id: "toolu_01", name: "get_time", input: { tz: "UTC" } });
  });

  it("the SDK's abort signal aborts the sidecar stream; generateText's abort rejects with the abort", async () => {
    const ac = new AbortController();
    const slow = "a slow answer that takes a while to stream ".repeat(6);
    const before = streams.started.length;
    const result = streamText({
      model: sidecar("mock:echo"),
      prompt: slow,
      abortSignal: ac.signal,
      providerOptions: { sidecar: { provider_options: { chunk_delay_ms: 40 } } },
    });
    const seen: Part[] = [];
    for await (const part of result.fullStream) {
      seen.push(part as Part);
      if (part.type === "text-delta") ac.abort();
    }
    assert.ok(seen.some((p) => p.type === "abort"), `an abort part: ${seen.map((p) => p.type).join(",")}`);
    assert.equal(streams.started.length, before + 1);
    const streamId = streams.started.at(-1) as string;
    for (let i = 0; i < 200 && !streams.ended.has(streamId); i++) await new Promise((r) => setTimeout(r, 10));
    const terminal = streams.ended.get(streamId);
    assert.equal(terminal?.type, "error", "the sidecar ended the stream with an error event");
    if (terminal?.type === "error") assert.equal(terminal.error.code, "cancelled");

    const ac2 = new AbortController();
    const pending = generateText({
      model: sidecar("mock:echo"),
      prompt: slow,
      abortSignal: ac2.signal,
      providerOptions: { sidecar: { provider_options: { chunk_delay_ms: 40 } } },
    });
    setTimeout(() => ac2.abort(), 50);
    await assert.rejects(pending, (e: unknown) => e instanceof Error && e.name === "AbortError");
  });

  it("errors become APICallErrors carrying the sidecar's ErrorInfo: a refused request, and a stream that fails midway", async () => {
    // Refused before any event: generateText throws it, streamText reports it.
    await assert.rejects(generateText({ model: sidecar("nope:model"), prompt: "hi" }), (e: unknown) => {
      assert.ok(APICallError.isInstance(e), `an APICallError, got ${String(e)}`);
      assert.equal((e.data as { code: string }).code, "unknown_provider");
      assert.equal(e.isRetryable, false);
      assert.ok(e.cause instanceof SidecarError);
      return true;
    });
    const errors: unknown[] = [];
    const refused = streamText({ model: sidecar("nope:model"), prompt: "hi", onError: ({ error }) => void errors.push(error) });
    await parts(refused.fullStream);
    assert.equal(errors.length, 1);
    assert.ok(APICallError.isInstance(errors[0]));

    // An error event after some text: an error part (and the text before it).
    const failing = [{ text: "partial ", error: { code: "rate_limited", message: "slow down", retryable: true } }];
    const streamed = streamText({
      model: sidecar("mock:script"),
      prompt: "go",
      onError: () => undefined,
      providerOptions: { sidecar: { provider_options: { script: failing } } },
    });
    const seen = await parts(streamed.fullStream);
    assert.equal(seen.filter((p) => p.type === "text-delta").map((p) => p.text).join(""), "partial ");
    const error = seen.find((p) => p.type === "error")?.error;
    assert.ok(APICallError.isInstance(error), `an APICallError part, got ${String(error)}`);
    assert.equal((error.data as { code: string }).code, "rate_limited");
    assert.equal(error.message, "slow down");
    assert.equal(error.isRetryable, true);

    // generateText, no retries: the APICallError itself.
    await assert.rejects(
      generateText({ model: sidecar("mock:script"), prompt: "go", maxRetries: 0, providerOptions: { sidecar: { provider_options: { script: failing } } } }),
      (e: unknown) => APICallError.isInstance(e) && (e.data as { code: string }).code === "rate_limited" && e.isRetryable,
    );
  });

  it("structured output with a JSON schema: sent as response_format json_schema and parsed by the SDK", async () => {
    const schema = jsonSchema<{ name: string; age: number }>({
      type: "object",
      properties: { name: { type: "string" }, age: { type: "integer" } },
      required: ["name", "age"],
      additionalProperties: false,
    });
    const answer = { name: "Ada", age: 36 };
    const result = await generateText({
      model: sidecar("mock:echo"),
      output: Output.object({ schema }),
      prompt: JSON.stringify(answer),
      include: { requestBody: true },
    });
    assert.deepEqual(result.output, answer);
    assert.deepEqual((result.request.body as { response_format: unknown }).response_format, {
      type: "json_schema",
      schema: schema.jsonSchema,
    });
    const streamed = streamText({ model: sidecar("mock:echo"), output: Output.object({ schema }), prompt: JSON.stringify(answer) });
    assert.deepEqual(await streamed.output, answer);
    // The sidecar checks the answer against the schema: one that does not match fails there.
    await assert.rejects(
      generateText({ model: sidecar("mock:echo"), output: Output.object({ schema }), maxRetries: 0, prompt: JSON.stringify({ name: "Ada" }) }),
      (e: unknown) => APICallError.isInstance(e) && (e.data as { code: string }).code === "protocol_error",
    );
  });

  it("call options map to the sidecar's params; unsupported ones and the sidecar's warning events become warnings", async () => {
    const upstream = await Upstream.start([textReply("fine")]);
    upstreams.push(upstream);
    await upstream.register(client, "loopback-options");
    const result = streamText({
      model: sidecar("loopback-options:opt-model"),
      prompt: "hi",
      temperature: 0.25,
      topP: 0.5,
      maxOutputTokens: 77,
      stopSequences: ["STOP"],
      seed: 7,
      topK: 3,
      tools: { lookup: tool({ inputSchema: jsonSchema<{ q: string }>({ type: "object", properties: { q: { type: "string" } } }), execute: async () => "x" }) },
      toolChoice: { type: "tool", toolName: "lookup" },
      includeRawChunks: true,
      providerOptions: { sidecar: { reasoning: { budget_tokens: 1000 }, provider_options: { user: "u-1" } } },
    });
    const seen = await parts(result.fullStream);
    assert.equal(await result.text, "fine");
    const sent = upstream.requests[0]?.body ?? {};
    assert.equal(sent.temperature, 0.25);
    assert.equal(sent.top_p, 0.5);
    assert.deepEqual(sent.stop, ["STOP"]);
    assert.equal(sent.seed, 7);
    assert.equal(sent.user, "u-1");
    assert.ok(sent.max_tokens === 77 || sent.max_completion_tokens === 77, JSON.stringify(sent));
    assert.equal(sent.top_k, undefined);
    assert.deepEqual(sent.tool_choice, { type: "function", function: { name: "lookup" } });
    assert.deepEqual((sent.tools as { function: { name: string } }[]).map((t) => t.function.name), ["lookup"]);
    const warnings = (await result.warnings) ?? [];
    assert.deepEqual(
      warnings.map((w) => (w.type === "unsupported" ? w.feature : w.type === "other" ? w.message : w.type)),
      ["topK", "unsupported_setting: openai: reasoning.budget_tokens is not supported and was not sent"],
    );
    const raw = seen.filter((p) => p.type === "raw").map((p) => (p.rawValue as StreamEvent).type);
    assert.deepEqual([raw[0], raw.at(-1)], ["start", "done"], "raw parts are the sidecar's events");
  });

  it("embeddingModel runs llm_embed", async () => {
    const { embedding, usage } = await embed({ model: sidecar.embeddingModel("mock:embed"), value: "hello" });
    const again = await client.embed({ model: "mock:embed", input: ["hello"] });
    assert.deepEqual(embedding, again.embeddings[0]);
    assert.equal(usage.tokens, again.usage.input_tokens);
    assert.throws(() => sidecar.imageModel("x"), /no image models/);
  });
});
