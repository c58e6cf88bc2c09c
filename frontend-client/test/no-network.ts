// Imported first by the tests that load the AI SDK: nothing they do may leave 127.0.0.1.
// - A model given as a plain string would go to Vercel's hosted gateway: the default provider is
//   replaced by one that refuses every model.
// - Any fetch() to a host that is not loopback fails, and is recorded so the suite can assert none
//   was tried.
// - The SDK's console warnings are off (the tests read the warnings from the results instead).
// The AI SDK has no telemetry exporter unless one is registered; none is.

const loopback = (host: string): boolean => host === "localhost" || host === "[::1]" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);

/** Every non-loopback URL something tried to fetch. */
export const offLoopback: string[] = [];

const g = globalThis as Record<string, unknown>;
const realFetch = globalThis.fetch;
globalThis.fetch = (async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
  const url = new URL(typeof input === "string" ? input : input instanceof URL ? input.href : input.url);
  if (!loopback(url.hostname)) {
    offLoopback.push(url.href);
    throw new Error(`test: no network beyond 127.0.0.1 (tried ${url.href})`);
  }
  return realFetch(input, init);
}) as typeof fetch;

const refuse = (kind: string) => (id: string): never => {
  throw new Error(`test: ${kind} ${JSON.stringify(id)} given as a string would go to the hosted gateway; pass a model object`);
};
g.AI_SDK_DEFAULT_PROVIDER = {
  specificationVersion: "v4",
  languageModel: refuse("model"),
  embeddingModel: refuse("embedding model"),
  imageModel: refuse("image model"),
};
g.AI_SDK_LOG_WARNINGS = false;
