// The Tauri transport, end to end, under @tauri-apps/api's own IPC mocks: `mockIPC` intercepts
// the commands @tauri-apps/plugin-shell issues (plugin:shell|spawn, |stdin_write, |kill) and
// forwards them to a REAL Python sidecar process. Stdout goes back the way the shell plugin's
// Rust side sends it: through the spawn call's Channel (`onEvent`), as indexed messages
// `{index, message: {event: "Stdout" | "Stderr" | "Terminated" | "Error", payload}}`, here
// delivered with random delays (so out of order; the Channel puts them back in order).
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { constants } from "node:os";
import { after, before, it } from "node:test";
import { clearMocks, mockIPC } from "@tauri-apps/api/mocks";
import { SidecarClient, SidecarError, type StreamOutputEvent } from "llm-sidecar-client";
import { tauriSidecar, type ExitInfo } from "llm-sidecar-client/tauri";
import { describeWithSidecar, repoRoot, seededRandom, sidecarArgs, sidecarEnv, sidecarPython, sleep, user } from "./helpers.js";

// The mocks and @tauri-apps/api/core look for `window.__TAURI_INTERNALS__`.
(globalThis as unknown as { window: unknown }).window = globalThis;
interface Internals {
  runCallback(id: number, data: unknown): void;
}
const internals = (): Internals => (globalThis as unknown as { __TAURI_INTERNALS__: Internals }).__TAURI_INTERNALS__;

type Mode = "lines" | "lines-with-newline" | "raw";

interface Invocation {
  cmd: string;
  payload: Record<string, unknown>;
}

/**
 * Installs an IPC mock that runs the real sidecar for `plugin:shell|spawn` (or, with `pythonArgs`,
 * `sidecarPython` with those arguments instead of `-m sidecar`).
 */
function installShellMock(
  mode: Mode,
  seed: number,
  pythonArgs?: string[],
): { invocations: Invocation[]; children: Map<number, ChildProcess> } {
  const invocations: Invocation[] = [];
  const children = new Map<number, ChildProcess>();
  const rand = seededRandom(seed);
  mockIPC((cmd, payload) => {
    const args = (payload ?? {}) as Record<string, unknown>;
    invocations.push({ cmd, payload: args });
    switch (cmd) {
      case "plugin:shell|spawn": {
        const options = (args.options ?? {}) as { sidecar?: boolean; encoding?: string };
        assert.equal(args.program, "binaries/llm-sidecar");
        assert.equal(options.sidecar, true, "Command.sidecar sets options.sidecar");
        const channel = args.onEvent as { id: number };
        assert.equal(typeof channel.id, "number", "onEvent is a Channel");
        const child = spawn(sidecarPython, pythonArgs ?? [...sidecarArgs, ...((args.args as string[]) ?? [])], {
          cwd: repoRoot,
          env: sidecarEnv(),
          stdio: ["pipe", "pipe", "pipe"],
        });
        assert.ok(child.pid);
        children.set(child.pid, child);
        let index = 0;
        const pendingDeliveries: Promise<void>[] = [];
        const send = (message: unknown): void => {
          const data = { index: index++, message };
          // Random delays reorder deliveries; the Channel must restore the order.
          pendingDeliveries.push(
            new Promise((resolve) =>
              setTimeout(() => {
                internals().runCallback(channel.id, data);
                resolve();
              }, Math.floor(rand() * 3)),
            ),
          );
        };
        const pipe = (stream: NodeJS.ReadableStream, event: "Stdout" | "Stderr"): void => {
          if (mode === "raw" || options.encoding === "raw") {
            stream.on("data", (buf: Buffer) => {
              // Bytes cut anywhere, sent as a number array (Vec<u8> over JSON IPC).
              for (let at = 0; at < buf.length; ) {
                const size = 1 + Math.floor(rand() * 64);
                send({ event, payload: Array.from(buf.subarray(at, at + size)) });
                at += size;
              }
            });
          } else {
            // Like the plugin's text mode: one event per line, split on \n (and a lone \r).
            let partial = "";
            stream.setEncoding("utf8");
            stream.on("data", (text: string) => {
              const parts = (partial + text).split(/\r\n|\n|\r(?!$)/);
              partial = parts.pop() ?? "";
              for (const line of parts) send({ event, payload: mode === "lines-with-newline" ? `${line}\n` : line });
            });
            stream.on("end", () => {
              if (partial) send({ event, payload: partial });
            });
          }
        };
        pipe(child.stdout, "Stdout");
        pipe(child.stderr, "Stderr");
        child.on("close", (code, signal) => {
          children.delete(child.pid ?? -1);
          void Promise.all(pendingDeliveries).then(() =>
            send({ event: "Terminated", payload: { code, signal: signal ? constants.signals[signal] : null } }),
          );
        });
        return child.pid;
      }
      case "plugin:shell|stdin_write": {
        const child = children.get(args.pid as number);
        if (!child) throw new Error("no such child");
        const buffer = args.buffer as string | number[];
        return new Promise<void>((resolve, reject) =>
          child.stdin?.write(typeof buffer === "string" ? buffer : Buffer.from(buffer), (e) => (e ? reject(e) : resolve())),
        );
      }
      case "plugin:shell|kill": {
        assert.equal(args.cmd, "killChild");
        const child = children.get(args.pid as number);
        child?.kill("SIGKILL");
        return null;
      }
      default:
        throw new Error(`unexpected command ${cmd}`);
    }
  });
  return { invocations, children };
}

async function collect(iterable: AsyncIterable<StreamOutputEvent>): Promise<StreamOutputEvent[]> {
  const events: StreamOutputEvent[] = [];
  for await (const event of iterable) events.push(event);
  return events;
}

const textOf = (events: StreamOutputEvent[]): string =>
  events.map((e) => (e.type === "text_delta" ? e.text : "")).join("");

for (const [n, mode] of (["lines", "lines-with-newline", "raw"] as const).entries()) {
  describeWithSidecar(`Tauri transport (mockIPC -> real sidecar, stdout as ${mode})`, () => {
    let client: SidecarClient;
    let mock: ReturnType<typeof installShellMock>;

    before(async () => {
      mock = installShellMock(mode, 1000 + n);
      client = await SidecarClient.connect(
        tauriSidecar("binaries/llm-sidecar", [], mode === "raw" ? { encoding: "raw" } : {}),
      );
    });

    after(async () => {
      if (!client.isClosed) await client.close();
      clearMocks();
    });

    it("spawns through plugin:shell|spawn and writes whole lines with plugin:shell|stdin_write", async () => {
      assert.equal(client.ready?.protocol_version, 1);
      const providers = await client.listProviders();
      assert.ok(providers.some((p) => p.id === "mock"));
      const spawnCall = mock.invocations.find((i) => i.cmd === "plugin:shell|spawn");
      assert.ok(spawnCall);
      assert.deepEqual(spawnCall.payload.args, []);
      const writes = mock.invocations.filter((i) => i.cmd === "plugin:shell|stdin_write");
      assert.ok(writes.length > 0);
      for (const w of writes) {
        const line = w.payload.buffer as string;
        assert.ok(line.endsWith("\n"));
        JSON.parse(line);
      }
    });

    it("streams mock:echo: text equals the input, events in seq order", async () => {
      const input = `Tauri says hi ✓ (${mode})`;
      const events = await collect(client.streamText({ model: "mock:echo", messages: [user(input)] }));
      assert.equal(textOf(events), input);
      assert.deepEqual(
        events.map((e) => e.seq),
        events.map((_, i) => i),
      );
      assert.equal(events.at(-1)?.type, "done");
    });

    it("10 concurrent streams each get their own text", async () => {
      const inputs = Array.from({ length: 10 }, (_, i) => `tauri stream ${i} ${"xyz".repeat(i)}`);
      const results = await Promise.all(
        inputs.map((input) => collect(client.streamText({ model: "mock:echo", messages: [user(input)] }))),
      );
      results.forEach((events, i) => assert.equal(textOf(events), inputs[i]));
    });

    it("aborts via AbortSignal with a cancelled SidecarError", async () => {
      const ac = new AbortController();
      await assert.rejects(
        (async () => {
          for await (const ev of client.streamText(
            { model: "mock:echo", messages: [user("slow ".repeat(40))], provider_options: { chunk_delay_ms: 20 } },
            { signal: ac.signal },
          )) {
            if (ev.type === "text_delta") ac.abort();
          }
        })(),
        (e: unknown) => e instanceof SidecarError && e.data?.code === "cancelled",
      );
    });

    it("errors carry data.code", async () => {
      await assert.rejects(client.getApiKey({ provider: "nope" }), (e: unknown) => e instanceof SidecarError && e.data?.code === "unknown_provider");
    });
  });
}

describeWithSidecar("Tauri transport: process end", () => {
  after(() => clearMocks());

  it("close() sends shutdown; the Terminated event resolves `exited` with code 0", async () => {
    installShellMock("lines", 7);
    const client = await SidecarClient.connect(tauriSidecar("binaries/llm-sidecar"));
    const exit = await client.close();
    assert.equal(exit.code, 0);
  });

  it("plugin:shell|kill (transport.close) fails a pending stream with sidecar_exited", async () => {
    const mock = installShellMock("lines", 8);
    const transport = await tauriSidecar("binaries/llm-sidecar");
    const client = await SidecarClient.connect(transport);
    const stream = collect(
      client.streamText({ model: "mock:echo", messages: [user("slow ".repeat(50))], provider_options: { chunk_delay_ms: 100 } }),
    );
    await sleep(200);
    await transport.close();
    await assert.rejects(stream, (e: unknown) => e instanceof SidecarError && e.data?.code === "sidecar_exited");
    const exit = await client.exited;
    assert.equal(exit.signal, constants.signals.SIGKILL);
    assert.ok(mock.invocations.some((i) => i.cmd === "plugin:shell|kill" && i.payload.pid === transport.child.pid));
  });
});

describeWithSidecar("Tauri transport: stderr", () => {
  after(() => clearMocks());

  // Written by the child as it is; the plugin's text mode hands it over line by line.
  const lines = ["first line\n", "ünïcödé 🎉 second line\n", "\n", "é🎉".repeat(200) + "\n", "last, without a newline"];
  const script = `import sys; sys.stderr.buffer.write(${JSON.stringify(lines.join(""))}.encode()); sys.stderr.flush()`;

  /** Runs the script through tauriSidecar; resolves with every onStderr call and the exit info. */
  async function stderrOf(mode: Mode, seed: number): Promise<{ calls: string[]; exit: ExitInfo }> {
    installShellMock(mode, seed, ["-c", script]);
    const calls: string[] = [];
    const transport = await tauriSidecar("binaries/llm-sidecar", [], {
      ...(mode === "raw" ? { encoding: "raw" as const } : {}),
      onStderr: (text) => calls.push(text),
      stderrTailBytes: 100_000,
    });
    const exit = await new Promise<ExitInfo>((resolve) => transport.onExit(resolve));
    return { calls, exit };
  }

  for (const [n, mode] of (["lines", "lines-with-newline"] as const).entries()) {
    it(`text mode (${mode}): one onStderr call per line, each ending in exactly one \\n`, async () => {
      const { calls, exit } = await stderrOf(mode, 40 + n);
      assert.deepEqual(calls, [...lines.slice(0, -1), "last, without a newline\n"]);
      assert.equal(exit.code, 0);
      assert.equal(exit.stderr, calls.join(""));
    });
  }

  it("raw mode: bytes cut inside UTF-8 sequences decode to the exact text", async () => {
    const { calls, exit } = await stderrOf("raw", 50);
    assert.ok(calls.length > 10, "the output arrived in many pieces");
    assert.equal(calls.join(""), lines.join(""));
    assert.ok(!calls.join("").includes("\uFFFD"), "no replacement characters");
    assert.equal(exit.stderr, lines.join(""));
  });
});
