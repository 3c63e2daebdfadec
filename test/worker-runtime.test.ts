import { randomUUID } from "node:crypto";
import { Job, Queue } from "bullmq";
import type { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { workerHeartbeat } from "../core/contracts/worker-state.ts";
import { compareStreamIds as compareIds, parseLogEntry, type LogEntry } from "../core/log/log-entry.ts";
import { jobResult, type JobData } from "../core/queue/job-catalog.ts";
import { RedisKeys } from "../core/queue/keys.ts";
import { connectRedis } from "../core/redis/connect.ts";
import type { Engine, EngineInfo, EngineJob, EngineResult } from "../worker/engines/engine.ts";
import { WorkerRuntime } from "../worker/runtime/worker-runtime.ts";
import { clearPrefix, TEST_REDIS_URL, uniquePrefix, waitFor } from "./support/services.ts";

/**
 * The runtime in this process, with engines written here: what no handler module can show
 * (aggregate streams, an engine deaf to its signal, unserialisable output, an unhealthy engine).
 * Redis is real.
 */
class ScriptedEngine implements Engine {
  healthy = true;
  constructor(
    private readonly info: EngineInfo,
    private readonly script: (job: EngineJob, signal: AbortSignal) => Promise<EngineResult>,
  ) {}
  async start() {
    return this.info;
  }
  async health() {
    return this.healthy;
  }
  run(job: EngineJob, signal: AbortSignal) {
    return this.script(job, signal);
  }
  async stop() {}
}

const prefix = uniquePrefix();
const keys = new RedisKeys(prefix);
let redis: Redis;
const runtimes: WorkerRuntime[] = [];
const connections: Redis[] = [];
const queues: Queue[] = [];

beforeAll(() => {
  redis = connectRedis(TEST_REDIS_URL);
});
afterEach(async () => {
  await Promise.all(runtimes.splice(0).map((r) => r.drain("test over")));
  await Promise.all(queues.splice(0).map((q) => q.close()));
  await Promise.all(connections.splice(0).map((c) => c.quit()));
});
afterAll(async () => {
  await clearPrefix(redis, prefix);
  await redis.quit();
});

async function boot(engine: Engine, overrides: { heartbeatMs?: number } = {}) {
  const endpointId = `ep-${randomUUID().slice(0, 8)}`;
  const workerId = `w-${randomUUID().slice(0, 8)}`;
  const conn = connectRedis(TEST_REDIS_URL);
  const subscriber = connectRedis(TEST_REDIS_URL);
  connections.push(conn, subscriber);
  const runtime = await WorkerRuntime.create({
    endpointId,
    workerId,
    redisPrefix: prefix,
    lockMs: 5000,
    heartbeatMs: overrides.heartbeatMs ?? 1000,
    drainTimeoutMs: 1000,
    engine,
    redis: conn,
    subscriber,
  });
  runtimes.push(runtime);
  runtime.start();
  const queue = new Queue(keys.queueName(endpointId), { connection: redis, prefix });
  queues.push(queue);
  const enqueue = async (input: unknown, overrides: Partial<JobData> = {}) => {
    const now = Date.now();
    const data: JobData = {
      endpointId,
      tenantId: "t",
      input,
      executionTimeoutMs: 60_000,
      lowPriority: false,
      submittedAt: now,
      expiresAt: now + 60_000,
      retentionMs: 60_000,
      retries: 0,
      ...overrides,
    };
    const jobId = randomUUID();
    await queue.add("job", data, { jobId });
    return jobId;
  };
  const result = async (jobId: string) => {
    const job = await waitFor(async () => {
      const j = await Job.fromId(queue, jobId);
      return j?.finishedOn ? j : undefined;
    });
    return jobResult.parse(job.returnvalue);
  };
  const state = async () => {
    const raw = await redis.hget(keys.workers(endpointId), workerId);
    return raw === null ? undefined : workerHeartbeat.parse(JSON.parse(raw)).state;
  };
  /** The endpoint's log, parsed. */
  const log = async (): Promise<LogEntry[]> => (await redis.xrange(keys.log(endpointId), "-", "+")).map(([id, fields]) => parseLogEntry(id, fields));
  return { runtime, endpointId, enqueue, result, state, log };
}

async function* chunks(values: unknown[]) {
  for (const v of values) yield v;
}

describe("worker runtime in process", () => {
  it("aggregates a stream into the output when the engine asks for it", async () => {
    const engine = new ScriptedEngine({ concurrency: 1, returnAggregateStream: true }, async () => ({ kind: "stream", chunks: chunks(["a", { b: 1 }, 3]) }));
    const w = await boot(engine);
    const id = await w.enqueue(null);
    expect(await w.result(id)).toMatchObject({ status: "COMPLETED", output: ["a", { b: 1 }, 3] });
    expect(await redis.lrange(keys.stream(w.endpointId, id), 0, -1)).toEqual(['{"output":"a"}', '{"output":{"b":1}}', '{"output":3}']);
  });

  it("aborts a running job on a cancel after a pause and resume, when a fresh BullMQ worker runs it", async () => {
    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    // Runs until its signal aborts: only a cancel that reaches this job's processor ends it.
    const engine = new ScriptedEngine({ concurrency: 1, returnAggregateStream: false }, (_job, signal) => {
      started();
      return new Promise((resolve) => signal.addEventListener("abort", () => resolve({ kind: "value", value: "aborted" })));
    });
    const w = await boot(engine);
    expect(await w.runtime.pause()).toBeUndefined();
    await w.runtime.resume();
    const id = await w.enqueue(null);
    await running;
    await redis.publish(keys.controlChannel(w.endpointId), JSON.stringify({ type: "cancel", jobId: id, endpointId: w.endpointId }));
    expect(await w.result(id)).toMatchObject({ status: "CANCELLED" });
  });

  it("times a job out even when the engine ignores its signal", async () => {
    const engine = new ScriptedEngine({ concurrency: 1, returnAggregateStream: false }, () => new Promise(() => {}));
    const w = await boot(engine);
    const id = await w.enqueue(null, { executionTimeoutMs: 200 });
    expect(await w.result(id)).toMatchObject({ status: "TIMED_OUT", error: "execution timeout of 200 ms exceeded" });
    // The stuck engine promise does not hold the slot: the next job runs.
    const ttl = await w.enqueue(null, { expiresAt: Date.now() + 300 });
    expect(await w.result(ttl)).toMatchObject({ status: "TIMED_OUT", error: "ttl expired" });
  });

  it("stops a stream that never yields again, and keeps what it had", async () => {
    const engine = new ScriptedEngine({ concurrency: 1, returnAggregateStream: false }, async () => ({
      kind: "stream",
      chunks: (async function* () {
        yield "first";
        await new Promise(() => {});
      })(),
    }));
    const w = await boot(engine);
    const id = await w.enqueue(null, { executionTimeoutMs: 200 });
    expect((await w.result(id)).status).toBe("TIMED_OUT");
    expect(await redis.lrange(keys.stream(w.endpointId, id), 0, -1)).toEqual(['{"output":"first"}']);
  });

  it("fails a job whose output or chunk is not JSON, instead of failing in BullMQ", async () => {
    const value = new ScriptedEngine({ concurrency: 1, returnAggregateStream: false }, async () => ({ kind: "value", value: { n: 1n } }));
    const v = await boot(value);
    expect(await v.result(await v.enqueue(null))).toMatchObject({ status: "FAILED", error: expect.stringMatching(/not JSON-serialisable/) });
    const stream = new ScriptedEngine({ concurrency: 1, returnAggregateStream: false }, async () => ({ kind: "stream", chunks: chunks([1, 2n]) }));
    const s = await boot(stream);
    expect(await s.result(await s.enqueue(null))).toMatchObject({ status: "FAILED", error: expect.stringMatching(/BigInt/) });
  });

  it("leaves the job's start and finish, and its own states, in the endpoint's log, in order", async () => {
    const engine = new ScriptedEngine({ concurrency: 1, returnAggregateStream: false }, async (job) => ({ kind: "value", value: job.input }));
    const w = await boot(engine);
    const id = await w.enqueue({ x: "\u0000\ud800" });
    const r = await w.result(id);
    expect(r.output).toEqual({ x: "\u0000\ud800" });
    await w.runtime.drain("test over");
    const log = await w.log();
    const job = log.filter((e) => "jobId" in e && e.jobId === id).map((e) => e.kind);
    expect(job).toEqual(["added", "active", "completed"]);
    const completed = log.find((e) => e.kind === "completed");
    // The envelope survives the log unchanged, NUL and lone surrogate included.
    expect(completed?.kind === "completed" && completed.result.output).toEqual({ x: "\u0000\ud800" });
    const states = log.flatMap((e) => (e.kind === "worker" ? [e.p.state] : []));
    expect(states[0]).toBe("initializing");
    expect(states).toContain("idle");
    expect(states.slice(-2)).toEqual(["draining", "exited"]);
    const ids = log.map((e) => e.id);
    expect([...ids].sort(compareIds)).toEqual(ids);
  });

  it("reports unhealthy while the engine fails its health check, and serves again after", async () => {
    const engine = new ScriptedEngine({ concurrency: 1, returnAggregateStream: false }, async () => ({ kind: "value", value: "ok" }));
    const w = await boot(engine, { heartbeatMs: 100 });
    await waitFor(async () => (await w.state()) === "idle");
    engine.healthy = false;
    await waitFor(async () => (await w.state()) === "unhealthy");
    expect(w.runtime.state).toBe("unhealthy");
    engine.healthy = true;
    await waitFor(async () => (await w.state()) === "idle");
    expect((await w.result(await w.enqueue(null))).status).toBe("COMPLETED");
  });
});
