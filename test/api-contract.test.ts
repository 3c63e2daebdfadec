import { mkdtemp, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApiServer, type RunningApi } from "../apps/api/api-server.ts";
import { apiClient } from "./support/api-client.ts";
import { createTestDatabase, TEST_REDIS_URL, uniquePrefix } from "./support/services.ts";

const fixtures = fileURLToPath(new URL("./fixtures/handlers", import.meta.url));
const ADMIN = "test-admin-token-0123456789";

/**
 * The API's own contract without workers: auth, ownership, validation, limits, TTL. No endpoint
 * here has a worker (nothing runs the scheduler), so every job stays queued.
 */
describe("API contract (real Redis and Postgres, no workers)", () => {
  let api: RunningApi;
  let drop: () => Promise<void>;
  let call: ReturnType<typeof apiClient>;
  let clock = Date.now();
  let keyA: string;
  let keyB: string;
  let epA: string;
  let epB: string;

  beforeAll(async () => {
    const t = await createTestDatabase();
    drop = t.drop;
    const handlerDir = fixtures;
    api = await startApiServer(
      { databaseUrl: t.url, redisUrl: TEST_REDIS_URL, redisPrefix: uniquePrefix(), handlerDirs: [handlerDir], port: 0, host: "127.0.0.1", adminToken: ADMIN },
      { now: () => clock },
    );
    call = apiClient(api.url);
    keyA = (await call("POST", "/admin/tenants", { key: ADMIN, body: { name: "a" } })).body.apiKey;
    keyB = (await call("POST", "/admin/tenants", { key: ADMIN, body: { name: "b" } })).body.apiKey;
    const engine = { kind: "handler", module: join(fixtures, "sleep.mjs") };
    epA = (await call("POST", "/api/v1/endpoints", { key: keyA, body: { name: "a", engine, workersMax: 0 } })).body.id;
    epB = (await call("POST", "/api/v1/endpoints", { key: keyB, body: { name: "b", engine, workersMax: 0 } })).body.id;
  });
  afterAll(async () => {
    await api?.close();
    await drop?.();
  });

  it("creates tenants only with the admin token", async () => {
    expect((await call("POST", "/admin/tenants", { key: "wrong", body: { name: "x" } })).status).toBe(401);
    const ok = await call("POST", "/admin/tenants", { key: ADMIN, body: { name: "x" } });
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ name: "x", id: expect.any(String), apiKey: expect.stringMatching(/^hk_/) });
  });

  it("accepts the key as Bearer or raw, and refuses missing, unknown and revoked keys", async () => {
    expect((await call("GET", `/v2/${epA}/health`, { rawAuth: keyA })).status).toBe(200);
    expect((await call("GET", `/v2/${epA}/health`, {})).status).toBe(401);
    expect((await call("GET", `/v2/${epA}/health`, { key: "hk_nope" })).status).toBe(401);
    const created = await call("POST", "/api/v1/keys", { key: keyA, body: { name: "temp" } });
    expect(created.status).toBe(200);
    expect((await call("GET", `/v2/${epA}/health`, { key: created.body.key })).status).toBe(200);
    const listed = await call("GET", "/api/v1/keys", { key: keyA });
    expect(listed.body.map((k: { id: string }) => k.id)).toContain(created.body.id);
    expect(JSON.stringify(listed.body)).not.toContain(created.body.key); // shown once, stored hashed
    expect((await call("DELETE", `/api/v1/keys/${created.body.id}`, { key: keyA })).status).toBe(200);
    expect((await call("GET", `/v2/${epA}/health`, { key: created.body.key })).status).toBe(401);
  });

  it("answers 404 for another tenant's endpoint and job, never 403", async () => {
    expect((await call("GET", `/api/v1/endpoints/${epA}`, { key: keyB })).status).toBe(404);
    expect((await call("PATCH", `/api/v1/endpoints/${epA}`, { key: keyB, body: { workersMax: 2 } })).status).toBe(404);
    expect((await call("DELETE", `/api/v1/endpoints/${epA}`, { key: keyB })).status).toBe(404);
    expect((await call("POST", `/v2/${epA}/run`, { key: keyB, body: { input: {} } })).status).toBe(404);
    const job = await call("POST", `/v2/${epA}/run`, { key: keyA, body: { input: { ms: 1 } } });
    expect(job.status).toBe(200);
    for (const op of ["status", "stream", "status-sync"]) {
      expect((await call("GET", `/v2/${epB}/${op}/${job.body.id}?wait=1000`, { key: keyB })).status).toBe(404);
    }
    expect((await call("POST", `/v2/${epB}/cancel/${job.body.id}`, { key: keyB })).status).toBe(404);
    expect((await call("GET", `/v2/${epA}/status/${job.body.id}`, { key: keyA })).body.status).toBe("IN_QUEUE");
    const list = await call("GET", "/api/v1/endpoints", { key: keyB });
    expect(list.body.map((e: { id: string }) => e.id)).toEqual([epB]);
  });

  it("rejects malformed bodies with 400 naming the field", async () => {
    const bad = async (path: string, body: unknown, field: string, method = "POST") => {
      const r = await call(method, path, { key: keyA, ...(typeof body === "string" ? { raw: body } : { body }) });
      expect(r.status).toBe(400);
      if (field) expect(r.body.issues.map((i: { path: string }) => i.path)).toContain(field);
      return r;
    };
    await bad(`/v2/${epA}/run`, { inputs: {} }, "input");
    await bad(`/v2/${epA}/run`, { input: {}, policy: { ttl: 5 } }, "policy.ttl");
    await bad(`/v2/${epA}/run`, { input: {}, policy: { executionTimeout: "long" } }, "policy.executionTimeout");
    await bad(`/v2/${epA}/run`, { input: {}, webhook: "ftp://x" }, "webhook");
    expect((await bad(`/v2/${epA}/run`, "{not json", "")).body.error).toMatch(/JSON/);
    await bad(`/v2/${epA}/runsync?wait=5`, { input: {} }, "wait");
    await bad("/api/v1/endpoints", { name: "x", engine: { kind: "handler", module: join(fixtures, "sleep.mjs") }, workersMin: -1 }, "workersMin");
    await bad("/api/v1/endpoints", { name: "x", engine: { kind: "gpu" } }, "engine.kind");
    await bad(`/api/v1/endpoints/${epA}`, { workersMin: 5, workersMax: 1 }, "workersMin", "PATCH");
    // Unknown top-level keys are tolerated, as RunPod's own examples send some.
    expect((await call("POST", `/v2/${epA}/run`, { key: keyA, body: { input: {}, timeout: 60000 } })).status).toBe(200);
  });

  it("refuses handler modules outside HEARTH_HANDLER_DIRS, through '..' or a symlink", async () => {
    const outside = await mkdtemp(join(tmpdir(), "hearth-outside-"));
    await writeFile(join(outside, "evil.mjs"), "export default async () => 'pwned'");
    const link = join(fixtures, `link-${process.pid}.mjs`);
    await symlink(join(outside, "evil.mjs"), link);
    try {
      for (const module of [join(outside, "evil.mjs"), `${fixtures}/../../../${outside}/evil.mjs`, link, "relative/path.mjs", `file://${outside}/evil.mjs`]) {
        const r = await call("POST", "/api/v1/endpoints", { key: keyA, body: { name: "x", engine: { kind: "handler", module } } });
        expect(r.status, module).toBe(400);
        expect(r.body.issues[0].path).toBe("engine.module");
      }
      const ok = await call("POST", "/api/v1/endpoints", { key: keyA, body: { name: "ok", engine: { kind: "handler", module: `file://${fixtures}/sleep.mjs` } } });
      expect(ok.status).toBe(200);
    } finally {
      await (await import("node:fs/promises")).unlink(link);
    }
  });

  it("answers 413 with JSON past 10 MB on /run and 20 MB on /runsync", async () => {
    const body11 = JSON.stringify({ input: "x".repeat(11 * 1024 * 1024) });
    const r = await call("POST", `/v2/${epA}/run`, { key: keyA, raw: body11 });
    expect(r.status).toBe(413);
    expect(r.body.code).toBe("payload_too_large");
    const s = await call("POST", `/v2/${epA}/runsync?wait=1000`, { key: keyA, raw: body11 });
    expect(s.status).toBe(200); // within runsync's 20 MB
    expect(s.body.status).toBe("IN_QUEUE");
    const body21 = JSON.stringify({ input: "x".repeat(21 * 1024 * 1024) });
    expect((await call("POST", `/v2/${epA}/runsync`, { key: keyA, raw: body21 })).status).toBe(413);
  });

  it("returns the current job when runsync's wait ends, and 404 once the TTL passed", async () => {
    const r = await call("POST", `/v2/${epA}/runsync?wait=1000`, { key: keyA, body: { input: {}, policy: { ttl: 10_000 } } });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ id: expect.stringMatching(/^sync-/), status: "IN_QUEUE" });
    expect((await call("GET", `/v2/${epA}/status/${r.body.id}`, { key: keyA })).status).toBe(200);
    clock += 10_001;
    expect((await call("GET", `/v2/${epA}/status/${r.body.id}`, { key: keyA })).status).toBe(404);
    expect((await call("GET", `/v2/${epA}/stream/${r.body.id}`, { key: keyA })).status).toBe(404);
  });

  it("cancels a queued job, refuses to retry it, and purges the queue", async () => {
    const a = await call("POST", `/v2/${epA}/run`, { key: keyA, body: { input: {} } });
    const b = await call("POST", `/v2/${epA}/run`, { key: keyA, body: { input: {}, policy: { lowPriority: true } } });
    const cancelled = await call("POST", `/v2/${epA}/cancel/${a.body.id}`, { key: keyA });
    expect(cancelled.body).toMatchObject({ id: a.body.id, status: "CANCELLED" });
    expect((await call("GET", `/v2/${epA}/status/${a.body.id}`, { key: keyA })).body.status).toBe("CANCELLED");
    const retry = await call("POST", `/v2/${epA}/retry/${b.body.id}`, { key: keyA });
    expect(retry.status).toBe(400);
    expect(retry.body.error).toMatch(/IN_QUEUE/);
    const before = (await call("GET", `/v2/${epA}/health`, { key: keyA })).body;
    expect(before.jobs.inQueue).toBeGreaterThanOrEqual(1);
    const purged = await call("POST", `/v2/${epA}/purge-queue`, { key: keyA });
    expect(purged.body).toEqual({ removed: before.jobs.inQueue, status: "completed" });
    const after = (await call("GET", `/v2/${epA}/health`, { key: keyA })).body;
    expect(after.jobs.inQueue).toBe(0);
    // RunPod's six worker counters, and `paused` (the snapshot pool) beside them.
    expect(Object.keys(after.workers).sort()).toEqual(["idle", "initializing", "paused", "ready", "running", "throttled", "unhealthy"]);
    expect(Object.keys(after.jobs).sort()).toEqual(["completed", "failed", "inProgress", "inQueue", "retried"]);
    expect((await call("GET", `/v2/${epA}/status/${b.body.id}`, { key: keyA })).status).toBe(404);
  });

  it("serves /healthz and /readyz and 404s unknown routes as JSON", async () => {
    expect((await call("GET", "/healthz")).status).toBe(200);
    expect((await call("GET", "/readyz")).body).toEqual({ ready: true, redis: true, postgres: true });
    expect((await call("GET", "/nope")).status).toBe(404);
  });
});
