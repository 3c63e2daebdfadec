import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Queue } from "bullmq";
import { eq } from "drizzle-orm";
import type { Redis } from "ioredis";
import { connectRedis } from "../core/redis/connect.ts";
import { openDb, type DbHandle } from "../core/db/client.ts";
import { endpoints, tenants, workerSessions } from "../core/db/schema.ts";
import { ControlPlane } from "../apps/control/control-plane.ts";
import { RedisKeys } from "../core/queue/keys.ts";
import { JOB_NAME, LOW_PRIORITY, type JobData } from "../core/queue/job-catalog.ts";
import { workerHeartbeat } from "../core/contracts/worker-state.ts";
import type { ScalerType } from "../core/contracts/endpoint.ts";
import { LocalProvider } from "../scheduler/providers/local-provider.ts";
import { Scheduler, type SchedulerOptions } from "../scheduler/scheduler.ts";
import type { LogLine as LogEntry } from "../core/log/process-log.ts";
import { TEST_REDIS_URL, clearPrefix, createTestDatabase, uniquePrefix, waitFor } from "./support/services.ts";
import { pidOfWorker } from "./support/engine-processes.ts";

const handlerDirs = [
  fileURLToPath(new URL("../images/handler/examples", import.meta.url)),
  fileURLToPath(new URL("./fixtures/handlers", import.meta.url)),
];
const sleepModule = fileURLToPath(new URL("./fixtures/handlers/sleep.mjs", import.meta.url));
const crashModule = fileURLToPath(new URL("./fixtures/handlers/crash-on-load.mjs", import.meta.url));
const echoModule = fileURLToPath(new URL("../images/handler/examples/echo.mjs", import.meta.url));

let database: { url: string; drop: () => Promise<void> };
let dbh: DbHandle;
let redis: Redis;
const TENANT = "t-scheduler";

beforeAll(async () => {
  database = await createTestDatabase();
  dbh = openDb(database.url, { max: 4 });
  redis = connectRedis(TEST_REDIS_URL);
  await dbh.db.insert(tenants).values({ id: TENANT, name: "scheduler tests" });
});
afterAll(async () => {
  await redis.quit();
  await dbh.close();
  await database.drop();
});

/** Everything one test starts, closed (workers drained, keys removed) after it. */
interface Harness {
  prefix: string;
  keys: RedisKeys;
  endpointId: string;
  queue: Queue;
  /** Projects the harness's log into the shared database's worker sessions. */
  control: ControlPlane;
  schedulers: { scheduler: Scheduler; provider: LocalProvider; logs: LogEntry[] }[];
}
const harnesses: Harness[] = [];

afterEach(async () => {
  for (const h of harnesses.splice(0)) {
    await Promise.all(h.schedulers.map((s) => s.scheduler.close()));
    await h.control.stop();
    await h.queue.close();
    await clearPrefix(redis, h.prefix);
  }
  // Every scheduler serves every live endpoint of the shared database: retire this test's.
  await dbh.db.update(endpoints).set({ deletedAt: new Date() });
});

async function harness(endpoint: {
  engine?: string;
  workersMin?: number;
  workersMax?: number;
  idleTimeout?: number;
  scalerType?: ScalerType;
  scalerValue?: number;
}): Promise<Harness> {
  const prefix = uniquePrefix();
  const keys = new RedisKeys(prefix);
  const endpointId = `ep-${randomBytes(4).toString("hex")}`;
  await dbh.db.insert(endpoints).values({
    id: endpointId,
    tenantId: TENANT,
    name: endpointId,
    engine: { kind: "handler", module: endpoint.engine ?? sleepModule },
    gpuTypeIds: [],
    workersMin: endpoint.workersMin ?? 0,
    workersMax: endpoint.workersMax ?? 3,
    idleTimeout: endpoint.idleTimeout ?? 1,
    scalerType: endpoint.scalerType ?? "REQUEST_COUNT",
    scalerValue: endpoint.scalerValue ?? 1,
    executionTimeoutMs: 60_000,
    flashboot: false,
  });
  const queue = new Queue(keys.queueName(endpointId), { connection: redis, prefix });
  const control = new ControlPlane({ redis, sql: dbh.sql, keys, log: () => {}, blockMs: 100 });
  control.start();
  const h: Harness = { prefix, keys, endpointId, queue, control, schedulers: [] };
  harnesses.push(h);
  return h;
}

async function startScheduler(h: Harness, over: Partial<SchedulerOptions> = {}) {
  const provider = new LocalProvider({
    redisUrl: TEST_REDIS_URL,
    redisPrefix: h.prefix,
    handlerDirs,
    // Small, so a job of a killed worker comes back quickly; no test here relies on it.
    workerLockMs: 2000,
    output: "silent",
    closeGraceMs: 20_000,
  });
  const logs: LogEntry[] = [];
  const scheduler = new Scheduler({
    redis,
    db: dbh.db,
    provider,
    redisPrefix: h.prefix,
    tickMs: 200,
    lockTtlMs: 1500,
    heartbeatMs: 200,
    drainTimeoutMs: 10_000,
    log: (e) => logs.push(e),
    ...over,
  });
  h.schedulers.push({ scheduler, provider, logs });
  await scheduler.start();
  return { scheduler, provider, logs };
}

let jobSeq = 0;
async function enqueue(h: Harness, input: unknown, opts: { lowPriority?: boolean } = {}): Promise<string> {
  const now = Date.now();
  const data: JobData = {
    endpointId: h.endpointId,
    tenantId: TENANT,
    input,
    executionTimeoutMs: 60_000,
    lowPriority: opts.lowPriority ?? false,
    submittedAt: now,
    expiresAt: now + 3_600_000,
    retentionMs: 600_000,
    retries: 0,
  };
  const jobId = `job-${++jobSeq}-${randomBytes(3).toString("hex")}`;
  await h.queue.add(JOB_NAME, data, { jobId, ...(opts.lowPriority ? { priority: LOW_PRIORITY } : {}) });
  return jobId;
}


/** The endpoint's worker sessions as the control plane projected them from the log. */
const workerRows = (endpointId: string) => dbh.db.select().from(workerSessions).where(eq(workerSessions.endpointId, endpointId));

async function heartbeats(h: Harness) {
  const hash = await redis.hgetall(h.keys.workers(h.endpointId));
  return Object.values(hash).map((raw) => workerHeartbeat.parse(JSON.parse(raw)));
}

describe("scheduler", () => {
  it("scales 0 → 3 for three long jobs, then back to 0 once they are done and idle past the timeout", async () => {
    const h = await harness({ scalerType: "REQUEST_COUNT", scalerValue: 1, workersMax: 3, idleTimeout: 1 });
    const jobIds = await Promise.all([1, 2, 3].map(() => enqueue(h, { ms: 3000 })));
    const { provider } = await startScheduler(h);

    await waitFor(() => provider.list().length === 3);
    // Until its first heartbeat each worker shows as booting, as /health will count it.
    await waitFor(async () => (await heartbeats(h)).length === 3);

    await waitFor(async () => {
      const states = await Promise.all(jobIds.map((id) => h.queue.getJobState(id)));
      return states.every((s) => s === "completed");
    }, 45_000);

    await waitFor(() => provider.list().length === 0, 45_000);
    const rows = await waitFor(async () => {
      const rs = await workerRows(h.endpointId);
      return rs.length === 3 && rs.every((r) => r.endedAt !== null && r.exitCode !== null) ? rs : undefined;
    });
    expect(rows).toHaveLength(3); // never more than workersMax
    for (const row of rows) expect(row).toMatchObject({ provider: "local", state: "exited", exitCode: 0 });
    expect(await heartbeats(h)).toEqual([]);
  });

  it("starts a worker on a wake message, without waiting for a tick", async () => {
    const h = await harness({ engine: echoModule, scalerType: "QUEUE_DELAY", scalerValue: 4 });
    const { scheduler, provider } = await startScheduler(h, { tickMs: 60_000 });
    await waitFor(() => scheduler.isLeader);
    await scheduler.tick(); // the one pass before the next minute-long wait: it sees no work
    expect(provider.list()).toEqual([]);

    const jobId = await enqueue(h, { hello: "wake" });
    await redis.publish(h.keys.wakeChannel(), JSON.stringify({ endpointId: h.endpointId }));

    await waitFor(() => provider.list().length === 1);
    await waitFor(async () => (await h.queue.getJobState(jobId)) === "completed");
  });

  it("backs off restarting workers that keep crashing, and logs why", async () => {
    const h = await harness({ engine: crashModule, scalerType: "REQUEST_COUNT", scalerValue: 1, workersMax: 1 });
    await enqueue(h, {});
    // A frozen clock moved by hand and ticks driven by hand: the backoff is checked in exact steps.
    let t = Date.now();
    const { scheduler, logs } = await startScheduler(h, { tickMs: 600_000, lockTtlMs: 60_000, now: () => t });
    // Exit code set: the provider saw the process end (a worker's own exit entry comes before that, without one).
    const crashed = async (n: number) => (await workerRows(h.endpointId)).filter((r) => r.endedAt !== null && r.exitCode !== null && r.exitCode !== 0).length === n;
    // Counted from the scheduler's own log: the records follow the event log a moment later.
    const started = async () => logs.filter((l) => l.msg === "worker started").length;

    await waitFor(() => crashed(1)); // the first tick started one; it died loading the handler
    await scheduler.tick();
    expect(await started()).toBe(1); // held back: 1 s after one crash
    expect(logs.some((l) => l.msg === "start delayed: workers keep crashing")).toBe(true);
    t += 1000;
    await scheduler.tick();
    expect(await started()).toBe(2);

    await waitFor(() => crashed(2));
    t += 1000;
    await scheduler.tick();
    expect(await started()).toBe(2); // 2 s after the second crash
    t += 1000;
    await scheduler.tick();
    expect(await started()).toBe(3);
  });

  it("kills and replaces a hung worker (process alive, heartbeat silent)", async () => {
    const h = await harness({ engine: echoModule, workersMin: 1, workersMax: 1 });
    const { provider } = await startScheduler(h, { hungAfterMs: 1000 });
    const [first] = await waitFor(async () => ((await heartbeats(h)).some((b) => b.state === "idle") ? provider.list() : undefined));
    const pid = pidOfWorker(first!.workerId);
    process.kill(pid, "SIGSTOP"); // hung: it neither beats nor answers SIGTERM
    try {
      const replacement = await waitFor(() => provider.list().find((w) => w.workerId !== first!.workerId), 30_000);
      expect(replacement.endpointId).toBe(h.endpointId);
      const [row] = await waitFor(async () => {
        const rs = (await workerRows(h.endpointId)).filter((r) => r.id === first!.workerId && r.endedAt !== null);
        return rs.length ? rs : undefined;
      }, 30_000);
      expect(row?.exitCode).toBe(137); // SIGKILL after the short grace: a hung worker does not drain
    } finally {
      try {
        process.kill(pid, "SIGCONT");
      } catch {
        // already gone
      }
    }
  });

  it("starts no worker for low-priority work alone", async () => {
    const h = await harness({ engine: echoModule, scalerType: "REQUEST_COUNT", scalerValue: 1 });
    const { scheduler, provider } = await startScheduler(h, { tickMs: 60_000 });
    await waitFor(() => scheduler.isLeader);
    await enqueue(h, { low: true }, { lowPriority: true });
    expect(await h.queue.getJobCounts("prioritized")).toMatchObject({ prioritized: 1 });

    await scheduler.wake(h.endpointId);
    await scheduler.tick();
    expect(provider.list()).toEqual([]);
    expect(await workerRows(h.endpointId)).toEqual([]);
  });

  it("keeps workersMin workers up while idle, and drains them when the endpoint is deleted", async () => {
    const h = await harness({ engine: echoModule, workersMin: 1, idleTimeout: 1 });
    const { scheduler, provider } = await startScheduler(h);

    const [worker] = await waitFor(() => (provider.list().length === 1 ? provider.list() : undefined));
    // Idle well past the timeout, then converge again: the one minimum worker stays.
    await waitFor(async () => {
      const [hb] = await heartbeats(h);
      return hb?.state === "idle" && hb.idleSince !== null && Date.now() - hb.idleSince > 2000;
    });
    await scheduler.tick();
    await scheduler.tick();
    expect(provider.list().map((w) => w.workerId)).toEqual([worker?.workerId]);

    await dbh.db.update(endpoints).set({ deletedAt: new Date() }).where(eq(endpoints.id, h.endpointId));
    await waitFor(() => provider.list().length === 0);
    const [row] = await waitFor(async () => {
      const rs = await workerRows(h.endpointId);
      return rs[0]?.endedAt ? rs : undefined;
    });
    expect(row).toMatchObject({ id: worker?.workerId, state: "exited" });
  });

  it("lets only the lock holder act: a second scheduler on the same prefix stands by, then takes over", async () => {
    const h = await harness({ engine: echoModule, scalerType: "REQUEST_COUNT", scalerValue: 1, idleTimeout: 60 });
    const first = await startScheduler(h, { id: "first" });
    await waitFor(() => first.scheduler.isLeader);
    const second = await startScheduler(h, { id: "second" });
    expect(second.scheduler.isLeader).toBe(false);

    await enqueue(h, { n: 1 });
    await second.scheduler.wake(h.endpointId);
    await second.scheduler.tick();
    await waitFor(() => first.provider.list().length === 1);
    expect(second.provider.list()).toEqual([]);
    expect(await redis.get(h.keys.schedulerLock())).toBe("first");

    // The leader closes (its worker drains) and releases the lock: the stand-by takes over.
    await first.scheduler.close();
    await waitFor(() => second.scheduler.isLeader);
    expect(await redis.get(h.keys.schedulerLock())).toBe("second");
    await enqueue(h, { n: 2 });
    await waitFor(() => second.provider.list().length > 0);
  });
});
