import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { Redis } from "ioredis";
import type { Sql } from "postgres";
import { startApiServer } from "../apps/api/api-server.ts";
import { ControlPlane } from "../apps/control/control-plane.ts";
import { DEFAULT_PRICES, priceAt } from "../core/billing/price-table.ts";
import { compareStreamIds } from "../core/log/log-entry.ts";
import { RedisKeys } from "../core/queue/keys.ts";
import { redisNowMs } from "../core/redis/redis-clock.ts";
import { apiClient } from "./support/api-client.ts";
import { sharedFixture } from "./support/shared-fixture.ts";
import { billedSeconds, ledgerOf, minuteOf, minuteRows, sessionSpan, settledLedger, watchEnd, workerEvents, type LedgerRow, type SessionSpan } from "./support/billing-probe.ts";
import { pidFromHeartbeat } from "./support/engine-processes.ts";
import { spawnApi, spawnControl } from "./support/entry-process.ts";
import { lastLogId, readLog } from "./support/event-log-probe.ts";
import { examplesDir, fixturesDir, STACK_ADMIN_TOKEN, startStack } from "./support/hearth-stack.ts";
import { spawnScheduler } from "./support/scheduler-process.ts";
import { TEST_REDIS_URL, waitFor } from "./support/services.ts";

/**
 * Billing under faults, with real worker processes (issue 8's fault proof): a worker SIGKILLed, the
 * scheduler SIGKILLed (its worker left to exit on its own, or killed with it and so lost), the ledger
 * consumer (the control plane) killed and restarted, the API killed and restarted, each mid-session. Expectations are read from the event log (Redis' clock) and
 * compared with the ledger to the second; nothing is asserted about how fast anything runs.
 */

const ADMIN = STACK_ADMIN_TOKEN;
/** HEARTH_HEARTBEAT_MS every scheduler here hands its workers (its default). */
const HEARTBEAT_MS = 1000;
const MINUTE_MS = 60_000;
const echo = { kind: "handler", module: join(examplesDir, "echo.mjs") };
const sleeper = { kind: "handler", module: join(fixturesDir, "sleep.mjs") };
type Call = ReturnType<typeof apiClient>;

// Undone newest first after each test, so a database is dropped only after its connections closed.
const cleanups: (() => Promise<unknown>)[] = [];
const defer = (fn: () => Promise<unknown>) => cleanups.push(fn);
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn().catch((err: unknown) => console.error("cleanup failed:", err));
});

/** Numbers the brief asks for, printed once per test so a run's log carries them. */
const report = (what: string, facts: Record<string, unknown>) => console.log(`[billing-faults] ${what} ${JSON.stringify(facts)}`);

async function newTenant(call: Call, name: string): Promise<string> {
  // Metered: the tenant is refused nothing whatever HEARTH_BILLING_MODE the API runs with.
  const r = await call("POST", "/admin/tenants", { key: ADMIN, body: { name, billingMode: "meter" } });
  if (r.status !== 200) throw new Error(`tenant: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.apiKey as string;
}

async function newEndpoint(call: Call, key: string, body: Record<string, unknown>): Promise<string> {
  const r = await call("POST", "/api/v1/endpoints", { key, body: { name: "billing-faults", workersMin: 1, workersMax: 1, ...body } });
  if (r.status !== 200) throw new Error(`endpoint: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.id as string;
}

/**
 * What the scheduler-kill tests share: the API and the ledger consumer in this process (the consumer
 * passing over quiet endpoints every 500 ms: the grace ends on a quiet log), a scheduler process to
 * kill, and a tenant's sleeper endpoint with its one worker ready.
 */
async function schedulerRig(tenant: string) {
  const { db, prefix, keys, redis, sql } = await sharedFixture(defer);
  const handlerDirs = [examplesDir, fixturesDir];
  const api = await startApiServer({ databaseUrl: db.url, redisUrl: TEST_REDIS_URL, redisPrefix: prefix, handlerDirs, port: 0, host: "127.0.0.1", adminToken: ADMIN });
  defer(() => api.close());
  const control = new ControlPlane({ redis, sql, keys, log: () => {}, blockMs: 100, advanceMs: 500 });
  control.start();
  defer(() => control.stop());
  const schedulerOptions = { databaseUrl: db.url, redisUrl: TEST_REDIS_URL, redisPrefix: prefix, handlerDirs };
  const first = await spawnScheduler(schedulerOptions);
  defer(() => first.kill());
  const call = apiClient(api.url);
  const key = await newTenant(call, tenant);
  const ep = await newEndpoint(call, key, { engine: sleeper });
  const worker = await readyWorker(redis, keys, ep);
  return { keys, redis, sql, schedulerOptions, first, call, key, ep, worker, pid: await pidFromHeartbeat(redis, keys, ep, worker) };
}

async function runsync(call: Call, key: string, endpointId: string, input: unknown): Promise<string> {
  const r = await call("POST", `/v2/${endpointId}/runsync`, { key, body: { input } });
  if (r.status !== 200 || r.body?.status !== "COMPLETED") throw new Error(`runsync: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.id as string;
}

/**
 * What every settled session's ledger must show: each key once and its own, one settlement, billed
 * seconds = ceil of its length, money = seconds × the cpu price, and minute charges that tile the
 * session without gaps or overlaps: through minute n they add up to the whole seconds elapsed at its
 * end, (n+1)·60 s, and none is for a minute at or after the session began to close.
 */
function expectSettledLedger(rows: readonly LedgerRow[], workerId: string, span: SessionSpan): void {
  expect(new Set(rows.map((r) => r.key)).size).toBe(rows.length);
  for (const r of rows) expect(r.key.startsWith(`session:${workerId}:`), r.key).toBe(true);
  const settles = rows.filter((r) => r.key === `session:${workerId}:settle`);
  expect(settles).toHaveLength(1);
  expect(settles[0]!.at).toBe(span.end);
  expect(billedSeconds(rows), JSON.stringify({ span, rows: rows.map((r) => [r.key, r.seconds]) })).toBe(span.expectedSeconds);
  expect(rows.reduce((s, r) => s - r.amount_micros, 0)).toBe(span.expectedSeconds * priceAt(DEFAULT_PRICES, "cpu", span.start)!);
  const minutes = minuteRows(rows);
  let through = 0;
  minutes.forEach((r, i) => {
    const n = minuteOf(r.key);
    if (i > 0) expect(n, "minute charges are consecutive").toBe(minuteOf(minutes[i - 1]!.key) + 1);
    expect(r.at).toBe(n * MINUTE_MS);
    expect(n * MINUTE_MS).toBeGreaterThanOrEqual(Math.floor(span.start / MINUTE_MS) * MINUTE_MS);
    expect((n + 1) * MINUTE_MS).toBeLessThanOrEqual(span.closingLoggedAt);
    through += r.seconds;
    expect(through, `seconds charged through minute ${n}`).toBe(Math.floor(((n + 1) * MINUTE_MS - span.start - span.weightsFetchMs) / 1000));
  });
  expect(rows.length).toBe(minutes.length + 1);
}

/** The one worker whose session has a `requested` entry and reached `idle`, other than `except`. */
async function readyWorker(redis: Redis, keys: RedisKeys, endpointId: string, except: readonly string[] = [], timeoutMs = 60_000): Promise<string> {
  return waitFor(async () => {
    for (const [workerId, events] of await workerEvents(redis, keys, endpointId)) {
      if (except.includes(workerId)) continue;
      if (events.some((e) => e.p.state === "requested") && events.some((e) => e.p.state === "idle")) return workerId;
    }
    return undefined;
  }, timeoutMs, 100);
}

async function jobWorker(sql: Sql, jobId: string): Promise<string> {
  return waitFor(async () => {
    const [row] = await sql<{ worker_id: string | null; status: string }[]>`select worker_id, status from jobs where id = ${jobId}`;
    return row?.status === "COMPLETED" ? (row.worker_id ?? undefined) : undefined;
  }, 30_000, 100);
}

describe("billing under faults", () => {
  it("SIGKILL of a worker: billed to the scheduler's exit to the second, settled once, its replacement billed on its own", async () => {
    const stack = await startStack();
    defer(() => stack.close());
    const keys = new RedisKeys(stack.redisPrefix);
    const key = await newTenant(stack.call, "sigkill-worker");
    const ep = await newEndpoint(stack.call, key, { engine: echo });
    const victim = await readyWorker(stack.redis, keys, ep);
    expect(await jobWorker(stack.sql, await runsync(stack.call, key, ep, { before: "kill" }))).toBe(victim);

    const pid = await pidFromHeartbeat(stack.redis, keys, ep, victim);
    const watching = watchEnd(stack.redis, pid, 30_000);
    process.kill(pid, "SIGKILL");
    const trueEnd = await watching;

    const exit = await waitFor(async () => (await workerEvents(stack.redis, keys, ep)).get(victim)?.find((e) => e.p.state === "exited" && e.p.by === "scheduler"), 30_000, 100);
    expect(exit.p.exitCode).toBe(137);
    const victimRows = await settledLedger(stack.sql, victim, 30_000);
    const victimEvents = (await workerEvents(stack.redis, keys, ep)).get(victim)!;
    const span = sessionSpan(victimEvents, await redisNowMs(stack.redis))!;
    expect(span.endedBy).toBe("scheduler exit");
    expect(span.end).toBe(exit.ms);
    // The provider saw the process gone, so the billed end is not before the true end.
    expect(span.end).toBeGreaterThanOrEqual(trueEnd.lastAliveMs);
    expectSettledLedger(victimRows, victim, span);

    // The scheduler replaces it: a session of its own, doing the endpoint's work from now on.
    const replacement = await readyWorker(stack.redis, keys, ep, [victim]);
    expect(await jobWorker(stack.sql, await runsync(stack.call, key, ep, { after: "kill" }))).toBe(replacement);
    expect((await stack.call("DELETE", `/api/v1/endpoints/${ep}`, { key })).status).toBe(200);
    const replacementRows = await settledLedger(stack.sql, replacement, 60_000);
    const replacementSpan = sessionSpan((await workerEvents(stack.redis, keys, ep)).get(replacement)!, await redisNowMs(stack.redis))!;
    expect(replacementSpan.endedBy).toBe("scheduler exit");
    expectSettledLedger(replacementRows, replacement, replacementSpan);
    // The victim's charges did not move after its settlement, and the endpoint was billed for these two sessions only.
    expect(await ledgerOf(stack.sql, victim)).toEqual(victimRows);
    const onEndpoint = await stack.sql<{ worker_id: string; seconds: number }[]>`select worker_id, seconds from ledger_entries where endpoint_id = ${ep}`;
    expect(new Set(onEndpoint.map((r) => r.worker_id))).toEqual(new Set([victim, replacement]));
    expect(onEndpoint.reduce((s, r) => s + r.seconds, 0)).toBe(span.expectedSeconds + replacementSpan.expectedSeconds);
    report("worker SIGKILL", {
      victim: { lengthMs: span.end - span.start, billedSeconds: billedSeconds(victimRows), expectedSeconds: span.expectedSeconds, exitCode: exit.p.exitCode, exitLoggedMsAfterTrueEnd: [span.end - trueEnd.goneByMs, span.end - trueEnd.lastAliveMs], keys: victimRows.map((r) => r.key) },
      replacement: { lengthMs: replacementSpan.end - replacementSpan.start, billedSeconds: billedSeconds(replacementRows), expectedSeconds: replacementSpan.expectedSeconds },
    });
  }, 120_000);

  it("SIGKILL of the scheduler mid-job: an observed exit is billed ceil(length) exactly; a lost worker at most one heartbeat past its true end", async () => {
    const { keys, redis, sql, schedulerOptions, first, call, key, ep, worker, pid } = await schedulerRig("sigkill-scheduler");

    // A job in flight when the scheduler dies.
    const job = await call("POST", `/v2/${ep}/run`, { key, body: { input: { ms: 3000 } } });
    expect(job.status).toBe(200);
    const jobId = job.body.id as string;
    await waitFor(async () => (await readLog(redis, keys.log(ep))).some((e) => e.event === "active" && e.fields.get("jobId") === jobId), 30_000, 50);

    const watching = watchEnd(redis, pid, 60_000);
    await first.kill("SIGKILL");
    const second = await spawnScheduler(schedulerOptions);
    defer(() => second.kill("SIGTERM"));
    const trueEnd = await watching;

    const rows = await settledLedger(sql, worker, 120_000);
    const events = (await workerEvents(redis, keys, ep)).get(worker)!;
    const span = sessionSpan(events, await redisNowMs(redis));
    expect(span, JSON.stringify(events)).toBeDefined();
    const billed = billedSeconds(rows);
    const facts = {
      transitions: events.map((e) => `${e.p.state}${e.p.by ? ` by ${e.p.by}` : ""}${e.p.reason ? ` (${e.p.reason})` : ""}@${e.ms}`),
      endedBy: span!.endedBy,
      start: span!.start,
      end: span!.end,
      trueEnd,
      billedSeconds: billed,
      expectedSeconds: span!.expectedSeconds,
      billedEndMsPastTrueEnd: span!.start + span!.weightsFetchMs + billed * 1000 - trueEnd.goneByMs,
      job: (await sql<{ status: string }[]>`select status from jobs where id = ${jobId}`)[0]?.status,
    };
    report("scheduler SIGKILL", facts);
    if (span!.endedBy === "lost") {
      // Billed to its last heartbeat: never more than one heartbeat interval past the process's true end.
      expect(billed, JSON.stringify(facts)).toBe(span!.expectedSeconds);
      expect(span!.start + span!.weightsFetchMs + billed * 1000, JSON.stringify(facts)).toBeLessThanOrEqual(trueEnd.goneByMs + HEARTBEAT_MS);
    } else {
      // An observed exit: the worker's own (no scheduler of ours saw the process end) or a scheduler's.
      expectSettledLedger(rows, worker, span!);
      expect(span!.end).toBeLessThanOrEqual(trueEnd.goneByMs + HEARTBEAT_MS);
    }

    // The restarted scheduler runs a session of its own; stopping it (and it draining that one) adds nothing to the first.
    const successor = await readyWorker(redis, keys, ep, [worker]);
    await second.kill("SIGTERM");
    expect((await second.exited).code).toBe(0);
    const successorRows = await settledLedger(sql, successor, 60_000);
    expectSettledLedger(successorRows, successor, sessionSpan((await workerEvents(redis, keys, ep)).get(successor)!, await redisNowMs(redis))!);
    expect(await ledgerOf(sql, worker)).toEqual(rows);
    expect(events.filter((e) => e.p.state === "requested")).toHaveLength(1);
  }, 180_000);

  it("SIGKILL of the scheduler, then of its worker mid-job (the host dies): lost, billed to its last heartbeat, at most one heartbeat past the true end", async () => {
    const { keys, redis, sql, schedulerOptions, first, call, key, ep, worker, pid } = await schedulerRig("host-dies");
    // A job it must finish before it exits on its own: it is still there (running or draining) when it is killed.
    const job = await call("POST", `/v2/${ep}/run`, { key, body: { input: { ms: 4000 } } });
    expect(job.status).toBe(200);
    await waitFor(async () => (await readLog(redis, keys.log(ep))).some((e) => e.event === "active" && e.fields.get("jobId") === job.body.id), 30_000, 50);

    const watching = watchEnd(redis, pid, 30_000);
    await first.kill("SIGKILL");
    process.kill(pid, "SIGKILL");
    const trueEnd = await watching;
    // Its last heartbeat as Redis received it, before anyone declares it lost (which removes it).
    const lastSeen = Number(await redis.hget(keys.workersSeen(ep), worker));
    const second = await spawnScheduler(schedulerOptions);
    defer(() => second.kill("SIGTERM"));

    const rows = await settledLedger(sql, worker, 60_000);
    const events = (await workerEvents(redis, keys, ep)).get(worker)!;
    const lost = events.find((e) => e.p.state === "lost");
    const span = sessionSpan(events, await redisNowMs(redis))!;
    const billed = billedSeconds(rows);
    const facts = {
      transitions: events.map((e) => `${e.p.state}${e.p.by ? ` by ${e.p.by}` : ""}${e.p.reason ? ` (${e.p.reason})` : ""}@${e.ms}${e.p.at ? ` at ${e.p.at}` : ""}`),
      lastSeen,
      trueEnd,
      billedSeconds: billed,
      expectedSeconds: span.expectedSeconds,
      billedEndMsPastTrueEnd: span.start + span.weightsFetchMs + billed * 1000 - trueEnd.goneByMs,
    };
    report("scheduler and worker SIGKILL", facts);
    expect(span.endedBy, JSON.stringify(facts)).toBe("lost");
    expect(lost!.p.at).toBe(lastSeen);
    expect(span.end).toBe(lastSeen);
    // A heartbeat is received while the process runs.
    expect(lastSeen).toBeLessThanOrEqual(trueEnd.goneByMs);
    expect(events.filter((e) => e.p.state === "exited")).toEqual([]);
    expectSettledLedger(rows, worker, span);
    expect(span.start + span.weightsFetchMs + billed * 1000, JSON.stringify(facts)).toBeLessThanOrEqual(trueEnd.goneByMs + HEARTBEAT_MS);
  }, 120_000);

  it("kill -9 of the ledger consumer mid-session, across a minute boundary, then a restart: every minute charged once, the total ceil(length) exactly", async () => {
    const stack = await startStack({ control: false });
    defer(() => stack.close());
    const keys = new RedisKeys(stack.redisPrefix);
    const controlOptions = { databaseUrl: stack.databaseUrl, redisUrl: stack.redisUrl, redisPrefix: stack.redisPrefix };
    const first = await spawnControl(controlOptions);
    defer(() => first.kill());
    const key = await newTenant(stack.call, "control-restart");
    const ep = await newEndpoint(stack.call, key, { engine: echo });
    const worker = await readyWorker(stack.redis, keys, ep);

    // Charged per minute while it runs: the first consumer writes the minute that ends at the next UTC boundary.
    const atKill = await waitFor(async () => {
      const rows = await ledgerOf(stack.sql, worker);
      return minuteRows(rows).length > 0 ? rows : undefined;
    }, 150_000, 50);
    await first.kill("SIGKILL");
    expect(atKill.some((r) => r.key.endsWith(":settle"))).toBe(false);

    // While no consumer runs, the session goes on working and its log grows.
    await runsync(stack.call, key, ep, { while: "consumer down" });
    const second = await spawnControl(controlOptions);
    defer(() => second.kill());
    const caughtUpTo = (await lastLogId(stack.redis, keys.log(ep)))!;
    await waitFor(async () => {
      const [row] = await stack.sql<{ last_id: string }[]>`select last_id from log_cursors where consumer = 'billing' and endpoint_id = ${ep}`;
      return row !== undefined && compareStreamIds(row.last_id, caughtUpTo) >= 0;
    }, 60_000, 100);

    // The session ends under the restarted consumer, which settles it.
    expect((await stack.call("DELETE", `/api/v1/endpoints/${ep}`, { key })).status).toBe(200);
    const rows = await settledLedger(stack.sql, worker, 60_000);
    const span = sessionSpan((await workerEvents(stack.redis, keys, ep)).get(worker)!, await redisNowMs(stack.redis))!;
    expect(span.endedBy).toBe("scheduler exit");
    expectSettledLedger(rows, worker, span);
    // What the first consumer wrote stands as it was: nothing rewritten, nothing written twice.
    for (const r of atKill) expect(rows.find((x) => x.key === r.key)).toEqual(r);
    const [session] = await stack.sql<{ settled_ms: string | null; error: string | null }[]>`select round(extract(epoch from settled_at) * 1000)::bigint::text as settled_ms, error from billing_sessions where worker_id = ${worker}`;
    expect(Number(session?.settled_ms)).toBe(span.end);
    expect(session?.error).toBeNull();
    const [dead] = await stack.sql<{ n: number }[]>`select count(*)::int as n from log_dead_letters where consumer = 'billing'`;
    expect(dead!.n).toBe(0);
    report("ledger consumer kill -9", {
      lengthMs: span.end - span.start,
      billedSeconds: billedSeconds(rows),
      expectedSeconds: span.expectedSeconds,
      writtenBeforeKill: atKill.map((r) => [r.key, r.seconds]),
      ledger: rows.map((r) => [r.key, r.seconds]),
    });
  }, 240_000);

  it("restart of the API mid-session: the session's charges are untouched and a job through the restarted API runs on the same session", async () => {
    const stack = await startStack();
    defer(() => stack.close());
    const keys = new RedisKeys(stack.redisPrefix);
    const apiOptions = { databaseUrl: stack.databaseUrl, redisUrl: stack.redisUrl, redisPrefix: stack.redisPrefix, handlerDirs: [examplesDir, fixturesDir], adminToken: ADMIN };
    const first = await spawnApi(apiOptions);
    defer(() => first.kill());
    const key = await newTenant(apiClient(first.url), "api-restart");
    const ep = await newEndpoint(apiClient(first.url), key, { engine: echo });
    const worker = await readyWorker(stack.redis, keys, ep);
    expect(await jobWorker(stack.sql, await runsync(apiClient(first.url), key, ep, { before: "restart" }))).toBe(worker);

    await first.kill("SIGKILL");
    const second = await spawnApi(apiOptions);
    defer(() => second.kill());
    const call = apiClient(second.url);
    expect(await jobWorker(stack.sql, await runsync(call, key, ep, { after: "restart" }))).toBe(worker);
    // Still the one session: no worker was started or stopped for the API's restart.
    const before = await workerEvents(stack.redis, keys, ep);
    expect([...before.keys()]).toEqual([worker]);
    expect(before.get(worker)!.filter((e) => e.p.state === "exited" || e.p.state === "lost")).toEqual([]);

    expect((await call("DELETE", `/api/v1/endpoints/${ep}`, { key })).status).toBe(200);
    const rows = await settledLedger(stack.sql, worker, 60_000);
    const span = sessionSpan((await workerEvents(stack.redis, keys, ep)).get(worker)!, await redisNowMs(stack.redis))!;
    expect(span.endedBy).toBe("scheduler exit");
    expectSettledLedger(rows, worker, span);
    const onEndpoint = await stack.sql<{ worker_id: string }[]>`select distinct worker_id from ledger_entries where endpoint_id = ${ep}`;
    expect(onEndpoint.map((r) => r.worker_id)).toEqual([worker]);
    report("api restart", { lengthMs: span.end - span.start, billedSeconds: billedSeconds(rows), expectedSeconds: span.expectedSeconds, ledger: rows.map((r) => [r.key, r.seconds]) });
  }, 120_000);
});
