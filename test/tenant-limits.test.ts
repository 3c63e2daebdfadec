import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApiServer, type RunningApi } from "../apps/api/api-server.ts";
import type { TenantLimits } from "../core/contracts/tenant-limits.ts";
import { apiClient } from "./support/api-client.ts";
import { examplesDir } from "./support/hearth-stack.ts";
import { createTestDatabase, TEST_REDIS_URL, uniquePrefix } from "./support/services.ts";

const ADMIN = "limits-admin-token-0123456789";
const DEFAULTS: TenantLimits = { maxEndpoints: 50, maxWorkers: 40, maxWorkersMin: 10, maxQueuedJobsPerEndpoint: 100_000, maxInputBytes: 10 * 1024 * 1024, spendPerHourMicros: 100_000_000 };
const echo = { kind: "handler", module: join(examplesDir, "echo.mjs") };

/** The API alone (no scheduler: jobs stay queued), on a clock the test moves. */
describe("tenant quotas, grants and hostile input", () => {
  let api: RunningApi;
  let drop: () => Promise<void>;
  let call: ReturnType<typeof apiClient>;
  let clock = Date.now();
  const admin = (method: string, path: string, body?: unknown) => call(method, path, { key: ADMIN, ...(body !== undefined && { body }) });

  beforeAll(async () => {
    const db = await createTestDatabase();
    drop = db.drop;
    api = await startApiServer(
      { databaseUrl: db.url, redisUrl: TEST_REDIS_URL, redisPrefix: uniquePrefix(), handlerDirs: [examplesDir], port: 0, host: "127.0.0.1", adminToken: ADMIN, limitDefaults: DEFAULTS },
      { now: () => clock },
    );
    call = apiClient(api.url);
  });
  afterAll(async () => {
    await api?.close();
    await drop?.();
  });

  async function tenant(name: string): Promise<{ id: string; key: string }> {
    const r = await admin("POST", "/admin/tenants", { name });
    expect(r.status).toBe(200);
    return { id: r.body.id, key: r.body.apiKey };
  }
  /** A change of limits reaches the API's cache within its TTL (5 s): move the clock past it. */
  const pastCache = () => (clock += 6000);

  it("shows the defaults, the overrides, and the tenant's usage", async () => {
    const t = await tenant("a");
    const mine = await call("GET", "/api/v1/limits", { key: t.key });
    expect(mine.status).toBe(200);
    expect(mine.body).toMatchObject({ limits: DEFAULTS, usage: { endpoints: 0, workersMin: 0 }, grants: { remoteCode: false } });
    expect(mine.body.rates.source).toBe("none");

    const set = await admin("PUT", `/admin/tenants/${t.id}/limits`, { maxEndpoints: 3, maxInputBytes: 5000 });
    expect(set.status).toBe(200);
    expect(set.body).toEqual({ tenantId: t.id, limits: { ...DEFAULTS, maxEndpoints: 3, maxInputBytes: 5000 }, overrides: { maxEndpoints: 3, maxInputBytes: 5000 }, rates: {}, rateDefault: "none" });
    const reset = await admin("PUT", `/admin/tenants/${t.id}/limits`, { maxInputBytes: null });
    expect(reset.body.overrides).toEqual({ maxEndpoints: 3 });
    expect((await admin("GET", `/admin/tenants/${t.id}/limits`)).body.limits.maxEndpoints).toBe(3);
  });

  it("refuses bad limit updates with the field named, and unknown tenants with 404", async () => {
    const t = await tenant("b");
    const bad = await admin("PUT", `/admin/tenants/${t.id}/limits`, { maxEndpoints: -1, maxGpus: 3 });
    expect(bad.status).toBe(400);
    expect(bad.body.issues.map((i: { path: string }) => i.path).sort()).toEqual(["(body)", "maxEndpoints"].sort());
    expect((await admin("PUT", "/admin/tenants/tn_nosuchtenant/limits", { maxEndpoints: 1 })).status).toBe(404);
    expect((await admin("PUT", "/admin/tenants/tn_nosuchtenant/grants", { remoteCode: true })).status).toBe(404);
    expect((await call("PUT", `/admin/tenants/${t.id}/limits`, { key: t.key, body: { maxEndpoints: 100 } })).status).toBe(401);
  });

  it("refuses each counted quota with 403 quota_exceeded naming it and its value", async () => {
    const t = await tenant("c");
    await admin("PUT", `/admin/tenants/${t.id}/limits`, { maxEndpoints: 2, maxWorkersMin: 1, maxWorkers: 4 });
    pastCache();
    const create = (body: Record<string, unknown>) => call("POST", "/api/v1/endpoints", { key: t.key, body: { name: "e", engine: echo, ...body } });

    const tooWide = await create({ workersMax: 5 });
    expect(tooWide.status).toBe(403);
    expect(tooWide.body).toMatchObject({ code: "quota_exceeded", issues: [{ path: "maxWorkers", message: "quota is 4" }] });
    expect(tooWide.body.error).toContain("maxWorkers (4)");

    const first = await create({ workersMin: 1, workersMax: 2 });
    expect(first.status).toBe(200);
    const minTaken = await create({ workersMin: 1, workersMax: 2 });
    expect(minTaken.status).toBe(403);
    expect(minTaken.body.issues[0].path).toBe("maxWorkersMin");
    // The same endpoint may keep its own workersMin: its own share is not counted twice.
    expect((await call("PATCH", `/api/v1/endpoints/${first.body.id}`, { key: t.key, body: { workersMin: 1, workersMax: 3 } })).status).toBe(200);

    expect((await create({ workersMax: 1 })).status).toBe(200);
    const third = await create({ workersMax: 1 });
    expect(third.status).toBe(403);
    expect(third.body.issues[0]).toEqual({ path: "maxEndpoints", message: "quota is 2" });
    // A deleted endpoint frees its slot.
    expect((await call("DELETE", `/api/v1/endpoints/${first.body.id}`, { key: t.key })).status).toBe(200);
    expect((await create({ workersMax: 1 })).status).toBe(200);
    const usage = (await call("GET", "/api/v1/limits", { key: t.key })).body.usage;
    expect(usage).toEqual({ endpoints: 2, workersMin: 0 });
  });

  it("refuses an input over maxInputBytes with 413, and a full queue with 429 and Retry-After", async () => {
    const t = await tenant("d");
    await admin("PUT", `/admin/tenants/${t.id}/limits`, { maxInputBytes: 2000, maxQueuedJobsPerEndpoint: 3 });
    pastCache();
    const ep = (await call("POST", "/api/v1/endpoints", { key: t.key, body: { name: "q", engine: echo, workersMax: 0 } })).body.id as string;

    const big = await call("POST", `/v2/${ep}/run`, { key: t.key, body: { input: "x".repeat(3000) } });
    expect(big.status).toBe(413);
    expect(big.body).toMatchObject({ code: "payload_too_large" });
    expect(big.body.error).toContain("maxInputBytes");
    const bigSync = await call("POST", `/v2/${ep}/runsync?wait=1000`, { key: t.key, body: { input: "x".repeat(3000) } });
    expect(bigSync.status).toBe(413);

    for (let i = 0; i < 3; i++) expect((await call("POST", `/v2/${ep}/run`, { key: t.key, body: { input: i } })).status).toBe(200);
    clock += 1000; // past the depth sample's period
    const full = await call("POST", `/v2/${ep}/run`, { key: t.key, body: { input: 4 } });
    expect(full.status).toBe(429);
    expect(full.headers.get("retry-after")).toBe("1");
    expect(full.body).toMatchObject({ code: "queue_full" });
    expect((await call("GET", `/v2/${ep}/health`, { key: t.key })).body.jobs.inQueue).toBe(3);

    // Purged, the queue takes jobs again.
    await call("POST", `/v2/${ep}/purge-queue`, { key: t.key });
    clock += 1000;
    expect((await call("POST", `/v2/${ep}/run`, { key: t.key, body: { input: 5 } })).status).toBe(200);
  });

  it("refuses trust-remote-code until the admin grants remoteCode", async () => {
    const t = await tenant("e");
    const body = { name: "v", engine: { kind: "openai", profile: "vllm", model: "https://huggingface.co/org/model", args: { "trust-remote-code": true } } };
    const refused = await call("POST", "/api/v1/endpoints", { key: t.key, body });
    expect(refused.status).toBe(400);
    expect(refused.body).toMatchObject({ code: "grant_required", issues: [{ path: "engine.args.trust-remote-code" }] });
    const sglang = await call("POST", "/api/v1/endpoints", { key: t.key, body: { name: "s", engine: { kind: "openai", profile: "sglang", model: "https://huggingface.co/org/model", args: { "chat-template": "/etc/passwd" } } } });
    expect(sglang.body.issues[0].path).toBe("engine.args.chat-template");
    // Set to false it asks for nothing.
    expect((await call("POST", "/api/v1/endpoints", { key: t.key, body: { ...body, engine: { ...body.engine, args: { "trust-remote-code": false } } } })).status).toBe(200);

    const granted = await admin("PUT", `/admin/tenants/${t.id}/grants`, { remoteCode: true });
    expect(granted.body).toEqual({ tenantId: t.id, grants: { remoteCode: true } });
    pastCache();
    expect((await call("POST", "/api/v1/endpoints", { key: t.key, body })).status).toBe(200);
    expect((await call("GET", "/api/v1/limits", { key: t.key })).body.grants).toEqual({ remoteCode: true });
  });

  it("answers hostile input with 4xx naming the field, never 5xx", async () => {
    const t = await tenant("f");
    const ep = (await call("POST", "/api/v1/endpoints", { key: t.key, body: { name: "h", engine: echo, workersMax: 0 } })).body.id as string;
    const deep = `{"input":${"[".repeat(6000)}${"]".repeat(6000)}}`;
    for (const path of [`/v2/${ep}/run`, `/v2/${ep}/runsync?wait=1000`]) {
      const r = await call("POST", path, { key: t.key, raw: deep });
      expect(r.status, path).toBe(400);
      expect(r.body.issues[0].path).toBe("input");
    }
    const chat = await call("POST", `/v2/${ep}/openai/v1/chat/completions`, { key: t.key, raw: `{"messages":[{"role":"user","content":${"[".repeat(6000)}${"]".repeat(6000)}}]}` });
    expect(chat.status).toBe(400);
    expect(chat.body.error.message).toContain("nests deeper");

    const nulTenant = await admin("POST", "/admin/tenants", { name: "a\u0000b" });
    expect(nulTenant.status).toBe(400);
    expect(nulTenant.body.issues[0].path).toBe("name");
    expect((await admin("POST", "/admin/tenants", { name: "x\uD800" })).status).toBe(400);
    const nulKey = await call("POST", "/api/v1/keys", { key: t.key, body: { name: "k\u0000" } });
    expect(nulKey.status).toBe(400);
    expect(nulKey.body.issues[0].path).toBe("name");

    const nulEndpoint = await call("POST", "/api/v1/endpoints", { key: t.key, body: { name: "e\u0000", engine: echo } });
    expect(nulEndpoint.status).toBe(400);
    expect(nulEndpoint.body.issues[0].path).toBe("name");
    const nulServed = await call("POST", "/api/v1/endpoints", { key: t.key, body: { name: "e", engine: { kind: "openai", profile: "vllm", model: "https://huggingface.co/org/m", servedModelName: "m\u0000" } } });
    expect(nulServed.status).toBe(400);
    expect(nulServed.body.issues[0].path).toBe("engine.servedModelName");
    const nulModule = await call("POST", "/api/v1/endpoints", { key: t.key, body: { name: "e", engine: { kind: "handler", module: "/tmp/a\u0000.mjs" } } });
    expect(nulModule.status).toBe(400);

    for (const path of ["/api/v1/endpoints/a%00b", "/v2/a%00b/health", `/v2/${ep}/status/a%00b`, "/api/v1/jobs/a%00b", "/api/v1/endpoints/a%00b/workers", "/api/v1/endpoints/%ED%A0%80"]) {
      expect((await call("GET", path, { key: t.key })).status, path).toBe(404);
    }
    const q = await call("GET", "/api/v1/jobs?endpointId=a%00b", { key: t.key });
    expect(q.status).toBe(400);
    expect(q.body.issues[0].path).toBe("endpointId");
    const wrongType = await fetch(`${api.url}/v2/${ep}/run`, { method: "POST", headers: { authorization: `Bearer ${t.key}`, "content-type": "text/plain" }, body: '{"input":1}' });
    expect(wrongType.status).toBe(415);
  });
});
