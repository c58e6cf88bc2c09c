// The generator: a method added to the schema shows up in every map without code changes.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { describe, it } from "node:test";
import { camelName, generate } from "../scripts/generate.mjs";

const schema = JSON.parse(await readFile(new URL("../../schema/openrpc.json", import.meta.url), "utf8"));

describe("scripts/generate.mjs", () => {
  it("names camelCase methods (a leading llm_ is dropped)", () => {
    assert.equal(camelName("list_providers"), "listProviders");
    assert.equal(camelName("llm_list_available_models"), "listAvailableModels");
    assert.equal(camelName("llm.chat"), "llmChat");
  });

  it("picks up a new method, with inline params and result, and a new notification", async () => {
    const doc = structuredClone(schema);
    doc.methods.push({
      name: "usage_report",
      summary: "Token usage per provider.",
      paramStructure: "by-name",
      params: [
        { name: "since", required: true, schema: { type: "string" } },
        { name: "provider", required: false, schema: { type: "string" } },
      ],
      result: { name: "result", schema: { type: "array", items: { $ref: "#/components/schemas/Usage" } } },
    });
    doc["x-notifications"].push({ name: "usage-updated", params: { $ref: "#/components/schemas/Usage" } });
    const out = await generate(doc);
    assert.match(out, /export interface UsageReportParams \{\n  since: string;\n  provider\?: string;\n\}/);
    assert.match(out, /export type UsageReportResult = Usage\[\];/);
    assert.match(out, /usage_report: \{ params: UsageReportParams; result: UsageReportResult \};/);
    assert.match(out, /usageReport: \{ method: "usage_report", params: "required" \},/);
    assert.match(out, /usageReport\(params: UsageReportParams, options\?: Options\): Promise<UsageReportResult>;/);
    assert.match(out, /"usage-updated": Usage;/);
  });

  it("keeps discriminated unions discriminated and marks always-sent fields required", async () => {
    const out = await generate(schema);
    assert.match(out, /export type StreamEvent =[^;]*\| TextDeltaEvent/);
    assert.match(out, /export interface TextDeltaEvent \{\n  type: "text_delta";\n  text: string;\n  stream_id: string;\n  seq: number;\n\}/);
    assert.match(out, /export type Message = SystemMessage \| UserMessage \| AssistantMessage \| ToolMessage;/);
    assert.doesNotMatch(out, /\[k: string\]: unknown;\n\s*type: /, "no index signature on tagged structs");
    assert.match(out, /\[name: `llm-stream-\$\{string\}`\]: StreamEvent;/);
  });

  it("refuses two methods with the same camelCase name", async () => {
    const doc = structuredClone(schema);
    doc.methods.push({ ...doc.methods.find((m) => m.name === "list_providers"), name: "llm_list_providers" });
    await assert.rejects(generate(doc), /both map to listProviders/);
  });
});
