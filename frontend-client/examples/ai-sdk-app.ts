// An app that keeps its AI SDK code and runs it through the sidecar (where the keys are), and one
// that lets the client run its tools (chatLoop). Type-checked (strict) by `npm test`
// (tsconfig.examples.json) against the package's own exports, as an app sees them.
import { Output, generateText, jsonSchema, stepCountIs, streamText, tool, type LanguageModel } from "ai";
import { SidecarClient, SidecarError, type ChatLoopResult, type StreamOutputEvent } from "llm-sidecar-client";
import { createSidecar, type SidecarProvider } from "llm-sidecar-client/ai-sdk";
import { nodeProcess } from "llm-sidecar-client/node";

declare function render(text: string): void;

const weather = tool({
  description: "The current weather in a city",
  inputSchema: jsonSchema<{ city: string }>({ type: "object", properties: { city: { type: "string" } }, required: ["city"] }),
  execute: async ({ city }: { city: string }) => ({ city, celsius: 21 }),
});

export async function withTheAiSdk(): Promise<void> {
  const client = await SidecarClient.connect(nodeProcess("llm-sidecar"));
  const sidecar: SidecarProvider = createSidecar({ client });
  const model: LanguageModel = sidecar("anthropic:claude-sonnet-4-5");
  const embedder = sidecar.embeddingModel("openai:text-embedding-3-small");
  render(embedder.modelId);

  // The AI SDK's own multi-step tool loop; the sidecar makes each model call.
  const result = streamText({
    model,
    system: "Be brief.",
    prompt: "What is the weather in Paris?",
    tools: { weather },
    stopWhen: stepCountIs(5),
    temperature: 0.2,
    providerOptions: { sidecar: { fallback_models: ["openai:gpt-4o-mini"], retry: { max_retries: 1 } } },
  });
  for await (const text of result.textStream) render(text);
  const usage = await result.totalUsage;
  render(`${usage.inputTokens ?? 0} in, ${usage.outputTokens ?? 0} out`);

  // Structured output: sent as response_format json_schema, checked by the sidecar and the SDK.
  const { output } = await generateText({
    model: sidecar("openai:gpt-4o-mini"),
    output: Output.object({
      schema: jsonSchema<{ name: string; age: number }>({
        type: "object",
        properties: { name: { type: "string" }, age: { type: "number" } },
        required: ["name", "age"],
      }),
    }),
    prompt: "Ada Lovelace, as JSON",
  });
  const age: number = output.age;
  render(`${output.name}: ${age}`);
  await client.close();
}

export async function withTheClient(client: SidecarClient): Promise<string> {
  // The client's own tool loop: the sidecar calls the model, the app runs the tools.
  const ac = new AbortController();
  const done: ChatLoopResult = await client.chatLoop({
    model: "anthropic:claude-sonnet-4-5",
    messages: [{ role: "user", content: "What is the weather in Paris?" }],
    max_steps: 5,
    signal: ac.signal,
    tools: {
      weather: {
        description: "The current weather in a city",
        parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
        execute: async ({ city }: { city: string }, { signal }) => {
          const res = await fetch(`https://weather.example/${encodeURIComponent(city)}`, { signal });
          return res.json();
        },
      },
    },
    approve: (call) => call.server === "files" && call.name === "read_file",
    onEvent: (event) => {
      if (event.type === "text_delta") render(event.text);
    },
  });
  render(`${done.steps} steps, ${done.usage.output_tokens} tokens, ${done.messages.length} messages`);
  // @ts-expect-error: a tool needs its JSON Schema
  await client.chatLoop({ messages: [], tools: { bad: { execute: () => 1 } } });
  // @ts-expect-error: approve answers with a decision
  await client.chatLoop({ messages: [], approve: () => "yes" });

  // Stream views: several readers of one stream, and promises of its outcome.
  const stream = client.streamText({ model: "mock:echo", messages: [{ role: "user", content: "hi" }] });
  const events: StreamOutputEvent[] = [];
  await Promise.all([
    (async () => {
      for await (const text of stream.textStream) render(text);
    })(),
    (async () => {
      for await (const event of stream.fullStream) events.push(event);
    })(),
  ]);
  try {
    return `${await stream.text} (${(await stream.usage).output_tokens} tokens, ${events.length} events)`;
  } catch (e) {
    if (e instanceof SidecarError && e.errorCode === "cancelled") return "stopped";
    throw e;
  }
}
