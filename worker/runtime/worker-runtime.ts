import type { Worker } from "bullmq";
import { RedisKeys } from "../../core/queue/keys.ts";
import type { EngineInfo } from "../engines/engine.ts";
import { FinishReporter } from "./finish-reporter.ts";
import { Heartbeat } from "./heartbeat.ts";
import { CancelRequests } from "./cancel-requests.ts";
import { createJobProcessor, DRAIN_REASON, type JobProcessor } from "./job-processor.ts";
import { Lifecycle } from "./lifecycle.ts";
import { OffloadClient } from "./offload-client.ts";
import type { RuntimeMetrics } from "./runtime-metrics.ts";
import { performance } from "node:perf_hooks";
import { workerGuardrails } from "./worker-guardrails.ts";
import type { WorkerRuntimeOptions } from "./worker-runtime-options.ts";
import { ColdStartTimings } from "./cold-start-timings.ts";
import { InFlightJobs } from "./in-flight-jobs.ts";
import { CancelListener } from "./cancel-listener.ts";
import { EngineHealthCheck } from "./engine-health-check.ts";
import { createQueueWorker, freshConnection } from "./queue-worker.ts";

export type { RuntimePhase, WorkerRuntimeOptions } from "./worker-runtime-options.ts";

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
  private readonly timings: ColdStartTimings;
  private readonly jobs: InFlightJobs;
  private readonly cancelListener: CancelListener;
  private readonly healthCheck: EngineHealthCheck;
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
  private idleSince: number | null = null;
  private handingBack = false;
  private draining: Promise<void> | undefined;
  private metrics: RuntimeMetrics | undefined;

  private constructor(private readonly options: WorkerRuntimeOptions) {
    this.timings = new ColdStartTimings(options, (report) => this.heartbeat.attachToNextTransition(report));
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
        running: this.jobs.running,
        concurrency: this.info?.concurrency ?? 1,
        idleSince: this.idleSince,
        ...(this.lifecycle.state === "initializing" && this.timings.phaseNow()),
        ...(options.specHash !== undefined && { specHash: options.specHash }),
      }),
      onError: (err) => this.onError(err, "heartbeat"),
    });
    this.finisher = new FinishReporter({ redis: options.redis, keys: this.keys, endpointId: options.endpointId });
    this.offload = new OffloadClient({ redis: options.redis, keys: this.keys, endpointId: options.endpointId });
    this.jobs = new InFlightJobs({
      lifecycle: this.lifecycle,
      finisher: this.finisher,
      timings: this.timings,
      metrics: () => this.metrics,
      onPhase: this.onPhase,
      onError: this.onError,
    });
    this.cancelListener = new CancelListener({ subscriber: options.subscriber, keys: this.keys, endpointId: options.endpointId });
    this.healthCheck = new EngineHealthCheck({
      engine: options.engine,
      lifecycle: this.lifecycle,
      intervalMs: options.heartbeatMs,
      worker: () => this.worker,
      running: () => this.jobs.running,
      metrics: () => this.metrics,
      onError: this.onError,
    });
    this.lifecycle.onChange((to, from) => {
      this.idleSince = to === "idle" ? this.now() : null;
      // Attached before the write below, so the first entry out of boot carries it.
      if (from === "initializing") {
        this.timings.reportWeightsFetch();
        this.timings.reportColdStart();
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
    this.timings.engineLoading();
    // The queue worker is made while the engine loads: its two Redis connections (a blocking one of
    // its own, BullMQ's handshake on each) are ready by the time the engine is, instead of costing the
    // first job their set-up. It takes no job before start(), and none runs before the processor exists.
    this.newQueueWorker = () =>
      createQueueWorker({
        ...options,
        keys: this.keys,
        // Until the engine says its own (bootEngineAndQueue); a worker made again later (resume) has it.
        concurrency: this.info?.concurrency ?? 1,
        process: (job, token, signal) => this.processJob!(job, token, signal),
        onError: this.onError,
        track: (p, context) => this.jobs.track(p, context),
        now: this.now,
      });
    this.worker = this.newQueueWorker();
    const engineFrom = options.engineStartedAt ?? performance.now();
    this.info = await options.engine.start();
    this.timings.engineStarted(engineFrom);
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
      guardrails: workerGuardrails({ ...options, keys: this.keys, metrics: () => this.metrics }),
      now: this.now,
    });
    this.processJob = this.jobs.counted(processor);
    const worker = this.worker!;
    // Its concurrency is the engine's, known now; it took no job yet (it runs from start()).
    worker.concurrency = this.info.concurrency;

    await this.cancelListener.listen(() => this.worker, cancels);
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
    this.timings.ready();
    this.lifecycle.to("idle");
    this.metrics?.engineHealth(true);
    worker.run().catch((err) => this.onError(err, "queue loop"));
    this.healthCheck.start();
  }

  /**
   * Readies the worker to be frozen (snapshot pool): closes its BullMQ worker (so it holds no job,
   * no lock that could lapse, no blocking read), puts a sleep-capable engine to sleep and logs
   * `paused`. Refuses (returns a reason) unless idle with nothing in flight. After `resume()` the
   * worker takes jobs through a fresh BullMQ worker (a new blocking connection).
   */
  async pause(): Promise<string | undefined> {
    const worker = this.worker;
    if (!worker || this.pausing || this.draining || this.lifecycle.state !== "idle" || this.jobs.running > 0) return `not idle (${this.lifecycle.state})`;
    let done!: () => void;
    this.pausing = new Promise<void>((r) => (done = r));
    try {
      this.healthCheck.stop();
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
    // A drain that began during the check has closed the old worker; a new one would run on unclosed.
    if (this.draining) return;
    const worker = this.newQueueWorker();
    this.worker = worker;
    if (this.lifecycle.state === "paused") this.lifecycle.to("idle");
    this.metrics?.engineHealth(true);
    worker.run().catch((err) => this.onError(err, "queue loop"));
    this.healthCheck.start();
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
    this.onPhase("draining", { reason, running: this.jobs.running });
    this.healthCheck.stop();

    let handedBack = 0;
    if (this.worker) {
      // close() stops fetching at once and resolves when the jobs in flight have finished.
      const closed = this.worker.close();
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), this.options.drainTimeoutMs)));
      const late = await Promise.race([closed.then(() => false), timedOut]);
      clearTimeout(timer);
      if (late) {
        handedBack = this.jobs.running;
        this.handingBack = true;
        this.worker.cancelAllJobs(DRAIN_REASON);
        await closed;
      }
    }
    await this.cancelListener.close().catch((err) => this.onError(err, "unsubscribe"));
    await this.jobs.settled();
    this.offload.close();
    await this.options.engine.stop().catch((err) => this.onError(err, "engine stop"));
    this.metrics?.engineHealth(false);
    await this.heartbeat.stop(reason);
    this.lifecycle.to("exited");
    this.onPhase("exited", { drainMs: this.now() - started, handedBack });
  }
}
