import { fileURLToPath } from "node:url";
import autocannon from "autocannon";
import { compare, type BenchContext, type BenchResult } from "./support/bench-result.ts";
import { jsonLine, startChild } from "./support/child-process.ts";
import { CpuMeter, type CpuRole } from "./support/cpu-usage.ts";
import { startHearth, noopHandler } from "./support/hearth-processes.ts";

const honoFloorEntry = fileURLToPath(new URL("./floors/bare-hono-server.ts", import.meta.url));
const BODY = '{"input":{"prompt":"hello"}}';

interface LoadSummary {
  requestsPerSecond: number;
  total2xx: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  latencyMs: { p50: number; p90: number; p99: number; mean: number; max: number };
  durationSeconds: number;
}

function summarizeLoad(r: autocannon.Result): LoadSummary {
  return {
    requestsPerSecond: r.requests.average,
    total2xx: r["2xx"],
    non2xx: r.non2xx,
    errors: r.errors,
    timeouts: r.timeouts,
    latencyMs: { p50: r.latency.p50, p90: r.latency.p90, p99: r.latency.p99, mean: r.latency.average, max: r.latency.max },
    durationSeconds: r.duration,
  };
}

/** A warm-up, then the measured load, with CPU time per process group over the measured window. */
async function load(ctx: BenchContext, url: string, headers: Record<string, string>, roles: Record<string, CpuRole>) {
  const { config } = ctx;
  const opts = { url, method: "POST" as const, headers, body: BODY, connections: config.connections };
  const warm = summarizeLoad(await autocannon({ ...opts, duration: config.warmupSeconds }));
  const meter = new CpuMeter(roles);
  meter.start();
  const measured = summarizeLoad(await autocannon({ ...opts, duration: config.seconds }));
  const cpu = meter.stop();
  return { warm, measured, cpu };
}

function loadProblems(side: string, s: { warm: LoadSummary; measured: LoadSummary }): string[] {
  const out: string[] = [];
  for (const [phase, r] of [["warm-up", s.warm], ["measured", s.measured]] as const) {
    if (r.non2xx > 0) out.push(`${side} ${phase}: ${r.non2xx} non-2xx responses`);
    if (r.errors > 0) out.push(`${side} ${phase}: ${r.errors} connection errors (${r.timeouts} timeouts)`);
  }
  return out;
}

/**
 * `POST /run` throughput (jobs only queue: workersMax 0) vs a bare Hono JSON handler, both driven
 * by autocannon from this process. Each side runs alone: the floor server is stopped before Hearth starts.
 */
export async function runThroughput(ctx: BenchContext): Promise<BenchResult> {
  const { config, isolation, cleanup } = ctx;
  const problems: string[] = [];
  const jsonHeaders = { "content-type": "application/json" };

  // ── floor
  ctx.log("floor: starting a bare Hono server");
  const floorServer = await startChild(
    {
      name: "floor-hono",
      entry: honoFloorEntry,
      env: { ...process.env, PORT: "0" },
      echo: config.verbose,
      ready: jsonLine((o) => (o.t === "floor-hono" && typeof o.port === "number" ? o.port : undefined)),
    },
    cleanup,
  );
  ctx.log(`floor: ${config.warmupSeconds} s warm-up + ${config.seconds} s at ${config.connections} connections`);
  const floor = await load(ctx, `http://127.0.0.1:${floorServer.ready}/run`, jsonHeaders, {
    bench: { self: process.pid },
    server: { self: floorServer.pid },
  });
  problems.push(...loadProblems("floor", floor));
  if (!floorServer.alive()) problems.push("floor: the Hono server died during the run");
  await floorServer.stop();

  // ── Hearth
  ctx.log("hearth: starting the API and the scheduler");
  const hearth = await startHearth({
    databaseUrl: isolation.databaseUrl,
    redisUrl: config.redisUrl,
    redisPrefix: isolation.redisPrefix,
    cleanup,
    apiNodeArgs: config.cpuProfDir ? ["--cpu-prof", "--cpu-prof-dir", config.cpuProfDir, "--cpu-prof-name", "api-run-throughput.cpuprofile"] : undefined,
    echo: config.verbose,
  });
  const apiKey = await hearth.createTenant("bench-run");
  const endpointId = await hearth.createEndpoint(apiKey, {
    name: "bench-queue-only",
    engine: { kind: "handler", module: noopHandler },
    workersMin: 0,
    workersMax: 0,
  });
  const url = `${hearth.url}/v2/${endpointId}/run`;
  const headers = { ...jsonHeaders, authorization: `Bearer ${apiKey}` };
  const probe = await hearth.post(`/v2/${endpointId}/run`, apiKey, JSON.parse(BODY));
  if (typeof probe.id !== "string" || probe.status !== "IN_QUEUE") throw new Error(`unexpected /run answer ${JSON.stringify(probe)}`);

  ctx.log(`hearth: ${config.warmupSeconds} s warm-up + ${config.seconds} s at ${config.connections} connections`);
  const h = await load(ctx, url, headers, {
    bench: { self: process.pid },
    api: { self: hearth.api.pid },
    scheduler: { self: hearth.scheduler.pid },
    redis: { comm: "redis-server" },
    postgres: { comm: "postgres" },
  });
  problems.push(...loadProblems("hearth", h));
  // Every accepted job must be in the queue: a 200 that queued nothing would be a fast lie.
  const health = (await hearth.get(`/v2/${endpointId}/health`, apiKey)) as { jobs?: { inQueue?: number } };
  const expectedQueued = 1 + h.warm.total2xx + h.measured.total2xx;
  if (health.jobs?.inQueue !== expectedQueued) {
    problems.push(`hearth: ${health.jobs?.inQueue} jobs in queue after the run, expected ${expectedQueued} (one per 2xx)`);
  }
  if (!hearth.api.alive() || !hearth.scheduler.alive()) problems.push("hearth: the API or the scheduler died during the run");
  ctx.log("hearth: stopping (the API flushes its buffered job records)");
  const stopStarted = performance.now();
  await hearth.stop();
  const stopMs = Math.round(performance.now() - stopStarted);

  return {
    name: "run-throughput",
    comparison: compare("requests/s", "req/s", h.measured.requestsPerSecond, floor.measured.requestsPerSecond, { op: ">=", value: 0.4 }),
    problems,
    settings: { seconds: config.seconds, warmupSeconds: config.warmupSeconds, connections: config.connections, body: BODY, workersMax: 0 },
    hearth: { ...h.measured, warmUp: h.warm, jobsInQueueAfter: health.jobs?.inQueue, stopMs },
    floor: { ...floor.measured, warmUp: floor.warm },
    cpu: { hearth: h.cpu, floor: floor.cpu },
  };
}
