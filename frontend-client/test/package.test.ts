// The package as users get it: `npm pack` (its prepack builds dist/ from a copy with no dist/),
// then a CommonJS and an ES module consumer, each in its own temp folder, install the tarball
// (offline), type-check against it (strict, module NodeNext) and stream mock:echo from the real
// sidecar. TypeScript and @types/node come from this package's node_modules (the README says
// the /node types need @types/node).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { describeWithSidecar, packageRoot, repoRoot, sidecarEnv, sidecarPython } from "./helpers.js";

const run = promisify(execFile);
const npm = process.platform === "win32" ? "npm.cmd" : "npm";
const tsc = path.join(packageRoot, "node_modules", "typescript", "bin", "tsc");
const quietNpm = { ...process.env, npm_config_update_notifier: "false", npm_config_fund: "false", npm_config_audit: "false" };

type Kind = "commonjs" | "module";

/** The consumer's program: the same source for both; its package.json decides the module system. */
const consumerSource = `
import { SidecarClient, SidecarError, isSidecarError, type StreamOutputEvent } from "llm-sidecar-client";
import { nodeProcess, type NodeProcessOptions } from "llm-sidecar-client/node";
import type { TauriSidecarOptions } from "llm-sidecar-client/tauri";

const [python, cwd, text] = process.argv.slice(2) as [string, string, string];
const tauriOptions: TauriSidecarOptions = { encoding: "raw", onStderr: (line: string) => void line };

async function main(): Promise<void> {
  const options: NodeProcessOptions = { cwd, stderr: "pipe" };
  const client = await SidecarClient.connect(nodeProcess(python, ["-m", "sidecar"], options));
  let echoed = "";
  const types: StreamOutputEvent["type"][] = [];
  for await (const event of client.streamText({ model: "mock:echo", messages: [{ role: "user", content: text }] })) {
    types.push(event.type);
    if (event.type === "text_delta") echoed += event.text;
  }
  let errorCode: string | undefined;
  try {
    await client.getApiKey({ provider: "no-such-provider" });
  } catch (error) {
    if (error instanceof SidecarError && isSidecarError(error, "unknown_provider")) errorCode = error.data?.code;
  }
  const exit = await client.close();
  console.log(JSON.stringify({ echoed, first: types[0], last: types.at(-1), errorCode, exitCode: exit.code, raw: tauriOptions.encoding }));
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
`;

const subpaths = ["llm-sidecar-client", "llm-sidecar-client/node", "llm-sidecar-client/tauri", "llm-sidecar-client/ai-sdk"];
const entryFiles = ["index", "node", "tauri", "ai-sdk"];

/** The files a built entry point loads, itself included: its relative imports and requires, followed. */
function loadedFiles(entry: string): string[] {
  const seen = new Set<string>();
  const visit = (file: string): void => {
    if (seen.has(file)) return;
    seen.add(file);
    const source = readFileSync(file, "utf8");
    for (const match of source.matchAll(/(?:from\s*|import\s*\(\s*|require\(\s*)["'](\.{1,2}\/[^"']+)["']/g)) {
      visit(path.resolve(path.dirname(file), match[1] as string));
    }
  };
  visit(entry);
  return [...seen];
}

interface Packed {
  tarball: string;
  files: string[];
}

const work = mkdtempSync(path.join(tmpdir(), "llm-sidecar-client-pack-"));
let packed: Promise<Packed> | undefined;
const consumers = new Map<Kind, Promise<string>>();

/** Copies the package without dist/, build/ and node_modules (linked instead) and packs it. */
function pack(): Promise<Packed> {
  packed ??= (async () => {
    const copy = path.join(work, "package");
    const skip = new Set(["node_modules", "dist", "build"].map((name) => path.join(packageRoot, name)));
    cpSync(packageRoot, copy, { recursive: true, filter: (source) => !skip.has(path.resolve(source)) });
    symlinkSync(path.join(packageRoot, "node_modules"), path.join(copy, "node_modules"), "junction");
    const out = path.join(work, "tarball");
    mkdirSync(out);
    await run(npm, ["pack", "--pack-destination", out, "--silent"], { cwd: copy, env: quietNpm, maxBuffer: 16 << 20 });
    const [name, ...others] = readdirSync(out).filter((file) => file.endsWith(".tgz"));
    assert.ok(name && others.length === 0, `one tarball, got ${readdirSync(out).join(", ")}`);
    const { stdout } = await run("tar", ["-tzf", path.join(out, name)]);
    return { tarball: path.join(out, name), files: stdout.split("\n").filter(Boolean).map((f) => f.replace(/^package\//, "")) };
  })();
  return packed;
}

/** A consumer folder of the given kind with the tarball installed and its program compiled to out/. */
function consumer(kind: Kind): Promise<string> {
  let ready = consumers.get(kind);
  if (!ready) {
    ready = (async () => {
      const { tarball } = await pack();
      const dir = path.join(work, `consumer-${kind}`);
      mkdirSync(dir);
      writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name: `consumer-${kind}`, private: true, type: kind }));
      writeFileSync(
        path.join(dir, "tsconfig.json"),
        JSON.stringify({
          compilerOptions: {
            strict: true,
            module: "NodeNext",
            moduleResolution: "NodeNext",
            target: "ES2022",
            lib: ["ES2022"],
            types: ["node"],
            typeRoots: [path.join(packageRoot, "node_modules", "@types")],
            // The optional peer of /tauri, for its types only (it is not installed here).
            paths: { "@tauri-apps/plugin-shell": [path.join(packageRoot, "node_modules", "@tauri-apps", "plugin-shell", "dist-js", "index.d.ts")] },
            skipLibCheck: false,
            outDir: "out",
          },
          files: ["main.ts"],
        }),
      );
      writeFileSync(path.join(dir, "main.ts"), consumerSource);
      await run(npm, ["install", "--offline", "--no-audit", "--no-fund", "--silent", tarball], { cwd: dir, env: quietNpm });
      // NodeNext as asked; for CommonJS also Node16, where TypeScript (5.8+) still refuses to
      // require() an ES module, so types reached through the wrong condition show up in main.ts.
      // (skipLibCheck there: @tauri-apps/plugin-shell's own types are ES-module-only.)
      const node16 = ["--module", "node16", "--moduleResolution", "node16", "--noEmit", "--skipLibCheck"];
      const checks = kind === "commonjs" ? [[], node16] : [[]];
      for (const extra of checks) {
        try {
          await run(process.execPath, [tsc, "-p", "tsconfig.json", ...extra], { cwd: dir });
        } catch (error) {
          const { stdout, stderr } = error as { stdout: string; stderr: string };
          assert.fail(`the ${kind} consumer does not type-check (${extra.join(" ") || "NodeNext"}):\n${stdout}${stderr}`);
        }
      }
      return dir;
    })();
    consumers.set(kind, ready);
  }
  return ready;
}

after(() => rmSync(work, { recursive: true, force: true }));

describe("the packed package", () => {
  before(() => pack());

  it("npm pack runs prepack: both builds and their types ship, no sources", async () => {
    const { files } = await pack();
    for (const name of entryFiles) {
      for (const file of [`dist/${name}.js`, `dist/${name}.d.ts`, `dist/cjs/${name}.js`, `dist/cjs/${name}.d.ts`]) {
        assert.ok(files.includes(file), `${file} is in the tarball`);
      }
    }
    assert.ok(files.includes("dist/cjs/package.json"), "dist/cjs is marked CommonJS");
    assert.ok(files.includes("README.md") && files.includes("package.json"));
    assert.deepEqual(files.filter((f) => /^(src|test|scripts|build)\//.test(f)), []);
  });

  for (const kind of ["commonjs", "module"] as const) {
    const [dirName, other] = kind === "commonjs" ? ["dist/cjs/", "dist/"] : ["dist/", "dist/cjs/"];
    it(`a ${kind} consumer installs it offline, type-checks (strict, NodeNext) and resolves every subpath to ${dirName}`, async () => {
      const dir = await consumer(kind);
      const emitted = readFileSync(path.join(dir, "out", "main.js"), "utf8");
      if (kind === "commonjs") assert.match(emitted, /require\("llm-sidecar-client"\)/);
      else assert.match(emitted, /from "llm-sidecar-client"/);
      const resolve =
        kind === "commonjs"
          ? ["-e", `for (const s of ${JSON.stringify(subpaths)}) console.log(require.resolve(s))`]
          : ["--input-type=module", "-e", `for (const s of ${JSON.stringify(subpaths)}) console.log(import.meta.resolve(s))`];
      const { stdout } = await run(process.execPath, resolve, { cwd: dir });
      const resolved = stdout.trim().split("\n");
      assert.equal(resolved.length, entryFiles.length);
      resolved.forEach((file, i) => {
        const base = entryFiles[i];
        assert.ok(file.replaceAll("\\", "/").endsWith(`/node_modules/llm-sidecar-client/${dirName}${base}.js`), `${subpaths[i]} -> ${file}`);
        if (kind === "module") assert.ok(!file.includes(`/${other}`));
      });
    });
  }

  it("the base entry points (and /node, /tauri) never load @ai-sdk/*, in either build; /ai-sdk does", async () => {
    const dir = await consumer("module");
    const installed = path.join(dir, "node_modules", "llm-sidecar-client");
    for (const build of ["dist", "dist/cjs"]) {
      for (const name of ["index", "node", "tauri"]) {
        const files = loadedFiles(path.join(installed, build, `${name}.js`));
        if (name === "index") {
          const names = files.map((f) => path.basename(f));
          for (const module of ["client.js", "stream.js", "chat-loop.js", "errors.js"]) assert.ok(names.includes(module), `${build}/index.js loads ${module}`);
        }
        for (const file of files) assert.doesNotMatch(readFileSync(file, "utf8"), /@ai-sdk/, `${path.relative(installed, file)} mentions @ai-sdk`);
        for (const file of files.map((f) => f.replace(/\.js$/, ".d.ts"))) {
          assert.doesNotMatch(readFileSync(file, "utf8"), /@ai-sdk/, `${path.relative(installed, file)} mentions @ai-sdk`);
        }
      }
      const aiSdk = loadedFiles(path.join(installed, build, "ai-sdk.js"));
      assert.ok(aiSdk.some((file) => /@ai-sdk\/provider/.test(readFileSync(file, "utf8"))), `${build}/ai-sdk.js loads @ai-sdk/provider`);
    }
    // Without the optional peer installed, the base entry point loads and /ai-sdk says what is missing.
    const script = 'import("llm-sidecar-client").then((m) => console.log(typeof m.SidecarClient)).then(() => import("llm-sidecar-client/ai-sdk")).catch((e) => console.log(e.code))';
    const { stdout } = await run(process.execPath, ["--input-type=module", "-e", script], { cwd: dir });
    assert.deepEqual(stdout.trim().split("\n"), ["function", "ERR_MODULE_NOT_FOUND"]);
  });

  for (const kind of ["commonjs", "module"] as const) {
    it(`with the peer @ai-sdk/provider installed, a ${kind} program loads /ai-sdk and gets a v4 model`, async () => {
      const dir = await consumer(kind);
      const peer = path.join(dir, "peer");
      mkdirSync(path.join(peer, "node_modules", "@ai-sdk"), { recursive: true });
      // Its own folder (so the test above still sees a consumer without the peer), linking the installed
      // package and the peer; --preserve-symlinks resolves the peer from there. (@ai-sdk/provider imports nothing.)
      symlinkSync(path.join(packageRoot, "node_modules", "@ai-sdk", "provider"), path.join(peer, "node_modules", "@ai-sdk", "provider"), "junction");
      symlinkSync(path.join(dir, "node_modules", "llm-sidecar-client"), path.join(peer, "node_modules", "llm-sidecar-client"), "junction");
      writeFileSync(path.join(peer, "package.json"), JSON.stringify({ name: `peer-${kind}`, private: true, type: kind }));
      const body = "const s = m.createSidecar({ client: {} }); const model = s('mock:echo'); console.log(JSON.stringify([model.specificationVersion, model.modelId, s.languageModelV3('x').specificationVersion]));";
      const script =
        kind === "commonjs"
          ? `const m = require("llm-sidecar-client/ai-sdk"); ${body}`
          : `const m = await import("llm-sidecar-client/ai-sdk"); ${body}`;
      const args = ["--preserve-symlinks", "--no-warnings", ...(kind === "commonjs" ? [] : ["--input-type=module"]), "-e", script];
      const { stdout } = await run(process.execPath, args, { cwd: peer });
      assert.deepEqual(JSON.parse(stdout), ["v4", "mock:echo", "v3"]);
    });
  }

  it("a program that loads both builds: instanceof SidecarError holds across them", async () => {
    const dir = await consumer("module");
    const script =
      'import { SidecarError } from "llm-sidecar-client"; import { createRequire } from "node:module";' +
      'const cjs = createRequire(import.meta.url)("llm-sidecar-client");' +
      "console.log(JSON.stringify([cjs.SidecarError === SidecarError, new cjs.SidecarError(-32000, 'x') instanceof SidecarError," +
      " new SidecarError(-32000, 'y') instanceof cjs.SidecarError, new Error('z') instanceof cjs.SidecarError]));";
    const { stdout } = await run(process.execPath, ["--input-type=module", "-e", script], { cwd: dir });
    assert.deepEqual(JSON.parse(stdout), [false, true, true, false]);
  });
});

describeWithSidecar("the packed package against the real sidecar", () => {
  for (const kind of ["commonjs", "module"] as const) {
    const how = kind === "commonjs" ? 'require("llm-sidecar-client")' : 'import from "llm-sidecar-client"';
    it(`${how} in a ${kind} program streams mock:echo and gets typed errors`, async () => {
      const dir = await consumer(kind);
      const text = `Hello from a ${kind} consumer ✓`;
      const { stdout } = await run(process.execPath, [path.join(dir, "out", "main.js"), sidecarPython, repoRoot, text], {
        cwd: dir,
        env: sidecarEnv(),
        timeout: 60_000,
      });
      assert.deepEqual(JSON.parse(stdout), {
        echoed: text,
        first: "start",
        last: "done",
        errorCode: "unknown_provider",
        exitCode: 0,
        raw: "raw",
      });
    });
  }
});
