#!/usr/bin/env node
// Streams the offline `mock:echo` model through the real sidecar, using the BUILT package
// (its own exports: `llm-sidecar-client` and `llm-sidecar-client/node`; run `npm run build` first).
//
//   node examples/echo.mjs "text to echo"
//
// SIDECAR_PYTHON names the Python that has the sidecar installed (default ../.venv/bin/python);
// the sidecar runs as `$SIDECAR_PYTHON -m sidecar`.
import path from "node:path";
import { fileURLToPath } from "node:url";
import { SidecarClient, SidecarError } from "llm-sidecar-client";
import { nodeProcess } from "llm-sidecar-client/node";

const packageRoot = fileURLToPath(new URL("..", import.meta.url));
const python = process.env.SIDECAR_PYTHON
  ? path.resolve(packageRoot, process.env.SIDECAR_PYTHON)
  : path.resolve(packageRoot, "../.venv/bin/python");
const text = process.argv.slice(2).join(" ") || "Hello from llm-sidecar-client!";

const client = await SidecarClient.connect(nodeProcess(python, ["-m", "sidecar"], { cwd: path.resolve(packageRoot, "..") }));
try {
  for await (const event of client.streamText({ model: "mock:echo", messages: [{ role: "user", content: text }] })) {
    if (event.type === "text_delta") process.stdout.write(event.text);
    if (event.type === "done") process.stdout.write(`\n[done: ${event.finish_reason}, ${event.usage.output_tokens} tokens]\n`);
  }
} catch (error) {
  if (error instanceof SidecarError) console.error(`stream failed: ${error.data?.code ?? error.code}: ${error.message}`);
  process.exitCode = 1;
} finally {
  await client.close();
}
