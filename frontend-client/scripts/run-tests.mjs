#!/usr/bin/env node
// Runs the test files with node's test runner: build/test/*.test.js (compiled from test/*.ts)
// and test/*.test.mjs. build/test/binary.test.js only when SIDECAR_BINARY names a built binary:
// tests/test_binary.py builds one and runs that file itself, so `npm test` has nothing to skip.
// Extra arguments go to `node --test` (e.g. --test-name-pattern).
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const list = (dir, suffix) =>
  readdirSync(path.join(packageRoot, dir))
    .filter((name) => name.endsWith(suffix))
    .sort()
    .map((name) => path.join(dir, name));

let files = [...list("build/test", ".test.js"), ...list("test", ".test.mjs")];
if (!process.env.SIDECAR_BINARY) {
  files = files.filter((file) => path.basename(file) !== "binary.test.js");
  console.log("# binary.test.js not run: SIDECAR_BINARY is not set (tests/test_binary.py runs it with a built binary)");
}
const { status, signal } = spawnSync(process.execPath, ["--test", "--test-concurrency=4", ...process.argv.slice(2), ...files], {
  cwd: packageRoot,
  stdio: "inherit",
});
process.exit(status ?? (signal ? 1 : 0));
