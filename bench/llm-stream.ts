import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { ensureTinyLlamaFile } from "../core/gguf/tiny-llama-file.ts";
import { findEngineProcesses, type EngineProcess } from "../test/support/engine-processes.ts";
import { compare, noiseWarnings, type BenchContext, type BenchResult, type Comparison } from "./support/bench-result.ts";
import { CpuAccumulator, REST_OF_MACHINE, type CpuRole, type CpuShare } from "./support/cpu-usage.ts";
import { apiProfileWindow, hearthCpuRoles, startHearthFor } from "./support/hearth-processes.ts";
import { round } from "./support/latency-stats.ts";
import { sseTimingClient, type StreamTiming } from "./support/sse-timing-client.ts";
import { tokenStreamStats, type TokenStreamStats } from "./support/token-stream-stats.ts";

const NAME = "llm-stream";
/** Deterministic bytes, so one copy serves every run. */
const modelPath = join(tmpdir(), "hearth-bench", "tiny-llama.gguf");
/** The name the worker serves the model under (from the file name), given to the floor too. */
const MODEL_NAME = "tiny-llama";
const PROMPT = "Once upon a time, in a small village by the sea, there lived";
/** One engine thread, as the endpoint asks: the other core is left to Hearth's processes and the client. */
const ENGINE_ARGS = { threads: 1, "ctx-size": 1024 } as const;
/** Endpoint concurrency, which the worker passes to the engine as `--parallel`. */
const CONCURRENCY = 8;
const WARMUP_REQUESTS = 3;
/** A stream silent this long is broken, not slow (ms). */
const IDLE_TIMEOUT_MS = 30_000;
/** After this many failed requests a side gives up. */
const MAX_FAILURES = 5;
const MAX_ADDED_GAP_MS = 1;
/** Time to first token the platform may add to the engine's own, p50 (ms). */
const MAX_ADDED_TTFT_MS = 3;
const MIN_TOKENS_PER_SECOND_RATIO = 0.95;

interface SideRun {
  runs: StreamTiming[];
  stats: TokenStreamStats;
  failures: number;
  firstFailures: string[];
  cpu: Record<string, CpuShare> | undefined;
  /** `performance.now()` bounds of the measured part. */
  from: number;
  until: number;
}

/** One side of the comparison, ready to stream: how to send one request and whose CPU to count. */
interface Side {
  stream: () => Promise<StreamTiming>;
  roles: Record<string, CpuRole>;
  close: () => void;
}

/**
 * What both sides send. `include_usage` is what the worker asks of the engine for every streamed
 * job anyway, so with it the engine does the same work on both sides and Hearth relays the usage
 * chunk the client asked for.
 */
function requestBody(maxTokens: number): string {
  return JSON.stringify({ model: MODEL_NAME, prompt: PROMPT, max_tokens: maxTokens, temperature: 0, stream: true, stream_options: { include_usage: true } });
}

/**
 * Warm-up, then `n` streams per side, the sides alternating request by request (ABBA order), never
 * at once. Alternating puts both sides through the same moments of the machine: on this VM the
 * engine's own speed drifts by ±15% over a minute, which one side after the other measured as a
 * difference between them. CPU is counted per side over its own requests only.
 */
async function measureInterleaved(n: number, sides: { floor: Side; hearth: Side }): Promise<{ floor: SideRun; hearth: SideRun }> {
  const state = Object.fromEntries(
    (["floor", "hearth"] as const).map((name) => [name, { runs: [] as StreamTiming[], failures: 0, firstFailures: [] as string[], cpu: new CpuAccumulator(sides[name].roles) }]),
  ) as Record<"floor" | "hearth", { runs: StreamTiming[]; failures: number; firstFailures: string[]; cpu: CpuAccumulator }>;
  const once = async (name: "floor" | "hearth", measured: boolean) => {
    const st = state[name];
    if (st.failures >= MAX_FAILURES) return;
    if (measured) st.cpu.start();
    const run = await sides[name].stream();
    if (measured) st.cpu.stop();
    const problem = run.problem ?? (run.tokenTimes.length === 0 ? "no content chunk in the stream" : undefined);
    if (problem) {
      st.failures++;
      if (st.firstFailures.length < 3 && !st.firstFailures.includes(problem)) st.firstFailures.push(problem);
    } else if (measured) st.runs.push(run);
  };
  for (let i = 0; i < WARMUP_REQUESTS; i++) {
    await once("floor", false);
    await once("hearth", false);
  }
  const from = performance.now();
  for (let i = 0; i < n; i++) {
    const order = i % 4 === 0 || i % 4 === 3 ? (["floor", "hearth"] as const) : (["hearth", "floor"] as const);
    for (const name of order) await once(name, true);
  }
  const until = performance.now();
  const done = (name: "floor" | "hearth"): SideRun => {
    const st = state[name];
    return { runs: st.runs, stats: tokenStreamStats(st.runs), failures: st.failures, firstFailures: st.firstFailures, cpu: st.cpu.result(), from, until };
  };
  return { floor: done("floor"), hearth: done("hearth") };
}

function failureProblem(side: string, run: SideRun): string[] {
  if (run.failures === 0) return [];
  const gaveUp = run.failures >= MAX_FAILURES ? ", gave up" : "";
  return [`${side}: ${run.failures} failed streams (warm-up included${gaveUp}): ${run.firstFailures.join("; ")}`];
}

function logSide(ctx: BenchContext, side: string, s: TokenStreamStats): void {
  ctx.log(
    `${side}: ${s.requests} streams, ${s.tokens} content chunks (usage: ${s.completionTokens ?? "?"} tokens) in ${s.tokenReads} socket reads ` +
      `(${s.tokensPerTokenRead} per read; ${s.reads} reads, ${s.events} events in all); mean ${s.tokensPerSecond.mean} tok/s, ` +
      `gap p50 ${s.gapMs.p50} p90 ${s.gapMs.p90} ms, read gap p50 ${s.readGapMs.p50} ms, split gap p50 ${s.splitGapMs.p50} ms, ttft p50 ${s.ttftMs.p50} ms`,
  );
}

/**
 * The floor: the very engine process the worker supervises, streamed to directly on its own port.
 * Not a second engine started alike: two processes of the same server with the same flags ran
 * apart by ±15% in tokens/s on this VM, more than the difference being measured.
 */
function floorOf(ctx: BenchContext, engine: EngineProcess): Side {
  const client = sseTimingClient(engine.url, {}, IDLE_TIMEOUT_MS);
  const body = requestBody(ctx.config.llmTokens);
  return { stream: () => client.stream("/v1/completions", body), roles: { bench: { self: process.pid }, engine: { self: engine.pid } }, close: () => client.close() };
}

/** Hearth: API + scheduler + one warm worker supervising the embedded engine; the endpoint's OpenAI route, streamed. */
async function openHearth(ctx: BenchContext) {
  const { config } = ctx;
  const hearth = await startHearthFor(ctx, NAME);
  try {
    const apiKey = await hearth.createTenant("bench-llm");
    const endpointId = await hearth.createEndpoint(apiKey, {
      name: "bench-llm",
      engine: { kind: "openai", profile: "embedded", model: pathToFileURL(modelPath).href, args: ENGINE_ARGS, concurrency: CONCURRENCY },
      workersMin: 1,
      workersMax: 1,
      // BENCH_LLM_GUARDRAILS=1: every streamed chunk goes through the worker's output PII check (redact; not triggered by this prompt).
      ...(process.env.BENCH_LLM_GUARDRAILS === "1" && { guardrails: { output: { pii: "redact" } } }),
    });
    ctx.log(`hearth: endpoint ${endpointId}${process.env.BENCH_LLM_GUARDRAILS === "1" ? " (output guardrails on)" : ""}; waiting for an idle worker (it starts the engine)`);
    await hearth.waitIdleWorkers(apiKey, endpointId, 1, 120_000);
    const engine = findEngineProcesses(modelPath)[0];
    if (!engine) throw new Error(`the worker's engine (--model ${modelPath}) is not among the running processes`);
    const client = sseTimingClient(hearth.url, { authorization: `Bearer ${apiKey}` }, IDLE_TIMEOUT_MS);
    const body = requestBody(config.llmTokens);
    const side: Side = {
      close: () => client.close(),
      stream: () => client.stream(`/v2/${endpointId}/openai/v1/completions`, body),
      roles: { ...hearthCpuRoles(hearth), worker: { self: engine.parentPid }, engine: { self: engine.pid } },
    };
    return {
      side,
      floor: floorOf(ctx, engine),
      engineFlags: engine.flags,
      problems: () => {
        const problems: string[] = [];
        if (!hearth.api.alive() || !hearth.scheduler.alive()) problems.push("hearth: the API or the scheduler died during the run");
        if (findEngineProcesses(modelPath)[0]?.pid !== engine.pid) problems.push("hearth: the worker's engine process changed during the run (a crash and restart)");
        return problems;
      },
      health: () => hearth.get(`/v2/${endpointId}/health`, apiKey),
      /** Stops Hearth; returns the API's profile window of the measured part, when profiling. */
      close: async (from: number, until: number) => {
        client.close();
        side.close();
        ctx.log("hearth: stopping (the scheduler drains its worker, which stops the engine)");
        await hearth.stop();
        // Node writes the profile when the API exits.
        return apiProfileWindow(config.cpuProfDir, NAME, hearth.api, from, until);
      },
    };
  } catch (err) {
    await hearth.stop();
    throw err;
  }
}

/**
 * Hearth may add at most MAX_ADDED_GAP_MS to the engine's p50 gap: as a ratio target, that is
 * (floor + 1 ms) / floor. A Hearth p50 of 0 ms is no pass: it means the median token shared a socket
 * read with the one before it (batched delivery), which says nothing about added latency.
 */
function gapComparison(hearthP50: number, floorP50: number): Comparison {
  const added = hearthP50 - floorP50;
  const c = compare(`p50 gap/token (≤ engine + ${MAX_ADDED_GAP_MS} ms)`, "ms", hearthP50, floorP50, { op: "<=", value: round((floorP50 + MAX_ADDED_GAP_MS) / floorP50, 3) });
  return { ...c, pass: hearthP50 > 0 && Number.isFinite(added) && added <= MAX_ADDED_GAP_MS };
}

/** Hearth may add at most MAX_ADDED_TTFT_MS to the engine's p50 time to first token; as a ratio target, (floor + 3 ms) / floor. */
function ttftComparison(hearthP50: number, floorP50: number): Comparison {
  const c = compare(`p50 TTFT (≤ engine + ${MAX_ADDED_TTFT_MS} ms)`, "ms", hearthP50, floorP50, { op: "<=", value: round((floorP50 + MAX_ADDED_TTFT_MS) / floorP50, 3) });
  return { ...c, pass: Number.isFinite(hearthP50 - floorP50) && hearthP50 - floorP50 <= MAX_ADDED_TTFT_MS };
}

/** What the report prints per side (all ms). */
function printed(s: TokenStreamStats): Record<string, number> {
  return {
    "gap p50": s.gapMs.p50,
    "gap p90": s.gapMs.p90,
    "gap p99": s.gapMs.p99,
    "read gap p50": s.readGapMs.p50,
    "split gap p50": s.splitGapMs.p50,
    "ttft p50": s.ttftMs.p50,
    "ttft p90": s.ttftMs.p90,
  };
}

/**
 * A streamed completion through Hearth (API → job → worker → embedded engine → Redis → API → SSE)
 * vs the same request sent straight to the same engine server with the same flags: per-token gap
 * and tokens/s, one table row each. The sides run one after the other, never together.
 */
export async function llmStream(ctx: BenchContext): Promise<BenchResult[]> {
  const { config } = ctx;
  ensureTinyLlamaFile(modelPath);
  ctx.log("hearth: starting the API, the control plane and the scheduler");
  const hearthSide = await openHearth(ctx);
  const floorSide = hearthSide.floor;
  ctx.log(`${WARMUP_REQUESTS} warm-up + ${config.llmRequests} measured streams of ${config.llmTokens} tokens per side, alternating`);
  let measured: { floor: SideRun; hearth: SideRun } | undefined;
  let health: Record<string, unknown> | undefined;
  const sideProblems: string[] = [];
  let apiProfile: ReturnType<typeof apiProfileWindow> | undefined;
  try {
    measured = await measureInterleaved(config.llmRequests, { floor: floorSide, hearth: hearthSide.side });
    sideProblems.push(...hearthSide.problems());
    health = await hearthSide.health();
  } finally {
    floorSide.close();
    apiProfile = await hearthSide.close(measured?.hearth.from ?? 0, measured?.hearth.until ?? 0);
  }
  const floor = { run: measured.floor, problems: failureProblem("floor", measured.floor) };
  const hearth = { run: measured.hearth, problems: failureProblem("hearth", measured.hearth), health, engineFlags: hearthSide.engineFlags, apiProfile };
  logSide(ctx, "floor", floor.run.stats);
  logSide(ctx, "hearth", hearth.run.stats);

  const h = hearth.run.stats;
  const f = floor.run.stats;
  const problems = [...floor.problems, ...hearth.problems, ...sideProblems];
  // temperature 0 on a deterministic model: every stream on both sides must read the same, or the sides did not do the same work.
  const texts = new Set([...floor.run.runs, ...hearth.run.runs].map((r) => r.text));
  if (texts.size > 1) problems.push(`the streams' texts differ (${texts.size} variants): the two sides did not generate the same tokens`);

  const cpu = { hearth: hearth.run.cpu, floor: floor.run.cpu };
  const warnings = noiseWarnings(cpu, REST_OF_MACHINE);
  for (const [side, s] of [["floor", f], ["hearth", h]] as const) {
    if (s.completionTokens !== undefined && s.completionTokens !== s.tokens) {
      warnings.push(`${side}: ${s.tokens} content chunks for ${s.completionTokens} tokens (usage): a chunk is not exactly one token`);
    }
    if (s.tokensPerTokenRead > 1.05) {
      warnings.push(
        `${side}: tokens arrived batched (${s.tokens} in ${s.tokenReads} socket reads, ${s.tokensPerTokenRead} per read); tokens that share a read count a 0 ms gap, so read the read gaps, split gaps and tokens/s too`,
      );
    }
  }
  if (h.gapMs.p50 === 0) {
    warnings.push("hearth: the p50 gap is 0 ms because more than half the tokens arrived in the same socket read as the one before them; the gap row is not counted as a pass");
  }

  const addedGapP50Ms = round(h.gapMs.p50 - f.gapMs.p50);
  const tokensPerSecondRatio = round(h.tokensPerSecond.mean / f.tokensPerSecond.mean);
  const settings = {
    requests: config.llmRequests,
    warmup: WARMUP_REQUESTS,
    maxTokens: config.llmTokens,
    prompt: PROMPT,
    model: `tiny llama (${modelPath})`,
    engineFlags: hearth.engineFlags,
    floor: "the worker's own engine process, requested directly on its port",
    workers: 1,
    outputGuardrails: process.env.BENCH_LLM_GUARDRAILS === "1" ? { pii: "redact" } : "none",
    targets: { addedGapP50Ms: `<= ${MAX_ADDED_GAP_MS}`, tokensPerSecondRatio: `>= ${MIN_TOKENS_PER_SECOND_RATIO}`, addedTtftP50Ms: `<= ${MAX_ADDED_TTFT_MS}` },
  };
  const hearthDetails = {
    ...h,
    addedGapP50Ms,
    tokensPerSecondRatio,
    failures: hearth.run.failures,
    healthAfter: hearth.health,
    ...(hearth.apiProfile ? { apiProfile: hearth.apiProfile } : {}),
  };
  return [
    {
      name: NAME,
      comparison: gapComparison(h.gapMs.p50, f.gapMs.p50),
      problems,
      warnings,
      settings,
      hearth: { latencyMs: { ...printed(h), "added gap p50": addedGapP50Ms }, ...hearthDetails },
      floor: { latencyMs: printed(f), ...f, failures: floor.run.failures },
      cpu,
    },
    {
      name: NAME,
      comparison: compare("mean tokens/s", "tok/s", h.tokensPerSecond.mean, f.tokensPerSecond.mean, { op: ">=", value: MIN_TOKENS_PER_SECOND_RATIO }),
      problems,
      warnings: [],
      settings,
      // The full details are in the first row; this one prints the whole-stream times.
      hearth: { latencyMs: { "stream p50": h.streamMs.p50, "stream p90": h.streamMs.p90 }, tokensPerSecond: h.tokensPerSecond },
      floor: { latencyMs: { "stream p50": f.streamMs.p50, "stream p90": f.streamMs.p90 }, tokensPerSecond: f.tokensPerSecond },
      cpu: {},
    },
    {
      name: NAME,
      comparison: ttftComparison(h.ttftMs.p50, f.ttftMs.p50),
      problems,
      warnings: [],
      settings,
      hearth: { latencyMs: { "ttft p50": h.ttftMs.p50, "ttft p90": h.ttftMs.p90, "added ttft p50": round(h.ttftMs.p50 - f.ttftMs.p50) } },
      floor: { latencyMs: { "ttft p50": f.ttftMs.p50, "ttft p90": f.ttftMs.p90 } },
      cpu: {},
    },
  ];
}
