// Validates Gateway API HTTPRoutes (not in the Kubernetes schemas) for
// scripts/check-kubernetes, with the models of @kubernetes-models/gateway-api (npm),
// generated from the Gateway API's Go types:
//   1. their JSON Schema validators (required fields, enums, patterns, lengths, counts);
//   2. TypeScript's excess-property check on the same types: those validators let
//      unknown fields through, and strict validation must not.
//
//   node gateway-api.mjs NODE_DIR ROUTES_JSON
// NODE_DIR holds node_modules with @kubernetes-models/gateway-api and typescript;
// ROUTES_JSON is an array of {"where": "...", "doc": {...}}. Exits 1 on any failure.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { spawnSync } from "node:child_process";

const [nodeDir, routesFile] = process.argv.slice(2);
const routes = JSON.parse(readFileSync(routesFile, "utf8"));
const models = join(nodeDir, "node_modules/@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1");
const { HTTPRoute } = await import(pathToFileURL(join(models, "HTTPRoute.js")).href);

let failed = 0;
for (const { where, doc } of routes) {
  if (doc.apiVersion !== "gateway.networking.k8s.io/v1" || doc.kind !== "HTTPRoute") {
    console.error(`FAIL ${where}: only gateway.networking.k8s.io/v1 HTTPRoute is known here`);
    failed++;
    continue;
  }
  try {
    new HTTPRoute(doc).validate();
  } catch (err) {
    console.error(`FAIL ${where}: ${err.message}`);
    failed++;
  }
}

// Every route as a typed constant: an unknown field anywhere is a compile error.
const lines = [
  'import type { IHTTPRoute } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/HTTPRoute";',
];
const starts = [];
routes.forEach(({ where, doc }, i) => {
  starts.push({ line: lines.length + 1, where });
  lines.push(`// ${where}`);
  lines.push(`export const route${i}: IHTTPRoute = ${JSON.stringify(doc, null, 2)};`);
});
const source = lines.join("\n") + "\n";
const file = join(nodeDir, "routes.mts");
writeFileSync(file, source);
const tsc = spawnSync(
  process.execPath,
  [
    join(nodeDir, "node_modules/typescript/bin/tsc"),
    "--noEmit", "--strict", "--skipLibCheck",
    "--target", "es2022", "--module", "nodenext", "--moduleResolution", "nodenext",
    file,
  ],
  { encoding: "utf8", cwd: nodeDir },
);
if (tsc.status !== 0) {
  const text = source.split("\n");
  for (const line of (tsc.stdout + tsc.stderr).split("\n").filter(Boolean)) {
    const m = line.match(/routes\.mts\((\d+),\d+\)/);
    if (m) {
      const n = Number(m[1]);
      const route = starts.filter((s) => s.line <= n).pop();
      console.error(`FAIL ${route ? route.where : "routes"}: ${line.replace(/^.*?error /, "")}`);
      console.error(`     at: ${text[n - 1].trim()}`);
    } else {
      console.error(`FAIL ${line}`);
    }
  }
  failed++;
}

if (failed) process.exit(1);
console.log(`${routes.length} HTTPRoute(s) valid (Gateway API models: schema and unknown fields)`);
