// schema/openrpc.json through a third-party generator: @open-rpc/generator (a pinned devDependency)
// writes its TypeScript client, and tsc compiles it with the generator's own tsconfig (strict).
// Offline: the generator, the generated client's packages and tsc all come from node_modules.
// The generated client imports @open-rpc/client-js (a pinned devDependency, with @types/ws and
// @types/isomorphic-fetch for its typings, the versions its generated package.json names);
// lodash, @open-rpc/meta-schema and @open-rpc/schema-utils-js come with the generator itself.
// The generated code lands under build/ so its imports resolve to this package's node_modules.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);
const packageRoot = fileURLToPath(new URL("..", import.meta.url));
const schemaPath = path.join(packageRoot, "..", "schema", "openrpc.json");
const generatorCli = path.join(packageRoot, "node_modules", "@open-rpc", "generator", "build", "cli.js");
const tsc = path.join(packageRoot, "node_modules", "typescript", "bin", "tsc");

mkdirSync(path.join(packageRoot, "build"), { recursive: true });
const workDir = mkdtempSync(path.join(packageRoot, "build", "openrpc-generator-"));

/** Runs the generator's CLI on `document` and returns the generated client's folder. */
async function generateClient(name, document) {
  const input = path.join(workDir, `${name}.json`);
  writeFileSync(input, JSON.stringify(document));
  const outDir = path.join(workDir, name);
  await run(process.execPath, [generatorCli, "generate", "-t", "client", "-l", "typescript", "-n", name, "-d", input, "-o", outDir]);
  return path.join(outDir, "client", "typescript");
}

/** tsc --noEmit with the generated project's own tsconfig; resolves to {code, output}. */
async function compile(dir) {
  try {
    await run(process.execPath, [tsc, "-p", path.join(dir, "tsconfig.json"), "--noEmit"], { cwd: dir });
    return { code: 0, output: "" };
  } catch (error) {
    return { code: error.code, output: `${error.stdout}${error.stderr}` };
  }
}

describe("@open-rpc/generator on schema/openrpc.json", () => {
  after(() => rmSync(workDir, { recursive: true, force: true }));

  it("generates a TypeScript client that compiles (strict); a method/schema name clash would not", async () => {
    const schema = JSON.parse(readFileSync(schemaPath, "utf8"));
    // The control: one method whose result schema is named like the method in PascalCase, as
    // `sidecar_info` -> `SidecarInfo` was before the rename. It must fail with TS2300.
    const clash = structuredClone(schema);
    const info = clash.methods.find((m) => m.name === "sidecar_info");
    assert.ok(info, "sidecar_info is in the schema");
    const resultName = info.result.schema.$ref.split("/").at(-1);
    clash.methods = [{ ...info, result: { ...info.result, schema: { $ref: "#/components/schemas/SidecarInfo" } } }];
    clash.components = { schemas: { SidecarInfo: { ...schema.components.schemas[resultName], title: "SidecarInfo" } } };
    clash["x-notifications"] = [];

    const [realDir, clashDir] = await Promise.all([generateClient("sidecarClient", schema), generateClient("clashClient", clash)]);
    const source = readFileSync(path.join(realDir, "src", "index.ts"), "utf8");
    assert.match(source, /export type SidecarInfo = \(\) => Promise<SidecarInfoResult>;/);
    assert.match(source, /public llm_stream_text: LlmStreamText = /);
    for (const method of schema.methods) assert.ok(source.includes(`public ${method.name}: `), `${method.name} is generated`);

    const [real, control] = await Promise.all([compile(realDir), compile(clashDir)]);
    assert.equal(real.code, 0, `the generated client does not compile:\n${real.output}`);
    assert.notEqual(control.code, 0, "the control (a name clash) should not compile");
    assert.match(control.output, /TS2300: Duplicate identifier 'SidecarInfo'/);
  });
});
