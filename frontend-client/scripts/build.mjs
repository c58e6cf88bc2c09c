#!/usr/bin/env node
// Builds the package for both module systems from src/:
//   dist/       ES modules + .d.ts    (exports' "import" and "default" conditions)
//   dist/cjs/   CommonJS + .d.ts      (exports' "require" condition; dist/cjs/package.json says so)
// Run by `npm run build` and by `prepack`, so `npm pack` / `npm publish` always ship a fresh dist/.
import { spawnSync } from "node:child_process";
import { rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
const dist = path.join(packageRoot, "dist");

rmSync(dist, { recursive: true, force: true });
for (const project of ["tsconfig.json", "tsconfig.cjs.json"]) {
  const { status } = spawnSync(process.execPath, [tsc, "-p", path.join(packageRoot, project)], { cwd: packageRoot, stdio: "inherit" });
  if (status !== 0) {
    console.error(`build: tsc -p ${project} failed`);
    process.exit(1);
  }
}
// The package is "type": "module"; this marks dist/cjs/*.js (and its .d.ts) as CommonJS for Node and TypeScript.
writeFileSync(path.join(dist, "cjs", "package.json"), `${JSON.stringify({ type: "commonjs" }, null, 2)}\n`);
