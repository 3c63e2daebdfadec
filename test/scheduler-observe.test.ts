import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { connectRedis } from "../core/redis/connect.ts";
import { RedisKeys } from "../core/queue/keys.ts";
import { JOB_NAME, LOW_PRIORITY, type JobData } from "../core/queue/job-catalog.ts";
import type { WorkerHeartbeat } from "../core/contracts/worker-state.ts";
import { EndpointObserver } from "../scheduler/observe.ts";
import { WorkerLog } from "../scheduler/worker-log.ts";
import { parseLogEntry } from "../core/log/log-entry.ts";
import { TEST_REDIS_URL, clearPrefix, uniquePrefix } from "./support/services.ts";

const NOW = Date.now();
const EP = "ep-observe";

let redis: Redis;
let prefix: string;
let keys: RedisKeys;
let queue: Queue;

beforeAll(() => {
  redis = connectRedis(TEST_REDIS_URL);
});
afterAll(async () => {
  await redis.quit();
});
afterEach(async () => {
  await queue.close();
  await clearPrefix(redis, prefix);
});

function setup() {
  prefix = uniquePrefix();
  keys = new RedisKeys(prefix);
  queue = new Queue(keys.queueName(EP), { connection: redis, prefix });
  const workerLog = new WorkerLog(redis, keys);
  return new EndpointObserver({ redis, keys, staleHeartbeatMs: 3000, markLost: (endpointId, workerId) => workerLog.lost(endpointId, workerId, "stale") });
}

const data = (lowPriority = false): JobData => ({
  endpointId: EP,
  tenantId: "t",
  input: {},
  executionTimeoutMs: 60_000,
  lowPriority,
  submittedAt: NOW,
  expiresAt: NOW + 60_000,
  retentionMs: 60_000,
  retries: 0,
});

const hb = (id: string, over: Partial<WorkerHeartbeat>): string =>
  JSON.stringify({ id, endpointId: EP, state: "idle", running: 0, concurrency: 1, idleSince: NOW - 100, at: NOW, ...over });

describe("EndpointObserver on real Redis", () => {
  it("counts normal, low-priority and active jobs and dates the oldest waiting one", async () => {
    const observer = setup();
    await queue.add(JOB_NAME, data(), { jobId: "first", timestamp: NOW - 9000 });
    await queue.add(JOB_NAME, data(), { jobId: "second", timestamp: NOW - 1000 });
    await queue.add(JOB_NAME, data(true), { jobId: "low", priority: LOW_PRIORITY, timestamp: NOW - 20_000 });
    // An active job, as a worker's moveToActive leaves it.
    await redis.lpush(`${prefix}:${keys.queueName(EP)}:active`, "running-job");

    const snap = await observer.observe({ endpointId: EP, provided: [], stopping: new Set(), now: NOW });
    expect(snap).toEqual({ queued: 2, queuedLowPriority: 1, inProgress: 1, oldestQueuedAt: NOW - 9000, workers: [], metricsPorts: new Map() });
  });

  it("reads an empty endpoint as no demand", async () => {
    const observer = setup();
    const snap = await observer.observe({ endpointId: EP, provided: [], stopping: new Set(), now: NOW });
    expect(snap).toEqual({ queued: 0, queuedLowPriority: 0, inProgress: 0, oldestQueuedAt: null, workers: [], metricsPorts: new Map() });
  });

  it("merges provider workers with heartbeats: unheard is requested, stopping is draining", async () => {
    const observer = setup();
    await redis.hset(keys.workers(EP), "w-idle", hb("w-idle", { idleSince: NOW - 5000 }));
    await redis.hset(keys.workers(EP), "w-busy", hb("w-busy", { state: "running", idleSince: null, running: 1 }));
    await redis.hset(keys.workers(EP), "w-stop", hb("w-stop", {}));
    const provided = ["w-idle", "w-busy", "w-new", "w-stop"].map((workerId, i) => ({
      workerId,
      endpointId: EP,
      startedAt: NOW - 60_000 + i,
      state: "running" as const,
    }));

    const snap = await observer.observe({ endpointId: EP, provided, stopping: new Set(["w-stop"]), now: NOW });
    expect(snap.workers).toEqual([
      { id: "w-idle", state: "idle", idleSince: NOW - 5000, startedAt: NOW - 60_000 },
      { id: "w-busy", state: "running", idleSince: null, startedAt: NOW - 59_999 },
      { id: "w-new", state: "requested", idleSince: null, startedAt: NOW - 59_998 },
      { id: "w-stop", state: "draining", idleSince: null, startedAt: NOW - 59_997 },
    ]);
  });

  it("reads the /metrics ports the provider's workers report, not those of workers it does not run, nor a malformed one", async () => {
    const observer = setup();
    await redis.hset(keys.workers(EP), "w-ours", hb("w-ours", { metricsPort: 41001 }));
    await redis.hset(keys.workers(EP), "w-plain", hb("w-plain", {}));
    await redis.hset(keys.workers(EP), "w-bad", hb("w-bad", { metricsPort: 99_999 }));
    await redis.hset(keys.workers(EP), "w-foreign", hb("w-foreign", { metricsPort: 41004 }));
    const provided = ["w-ours", "w-plain", "w-bad"].map((workerId) => ({ workerId, endpointId: EP, startedAt: NOW - 1000, state: "running" as const }));
    const snap = await observer.observe({ endpointId: EP, provided, stopping: new Set(), now: NOW });
    expect(snap.metricsPorts).toEqual(new Map([["w-ours", 41001]]));
    // A port out of range is ignored, not the heartbeat: that worker is still seen idle.
    expect(snap.workers.find((w) => w.id === "w-bad")?.state).toBe("idle");
  });

  it("logs lost and removes stale and unreadable heartbeats of workers whose process is gone, keeps fresh ones as capacity", async () => {
    const observer = setup();
    await redis.hset(keys.workersSeen(EP), "w-ghost", String(NOW - 3001));
    await redis.hset(keys.workers(EP), "w-ghost", hb("w-ghost", { at: NOW - 3001 }));
    await redis.hset(keys.workers(EP), "w-junk", "{not json");
    await redis.hset(keys.workers(EP), "w-fresh", hb("w-fresh", { at: NOW - 500, idleSince: NOW - 800 }));
    // A running worker's stale heartbeat is kept: its process is alive, only slow to beat.
    await redis.hset(keys.workers(EP), "w-slow", hb("w-slow", { at: NOW - 60_000 }));
    const provided = [{ workerId: "w-slow", endpointId: EP, startedAt: NOW - 90_000, state: "running" as const }];

    const snap = await observer.observe({ endpointId: EP, provided, stopping: new Set(), now: NOW });
    expect(snap.workers.map((w) => w.id).sort()).toEqual(["w-fresh", "w-slow"]);
    expect(snap.workers.find((w) => w.id === "w-fresh")).toEqual({ id: "w-fresh", state: "idle", idleSince: NOW - 800, startedAt: NOW - 500 });
    expect(Object.keys(await redis.hgetall(keys.workers(EP))).sort()).toEqual(["w-fresh", "w-slow"]);
    // Each gone worker is logged lost once, the ghost at its last heartbeat as Redis received it.
    const lost = (await redis.xrange(keys.log(EP), "-", "+")).map(([id, f]) => parseLogEntry(id, f)).filter((e) => e.kind === "worker");
    expect(lost.map((e) => e.kind === "worker" && e.p).sort((a, b) => String(a && a.workerId).localeCompare(String(b && b.workerId)))).toEqual([
      { workerId: "w-ghost", state: "lost", reason: "stale", at: NOW - 3001 },
      { workerId: "w-junk", state: "lost", reason: "stale" },
    ]);
    // Observed again: the gone workers are not logged a second time.
    await observer.observe({ endpointId: EP, provided, stopping: new Set(), now: NOW + 1000 });
    expect((await redis.xrange(keys.log(EP), "-", "+")).length).toBe(lost.length);
  });
});
