/**
 * `npm run bench`: runs Hearth's benchmarks, each against its floor in the same run, prints a
 * table and writes `bench/results/<name>-<timestamp>.json` and `bench/results/latest.json`.
 *
 * Isolation: each benchmark run gets a fresh database `hearth_bench_<random>` (created by the API's
 * migration, dropped after the run) and Redis prefix `{hearth-bench-<random>}` (its keys deleted). Every
 * server under test runs as its own child process; the load comes from this process; the two
 * sides of a benchmark never run at the same time.
 *
 * Knobs (env): BENCH_N (500), BENCH_WARMUP (50), BENCH_SECONDS (10), BENCH_WARMUP_SECONDS (2),
 * BENCH_CONNECTIONS (50), BENCH_LLM_REQUESTS (20), BENCH_LLM_TOKENS (200), BENCH_WEBHOOK_JOBS (200),
 * BENCH_COLD_STARTS (10), BENCH_RUNS (5 for runsync-latency, run-throughput and llm-stream, whose median run
 * is shown with the spread of all; 1 for the rest), BENCH_ONLY (runsync-latency,run-throughput,llm-stream,webhook-latency,metrics-overhead,limits-overhead,guardrails-overhead,
 * runpod-worker,cold-start,llm-cold-start,weights-pull), BENCH_LLM_GUARDRAILS=1 (llm-stream's endpoint with output PII redaction), BENCH_CPU_PROF=<dir>
 * (V8 profile of the Hearth API; see bench/cpu-profile-top.ts), BENCH_VERBOSE=1, BENCH_STRICT=1,
 * REDIS_URL, BENCH_PG_BASE_URL.
 *
 * Exit code: 1 when a run is invalid (errors, non-2xx, a dead child) or the bench itself failed;
 * a missed target exits 0 unless BENCH_STRICT=1.
 */
import { fileURLToPath } from "node:url";
import { Redis } from "ioredis";
import { coldStart } from "./cold-start.ts";
import { llmColdStart } from "./llm-cold-start.ts";
import { weightsPull } from "./weights-pull.ts";
import { llmStream } from "./llm-stream.ts";
import { guardrailsOverhead, limitsOverhead, metricsOverhead, runThroughput } from "./run-throughput.ts";
import { runsyncLatency } from "./runsync-latency.ts";
import { runpodWorker } from "./runpod-worker.ts";
import { webhookLatency } from "./webhook-latency.ts";
import { loadBenchConfig, type BenchName } from "./support/bench-config.ts";
import type { BenchContext, BenchResult } from "./support/bench-result.ts";
import { CleanupStack } from "./support/cleanup-stack.ts";
import { clearRedisPrefix, dropDatabase, newIsolation } from "./support/isolation.ts";
import { machineInfo, printReport, writeResults } from "./support/report.ts";
import { medianRuns, runsOf } from "./support/repeated-runs.ts";

const resultsDir = fileURLToPath(new URL("./results", import.meta.url));
/** A benchmark with more than one target returns one result (one table row) per target. */
const benchmarks: Record<BenchName, (ctx: BenchContext) => Promise<BenchResult | BenchResult[]>> = {
  "runsync-latency": runsyncLatency,
  "run-throughput": runThroughput,
  "llm-stream": llmStream,
  "webhook-latency": webhookLatency,
  "metrics-overhead": metricsOverhead,
  "limits-overhead": limitsOverhead,
  "guardrails-overhead": guardrailsOverhead,
  "runpod-worker": runpodWorker,
  "cold-start": coldStart,
  "llm-cold-start": llmColdStart,
  "weights-pull": weightsPull,
};

const cleanup = new CleanupStack();

/** A URL without its password, for the results file. */
function redact(url: string): string {
  const u = new URL(url);
  if (u.password) u.password = "***";
  return u.toString();
}

async function main(): Promise<number> {
  const config = loadBenchConfig(process.env);
  const startedAt = new Date();
  const log = (msg: string) => console.log(`[bench] ${msg}`);

  const redis = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
  // Registered first, so it runs last: after every child that uses it has stopped.
  cleanup.push("close bench redis", async () => redis.quit());
  const machine = machineInfo();
  log(`databases hearth_bench_<random> and redis prefixes {hearth-bench-<random>}, one per benchmark run, ${machine.cpus} cpus, node ${process.version}, load ${machine.loadAverage.join(" ")}`);
  if ((machine.loadAverage[0] ?? 0) > machine.cpus / 2) log(`!! the machine is busy (1-min load ${machine.loadAverage[0]} on ${machine.cpus} cpus): expect noisy numbers`);
  if (config.cpuProfDir) log(`!! profiling the API into ${config.cpuProfDir}: its numbers are slower than normal`);

  const results: BenchResult[] = [];
  for (const name of config.only) {
    const runs = runsOf(name, config.runs);
    const each: BenchResult[][] = [];
    for (let run = 1; run <= runs; run++) {
      const tag = runs > 1 ? ` (run ${run} of ${runs})` : "";
      log(`── ${name}${tag}`);
      // A database and prefix of its own: an earlier run's endpoints (workersMin 1 among them) would
      // otherwise be served by this run's scheduler too, their workers beside the ones measured.
      const isolation = newIsolation(config.pgBaseUrl);
      const dropIsolation = async () => {
        await dropDatabase(config.pgBaseUrl, isolation.databaseName);
        await clearRedisPrefix(redis, isolation.redisPrefix);
      };
      cleanup.push(`drop ${isolation.databaseName}`, dropIsolation);
      each.push([await benchmarks[name]({ config, isolation, redis, cleanup, log: (msg) => log(`${name}${tag}: ${msg}`) })].flat());
      await dropIsolation();
    }
    results.push(...medianRuns(each));
  }

  printReport(results);
  const name = config.only.length === Object.keys(benchmarks).length ? "all" : config.only.join("+");
  const file = await writeResults(resultsDir, name, startedAt, {
    timestamp: startedAt.toISOString(),
    machine,
    settings: { ...config, redisUrl: redact(config.redisUrl), pgBaseUrl: redact(config.pgBaseUrl), cpuProfDir: config.cpuProfDir ?? null },
    results,
  });
  log(`wrote ${file} and latest.json`);

  const invalid = results.some((r) => r.problems.length > 0);
  const missed = results.some((r) => !r.comparison.pass);
  if (invalid) console.error("[bench] !!! at least one run is INVALID: its numbers must not be used !!!");
  return invalid || (config.strict && missed) ? 1 : 0;
}

let exitCode: number | undefined;
/** Every path out goes through the cleanup; the first reason to exit sets the code (a signal beats the errors it causes). */
async function exit(code: number): Promise<never> {
  exitCode ??= code;
  await cleanup.run();
  process.exit(exitCode);
}

process.on("SIGINT", () => void exit(130));
process.on("SIGTERM", () => void exit(143));
process.on("unhandledRejection", (err) => {
  console.error("[bench] unhandled rejection:", err);
  void exit(1);
});

main().then(
  (code) => exit(code),
  (err: unknown) => {
    // After a signal, failures are the children we stopped; not worth a stack trace.
    if (exitCode === undefined) console.error(`[bench] failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    return exit(1);
  },
);
