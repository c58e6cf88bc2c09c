// The client's protocol handling against a scripted in-memory Transport (no process).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  SIDECAR_METHODS,
  SidecarClient,
  SidecarError,
  TransportEvents,
  type StreamEvent,
  type StreamOutputEvent,
  type Transport,
} from "llm-sidecar-client";
import { sleep } from "./helpers.js";

interface Request {
  id?: number | string;
  method: string;
  params?: Record<string, unknown>;
}

class FakeTransport implements Transport {
  readonly events = new TransportEvents();
  readonly sent: Request[] = [];
  onRequest: (request: Request) => void = () => undefined;
  closed = false;

  send(line: string): void {
    assert.ok(line.endsWith("\n"));
    assert.equal(line.indexOf("\n"), line.length - 1, "one line per send");
    const request = JSON.parse(line) as Request;
    this.sent.push(request);
    queueMicrotask(() => this.onRequest(request));
  }
  onData(listener: Parameters<Transport["onData"]>[0]): void {
    this.events.onData(listener);
  }
  onExit(listener: Parameters<Transport["onExit"]>[0]): void {
    this.events.onExit(listener);
  }
  close(): void {
    this.closed = true;
    this.events.emitExit({ code: null, signal: "SIGTERM" });
  }
  /** Writes raw stdout text. */
  emit(text: string): void {
    this.events.emitData(text);
  }
  line(message: unknown): string {
    return `${JSON.stringify({ jsonrpc: "2.0", ...(message as object) })}\n`;
  }
  ready(): void {
    this.emit(this.line({ method: "sidecar-ready", params: { version: "test", protocol_version: 1, pid: 42 } }));
  }
}

function streamEvents(streamId: string, texts: string[]): StreamEvent[] {
  const events: StreamEvent[] = [{ type: "start", provider: "mock", model: "mock:echo", stream_id: streamId, seq: 0 }];
  for (const text of texts) events.push({ type: "text_delta", text, stream_id: streamId, seq: events.length });
  events.push({
    type: "done",
    finish_reason: "stop",
    usage: { input_tokens: 1, output_tokens: texts.length },
    model: "mock:echo",
    latency_ms: 1,
    stream_id: streamId,
    seq: events.length,
  });
  return events;
}

describe("SidecarClient protocol handling (in-memory transport)", () => {
  it("installs one camelCase method per schema method", () => {
    const proto = SidecarClient.prototype as unknown as Record<string, unknown>;
    for (const name of Object.keys(SIDECAR_METHODS)) assert.equal(typeof proto[name], "function", name);
  });

  it("buffers output sent before connect, and sends by-name params (none for methods without)", async () => {
    const t = new FakeTransport();
    t.ready();
    t.onRequest = (r) => t.emit(t.line({ id: r.id, result: [] }));
    const client = await SidecarClient.connect(t);
    assert.equal(client.ready?.pid, 42);
    await client.listProviders();
    await client.getApiKey({ provider: "openai" }).catch(() => undefined);
    assert.deepEqual(t.sent[0], { jsonrpc: "2.0", id: 1, method: "list_providers" });
    assert.deepEqual(t.sent[1], { jsonrpc: "2.0", id: 2, method: "get_api_key", params: { provider: "openai" } });
  });

  it("yields stream events in seq order even when they arrive shuffled, split across chunks", async () => {
    const t = new FakeTransport();
    t.ready();
    const client = await SidecarClient.connect(t);
    t.onRequest = (r) => {
      if (r.method !== "llm_stream_text") return;
      const streamId = r.params?.stream_id as string;
      const events = streamEvents(streamId, ["He", "ll", "o ", "wo", "rld"]);
      const order = [2, 0, 1, 4, 3, 6, 5]; // done (seq 6) before seq 5
      let text = t.line({ id: r.id, result: { stream_id: streamId } });
      for (const i of order) text += t.line({ method: `llm-stream-${streamId}`, params: events[i] });
      // Cut into 7-character chunks.
      for (let at = 0; at < text.length; at += 7) t.emit(text.slice(at, at + 7));
    };
    const seen: StreamOutputEvent[] = [];
    for await (const ev of client.streamText({ model: "mock:echo", messages: [{ role: "user", content: "x" }] })) seen.push(ev);
    assert.deepEqual(
      seen.map((e) => e.seq),
      [0, 1, 2, 3, 4, 5, 6],
    );
    assert.equal(seen.map((e) => (e.type === "text_delta" ? e.text : "")).join(""), "Hello world");
  });

  it("throws the stream's error event as a SidecarError carrying the event", async () => {
    const t = new FakeTransport();
    t.ready();
    const client = await SidecarClient.connect(t);
    t.onRequest = (r) => {
      if (r.method !== "llm_stream_text") return;
      const sid = r.params?.stream_id as string;
      t.emit(t.line({ id: r.id, result: { stream_id: sid } }));
      t.emit(t.line({ method: `llm-stream-${sid}`, params: { type: "start", provider: "p", model: "p:m", stream_id: sid, seq: 0 } }));
      t.emit(
        t.line({
          method: `llm-stream-${sid}`,
          params: {
            type: "error",
            error: { code: "rate_limited", message: "slow down", retryable: true, status: 429 },
            stream_id: sid,
            seq: 1,
          },
        }),
      );
    };
    await assert.rejects(
      (async () => {
        for await (const _ of client.streamText({ model: "p:m", messages: [] })) void _;
      })(),
      (e: unknown) => {
        assert.ok(e instanceof SidecarError);
        assert.equal(e.code, -32000);
        assert.equal(e.data?.code, "rate_limited");
        assert.equal(e.data?.status, 429);
        assert.equal(e.retryable, true);
        assert.equal(e.event?.seq, 1);
        return true;
      },
    );
    assert.ok(!t.sent.some((r) => r.method === "llm_abort_stream"), "an ended stream is not aborted");
  });

  it("handles batch responses, ignores unknown ids, answers server requests with -32601, reports invalid lines", async () => {
    const t = new FakeTransport();
    t.ready();
    const invalid: string[] = [];
    const client = await SidecarClient.connect(t, { onInvalidLine: (line) => invalid.push(line) });
    t.onRequest = () => undefined;
    const a = client.sidecarInfo();
    const b = client.listSavedProviders();
    await sleep(0);
    t.emit("this is not json\n");
    t.emit(`${JSON.stringify([{ jsonrpc: "2.0", id: 999, result: 1 }, { jsonrpc: "2.0", id: 2, result: [] }, { jsonrpc: "2.0", id: 1, error: { code: -32603, message: "Internal error", data: { code: "internal" } } }])}\n`);
    t.emit(t.line({ id: "srv-1", method: "ping" }));
    assert.deepEqual(await b, []);
    await assert.rejects(a, (e: unknown) => e instanceof SidecarError && e.code === -32603 && e.data?.code === "internal" && e.data.message === undefined);
    assert.deepEqual(invalid, ["this is not json"]);
    await sleep(0);
    const reply = t.sent.at(-1) as unknown as { id: string; error: { code: number } };
    assert.equal(reply.id, "srv-1");
    assert.equal(reply.error.code, -32601);
  });

  it("a send that throws fails only that call", async () => {
    const t = new FakeTransport();
    t.ready();
    const client = await SidecarClient.connect(t);
    const original = t.send.bind(t);
    t.send = () => {
      throw new Error("pipe broken");
    };
    await assert.rejects(client.sidecarInfo(), (e: unknown) => e instanceof SidecarError && e.data?.code === "sidecar_exited" && /pipe broken/.test(e.message));
    t.send = original;
    t.onRequest = (r) => t.emit(t.line({ id: r.id, result: { ok: true } }));
    assert.deepEqual(await client.call("some_future_method", { x: 1 }), { ok: true });
  });

  it("a local abort timeout ends a stream whose sidecar never confirms the abort", async () => {
    const t = new FakeTransport();
    t.ready();
    const client = await SidecarClient.connect(t);
    t.onRequest = (r) => {
      if (r.method === "llm_stream_text") {
        const sid = r.params?.stream_id as string;
        t.emit(t.line({ id: r.id, result: { stream_id: sid } }));
        t.emit(t.line({ method: `llm-stream-${sid}`, params: { type: "start", provider: "p", model: "p:m", stream_id: sid, seq: 0 } }));
      }
    };
    const ac = new AbortController();
    await assert.rejects(
      (async () => {
        for await (const _ of client.streamText({ model: "p:m", messages: [] }, { signal: ac.signal, abortTimeoutMs: 50 })) ac.abort();
      })(),
      (e: unknown) => e instanceof SidecarError && e.data?.code === "cancelled" && e.local,
    );
    assert.ok(t.sent.some((r) => r.method === "llm_abort_stream"));
  });
});
