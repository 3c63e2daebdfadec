import { fileURLToPath } from "node:url";
import { QueueEvents, Queue } from "bullmq";
import { Redis } from "ioredis";
import { compare, type BenchContext, type BenchResult } from "./support/bench-result.ts";
import { jsonLine, startChild } from "./support/child-process.ts";
import { CpuMeter } from "./support/cpu-usage.ts";
import { startHearth, noopHandler } from "./support/hearth-processes.ts";
import { summarize } from "./support/latency-stats.ts";

const floorWorkerEntry = fileURLToPath(new URL("./floors/bare-bullmq-worker.ts", import.meta.url));

/** One timed call; resolves to an error message when the round trip did not do what it should. */
type RoundTrip = () => Promise<string | undefined>;

/** `count` sequential round trips; latencies in ms, and the first few distinct failures. */
async function sequential(count: number, once: RoundTrip): Promise<{ samples: number[]; failures: number; firstFailures: string[] }> {
  const samples: number[] = [];
  const firstFailures: string[] = [];
  let failures = 0;
  for (let i = 0; i < count; i++) {
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
  return { samples, failures, firstFailures };
}

/**
 * `runsync` of a no-op handler on a warm worker vs a bare BullMQ add → process → finished round
 * trip on the same Redis. Each side runs alone: the floor's worker is stopped before Hearth starts.
 */
export async function runsyncLatency(ctx: BenchContext): Promise<BenchResult> {
  const { config, isolation, cleanup } = ctx;
  const problems: string[] = [];

  // ── floor: Queue.add + waitUntilFinished against a bare Worker in a child process
  ctx.log("floor: starting a bare BullMQ worker");
  const queueName = "floor-runsync";
  const floorWorker = await startChild(
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
  cleanup.push("close floor queue", async () => {
    await queueEvents.close();
    await queue.close();
    eventsConnection.disconnect();
  });
  await queueEvents.waitUntilReady();
  const floorTrip: RoundTrip = async () => {
    const job = await queue.add("noop", { input: {} }, { removeOnComplete: { age: 60 }, removeOnFail: { age: 60 } });
    const out = (await job.waitUntilFinished(queueEvents, 30_000)) as { input?: unknown } | undefined;
    return out && typeof out === "object" && "input" in out ? undefined : `unexpected return value ${JSON.stringify(out)}`;
  };
  ctx.log(`floor: ${config.warmup} warm-up + ${config.n} measured round trips`);
  const floorWarm = await sequential(config.warmup, floorTrip);
  const floorMeter = new CpuMeter({ bench: { self: process.pid }, worker: { self: floorWorker.pid }, redis: { comm: "redis-server" } });
  floorMeter.start();
  const floorRun = await sequential(config.n, floorTrip);
  const floorCpu = floorMeter.stop();
  if (floorWarm.failures + floorRun.failures > 0) {
    problems.push(`floor: ${floorWarm.failures + floorRun.failures} failed round trips: ${floorRun.firstFailures.concat(floorWarm.firstFailures).join("; ")}`);
  }
  if (!floorWorker.alive()) problems.push("floor: the BullMQ worker died during the run");
  await queueEvents.close();
  await queue.close();
  eventsConnection.disconnect();
  await floorWorker.stop();

  // ── Hearth: API + scheduler + one warm worker, POST /runsync over a kept-alive connection
  ctx.log("hearth: starting the API and the scheduler");
  const hearth = await startHearth({
    databaseUrl: isolation.databaseUrl,
    redisUrl: config.redisUrl,
    redisPrefix: isolation.redisPrefix,
    cleanup,
    apiNodeArgs: config.cpuProfDir ? ["--cpu-prof", "--cpu-prof-dir", config.cpuProfDir, "--cpu-prof-name", "api-runsync-latency.cpuprofile"] : undefined,
    echo: config.verbose,
  });
  const apiKey = await hearth.createTenant("bench-runsync");
  // workersMax 1: exactly one warm worker, as the floor has exactly one.
  const endpointId = await hearth.createEndpoint(apiKey, {
    name: "bench-noop",
    engine: { kind: "handler", module: noopHandler },
    workersMin: 1,
    workersMax: 1,
  });
  ctx.log(`hearth: endpoint ${endpointId}; waiting for an idle worker`);
  await hearth.waitIdleWorkers(apiKey, endpointId, 1);

  const url = `${hearth.url}/v2/${endpointId}/runsync`;
  const headers = { authorization: `Bearer ${apiKey}`, "content-type": "application/json" };
  const hearthTrip: RoundTrip = async () => {
    const res = await fetch(url, { method: "POST", headers, body: '{"input":{}}' });
    const body = (await res.json()) as { status?: string };
    if (res.status !== 200) return `HTTP ${res.status} ${JSON.stringify(body)}`;
    return body.status === "COMPLETED" ? undefined : `status ${body.status}`;
  };
  ctx.log(`hearth: ${config.warmup} warm-up + ${config.n} measured round trips`);
  const hearthWarm = await sequential(config.warmup, hearthTrip);
  const hearthMeter = new CpuMeter({
    bench: { self: process.pid },
    api: { self: hearth.api.pid },
    scheduler: { self: hearth.scheduler.pid },
    workers: { descendants: hearth.scheduler.pid },
    redis: { comm: "redis-server" },
    postgres: { comm: "postgres" },
  });
  hearthMeter.start();
  const hearthRun = await sequential(config.n, hearthTrip);
  const hearthCpu = hearthMeter.stop();
  if (hearthWarm.failures + hearthRun.failures > 0) {
    problems.push(`hearth: ${hearthWarm.failures + hearthRun.failures} failed runsync calls: ${hearthRun.firstFailures.concat(hearthWarm.firstFailures).join("; ")}`);
  }
  const health = await hearth.get(`/v2/${endpointId}/health`, apiKey);
  if (!hearth.api.alive() || !hearth.scheduler.alive()) problems.push("hearth: the API or the scheduler died during the run");
  ctx.log("hearth: stopping (the scheduler drains its worker)");
  await hearth.stop();

  const h = summarize(hearthRun.samples);
  const f = summarize(floorRun.samples);
  return {
    name: "runsync-latency",
    comparison: compare("p50 round trip", "ms", h.p50, f.p50, { op: "<=", value: 2 }),
    problems,
    settings: { n: config.n, warmup: config.warmup, handler: "images/handler/examples/noop.mjs", workers: 1 },
    hearth: { latencyMs: h, failures: hearthRun.failures, healthAfter: health },
    floor: { latencyMs: f, failures: floorRun.failures },
    cpu: { hearth: hearthCpu, floor: floorCpu },
  };
}
