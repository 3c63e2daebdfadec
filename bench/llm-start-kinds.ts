import { createWriteStream } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { GetObjectCommand, S3Client } from "@aws-sdk/client-s3";
import type { RunningHearth } from "./support/hearth-processes.ts";
import { firstStreamedToken, until, waitForIdle, waitForZero } from "./support/llm-first-token.ts";
import { S3RVER_CREDENTIALS } from "./support/s3rver-process.ts";
import { parseLine, type SeenWorker, type WorkerLines } from "./support/worker-lines.ts";
import { sessionColdStart, sessionTimings } from "./support/worker-sessions.ts";

/** One start kind's samples: timing name → ms per measured start ("first token" first), and the start kinds the sessions reported. */
export interface KindSamples {
  samples: Record<string, number[]>;
  sessionKinds: Record<string, number>;
}

/** The weights-cache side of the truly cold and cache-warm rows: the model in s3rver, and the cache the workers use. */
export interface S3Setup {
  endpoint: string;
  bucket: string;
  key: string;
  /** HEARTH_MODEL_CACHE_DIR of every worker: emptied before each truly cold start. */
  cacheDir: string;
  /** Where the plain GET (the sub-floor) writes its copy. */
  scratchDir: string;
}

/** The scheduler's preloads (scheduler/weights-preloader.ts) per endpoint, from its lines: one writing the cache would spoil a truly cold start. */
export class PreloadWatch {
  private readonly started = new Map<string, number>();
  private readonly running = new Map<string, number>();

  readonly onLine = (line: string): void => {
    const o = parseLine(line);
    if (typeof o?.endpointId !== "string" || typeof o.msg !== "string") return;
    const id = o.endpointId;
    if (o.msg === "preload started") {
      this.started.set(id, (this.started.get(id) ?? 0) + 1);
      this.running.set(id, (this.running.get(id) ?? 0) + 1);
    } else if (o.msg === "preload finished" || o.msg === "preload failed") {
      this.running.set(id, Math.max(0, (this.running.get(id) ?? 0) - 1));
    }
  };

  startedFor(endpointId: string): number {
    return this.started.get(endpointId) ?? 0;
  }

  runningFor(endpointId: string): number {
    return this.running.get(endpointId) ?? 0;
  }
}

export interface StartKindsContext {
  hearth: RunningHearth;
  apiKey: string;
  workers: WorkerLines;
  preloads: PreloadWatch;
  /** Measured starts per kind; one unmeasured comes first. */
  count: number;
  /** Where each row adds what voids its numbers, and what only makes them doubtful. */
  problems: string[];
  warnings: string[];
}

const completionsUrl = (c: StartKindsContext, endpointId: string) => `${c.hearth.url}/v2/${endpointId}/openai/v1/completions`;

function push(into: KindSamples, name: string, ms: number | undefined): void {
  if (ms === undefined || !Number.isFinite(ms)) return;
  (into.samples[name] ??= []).push(ms);
}

/** A plain GET of the model from s3rver, written to a file (a fresh client, as a fresh worker has): the truly cold row's sub-floor, ms. */
export async function plainGet(s3: S3Setup): Promise<number> {
  const started = performance.now();
  const client = new S3Client({ endpoint: s3.endpoint, region: "us-east-1", forcePathStyle: true, credentials: S3RVER_CREDENTIALS, responseChecksumValidation: "WHEN_REQUIRED" });
  const file = join(s3.scratchDir, "plain-get.gguf");
  try {
    const res = await client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: s3.key }));
    await pipeline(res.Body as Readable, createWriteStream(file));
    return performance.now() - started;
  } finally {
    client.destroy();
    await rm(file, { force: true });
  }
}

export interface ColdStartsOptions {
  /** Row name, in problems. */
  label: string;
  /** Empty the weights cache before each start (truly cold), and time a plain GET of the model into `subFloor`. */
  emptyCache?: { s3: S3Setup; subFloor: number[] };
  /** What the session's `cacheHit` must say; a start that says otherwise is a problem (its row would be mislabelled). */
  expectCacheHit?: boolean;
}

/**
 * Starts from zero workers (`flashboot: false`, `idleTimeout` 1 s): each a streamed completion that
 * finds no worker; the first unmeasured. Per start: request → first token; request → the worker's
 * process start (the activator's reaction, on the wall clock: both ends on this host); its session's
 * phases once its first job is recorded. Before the next, its worker has stopped and exited.
 */
export async function coldStarts(c: StartKindsContext, endpointId: string, o: ColdStartsOptions): Promise<KindSamples> {
  const out: KindSamples = { samples: {}, sessionKinds: {} };
  let previous: SeenWorker | undefined;
  for (let i = 0; i <= c.count; i++) {
    await waitForZero(c.hearth.url, c.apiKey, endpointId);
    if (previous && !(await until(() => previous!.exited))) throw new Error(`${o.label} ${i}: the last worker did not exit`);
    if (o.emptyCache) {
      // No worker runs now; a preload (the scheduler warms the cache of a new endpoint) must not either.
      if (!(await until(() => c.preloads.runningFor(endpointId) === 0))) throw new Error(`${o.label} ${i}: a preload did not finish`);
      await rm(o.emptyCache.s3.cacheDir, { recursive: true, force: true });
      const getMs = await plainGet(o.emptyCache.s3);
      if (i > 0) o.emptyCache.subFloor.push(getMs);
    }
    const preloadsBefore = c.preloads.startedFor(endpointId);
    const before = c.workers.ids();
    const sentAt = Date.now();
    const ms = await firstStreamedToken(completionsUrl(c, endpointId), c.apiKey);
    const fresh = c.workers.since(before, endpointId);
    const [workerId, seen] = fresh[0] ?? [];
    if (fresh.length !== 1 || !workerId || !seen) throw new Error(`${o.label} ${i}: expected one new worker, saw ${fresh.length}`);
    previous = seen;
    if (i === 0) continue;
    push(out, "first token", ms);
    if (seen.startedAt !== undefined) push(out, "request → worker process start", seen.startedAt - sentAt);
    const session = await sessionColdStart(c.hearth.url, c.apiKey, endpointId, workerId);
    if (!session) c.problems.push(`${o.label} ${i}: worker ${workerId}'s session shows no phases`);
    for (const [k, v] of Object.entries(sessionTimings(session))) push(out, k, v);
    const kind = String(session?.kind);
    out.sessionKinds[kind] = (out.sessionKinds[kind] ?? 0) + 1;
    if (o.expectCacheHit !== undefined && session && session.cacheHit !== o.expectCacheHit) {
      c.problems.push(`${o.label} ${i}: worker ${workerId}'s session says cacheHit ${String(session.cacheHit)} (kind ${kind}), expected ${o.expectCacheHit}`);
    }
    if (c.preloads.startedFor(endpointId) > preloadsBefore) c.warnings.push(`${o.label} ${i}: the scheduler preloaded the endpoint's model during the start (a process beside it taking CPU and disk)`);
  }
  return out;
}

/**
 * A `flashboot: true` endpoint whose one worker is paused between requests (idle 1 s, then its
 * engine sleeps: the model unloaded; the group SIGSTOPped): each request resumes it (SIGCONT, the
 * engine wakes and reloads the model) → first token. Also: request → the worker began its resume,
 * and its own resume span. The first request cold-starts the worker, unmeasured.
 */
export async function resumedStarts(c: StartKindsContext, endpointId: string): Promise<KindSamples> {
  const out: KindSamples = { samples: {}, sessionKinds: {} };
  let worker: SeenWorker | undefined;
  for (let i = 0; i <= c.count; i++) {
    const before = c.workers.ids();
    const pausesBefore = worker?.pauses ?? 0;
    const resumesBefore = worker?.resumes ?? 0;
    const sentAt = Date.now();
    const ms = await firstStreamedToken(completionsUrl(c, endpointId), c.apiKey);
    if (i === 0) worker = c.workers.since(before, endpointId)[0]?.[1];
    else if (c.workers.since(before, endpointId).length > 0) throw new Error(`resumed ${i}: a new worker started instead of a resume`);
    if (!worker) throw new Error(`resumed ${i}: no worker seen`);
    if (i > 0) {
      push(out, "first token", ms);
      // The worker's `resumed` line reaches the bench through the scheduler: leave it a moment.
      const w = worker;
      if (await until(() => w.resumes > resumesBefore, 5_000)) {
        push(out, "request → resume began", w.lastResume && w.lastResume.startedAt - sentAt);
        push(out, "worker resume (engine wake, queue)", w.lastResume?.resumeMs);
        out.sessionKinds.resumed = (out.sessionKinds.resumed ?? 0) + 1;
      } else c.problems.push(`resumed ${i}: the worker logged no resume`);
    }
    // Paused again (idleTimeout, then the pause) before the next sample.
    const w = worker;
    if (!(await until(() => w.pauses > pausesBefore))) throw new Error(`resumed ${i}: the worker was not paused`);
    // Its state reaches the scheduler's view with the next tick: leave it one.
    await new Promise((r) => setTimeout(r, 300));
  }
  return out;
}

/** An endpoint with one worker kept up (`workersMin` 1): each request finds it idle and running → first token. */
export async function warmIdleStarts(c: StartKindsContext, endpointId: string): Promise<KindSamples> {
  const out: KindSamples = { samples: {}, sessionKinds: {} };
  await c.hearth.waitIdleWorkers(c.apiKey, endpointId, 1, 120_000);
  for (let i = 0; i <= c.count; i++) {
    await waitForIdle(c.hearth.url, c.apiKey, endpointId);
    const ms = await firstStreamedToken(completionsUrl(c, endpointId), c.apiKey);
    if (i > 0) push(out, "first token", ms);
  }
  return out;
}
