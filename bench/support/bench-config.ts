import { z } from "zod";

const posInt = (dflt: number, max: number) =>
  z.preprocess((v) => (v === "" || v === undefined ? dflt : Number(v)), z.number().int().min(1).max(max));

export const BENCH_NAMES = ["runsync-latency", "run-throughput", "llm-stream", "webhook-latency", "metrics-overhead", "limits-overhead", "guardrails-overhead", "runpod-worker", "cold-start", "llm-cold-start", "weights-pull"] as const;
export type BenchName = (typeof BENCH_NAMES)[number];

const schema = z.object({
  /** Measured sequential runsync round trips per side. */
  BENCH_N: posInt(500, 1_000_000),
  /** Unmeasured round trips per side before that. */
  BENCH_WARMUP: posInt(50, 100_000),
  /** autocannon duration per side, seconds. */
  BENCH_SECONDS: posInt(10, 3600),
  /** autocannon warm-up per side, seconds. */
  BENCH_WARMUP_SECONDS: posInt(2, 600),
  BENCH_CONNECTIONS: posInt(50, 10_000),
  /** llm-stream: measured sequential streamed completions per side. */
  BENCH_LLM_REQUESTS: posInt(20, 10_000),
  /** llm-stream: `max_tokens` of each completion (the tiny model's context is 1024 tokens). */
  BENCH_LLM_TOKENS: posInt(200, 1000),
  /** webhook-latency: measured sequential /run jobs with a webhook (and floor entries) per side; each takes ~0.1 s. */
  BENCH_WEBHOOK_JOBS: posInt(200, 100_000),
  /** cold-start: measured cold starts per side (after one unmeasured each); a Hearth one takes ~2–3 s with the worker's stop. */
  BENCH_COLD_STARTS: posInt(10, 1000),
  /** Runs of each benchmark, the median shown (bench/support/repeated-runs.ts). Default 5 for runsync-latency, run-throughput and llm-stream, 1 for the rest. */
  BENCH_RUNS: z.preprocess((v) => (v === "" || v === undefined ? undefined : Number(v)), z.number().int().min(1).max(100).optional()),
  /** Comma-separated subset of the benchmarks; all when unset. */
  BENCH_ONLY: z.preprocess(
    (v) => (v === "" || v === undefined ? BENCH_NAMES.join(",") : v),
    z
      .string()
      .transform((s) => s.split(",").map((x) => x.trim()).filter(Boolean))
      .pipe(z.array(z.enum(BENCH_NAMES)).min(1)),
  ),
  /** A directory: the Hearth API child then writes a V8 CPU profile there (slows it: numbers of such a run are not comparable). */
  BENCH_CPU_PROF: z.preprocess((v) => (v === "" ? undefined : v), z.string().optional()),
  /** "1": echo every child's output. */
  BENCH_VERBOSE: z.preprocess((v) => v === "1" || v === "true", z.boolean()),
  /** "1": exit 1 when a target is missed, not only when a run is invalid. */
  BENCH_STRICT: z.preprocess((v) => v === "1" || v === "true", z.boolean()),
  /**
   * Passed on to Hearth's processes. The harness waits for their info lines ("listening", "scheduler
   * started", a worker's timings), so a level that hides them is refused here rather than hanging a run.
   */
  HEARTH_LOG_LEVEL: z.preprocess(
    (v) => (v === "" ? undefined : v),
    z.enum(["trace", "debug", "info"], { message: "the benchmarks wait for their processes' info lines; use info (the default), debug or trace" }).optional(),
  ),
  REDIS_URL: z.preprocess((v) => (v === "" || v === undefined ? "redis://127.0.0.1:6379" : v), z.url({ protocol: /^rediss?$/ })),
  /** Postgres server URL without a database; the run creates and drops its own. */
  BENCH_PG_BASE_URL: z.preprocess((v) => (v === "" || v === undefined ? "postgres://postgres@127.0.0.1:5432" : v), z.url({ protocol: /^postgres(ql)?$/ })),
});

export interface BenchConfig {
  n: number;
  warmup: number;
  seconds: number;
  warmupSeconds: number;
  connections: number;
  llmRequests: number;
  llmTokens: number;
  webhookJobs: number;
  coldStarts: number;
  /** BENCH_RUNS; undefined: each benchmark's default (runsOf). */
  runs: number | undefined;
  only: BenchName[];
  cpuProfDir: string | undefined;
  verbose: boolean;
  strict: boolean;
  redisUrl: string;
  pgBaseUrl: string;
}

/** Reads the bench's knobs from the environment, naming each bad variable. */
export function loadBenchConfig(env: NodeJS.ProcessEnv): BenchConfig {
  const r = schema.safeParse(env);
  if (!r.success) {
    throw new Error(`invalid bench configuration:\n${r.error.issues.map((i) => `  ${i.path.join(".")}: ${i.message}`).join("\n")}`);
  }
  const c = r.data;
  return {
    n: c.BENCH_N,
    warmup: c.BENCH_WARMUP,
    seconds: c.BENCH_SECONDS,
    warmupSeconds: c.BENCH_WARMUP_SECONDS,
    connections: c.BENCH_CONNECTIONS,
    llmRequests: c.BENCH_LLM_REQUESTS,
    llmTokens: c.BENCH_LLM_TOKENS,
    webhookJobs: c.BENCH_WEBHOOK_JOBS,
    coldStarts: c.BENCH_COLD_STARTS,
    runs: c.BENCH_RUNS,
    only: c.BENCH_ONLY,
    cpuProfDir: c.BENCH_CPU_PROF,
    verbose: c.BENCH_VERBOSE,
    strict: c.BENCH_STRICT,
    redisUrl: c.REDIS_URL,
    pgBaseUrl: c.BENCH_PG_BASE_URL,
  };
}
