import { spawn } from "node:child_process";
import { chmod, mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { fileURLToPath, pathToFileURL } from "node:url";
import { CreateBucketCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { ensureTinyLlamaFile } from "../core/gguf/tiny-llama-file.ts";
import { coldStarts, PreloadWatch, resumedStarts, warmIdleStarts, type KindSamples, type S3Setup, type StartKindsContext } from "./llm-start-kinds.ts";
import { compare, type BenchContext, type BenchResult } from "./support/bench-result.ts";
import { startHearthFor } from "./support/hearth-processes.ts";
import { round, summarize, type LatencySummary } from "./support/latency-stats.ts";
import { LLM_PROMPT, until } from "./support/llm-first-token.ts";
import { S3RVER_CREDENTIALS, startS3rverProcess } from "./support/s3rver-process.ts";
import { WorkerLines } from "./support/worker-lines.ts";

const NAME = "llm-cold-start";
const floorEntry = fileURLToPath(new URL("./floors/bare-llama-first-token.mjs", import.meta.url));
/** The same deterministic model file llm-stream uses. */
const modelPath = join(tmpdir(), "hearth-bench", "tiny-llama.gguf");
/** Ratio of Hearth's zero-to-first-token to the bare process's spawn-to-first-token (issue 10). */
const TARGET = 1.3;
const BUCKET = "bench-models";
const KEY = "tiny-llama.gguf";
const ENGINE_ARGS = { threads: 1, "ctx-size": 1024 };

/** The floor once: spawn → the bare process's line at its first token, on the bench's clock. */
async function floorOnce(): Promise<number> {
  const started = performance.now();
  const child = spawn(process.execPath, [floorEntry, modelPath, LLM_PROMPT], { stdio: ["ignore", "pipe", "inherit"] });
  const firstToken = new Promise<number>((resolve, reject) => {
    createInterface({ input: child.stdout }).on("line", (line) => {
      if (line.includes('"first-token"')) resolve(performance.now() - started);
    });
    child.once("exit", (code) => reject(new Error(`floor: the bare llama process exited ${code} before its first token`)));
  });
  try {
    return await firstToken;
  } finally {
    await new Promise((r) => (child.exitCode === null ? child.once("exit", r) : r(undefined)));
  }
}

/** s3rver in its own process holding the tiny model, and the environment that lets Hearth's workers pull it into a cache of the bench's. */
async function modelInS3(dir: string): Promise<{ s3: S3Setup; env: NodeJS.ProcessEnv; stop: () => Promise<void> }> {
  const server = await startS3rverProcess(join(dir, "s3rver"));
  const client = new S3Client({ endpoint: server.endpoint, region: "us-east-1", forcePathStyle: true, credentials: S3RVER_CREDENTIALS, requestChecksumCalculation: "WHEN_REQUIRED", responseChecksumValidation: "WHEN_REQUIRED" });
  try {
    await client.send(new CreateBucketCommand({ Bucket: BUCKET }));
    await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: KEY, Body: await readFile(modelPath) }));
  } finally {
    client.destroy();
  }
  const s3: S3Setup = { endpoint: server.endpoint, bucket: BUCKET, key: KEY, cacheDir: join(dir, "weights-cache"), scratchDir: join(dir, "scratch") };
  await mkdir(s3.scratchDir, { recursive: true });
  const env: NodeJS.ProcessEnv = {
    HEARTH_S3_ENDPOINT: server.endpoint,
    // The operator's credentials reach only workers whose model is in an allow-listed bucket.
    HEARTH_MODEL_ALLOWLIST: `s3://${BUCKET}`,
    AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
    HEARTH_MODEL_CACHE_DIR: s3.cacheDir,
  };
  return { s3, env, stop: server.stop };
}

/** A start kind's row: its first token against the floor's p50, and every timing summarised. */
function row(k: KindSamples | undefined, floorP50: number): { vsFloor?: number; note?: string; timingsMs: Record<string, LatencySummary> } | undefined {
  const firstToken = k?.samples["first token"];
  if (!k || !firstToken?.length) return undefined;
  const kinds = Object.entries(k.sessionKinds).map(([kind, n]) => `${kind}×${n}`).join(", ");
  return {
    vsFloor: round(summarize(firstToken).p50 / floorP50, 3),
    ...(kinds && { note: `session kinds: ${kinds}` }),
    timingsMs: Object.fromEntries(Object.entries(k.samples).map(([name, xs]) => [name, summarize(xs)])),
  };
}

/**
 * The embedded LLM endpoint from zero workers to its first streamed token (request → first token:
 * the scheduler's reaction, the worker's boot, the engine's start and model load, one token) against
 * a bare node-llama-cpp process that loads the same model and writes one token (spawn → first
 * token), one after the other, `count` times each. `flashboot: false`: every Hearth start is cold.
 * That is the comparison (a file:// model). Beside it, one row per start kind, each request →
 * first token with its phases, against the same floor's p50: truly cold (an s3:// model from s3rver,
 * the weights cache emptied before each start; sub-floor: a plain GET of the object), cache-warm
 * (the same endpoint, the cache left filled), resumed (a paused flashboot worker) and warm idle.
 */
export async function llmColdStart(ctx: BenchContext): Promise<BenchResult> {
  const count = ctx.config.coldStarts;
  ensureTinyLlamaFile(modelPath);
  const problems: string[] = [];
  const warnings: string[] = [];
  ctx.log(`floor: ${count + 1} bare node-llama-cpp processes, spawn → first token (the first unmeasured)`);
  const floor: number[] = [];
  for (let i = 0; i <= count; i++) {
    const ms = await floorOnce();
    if (i > 0) floor.push(ms);
  }
  const f = summarize(floor);

  const dir = await mkdtemp(join(tmpdir(), "hearth-bench-llm-"));
  // The weights cache is inside: a worker running as root starts its engine as `nobody`, which must reach the model.
  await chmod(dir, 0o755);
  ctx.cleanup.push("remove the llm-cold-start directory", () => rm(dir, { recursive: true, force: true }));
  const s3 = await modelInS3(dir);
  ctx.cleanup.push("stop s3rver", s3.stop);

  ctx.log("hearth: starting the API, the control plane and the scheduler");
  const workers = new WorkerLines();
  const preloads = new PreloadWatch();
  const hearth = await startHearthFor(ctx, NAME, s3.env, (line) => {
    workers.onLine(line);
    preloads.onLine(line);
  });
  const kinds: Record<string, KindSamples> = {};
  const subFloor: number[] = [];
  try {
    const apiKey = await hearth.createTenant("bench-llm-cold-start");
    const c: StartKindsContext = { hearth, apiKey, workers, preloads, count, problems, warnings };
    const endpoint = (name: string, model: string, more: Record<string, unknown>) =>
      hearth.createEndpoint(apiKey, { name, engine: { kind: "openai", profile: "embedded", model, args: ENGINE_ARGS, concurrency: 1 }, workersMax: 1, idleTimeout: 1, ...more });
    const fileModel = pathToFileURL(modelPath).href;

    const headline = await endpoint("bench-llm-cold-start", fileModel, { workersMin: 0, flashboot: false });
    ctx.log(`hearth: ${count + 1} cold starts of endpoint ${headline} (the first unmeasured)`);
    kinds.cold = await coldStarts(c, headline, { label: "cold start" });

    // Each row on its own: one that fails is a problem of the run, not the end of the others.
    const attempt = async (label: string, run: () => Promise<KindSamples>) => {
      ctx.log(`hearth: ${label}, ${count + 1} starts (the first unmeasured)`);
      try {
        kinds[label] = await run();
      } catch (err) {
        problems.push(`${label}: ${err instanceof Error ? err.message : String(err)}`);
      }
    };
    const fromS3 = await endpoint("bench-llm-s3", `s3://${BUCKET}/${KEY}`, { workersMin: 0, flashboot: false });
    // A new endpoint's model is preloaded (scheduler/weights-preloader.ts): let that one run first, not into a measured start.
    await until(() => preloads.startedFor(fromS3) > 0, 5_000);
    await attempt("truly cold", () => coldStarts(c, fromS3, { label: "truly cold", emptyCache: { s3: s3.s3, subFloor }, expectCacheHit: false }));
    await attempt("cache-warm", () => coldStarts(c, fromS3, { label: "cache-warm", expectCacheHit: true }));
    const pausing = await endpoint("bench-llm-resumed", fileModel, { workersMin: 0, flashboot: true });
    await attempt("resumed", () => resumedStarts(c, pausing));
    const warm = await endpoint("bench-llm-warm", fileModel, { workersMin: 1, flashboot: false });
    await attempt("warm idle", () => warmIdleStarts(c, warm));
    if (!hearth.api.alive() || !hearth.scheduler.alive()) problems.push("hearth: the API or the scheduler died during the run");
  } finally {
    await hearth.stop();
    await s3.stop();
    await rm(dir, { recursive: true, force: true });
  }
  const hearthMs = kinds.cold?.samples["first token"] ?? [];
  if (hearthMs.length < count) problems.push(`hearth: ${hearthMs.length} of ${count} cold starts`);
  const h = summarize(hearthMs);
  const rows = Object.fromEntries(Object.entries(kinds).flatMap(([label, k]) => {
    const r = row(k, f.p50);
    return r ? [[label === "cold" ? "cold (file://, the comparison)" : label, r]] : [];
  }));
  return {
    name: NAME,
    comparison: compare("p50 zero → first streamed token (embedded engine, tiny model)", "ms", h.p50, f.p50, { op: "<=", value: TARGET }),
    problems,
    warnings,
    settings: { coldStarts: count, prompt: LLM_PROMPT, threads: 1, ctxSize: 1024, flashboot: false, s3: "s3rver (child process, loopback)", rows: Object.keys(rows) },
    // `rows`: one per start kind, request → first token and its phases (ms), its p50 over the floor's p50 (`vsFloor`, no target).
    hearth: { latencyMs: h, rows },
    // The truly cold row's sub-floor: a plain GET of the same object from the same s3rver into a file.
    floor: { latencyMs: f, ...(subFloor.length > 0 && { phasesMs: { "plain S3 GET of the model (truly cold's sub-floor)": summarize(subFloor) } }) },
    cpu: {},
  };
}
