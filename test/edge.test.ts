import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import workersEntry from "../apps/api/workers/workers-entry.ts";
import { startApiServer, type RunningApi } from "../apps/api/api-server.ts";
import { examplesDir } from "./support/hearth-stack.ts";
import { createTestDatabase, TEST_REDIS_URL, uniquePrefix } from "./support/services.ts";

const ADMIN = "edge-admin-token-0123456789";

/**
 * The Workers entry's front door, run in Node against a real API as its origin (test/workerd.test.ts
 * runs the same entry in workerd): what the app serves itself, what it forwards, what it refuses.
 */
describe("Workers entry: served, forwarded, refused", () => {
  let api: RunningApi;
  let drop: () => Promise<void>;
  let key: string;
  let ep: string;
  let env: Record<string, string>;
  const pending: Promise<unknown>[] = [];
  const ctx = { waitUntil: (p: Promise<unknown>) => void pending.push(p) };

  beforeAll(async () => {
    const db = await createTestDatabase();
    drop = db.drop;
    const redisPrefix = uniquePrefix();
    api = await startApiServer({ databaseUrl: db.url, redisUrl: TEST_REDIS_URL, redisPrefix, handlerDirs: [examplesDir], port: 0, host: "127.0.0.1", adminToken: ADMIN });
    const post = (path: string, token: string, body: unknown) =>
      fetch(`${api.url}${path}`, { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body: JSON.stringify(body) }).then((r) => r.json() as Promise<any>);
    key = (await post("/admin/tenants", ADMIN, { name: "edge" })).apiKey;
    ep = (await post("/api/v1/endpoints", key, { name: "e", engine: { kind: "handler", module: join(examplesDir, "echo.mjs") }, workersMax: 0 })).id;
    env = { DATABASE_URL: db.url, REDIS_URL: TEST_REDIS_URL, HEARTH_REDIS_PREFIX: redisPrefix, HEARTH_BILLING_MODE: "meter", HEARTH_ORIGIN: api.url, HEARTH_LOG_LEVEL: "silent" };
  });
  afterAll(async () => {
    // Every request's connections were closed (a leak would hold this hook until its timeout).
    await Promise.all(pending);
    await api?.close();
    await drop?.();
  });

  /** The answer, read to its end: the entry closes a request's connections once its body has been sent. */
  const req = async (path: string, init: RequestInit = {}, withEnv = env) => {
    const r = await workersEntry.fetch(new Request(`https://edge.example${path}`, init), withEnv, ctx);
    const text = await r.text();
    return { status: r.status, json: () => JSON.parse(text) as unknown };
  };

  it("serves the job path with the app itself: its validation, its auth, its body limits", async () => {
    const r = await req(`/v2/${ep}/run`, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body: JSON.stringify({ input: 1 }) });
    expect(r.status).toBe(200);
    const { id } = r.json() as { id: string };
    const s = await req(`/v2/${ep}/status/${id}`, { headers: { authorization: key } });
    expect(s.json()).toMatchObject({ id, status: "IN_QUEUE" });
    const bad = await req(`/v2/${ep}/run`, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body: "{}" });
    expect(bad.status).toBe(400);
    expect((await req(`/v2/${ep}/health`)).status).toBe(401);
    const big = await req(`/v2/${ep}/run`, { method: "POST", headers: { authorization: key, "content-type": "application/json", "content-length": String(11 * 1024 * 1024) }, body: "x" });
    expect(big.status).toBe(413);
  });

  it("forwards management to the origin, refuses /admin, and answers 501 for what has no origin", async () => {
    const mine = await req(`/api/v1/endpoints/${ep}`, { headers: { authorization: `Bearer ${key}` } });
    expect(mine.status).toBe(200);
    expect((mine.json() as { id: string }).id).toBe(ep);
    expect((await req("/admin/tenants", { method: "POST", headers: { authorization: `Bearer ${ADMIN}` }, body: "{}" })).status).toBe(404);
    expect((await req("/metrics")).status).toBe(501);
    const { HEARTH_ORIGIN: _, ...noOrigin } = env;
    const orphan = await req(`/api/v1/endpoints/${ep}`, { headers: { authorization: `Bearer ${key}` } }, noOrigin);
    expect(orphan.status).toBe(501);
    expect(orphan.json()).toMatchObject({ code: "not_on_workers" });
    expect((await req("/healthz")).status).toBe(200);
  });

  it("answers 500 on bindings it cannot use, and logs the variable's name", async () => {
    const errors = vi.spyOn(console, "error").mockImplementation(() => {});
    try {
      const r = await req("/healthz", {}, { ...env, REDIS_URL: "http://nope" });
      expect(r.status).toBe(500);
      expect(r.json()).toMatchObject({ code: "misconfigured" });
      expect(String(errors.mock.calls[0]?.[0])).toMatch(/REDIS_URL/);
    } finally {
      errors.mockRestore();
    }
  });
});
