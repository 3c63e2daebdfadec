import type { Redis } from "ioredis";
import type { Db } from "../core/db/client.ts";
import type { RedisKeys } from "../core/queue/keys.ts";
import { decideScaling } from "../core/policy/scaling.ts";
import { shouldPreload } from "../core/weights/preload-trigger.ts";
import { NO_CRASHES, recordCrash, startDelayMs, type CrashRecord } from "../core/policy/restart-backoff.ts";
import type { CapacityDecision } from "../core/policy/capacity.ts";
import { planRoll } from "../core/policy/rolling.ts";
import { warmPoolSize } from "../core/policy/warm-pool.ts";
import { errorFields, type Log } from "../core/log/process-log.ts";
import { loadLiveEndpoint, type SchedulableEndpoint } from "./endpoints.ts";
import type { Fleet } from "./fleet.ts";
import type { EndpointObserver, EndpointObservation } from "./observe.ts";
import type { CapacityGate } from "./capacity-gate.ts";
import type { StartBreakers } from "./start-breakers.ts";
import type { SchedulerMetrics } from "./scheduler-metrics.ts";
import type { WorkerSdFile } from "./worker-sd-file.ts";
import { ArrivalHistory } from "./arrival-history.ts";

/** How long a hung worker gets between SIGTERM and SIGKILL (ms). */
const HUNG_STOP_GRACE_MS = 5000;

export interface EndpointConvergerOptions {
  db: Db;
  redis: Redis;
  keys: RedisKeys;
  fleet: Fleet;
  observer: EndpointObserver;
  capacity: CapacityGate;
  breakers: StartBreakers;
  /** False once the scheduler is closing or no longer leads: a converge then stops short of acting. */
  acting: () => boolean;
  now: () => number;
  log: Log;
  /** See SchedulerOptions.metrics. */
  metrics?: SchedulerMetrics;
  /** See SchedulerOptions.workerTargets. */
  workerTargets?: WorkerSdFile;
  /** See SchedulerOptions.preload. */
  preload?: (endpoint: SchedulableEndpoint) => void;
}

/**
 * One endpoint's converge pass: observe (Redis + provider) → decide (pure policy) → act (provider),
 * with the per-endpoint memory it needs across passes (crash loop, last desired count, arrivals).
 * The Scheduler runs at most one per endpoint at a time.
 */
export class EndpointConverger {
  private readonly redis: Redis;
  private readonly keys: RedisKeys;
  private readonly fleet: Fleet;
  private readonly observer: EndpointObserver;
  private readonly capacity: CapacityGate;
  private readonly breakers: StartBreakers;
  private readonly now: () => number;
  private readonly log: Log;
  /** Consecutive crashes per endpoint, for the restart backoff; cleared when a worker is seen healthy. */
  private readonly crashes = new Map<string, CrashRecord>();
  private readonly skipped = new Map<string, string>();
  /** Each endpoint's desired worker count at its last converge, for the preload hook. */
  private readonly lastDesired = new Map<string, number>();
  private readonly arrivals = new ArrivalHistory();

  constructor(private readonly opts: EndpointConvergerOptions) {
    this.redis = opts.redis;
    this.keys = opts.keys;
    this.fleet = opts.fleet;
    this.observer = opts.observer;
    this.capacity = opts.capacity;
    this.breakers = opts.breakers;
    this.now = opts.now;
    this.log = opts.log;
  }

  /** A worker of the endpoint ended on its own with an error: one more crash towards its crash loop. */
  crashed(endpointId: string): void {
    this.crashes.set(endpointId, recordCrash(this.crashes.get(endpointId) ?? NO_CRASHES, this.now()));
  }

  /**
   * Forgets what it remembers of endpoints that no longer exist (their crash loop, the reason they
   * were skipped, last desired count and arrival history), so a long-lived scheduler's memory follows
   * the endpoints there are, not every endpoint there ever was.
   */
  forgetDeleted(existing: ReadonlySet<string>): void {
    for (const map of [this.crashes, this.skipped, this.lastDesired]) {
      for (const id of map.keys()) if (!existing.has(id)) map.delete(id);
    }
    this.arrivals.keep(existing);
  }

  /** Feeds the arrival history of an endpoint with a warm pool: jobs finished, cancelled, queued and in progress. */
  private async recordArrivals(endpointId: string, snapshot: EndpointObservation, now: number): Promise<void> {
    const [completed, failed, cancelled] = await this.redis.hmget(this.keys.stats(endpointId), "completed", "failed", "cancelled");
    const n = (v: string | null | undefined) => Number(v ?? 0) || 0;
    this.arrivals.record(endpointId, n(completed) + n(failed) + n(cancelled) + snapshot.queued + snapshot.queuedLowPriority + snapshot.inProgress, now);
  }

  /** What one converge saw, for the metrics and the service discovery file. */
  private observed(endpointId: string, snapshot: EndpointObservation, desired: number, gate: CapacityDecision): void {
    const live = snapshot.workers.filter((w) => w.state !== "exited" && w.state !== "lost" && w.state !== "draining" && w.state !== "paused" && !w.heartbeatLost).length;
    this.opts.metrics?.endpointScaled(endpointId, { desired, live, heldBack: gate.throttled, ...(gate.waitReason && { heldBackReason: gate.waitReason }) });
    const targets = this.opts.workerTargets;
    if (!targets) return;
    // Read again now, not at the observe: a worker that exited meanwhile was removed by its exit and must not come back.
    const running = this.fleet.running(endpointId).map((w) => w.workerId);
    targets.setEndpoint(
      endpointId,
      running.flatMap((workerId) => {
        const port = snapshot.metricsPorts.get(workerId);
        return port === undefined ? [] : [{ workerId, port }];
      }),
    );
  }

  private isOutdated(workerId: string, current: string): boolean {
    const hash = this.fleet.specHash(workerId);
    return hash !== undefined && hash !== current;
  }

  /** Logs an endpoint the schemas reject once per reason, not once per tick. */
  skip(endpointId: string, reason: string): void {
    if (this.skipped.get(endpointId) === reason) return;
    this.skipped.set(endpointId, reason);
    this.log({ level: "warn", msg: "endpoint skipped", endpointId, reason });
  }

  async converge(endpointId: string, given: SchedulableEndpoint | undefined): Promise<void> {
    if (!this.opts.acting()) return;
    try {
      let endpoint = given;
      if (!endpoint) {
        const p = await loadLiveEndpoint(this.opts.db, endpointId);
        if (!p) return; // unknown or deleted: the tick drains its workers
        if (!p.ok) {
          this.skip(endpointId, p.reason);
          return;
        }
        endpoint = p.endpoint;
      }

      const now = this.now();
      await this.capacity.ensureTenant(endpoint.tenantId);
      const provided = this.fleet.held(endpointId);
      const observed = await this.observer.observe({ endpointId, provided, stopping: this.fleet.stopping, now });
      const ready = observed.workers.filter((w) => w.state === "idle" || w.state === "running");
      if (await this.breakers.holds(endpoint, ready.map((w) => w.id), observed.queued + observed.queuedLowPriority)) {
        await this.capacity.report(endpointId, { start: 0, throttled: 0 }).catch(() => {});
        return;
      }
      // A changed engine spec: workers of the old one are no capacity for the step (new ones start
      // for the demand first) and drain once a new one serves (core/policy/rolling.ts).
      const outdated = new Set(provided.filter((p) => this.isOutdated(p.workerId, endpoint.specHash)).map((p) => p.workerId));
      const snapshot = outdated.size === 0 ? observed : { ...observed, workers: observed.workers.filter((w) => !outdated.has(w.id)) };
      // Snapshot pool: scale-down pauses where the endpoint asks for it and the provider can.
      const pausesIdle = endpoint.flashboot && this.fleet.canPause;
      const configuredStandby = endpoint.scaling.workersStandby ?? 0;
      if (configuredStandby > 0) await this.recordArrivals(endpointId, snapshot, now);
      const workersStandby = warmPoolSize(this.arrivals.history(endpointId), { workersStandby: configuredStandby, workersMax: endpoint.scaling.workersMax }, now);
      const decision = decideScaling(snapshot, { ...endpoint.scaling, workersStandby, pausesIdle }, now);
      const previousDesired = this.lastDesired.get(endpointId);
      this.lastDesired.set(endpointId, decision.desired);
      if (outdated.size > 0) {
        const old = observed.workers.filter((w) => outdated.has(w.id)).map((w) => ({ id: w.id, state: w.state, specHash: this.fleet.specHash(w.id) }));
        const current = snapshot.workers.map((w) => ({ id: w.id, state: w.state, specHash: this.fleet.specHash(w.id) }));
        for (const id of planRoll({ workers: [...old, ...current], current: endpoint.specHash, desired: decision.desired }).stop) this.fleet.stop(id, "spec_changed");
      }
      // Paused workers of an endpoint whose flashboot was turned off have no reason to stay.
      const unpaused = pausesIdle ? [] : this.fleet.paused(endpointId).map((w) => w.workerId);
      // Only our provider's workers can be stopped; a live foreign one is capacity, not ours to end.
      const ours = new Set(provided.map((w) => w.workerId));
      // At zero balance idle workers stop at once (workersMin included); busy ones finish their jobs first.
      const billing = this.capacity.billing(endpoint.tenantId);
      const unpaidIdle = billing.stopIdle ? snapshot.workers.filter((w) => w.state === "idle").map((w) => w.id) : [];
      const stop = [...new Set([...decision.stop, ...unpaidIdle])].filter((id) => ours.has(id));
      const replace = decision.replace.filter((id) => ours.has(id));
      if (snapshot.workers.some((w) => w.state === "idle" || w.state === "running")) this.crashes.delete(endpointId);
      const crashes = this.crashes.get(endpointId) ?? NO_CRASHES;
      const waitMs = decision.start > 0 ? startDelayMs(crashes, now) : 0;
      if (waitMs > 0) {
        this.log({ level: "warn", msg: "start delayed: workers keep crashing", endpointId, crashes: crashes.consecutiveFailures, waitMs });
      }
      // The host's cap and the tenant's maxWorkers bound the starts; what they hold back waits, reported on /health.
      // Resumes count against the caps as starts do (a paused worker is not running), and go first.
      const gate = this.capacity.admit(endpoint, decision.resume.length + (waitMs > 0 ? 0 : decision.start), this.fleet.running());
      const resume = decision.resume.slice(0, gate.start);
      const start = gate.start - resume.length;
      if (this.opts.preload && shouldPreload(previousDesired, decision.desired, start)) this.opts.preload(endpoint);
      this.observed(endpointId, snapshot, decision.desired, gate);
      await this.capacity.report(endpointId, gate).catch((err: unknown) => this.log({ level: "warn", msg: "capacity report failed", endpointId, ...errorFields(err) }));
      if (gate.throttled > 0) this.log({ level: "warn", msg: "starts held back", endpointId, throttled: gate.throttled, waitReason: gate.waitReason });
      if (start === 0 && resume.length === 0 && stop.length === 0 && replace.length === 0 && unpaused.length === 0) return;
      if (!this.opts.acting()) {
        for (let i = 0; i < gate.start; i++) this.capacity.release(endpointId);
        return;
      }

      this.log({
        msg: "scale",
        endpointId,
        desired: decision.desired,
        start,
        resume,
        stop,
        pauses: pausesIdle,
        replace,
        reason: decision.reason,
        queued: snapshot.queued,
        queuedLowPriority: snapshot.queuedLowPriority,
        inProgress: snapshot.inProgress,
        workers: snapshot.workers.length,
      });
      const unpaid = new Set(unpaidIdle);
      for (const id of stop) {
        if (pausesIdle && !unpaid.has(id)) this.fleet.pause(id);
        else this.fleet.stop(id, "idle");
      }
      for (const id of unpaused) this.fleet.stop(id, "paused_evicted");
      // A hung worker will not drain: a short grace, then the provider kills it.
      for (const id of replace) this.fleet.stop(id, "heartbeat_lost", HUNG_STOP_GRACE_MS);
      // A paused worker that cannot be resumed and is gone (it died meanwhile) is replaced by a new one.
      const resumes = resume.map((id) =>
        this.fleet
          .resume(id)
          .then((ok) => (ok || this.fleet.held().some((w) => w.workerId === id) ? undefined : this.fleet.start(endpoint)))
          .finally(() => this.capacity.release(endpoint.id)),
      );
      const starts = Array.from({ length: start }, () => this.fleet.start(endpoint).finally(() => this.capacity.release(endpoint.id)));
      await Promise.all([...resumes, ...starts]);
    } catch (err) {
      this.log({ level: "error", msg: "converge failed", endpointId, ...errorFields(err) });
    }
  }
}
