import { spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Job, Queue } from "bullmq";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { workerHeartbeat, type WorkerHeartbeat } from "../core/contracts/worker-state.ts";
import { jobResult, type JobData, type JobResult } from "../core/queue/job-catalog.ts";
import { RedisKeys } from "../core/queue/keys.ts";
import { jobEvent, parseMessage, type ControlMessage, type JobEvent } from "../core/queue/messages.ts";
import { eq } from "drizzle-orm";
import { openDb, type DbHandle } from "../core/db/client.ts";
import { endpoints, jobs, tenants, workerSessions } from "../core/db/schema.ts";
import { whenReady } from "../core/redis/connect.ts";
import { builtEntryPath } from "../core/build/built-entry.ts";
import { ControlPlane } from "../apps/control/control-plane.ts";
import { clearPrefix, createTestDatabase, TEST_REDIS_URL, uniquePrefix, waitFor } from "./support/services.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const fixtures = join(root, "test/fixtures/handlers");
const examples = join(root, "images/handler/examples");

const prefix = uniquePrefix();
const keys = new RedisKeys(prefix);
const tmp = mkdtempSync(join(tmpdir(), "hearth-worker-"));
const children = new Set<ChildProcess>();
const queues = new Map<string, Queue>();
const events: JobEvent[] = [];
let redis: Redis;
let sub: Redis;
let db: { url: string; drop: () => Promise<void> };
let dbh: DbHandle;

beforeAll(async () => {
  redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
  sub = new Redis(TEST_REDIS_URL);
  // Every endpoint's job events (each endpoint has its own channel).
  sub.on("pmessage", (_pattern, _ch, raw: string) => {
    const e = parseMessage(jobEvent, raw);
    if (e) events.push(e);
  });
  await whenReady(sub, TEST_REDIS_URL); // see stream-writer.test.ts: subscribing earlier races the ready check
  await sub.psubscribe(keys.jobEventsChannel("*"));
  db = await createTestDatabase();
  dbh = openDb(db.url, { max: 2 });
});

afterAll(async () => {
  for (const child of children) child.kill("SIGKILL");
  await Promise.all([...queues.values()].map((q) => q.close()));
  await clearPrefix(redis, prefix);
  await Promise.all([redis.quit(), sub.quit(), dbh.close()]);
  await db.drop();
  rmSync(tmp, { recursive: true, force: true });
});

interface SpawnedWorker {
  workerId: string;
  child: ChildProcess;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output: () => string;
}

function spawnWorker(endpointId: string, module: string, env: Record<string, string> = {}): SpawnedWorker {
  const workerId = `w-${randomUUID().slice(0, 8)}`;
  const child = spawn(process.execPath, [builtEntryPath("worker/main.ts")], {
    cwd: root,
    stdio: ["ignore", "pipe", "pipe", "ipc"],
    env: {
      ...process.env,
      REDIS_URL: TEST_REDIS_URL,
      DATABASE_URL: db.url,
      HEARTH_REDIS_PREFIX: prefix,
      HEARTH_HANDLER_DIRS: `${fixtures}:${examples}`,
      HEARTH_ENDPOINT_ID: endpointId,
      HEARTH_WORKER_ID: workerId,
      HEARTH_ENGINE: JSON.stringify({ kind: "handler", module }),
      HEARTH_HEARTBEAT_MS: "200",
      ...env,
    },
  });
  let out = "";
  child.stdout?.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (out += d.toString()));
  children.add(child);
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("exit", (code, signal) => {
      children.delete(child);
      resolve({ code, signal });
    }),
  );
  return { workerId, child, exit, output: () => out };
}

async function heartbeat(endpointId: string, workerId: string): Promise<WorkerHeartbeat | undefined> {
  const raw = await redis.hget(keys.workers(endpointId), workerId);
  return raw === null ? undefined : workerHeartbeat.parse(JSON.parse(raw));
}

/** Generous: worker processes boot slowly on a loaded 2-core machine. Says what the worker printed when it times out. */
async function inState(endpointId: string, w: SpawnedWorker, state: WorkerHeartbeat["state"]): Promise<void> {
  try {
    await waitFor(async () => (await heartbeat(endpointId, w.workerId))?.state === state, 60_000);
  } catch (err) {
    throw new Error(`worker ${w.workerId} never became ${state}: ${String(err)}\n${w.output()}`);
  }
}

function queue(endpointId: string): Queue {
  let q = queues.get(endpointId);
  if (!q) {
    q = new Queue(keys.queueName(endpointId), { connection: redis, prefix });
    queues.set(endpointId, q);
  }
  return q;
}

async function enqueue(endpointId: string, input: unknown, overrides: Partial<JobData> = {}): Promise<string> {
  const now = Date.now();
  const data: JobData = {
    endpointId,
    tenantId: "tenant-1",
    input,
    executionTimeoutMs: 60_000,
    lowPriority: false,
    submittedAt: now,
    expiresAt: now + 600_000,
    retentionMs: 60_000,
    retries: 0,
    ...overrides,
  };
  const jobId = randomUUID();
  await queue(endpointId).add("job", data, { jobId });
  return jobId;
}

async function finished(endpointId: string, jobId: string, timeoutMs = 30_000): Promise<{ job: Job; result: JobResult }> {
  const job = await waitFor(async () => {
    const j = await Job.fromId(queue(endpointId), jobId);
    return j?.finishedOn ? j : undefined;
  }, timeoutMs);
  return { job, result: jobResult.parse(job.returnvalue) };
}

const eventsOf = (jobId: string) => events.filter((e) => e.jobId === jobId);
const lines = (path: string) => (existsSync(path) ? readFileSync(path, "utf8").trim().split("\n").filter(Boolean) : []);

describe("worker process: job outcomes", { timeout: 60_000 }, () => {
  const ep = { echo: "ep-echo", fthrow: "ep-throw", fret: "ep-return", sleep: "ep-sleep", stream: "ep-stream", conc: "ep-conc" };
  const w: Record<keyof typeof ep, SpawnedWorker> = {} as never;

  beforeAll(async () => {
    w.echo = spawnWorker(ep.echo, join(examples, "echo.mjs"));
    w.fthrow = spawnWorker(ep.fthrow, join(fixtures, "fail-throw.mjs"));
    w.fret = spawnWorker(ep.fret, join(fixtures, "fail-return.mjs"));
    w.sleep = spawnWorker(ep.sleep, join(fixtures, "sleep.mjs"));
    w.stream = spawnWorker(ep.stream, join(fixtures, "stream-slow.mjs"));
    w.conc = spawnWorker(ep.conc, join(fixtures, "concurrent.mjs"));
    await Promise.all((Object.keys(ep) as (keyof typeof ep)[]).map((k) => inState(ep[k], w[k], "idle")));
  }, 120_000);

  it("COMPLETED: the echo handler's output, announced as finished", async () => {
    const id = await enqueue(ep.echo, { hello: "world" });
    const { job, result } = await finished(ep.echo, id);
    expect(result).toMatchObject({ status: "COMPLETED", output: { echo: { hello: "world" } }, workerId: w.echo.workerId });
    expect(result.finishedAt).toBeGreaterThanOrEqual(result.startedAt);
    expect(job.processedBy).toBe(w.echo.workerId);
    const seen = await waitFor(() => (eventsOf(id).some((e) => e.type === "finished") ? eventsOf(id) : undefined));
    expect(seen.map((e) => e.type)).toEqual(["finished"]);
    expect(seen[0]).toMatchObject({ type: "finished", endpointId: ep.echo, result });
    // Counted in the finish report, just after BullMQ stores the result.
    await waitFor(async () => (await redis.hget(keys.stats(ep.echo), "completed")) === "1");
  });

  it("FAILED: invalid job data is reported, not thrown", async () => {
    const id = randomUUID();
    await queue(ep.echo).add("job", { nonsense: true }, { jobId: id });
    const { job, result } = await finished(ep.echo, id);
    expect(result.status).toBe("FAILED");
    expect(result.error).toMatch(/invalid job data/);
    expect(await job.isCompleted()).toBe(true); // BullMQ's own failed state is for infrastructure only
  });

  it("FAILED: a thrown error and a returned { error }", async () => {
    const thrown = await enqueue(ep.fthrow, { message: "kaboom" });
    expect((await finished(ep.fthrow, thrown)).result).toMatchObject({ status: "FAILED", error: "kaboom" });
    const returned = await enqueue(ep.fret, { error: "nope", extra: { partial: 1 } });
    expect((await finished(ep.fret, returned)).result).toMatchObject({ status: "FAILED", error: "nope", output: { partial: 1 } });
    const structured = await enqueue(ep.fret, { error: { code: 7 } });
    const s = (await finished(ep.fret, structured)).result;
    expect(s).toMatchObject({ status: "FAILED", error: '{"code":7}' });
    expect(s.output).toBeUndefined();
    // Counted in the finish report, just after BullMQ stores the result.
    await waitFor(async () => (await redis.hget(keys.stats(ep.fret), "failed")) === "2");
  });

  it("TIMED_OUT: the execution timeout aborts the handler", async () => {
    const marker = join(tmp, "timeout-marker");
    const id = await enqueue(ep.sleep, { ms: 60_000, abortMarker: marker }, { executionTimeoutMs: 300 });
    const { result } = await finished(ep.sleep, id);
    expect(result).toMatchObject({ status: "TIMED_OUT", error: "execution timeout of 300 ms exceeded" });
    await waitFor(() => existsSync(marker));
  });

  it("TIMED_OUT or CANCELLED without running, when the TTL has passed or a cancel is pending", async () => {
    const marker = join(tmp, "never-marker");
    const expired = await enqueue(ep.sleep, { ms: 60_000, abortMarker: marker }, { expiresAt: Date.now() - 1 });
    expect((await finished(ep.sleep, expired)).result).toMatchObject({ status: "TIMED_OUT", error: "ttl expired before the job started" });
    const id = randomUUID();
    // A cancel broadcast for a job the worker does not run yet (it overtook the job): kept and honoured at start.
    const cancel: ControlMessage = { type: "cancel", jobId: id, endpointId: ep.sleep };
    expect(await redis.publish(keys.controlChannel(ep.sleep), JSON.stringify(cancel))).toBeGreaterThan(0);
    const now = Date.now();
    await queue(ep.sleep).add(
      "job",
      { endpointId: ep.sleep, tenantId: "t", input: { ms: 60_000, abortMarker: marker }, executionTimeoutMs: 60_000, lowPriority: false, submittedAt: now, expiresAt: now + 60_000, retentionMs: 60_000, retries: 0 },
      // Delayed so the job surely reaches the worker after the message; production has no such delay to rely on.
      { jobId: id, delay: 300 },
    );
    expect((await finished(ep.sleep, id)).result.status).toBe("CANCELLED");
    expect(existsSync(marker)).toBe(false);
  });

  it("CANCELLED: a control-channel cancel reaches the running handler", async () => {
    const marker = join(tmp, "cancel-marker");
    const id = await enqueue(ep.sleep, { ms: 60_000, abortMarker: marker });
    await waitFor(async () => (await queue(ep.sleep).getJobState(id)) === "active");
    const cancel: ControlMessage = { type: "cancel", jobId: id, endpointId: ep.sleep };
    await redis.publish(keys.controlChannel(ep.sleep), JSON.stringify(cancel));
    const { result } = await finished(ep.sleep, id);
    expect(result.status).toBe("CANCELLED");
    expect(result.error).toBeUndefined();
    await waitFor(() => existsSync(marker));
    // Counted in the finish report, just after BullMQ stores the result.
    await waitFor(async () => (await redis.hget(keys.stats(ep.sleep), "cancelled")) === "2");
  });

  it("streams every chunk exactly once, in order, each announced", async () => {
    const id = await enqueue(ep.stream, { count: 12, delayMs: 5 });
    const { result } = await finished(ep.stream, id);
    expect(result.status).toBe("COMPLETED");
    expect(result.output).toBeUndefined(); // no returnAggregateStream: a generator job has no output
    const buffered = (await redis.lrange(keys.stream(ep.stream, id), 0, -1)).map((s) => JSON.parse(s));
    expect(buffered).toEqual(Array.from({ length: 12 }, (_, i) => ({ output: { i } })));
    expect(await redis.pttl(keys.stream(ep.stream, id))).toBeGreaterThan(0);
    const types = (await waitFor(() => (eventsOf(id).at(-1)?.type === "finished" ? eventsOf(id) : undefined))).map((e) => e.type);
    expect(types).toEqual([...Array(12).fill("chunk"), "finished"]);
  });

  it("runs as many jobs at once as the handler's concurrency", async () => {
    const dir = join(tmp, "rendezvous");
    const ids = await Promise.all([1, 2, 3, 4].map(() => enqueue(ep.conc, { dir, expect: 4, maxWaitMs: 30_000 })));
    const results = await Promise.all(ids.map((id) => finished(ep.conc, id)));
    for (const { result } of results) expect(result).toMatchObject({ status: "COMPLETED", output: { seen: 4 } });
    expect((await heartbeat(ep.conc, w.conc.workerId))?.concurrency).toBe(4);
  });
});

describe("worker process: lifecycle", { timeout: 120_000 }, () => {
  it("shows booting, idle and running in the workers hash, and leaves it on SIGTERM", async () => {
    const ep = "ep-gated";
    const bootGate = join(tmp, "boot-gate");
    const jobGate = join(tmp, "job-gate");
    const w = spawnWorker(ep, join(fixtures, "gated.mjs"), { HEARTH_TEST_BOOT_GATE: bootGate });
    await inState(ep, w, "initializing");
    expect((await heartbeat(ep, w.workerId))?.idleSince).toBeNull();
    writeFileSync(bootGate, "");
    await inState(ep, w, "idle");
    expect((await heartbeat(ep, w.workerId))?.idleSince).toEqual(expect.any(Number));
    const id = await enqueue(ep, { gate: jobGate });
    await inState(ep, w, "running");
    expect(await heartbeat(ep, w.workerId)).toMatchObject({ running: 1, idleSince: null, endpointId: ep });
    writeFileSync(jobGate, "");
    expect((await finished(ep, id)).result.status).toBe("COMPLETED");
    await inState(ep, w, "idle");
    w.child.kill("SIGTERM");
    expect(await w.exit).toEqual({ code: 0, signal: null });
    expect(await heartbeat(ep, w.workerId)).toBeUndefined();
    for (const phase of ["boot", "engine-ready", "first-job", "draining", "exited"]) expect(w.output()).toContain(`"phase":"${phase}"`);
  });

  it("drains and exits 0 when its parent's IPC channel goes away", async () => {
    const ep = "ep-orphan";
    const w = spawnWorker(ep, join(examples, "echo.mjs"));
    await inState(ep, w, "idle");
    w.child.disconnect();
    expect(await w.exit).toEqual({ code: 0, signal: null });
    expect(w.output()).toContain("parent disconnected");
  });

  it("refuses to start a handler outside HEARTH_HANDLER_DIRS and exits non-zero", async () => {
    const w = spawnWorker("ep-refused", join(root, "core/queue/keys.ts"));
    expect((await w.exit).code).toBe(1);
    expect(w.output()).toMatch(/outside the directories/);
  });
});

describe("worker process: crashes and drains never lose a job", { timeout: 120_000 }, () => {
  it("re-runs the job of a SIGKILLed worker once its lock lapses; it completes once", async () => {
    const ep = "ep-crash";
    const log = join(tmp, "crash.log");
    const env = { HEARTH_WORKER_LOCK_MS: "2000" };
    const a = spawnWorker(ep, join(fixtures, "count-runs.mjs"), env);
    await inState(ep, a, "idle");
    const id = await enqueue(ep, { logFile: log, ms: 1500 });
    await waitFor(() => lines(log).length === 1);
    a.child.kill("SIGKILL");
    expect((await a.exit).signal).toBe("SIGKILL");
    const b = spawnWorker(ep, join(fixtures, "count-runs.mjs"), env);
    const { job, result } = await finished(ep, id, 30_000);
    expect(result).toMatchObject({ status: "COMPLETED", output: { ok: true }, workerId: b.workerId });
    expect(job.processedBy).toBe(b.workerId);
    expect(lines(log)).toHaveLength(2);
    await waitFor(() => eventsOf(id).some((e) => e.type === "finished"));
    expect(eventsOf(id).filter((e) => e.type === "finished")).toHaveLength(1);
  });

  it("finishes the running job on SIGTERM, exits 0, and its records reach Postgres through the log", async () => {
    const ep = "ep-term";
    await dbh.db.insert(tenants).values({ id: "tenant-1", name: "t" });
    await dbh.db.insert(endpoints).values({ id: ep, tenantId: "tenant-1", name: ep, engine: { kind: "handler", module: join(fixtures, "count-runs.mjs") }, gpuTypeIds: [], workersMin: 0, workersMax: 1, idleTimeout: 5, scalerType: "QUEUE_DELAY", scalerValue: 4, executionTimeoutMs: 60_000, flashboot: false });
    const control = new ControlPlane({ redis, sql: dbh.sql, keys, log: () => {}, blockMs: 100 });
    control.start();
    const log = join(tmp, "term.log");
    const w = spawnWorker(ep, join(fixtures, "count-runs.mjs"));
    await inState(ep, w, "idle");
    const id = await enqueue(ep, { logFile: log, ms: 1000 });
    await waitFor(() => lines(log).length === 1);
    w.child.kill("SIGTERM");
    expect(await w.exit).toEqual({ code: 0, signal: null });
    const { result } = await finished(ep, id);
    expect(result).toMatchObject({ status: "COMPLETED", workerId: w.workerId });
    expect(lines(log)).toHaveLength(1);
    // The worker never wrote Postgres: the control plane projected its log entries.
    const row = await waitFor(async () => (await dbh.db.select().from(jobs).where(eq(jobs.id, id)))[0]);
    expect(row).toMatchObject({ status: "COMPLETED", tenantId: "tenant-1", endpointId: ep, workerId: w.workerId, outputJson: '{"ok":true}' });
    expect(row.executionTimeMs).toBe(result.finishedAt - result.startedAt);
    // Dated on Redis' clock (the log), not the worker's: on this one machine they agree closely.
    expect(Math.abs(row.finishedAt!.getTime() - result.finishedAt)).toBeLessThan(1000);
    expect(row.delayTimeMs).toEqual(expect.any(Number));
    const session = await waitFor(async () => {
      const [s] = await dbh.db.select().from(workerSessions).where(eq(workerSessions.id, w.workerId));
      return s?.state === "exited" ? s : undefined;
    });
    expect(session).toMatchObject({ state: "exited", endReason: "SIGTERM", endpointId: ep, tenantId: "tenant-1" });
    await control.stop();
  });

  it("hands a job that outlives the drain timeout back to the queue; another worker completes it", async () => {
    const ep = "ep-handback";
    const log = join(tmp, "handback.log");
    const a = spawnWorker(ep, join(fixtures, "count-runs.mjs"), { HEARTH_DRAIN_TIMEOUT_MS: "100" });
    await inState(ep, a, "idle");
    // Long enough that the 100 ms drain timeout, not the job, ends the first run.
    const id = await enqueue(ep, { logFile: log, ms: 3000 });
    await waitFor(() => lines(log).length === 1);
    a.child.kill("SIGTERM");
    expect(await a.exit).toEqual({ code: 0, signal: null });
    expect(a.output()).toContain('"handedBack":1');
    const back = await Job.fromId(queue(ep), id);
    expect(await back?.getState()).toBe("waiting");
    expect(back?.finishedOn).toBeUndefined();
    expect(eventsOf(id).some((e) => e.type === "finished")).toBe(false);
    const b = spawnWorker(ep, join(fixtures, "count-runs.mjs"));
    expect((await finished(ep, id)).result).toMatchObject({ status: "COMPLETED", workerId: b.workerId });
    expect(lines(log)).toHaveLength(2);
    b.child.kill("SIGTERM");
    expect(await b.exit).toEqual({ code: 0, signal: null });
  });
});
