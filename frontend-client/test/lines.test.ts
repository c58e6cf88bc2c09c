import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LineSplitter, type Chunk } from "llm-sidecar-client";
import { seededRandom } from "./helpers.js";

const SAMPLES = [
  "plain ascii",
  "ünïcödé ✓",
  "emoji 🎉🚀 and CJK 漢字",
  "escaped \\n and \\r inside a JSON string",
  "x".repeat(3000),
  "",
];

function makeInput(rand: () => number): { text: string; expected: string[] } {
  const expected: string[] = [];
  let text = "";
  const n = 1 + Math.floor(rand() * 20);
  for (let i = 0; i < n; i++) {
    if (rand() < 0.1) {
      text += rand() < 0.5 ? "\n" : "\r\n"; // an empty line: skipped
      continue;
    }
    const sample = SAMPLES[Math.floor(rand() * SAMPLES.length)] ?? "";
    const line = JSON.stringify({ jsonrpc: "2.0", method: "m", params: { i, sample } });
    expected.push(line);
    text += line + (rand() < 0.3 ? "\r\n" : "\n");
  }
  return { text, expected };
}

function cut<T extends { length: number; slice(a: number, b: number): T }>(input: T, rand: () => number): T[] {
  const pieces: T[] = [];
  let at = 0;
  while (at < input.length) {
    // Mostly tiny pieces (1-8), sometimes big ones, sometimes everything at once.
    const r = rand();
    const size = r < 0.6 ? 1 + Math.floor(rand() * 8) : r < 0.95 ? 1 + Math.floor(rand() * 400) : input.length;
    pieces.push(input.slice(at, at + size));
    at += size;
  }
  return pieces;
}

function feed(chunks: Chunk[]): string[] {
  const splitter = new LineSplitter();
  const lines: string[] = [];
  for (const chunk of chunks) lines.push(...splitter.push(chunk));
  lines.push(...splitter.flush());
  return lines;
}

describe("LineSplitter", () => {
  it("splits several lines in one chunk, and lines across chunks", () => {
    assert.deepEqual(feed(['{"a":1}\n{"b":2}\n{"c"', ":3}\n"]), ['{"a":1}', '{"b":2}', '{"c":3}']);
  });

  it("handles \\r\\n, also when split between \\r and \\n", () => {
    assert.deepEqual(feed(["one\r", "\ntwo\r\n", "\r\n", "three"]), ["one", "two", "three"]);
  });

  it("decodes UTF-8 split inside a character, from Uint8Array, ArrayBuffer and number[]", () => {
    const bytes = new TextEncoder().encode("héllo 🎉\nwörld\n");
    const chunks: Chunk[] = [bytes.slice(0, 2), bytes.slice(2, 8).buffer, Array.from(bytes.slice(8, 9)), bytes.slice(9)];
    assert.deepEqual(feed(chunks), ["héllo 🎉", "wörld"]);
  });

  it("keeps a last line without newline for flush", () => {
    const splitter = new LineSplitter();
    assert.deepEqual(splitter.push("a\nb"), ["a"]);
    assert.deepEqual(splitter.flush(), ["b"]);
    assert.deepEqual(splitter.flush(), []);
  });

  it("survives random chunk boundaries (strings and bytes, seeded, 3000 iterations)", () => {
    const encoder = new TextEncoder();
    for (let seed = 1; seed <= 3000; seed++) {
      const rand = seededRandom(seed);
      const { text, expected } = makeInput(rand);
      const asText = cut(text, rand);
      assert.deepEqual(feed(asText), expected, `string chunks, seed ${seed}`);
      const asBytes = cut(encoder.encode(text), rand);
      assert.deepEqual(feed(asBytes), expected, `byte chunks, seed ${seed}`);
      for (const line of feed(asBytes)) JSON.parse(line);
    }
  });

  it("is linear for one huge line in many small chunks", () => {
    const line = JSON.stringify({ big: "y".repeat(2_000_000) });
    const splitter = new LineSplitter();
    const started = performance.now();
    const out: string[] = [];
    for (let i = 0; i < line.length; i += 100) out.push(...splitter.push(line.slice(i, i + 100)));
    out.push(...splitter.push("\n"));
    assert.equal(out.length, 1);
    assert.equal(out[0], line);
    assert.ok(performance.now() - started < 2000, "took too long");
  });
});
