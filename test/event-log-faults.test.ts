import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { Sql } from "postgres";
import { startApiServer } from "../apps/api/api-server.ts";
import { ControlPlane } from "../apps/control/control-plane.ts";
import { migrateDb } from "../core/db/client.ts";
import { RedisKeys } from "../core/queue/keys.ts";
import { apiClient } from "./support/api-client.ts";
import { sharedFixture } from "./support/shared-fixture.ts";
import { spawnApi, spawnControl } from "./support/entry-process.ts";
import { acceptedJobIds, lastLogId, readLog, recordsCursor, statusesOf, waitForJobStatus } from "./support/event-log-probe.ts";
import { examplesDir, fixturesDir, startStack } from "./support/hearth-stack.ts";
import { startOwnPostgres } from "./support/own-postgres.ts";
import { startOwnRedis } from "./support/own-redis.ts";
import { TEST_REDIS_URL, waitFor } from "./support/services.ts";

/**
 * The event log under faults, with real processes: an API killed right after answering, a control
 * plane killed mid-batch, Postgres stopped and Redis restarted under load, a job failed by BullMQ's
 * stalled checker. Each test owns its prefix and database; outcomes are asserted, never timings.
 */

const ADMIN = "faults-admin-token-0123456789";
const echo = { kind: "handler", module: join(examplesDir, "echo.mjs") };
type Call = ReturnType<typeof apiClient>;

// Undone newest first after each test, so a database is dropped only after its connections closed.
const cleanups: (() => Promise<unknown>)[] = [];
const defer = (fn: () => Promise<unknown>) => cleanups.push(fn);
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn().catch((err: unknown) => console.error("cleanup failed:", err));
});

/** Numbers the brief asks for, printed once per test so a run's log carries them. */
const report = (what: string, facts: Record<string, unknown>) => console.log(`[event-log-faults] ${what} ${JSON.stringify(facts)}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function newTenant(call: Call): Promise<string> {
  // Metered: these tests are not about billing, and a spawned API runs HEARTH_BILLING_MODE's default (enforce).
  const r = await call("POST", "/admin/tenants", { key: ADMIN, body: { name: "faults", billingMode: "meter" } });
  if (r.status !== 200) throw new Error(`tenant: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.apiKey as string;
}

async function newEndpoint(call: Call, key: string, body: Record<string, unknown>): Promise<string> {
  const r = await call("POST", "/api/v1/endpoints", { key, body: { name: "faults", ...body } });
  if (r.status !== 200) throw new Error(`endpoint: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.id as string;
}

/** Waits until the records consumer has committed its cursor at `lastId` (everything up to it is projected). */
function projectedUpTo(sql: Sql, endpointId: string, lastId: string, timeoutMs = 60_000) {
  return waitFor(async () => (await recordsCursor(sql, endpointId)) === lastId, timeoutMs, 100);
}

interface Answer {
  kind: "run" | "runsync";
  phase: string;
  /** When the request was sent and answered (ms, this process's clock): for reports only. */
  sentAt: number;
  answeredAt: number;
  status: number;
  body: any;
  error?: string;
}

interface LoadOptions {
  kind: Answer["kind"];
  concurrency: number;
  /** The phase an answer is tagged with: the one current when its request was sent. */
  phase: () => string;
  send: () => Promise<{ status: number; body: any }>;
  /** Pause after each request, ms: keeps the job rate under what the workers drain. Default 0. */
  pauseMs?: number;
  /** Pause after a failed request, ms, so a refusing server is not hammered in a hot loop. Default 50. */
  pauseAfterErrorMs?: number;
}

/** `concurrency` clients sending requests one after another until stopped. */
function load(options: LoadOptions) {
  const { kind, phase, send } = options;
  let stopped = false;
  const answers: Answer[] = [];
  const clients = Array.from({ length: options.concurrency }, async () => {
    while (!stopped) {
      const sentIn = phase();
      const sentAt = Date.now();
      let ok = false;
      try {
        const r = await send();
        answers.push({ kind, phase: sentIn, sentAt, answeredAt: Date.now(), status: r.status, body: r.body });
        ok = r.status === 200;
      } catch (err) {
        answers.push({ kind, phase: sentIn, sentAt, answeredAt: Date.now(), status: 0, body: undefined, error: String(err) });
      }
      await sleep(ok ? (options.pauseMs ?? 0) : (options.pauseAfterErrorMs ?? 50));
    }
  });
  return {
    answers,
    stop(): void {
      stopped = true;
    },
    async stopped(): Promise<Answer[]> {
      stopped = true;
      await Promise.all(clients);
      return answers;
    },
  };
}

/** Counts of answers by a key, for reports and assertion messages. */
function tally<T>(items: T[], keyOf: (t: T) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const t of items) out[keyOf(t)] = (out[keyOf(t)] ?? 0) + 1;
  return out;
}

describe("event log under faults", () => {
  it("kill -9 of the API right after 200 accepted /run: each job is in the log and reaches jobs exactly once", async () => {
    const { db, prefix, keys, redis, sql } = await sharedFixture(defer);
    const api = await spawnApi({ databaseUrl: db.url, redisUrl: TEST_REDIS_URL, redisPrefix: prefix, handlerDirs: [examplesDir], adminToken: ADMIN });
    defer(() => api.kill());
    const call = apiClient(api.url);
    const key = await newTenant(call);
    const ep = await newEndpoint(call, key, { engine: echo, workersMax: 0 }); // nothing runs them

    const answers = await Promise.all(Array.from({ length: 200 }, (_, i) => call("POST", `/v2/${ep}/run`, { key, body: { input: { i } } })));
    await api.kill("SIGKILL");
    expect(tally(answers, (a) => String(a.status))).toEqual({ 200: 200 });
    const ids = answers.map((a) => a.body.id as string);
    expect(new Set(ids).size).toBe(200);

    const log = await readLog(redis, keys.log(ep));
    const accepted = acceptedJobIds(log);
    expect(accepted).toHaveLength(200); // no duplicate accept
    expect(new Set(accepted)).toEqual(new Set(ids));

    // The API is gone; a control plane started afterwards projects what it left in the log.
    const control = new ControlPlane({ redis, sql, keys, log: () => {}, blockMs: 100 });
    control.start();
    defer(() => control.stop());
    await projectedUpTo(sql, ep, log[log.length - 1]!.id);
    const rows = await sql<{ id: string; status: string }[]>`select id, status from jobs where endpoint_id = ${ep}`;
    expect(rows).toHaveLength(200);
    expect(new Set(rows.map((r) => r.id))).toEqual(new Set(ids));
    expect(tally(rows, (r) => r.status)).toEqual({ IN_QUEUE: 200 });
    report("api kill -9", { accepted: accepted.length, logEntries: log.length, jobRows: rows.length });
  });

  it("kill -9 of the control plane mid-batch, then a restart: every job has one CANCELLED row and is counted once", async () => {
    const JOBS = 3000;
    const { db, prefix, keys, redis, sql } = await sharedFixture(defer);
    const api = await startApiServer({ databaseUrl: db.url, redisUrl: TEST_REDIS_URL, redisPrefix: prefix, handlerDirs: [examplesDir], port: 0, host: "127.0.0.1", adminToken: ADMIN });
    defer(() => api.close());
    const call = apiClient(api.url);
    const key = await newTenant(call);
    const ep = await newEndpoint(call, key, { engine: echo, workersMax: 0 });

    // The backlog: JOBS accepted, then purged, so each has a terminal `removed` entry to count.
    const startedAt = Date.now();
    const ids: string[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        while (next < JOBS) {
          next++;
          const r = await call("POST", `/v2/${ep}/run`, { key, body: { input: { n: next } } });
          if (r.status !== 200) throw new Error(`run: ${r.status} ${JSON.stringify(r.body)}`);
          ids.push(r.body.id as string);
        }
      }),
    );
    expect(ids).toHaveLength(JOBS);
    expect((await call("POST", `/v2/${ep}/purge-queue`, { key })).body).toEqual({ removed: JOBS, status: "completed" });
    const lastId = (await lastLogId(redis, keys.log(ep)))!;
    const logLength = await redis.xlen(keys.log(ep));
    const backlogMs = Date.now() - startedAt;

    const first = await spawnControl({ databaseUrl: db.url, redisUrl: TEST_REDIS_URL, redisPrefix: prefix });
    defer(() => first.kill());
    // Killed once it has committed part of the backlog, at a moment its next batch's transaction is
    // open (neither this test's pool nor the API's ever holds one: an open transaction is the control plane's).
    let openTransactions = 0;
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (Date.now() > deadline || first.child.exitCode !== null) throw new Error(`the control plane never got under way:\n${first.output()}`);
      const cursor = await recordsCursor(sql, ep);
      if (cursor === lastId) throw new Error(`the control plane projected all ${logLength} entries before it could be killed: make the backlog bigger`);
      if (cursor !== undefined) {
        const [activity] = await sql<{ n: number }[]>`
          select count(*)::int as n from pg_stat_activity
          where datname = current_database() and pid <> pg_backend_pid() and xact_start is not null`;
        openTransactions = activity!.n;
        if (openTransactions > 0) break;
      }
      await sleep(2);
    }
    await first.kill("SIGKILL");
    const cursorAtKill = await recordsCursor(sql, ep);
    expect(cursorAtKill).not.toBe(lastId); // it died with part of the log unprojected
    const [atKill] = await sql<{ n: number }[]>`select count(*)::int as n from jobs where endpoint_id = ${ep}`;

    const restartedAt = Date.now();
    const second = await spawnControl({ databaseUrl: db.url, redisUrl: TEST_REDIS_URL, redisPrefix: prefix });
    defer(() => second.kill());
    await projectedUpTo(sql, ep, lastId, 120_000);
    const catchUpMs = Date.now() - restartedAt;
    await second.kill("SIGTERM");
    expect((await second.exited).code).toBe(0);

    const rows = await sql<{ id: string; status: string; error: string | null }[]>`select id, status, error from jobs where endpoint_id = ${ep}`;
    expect(rows).toHaveLength(JOBS);
    expect(new Set(rows.map((r) => r.id))).toEqual(new Set(ids));
    expect(tally(rows, (r) => `${r.status}: ${r.error}`)).toEqual({ "CANCELLED: purged from the queue": JOBS });
    // A batch applied twice would count its terminal entries twice.
    const counts = await sql<{ status: string; count: number }[]>`select status, count::int as count from endpoint_job_counts where endpoint_id = ${ep}`;
    expect(counts).toEqual([{ status: "CANCELLED", count: JOBS }]);
    const [dead] = await sql<{ n: number }[]>`select count(*)::int as n from log_dead_letters`;
    expect(dead!.n).toBe(0);
    report("control kill -9", { jobs: JOBS, logEntries: logLength, cursorAtKill, lastId, jobRowsAtKill: atKill!.n, openTransactionsAtKill: openTransactions, backlogMs, catchUpMs });
  }, 180_000);

  it("Postgres stopped for 30 s under load: every request is answered 200, every job reaches jobs COMPLETED, the API's memory stays bounded", async () => {
    const pg = await startOwnPostgres();
    defer(() => pg.destroy());
    const databaseUrl = pg.url.replace(/\/postgres$/, "/hearth");
    await migrateDb(databaseUrl);
    // A Redis of its own too: nothing else on the machine touches this stack's keys while it runs.
    const redisServer = await startOwnRedis({ appendfsync: "everysec" });
    defer(() => redisServer.destroy());
    const stack = await startStack({ databaseUrl, redisUrl: redisServer.url });
    defer(() => stack.close());
    const key = await stack.tenant("pg-outage");
    const ep = await stack.endpoint(key, { engine: echo, workersMin: 1, workersMax: 1 });
    // The API under test runs alone in its process, so its RSS is its own.
    const api = await spawnApi({ databaseUrl, redisUrl: redisServer.url, redisPrefix: stack.redisPrefix, handlerDirs: [examplesDir, fixturesDir], adminToken: ADMIN });
    defer(() => api.kill());
    const call = apiClient(api.url);
    // Warm: the worker is up, and this API has the key and the endpoint cached.
    await waitFor(async () => (await call("POST", `/v2/${ep}/runsync`, { key, body: { input: "warm" } })).body?.status === "COMPLETED", 60_000, 200);

    // The endpoint was cached at the warm-up, before the outage: its 30 s TTL runs out during the
    // 30 s outage, so the API must serve it stale for the rest (the key's 60 s TTL outlives it).
    let phase = "before";
    const runsync = load({ kind: "runsync", concurrency: 3, phase: () => phase, send: () => call("POST", `/v2/${ep}/runsync`, { key, body: { input: { p: phase } } }) });
    // Paced: faster than the one worker drains, /run would queue the runsync jobs behind a growing backlog.
    const run = load({ kind: "run", concurrency: 1, phase: () => phase, send: () => call("POST", `/v2/${ep}/run`, { key, body: { input: { p: phase } } }), pauseMs: 20 });
    await sleep(2000);

    const rssBeforeKb = api.rssKb();
    phase = "outage";
    const outageAt = Date.now();
    await pg.stop();
    const rssSamplesKb: number[] = [];
    for (let s = 0; s < 30; s++) {
      await sleep(1000);
      rssSamplesKb.push(api.rssKb());
    }
    const rssEndKb = api.rssKb();
    await pg.start();
    phase = "after";
    await sleep(2000);
    run.stop();
    const answers = [...(await runsync.stopped()), ...(await run.stopped())];

    const rssAfterKb = api.rssKb();

    const byPhase = tally(answers, (a) => `${a.phase} ${a.kind} ${a.status}${a.kind === "runsync" && a.status === 200 ? ` ${a.body?.status}` : ""}`);
    const mb = (kb: number) => +(kb / 1024).toFixed(1);
    const rss = { beforeMb: mb(rssBeforeKb), endOfOutageMb: mb(rssEndKb), maxDuringMb: mb(Math.max(...rssSamplesKb)), afterRecoveryMb: mb(rssAfterKb) };
    const failed = answers
      .filter((a) => a.status !== 200 || (a.kind === "runsync" && a.body?.status !== "COMPLETED"))
      .map((a) => ({ kind: a.kind, phase: a.phase, status: a.status, body: a.body, error: a.error, sentMsIntoOutage: a.sentAt - outageAt }));
    // The slowest answer per phase: a request held open (rather than refused) shows up here.
    const slowestMs: Record<string, number> = {};
    for (const a of answers) slowestMs[`${a.phase} ${a.kind}`] = Math.max(slowestMs[`${a.phase} ${a.kind}`] ?? 0, a.answeredAt - a.sentAt);
    report("postgres outage", { answers: byPhase, slowestMs, rss, notOk: failed.length, firstNotOk: failed[0], lastNotOk: failed[failed.length - 1] });
    // Soft: what the jobs became is checked whatever the answers were.
    expect(answers.filter((a) => a.phase === "outage").length).toBeGreaterThan(0);
    expect(failed.slice(0, 3), `${failed.length} answers were not 200 (COMPLETED for runsync): ${JSON.stringify(byPhase)} ${JSON.stringify(failed.slice(0, 3))}`).toEqual([]);
    expect(rssEndKb - rssBeforeKb, `API RSS ${JSON.stringify(rss)}`).toBeLessThan(50 * 1024);

    const ids = answers.filter((a) => a.status === 200).map((a) => a.body.id as string);
    await waitForJobStatus(stack.sql, ids, "COMPLETED", 120_000);
  }, 240_000);

  it("Redis (AOF, appendfsync always) stopped and killed under load: downtime is 503 never 500, and every accepted job completes and is logged", async () => {
    const redisServer = await startOwnRedis({ appendfsync: "always" });
    defer(() => redisServer.destroy());
    // A short lock: a job whose worker lost Redis mid-job is re-run soon after Redis returns.
    const stack = await startStack({ redisUrl: redisServer.url, workerLockMs: 2000 });
    defer(() => stack.close());
    const key = await stack.tenant("redis-restart");
    const ep = await stack.endpoint(key, { engine: echo, workersMin: 1, workersMax: 1 });
    // Jobs outside the load (warm-up, probes): accepted too, but not part of what the load counts.
    const otherIds = new Set<string>();
    const other = async (path: string) => {
      const r = await stack.call("POST", `/v2/${ep}/${path}`, { key, body: { input: path } });
      if (r.status === 200) otherIds.add(r.body.id as string);
      return r;
    };
    await waitFor(async () => (await other("runsync")).body?.status === "COMPLETED", 60_000, 200);

    let phase = "up";
    const run = load({ kind: "run", concurrency: 2, phase: () => phase, send: () => stack.call("POST", `/v2/${ep}/run`, { key, body: { input: { p: phase } } }), pauseMs: 10 });
    const backUp = () => waitFor(async () => (await other("run")).status === 200, 30_000, 100);
    await sleep(1000);
    phase = "stopped";
    await redisServer.stop();
    await sleep(2000);
    await redisServer.start();
    phase = "restarted";
    await backUp();
    await sleep(1000);
    phase = "killed";
    await redisServer.kill();
    await sleep(2000);
    await redisServer.start();
    phase = "restarted after kill";
    await backUp();
    await sleep(1000);
    const answers = await run.stopped();

    const byPhase = tally(answers, (a) => `${a.phase} ${a.status}${a.status === 200 ? "" : ` ${a.body?.code ?? a.error}`}`);
    const accepted = answers.filter((a) => a.status === 200).map((a) => a.body.id as string);
    expect(answers.filter((a) => a.status === 503).length).toBeGreaterThan(0); // the downtime was seen
    expect(answers.filter((a) => a.status !== 200 && a.status !== 503), JSON.stringify(byPhase)).toEqual([]);

    await waitForJobStatus(stack.sql, accepted, "COMPLETED", 120_000);
    const log = await readLog(stack.redis, new RedisKeys(stack.redisPrefix).log(ep));
    const logged = acceptedJobIds(log);
    const loggedSet = new Set(logged);
    expect(accepted.filter((id) => !loggedSet.has(id))).toEqual([]);
    const acceptedSet = new Set(accepted);
    report("redis restart", {
      answers: byPhase,
      acceptedJobs: accepted.length,
      acceptedEntries: logged.length,
      duplicateAcceptEntries: logged.length - loggedSet.size,
      // Jobs in the log the client never got a 200 for (the reply was lost with the connection).
      loggedWithout200: [...loggedSet].filter((id) => !acceptedSet.has(id) && !otherIds.has(id)).length,
    });
  }, 180_000);

  it("a job failed by BullMQ's stalled checker gets a FAILED record", async () => {
    // The lock (1 s) is far shorter than the handler's blocked event loop (3 s): every run stalls.
    const stack = await startStack({ workerLockMs: 1000 });
    defer(() => stack.close());
    const key = await stack.tenant("stall");
    // Two workers: while one is blocked, the other's stalled checker runs and takes the job next.
    const ep = await stack.endpoint(key, { engine: { kind: "handler", module: join(fixturesDir, "block-loop.mjs") }, workersMin: 2, workersMax: 2 });
    await waitFor(async () => (await stack.call("GET", `/v2/${ep}/health`, { key })).body?.workers?.idle === 2, 60_000, 200);

    // Through runsync: its waiter must hear the job's real end, not a worker's result BullMQ refused.
    const r = await stack.call("POST", `/v2/${ep}/runsync?wait=90000`, { key, body: { input: { ms: 3000 } } });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ status: "FAILED", error: "job stalled more than allowable limit" });
    const id = r.body.id as string;
    const row = await waitFor(async () => {
      const [job] = await stack.sql<{ status: string; error: string | null }[]>`select status, error from jobs where id = ${id}`;
      return job && job.status !== "IN_QUEUE" && job.status !== "IN_PROGRESS" ? job : undefined;
    }, 90_000, 200);
    expect(row).toEqual({ status: "FAILED", error: "job stalled more than allowable limit" });
    expect((await stack.call("GET", `/v2/${ep}/status/${id}`, { key })).body).toMatchObject({ id, status: "FAILED", error: "job stalled more than allowable limit" });
    const counts = await stack.sql<{ status: string; count: number }[]>`select status, count::int as count from endpoint_job_counts where endpoint_id = ${ep}`;
    expect(counts).toEqual([{ status: "FAILED", count: 1 }]);
    const log = await readLog(stack.redis, new RedisKeys(stack.redisPrefix).log(ep));
    const stalls = log.filter((e) => e.event === "stalled" && e.fields.get("jobId") === id).length;
    expect(stalls).toBe(3); // maxStalledCount 2: the third stall fails it
    const health = (await stack.call("GET", `/v2/${ep}/health`, { key })).body?.jobs;
    expect(health?.completed).toBe(0); // no worker announced a result it did not keep
    report("stalled", { stalls, statusesOfJob: await statusesOf(stack.sql, [id]), healthJobs: health });
  }, 120_000);
});
