import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { compare, noiseWarnings, type BenchContext, type BenchResult } from "./support/bench-result.ts";
import { REST_OF_MACHINE, type CpuRole } from "./support/cpu-usage.ts";
import { hearthCpuRoles, noopHandler, startHearthFor, type RunningHearth } from "./support/hearth-processes.ts";
import { keepAlivePoster } from "./support/keepalive-post.ts";
import { summarize } from "./support/latency-stats.ts";
import { failureProblem, measure, type RoundTrip } from "./runsync-latency.ts";

const NAME = "runpod-worker";
const PYTHON = "/usr/bin/python3";
const fixtures = fileURLToPath(new URL("../test/fixtures/handlers", import.meta.url));
const examples = fileURLToPath(new URL("../images/handler/examples", import.meta.url));
const TRIP_TIMEOUT_MS = 15_000;

/** Sequential `/runsync` round trips against one endpoint with exactly one warm worker. */
async function side(ctx: BenchContext, hearth: RunningHearth, label: string, engine: Record<string, unknown>) {
  const { config } = ctx;
  const apiKey = await hearth.createTenant(`bench-${label}`);
  const endpointId = await hearth.createEndpoint(apiKey, { name: label, engine, workersMin: 1, workersMax: 1 });
  await hearth.waitIdleWorkers(apiKey, endpointId, 1);
  const client = keepAlivePoster(hearth.url, { authorization: `Bearer ${apiKey}`, "content-type": "application/json" }, TRIP_TIMEOUT_MS);
  const trip: RoundTrip = async () => {
    const res = await client.post(`/v2/${endpointId}/runsync`, '{"input":{"n":1}}');
    if (res.status !== 200) return `HTTP ${res.status} ${res.text}`;
    const body = JSON.parse(res.text) as { status?: string };
    return body.status === "COMPLETED" ? undefined : `status ${body.status}`;
  };
  ctx.log(`${label}: ${config.warmup} warm-up + ${config.n} measured round trips`);
  const roles: Record<string, CpuRole> = { ...hearthCpuRoles(hearth), workers: { descendants: hearth.scheduler.pid } };
  const run = await measure(config.warmup, config.n, trip, roles);
  client.close();
  return { run, problems: failureProblem(label, run) };
}

/**
 * `/runsync` through a RunPod Python worker (the protocol stand-in, over its Hearth worker's
 * gateway) next to a JavaScript handler worker, in one Hearth, one after the other. The Python
 * worker holds two slots, so a take is always waiting when a job arrives: with one slot the SDK
 * sleeps a whole second after each job before it asks again (runpod-python's `get_jobs`, "Queue is
 * full"), and that second, not Hearth, would be what is measured; the one-slot p50 is reported beside.
 */
export async function runpodWorker(ctx: BenchContext): Promise<BenchResult> {
  if (!existsSync(PYTHON)) throw new Error(`${NAME}: needs ${PYTHON}`);
  const hearth = await startHearthFor(ctx, NAME, { HEARTH_HANDLER_DIRS: `${examples}:${fixtures}` });
  const python = (slots: number) => ({
    kind: "runpod",
    command: [PYTHON, "-u", "handler.py"],
    cwd: `${fixtures}/runpod-worker`,
    concurrency: slots,
    env: { RUNPOD_SKIP_AUTO_SYSTEM_CHECKS: "true", WORKER_CONCURRENCY: String(slots) },
  });
  let js, py, pyOneSlot;
  try {
    js = await side(ctx, hearth, "js-handler", { kind: "handler", module: noopHandler });
    py = await side(ctx, hearth, "python-worker", python(2));
    // Fewer round trips: each waits out the SDK's one-second sleep.
    pyOneSlot = await side({ ...ctx, config: { ...ctx.config, n: Math.min(ctx.config.n, 20), warmup: Math.min(ctx.config.warmup, 3) } }, hearth, "python-worker-1-slot", python(1));
  } finally {
    await hearth.stop();
  }
  const j = summarize(js.run.samples);
  const p = summarize(py.run.samples);
  const one = summarize(pyOneSlot.run.samples);
  const cpu = { hearth: py.run.cpu, floor: js.run.cpu };
  return {
    name: NAME,
    comparison: compare("p50 runsync, Python worker vs JS handler", "ms", p.p50, j.p50, { op: "<=", value: 3 }),
    problems: [...js.problems, ...py.problems, ...pyOneSlot.problems],
    warnings: noiseWarnings(cpu, REST_OF_MACHINE),
    settings: { n: ctx.config.n, warmup: ctx.config.warmup, python: "test/fixtures/handlers/runpod-worker/handler.py (runpod-python 1.12.0 stand-in)", pythonSlots: 2, js: "images/handler/examples/noop.mjs" },
    hearth: { latencyMs: p, oneSlotLatencyMs: one, oneSlotNote: "the SDK sleeps 1 s after a job when all its slots are busy" },
    floor: { latencyMs: j },
    cpu,
  };
}
