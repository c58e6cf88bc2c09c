// The Node transport against the real Python sidecar (`SIDECAR_PYTHON -m sidecar`).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import path from "node:path";
import { after, before, it } from "node:test";
import { promisify } from "node:util";
import {
  SidecarClient,
  SidecarError,
  isSidecarError,
  type ProviderInfo,
  type StreamEvent,
  type StreamOutputEvent,
} from "llm-sidecar-client";
import { nodeProcess } from "llm-sidecar-client/node";
import {
  connectSidecar,
  describeWithSidecar,
  packageRoot,
  sidecarEnv,
  sidecarPython,
  sleep,
  spawnSidecar,
  user,
} from "./helpers.js";

async function collect(iterable: AsyncIterable<StreamOutputEvent>): Promise<StreamOutputEvent[]> {
  const events: StreamOutputEvent[] = [];
  for await (const event of iterable) events.push(event);
  return events;
}

function textOf(events: StreamOutputEvent[]): string {
  return events.map((e) => (e.type === "text_delta" ? e.text : "")).join("");
}

async function rejectsWith(promise: Promise<unknown>, check: (error: SidecarError) => void): Promise<SidecarError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof SidecarError, `expected a SidecarError, got ${String(error)}`);
    check(error);
    return error;
  }
  assert.fail("expected a rejection");
}

describeWithSidecar("Node transport + real sidecar", () => {
  let client: SidecarClient;

  before(async () => {
    ({ client } = await connectSidecar());
  });

  after(async () => {
    const exit = await client.close();
    assert.equal(exit.code, 0, "the sidecar exits cleanly after shutdown");
  });

  it("connects: sidecar-ready is received and checked", () => {
    assert.ok(client.ready);
    assert.equal(client.ready.protocol_version, 1);
    assert.equal(typeof client.ready.pid, "number");
  });

  it("typed calls: listProviders includes mock; sidecarInfo; generic call()", async () => {
    const providers: ProviderInfo[] = await client.listProviders();
    const mock = providers.find((p) => p.id === "mock");
    assert.ok(mock, "mock provider listed");
    assert.equal(mock.protocol, "mock");
    assert.equal(typeof mock.has_api_key, "boolean");
    const info = await client.sidecarInfo();
    assert.equal(info.protocol_version, 1);
    const same = await client.call("list_providers");
    assert.deepEqual(same.map((p) => p.id), providers.map((p) => p.id));
    const models = await client.listAvailableModels({ provider: "mock" });
    assert.ok(models.some((m) => m.id === "mock:echo"));
  });

  it("streams mock:echo end to end: text equals the input, seq in order, start first, done last", async () => {
    const input = "Hello from the TypeScript client! ünïcödé 🎉";
    const events = await collect(client.streamText({ model: "mock:echo", messages: [user(input)] }));
    assert.equal(textOf(events), input);
    assert.deepEqual(
      events.map((e) => e.seq),
      events.map((_, i) => i),
    );
    assert.equal(events[0]?.type, "start");
    const last = events.at(-1);
    assert.equal(last?.type, "done");
    if (last?.type === "done") {
      assert.equal(last.finish_reason, "stop");
      assert.equal(last.model, "mock:echo");
    }
    const streamIds = new Set(events.map((e) => e.stream_id));
    assert.equal(streamIds.size, 1);
  });

  it("completeChat returns the whole answer", async () => {
    const result = await client.completeChat({ model: "mock:echo", messages: [user("complete me")] });
    assert.equal(result.content, "complete me");
    assert.equal(result.finish_reason, "stop");
  });

  it("abort via AbortSignal mid-stream: calls llm_abort_stream and throws SidecarError cancelled", async () => {
    const ac = new AbortController();
    const seen: StreamOutputEvent[] = [];
    const error = await rejectsWith(
      (async () => {
        for await (const event of client.streamText(
          { model: "mock:echo", messages: [user("a long text that streams slowly ".repeat(5))], provider_options: { chunk_delay_ms: 30 } },
          { signal: ac.signal },
        )) {
          seen.push(event);
          if (event.type === "text_delta") ac.abort();
        }
      })(),
      (e) => {
        assert.equal(e.code, -32000);
        assert.equal(e.data?.code, "cancelled");
        assert.equal(e.errorCode, "cancelled");
        assert.equal(e.local, false, "the sidecar's own cancelled event");
        assert.equal(e.event?.type, "error");
      },
    );
    assert.ok(seen.some((e) => e.type === "text_delta"));
    assert.ok(!seen.some((e) => e.type === "done"));
    assert.equal(error.streamId, seen[0]?.stream_id);
    // The client keeps working.
    assert.ok((await client.listProviders()).length > 0);
  });

  it("an already aborted signal fails at once, without a request", async () => {
    const ac = new AbortController();
    ac.abort();
    await rejectsWith(collect(client.streamText({ model: "mock:echo", messages: [user("x")] }, { signal: ac.signal })), (e) => {
      assert.equal(e.data?.code, "cancelled");
      assert.equal(e.local, true);
    });
  });

  it("break out of the loop aborts the stream in the sidecar", async () => {
    const streamId = `break-${Date.now()}`;
    const tail: StreamEvent[] = [];
    const off = client.on(`llm-stream-${streamId}`, (event) => tail.push(event));
    let deltas = 0;
    for await (const event of client.streamText({
      stream_id: streamId,
      model: "mock:echo",
      messages: [user("this text would take a long time to stream ".repeat(10))],
      provider_options: { chunk_delay_ms: 30 },
    })) {
      if (event.type === "text_delta" && ++deltas === 2) break;
    }
    for (let i = 0; i < 100 && !tail.some((e) => e.type === "error" || e.type === "done"); i++) await sleep(20);
    off();
    const terminal = tail.at(-1);
    assert.equal(terminal?.type, "error", "the stream ended with an error event");
    if (terminal?.type === "error") assert.equal(terminal.error.code, "cancelled");
    const result = await client.abortStream({ stream_id: streamId });
    assert.equal(result.aborted, false, "already ended");
  });

  it("errors carry the JSON-RPC code and a typed data.code", async () => {
    await rejectsWith(collect(client.streamText({ model: "nope:x", messages: [user("hi")] })), (e) => {
      assert.equal(e.code, -32000);
      assert.equal(e.data?.code, "unknown_provider");
      assert.equal(e.data?.provider, "nope");
      assert.equal(e.method, "llm_stream_text");
      assert.equal(e.local, false);
    });
    await rejectsWith(client.getApiKey({ provider: "nope" }), (e) => {
      assert.equal(e.code, -32000);
      assert.ok(isSidecarError(e, "unknown_provider"));
      assert.equal(e.retryable, false);
    });
    // Invalid params: -32602 without data.
    await rejectsWith(
      client.call("llm_list_available_models", { provider: 42 } as unknown as { provider: string }),
      (e) => {
        assert.equal(e.code, -32602);
        assert.equal(e.data, undefined);
      },
    );
    // A method the schema does not know: -32601.
    await rejectsWith(client.call("no_such_method", {}), (e) => assert.equal(e.code, -32601));
  });

  it("50 concurrent streams each receive exactly their own events", async () => {
    const inputs = Array.from({ length: 50 }, (_, i) => `stream number ${i}: ${"abc".repeat(i % 7)} end`);
    const results = await Promise.all(
      inputs.map((input) =>
        collect(client.streamText({ model: "mock:echo", messages: [user(input)], provider_options: { chunk_delay_ms: 1 } })),
      ),
    );
    results.forEach((events, i) => {
      assert.equal(textOf(events), inputs[i]);
      assert.equal(new Set(events.map((e) => e.stream_id)).size, 1);
      assert.deepEqual(
        events.map((e) => e.seq),
        events.map((_, k) => k),
      );
      assert.equal(events.at(-1)?.type, "done");
    });
    assert.equal(new Set(results.map((events) => events[0]?.stream_id)).size, 50);
  });

  it("per-call timeout fails the call with a local timeout; the client keeps working", async () => {
    await rejectsWith(
      client.completeChat(
        { model: "mock:echo", messages: [user("slow answer ".repeat(4))], provider_options: { chunk_delay_ms: 300 } },
        { timeoutMs: 100 },
      ),
      (e) => {
        assert.equal(e.data?.code, "timeout");
        assert.equal(e.local, true);
        assert.equal(e.method, "complete_chat");
      },
    );
    const ac = new AbortController();
    const pending = client.completeChat(
      { model: "mock:echo", messages: [user("slow answer ".repeat(4))], provider_options: { chunk_delay_ms: 300 } },
      { signal: ac.signal },
    );
    ac.abort();
    await rejectsWith(pending, (e) => assert.equal(e.data?.code, "cancelled"));
    assert.equal((await client.sidecarInfo()).protocol_version, 1);
  });

  it("callback style: startStream calls onText/onDone and resolves the result; abort() rejects it", async () => {
    const texts: string[] = [];
    let doneCalls = 0;
    const handle = client.startStream(
      { model: "mock:echo", messages: [user("callbacks work")] },
      { onText: (t) => texts.push(t), onDone: () => doneCalls++ },
    );
    const result = await handle.result;
    assert.equal(result.text, "callbacks work");
    assert.equal(texts.join(""), "callbacks work");
    assert.equal(result.finishReason, "stop");
    assert.equal(result.streamId, handle.streamId);
    assert.equal(doneCalls, 1);

    const errors: SidecarError[] = [];
    const slow = client.startStream(
      { model: "mock:echo", messages: [user("slow ".repeat(40))], provider_options: { chunk_delay_ms: 30 } },
      {
        onText: () => slow.abort(),
        onError: (e) => errors.push(e),
      },
    );
    await rejectsWith(slow.result, (e) => assert.equal(e.data?.code, "cancelled"));
    assert.equal(errors.length, 1);
  });
});

describeWithSidecar("process exit", () => {
  it("fails every pending call and stream with sidecar_exited when the process is killed", async () => {
    const { client, transport } = await connectSidecar();
    const slowText = "this will never finish ".repeat(20);
    const stream = collect(
      client.streamText({ model: "mock:echo", messages: [user(slowText)], provider_options: { chunk_delay_ms: 100 } }),
    );
    const call = client.completeChat({
      model: "mock:echo",
      messages: [user(slowText)],
      provider_options: { chunk_delay_ms: 100 },
    });
    await sleep(300);
    transport.child.kill("SIGKILL");
    const check = (e: SidecarError): void => {
      assert.equal(e.data?.code, "sidecar_exited");
      assert.equal(e.local, true);
      assert.match(e.message, /signal SIGKILL/);
    };
    await rejectsWith(stream, check);
    await rejectsWith(call, check);
    const exit = await client.exited;
    assert.equal(exit.signal, "SIGKILL");
    assert.equal(client.isClosed, true);
    await rejectsWith(client.listProviders(), (e) => assert.equal(e.data?.code, "sidecar_exited"));
  });

  it("shutdown: in-flight streams end and pending calls fail, the process exits with 0", async () => {
    const { client } = await connectSidecar();
    const stream = collect(
      client.streamText({ model: "mock:echo", messages: [user("slow ".repeat(50))], provider_options: { chunk_delay_ms: 100 } }),
    );
    const call = client.completeChat({
      model: "mock:echo",
      messages: [user("slow ".repeat(50))],
      provider_options: { chunk_delay_ms: 100 },
    });
    await sleep(200);
    await client.shutdown();
    const codes = ["cancelled", "sidecar_exited"];
    await rejectsWith(stream, (e) => assert.ok(codes.includes(e.data?.code ?? ""), String(e.data?.code)));
    await rejectsWith(call, (e) => assert.ok(codes.includes(e.data?.code ?? ""), String(e.data?.code)));
    const exit = await client.exited;
    assert.equal(exit.code, 0);
  });

  it("connect fails with sidecar_exited (exit code and stderr) when the process dies before sidecar-ready", async () => {
    const transport = nodeProcess(sidecarPython, ["-c", "import sys; sys.stderr.write('boom: bad config\\n'); sys.exit(3)"], {
      stderr: "pipe",
      env: sidecarEnv(),
    });
    await rejectsWith(SidecarClient.connect(transport), (e) => {
      assert.equal(e.data?.code, "sidecar_exited");
      assert.match(e.message, /exited with code 3/);
      assert.match(e.message, /boom: bad config/);
    });
  });

  it("connect fails with a timeout when sidecar-ready never comes, and kills the process", async () => {
    const transport = nodeProcess(sidecarPython, ["-c", "import time; time.sleep(30)"], { stderr: "pipe", env: sidecarEnv() });
    await rejectsWith(SidecarClient.connect(transport, { readyTimeoutMs: 300 }), (e) => {
      assert.equal(e.data?.code, "timeout");
      assert.equal(e.local, true);
    });
    assert.notEqual(transport.child.exitCode ?? transport.child.signalCode, null, "the process was stopped");
  });

  it("connect fails when the command does not exist", async () => {
    const transport = nodeProcess(path.join(packageRoot, "no-such-binary"), [], { stderr: "pipe" });
    await rejectsWith(SidecarClient.connect(transport, { readyTimeoutMs: 5000 }), (e) => {
      assert.equal(e.data?.code, "sidecar_exited");
      assert.match(e.message, /ENOENT/);
    });
  });

  it("close() kills a sidecar that does not answer shutdown", async () => {
    // A fake sidecar: announces itself, then ignores everything.
    const script =
      "import sys, json, time\n" +
      "print(json.dumps({'jsonrpc': '2.0', 'method': 'sidecar-ready', 'params': {'version': 'x', 'protocol_version': 1, 'pid': 1}}), flush=True)\n" +
      "time.sleep(60)\n";
    const transport = nodeProcess(sidecarPython, ["-c", script], { stderr: "pipe" });
    const client = await SidecarClient.connect(transport);
    const pending = client.sidecarInfo();
    const started = Date.now();
    const exit = await client.close({ timeoutMs: 300 });
    assert.equal(exit.signal, "SIGTERM");
    assert.ok(Date.now() - started < 3000);
    await rejectsWith(pending, (e) => assert.equal(e.data?.code, "sidecar_exited"));
  });

  it("a sidecar announcing another protocol version is refused", async () => {
    const script =
      "import json, time\n" +
      "print(json.dumps({'jsonrpc': '2.0', 'method': 'sidecar-ready', 'params': {'version': 'x', 'protocol_version': 99, 'pid': 1}}), flush=True)\n" +
      "time.sleep(60)\n";
    const transport = nodeProcess(sidecarPython, ["-c", script], { stderr: "pipe" });
    await rejectsWith(SidecarClient.connect(transport), (e) => assert.equal(e.data?.code, "protocol_error"));
  });
});

describeWithSidecar("examples/echo.mjs and echo.cjs", () => {
  for (const file of ["echo.mjs", "echo.cjs"]) {
    it(`${file} loads the built package (${file.endsWith(".cjs") ? "require" : "import"}) and prints the echoed text`, async () => {
      const text = `Echo through the built package from ${file}`;
      const { stdout } = await promisify(execFile)(process.execPath, [path.join(packageRoot, "examples", file), text], {
        cwd: packageRoot,
        env: { ...sidecarEnv(), SIDECAR_PYTHON: sidecarPython },
        timeout: 30_000,
      });
      const [echoed, done, rest] = stdout.split("\n");
      assert.equal(echoed, text);
      assert.match(done ?? "", /^\[done: stop, [1-9]\d* tokens\]$/);
      assert.equal(rest, "");
    });
  }
});

describeWithSidecar("nodeProcess transport", () => {
  it("keeps output that arrives before the client listens", async () => {
    const transport = spawnSidecar();
    await sleep(1500); // sidecar-ready has been written by now, before anyone listens
    const client = await SidecarClient.connect(transport, { readyTimeoutMs: 5000 });
    assert.equal(client.ready?.protocol_version, 1);
    await client.close();
  });
});
