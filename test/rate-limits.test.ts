import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApiServer, type RunningApi } from "../apps/api/api-server.ts";
import { RateLimiter } from "../apps/api/services/rate-limiter.ts";
import { RUNPOD_RATE_TABLE } from "../core/contracts/rate-limits.ts";
import { RedisKeys } from "../core/queue/keys.ts";
import { connectRedis, whenReady } from "../core/redis/connect.ts";
import { apiClient } from "./support/api-client.ts";
import { examplesDir } from "./support/hearth-stack.ts";
import { startOwnRedis } from "./support/own-redis.ts";
import { createTestDatabase, TEST_REDIS_URL, uniquePrefix } from "./support/services.ts";

const ADMIN = "rate-admin-token-0123456789";
const echo = { kind: "handler", module: join(examplesDir, "echo.mjs") };
// One request per 1000 s: nothing refills while a test runs, so counts are exact.
const SLOW = 0.001;

/** The API alone (no scheduler: jobs stay queued) with request-rate limits. */
describe("request-rate limits per tenant and per API key", () => {
  let api: RunningApi;
  let runpod: RunningApi;
  let drop: () => Promise<void>;
  let call: ReturnType<typeof apiClient>;
  let callRunpod: ReturnType<typeof apiClient>;
  const admin = (method: string, path: string, body?: unknown) => call(method, path, { key: ADMIN, ...(body !== undefined && { body }) });

  beforeAll(async () => {
    const db = await createTestDatabase();
    drop = db.drop;
    const base = { databaseUrl: db.url, redisUrl: TEST_REDIS_URL, handlerDirs: [examplesDir], port: 0, host: "127.0.0.1", adminToken: ADMIN };
    api = await startApiServer({ ...base, redisPrefix: uniquePrefix(), admission: { ratePreset: "none", queueCapacityMultiple: 0, queueCapacityFloor: 50 } });
    // The same database, another API with RunPod's table as the default (HEARTH_DEFAULT_RATE_LIMITS=runpod).
    // It also bounds queues at 2 × capacity, at least 3 jobs (HEARTH_QUEUE_CAPACITY_MULTIPLE=2, _FLOOR=3).
    runpod = await startApiServer({ ...base, redisPrefix: uniquePrefix(), admission: { ratePreset: "runpod", queueCapacityMultiple: 2, queueCapacityFloor: 3 } });
    call = apiClient(api.url);
    callRunpod = apiClient(runpod.url);
  });
  afterAll(async () => {
    await api?.close();
    await runpod?.close();
    await drop?.();
  });

  async function tenantWithEndpoint(name: string): Promise<{ id: string; key: string; ep: string }> {
    const t = await admin("POST", "/admin/tenants", { name });
    expect(t.status).toBe(200);
    const ep = await call("POST", "/api/v1/endpoints", { key: t.body.apiKey, body: { name: "ep", engine: echo, workersMax: 1 } });
    expect(ep.status).toBe(200);
    return { id: t.body.id, key: t.body.apiKey, ep: ep.body.id };
  }

  it("a concurrent burst admits exactly the burst and refuses the rest with Retry-After and X-RateLimit-*", async () => {
    const t = await tenantWithEndpoint("burst");
    const set = await admin("PUT", `/admin/tenants/${t.id}/limits`, { requestsPerSecond: SLOW, burst: 5 });
    expect(set.status).toBe(200);
    expect(set.body.rates).toEqual({ requestsPerSecond: SLOW, burst: 5 });

    const answers = await Promise.all(Array.from({ length: 20 }, () => call("POST", `/v2/${t.ep}/run`, { key: t.key, body: { input: { n: 1 } } })));
    const ok = answers.filter((a) => a.status === 200);
    const refused = answers.filter((a) => a.status === 429);
    expect(ok).toHaveLength(5);
    expect(refused).toHaveLength(15);
    // Admitted answers carry the limit and what was left after each (4..0, in whatever order they ran).
    expect(ok.map((a) => Number(a.headers.get("x-ratelimit-remaining"))).sort()).toEqual([0, 1, 2, 3, 4]);
    for (const a of ok) expect(a.headers.get("x-ratelimit-limit")).toBe("5");
    for (const a of refused) {
      expect(a.body.code).toBe("rate_limit_exceeded");
      expect(a.headers.get("x-ratelimit-limit")).toBe("5");
      expect(a.headers.get("x-ratelimit-remaining")).toBe("0");
      // One request regained every 1000 s; the bucket is full again after 5000 s.
      expect(a.headers.get("retry-after")).toBe("1000");
      expect(a.headers.get("x-ratelimit-reset")).toBe("5000");
    }
    // /health counts against the same bucket.
    expect((await call("GET", `/v2/${t.ep}/health`, { key: t.key })).status).toBe(429);
    // Each refusal counted once, by endpoint and limit.
    const metrics = await fetch(`${api.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN}` } }).then((r) => r.text());
    expect(metrics).toContain(`hearth_admission_refusals_total{endpoint="${t.ep}",limit="requests"} 16`);
  });

  it("a key's own limits apply under the tenant's; the tenant reads both at /api/v1/limits", async () => {
    const t = await tenantWithEndpoint("keys");
    const made = await call("POST", "/api/v1/keys", { key: t.key, body: { name: "ci", scope: "run", rateLimits: { requestsPerSecond: SLOW, burst: 2 } } });
    expect(made.status).toBe(200);
    expect(made.body.rateLimits).toEqual({ requestsPerSecond: SLOW, burst: 2 });
    const run = () => call("POST", `/v2/${t.ep}/run`, { key: made.body.key, body: { input: {} } });
    expect((await run()).status).toBe(200);
    expect((await run()).status).toBe(200);
    const third = await run();
    expect(third.status).toBe(429);
    expect(third.body.issues[0].path).toBe("requestsPerSecond");
    // The tenant's other key is not limited: the tenant has no limit of its own.
    expect((await call("POST", `/v2/${t.ep}/run`, { key: t.key, body: { input: {} } })).status).toBe(200);

    // The key reads its own limits beside the tenant's.
    const asKey = await call("GET", "/api/v1/limits", { key: made.body.key });
    expect(asKey.status).toBe(200);
    expect(asKey.body.rates.key).toEqual({ requestsPerSecond: SLOW, burst: 2 });
    const mine = await call("GET", "/api/v1/limits", { key: t.key });
    expect(mine.body.rates).toEqual({ source: "none", routes: Object.fromEntries(Object.keys(RUNPOD_RATE_TABLE).map((k) => [k, {}])), key: {} });

    // Lifting the key's limit takes effect at once (its cached principal is dropped).
    const lifted = await call("PUT", `/api/v1/keys/${made.body.id}/limits`, { key: t.key, body: { requestsPerSecond: null, burst: null } });
    expect(lifted.status).toBe(200);
    expect(lifted.body.rateLimits).toEqual({});
    expect((await run()).status).toBe(200);
  });

  it("refuses hostile limit values with 400 naming the field, and changes nothing", async () => {
    const t = await tenantWithEndpoint("hostile");
    const bad: unknown[] = [
      { requestsPerSecond: -1 },
      { requestsPerSecond: 0 },
      { requestsPerSecond: 0.0001 },
      { requestsPerSecond: 1e300 },
      { requestsPerSecond: "10" },
      { burst: 1.5 },
      { burst: 0 },
      { burst: 2 ** 53 },
      { tokensPerMinute: 1e11 },
      { tokensPerMinute: { $gt: 0 } },
      { tokensPerMinute: [1] },
      { tokensPerMinute: true },
      { requestsPerSecond: 1, "rate\u0000": 2 },
      { ["\ud800"]: 1 },
    ];
    for (const body of bad) {
      const r = await admin("PUT", `/admin/tenants/${t.id}/limits`, body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body.issues?.length ?? 0, JSON.stringify(body)).toBeGreaterThan(0);
    }
    const named = await admin("PUT", `/admin/tenants/${t.id}/limits`, { burst: -3 });
    expect(named.body.issues[0].path).toBe("burst");
    const deep = await call("PUT", `/admin/tenants/${t.id}/limits`, { key: ADMIN, raw: `{"burst":${"[".repeat(5000)}${"]".repeat(5000)}}` });
    expect(deep.status).toBe(400);
    const keyBad = await call("POST", "/api/v1/keys", { key: t.key, body: { rateLimits: { tokensPerMinute: -5 } } });
    expect(keyBad.status).toBe(400);
    expect((await admin("GET", `/admin/tenants/${t.id}/limits`)).body.rates).toEqual({});
  });

  it("HEARTH_DEFAULT_RATE_LIMITS=runpod gives tenants without their own RunPod's per-route table", async () => {
    const t = await tenantWithEndpoint("runpod");
    const mine = await callRunpod("GET", "/api/v1/limits", { key: t.key });
    expect(mine.body.rates.source).toBe("runpod");
    expect(mine.body.rates.routes.run).toEqual({ requestsPerSecond: 100, burst: 1000 });
    expect(mine.body.rates.routes.purge).toEqual({ requestsPerSecond: 0.2, burst: 2 });
    // /purge-queue: 2 per 10 s.
    const purge = () => callRunpod("POST", `/v2/${t.ep}/purge-queue`, { key: t.key });
    const first = await purge();
    expect(first.status).toBe(200);
    expect(first.headers.get("x-ratelimit-limit")).toBe("2");
    expect(first.headers.get("x-ratelimit-remaining")).toBe("1");
    expect((await purge()).status).toBe(200);
    const third = await purge();
    expect(third.status).toBe(429);
    // Short of one request at 0.2 a second: up to 5 s.
    expect(Number(third.headers.get("retry-after"))).toBeGreaterThanOrEqual(4);
    expect(Number(third.headers.get("retry-after"))).toBeLessThanOrEqual(5);
    // Each route class has its own bucket: /run is untouched.
    const run = await callRunpod("POST", `/v2/${t.ep}/run`, { key: t.key, body: { input: {} } });
    expect(run.status).toBe(200);
    expect(run.headers.get("x-ratelimit-limit")).toBe("1000");
    // A tenant's own limits replace the preset.
    await admin("PUT", `/admin/tenants/${t.id}/limits`, { requestsPerSecond: 50 });
    expect((await admin("GET", `/admin/tenants/${t.id}/limits`)).body).toMatchObject({ rates: { requestsPerSecond: 50 }, rateDefault: "none" });
    // The other API replica's policy cache holds the old rates up to 5 s (TenantPolicy's cacheMs).
    const own = await callRunpod("GET", "/api/v1/limits", { key: t.key });
    expect(["runpod", "tenant"]).toContain(own.body.rates.source);
  });

  it("back-pressure: a queue past its multiple of capacity answers new jobs 429 with Retry-After", async () => {
    const t = await tenantWithEndpoint("queue");
    // workersMax 2 × concurrency 1 (a handler) × 2 = 4 jobs.
    expect((await call("PATCH", `/api/v1/endpoints/${t.ep}`, { key: t.key, body: { workersMax: 2 } })).status).toBe(200);
    const run = () => callRunpod("POST", `/v2/${t.ep}/run`, { key: t.key, body: { input: {} } });
    for (let i = 0; i < 4; i++) expect((await run()).status).toBe(200);
    // The depth is sampled every 250 ms per endpoint: past a sample, the fifth sees four queued.
    await new Promise((r) => setTimeout(r, 300));
    const full = await run();
    expect(full.status).toBe(429);
    expect(full.body.code).toBe("queue_full");
    expect(full.body.error).toContain("workersMax 2 × concurrency 1");
    expect(full.headers.get("retry-after")).toBe("1");
  });

  it("without limits, answers carry no X-RateLimit headers", async () => {
    const t = await tenantWithEndpoint("free");
    const r = await call("POST", `/v2/${t.ep}/run`, { key: t.key, body: { input: {} } });
    expect(r.status).toBe(200);
    expect(r.headers.get("x-ratelimit-limit")).toBeNull();
  });
});

describe("rate limits while Redis is away", () => {
  it("fail open: the request is admitted unchecked (and a warning logged)", async () => {
    const own = await startOwnRedis();
    const redis = connectRedis(own.url, { enableOfflineQueue: false, maxRetriesPerRequest: 1 });
    redis.on("error", () => {});
    await whenReady(redis, own.url);
    const lines: string[] = [];
    const limiter = new RateLimiter({ redis, keys: new RedisKeys(uniquePrefix()), log: (l) => void lines.push(String(l.msg)) });
    const req = { endpointId: "e", tenantId: "t", keyId: "k", routeClass: "run" as const, tenantRates: { requestsPerSecond: SLOW, burst: 1 } };
    try {
      expect(await limiter.admit(req)).toMatchObject({ "X-RateLimit-Remaining": "0" });
      await expect(limiter.admit(req)).rejects.toMatchObject({ status: 429 });
      await own.kill();
      expect(await limiter.admit(req)).toEqual({});
      expect(lines).toContain("rate limits not checked: Redis unreachable (failing open)");
    } finally {
      redis.disconnect();
      await own.destroy();
    }
  });
});
