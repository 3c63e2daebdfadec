import { hostname } from "node:os";
import { randomBytes } from "node:crypto";
import type { Redis } from "ioredis";
import type { Db } from "../core/db/client.ts";
import { RedisKeys } from "../core/queue/keys.ts";
import { whenReady } from "../core/redis/connect.ts";
import { parseMessage, wakeMessage } from "../core/queue/messages.ts";
import { decideScaling } from "../core/policy/scaling.ts";
import { shouldPreload } from "../core/weights/preload-trigger.ts";
import { NO_CRASHES, recordCrash, startDelayMs, type CrashRecord } from "../core/policy/restart-backoff.ts";
import type { Provider } from "./providers/provider.ts";
import { Coalescer } from "./coalescer.ts";
import { loadLiveEndpoint, loadLiveEndpoints, loadOpenSessions, type ParsedEndpoint, type SchedulableEndpoint } from "./endpoints.ts";
import { Fleet } from "./fleet.ts";
import { LeaderLock } from "./leader-lock.ts";
import { processLog, errorFields, type Log } from "../core/log/process-log.ts";
import { EndpointObserver, type EndpointObservation } from "./observe.ts";
import type { WorkerRedisUsers } from "./worker-redis-users.ts";
import type { WorkerSecrets } from "./worker-secrets.ts";
import { workerHeartbeat } from "../core/contracts/worker-state.ts";
import { availableParallelism, totalmem } from "node:os";
import { defaultHostWorkerCap, type CapacityDecision } from "../core/policy/capacity.ts";
import { CapacityGate } from "./capacity-gate.ts";
import { BalanceCache } from "../core/redis/balance-cache.ts";
import type { BillingMode } from "../core/contracts/billing.ts";
import { performance } from "node:perf_hooks";
import type { SchedulerMetrics } from "./scheduler-metrics.ts";
import type { WorkerSdFile } from "./worker-sd-file.ts";
import { StartBreakers } from "./start-breakers.ts";
import { planRoll } from "../core/policy/rolling.ts";
import { choosePausedEvictions, type PausedPoolLimits } from "../core/policy/snapshot-pool.ts";
import { warmPoolSize } from "../core/policy/warm-pool.ts";
import { ArrivalHistory } from "./arrival-history.ts";

/** How long a hung worker gets between SIGTERM and SIGKILL (ms). */
const HUNG_STOP_GRACE_MS = 5000;

export interface SchedulerOptions {
  /** Command connection; the scheduler duplicates it once for its wake subscription. Closed by the caller. */
  redis: Redis;
  /** Closed by the caller. */
  db: Db;
  /** Owned from `start()` on: `close()` closes it, which stops (drains) every worker it runs. */
  provider: Provider;
  redisPrefix: string;
  /** Period of the converge loop over all endpoints. Default 1000. A wake converges one endpoint at once. */
  tickMs?: number;
  /** Leadership lease; a dead leader is replaced within it. Default 10_000. */
  lockTtlMs?: number;
  /** Heartbeat period handed to workers (HEARTH_HEARTBEAT_MS); three missed beats make a dead worker's entry stale. Default 1000. */
  heartbeatMs?: number;
  /** How long a stopped worker finishes its jobs before aborting them (HEARTH_DRAIN_TIMEOUT_MS). Default 30_000. */
  drainTimeoutMs?: number;
  /** Added to `drainTimeoutMs` before a worker that has not exited is killed. Default 10_000. */
  killMarginMs?: number;
  /** A worker process silent this long is hung: killed and replaced (ms). Default 15000. */
  hungAfterMs?: number;
  /** Extra environment for every worker. */
  workerEnv?: Record<string, string>;
  /** Opens each endpoint's secrets for its own workers (HEARTH_SECRETS_KEY, operator S3 credentials for allow-listed buckets). Default: none. */
  workerSecrets?: WorkerSecrets;
  /**
   * A Redis user per worker, limited to its endpoint. Owned: `close()` closes it. Default: none,
   * workers get the provider's Redis URL.
   */
  workerRedisUsers?: WorkerRedisUsers;
  /** How often the leader removes Redis users of workers that are gone and restores lost ones (ms). Default 30_000. */
  userSweepMs?: number;
  /** HEARTH_HOST_WORKER_CAP: the most workers the provider runs at once; more demand waits (throttled, `no_capacity`). Default: 4 per core, at least 16. */
  hostWorkerCap?: number;
  /** maxWorkers of a tenant without an override (HEARTH_DEFAULT_MAX_WORKERS). Default 100. */
  defaultMaxWorkers?: number;
  /**
   * HEARTH_BILLING_MODE: under `enforce`, no worker starts for an `enforce` tenant at zero balance
   * and its idle workers stop. Default `meter` for an embedder; the environment's default is `enforce`.
   */
  billingMode?: BillingMode;
  /** spendPerHourMicros of a tenant without an override (HEARTH_DEFAULT_SPEND_PER_HOUR_MICROS). Default 100_000_000. */
  defaultSpendPerHourMicros?: number;
  /** The scheduler's Prometheus series (scheduler/scheduler-metrics.ts). Default: none. */
  metrics?: SchedulerMetrics;
  /**
   * HEARTH_WORKER_SD_FILE: where Prometheus finds the `/metrics` ports workers report in their
   * heartbeats. Owned: written empty at `start()`, updated each converge and at each exit. Default: none.
   */
  workerTargets?: WorkerSdFile;
  /**
   * Warms an endpoint's model in this host's weights cache (scheduler/weights-preloader.ts) when the
   * endpoint is first seen and whenever its desired worker count rises, unless a worker is started
   * for it in the same step (core/weights/preload-trigger.ts). Fire-and-forget. Default: none.
   */
  preload?: (endpoint: SchedulableEndpoint) => void;
  /**
   * The snapshot pool's limits on this host (HEARTH_PAUSED_MEMORY_BYTES, HEARTH_PAUSED_MAX_AGE_S):
   * past them paused workers are stopped, least recently used first. Default: a quarter of the
   * host's memory, one hour.
   */
  pausedPool?: PausedPoolLimits;
  /** How long a worker may take to ready itself for a pause or to take jobs after a resume (ms). Default 10_000. */
  pauseTimeoutMs?: number;
  /** Unique per replica; default host:pid:random. */
  id?: string;
  /** Default Date.now. */
  now?: () => number;
  /** Default: JSON lines on stdout. */
  log?: Log;
}

/**
 * The autoscaler: for every live endpoint, observe (Redis + provider) → decide (pure policy) → act
 * (provider), every tick and at once on a wake. Only the replica holding the leader lock acts; the
 * others keep trying for it.
 */
export class Scheduler {
  readonly id: string;
  private readonly keys: RedisKeys;
  private readonly tickMs: number;
  private readonly now: () => number;
  private readonly log: Log;
  private readonly lock: LeaderLock;
  private readonly observer: EndpointObserver;
  private readonly fleet: Fleet;
  private readonly capacity: CapacityGate;
  /** One converge per endpoint at a time; `undefined` means "read the endpoint first". */
  private readonly converging: Coalescer<SchedulableEndpoint | undefined>;
  private readonly ticking: Coalescer<undefined>;
  private subscriber: Redis | undefined;
  /** Consecutive crashes per endpoint, for the restart backoff; cleared when a worker is seen healthy. */
  private readonly crashes = new Map<string, CrashRecord>();
  private timer: NodeJS.Timeout | undefined;
  private closing = false;
  private readonly skipped = new Map<string, string>();
  private readonly staleHeartbeatMs: number;
  /** Each endpoint's desired worker count at its last converge, for the preload hook. */
  private readonly lastDesired = new Map<string, number>();
  private readonly breakers: StartBreakers;
  /** When the worker users were last swept (ms); 0 makes a new leader's first tick sweep. */
  private usersSweptAt = 0;
  private readonly arrivals = new ArrivalHistory();
  private readonly pausedPool: PausedPoolLimits;

  constructor(private readonly opts: SchedulerOptions) {
    this.id = opts.id ?? `${hostname()}:${process.pid}:${randomBytes(4).toString("hex")}`;
    this.keys = new RedisKeys(opts.redisPrefix);
    this.tickMs = opts.tickMs ?? 1000;
    this.now = opts.now ?? Date.now;
    this.log = opts.log ?? processLog("scheduler");
    const heartbeatMs = opts.heartbeatMs ?? 1000;
    const drainTimeoutMs = opts.drainTimeoutMs ?? 30_000;
    this.staleHeartbeatMs = 3 * heartbeatMs;
    this.pausedPool = opts.pausedPool ?? { memoryBytes: Math.floor(totalmem() / 4), maxAgeMs: 3_600_000 };
    this.lock = new LeaderLock({
      redis: opts.redis,
      key: this.keys.schedulerLock(),
      ownerId: this.id,
      ttlMs: opts.lockTtlMs,
      now: this.now,
      onChange: (leader) => this.onLeadership(leader),
    });
    this.fleet = new Fleet({
      redis: opts.redis,
      keys: this.keys,
      provider: opts.provider,
      workerEnv: {
        ...opts.workerEnv,
        HEARTH_HEARTBEAT_MS: String(heartbeatMs),
        HEARTH_DRAIN_TIMEOUT_MS: String(drainTimeoutMs),
      },
      stopGraceMs: drainTimeoutMs + (opts.killMarginMs ?? 10_000),
      now: this.now,
      log: this.log,
      ...(opts.workerRedisUsers && { users: opts.workerRedisUsers }),
      ...(opts.workerSecrets && { secrets: opts.workerSecrets }),
      ...(opts.metrics && { metrics: opts.metrics }),
      onStartFailed: (endpointId, _workerId, error) => this.breakers.startFailed(endpointId, error),
      ...(opts.pauseTimeoutMs !== undefined && { pauseTimeoutMs: opts.pauseTimeoutMs }),
      onPaused: (w) => {
        this.enforcePausedPool();
        // Demand that came while it was pausing finds it paused now: resume it rather than wait for a tick.
        void this.wake(w.endpointId);
      },
      onExit: (w, requested) => {
        opts.workerTargets?.remove(w.workerId);
        this.breakers.exited(w, requested);
        // A worker that ends on its own with an error counts towards its endpoint's crash loop.
        if (!requested && w.exitCode !== undefined && w.exitCode !== 0) {
          this.crashes.set(w.endpointId, recordCrash(this.crashes.get(w.endpointId) ?? NO_CRASHES, this.now()));
        }
      },
    });
    this.observer = new EndpointObserver({
      redis: opts.redis,
      keys: this.keys,
      staleHeartbeatMs: 3 * heartbeatMs,
      hungAfterMs: opts.hungAfterMs,
      markLost: async (endpointId, workerId) => {
        if (await this.fleet.workerLog.lost(endpointId, workerId, "heartbeat stopped and no provider of this scheduler runs it")) {
          this.log({ level: "warn", msg: "worker lost", endpointId, workerId });
        }
        await opts.workerRedisUsers?.remove(endpointId, workerId);
      },
    });
    this.capacity = new CapacityGate({
      db: opts.db,
      redis: opts.redis,
      keys: this.keys,
      hostCap: opts.hostWorkerCap ?? defaultHostWorkerCap(availableParallelism()),
      defaultMaxWorkers: opts.defaultMaxWorkers ?? 100,
      billingMode: opts.billingMode ?? "meter",
      defaultSpendPerHourMicros: opts.defaultSpendPerHourMicros ?? 100_000_000,
      balances: new BalanceCache(opts.redis, opts.db.$client, this.keys),
      reportTtlMs: 3 * this.tickMs + 1000,
    });
    this.breakers = new StartBreakers({
      redis: opts.redis,
      keys: this.keys,
      now: this.now,
      log: this.log,
      // Workers still booting when the breaker opens would only fail the same way.
      stopBooting: (endpointId, isReady) => {
        for (const w of this.fleet.running(endpointId)) if (!isReady(w.workerId)) this.fleet.stop(w.workerId, "crash_loop");
      },
    });
    this.converging = new Coalescer((endpointId, endpoint) => this.converge(endpointId, endpoint));
    this.ticking = new Coalescer(() => this.convergeAll());
  }

  get isLeader(): boolean {
    return this.lock.isLeader;
  }

  /** Subscribes to wakes, contends for leadership and starts the loop; resolves after the first lock attempt. */
  async start(): Promise<void> {
    // No worker of ours runs yet: whatever a previous run left in the file goes.
    await this.opts.workerTargets?.flush();
    // Whatever a dead predecessor left frozen on this host goes before anything else: nobody else would free it.
    await this.fleet.reclaim().catch((err: unknown) => this.log({ level: "error", msg: "paused workers reclaim failed", ...errorFields(err) }));
    this.subscriber = this.opts.redis.duplicate();
    this.subscriber.on("error", () => {}); // reconnects and resubscribes on its own; the tick covers lost wakes
    const wakeChannel = this.keys.wakeChannel();
    this.subscriber.on("message", (channel: string, raw: string) => {
      if (channel !== wakeChannel) return;
      const msg = parseMessage(wakeMessage, raw);
      if (msg) void this.wake(msg.endpointId);
    });
    // Subscribing before the connection is ready races ioredis' ready check (refused on a subscribed connection).
    await whenReady(this.subscriber, "the scheduler's Redis");
    await this.subscriber.subscribe(wakeChannel);
    await this.lock.start();
    this.timer = setTimeout(() => void this.loop(), 0);
  }

  /**
   * Converges every live endpoint now, as the loop does each `tickMs`; resolves once a full pass has
   * run after this call (joining a pass in flight). A no-op unless leader.
   */
  tick(): Promise<void> {
    if (this.closing) return Promise.resolve();
    return this.ticking.run("tick", undefined);
  }

  /** Converges one endpoint now (what a wake message does); resolves once it has. */
  wake(endpointId: string): Promise<void> {
    if (this.closing || !this.lock.isLeader) return Promise.resolve();
    return this.converging.run(endpointId, undefined);
  }

  /**
   * Stops the loop, stops every worker and waits for them to drain and be recorded, then gives up
   * leadership (so no stand-by starts workers beside ours) and unsubscribes.
   */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    clearTimeout(this.timer);
    await this.ticking.idle();
    await this.converging.idle();
    await this.fleet.close();
    await this.breakers.idle();
    await this.opts.workerTargets?.flush();
    this.opts.workerRedisUsers?.close();
    await this.lock.release().catch((err: unknown) => this.log({ level: "warn", msg: "lock release failed", ...errorFields(err) }));
    await this.subscriber?.quit().catch(() => this.subscriber?.disconnect());
  }

  private async loop(): Promise<void> {
    await this.tick();
    if (!this.closing) this.timer = setTimeout(() => void this.loop(), this.tickMs);
  }

  private onLeadership(leader: boolean): void {
    this.opts.metrics?.leadership(leader);
    if (this.closing) return;
    this.log({ level: leader ? "info" : "warn", msg: leader ? "leadership acquired" : "leadership lost", schedulerId: this.id });
    if (leader) {
      this.usersSweptAt = 0;
      void this.reconcileSessions();
      void this.tick();
    } else {
      // The new leader cannot stop workers of this provider; hand the fleet over by draining it.
      this.fleet.stopAll("leadership_lost");
    }
  }

  /**
   * Closes worker sessions a dead scheduler left open: a session the records show open, whose
   * worker no provider of ours runs and that has no heartbeat in Redis (so the observer will never
   * see it go stale), is logged lost. Sessions younger than a minute are left alone: the records
   * may simply not have caught up with their exit yet.
   */
  private async reconcileSessions(): Promise<void> {
    try {
      const open = await loadOpenSessions(this.opts.db, this.now() - 60_000);
      const ours = new Set(this.fleet.held().map((w) => w.workerId));
      for (const s of open) {
        if (ours.has(s.id) || (await this.fleet.workerLog.present(s.endpointId, s.id))) continue;
        if (await this.fleet.workerLog.lost(s.endpointId, s.id, "session left open by a stopped scheduler", { force: true })) {
          this.log({ level: "warn", msg: "worker session reconciled as lost", endpointId: s.endpointId, workerId: s.id });
        }
        await this.opts.workerRedisUsers?.remove(s.endpointId, s.id);
      }
    } catch (err) {
      this.log({ level: "warn", msg: "session reconcile failed", ...errorFields(err) });
    }
  }

  private async convergeAll(): Promise<void> {
    if (this.closing || !this.lock.isLeader) return;
    const passStarted = performance.now();
    const queriedAt = this.now();
    let parsed: ParsedEndpoint[];
    try {
      parsed = await loadLiveEndpoints(this.opts.db);
      await this.capacity.refreshTenants(parsed.flatMap((p) => (p.ok ? [p.endpoint.tenantId] : [])));
    } catch (err) {
      this.log({ level: "error", msg: "endpoint read failed", ...errorFields(err) });
      return;
    }
    const live = new Map<string, SchedulableEndpoint>();
    const existing = new Set<string>();
    for (const p of parsed) {
      existing.add(p.ok ? p.endpoint.id : p.id);
      if (p.ok) live.set(p.endpoint.id, p.endpoint);
      else this.skip(p.id, p.reason);
    }
    for (const id of this.lastDesired.keys()) if (!existing.has(id)) this.lastDesired.delete(id);
    if (this.closing || !this.lock.isLeader) return;
    // Workers of deleted endpoints drain away (an unreadable endpoint keeps what it has). One started
    // after the read may belong to an endpoint created since: it is left for the next tick.
    for (const w of this.fleet.held()) {
      if (!existing.has(w.endpointId) && w.startedAt < queriedAt) this.fleet.stop(w.workerId, "endpoint_deleted");
    }
    this.arrivals.keep(existing);
    await Promise.all([
      this.fleet.refreshBooting().catch((err: unknown) => this.log({ level: "warn", msg: "boot heartbeat refresh failed", ...errorFields(err) })),
      ...[...live.values()].map((e) => this.converging.run(e.id, e)),
      this.sweepWorkerUsers(queriedAt),
    ]);
    if (this.closing || !this.lock.isLeader) return;
    this.enforcePausedPool();
    this.opts.metrics?.keepEndpoints(new Set(live.keys()));
    this.opts.metrics?.tick((performance.now() - passStarted) / 1000);
  }

  /**
   * Every `userSweepMs` (and at once on leadership): removes Redis users of workers that are gone
   * without an exit this scheduler saw (a dead scheduler's workers, once they have drained) and
   * restores this scheduler's users that Redis lost. A foreign worker still beating keeps its user.
   */
  private async sweepWorkerUsers(now: number): Promise<void> {
    const users = this.opts.workerRedisUsers;
    if (!users || now - this.usersSweptAt < (this.opts.userSweepMs ?? 30_000)) return;
    this.usersSweptAt = now;
    try {
      const { removed, restored } = await users.sweep(async (endpointId, workerId) => {
        const raw = await this.opts.redis.hget(this.keys.workers(endpointId), workerId);
        let at: number | undefined;
        try {
          at = raw === null ? undefined : workerHeartbeat.parse(JSON.parse(raw)).at;
        } catch {
          at = undefined; // unreadable: the observer removes the entry; the user goes with it
        }
        return at !== undefined && this.now() - at <= this.staleHeartbeatMs;
      });
      if (removed.length > 0) this.log({ msg: "worker Redis users of gone workers removed", users: removed });
      if (restored.length > 0) this.log({ level: "warn", msg: "worker Redis users restored (Redis had lost them)", users: restored });
    } catch (err) {
      this.log({ level: "warn", msg: "worker Redis user sweep failed", ...errorFields(err) });
    }
  }

  /** Stops the paused workers past the pool's age or beyond its memory budget, least recently used first. */
  private enforcePausedPool(): void {
    const paused = this.fleet.paused().flatMap((w) =>
      w.pausedAt === undefined || this.fleet.stopping.has(w.workerId) ? [] : [{ id: w.workerId, endpointId: w.endpointId, pausedAt: w.pausedAt, residentBytes: w.residentBytes ?? 0 }],
    );
    for (const e of choosePausedEvictions(paused, this.pausedPool, this.now())) {
      this.log({ msg: "paused worker evicted", workerId: e.id, why: e.why });
      this.fleet.stop(e.id, "paused_evicted");
    }
  }

  /** Feeds the arrival history of an endpoint with a warm pool: jobs finished, cancelled, queued and in progress. */
  private async recordArrivals(endpointId: string, snapshot: EndpointObservation, now: number): Promise<void> {
    const [completed, failed, cancelled] = await this.opts.redis.hmget(this.keys.stats(endpointId), "completed", "failed", "cancelled");
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
  private skip(endpointId: string, reason: string): void {
    if (this.skipped.get(endpointId) === reason) return;
    this.skipped.set(endpointId, reason);
    this.log({ level: "warn", msg: "endpoint skipped", endpointId, reason });
  }

  private async converge(endpointId: string, given: SchedulableEndpoint | undefined): Promise<void> {
    if (this.closing || !this.lock.isLeader) return;
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
      if (this.closing || !this.lock.isLeader) {
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
