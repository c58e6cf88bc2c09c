#!/usr/bin/env node
// examples/echo.mjs from CommonJS: `require("llm-sidecar-client")` resolves to the package's
// CommonJS build (dist/cjs; run `npm run build` first) and streams the offline `mock:echo` model.
//
//   node examples/echo.cjs "text to echo"
//
// SIDECAR_PYTHON names the Python that has the sidecar installed (default ../.venv/bin/python).
const path = require("node:path");
const { SidecarClient, SidecarError } = require("llm-sidecar-client");
const { nodeProcess } = require("llm-sidecar-client/node");

const packageRoot = path.resolve(__dirname, "..");
const python = process.env.SIDECAR_PYTHON
  ? path.resolve(packageRoot, process.env.SIDECAR_PYTHON)
  : path.resolve(packageRoot, "../.venv/bin/python");
const text = process.argv.slice(2).join(" ") || "Hello from llm-sidecar-client (CommonJS)!";

async function main() {
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
}

main();
