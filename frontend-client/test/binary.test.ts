// The Node transport against the one-file binary (`python -m sidecar build-binary`), the way a Tauri
// or Electron app ships it: no Python on the machine, only `SIDECAR_BINARY`. tests/test_binary.py
// builds the binary and runs this file with it; `npm test` leaves this file out unless
// SIDECAR_BINARY is set (scripts/run-tests.mjs). Run alone without it: skipped (failed under CI).
import assert from "node:assert/strict";
import { after, before, it } from "node:test";
import { SidecarClient, type StreamOutputEvent } from "llm-sidecar-client";
import { nodeProcess } from "llm-sidecar-client/node";
import { describeNeeding, sidecarEnv, user } from "./helpers.js";

const binary = process.env.SIDECAR_BINARY;

const noBinary =
  "SIDECAR_BINARY is not set: this suite drives a built binary. Build one with `python -m sidecar build-binary` " +
  "and run `SIDECAR_BINARY=../dist/llm-sidecar-<target triple> node --test build/test/binary.test.js` " +
  "(tests/test_binary.py does both)";

describeNeeding(binary ? false : noBinary, "Node transport + the built binary", () => {
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
