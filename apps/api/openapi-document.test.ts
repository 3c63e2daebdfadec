import { describe, expect, it } from "vitest";
import { z } from "zod";
import { createApp } from "./app.ts";
import type { ApiDeps } from "./api-deps.ts";

/*
 * The document is generated from the routes' own declarations; this checks that nothing the app
 * serves is missing from it, and that every JSON response carries an example its schema accepts as
 * it is (a reader of /openapi.json copies examples, so a wrong one misleads as much as a wrong
 * schema). Building the app touches no dependency (they are used per request), so an empty deps
 * object is enough here.
 */
const app = createApp({ adminToken: "x".repeat(32), handlerDirs: [] } as unknown as ApiDeps);
const doc = app.getOpenAPI31Document({ openapi: "3.1.0", info: { title: "t", version: "1" } });

/** What /openapi.json serves: the document as JSON. */
const published = JSON.parse(JSON.stringify(doc)) as { paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, { example?: unknown }> }> }>> };

/** Every documented JSON response, with the zod schema and example its route declares (hotRoute's routes included). */
const jsonResponses = app.openAPIRegistry.definitions.flatMap((d) => {
  if (d.type !== "route") return [];
  const { method, path, responses } = d.route;
  return Object.entries(responses).flatMap(([status, response]) => {
    const media = "content" in response ? response.content?.["application/json"] : undefined;
    if (!media || "$ref" in media) return [];
    return [{ name: `${method.toUpperCase()} ${path} ${status}`, method, path, status, schema: media.schema as z.ZodType, hasExample: "example" in media, example: media.example as unknown }];
  });
});

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * Where a schema's output differs from the example it parsed. Response schemas describe what the
 * API sends, and none of them transforms a value, so a complete example is a fixed point of its
 * schema: a key the output lacks was dropped (z.object strips keys it does not declare: a typo, or a
 * field the schema lost), a key only the output has was filled by a default (the example leaves out
 * something every answer carries), and a changed value would be a transform. A schema that ever
 * needs a transform gets an exemption here, with its reason.
 */
function drift(example: unknown, parsed: unknown, at = ""): string[] {
  const here = (k: string | number) => (at ? `${at}.${k}` : String(k));
  if (isRecord(example) && isRecord(parsed)) {
    return [...new Set([...Object.keys(example), ...Object.keys(parsed)])].flatMap((k) => {
      if (!(k in parsed)) return [`${here(k)}: dropped by the schema`];
      if (!(k in example)) return [`${here(k)}: added by the schema (a default)`];
      return drift(example[k], parsed[k], here(k));
    });
  }
  if (Array.isArray(example) && Array.isArray(parsed) && example.length === parsed.length) return example.flatMap((v, i) => drift(v, parsed[i], here(i)));
  return Object.is(example, parsed) ? [] : [`${at || "(body)"}: ${JSON.stringify(example)} became ${JSON.stringify(parsed)}`];
}

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

  describe("gives every JSON response an example its schema accepts", () => {
    it("finds every response: each documented route has some, success and errors", () => {
      expect(new Set(jsonResponses.map((r) => `${r.method} ${r.path}`)).size).toBe(Object.values(published.paths).flatMap((item) => Object.keys(item)).length);
      expect(jsonResponses.filter((r) => r.status.startsWith("2")).length).toBeGreaterThanOrEqual(59);
      expect(jsonResponses.length).toBeGreaterThan(200);
    });

    it("has an example on each", () => {
      expect(jsonResponses.filter((r) => !r.hasExample || r.example === undefined).map((r) => r.name)).toEqual([]);
    });

    it("has examples that validate against their response's schema", () => {
      const failures = jsonResponses.flatMap((r) => {
        const result = r.schema.safeParse(r.example);
        return result.success ? [] : [`${r.name}:\n${z.prettifyError(result.error)}`];
      });
      expect(failures, failures.join("\n\n")).toEqual([]);
    });

    it("has examples the schema keeps as they are (no undeclared key dropped, no default filled in)", () => {
      const failures = jsonResponses.flatMap((r) => {
        const result = r.schema.safeParse(r.example);
        const found = result.success ? drift(r.example, result.data) : [];
        return found.length === 0 ? [] : [`${r.name}: ${found.join("; ")}`];
      });
      expect(failures, failures.join("\n")).toEqual([]);
    });

    it("publishes each example in /openapi.json", () => {
      for (const r of jsonResponses) {
        const media = published.paths[r.path]?.[r.method]?.responses[r.status]?.content?.["application/json"];
        expect(media?.example, r.name).toEqual(JSON.parse(JSON.stringify(r.example)));
      }
    });
  });
});
