import { describe, expect, it } from "vitest";
import { createApp } from "./app.ts";
import type { ApiDeps } from "./api-deps.ts";

/*
 * The document is generated from the routes' own declarations; this checks that nothing the app
 * serves is missing from it. Building the app touches no dependency (they are used per request),
 * so an empty deps object is enough here.
 */
const app = createApp({ adminToken: "x".repeat(32), handlerDirs: [] } as unknown as ApiDeps);
const doc = app.getOpenAPI31Document({ openapi: "3.1.0", info: { title: "t", version: "1" } });

/** Routes outside the document by design: probes, Prometheus' scrape, the document itself and its reference page. */
const UNDOCUMENTED = new Set(["/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/scalar.js"]);

describe("the OpenAPI document", () => {
  it("documents every route the app serves, with its method", () => {
    const served = app.routes
      .filter((r) => r.method !== "ALL" && !UNDOCUMENTED.has(r.path))
      .map((r) => `${r.method.toLowerCase()} ${r.path.replace(/:([A-Za-z0-9_]+)/g, "{$1}")}`);
    const documented = Object.entries(doc.paths ?? {}).flatMap(([path, item]) =>
      Object.keys(item as object).filter((m) => ["get", "post", "put", "patch", "delete"].includes(m)).map((m) => `${m} ${path}`),
    );
    expect(served.length).toBeGreaterThan(20);
    expect(new Set(served)).toEqual(new Set(documented));
  });

  it("declares its bearer schemes and a security requirement on every route but none", () => {
    expect(Object.keys(doc.components?.securitySchemes ?? {}).sort()).toEqual(["adminToken", "apiKey"]);
    for (const [path, item] of Object.entries(doc.paths ?? {})) {
      for (const [method, op] of Object.entries(item as Record<string, { security?: unknown[] }>)) {
        expect(op.security, `${method} ${path}`).toBeDefined();
      }
    }
  });

  it("puts the RunPod job routes under /v2 with their path parameters", () => {
    const run = (doc.paths?.["/v2/{ep}/run"] as { post?: { parameters?: { name: string; in: string }[]; requestBody?: unknown } })?.post;
    expect(run?.requestBody).toBeDefined();
    expect(run?.parameters?.map((p) => `${p.in}:${p.name}`)).toEqual(expect.arrayContaining(["path:ep", "header:idempotency-key"]));
  });
});
