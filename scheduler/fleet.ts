import { performance } from "node:perf_hooks";
import type { Redis } from "ioredis";
import type { RedisKeys } from "../core/queue/keys.ts";
import type { ProvidedWorker, Provider } from "./providers/provider.ts";
import type { SchedulableEndpoint } from "./endpoints.ts";
import { errorFields, type Log } from "../core/log/process-log.ts";
import { BootHeartbeats } from "./boot-heartbeats.ts";
import { WorkerLog } from "./worker-log.ts";
import { newWorkerId } from "../core/ids/random-id.ts";
import { WorkerSecrets } from "./worker-secrets.ts";
import type { WorkerRedisUsers } from "./worker-redis-users.ts";
import type { SchedulerMetrics, WorkerEndReason } from "./scheduler-metrics.ts";

const NO_SECRETS = new WorkerSecrets();

/** Why the scheduler stops a worker: the key is its metric label, the text its exit's reason in the log. */
export const STOP_REASONS = {
  idle: "idle",
  heartbeat_lost: "heartbeat lost",
  endpoint_deleted: "endpoint deleted",
  leadership_lost: "leadership lost",
  shutdown: "scheduler shutting down",
  spec_changed: "engine spec changed",
  crash_loop: "start breaker open",
  paused_evicted: "evicted from the snapshot pool",
} as const satisfies Partial<Record<WorkerEndReason, string>>;
export type StopReason = keyof typeof STOP_REASONS;

/** GPU type a worker of a provider without GPUs is billed at. */
export const CPU_GPU_TYPE = "cpu";

export interface FleetOptions {
  redis: Redis;
  keys: RedisKeys;
  provider: Provider;
  /** Extra environment for every worker (HEARTH_HEARTBEAT_MS, HEARTH_DRAIN_TIMEOUT_MS…). */
  workerEnv: Record<string, string>;
  /** How long a stopped worker may drain before its provider kills it. */
  stopGraceMs: number;
  now: () => number;
  log: Log;
  /** Told of every exit; `requested` is false when the worker ended without being asked to. */
  onExit?: (worker: ProvidedWorker, requested: boolean) => void;
  /** Told when the provider refused a start (a failed start, for the endpoint's breaker). */
  onStartFailed?: (endpointId: string, workerId: string, error: string) => void;
  /** Opens each endpoint's secrets for its own workers. Default: no key (endpoints with secrets do not start), no operator S3 credentials. */
  secrets?: WorkerSecrets;
  /** A Redis user per worker, created before it starts and deleted when it exits. Default: none (the provider's URL). */
  users?: WorkerRedisUsers;
  /** Counts starts, start latency and exits. Default: none. */
  metrics?: SchedulerMetrics;
  /** How long a worker may take to ready itself for a pause, or to take jobs again after a resume (ms). Default 10_000. */
  pauseTimeoutMs?: number;
  /** Told after each pause that happened (the scheduler then applies the pool's limits and looks at the endpoint again). */
  onPaused?: (worker: ProvidedWorker) => void;
}

/**
 * Starts and stops workers through the provider and logs their sessions in the endpoint's log:
 * `requested` (with a stand-in heartbeat) before the provider is asked, `draining` when asked to
 * stop, `exited` with the exit code once the provider reports the process gone. The records in
 * Postgres are projected from those entries.
 */
export class Fleet {
  /** Workers asked to stop and not yet exited: they are draining, whatever they last reported. */
  readonly stopping = new Set<string>();
  /** Pauses in flight, by worker id. */
  private readonly pausing = new Map<string, Promise<void>>();
  /** Why each stopping worker was asked to stop (its exit's reason). */
  private readonly stopReasons = new Map<string, StopReason>();
  private readonly pending = new Set<Promise<unknown>>();
  private readonly unsubscribe: () => void;
  private readonly bootHeartbeats: BootHeartbeats;
  /** The spec hash each running worker was started with (core/policy/rolling.ts). */
  private readonly specHashes = new Map<string, string>();
  readonly workerLog: WorkerLog;

  constructor(private readonly opts: FleetOptions) {
    this.bootHeartbeats = new BootHeartbeats(opts.redis, opts.keys);
    this.workerLog = new WorkerLog(opts.redis, opts.keys);
    this.unsubscribe = opts.provider.onExit((w) => this.track(this.recordExit(w)));
  }

  /** Running workers this fleet's provider holds, optionally of one endpoint. */
  running(endpointId?: string): ProvidedWorker[] {
    return this.opts.provider
      .list()
      .filter((w) => w.state === "running" && (endpointId === undefined || w.endpointId === endpointId));
  }

  /** The engine spec hash the worker was started with; undefined for one this fleet did not start. */
  specHash(workerId: string): string | undefined {
    return this.specHashes.get(workerId);
  }

  /** Paused workers (snapshot pool) this fleet's provider holds, optionally of one endpoint. */
  paused(endpointId?: string): ProvidedWorker[] {
    return this.opts.provider.list().filter((w) => w.state === "paused" && (endpointId === undefined || w.endpointId === endpointId));
  }

  /** Running and paused workers: every process this fleet's provider holds, optionally of one endpoint. */
  held(endpointId?: string): ProvidedWorker[] {
    return this.opts.provider.list().filter((w) => w.state !== "exited" && (endpointId === undefined || w.endpointId === endpointId));
  }

  /** True when scale-down can pause workers instead of stopping them. */
  get canPause(): boolean {
    return this.opts.provider.pausable === true && this.opts.provider.pause !== undefined && this.opts.provider.resume !== undefined;
  }

  /**
   * Pauses an idle worker (snapshot pool); returns at once. The worker logs `paused` itself before it
   * is frozen; a worker that refuses (a job arrived) goes on as it was.
   */
  pause(workerId: string): void {
    const { provider, log } = this.opts;
    if (!provider.pause || this.stopping.has(workerId) || this.pausing.has(workerId)) return;
    const worker = this.running().find((w) => w.workerId === workerId);
    if (!worker) return;
    const p = provider.pause(workerId, { timeoutMs: this.opts.pauseTimeoutMs ?? 10_000 }).then((outcome) => {
      if (outcome.ok) {
        log({ msg: "worker paused", endpointId: worker.endpointId, workerId });
        this.opts.onPaused?.(worker);
      } else {
        log({ msg: "worker not paused", endpointId: worker.endpointId, workerId, reason: outcome.reason });
      }
    });
    this.pausing.set(workerId, p);
    this.track(p.finally(() => this.pausing.delete(workerId)));
  }

  /** Resumes a paused worker (after a pause in flight, if any); resolves true once it takes jobs again. */
  async resume(workerId: string): Promise<boolean> {
    const { provider, log } = this.opts;
    await this.pausing.get(workerId)?.catch(() => {});
    const worker = this.paused().find((w) => w.workerId === workerId);
    if (!provider.resume || !worker || this.stopping.has(workerId)) return false;
    const outcome = await provider.resume(workerId, { timeoutMs: this.opts.pauseTimeoutMs ?? 10_000 });
    if (outcome.ok) log({ msg: "worker resumed", endpointId: worker.endpointId, workerId, pausedMs: worker.pausedAt === undefined ? null : this.opts.now() - worker.pausedAt });
    else log({ level: "warn", msg: "worker not resumed", endpointId: worker.endpointId, workerId, reason: outcome.reason });
    return outcome.ok;
  }

  /** Kills what a dead predecessor left paused on this host and closes those sessions. */
  async reclaim(): Promise<void> {
    const reclaimed = (await this.opts.provider.reclaim?.()) ?? [];
    await Promise.all(
      reclaimed.map(async (w) => {
        await this.workerLog.exited(w.endpointId, w.workerId, { reason: "paused by a scheduler that is gone: killed", exitCode: 128 + 9 });
        await this.opts.users?.remove(w.endpointId, w.workerId);
      }),
    );
  }

  /** Starts one worker; failures are logged and recorded, not thrown. */
  async start(endpoint: SchedulableEndpoint): Promise<void> {
    const { provider, now, log } = this.opts;
    const workerId = newWorkerId();
    const startedAt = now();
    const provisionFrom = performance.now();
    let logged = false;
    let userCreated = false;
    try {
      // First: an endpoint whose secrets cannot be opened gets no session, only the error.
      const { engine, env } = (this.opts.secrets ?? NO_SECRETS).forWorker(endpoint.id, endpoint.engine);
      // Before the spawn: the API counts the worker as initializing at once, the worker's own first
      // heartbeat lands over the stand-in, and the session (billed from here) exists before the process.
      const standIn = this.bootHeartbeats.standIn(endpoint.id, workerId, startedAt);
      this.specHashes.set(workerId, endpoint.specHash);
      await this.workerLog.requested(endpoint.id, standIn, { tenantId: endpoint.tenantId, provider: provider.name, gpuType: CPU_GPU_TYPE, specHash: endpoint.specHash });
      logged = true;
      const redisUrl = await this.opts.users?.create(endpoint.id, workerId);
      userCreated = redisUrl !== undefined;
      const askedAt = performance.now();
      await provider.start({
        workerId,
        endpointId: endpoint.id,
        engine,
        // HEARTH_PROVISION_MS: the scheduler's part of the cold start, a span of its own monotonic clock (never a timestamp).
        env: { ...this.opts.workerEnv, ...env, HEARTH_PROVISION_MS: String(Math.round(performance.now() - provisionFrom)), HEARTH_SPEC_HASH: endpoint.specHash },
        executionTimeoutMs: endpoint.executionTimeoutMs,
        ...(redisUrl !== undefined && { redisUrl }),
      });
      this.opts.metrics?.workerStarted(endpoint.id, provider.name, Math.max(0, performance.now() - askedAt) / 1000);
      log({ msg: "worker started", endpointId: endpoint.id, workerId });
    } catch (err) {
      this.opts.metrics?.workerStartFailed(endpoint.id, provider.name);
      log({ level: "error", msg: "worker start failed", endpointId: endpoint.id, workerId, ...errorFields(err) });
      this.bootHeartbeats.forget(workerId);
      this.specHashes.delete(workerId);
      this.opts.onStartFailed?.(endpoint.id, workerId, `start failed: ${errorFields(err).error}`.slice(0, 500));
      if (userCreated) this.track(this.opts.users!.remove(endpoint.id, workerId));
      if (logged) {
        const reason = `start failed: ${errorFields(err).error}`.slice(0, 500);
        this.track(this.workerLog.exited(endpoint.id, workerId, { reason }));
      }
    }
  }

  /** Asks one of this provider's workers to drain and stop; returns at once, the exit is recorded when it comes. */
  stop(workerId: string, reason: StopReason, graceMs = this.opts.stopGraceMs): void {
    if (this.stopping.has(workerId)) return;
    const worker = this.held().find((w) => w.workerId === workerId);
    if (!worker) return;
    this.stopping.add(workerId);
    this.stopReasons.set(workerId, reason);
    this.opts.log({ msg: "worker stopping", endpointId: worker.endpointId, workerId, reason: STOP_REASONS[reason] });
    this.track(this.workerLog.draining(worker.endpointId, workerId, STOP_REASONS[reason]));
    this.track(this.opts.provider.stop(workerId, { graceMs }));
  }

  /** Keeps the stand-in heartbeats of workers still starting fresh; call every tick. */
  refreshBooting(): Promise<void> {
    return this.bootHeartbeats.refresh(this.opts.now());
  }

  stopAll(reason: StopReason): void {
    for (const w of this.held()) this.stop(w.workerId, reason);
  }

  /** Stops every worker and waits for them to exit (they drain) and for their records to be written. */
  async close(): Promise<void> {
    for (const w of this.held()) this.stopReasons.set(w.workerId, "shutdown");
    await this.opts.provider.close();
    await this.settle();
    this.unsubscribe();
  }

  /** Waits for every record write and stop in flight. */
  async settle(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
  }

  private async recordExit(w: ProvidedWorker): Promise<void> {
    const { log } = this.opts;
    const requested = this.stopping.delete(w.workerId);
    const asked = this.stopReasons.get(w.workerId);
    const reason = asked ? STOP_REASONS[asked] : w.exitCode === 0 ? "exited on its own" : "process ended without being asked to stop";
    this.stopReasons.delete(w.workerId);
    this.opts.metrics?.workerEnded(w.endpointId, asked ?? (w.exitCode === 0 ? "exited" : "crashed"));
    this.bootHeartbeats.forget(w.workerId);
    this.specHashes.delete(w.workerId);
    // Its session is over: its Redis user goes, and with it any connection a leftover process held.
    if (this.opts.users) this.track(this.opts.users.remove(w.endpointId, w.workerId));
    this.opts.onExit?.(w, requested);
    log({ msg: "worker exited", endpointId: w.endpointId, workerId: w.workerId, exitCode: w.exitCode ?? null, requested });
    // A few tries: if they all fail, the heartbeat entry stays behind and the worker is logged
    // `lost` at its last beat once it goes stale, so its session still closes.
    for (let attempt = 1; ; attempt++) {
      try {
        await this.workerLog.exited(w.endpointId, w.workerId, { reason, ...(w.exitCode !== undefined && { exitCode: w.exitCode }) });
        return;
      } catch (err) {
        if (attempt >= 3) throw err;
        await new Promise((r) => setTimeout(r, 1000 * attempt));
      }
    }
  }

  private track(p: Promise<unknown>): void {
    const tracked = p.catch((err: unknown) => this.opts.log({ level: "error", msg: "fleet write failed", ...errorFields(err) }));
    this.pending.add(tracked);
    void tracked.finally(() => this.pending.delete(tracked));
  }
}
