import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { Queue, QueueEvents } from "bullmq";
import { Redis } from "ioredis";
import { compare, type BenchContext, type BenchResult } from "./support/bench-result.ts";
import { noopHandler, startHearthFor } from "./support/hearth-processes.ts";
import { summarize, type LatencySummary } from "./support/latency-stats.ts";
import { parseLine, WorkerLines, type SeenWorker } from "./support/worker-lines.ts";
import { sessionColdStart, sessionTimings } from "./support/worker-sessions.ts";
import { performance } from "node:perf_hooks";

const NAME = "cold-start";
const floorEntry = fileURLToPath(new URL("./floors/bare-bullmq-cold-start.mjs", import.meta.url));
/** A cold start that takes this long is broken, not slow (ms). */
const START_TIMEOUT_MS = 60_000;

/** One cold start on the process's own timeline: ms since it started, per phase; `finished` on the bench's clock. */
interface ColdStart {
  /** Process start → the job's result seen by the bench (ms). */
  finishedMs: number;
  /** Phase → ms since the process started, from its own log lines. */
  phases: Record<string, number>;
}

/**
 * The floor, once: a job waits in a fresh queue, then a bare Node process (plain .mjs: bullmq +
 * ioredis, no loader) is spawned, takes it and exits. Its process start is dated from its own
 * lines (wall clock minus ms since start), as Hearth's worker is, so both sides start at exec.
 */
async function floorOnce(ctx: BenchContext, i: number): Promise<ColdStart> {
  const { config, isolation } = ctx;
  const queueName = `floor-cold-start-${i}`;
  const queue = new Queue(queueName, { connection: ctx.redis, prefix: isolation.redisPrefix });
  const eventsConnection = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
  const events = new QueueEvents(queueName, { connection: eventsConnection, prefix: isolation.redisPrefix });
  try {
    await events.waitUntilReady();
    const job = await queue.add("noop", { input: {} }, { removeOnComplete: { age: 60 }, removeOnFail: { age: 60 } });
    const finished = job.waitUntilFinished(events, START_TIMEOUT_MS).then(() => Date.now());
    const child = spawn(process.execPath, [floorEntry], {
      env: { ...process.env, REDIS_URL: config.redisUrl, BENCH_REDIS_PREFIX: isolation.redisPrefix, BENCH_QUEUE: queueName },
      stdio: ["ignore", "pipe", "inherit"],
    });
    const phases: Record<string, number> = {};
    let startedAt: number | undefined;
    createInterface({ input: child.stdout }).on("line", (line) => {
      const o = parseLine(line);
      if (o?.t !== "floor-cold-start" || typeof o.phase !== "string" || typeof o.ms !== "number" || typeof o.time !== "number") return;
      phases[o.phase] = o.ms;
      startedAt ??= o.time - o.ms;
    });
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    const finishedAt = await finished;
    const code = await exited;
    if (code !== 0) throw new Error(`floor: the bare worker exited ${code}`);
    if (startedAt === undefined) throw new Error("floor: the bare worker printed no phase line");
    return { finishedMs: finishedAt - startedAt, phases };
  } finally {
    await events.close();
    await queue.close();
    eventsConnection.disconnect();
  }
}

/** The worker phases a cold start is broken into (Hearth's worker logs each with `ms` since its start). */
const HEARTH_PHASES = ["boot", "engine-ready", "ready", "first-job"] as const;

/**
 * Hearth: API, control plane and scheduler; a no-op handler endpoint at zero workers (workersMax
 * 1, idleTimeout 1 s). Each cold start is one `/runsync` that finds no worker: the scheduler spawns
 * one (`node dist/worker/main.js`), which boots, takes the job and finishes it; the bench then
 * waits for that worker to go idle, stop and exit before the next. The worker's lines reach the
 * bench through the scheduler's output.
 */
async function hearthSide(ctx: BenchContext, count: number) {
  const workers = new WorkerLines();
  // No prestarted workers here: this comparison is a worker's process start (exec) to its first job
  // finished, and a prestarted worker's process started before anyone asked (its phases count from
  // its assignment). llm-cold-start measures from the request instead, with them.
  const hearth = await startHearthFor(ctx, NAME, { HEARTH_PRESTARTED_WORKERS: "0" }, workers.onLine);
  const samples: (ColdStart & { enqueueToSpawnMs: number; endToEndMs: number; session: Record<string, number> })[] = [];
  const resumed: number[] = [];
  const problems: string[] = [];
  const runsync = (endpointId: string, apiKey: string) =>
    fetch(`${hearth.url}/v2/${endpointId}/runsync?wait=${START_TIMEOUT_MS}`, {
      method: "POST",
      headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
      body: '{"input":{}}',
    });
  try {
    const apiKey = await hearth.createTenant("bench-cold-start");
    // flashboot off: each idle worker stops, so each /runsync below is a true cold start.
    const endpointId = await hearth.createEndpoint(apiKey, { name: "bench-cold-start", engine: { kind: "handler", module: noopHandler }, workersMin: 0, workersMax: 1, idleTimeout: 1, flashboot: false });
    // One unmeasured cold start first: the page cache and Redis warm up, as they are on a running host.
    for (let i = 0; i < count + 1; i++) {
      const before = workers.ids();
      const sentAt = Date.now();
      const res = await fetch(`${hearth.url}/v2/${endpointId}/runsync?wait=${START_TIMEOUT_MS}`, {
        method: "POST",
        headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
        body: '{"input":{}}',
      });
      const doneAt = Date.now();
      const body = (await res.json()) as { status?: string };
      if (res.status !== 200 || body.status !== "COMPLETED") {
        problems.push(`cold start ${i}: HTTP ${res.status} ${JSON.stringify(body)}`);
        break;
      }
      const fresh = workers.since(before);
      const [workerId, seen] = fresh[0] ?? [];
      if (fresh.length !== 1 || !workerId || !seen || seen.startedAt === undefined) {
        problems.push(`cold start ${i}: expected one new worker, saw ${fresh.length}`);
        break;
      }
      if (i > 0) {
        const session = sessionTimings(await sessionColdStart(hearth.url, apiKey, endpointId, workerId));
        if (Object.keys(session).length === 0) problems.push(`cold start ${i}: worker ${workerId}'s session shows no phases`);
        samples.push({ finishedMs: doneAt - seen.startedAt, phases: { ...seen.phases }, enqueueToSpawnMs: seen.startedAt - sentAt, endToEndMs: doneAt - sentAt, session });
      }
      // Back to zero: the worker stops after idleTimeout and exits.
      const deadline = Date.now() + START_TIMEOUT_MS;
      while (!seen.exited && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      if (!seen.exited) {
        problems.push(`cold start ${i}: worker ${workerId} did not stop within ${START_TIMEOUT_MS} ms`);
        break;
      }
    }
    // Resumed: a flashboot endpoint whose one worker is paused (process group stopped) between jobs.
    // Each sample is a /runsync that finds it paused: the scheduler resumes it and it answers.
    const pausing = await hearth.createEndpoint(apiKey, { name: "bench-resumed", engine: { kind: "handler", module: noopHandler }, workersMin: 0, workersMax: 1, idleTimeout: 1, flashboot: true });
    let worker: SeenWorker | undefined;
    for (let i = 0; i < count + 1 && problems.length === 0; i++) {
      const before = workers.ids();
      const pausesBefore = worker?.pauses ?? 0;
      const sentAt = performance.now();
      const res = await runsync(pausing, apiKey);
      const tookMs = performance.now() - sentAt;
      const body = (await res.json()) as { status?: string };
      if (res.status !== 200 || body.status !== "COMPLETED") {
        problems.push(`resumed ${i}: HTTP ${res.status} ${JSON.stringify(body)}`);
        break;
      }
      if (i === 0) worker = workers.since(before)[0]?.[1];
      else if (workers.since(before).length > 0) problems.push(`resumed ${i}: a new worker started instead of a resume`);
      if (i > 0) resumed.push(tookMs);
      // Paused again (idleTimeout, then the pause) before the next sample.
      const deadline = Date.now() + START_TIMEOUT_MS;
      while (worker && worker.pauses <= pausesBefore && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      // Its state reaches the scheduler's view with the next tick: leave it one.
      await new Promise((r) => setTimeout(r, 300));
      if (!worker || worker.pauses <= pausesBefore) problems.push(`resumed ${i}: the worker was not paused within ${START_TIMEOUT_MS} ms`);
    }
    if (!hearth.api.alive() || !hearth.scheduler.alive()) problems.push("hearth: the API or the scheduler died during the run");
  } finally {
    ctx.log("hearth: stopping");
    await hearth.stop();
  }
  return { samples, resumed, problems };
}

function phaseSummary(samples: ColdStart[], names: readonly string[]): Record<string, LatencySummary> {
  const out: Record<string, LatencySummary> = {};
  for (const name of names) {
    const values = samples.map((s) => s.phases[name]).filter((v): v is number => v !== undefined);
    if (values.length > 0) out[name] = summarize(values);
  }
  return out;
}

/**
 * A handler worker's cold start, from its process start to its first job finished, against a bare
 * Node process that connects to Redis and takes one BullMQ job, several times per side (the sides
 * one after the other). The p50s are compared; each side's phases come from its own log lines.
 */
export async function coldStart(ctx: BenchContext): Promise<BenchResult> {
  const count = ctx.config.coldStarts;
  ctx.log(`floor: 1 unmeasured + ${count} cold starts of a bare BullMQ worker`);
  const floor: ColdStart[] = [];
  const floorProblems: string[] = [];
  for (let i = 0; i < count + 1; i++) {
    try {
      const once = await floorOnce(ctx, i);
      if (i > 0) floor.push(once);
    } catch (err) {
      floorProblems.push(err instanceof Error ? err.message : String(err));
      break;
    }
  }
  ctx.log(`hearth: 1 unmeasured + ${count} cold starts of a handler worker (scale from zero through /runsync)`);
  const hearth = await hearthSide(ctx, count);

  const h = summarize(hearth.samples.map((s) => s.finishedMs));
  const f = summarize(floor.map((s) => s.finishedMs));
  return {
    name: NAME,
    comparison: compare("p50 process start → first job finished", "ms", h.p50, f.p50, { op: "<=", value: 3 }),
    problems: [...floorProblems, ...hearth.problems, ...(hearth.samples.length < count ? [`hearth: ${hearth.samples.length} of ${count} cold starts`] : [])],
    warnings: [],
    settings: { coldStarts: count, handler: "images/handler/examples/noop.mjs", worker: "node dist/worker/main.js", floor: "node bench/floors/bare-bullmq-cold-start.mjs" },
    hearth: {
      // Process start → the /runsync answer (the job finished), on the bench's clock.
      latencyMs: h,
      // ms since the worker's process started, from its own lines; then `finished` as above.
      phasesMs: {
        ...phaseSummary(hearth.samples, HEARTH_PHASES),
        // Spans as each worker's session records them (the event log → GET workers): what a user sees.
        ...phaseSummary(
          hearth.samples.map((s) => ({ finishedMs: s.finishedMs, phases: s.session })),
          [...new Set(hearth.samples.flatMap((s) => Object.keys(s.session)))].sort(),
        ),
        finished: h,
        // /runsync sent → the worker's process started: the scheduler's reaction (the activator's part), outside the ratio.
        "runsync→process start": summarize(hearth.samples.map((s) => s.enqueueToSpawnMs)),
        // What a caller sees: /runsync on an endpoint at zero workers, sent → answered.
        "runsync end to end": summarize(hearth.samples.map((s) => s.endToEndMs)),
        // Snapshot pool: /runsync on a flashboot endpoint whose worker is paused, sent → answered (target ≤ 100 ms p50).
        ...(hearth.resumed.length > 0 && { "resumed: runsync end to end": summarize(hearth.resumed) }),
      },
      samplesMs: hearth.samples.map((s) => s.finishedMs),
    },
    floor: { latencyMs: f, phasesMs: { ...phaseSummary(floor, ["ready", "taken"]), finished: f }, samplesMs: floor.map((s) => s.finishedMs) },
    cpu: {},
  };
}
