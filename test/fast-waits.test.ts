import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startApiServer } from "../apps/api/api-server.ts";
import { parseLogEntry } from "../core/log/log-entry.ts";
import { RedisKeys } from "../core/queue/keys.ts";
import { apiClient } from "./support/api-client.ts";
import { examplesDir, fixturesDir, startStack, STACK_ADMIN_TOKEN, type Stack } from "./support/hearth-stack.ts";
import { spawnScheduler } from "./support/scheduler-process.ts";
import { sharedFixture } from "./support/shared-fixture.ts";
import { TEST_REDIS_URL, waitFor } from "./support/services.ts";

const crash = { kind: "handler", module: join(fixturesDir, "crash-on-load.mjs") };
const echo = { kind: "handler", module: join(examplesDir, "echo.mjs") };
const versioned = (version: string) => ({ kind: "handler", module: join(fixturesDir, "spec-version.mjs"), env: { SPEC_VERSION: version } });
type Call = ReturnType<typeof apiClient>;

async function run(call: Call, key: string, ep: string, input: unknown): Promise<string> {
  const r = await call("POST", `/v2/${ep}/run`, { key, body: { input } });
  if (r.status !== 200) throw new Error(`run: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.id as string;
}
const status = async (call: Call, key: string, ep: string, id: string) => (await call("GET", `/v2/${ep}/status/${id}`, { key })).body;
const finished = (call: Call, key: string, ep: string, id: string, timeoutMs = 90_000) =>
  waitFor(async () => {
    const s = await status(call, key, ep, id);
    return ["COMPLETED", "FAILED"].includes(s.status) ? s : undefined;
  }, timeoutMs, 100);

/** The `requested` entries of the endpoint's log: how many workers the scheduler asked for. */
async function workersRequested(stack: { redis: Stack["redis"] }, log: string): Promise<number> {
  const entries = (await stack.redis.xrange(log, "-", "+")) as [string, string[]][];
  return entries.map(([id, f]) => parseLogEntry(id, f)).filter((e) => e.kind === "worker" && e.p.state === "requested").length;
}

describe("why a job waits, the start breaker, rolling a changed engine and cold-start phases", () => {
  let stack: Stack;
  let key: string;
  const live: string[] = [];

  beforeAll(async () => {
    stack = await startStack({ hostWorkerCap: 2, tickMs: 200, drainTimeoutMs: 30_000 });
    key = await stack.tenant("waits");
  });
  afterEach(async () => {
    for (const ep of live.splice(0)) await stack.call("DELETE", `/api/v1/endpoints/${ep}`, { key });
    await waitFor(() => stack.provider.list().length === 0, 60_000);
  });
  afterAll(async () => {
    await stack?.close();
  });
  const endpoint = async (body: Record<string, unknown>) => {
    const id = await stack.endpoint(key, body);
    live.push(id);
    return id;
  };

  it("shows crash_loop with the last start error in /status while starts fail, before the breaker opens", async () => {
    const ep = await endpoint({ engine: crash, workersMax: 1, maxFailedStarts: 50 });
    const id = await run(stack.call, key, ep, {});
    const s = await waitFor(async () => {
      const v = await status(stack.call, key, ep, id);
      return v.waitReason === "crash_loop" ? v : undefined;
    }, 60_000, 200);
    expect(s.status).toBe("IN_QUEUE");
    expect(s.waitDetail.open).toBe(false);
    expect(s.waitDetail.failedStarts).toBeGreaterThanOrEqual(1);
    expect(s.waitDetail.error).toContain("crashes at import");
    // /status-sync whose wait ends first says the same.
    const sync = (await stack.call("GET", `/v2/${ep}/status-sync/${id}?wait=1000`, { key })).body;
    expect(sync).toMatchObject({ status: "IN_QUEUE", waitReason: "crash_loop" });
  });

  it("trips after maxFailedStarts (3) failed starts: queued and later jobs FAIL with the reason, no more starts; /reset closes it and the fixed endpoint serves", async () => {
    const ep = await endpoint({ engine: crash, workersMax: 1 });
    expect((await stack.call("GET", `/api/v1/endpoints/${ep}`, { key })).body.maxFailedStarts).toBe(3);
    const jobs = [await run(stack.call, key, ep, { n: 1 }), await run(stack.call, key, ep, { n: 2 })];
    for (const id of jobs) {
      const s = await finished(stack.call, key, ep, id);
      expect(s.status).toBe("FAILED");
      expect(s.error).toMatch(/^crash_loop: 3 failed worker starts in a row \(last: .*crashes at import/);
    }
    const got = (await stack.call("GET", `/api/v1/endpoints/${ep}`, { key })).body;
    expect(got.waitReason).toBe("crash_loop");
    expect(got.startBreaker).toMatchObject({ open: true, failedStarts: 3 });
    expect(got.startBreaker.lastError).toContain("crashes at import");
    const health = (await stack.call("GET", `/v2/${ep}/health`, { key })).body;
    expect(health.waitReason).toBe("crash_loop");
    expect(health.startBreaker.open).toBe(true);

    // Accepted, then failed by the scheduler at its next step, with no worker started for it.
    const late = await run(stack.call, key, ep, { n: 3 });
    expect((await finished(stack.call, key, ep, late)).error).toMatch(/^crash_loop: /);
    await stack.scheduler.tick();
    await stack.scheduler.tick();
    expect(await workersRequested(stack, new RedisKeys(stack.redisPrefix).log(ep))).toBe(3);
    // Each failure counted once.
    expect((await stack.call("GET", `/v2/${ep}/health`, { key })).body.jobs.failed).toBe(3);

    const reset = await stack.call("POST", `/api/v1/endpoints/${ep}/reset`, { key });
    expect(reset.status).toBe(200);
    const audit = await stack.call("GET", `/api/v1/audit?endpointId=${ep}&action=endpoint.reset`, { key });
    expect(audit.body.items).toHaveLength(1);
    expect(audit.body.items[0].detail).toMatchObject({ wasOpen: true, failedStarts: 3 });
    expect(reset.body.startBreaker).toEqual({ open: false, failedStarts: 0, lastError: null, openedAt: null });
    expect((await stack.call("GET", `/v2/${ep}/health`, { key })).body.startBreaker.open).toBe(false);
    expect((await stack.call("PATCH", `/api/v1/endpoints/${ep}`, { key, body: { engine: echo } })).status).toBe(200);
    const ok = await stack.call("POST", `/v2/${ep}/runsync`, { key, body: { input: { fixed: true } } });
    expect(ok.body.status).toBe("COMPLETED");
  });

  it("refuses a bad maxFailedStarts with 400 naming it", async () => {
    for (const bad of [0, -1, 1.5, "3", 10_000, null]) {
      const r = await stack.call("POST", "/api/v1/endpoints", { key, body: { name: "bad", engine: echo, maxFailedStarts: bad } });
      expect(r.status, JSON.stringify(bad)).toBe(400);
      expect(JSON.stringify(r.body)).toContain("maxFailedStarts");
    }
    expect((await stack.call("POST", `/api/v1/endpoints/ep-nope/reset`, { key })).status).toBe(404);
    const ep = await endpoint({ engine: echo });
    expect((await stack.call("PATCH", `/api/v1/endpoints/${ep}`, { key, body: { maxFailedStarts: 0 } })).status).toBe(400);
    expect((await stack.call("PATCH", `/api/v1/endpoints/${ep}`, { key, body: { maxFailedStarts: 7 } })).body.maxFailedStarts).toBe(7);
    expect((await stack.call("GET", `/api/v1/endpoints/${ep}`, { key })).body).toMatchObject({ maxFailedStarts: 7, startBreaker: { open: false, failedStarts: 0 } });
  });

  it("shows no_capacity in /status while the host's cap is taken", async () => {
    const full = await endpoint({ engine: echo, workersMin: 2, workersMax: 2 });
    await waitFor(async () => (await stack.call("GET", `/v2/${full}/health`, { key })).body.workers.idle === 2, 60_000, 100);
    const ep = await endpoint({ engine: echo, workersMax: 1 });
    const id = await run(stack.call, key, ep, { waits: true });
    const s = await waitFor(async () => {
      const v = await status(stack.call, key, ep, id);
      return v.waitReason === "no_capacity" ? v : undefined;
    }, 30_000, 200);
    expect(s.waitDetail).toEqual({ throttled: 1 });
    expect((await stack.call("GET", `/v2/${ep}/health`, { key })).body.waitReason).toBe("no_capacity");
    await stack.call("DELETE", `/api/v1/endpoints/${full}`, { key });
    expect((await finished(stack.call, key, ep, id)).status).toBe("COMPLETED");
  });

  it("a PATCH of the engine replaces the worker: the job after it runs on the new spec, the one in flight finishes on the old, and both sessions show their phases", async () => {
    const ep = await endpoint({ engine: versioned("1"), workersMin: 1, workersMax: 2 });
    await waitFor(async () => (await stack.call("GET", `/v2/${ep}/health`, { key })).body.workers.idle === 1, 60_000, 100);
    const inFlight = await run(stack.call, key, ep, { ms: 8000 });
    await waitFor(async () => ((await status(stack.call, key, ep, inFlight)).status === "IN_PROGRESS" ? true : undefined), 30_000, 50);
    expect((await stack.call("PATCH", `/api/v1/endpoints/${ep}`, { key, body: { engine: versioned("2") } })).status).toBe(200);
    const after = await run(stack.call, key, ep, { ms: 0 });

    const b = await finished(stack.call, key, ep, after);
    expect(b).toMatchObject({ status: "COMPLETED", output: { version: "2" } });
    const a = await finished(stack.call, key, ep, inFlight);
    expect(a).toMatchObject({ status: "COMPLETED", output: { version: "1" } });
    expect(a.workerId).not.toBe(b.workerId);

    const sessions = await waitFor(async () => {
      const items = (await stack.call("GET", `/api/v1/endpoints/${ep}/workers`, { key })).body.items as Record<string, any>[];
      const old = items.find((s) => s.id === a.workerId);
      const next = items.find((s) => s.id === b.workerId);
      return old?.endedAt && next?.coldStart?.firstJobMs !== undefined ? { old, next } : undefined;
    }, 60_000, 200);
    // Asked to drain for the change (its exit's own reason is the signal that asked).
    expect(sessions.old.transitions).toContainEqual(expect.objectContaining({ state: "draining", reason: "engine spec changed" }));
    expect(sessions.old.specHash).toMatch(/^[0-9a-f]{16}$/);
    expect(sessions.next.specHash).toMatch(/^[0-9a-f]{16}$/);
    expect(sessions.next.specHash).not.toBe(sessions.old.specHash);
    for (const s of [sessions.old, sessions.next]) {
      expect(s.coldStart.kind).toBe("cold");
      for (const phase of ["provisionMs", "processStartMs", "engineLoadMs", "firstJobMs"]) {
        expect(Number.isInteger(s.coldStart[phase]), `${phase} of ${JSON.stringify(s.coldStart)}`).toBe(true);
        expect(s.coldStart[phase]).toBeGreaterThanOrEqual(0);
      }
      // A handler fetches no weights: no fetch phase is claimed.
      expect(s.coldStart.weightsFetchMs).toBeUndefined();
    }
  });
});

describe("the start breaker across a scheduler SIGKILL", () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  const defer = (fn: () => Promise<unknown>) => cleanups.push(fn);
  afterEach(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn().catch((err: unknown) => console.error("cleanup failed:", err));
  });

  it("stays open: the restarted scheduler starts no worker and fails new jobs with the reason", async () => {
    const { db, prefix, keys, redis } = await sharedFixture(defer);
    const handlerDirs = [examplesDir, fixturesDir];
    const api = await startApiServer({ databaseUrl: db.url, redisUrl: TEST_REDIS_URL, redisPrefix: prefix, handlerDirs, port: 0, host: "127.0.0.1", adminToken: STACK_ADMIN_TOKEN });
    defer(() => api.close());
    const options = { databaseUrl: db.url, redisUrl: TEST_REDIS_URL, redisPrefix: prefix, handlerDirs };
    const first = await spawnScheduler(options);
    defer(() => first.kill());
    const call = apiClient(api.url);
    const tenant = await call("POST", "/admin/tenants", { key: STACK_ADMIN_TOKEN, body: { name: "breaker-kill", billingMode: "meter" } });
    const key = tenant.body.apiKey as string;
    const created = await call("POST", "/api/v1/endpoints", { key, body: { name: "crash", engine: crash, workersMax: 1, maxFailedStarts: 2 } });
    expect(created.status).toBe(200);
    const ep = created.body.id as string;

    const firstJob = await run(call, key, ep, {});
    expect((await finished(call, key, ep, firstJob)).error).toMatch(/^crash_loop: 2 failed worker starts in a row/);
    await first.kill("SIGKILL");
    const second = await spawnScheduler(options);
    defer(() => second.kill("SIGTERM"));

    const later = await run(call, key, ep, {});
    // The second scheduler acts once the killed one's leader lock lapses.
    expect((await finished(call, key, ep, later, 60_000)).error).toMatch(/^crash_loop: 2 failed worker starts in a row/);
    expect(await workersRequested({ redis }, keys.log(ep))).toBe(2);
    expect((await call("GET", `/api/v1/endpoints/${ep}`, { key })).body.startBreaker.open).toBe(true);
  });
});
