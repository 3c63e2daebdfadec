import { Worker } from "bullmq";
import type { Redis } from "ioredis";
import { RedisKeys } from "../../core/queue/keys.ts";
import { whenReady } from "../../core/redis/connect.ts";
import { controlMessage, parseMessage } from "../../core/queue/messages.ts";
import type { Engine, EngineInfo } from "../engines/engine.ts";
import { FinishReporter, reportFailedByQueue } from "./finish-reporter.ts";
import type { JobResult } from "../../core/queue/job-catalog.ts";
import { Heartbeat } from "./heartbeat.ts";
import { CancelRequests } from "./cancel-requests.ts";
import { createJobProcessor, DRAIN_REASON, type JobProcessor } from "./job-processor.ts";
import { Lifecycle } from "./lifecycle.ts";
import { OffloadClient } from "./offload-client.ts";
import type { Tracer } from "@opentelemetry/api";
import type { Log } from "../../core/log/process-log.ts";
import type { RuntimeMetrics } from "./runtime-metrics.ts";
import { performance } from "node:perf_hooks";
import type { ColdStartReport } from "../../core/log/log-entry.ts";
import type { BootPhase, PhaseProgress } from "../../core/policy/wait-reason.ts";
import { ExternalGuardClient } from "../../core/guardrails/external-guard.ts";
import { logGuardrailTriggers } from "../../core/guardrails/guardrail-log.ts";
import { egressPolicy } from "../../core/config/egress.ts";
import { EMPTY_ALLOW_LIST, type UrlPolicy } from "../../core/net/url-policy.ts";

/** The largest `weightsFetchMs` a worker log entry may carry (a week). */
const MAX_WEIGHTS_FETCH_MS = 7 * 86_400_000;

/** Milestones the composition root logs with timings. */
export type RuntimePhase = "engine-ready" | "first-job" | "draining" | "exited" | "offload" | "paused" | "resumed";

export interface WorkerRuntimeOptions {
  endpointId: string;
  workerId: string;
  /** BullMQ and key prefix (`HEARTH_REDIS_PREFIX`). */
  redisPrefix: string;
  /** BullMQ lock, ms: how long a job of a dead worker waits before another worker re-runs it. */
  lockMs: number;
  /** Heartbeat and engine health-check period, ms. */
  heartbeatMs: number;
  /** How long a drain lets running jobs finish before handing them back to the queue, ms. */
  drainTimeoutMs: number;
  /** Least ms between two stream writes of one job (see StreamWriter); default 0. */
  streamLingerMs?: number;
  engine: Engine;
  /**
   * When the engine's start began (`performance.now()`), where it began before the runtime was
   * created (worker/engines/early-start.ts); the engine's load is measured from there. Default: the
   * runtime starts it.
   */
  engineStartedAt?: number;
  /**
   * Where the process's phases count from (`performance.now()`): its assignment for a prestarted
   * process (worker/prestart.ts). Default 0, the process's own start.
   */
  bootOrigin?: number;
  /**
   * ms the engine spent fetching its weights (model download or cache fill; worker/main.ts reads
   * the model store's `weightsFetchMs`), read as the worker leaves `initializing` and logged on that
   * transition's entry, which billing subtracts from the session. Undefined (or no option, the
   * default) reports nothing: a handler fetches no model.
   */
  weightsFetchMs?: () => number | undefined;
  /** True when every model the engine asked for came from the local cache (a `cache-warm` start). Default: unknown (`cold`). */
  weightsCacheHit?: () => boolean | undefined;
  /** The engine cache restore's length and outcome (worker/engine-cache), read with the weights'. Default: none. */
  engineCacheReport?: () => Pick<ColdStartReport, "engineCacheRestoreMs" | "engineCacheHit">;
  /**
   * The boot phase and its progress while the engine starts (weights bytes fetched), put in the
   * heartbeat for a queued job's `waitReason: starting`. Default: `engine_load` for the whole start.
   */
  bootPhase?: () => { phase: BootPhase; progress?: PhaseProgress } | undefined;
  /** HEARTH_PROVISION_MS: the scheduler's part of this worker's cold start (a span, ms), logged with the rest. */
  provisionMs?: number;
  /** HEARTH_SPEC_HASH: the engine spec hash this worker runs, in its heartbeat. */
  specHash?: string;
  /** Our commands and BullMQ's (BullMQ duplicates it for its blocking reads). Not closed here. */
  redis: Redis;
  /** A connection of its own for the control channel; unsubscribed on drain, not closed here. */
  subscriber: Redis;
  onPhase?: (phase: RuntimePhase, detail?: Record<string, unknown>) => void;
  /** Errors that do not stop the worker (Redis hiccups, a failed heartbeat); default stderr. */
  onError?: (err: unknown, context: string) => void;
  /** The worker's log, for the lines about each job (see JobProcessorOptions.log). Default none. */
  log?: Log;
  /** Exports job spans when tracing is on. */
  tracer?: Tracer;
  /**
   * Where jobs' external guards may be (HEARTH_EGRESS_ALLOWLIST, HEARTH_EGRESS_ALLOW_HTTP of the
   * worker). Default: https:// to public addresses only.
   */
  guardEgress?: UrlPolicy;
  now?: () => number;
}

/**
 * One worker: an engine behind a BullMQ `Worker` on its endpoint's queue. `create()` starts the
 * engine (booting); `start()` begins taking jobs; `drain()` stops taking them, gives running jobs
 * `drainTimeoutMs`, hands the rest back to the queue with `moveToWait`, removes the
 * heartbeat and stops the engine. Process concerns (signals, exit) belong to `worker/main.ts`.
 */
export class WorkerRuntime {
  readonly lifecycle = new Lifecycle();
  private readonly keys: RedisKeys;
  private readonly heartbeat: Heartbeat;
  private readonly finisher: FinishReporter;
  private readonly offload: OffloadClient;
  private readonly onPhase: NonNullable<WorkerRuntimeOptions["onPhase"]>;
  private readonly onError: NonNullable<WorkerRuntimeOptions["onError"]>;
  private readonly now: () => number;
  private worker: Worker | undefined;
  /** Builds a fresh BullMQ worker over the same processor (a closed one cannot run again). */
  private newQueueWorker: (() => Worker) | undefined;
  /** The job processor, once the engine has started (bootEngineAndQueue). */
  private processJob: JobProcessor | undefined;
  /** A pause or resume in flight. */
  private pausing: Promise<unknown> | undefined;
  private info: EngineInfo | undefined;
  private running = 0;
  private idleSince: number | null = null;
  private sawFirstJob = false;
  private handingBack = false;
  private healthTimer: NodeJS.Timeout | undefined;
  private draining: Promise<void> | undefined;
  private readonly pending = new Set<Promise<void>>();
  private metrics: RuntimeMetrics | undefined;
  /** Boot phases, each on this process's monotonic clock (performance.now: ms since the process started). */
  private bootPhase: BootPhase = "process_start";
  private readonly processStartMs: number;
  private engineStartMs: number | undefined;
  private readyAt: number | undefined;
  private firstJobReported = false;

  private constructor(private readonly options: WorkerRuntimeOptions) {
    this.processStartMs = performance.now() - (options.bootOrigin ?? 0);
    this.keys = new RedisKeys(options.redisPrefix);
    this.now = options.now ?? Date.now;
    this.onPhase = options.onPhase ?? (() => {});
    this.onError = options.onError ?? ((err, context) => console.error(`worker ${context}:`, err));
    this.heartbeat = new Heartbeat({
      redis: options.redis,
      keys: this.keys,
      endpointId: options.endpointId,
      workerId: options.workerId,
      intervalMs: options.heartbeatMs,
      snapshot: () => ({
        state: this.lifecycle.state,
        running: this.running,
        concurrency: this.info?.concurrency ?? 1,
        idleSince: this.idleSince,
        ...(this.lifecycle.state === "initializing" && this.phaseNow()),
        ...(options.specHash !== undefined && { specHash: options.specHash }),
      }),
      onError: (err) => this.onError(err, "heartbeat"),
    });
    this.finisher = new FinishReporter({ redis: options.redis, keys: this.keys, endpointId: options.endpointId });
    this.offload = new OffloadClient({ redis: options.redis, keys: this.keys, endpointId: options.endpointId });
    this.lifecycle.onChange((to, from) => {
      this.idleSince = to === "idle" ? this.now() : null;
      // Attached before the write below, so the first entry out of boot carries it.
      if (from === "initializing") {
        this.reportWeightsFetch();
        this.reportColdStart();
      }
      // The busy/idle flip of every job is coalesced; boot, drain, pause and health changes are written at once.
      if ((to === "idle" && from !== "paused") || to === "running") this.heartbeat.beatSoon();
      else void this.heartbeat.beat();
    });
  }

  /** Announces the worker (booting), starts the engine and prepares the queue worker; rejects when the engine cannot start. */
  static async create(options: WorkerRuntimeOptions): Promise<WorkerRuntime> {
    const runtime = new WorkerRuntime(options);
    await runtime.boot();
    return runtime;
  }

  get state() {
    return this.lifecycle.state;
  }

  /** The engine's concurrency and stream settings; undefined while booting. */
  get engineInfo(): EngineInfo | undefined {
    return this.info;
  }

  private async boot(): Promise<void> {
    await this.heartbeat.beat();
    this.heartbeat.start();
    try {
      await this.bootEngineAndQueue();
    } catch (err) {
      // A worker that cannot serve leaves nothing behind: no heartbeat, no engine, no queue worker.
      await this.worker?.close(true).catch(() => {});
      if (this.info) await this.options.engine.stop().catch(() => {});
      this.lifecycle.to("exited");
      await this.heartbeat.stop(`engine failed to start: ${err instanceof Error ? err.message : String(err)}`.slice(0, 500));
      throw err;
    }
  }

  private async bootEngineAndQueue(): Promise<void> {
    const { options } = this;
    this.bootPhase = "engine_load";
    // The queue worker is made while the engine loads: its two Redis connections (a blocking one of
    // its own, BullMQ's handshake on each) are ready by the time the engine is, instead of costing the
    // first job their set-up. It takes no job before start(), and none runs before the processor exists.
    this.newQueueWorker = () => {
      const w = new Worker(this.keys.queueName(options.endpointId), (job, token, signal) => this.processJob!(job, token, signal), {
        connection: options.redis,
        prefix: options.redisPrefix,
        // BullMQ records it as job.processedBy, which is how the API reports a job's workerId.
        name: options.workerId,
        // Until the engine says its own (bootEngineAndQueue); a worker made again later (resume) has it.
        concurrency: this.info?.concurrency ?? 1,
        lockDuration: options.lockMs,
        stalledInterval: Math.max(1000, Math.floor(options.lockMs / 2)),
        maxStalledCount: 2,
        autorun: false,
      });
      w.on("error", (err) => this.onError(err, "queue"));
      // Our processor never throws, so `failed` here is BullMQ's own verdict (a job that stalled more
      // than maxStalledCount, failed as this worker took it): tell the waiters, as a finish would.
      w.on("failed", (job, err) => {
        if (!job?.id) return;
        const now = this.now();
        const result: JobResult = { status: "FAILED", error: job.failedReason || err.message, workerId: options.workerId, startedAt: now, finishedAt: now };
        this.track(reportFailedByQueue({ redis: options.redis, keys: this.keys, endpointId: options.endpointId }, job.id, result), "failed report");
      });
      return w;
    };
    this.worker = this.newQueueWorker();
    const engineFrom = options.engineStartedAt ?? performance.now();
    this.info = await options.engine.start();
    this.engineStartMs = performance.now() - engineFrom;
    const weightsFetchMs = options.weightsFetchMs?.();
    this.onPhase("engine-ready", { concurrency: this.info.concurrency, ...(weightsFetchMs !== undefined && { weightsFetchMs }) });

    const cancels = new CancelRequests();
    const processor = createJobProcessor({
      cancels,
      engine: options.engine,
      engineInfo: this.info,
      redis: options.redis,
      keys: this.keys,
      endpointId: options.endpointId,
      workerId: options.workerId,
      handingBack: () => this.handingBack,
      ...(options.streamLingerMs !== undefined && { streamLingerMs: options.streamLingerMs }),
      offload: this.offload,
      onOffloadProgress: (detail) => this.onPhase("offload", detail),
      ...(options.log && { log: options.log }),
      ...(options.tracer && { tracer: options.tracer }),
      guardrails: {
        external: new ExternalGuardClient({ policy: options.guardEgress ?? egressPolicy(false, EMPTY_ALLOW_LIST) }),
        record: async (jobId, triggers, guardRule) => {
          for (const t of triggers) this.metrics?.guardrailTriggered(options.endpointId, t);
          await logGuardrailTriggers(options.redis, this.keys, options.endpointId, triggers, { by: "worker", jobId, ...(guardRule !== undefined && { guardRule }) });
        },
      },
      now: this.now,
    });
    this.processJob = this.counted(processor);
    const worker = this.worker!;
    // Its concurrency is the engine's, known now; it took no job yet (it runs from start()).
    worker.concurrency = this.info.concurrency;

    // Only this endpoint's cancels: a worker hears nothing of other tenants' traffic.
    const channel = this.keys.controlChannel(options.endpointId);
    options.subscriber.on("message", (ch: string, raw: string) => {
      if (ch !== channel) return;
      const msg = parseMessage(controlMessage, raw);
      if (msg?.type !== "cancel" || msg.endpointId !== options.endpointId) return;
      // Not running here (yet): remember it, in case the job is on its way to this processor.
      if (!worker.cancelJob(msg.jobId, "hearth:cancel")) cancels.add(msg.jobId);
    });
    // Subscribing before the connection is ready races ioredis' ready check (refused on a subscribed connection).
    await whenReady(options.subscriber, "the worker's Redis");
    await options.subscriber.subscribe(channel);
  }

  /**
   * Reports to the worker's `/metrics` from now on, and puts `port` in its heartbeat from the next
   * beat. Attached after `create()` so that loading metrics overlaps the engine's start instead of
   * delaying it; attach before `start()` and every job is counted.
   */
  attachMetrics(metrics: RuntimeMetrics, port: number): void {
    this.metrics = metrics;
    this.heartbeat.setMetricsPort(port);
    if (this.lifecycle.state === "idle" || this.lifecycle.state === "running") metrics.engineHealth(true);
  }

  /** Begins taking jobs. */
  start(): void {
    const worker = this.worker;
    if (!worker || this.lifecycle.state !== "initializing") return;
    this.readyAt = performance.now();
    this.lifecycle.to("idle");
    this.metrics?.engineHealth(true);
    worker.run().catch((err) => this.onError(err, "queue loop"));
    this.healthTimer = setInterval(() => void this.checkHealth(), this.options.heartbeatMs);
    this.healthTimer.unref();
  }

  /**
   * Readies the worker to be frozen (snapshot pool): closes its BullMQ worker (so it holds no job,
   * no lock that could lapse, no blocking read), puts a sleep-capable engine to sleep and logs
   * `paused`. Refuses (returns a reason) unless idle with nothing in flight. After `resume()` the
   * worker takes jobs through a fresh BullMQ worker (a new blocking connection).
   */
  async pause(): Promise<string | undefined> {
    const worker = this.worker;
    if (!worker || this.pausing || this.draining || this.lifecycle.state !== "idle" || this.running > 0) return `not idle (${this.lifecycle.state})`;
    let done!: () => void;
    this.pausing = new Promise<void>((r) => (done = r));
    try {
      clearInterval(this.healthTimer);
      // Stops fetching at once; a job taken just before runs to its end first.
      await worker.close();
      if (this.draining) return "draining";
      if (this.lifecycle.state !== "idle") {
        // Not paused after all: it takes jobs again (a closed BullMQ worker cannot run again).
        const state = this.lifecycle.state;
        await this.restartQueue();
        return `not idle (${state})`;
      }
      await this.options.engine.sleep?.();
      this.lifecycle.to("paused");
      // Beats leave in order on one connection: once this one is written, so is the `paused` entry.
      await this.heartbeat.beat();
      this.metrics?.engineHealth(false);
      this.onPhase("paused");
      return undefined;
    } catch (err) {
      this.onError(err, "pause");
      await this.restartQueue();
      return `pause failed: ${err instanceof Error ? err.message : String(err)}`;
    } finally {
      done();
      this.pausing = undefined;
    }
  }

  /** Thawed: wakes the engine, checks the Redis connections, and takes jobs again. A no-op unless paused. */
  async resume(): Promise<void> {
    if (this.lifecycle.state !== "paused" || this.draining) return;
    const started = this.now();
    await this.options.engine.wakeUp?.();
    await this.restartQueue();
    this.onPhase("resumed", { resumeMs: this.now() - started });
  }

  /** A fresh BullMQ worker, `idle`, health checks on again. */
  private async restartQueue(): Promise<void> {
    if (!this.newQueueWorker || this.draining) return;
    // Connections frozen for long may have been dropped by Redis or a middlebox: ping, reconnect if silent.
    await freshConnection(this.options.redis);
    const worker = this.newQueueWorker();
    this.worker = worker;
    if (this.lifecycle.state === "paused") this.lifecycle.to("idle");
    this.metrics?.engineHealth(true);
    worker.run().catch((err) => this.onError(err, "queue loop"));
    clearInterval(this.healthTimer);
    this.healthTimer = setInterval(() => void this.checkHealth(), this.options.heartbeatMs);
    this.healthTimer.unref();
  }

  /** Stops the worker cleanly; concurrent and repeated calls share one drain. Never drops a job. */
  drain(reason: string): Promise<void> {
    this.draining ??= this.runDrain(reason);
    return this.draining;
  }

  private async runDrain(reason: string): Promise<void> {
    if (this.lifecycle.state === "exited") return;
    await this.pausing;
    const started = this.now();
    this.lifecycle.to("draining");
    this.onPhase("draining", { reason, running: this.running });
    clearInterval(this.healthTimer);

    let handedBack = 0;
    if (this.worker) {
      // close() stops fetching at once and resolves when the jobs in flight have finished.
      const closed = this.worker.close();
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), this.options.drainTimeoutMs)));
      const late = await Promise.race([closed.then(() => false), timedOut]);
      clearTimeout(timer);
      if (late) {
        handedBack = this.running;
        this.handingBack = true;
        this.worker.cancelAllJobs(DRAIN_REASON);
        await closed;
      }
    }
    await this.options.subscriber.unsubscribe(this.keys.controlChannel(this.options.endpointId)).catch((err) => this.onError(err, "unsubscribe"));
    await Promise.allSettled([...this.pending]);
    this.offload.close();
    await this.options.engine.stop().catch((err) => this.onError(err, "engine stop"));
    this.metrics?.engineHealth(false);
    await this.heartbeat.stop(reason);
    this.lifecycle.to("exited");
    this.onPhase("exited", { drainMs: this.now() - started, handedBack });
  }

  /** Hands the weights-fetch length, once known, to the heartbeat for the next transition it logs. */
  private reportWeightsFetch(): void {
    const ms = this.options.weightsFetchMs?.();
    if (ms === undefined || !Number.isFinite(ms)) return;
    // Within what the log's schema accepts (core/log/log-entry.ts): an entry it refuses would be set aside whole.
    this.heartbeat.attachToNextTransition({ weightsFetchMs: Math.min(Math.max(0, Math.round(ms)), MAX_WEIGHTS_FETCH_MS) });
  }

  /** The boot phase for the heartbeat: the engine's own report where it gives one. */
  private phaseNow(): { phase: BootPhase; progress?: PhaseProgress } {
    return (this.bootPhase === "engine_load" ? this.options.bootPhase?.() : undefined) ?? { phase: this.bootPhase };
  }

  /** The cold start's phases, for the first entry out of boot (core/log/log-entry.ts `coldStart`). */
  private reportColdStart(): void {
    const weights = this.options.weightsFetchMs?.();
    const cacheHit = this.options.weightsCacheHit?.();
    const engineCache = this.options.engineCacheReport?.() ?? {};
    const report: ColdStartReport = {
      kind: cacheHit === true ? "cache-warm" : "cold",
      processStartMs: clampMs(this.processStartMs),
      ...(this.options.bootOrigin !== undefined && this.options.bootOrigin > 0 && { prestarted: true }),
      ...(this.options.provisionMs !== undefined && { provisionMs: clampMs(this.options.provisionMs) }),
      ...(weights !== undefined && Number.isFinite(weights) && { weightsFetchMs: clampMs(weights) }),
      ...(cacheHit !== undefined && { cacheHit }),
      ...(engineCache.engineCacheRestoreMs !== undefined && { engineCacheRestoreMs: clampMs(engineCache.engineCacheRestoreMs) }),
      ...(engineCache.engineCacheHit !== undefined && { engineCacheHit: engineCache.engineCacheHit }),
      ...(this.engineStartMs !== undefined && { engineLoadMs: clampMs(this.engineStartMs - (weights ?? 0) - (engineCache.engineCacheRestoreMs ?? 0)) }),
    };
    this.heartbeat.attachToNextTransition({ coldStart: report });
  }

  /** Wraps the processor with in-flight counting; keeps BullMQ's three parameters so it still passes the signal. */
  private counted(processor: JobProcessor): JobProcessor {
    return async (job, token, signal) => {
      const metrics = this.metrics;
      this.running++;
      metrics?.jobsRunning(this.running);
      if (!this.sawFirstJob) {
        this.sawFirstJob = true;
        // A milestone of the worker's (its first job's id, not a line about that job: the job's own lines carry its jobId and traceId).
        this.onPhase("first-job", { firstJobId: job.id });
      }
      if (this.lifecycle.state === "idle") this.lifecycle.to("running");
      try {
        const result = await processor(job, token, signal);
        // Announced as the processor returns, not on BullMQ's `completed` event: the announcement and
        // BullMQ's moveToFinished leave back to back on this one connection, so Redis has stored the
        // result by the time a waiter can ask, and the waiter is not one more round trip away.
        // Without a token (never, with BullMQ's Worker) there is no lock to check: say nothing early.
        if (token !== undefined) this.track(this.finisher.report(job.id!, token, result), "finish report");
        metrics?.jobFinished(result);
        return result;
      } finally {
        this.running--;
        metrics?.jobsRunning(this.running);
        if (!this.firstJobReported && this.readyAt !== undefined) {
          // Ready → first job finished, logged on the transition that follows.
          this.firstJobReported = true;
          this.heartbeat.attachToNextTransition({ coldStart: { firstJobMs: clampMs(performance.now() - this.readyAt) } });
        }
        if (this.running === 0 && this.lifecycle.state === "running") this.lifecycle.to("idle");
      }
    };
  }

  /**
   * An engine failing its health check takes no new jobs (running ones go on) until it recovers.
   * Pausing does not interrupt a fetch already blocked in Redis, so one more job may still arrive.
   */
  private async checkHealth(): Promise<void> {
    const worker = this.worker;
    if (!worker) return;
    const healthy = await this.options.engine.health().catch(() => false);
    this.metrics?.engineHealth(healthy);
    const state = this.lifecycle.state;
    if (!healthy && (state === "idle" || state === "running")) {
      this.lifecycle.to("unhealthy");
      await worker.pause(true).catch((err) => this.onError(err, "pause"));
    } else if (healthy && state === "unhealthy") {
      this.lifecycle.to(this.running > 0 ? "running" : "idle");
      await worker.resume().catch((err) => this.onError(err, "resume"));
    }
  }

  private track(p: Promise<void>, context: string): void {
    const tracked = p.catch((err) => this.onError(err, context)).finally(() => this.pending.delete(tracked));
    this.pending.add(tracked);
  }
}

/** A span as the log's schema takes it: whole ms, 0 to a week. */
function clampMs(ms: number): number {
  return Math.min(Math.max(0, Math.round(ms)), MAX_WEIGHTS_FETCH_MS);
}

/** Pings `redis`; when it does not answer within a second, drops the connection so ioredis opens a new one. */
async function freshConnection(redis: Redis): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const silent = new Promise<boolean>((r) => (timer = setTimeout(() => r(true), 1000)));
  const answered = await Promise.race([redis.ping().then(() => false, () => true), silent]);
  clearTimeout(timer);
  if (answered) redis.disconnect(true);
}
