import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

/**
 * What a worker loads before its engine can spawn: the static import graph of its built entry
 * (vitest's global setup builds dist/ first). An engine process spawns only once all of it has
 * been read and run, so each package here is on every cold start's path. The operator's S3
 * configuration once pulled the whole AWS SDK in (1.4 MB, ~70 ms here) through one import.
 */
const root = fileURLToPath(new URL("..", import.meta.url));
const STATIC_IMPORT = /^\s*import\s+(?:[\w$*{}\s,]+?\s+from\s+)?["'](\.{1,2}\/[^"']+)["'];?\s*$/gm;

function staticGraph(entry: string): Map<string, string> {
  const files = new Map<string, string>();
  const visit = (file: string) => {
    if (files.has(file)) return;
    const text = readFileSync(file, "utf8");
    files.set(file, text);
    for (const m of text.matchAll(STATIC_IMPORT)) visit(resolve(dirname(file), m[1]!));
  };
  visit(entry);
  return files;
}

/** Packages whose source esbuild bundled into these files (it marks each module with a `// node_modules/<pkg>/…` line). */
function bundledPackages(files: Map<string, string>): Set<string> {
  const packages = new Set<string>();
  for (const text of files.values()) {
    for (const m of text.matchAll(/^\/\/ node_modules\/((?:@[^/\s]+\/)?[^/\s]+)\//gm)) packages.add(m[1]!);
  }
  return packages;
}

describe("the worker's first stage (dist/worker/main.js before its engine spawns)", () => {
  const graph = staticGraph(join(root, "dist/worker/main.js"));
  const packages = bundledPackages(graph);

  it("reads the files the entry imports statically (the graph is what this test thinks it is)", () => {
    expect(graph.size).toBeGreaterThan(3);
    expect(packages).toContain("zod"); // the configuration's schemas: needed, and found
  });

  it("loads no S3 SDK, no queue client and no OpenTelemetry SDK: those come later, or only when asked for", () => {
    const unwanted = [...packages].filter((p) => /^@aws-sdk\/|^@smithy\/|^bullmq$|^ioredis$|^@opentelemetry\/sdk|^prom-client$/.test(p));
    expect(unwanted).toEqual([]);
    // Externals are imported by name, not bundled.
    const text = [...graph.values()].join("\n");
    expect(text).not.toMatch(/from\s+["'](ioredis|prom-client|@opentelemetry\/[^"']+)["']/);
  });
});
