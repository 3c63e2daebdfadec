import { fileURLToPath } from "node:url";
import { QueueEvents, Queue } from "bullmq";
import { Redis } from "ioredis";
import { compare, noiseWarnings, type BenchContext, type BenchResult } from "./support/bench-result.ts";
import { jsonLine, startChild } from "./support/child-process.ts";
import { CpuMeter, REST_OF_MACHINE, cpuSharesText, type CpuRole, type CpuShare } from "./support/cpu-usage.ts";
import { apiProfileWindow, hearthCpuRoles, startHearthFor, noopHandler } from "./support/hearth-processes.ts";
import { summarize } from "./support/latency-stats.ts";
import { keepAlivePoster } from "./support/keepalive-post.ts";

const NAME = "runsync-latency";
const floorWorkerEntry = fileURLToPath(new URL("./floors/bare-bullmq-worker.ts", import.meta.url));
const httpFloorEntry = fileURLToPath(new URL("./floors/bare-hono-bullmq-server.ts", import.meta.url));

/** One round trip; resolves to an error message when it did not do what it should. */
export type RoundTrip = () => Promise<string | undefined>;

/** A no-op round trip that takes this long is broken, not slow (ms). */
const TRIP_TIMEOUT_MS = 15_000;
/** After this many failed round trips a side gives up instead of timing out N times. */
const MAX_FAILURES = 10;

export interface SideRun {
  samples: number[];
  failures: number;
  firstFailures: string[];
  cpu: Record<string, CpuShare> | undefined;
  /** `performance.now()` bounds of the measured part. */
  from: number;
  until: number;
}

/** `warmup` unmeasured then `n` measured sequential round trips, with CPU per process group over the measured ones. */
export async function measure(warmup: number, n: number, once: RoundTrip, roles: Record<string, CpuRole>, afterWarmup = () => {}): Promise<SideRun> {
  const firstFailures: string[] = [];
  let failures = 0;
  const loop = async (count: number, samples: number[]) => {
    for (let i = 0; i < count && failures < MAX_FAILURES; i++) {
      const t0 = performance.now();
      let problem: string | undefined;
      try {
        problem = await once();
      } catch (err) {
        problem = err instanceof Error ? err.message : String(err);
      }
      samples.push(performance.now() - t0);
      if (problem) {
        failures++;
        if (firstFailures.length < 3 && !firstFailures.includes(problem)) firstFailures.push(problem);
      }
    }
  };
  await loop(warmup, []);
  afterWarmup();
  const meter = new CpuMeter(roles);
  const samples: number[] = [];
  meter.start();
  const from = performance.now();
  await loop(n, samples);
  const until = performance.now();
  return { samples, failures, firstFailures, cpu: meter.stop(), from, until };
}

export function failureProblem(side: string, run: SideRun): string[] {
  if (run.failures === 0) return [];
  const gaveUp = run.failures >= MAX_FAILURES ? ", gave up" : "";
  return [`${side}: ${run.failures} failed round trips (warm-up included${gaveUp}): ${run.firstFailures.join("; ")}`];
}

/** The floor: Queue.add + waitUntilFinished from this process against a bare Worker in a child process. */
async function floorSide(ctx: BenchContext) {
  const { config, isolation, cleanup } = ctx;
  const queueName = "floor-runsync";
  const worker = await startChild(
    {
      name: "floor-bullmq-worker",
      entry: floorWorkerEntry,
      env: { ...process.env, REDIS_URL: config.redisUrl, BENCH_REDIS_PREFIX: isolation.redisPrefix, BENCH_QUEUE: queueName },
      echo: config.verbose,
      ready: jsonLine((o) => (o.t === "floor-worker" && o.msg === "ready" ? true : undefined)),
    },
    cleanup,
  );
  const queue = new Queue(queueName, { connection: ctx.redis, prefix: isolation.redisPrefix });
  const eventsConnection = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
  const queueEvents = new QueueEvents(queueName, { connection: eventsConnection, prefix: isolation.redisPrefix });
  try {
    await queueEvents.waitUntilReady();
    const trip: RoundTrip = async () => {
      const job = await queue.add("noop", { input: {} }, { removeOnComplete: { age: 60 }, removeOnFail: { age: 60 } });
      const out = (await job.waitUntilFinished(queueEvents, TRIP_TIMEOUT_MS)) as { input?: unknown } | undefined;
      return out && typeof out === "object" && "input" in out ? undefined : `unexpected return value ${JSON.stringify(out)}`;
    };
    ctx.log(`floor: ${config.warmup} warm-up + ${config.n} measured round trips`);
    const run = await measure(config.warmup, config.n, trip, {
      bench: { self: process.pid },
      worker: { self: worker.pid },
      redis: { comm: "redis-server" },
    });
    const problems = failureProblem("floor", run);
    if (!worker.alive()) problems.push("floor: the BullMQ worker died during the run");
    const overHttp = await httpFloorSide(ctx, queueName, worker.pid);
    problems.push(...overHttp.problems);
    return { run, problems, overHttp: overHttp.run };
  } finally {
    await queueEvents.close();
    await queue.close();
    eventsConnection.disconnect();
    await worker.stop();
  }
}

/**
 * The same floor with the HTTP hop in it: a bare Hono handler doing the add and the wait, asked over
 * one kept-alive connection like Hearth. It shows how much of the ratio's budget the hop alone takes
 * (not the table's comparison, which stays the issue's: Hearth over bare BullMQ).
 */
async function httpFloorSide(ctx: BenchContext, queueName: string, workerPid: number) {
  const { config, isolation, cleanup } = ctx;
  const server = await startChild(
    {
      name: "floor-hono-bullmq",
      entry: httpFloorEntry,
      env: { ...process.env, REDIS_URL: config.redisUrl, BENCH_REDIS_PREFIX: isolation.redisPrefix, BENCH_QUEUE: queueName },
      echo: config.verbose,
      ready: jsonLine((o) => (o.t === "floor-hono-bullmq" && typeof o.port === "number" ? o.port : undefined)),
    },
    cleanup,
  );
  const client = keepAlivePoster(`http://127.0.0.1:${server.ready}`, { "content-type": "application/json" }, TRIP_TIMEOUT_MS);
  try {
    const trip: RoundTrip = async () => {
      const res = await client.post("/runsync", '{"input":{}}');
      if (res.status !== 200) return `HTTP ${res.status} ${res.text}`;
      const body = JSON.parse(res.text) as { status?: string; output?: { input?: unknown } };
      return body.status === "COMPLETED" && body.output && "input" in body.output ? undefined : `unexpected body ${res.text}`;
    };
    ctx.log(`floor over HTTP: ${config.warmup} warm-up + ${config.n} measured round trips`);
    const run = await measure(config.warmup, config.n, trip, {
      bench: { self: process.pid },
      server: { self: server.pid },
      worker: { self: workerPid },
      redis: { comm: "redis-server" },
    });
    const problems = failureProblem("floor over HTTP", run);
    if (!server.alive()) problems.push("floor over HTTP: the Hono server died during the run");
    return { run, problems };
  } finally {
    client.close();
    await server.stop();
  }
}

/** Hearth: API + scheduler + one warm worker; POST /runsync over one kept-alive connection (node:http). */
async function hearthSide(ctx: BenchContext) {
  const { config } = ctx;
  const hearth = await startHearthFor(ctx, NAME);
  let measured;
  try {
    const { apiKey, endpointId } = await hearth.oneWarmWorker("bench-runsync", "bench-noop", noopHandler);

    const client = keepAlivePoster(hearth.url, { authorization: `Bearer ${apiKey}`, "content-type": "application/json" }, TRIP_TIMEOUT_MS);
    const path = `/v2/${endpointId}/runsync`;
    // Hearth's own timings of each job (ms, API and worker clocks): which part of a round trip is queueing.
    const delayTimes: number[] = [];
    const executionTimes: number[] = [];
    const trip: RoundTrip = async () => {
      const res = await client.post(path, '{"input":{}}');
      const body = JSON.parse(res.text) as { status?: string; delayTime?: number; executionTime?: number };
      if (res.status !== 200) return `HTTP ${res.status} ${res.text}`;
      if (body.status !== "COMPLETED") return `status ${body.status}`;
      delayTimes.push(body.delayTime ?? Number.NaN);
      executionTimes.push(body.executionTime ?? Number.NaN);
      return undefined;
    };
    ctx.log(`hearth: ${config.warmup} warm-up + ${config.n} measured round trips`);
    const roles: Record<string, CpuRole> = { ...hearthCpuRoles(hearth), workers: { descendants: hearth.scheduler.pid } };
    const run = await measure(config.warmup, config.n, trip, roles, () => {
      delayTimes.length = 0;
      executionTimes.length = 0;
    });
    client.close();
    const problems = failureProblem("hearth", run);
    const health = await hearth.get(`/v2/${endpointId}/health`, apiKey);
    if (!hearth.api.alive() || !hearth.scheduler.alive()) problems.push("hearth: the API or the scheduler died during the run");
    // delayTime: submit (API, just before Queue.add) → start (worker, after moveToActive). executionTime: start →
    // result envelope (the handler and its bookkeeping). The rest is HTTP, the API, moveToFinished and the
    // "finished" event. Millisecond clocks.
    const phasesMs = { delayTime: summarize(delayTimes), executionTime: summarize(executionTimes) };
    measured = { run, problems, health, phasesMs };
  } finally {
    ctx.log("hearth: stopping (the scheduler drains its worker)");
    await hearth.stop();
  }
  // Node writes the profile when the API exits.
  return { ...measured, apiProfile: apiProfileWindow(config.cpuProfDir, NAME, hearth.api, measured.run.from, measured.run.until) };
}

/**
 * `runsync` of a no-op handler on a warm worker vs a bare BullMQ add → process → finished round
 * trip on the same Redis. The sides run one after the other, never together.
 */
export async function runsyncLatency(ctx: BenchContext): Promise<BenchResult> {
  ctx.log("floor: starting a bare BullMQ worker");
  const floor = await floorSide(ctx);
  ctx.log("hearth: starting the API, the control plane and the scheduler");
  const hearth = await hearthSide(ctx);

  const h = summarize(hearth.run.samples);
  const f = summarize(floor.run.samples);
  const o = summarize(floor.overHttp.samples);
  const cpu = { hearth: hearth.run.cpu, floor: floor.run.cpu };
  return {
    name: NAME,
    comparison: compare("p50 round trip", "ms", h.p50, f.p50, { op: "<=", value: 2 }),
    problems: [...floor.problems, ...hearth.problems],
    warnings: noiseWarnings(cpu, REST_OF_MACHINE),
    settings: { n: ctx.config.n, warmup: ctx.config.warmup, handler: "images/handler/examples/noop.mjs", workers: 1 },
    hearth: {
      latencyMs: h,
      phasesMs: hearth.phasesMs,
      failures: hearth.run.failures,
      healthAfter: hearth.health,
      ...(hearth.apiProfile ? { apiProfile: hearth.apiProfile } : {}),
    },
    floor: {
      latencyMs: f,
      failures: floor.run.failures,
      rows: {
        "over HTTP (bare Hono handler: add + wait)": {
          vsFloor: Number((o.p50 / f.p50).toFixed(3)),
          note: `cpu % of one core: ${cpuSharesText(floor.overHttp.cpu)}`,
          timingsMs: { roundTrip: { p50: o.p50, mean: o.mean } },
        },
      },
    },
    cpu,
  };
}
