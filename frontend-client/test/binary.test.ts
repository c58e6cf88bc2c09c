// The Node transport against the one-file binary (`python -m sidecar build-binary`), the way a Tauri
// or Electron app ships it: no Python on the machine, only `SIDECAR_BINARY`. Skipped unless that
// variable names the binary (tests/test_binary.py builds one and runs this file with it).
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { SidecarClient, type StreamOutputEvent } from "llm-sidecar-client";
import { nodeProcess } from "llm-sidecar-client/node";
import { sidecarEnv, user } from "./helpers.js";

const binary = process.env.SIDECAR_BINARY;

describe("Node transport + the built binary", { skip: binary ? false : "set SIDECAR_BINARY to a built binary" }, () => {
  let client: SidecarClient;

  before(async () => {
    client = await SidecarClient.connect(nodeProcess(binary ?? "", [], { env: sidecarEnv(), stderr: "pipe" }));
  });

  after(async () => {
    const exit = await client.close();
    assert.equal(exit.code, 0, "the binary exits cleanly after shutdown");
  });

  it("listProviders includes mock", async () => {
    assert.equal(client.ready?.protocol_version, 1);
    const providers = await client.listProviders();
    assert.ok(providers.some((p) => p.id === "mock" && p.protocol === "mock"));
  });

  it("streamText with mock:echo yields the text, typed", async () => {
    const input = "Hello from the binary! ünïcödé 🎉";
    const events: StreamOutputEvent[] = [];
    for await (const event of client.streamText({ model: "mock:echo", messages: [user(input)] })) events.push(event);
    const text = events.map((e) => (e.type === "text_delta" ? e.text : "")).join("");
    assert.equal(text, input);
    assert.equal(events[0]?.type, "start");
    assert.equal(events.at(-1)?.type, "done");
  });
});
