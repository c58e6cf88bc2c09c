#!/usr/bin/env node
// Generates src/generated.ts from the sidecar's OpenRPC document (../schema/openrpc.json):
//   - every component schema as a TypeScript type (json-schema-to-typescript `compile`),
//   - a named params/result type for every method that has none in the components,
//   - `SidecarMethods` (wire name -> params and result types), `SIDECAR_METHODS` (camelCase
//     name -> wire name and params arity, used at runtime) and `SidecarMethodFunctions`
//     (the typed camelCase methods of SidecarClient),
//   - `SidecarNotifications` (notification name -> params type) from `x-notifications`.
//
// Usage:
//   node scripts/generate.mjs            write src/generated.ts
//   node scripts/generate.mjs --check    exit 1 when src/generated.ts differs from a fresh run
// Options: --schema PATH (default ../schema/openrpc.json), --out PATH (default src/generated.ts)
import { readFile, writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { compile } from "json-schema-to-typescript";

const here = path.dirname(fileURLToPath(import.meta.url));
const packageRoot = path.resolve(here, "..");

const REF_PREFIX = "#/components/schemas/";
const ROOT_NAME = "GeneratedSchemaRoot__";

/** `llm_list_available_models` -> `listAvailableModels` (a leading `llm_` is dropped). */
export function camelName(wireName) {
  const base = wireName.replace(/^llm_/, "");
  const out = base.replace(/[_.\-]+([A-Za-z0-9])/g, (_, c) => c.toUpperCase());
  if (!/^[A-Za-z_$][A-Za-z0-9_$]*$/.test(out)) {
    throw new Error(`method ${JSON.stringify(wireName)} has no usable camelCase name (got ${JSON.stringify(out)})`);
  }
  return out;
}

function pascalName(wireName) {
  const c = camelName(wireName);
  return c[0].toUpperCase() + c.slice(1);
}

function tsKey(name) {
  return /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(name) ? name : JSON.stringify(name);
}

function docComment(lines, indent = "") {
  const text = lines.filter((l) => l !== undefined && l !== null && l !== "").join("\n\n");
  if (!text) return "";
  const body = text
    .replaceAll("*/", "*\\/")
    .split("\n")
    .map((l) => (l ? `${indent} * ${l}` : `${indent} *`))
    .join("\n");
  return `${indent}/**\n${body}\n${indent} */\n`;
}

function refName(schema) {
  if (schema && typeof schema === "object" && typeof schema.$ref === "string" && Object.keys(schema).length === 1) {
    if (!schema.$ref.startsWith(REF_PREFIX)) throw new Error(`unsupported $ref ${schema.$ref}`);
    return schema.$ref.slice(REF_PREFIX.length);
  }
  return undefined;
}

function rewriteRefs(value) {
  return JSON.parse(JSON.stringify(value).replaceAll(`"${REF_PREFIX}`, '"#/$defs/'));
}

/** Returns the text of src/generated.ts for an OpenRPC document (already parsed). */
export async function generate(doc) {
  const components = doc?.components?.schemas ?? {};
  const defs = { ...components };
  const taken = new Set(Object.keys(defs));
  const addDef = (name, schema, what) => {
    if (taken.has(name)) {
      throw new Error(`${what}: the generated type name ${name} is already a component; name it in the schema (x-params-type)`);
    }
    taken.add(name);
    defs[name] = schema;
  };

  const methods = [];
  const camelSeen = new Map();
  for (const m of doc.methods ?? []) {
    const camel = camelName(m.name);
    if (camelSeen.has(camel)) {
      throw new Error(`methods ${camelSeen.get(camel)} and ${m.name} both map to ${camel}()`);
    }
    camelSeen.set(camel, m.name);
    if (m.paramStructure && m.paramStructure !== "by-name") {
      throw new Error(`method ${m.name}: only by-name params are supported (got ${m.paramStructure})`);
    }
    const params = m.params ?? [];
    let paramsType;
    let arity;
    if (params.length === 0) {
      paramsType = "NoParams";
      arity = "none";
    } else {
      arity = params.some((p) => p.required) ? "required" : "optional";
      const named = m["x-params-type"];
      if (typeof named === "string" && named in components) {
        paramsType = named;
      } else {
        paramsType = `${pascalName(m.name)}Params`;
        const properties = {};
        for (const p of params) {
          const description = p.description ?? p.summary;
          properties[p.name] = description ? { ...p.schema, description } : p.schema;
        }
        addDef(
          paramsType,
          {
            title: paramsType,
            type: "object",
            properties,
            required: params.filter((p) => p.required).map((p) => p.name),
            additionalProperties: false,
          },
          `params of ${m.name}`,
        );
      }
    }
    const resultSchema = m.result?.schema ?? {};
    let resultType = refName(resultSchema);
    if (resultType === undefined) {
      resultType = `${pascalName(m.name)}Result`;
      addDef(resultType, { ...resultSchema, title: resultType }, `result of ${m.name}`);
    } else if (!(resultType in components)) {
      throw new Error(`method ${m.name}: result refers to the unknown component ${resultType}`);
    }
    methods.push({ wire: m.name, camel, paramsType, resultType, arity, summary: m.summary, description: m.description, deprecated: m.deprecated === true });
  }

  const notifications = [];
  for (const n of doc["x-notifications"] ?? []) {
    let paramsType = refName(n.params);
    if (paramsType === undefined) {
      paramsType = `${pascalName(n.name.replace(/\{[^}]*\}/g, "").replace(/[-_.]+$/, ""))}Notification`;
      addDef(paramsType, { ...(n.params ?? {}), title: paramsType }, `notification ${n.name}`);
    }
    const templated = /\{[^}]+\}/.test(n.name);
    const key = templated
      ? `[name: \`${n.name.replace(/[`\\$]/g, "\\$&").replace(/\{[^}]+\}/g, "${string}")}\`]`
      : JSON.stringify(n.name);
    notifications.push({ key, paramsType, summary: n.summary, description: n.description, name: n.name });
  }

  // One compile for all types, so shared components are declared once.
  const root = {
    title: ROOT_NAME,
    type: "object",
    properties: {},
    additionalProperties: false,
    $defs: rewriteRefs(defs),
  };
  let types = await compile(root, ROOT_NAME, {
    bannerComment: "",
    unreachableDefinitions: true,
    additionalProperties: true, // only where a schema leaves it open (free-form objects); components say false
    unknownAny: true,
    strictIndexSignatures: false,
    format: true,
    style: { printWidth: 100 },
  });
  types = types
    .replace(/\/\*\*\n \* This interface was referenced by `[^`]+`'s JSON-Schema\n \* via the `definition` "[^"]+"\.\n \*\/\n/g, "")
    .replace(/ \*\n \* This interface was referenced by `[^`]+`'s JSON-Schema\n \* via the `definition` "[^"]+"\.\n/g, "")
    .replace(new RegExp(`\\n?export interface ${ROOT_NAME} \\{\\}\\n`), "\n");
  if (types.includes(ROOT_NAME)) throw new Error("could not strip the synthetic root type from the output");

  const info = doc.info ?? {};
  const out = [];
  out.push(
    "/* eslint-disable */",
    "// DO NOT EDIT. Generated by scripts/generate.mjs from schema/openrpc.json; never edit by hand.",
    "// Regenerate with `npm run generate`; `npm run check-generated` (run by `npm test` and CI)",
    "// fails when this file is stale.",
    "",
    "// ---------------------------------------------------------------------------------------------",
    "// Wire types: every component of the schema (snake_case, exactly as on the wire)",
    "// ---------------------------------------------------------------------------------------------",
    "",
    types.trim(),
    "",
    "// ---------------------------------------------------------------------------------------------",
    "// Methods",
    "// ---------------------------------------------------------------------------------------------",
    "",
    `/** Version of the sidecar the schema was generated from. */`,
    `export const SCHEMA_VERSION = ${JSON.stringify(String(info.version ?? ""))};`,
    "",
    `/** The protocol version a compatible sidecar announces in \`sidecar-ready\`. */`,
    `export const PROTOCOL_VERSION = ${JSON.stringify(info["x-protocol-version"] ?? 1)};`,
    "",
    "/** Params of a method that takes none. */",
    "export type NoParams = Record<string, never>;",
    "",
    "/** Every JSON-RPC method of the sidecar: wire name -> params and result types. */",
    "export interface SidecarMethods {",
  );
  for (const m of methods) {
    out.push(
      docComment([m.summary, m.description, m.deprecated ? "@deprecated" : undefined], "  ") +
        `  ${tsKey(m.wire)}: { params: ${m.paramsType}; result: ${m.resultType} };`,
    );
  }
  out.push(
    "}",
    "",
    "/** A wire method name. */",
    "export type SidecarMethodName = keyof SidecarMethods;",
    "",
    "/**",
    " * camelCase name -> wire method and whether it takes params (`none`, `optional`, `required`).",
    " * SidecarClient installs one method per entry.",
    " */",
    "export const SIDECAR_METHODS = {",
  );
  for (const m of methods) {
    out.push(`  ${m.camel}: { method: ${JSON.stringify(m.wire)}, params: ${JSON.stringify(m.arity)} },`);
  }
  out.push(
    "} as const;",
    "",
    "/** The typed camelCase methods of SidecarClient (one per wire method). */",
    "export interface SidecarMethodFunctions<Options> {",
  );
  for (const m of methods) {
    const doc = docComment(
      [m.summary, m.description, `Wire method \`${m.wire}\`.`, m.deprecated ? "@deprecated" : undefined],
      "  ",
    );
    const sig =
      m.arity === "none"
        ? `(options?: Options)`
        : m.arity === "optional"
          ? `(params?: ${m.paramsType}, options?: Options)`
          : `(params: ${m.paramsType}, options?: Options)`;
    out.push(`${doc}  ${m.camel}${sig}: Promise<${m.resultType}>;`);
  }
  out.push(
    "}",
    "",
    "// ---------------------------------------------------------------------------------------------",
    "// Notifications (sidecar -> client)",
    "// ---------------------------------------------------------------------------------------------",
    "",
    "/** Every notification the sidecar sends: name (or name pattern) -> params type. */",
    "export interface SidecarNotifications {",
  );
  for (const n of notifications) {
    out.push(docComment([n.summary, n.description, `Notification \`${n.name}\`.`], "  ") + `  ${n.key}: ${n.paramsType};`);
  }
  out.push("}", "");
  return out.join("\n");
}

async function main(argv) {
  const args = argv.slice(2);
  const opt = (name, fallback) => {
    const i = args.indexOf(name);
    return i >= 0 && args[i + 1] ? args[i + 1] : fallback;
  };
  const check = args.includes("--check");
  const schemaPath = path.resolve(packageRoot, opt("--schema", "../schema/openrpc.json"));
  const outPath = path.resolve(packageRoot, opt("--out", "src/generated.ts"));
  const doc = JSON.parse(await readFile(schemaPath, "utf8"));
  const fresh = await generate(doc);
  const rel = path.relative(packageRoot, outPath);
  if (!check) {
    await writeFile(outPath, fresh);
    console.log(`wrote ${rel} (${(doc.methods ?? []).length} methods) from ${path.relative(packageRoot, schemaPath)}`);
    return 0;
  }
  let current = null;
  try {
    current = await readFile(outPath, "utf8");
  } catch {
    // missing: reported below
  }
  if (current === fresh) {
    console.log(`${rel} is up to date with ${path.relative(packageRoot, schemaPath)}`);
    return 0;
  }
  console.error(
    current === null
      ? `check-generated: ${rel} is missing.`
      : `check-generated: ${rel} is stale: it differs from what scripts/generate.mjs makes of ${path.relative(packageRoot, schemaPath)}.`,
  );
  if (current !== null) {
    const a = current.split("\n");
    const b = fresh.split("\n");
    const i = a.findIndex((line, k) => line !== b[k]);
    const at = i === -1 ? Math.min(a.length, b.length) : i;
    console.error(`First difference at line ${at + 1}:`);
    console.error(`  committed: ${JSON.stringify(a[at] ?? "<end of file>")}`);
    console.error(`  expected:  ${JSON.stringify(b[at] ?? "<end of file>")}`);
  }
  console.error("Run `npm run generate` in frontend-client/ and commit the result (never edit the file by hand).");
  return 1;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv).then(
    (code) => process.exit(code),
    (err) => {
      console.error(`generate: ${err instanceof Error ? err.message : String(err)}`);
      process.exit(2);
    },
  );
}
