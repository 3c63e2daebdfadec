import { fileURLToPath } from "node:url";
import autocannon from "autocannon";
import { compare, noiseWarnings, type BenchContext, type BenchResult } from "./support/bench-result.ts";
import { jsonLine, startChild } from "./support/child-process.ts";
import { CpuMeter, REST_OF_MACHINE, cpuSharesText, type CpuRole } from "./support/cpu-usage.ts";
import { apiProfileWindow, hearthCpuRoles, startHearthFor, noopHandler } from "./support/hearth-processes.ts";

const honoFloorEntry = fileURLToPath(new URL("./floors/bare-hono-server.ts", import.meta.url));
const honoBullmqEntry = fileURLToPath(new URL("./floors/bare-hono-bullmq-server.ts", import.meta.url));
const NAME = "run-throughput";
const BODY = '{"input":{"prompt":"hello"}}';
const JSON_HEADERS = { "content-type": "application/json" };

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

/** A warm-up, then the measured load, with CPU time per process group over the measured window (`performance.now()` bounds). */
async function load(ctx: BenchContext, url: string, headers: Record<string, string>, roles: Record<string, CpuRole>) {
  const { config } = ctx;
  const opts = { url, method: "POST" as const, headers, body: BODY, connections: config.connections };
  const warm = summarizeLoad(await autocannon({ ...opts, duration: config.warmupSeconds }));
  const meter = new CpuMeter(roles);
  meter.start();
  const from = performance.now();
  const measured = summarizeLoad(await autocannon({ ...opts, duration: config.seconds }));
  const until = performance.now();
  const cpu = meter.stop();
  return { warm, measured, cpu, from, until };
}

function loadProblems(side: string, s: { warm: LoadSummary; measured: LoadSummary }): string[] {
  const out: string[] = [];
  for (const [phase, r] of [["warm-up", s.warm], ["measured", s.measured]] as const) {
    if (r.non2xx > 0) out.push(`${side} ${phase}: ${r.non2xx} non-2xx responses`);
    if (r.errors > 0) out.push(`${side} ${phase}: ${r.errors} connection errors (${r.timeouts} timeouts)`);
  }
  return out;
}

/** The floor: a bare Hono server in a child process. */
async function floorSide(ctx: BenchContext) {
  const { config, cleanup } = ctx;
  const server = await startChild(
    {
      name: "floor-hono",
      entry: honoFloorEntry,
      env: { ...process.env, PORT: "0" },
      echo: config.verbose,
      ready: jsonLine((o) => (o.t === "floor-hono" && typeof o.port === "number" ? o.port : undefined)),
    },
    cleanup,
  );
  try {
    ctx.log(`floor: ${config.warmupSeconds} s warm-up + ${config.seconds} s at ${config.connections} connections`);
    const run = await load(ctx, `http://127.0.0.1:${server.ready}/run`, JSON_HEADERS, {
      bench: { self: process.pid },
      server: { self: server.pid },
    });
    const problems = loadProblems("floor", run);
    if (!server.alive()) problems.push("floor: the Hono server died during the run");
    return { run, problems };
  } finally {
    await server.stop();
  }
}

/**
 * The bare Hono handler plus one BullMQ add per request (no worker: jobs only queue, as on
 * Hearth's side): how much of the ratio's budget the queue's write alone takes. Not the table's
 * comparison, which stays the (Hearth over bare Hono).
 */
async function queueFloorSide(ctx: BenchContext) {
  const { config, isolation, cleanup } = ctx;
  const server = await startChild(
    {
      name: "floor-hono-bullmq",
      entry: honoBullmqEntry,
      env: { ...process.env, REDIS_URL: config.redisUrl, BENCH_REDIS_PREFIX: isolation.redisPrefix, BENCH_QUEUE: "floor-run" },
      echo: config.verbose,
      ready: jsonLine((o) => (o.t === "floor-hono-bullmq" && typeof o.port === "number" ? o.port : undefined)),
    },
    cleanup,
  );
  try {
    ctx.log(`floor with BullMQ: ${config.warmupSeconds} s warm-up + ${config.seconds} s at ${config.connections} connections`);
    const run = await load(ctx, `http://127.0.0.1:${server.ready}/run`, JSON_HEADERS, {
      bench: { self: process.pid },
      server: { self: server.pid },
      redis: { comm: "redis-server" },
    });
    const problems = loadProblems("floor with BullMQ", run);
    if (!server.alive()) problems.push("floor with BullMQ: the server died during the run");
    return { run, problems };
  } finally {
    await server.stop();
  }
}

/** Hearth: API + scheduler, an endpoint that may run no worker, so every accepted job stays queued. */
async function hearthSide(ctx: BenchContext, env?: NodeJS.ProcessEnv, options: { limits?: boolean; endpointExtra?: Record<string, unknown> } = {}) {
  const { config } = ctx;
  const hearth = await startHearthFor(ctx, NAME, env);
  let measured;
  try {
    const tenantKey = await hearth.createTenant("bench-run");
    const endpointId = await hearth.createEndpoint(tenantKey, {
      name: "bench-queue-only",
      engine: { kind: "handler", module: noopHandler },
      workersMin: 0,
      workersMax: 0,
      ...options.endpointExtra,
    });
    let apiKey = tenantKey;
    if (options.limits) {
      // Limits far above what the run reaches, on the tenant and on the key that drives the load:
      // every /run then takes two request buckets in one script (the heaviest request-rate case).
      const high = { requestsPerSecond: 1_000_000, burst: 1_000_000 };
      const tenantId = (await hearth.get(`/api/v1/endpoints/${endpointId}`, tenantKey)).tenantId as string;
      await hearth.put(`/admin/tenants/${tenantId}/limits`, hearth.adminToken, high);
      apiKey = (await hearth.post("/api/v1/keys", tenantKey, { name: "limited", scope: "run", rateLimits: high })).key as string;
    }
    const probe = await hearth.post(`/v2/${endpointId}/run`, apiKey, JSON.parse(BODY));
    if (typeof probe.id !== "string" || probe.status !== "IN_QUEUE") throw new Error(`unexpected /run answer ${JSON.stringify(probe)}`);

    ctx.log(`hearth: ${config.warmupSeconds} s warm-up + ${config.seconds} s at ${config.connections} connections`);
    const run = await load(ctx, `${hearth.url}/v2/${endpointId}/run`, { ...JSON_HEADERS, authorization: `Bearer ${apiKey}` }, hearthCpuRoles(hearth));
    const problems = loadProblems("hearth", run);
    // Every accepted job must be in the queue: a 200 that queued nothing would be a fast lie. autocannon does
    // not count requests still in flight when a phase ends (up to one per connection); the server queues them.
    const health = (await hearth.get(`/v2/${endpointId}/health`, apiKey)) as { jobs?: { inQueue?: number } };
    const inQueue = health.jobs?.inQueue ?? -1;
    const counted = 1 + run.warm.total2xx + run.measured.total2xx;
    if (inQueue < counted || inQueue > counted + 2 * config.connections) {
      problems.push(`hearth: ${inQueue} jobs in queue after the run, expected ${counted} (one per 2xx) plus at most ${2 * config.connections} in flight`);
    }
    if (!hearth.api.alive() || !hearth.scheduler.alive()) problems.push("hearth: the API or the scheduler died during the run");
    measured = { run, problems, inQueue };
  } finally {
    ctx.log("hearth: stopping");
    const stopStarted = performance.now();
    await hearth.stop();
    measured &&= { ...measured, stopMs: Math.round(performance.now() - stopStarted) };
  }
  // Node writes the profile when the API exits.
  return { ...measured, apiProfile: apiProfileWindow(config.cpuProfDir, NAME, hearth.api, measured.run.from, measured.run.until) };
}

/**
 * `POST /run` throughput (jobs only queue: workersMax 0) vs a bare Hono JSON handler, both driven
 * by autocannon from this process. The sides run one after the other, never together.
 */
export async function runThroughput(ctx: BenchContext): Promise<BenchResult> {
  const { config } = ctx;
  ctx.log("floor: starting a bare Hono server");
  const floor = await floorSide(ctx);
  ctx.log("floor with BullMQ: starting a bare Hono server that adds each request to a queue");
  const withQueue = await queueFloorSide(ctx);
  ctx.log("hearth: starting the API, the control plane and the scheduler");
  const hearth = await hearthSide(ctx);

  const cpu = { hearth: hearth.run.cpu, floor: floor.run.cpu };
  const h = hearth.run.measured;
  const f = floor.run.measured;
  const q = withQueue.run.measured;
  return {
    name: NAME,
    comparison: compare("requests/s", "req/s", h.requestsPerSecond, f.requestsPerSecond, { op: ">=", value: 0.4 }),
    problems: [...floor.problems, ...withQueue.problems, ...hearth.problems],
    warnings: noiseWarnings(cpu, REST_OF_MACHINE),
    settings: { seconds: config.seconds, warmupSeconds: config.warmupSeconds, connections: config.connections, body: BODY, workersMax: 0 },
    hearth: {
      ...h,
      warmUp: hearth.run.warm,
      jobsInQueueAfter: hearth.inQueue,
      stopMs: hearth.stopMs,
      ...(hearth.apiProfile ? { apiProfile: hearth.apiProfile } : {}),
    },
    floor: {
      ...f,
      warmUp: floor.run.warm,
      rows: {
        "with one BullMQ add per request (bare Hono handler + Queue.add)": {
          vsFloor: Number((q.requestsPerSecond / f.requestsPerSecond).toFixed(3)),
          vsFloorOf: "req/s",
          note: `${Math.round(q.requestsPerSecond)} req/s; cpu % of one core: ${cpuSharesText(withQueue.run.cpu)}`,
          timingsMs: { latency: { p50: q.latencyMs.p50, mean: q.latencyMs.mean } },
        },
      },
      withQueue: { ...q, warmUp: withQueue.run.warm },
    },
    cpu,
  };
}

type SideOptions = Parameters<typeof hearthSide>[2];

/** One side of an on/off comparison: what the log says, its Redis prefix's suffix, its environment and options. */
interface Toggle {
  log: string;
  prefix: string;
  env?: NodeJS.ProcessEnv;
  options?: SideOptions;
}

/**
 * `/run` throughput of the same Hearth with a feature off (the floor) and on, one after the other
 * in one run. A Redis prefix per side (inside the run's, so its cleanup clears both): the second
 * side's control plane must not spend the measured window projecting the first side's tens of
 * thousands of jobs.
 */
async function onOff(ctx: BenchContext, c: { name: string; metric: string; target: number; off: Toggle; on: Toggle; settings?: Record<string, unknown>; refusalsVoid?: string }): Promise<BenchResult> {
  const { config } = ctx;
  const prefix = ctx.isolation.redisPrefix;
  ctx.log(`floor: ${c.off.log}`);
  const off = await hearthSide(ctx, { ...c.off.env, HEARTH_REDIS_PREFIX: `${prefix}${c.off.prefix}` }, c.off.options);
  ctx.log(`hearth: ${c.on.log}`);
  const on = await hearthSide(ctx, { ...c.on.env, HEARTH_REDIS_PREFIX: `${prefix}${c.on.prefix}` }, c.on.options);
  const problems = [...off.problems, ...on.problems];
  if (c.refusalsVoid && on.run.measured.non2xx > 0) problems.push(c.refusalsVoid);
  const cpu = { hearth: on.run.cpu, floor: off.run.cpu };
  return {
    name: c.name,
    comparison: compare(c.metric, "req/s", on.run.measured.requestsPerSecond, off.run.measured.requestsPerSecond, { op: ">=", value: c.target }),
    problems,
    warnings: noiseWarnings(cpu, REST_OF_MACHINE),
    settings: { seconds: config.seconds, warmupSeconds: config.warmupSeconds, connections: config.connections, body: BODY, workersMax: 0, ...c.settings },
    hearth: { ...on.run.measured, warmUp: on.run.warm },
    floor: { ...off.run.measured, warmUp: off.run.warm },
    cpu,
  };
}

/**
 * The cost of the API's metrics on the hot path: `/run` throughput with metrics on (every request
 * counted and timed, `/metrics` served) against the same Hearth with `HEARTH_METRICS=off`. Target:
 * on ≥ 95 % of off.
 */
export function metricsOverhead(ctx: BenchContext): Promise<BenchResult> {
  return onOff(ctx, {
    name: "metrics-overhead",
    metric: "/run requests/s, metrics on vs off",
    target: 0.95,
    off: { log: "Hearth with HEARTH_METRICS=off", prefix: "off", env: { HEARTH_METRICS: "off" } },
    on: { log: "Hearth with metrics on (the default)", prefix: "on" },
  });
}

/**
 * The cost of rate limits on the hot path: `/run` throughput with request-rate limits configured on
 * the tenant and on the key (never reached) against the same Hearth without limits. Target: with
 * limits ≥ 90 % of without.
 */
export function limitsOverhead(ctx: BenchContext): Promise<BenchResult> {
  return onOff(ctx, {
    name: "limits-overhead",
    metric: "/run requests/s, rate limits on vs off",
    target: 0.9,
    off: { log: "Hearth without rate limits", prefix: "free" },
    on: { log: "Hearth with tenant and key rate limits configured (not reached)", prefix: "limited", options: { limits: true } },
    settings: { limits: "tenant + key, 1e6 req/s, burst 1e6" },
    refusalsVoid: "limits: some requests were refused; the limits must not be reached",
  });
}

/** Input and output guardrails as an endpoint would have them, none of which the bench's body triggers. */
const BENCH_GUARDRAILS = { input: { pii: "block", injection: "flag" }, output: { pii: "redact" } } as const;

/**
 * The cost of guardrails on the hot path: `/run` throughput on an endpoint with input and output
 * guardrails configured (every request's input scanned for PII and injection, not triggered; the
 * output part travels in the job's data) against the same Hearth on an endpoint without them.
 * Target: with ≥ 90 % of without. No external guard: that is an HTTP round trip per request by design.
 */
export function guardrailsOverhead(ctx: BenchContext): Promise<BenchResult> {
  return onOff(ctx, {
    name: "guardrails-overhead",
    metric: "/run requests/s, guardrails vs none",
    target: 0.9,
    off: { log: "Hearth, endpoint without guardrails", prefix: "plain" },
    on: { log: "Hearth, endpoint with guardrails configured (not triggered)", prefix: "guarded", options: { endpointExtra: { guardrails: BENCH_GUARDRAILS } } },
    settings: { guardrails: BENCH_GUARDRAILS },
  });
}
