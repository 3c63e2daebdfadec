import { hostname } from "node:os";
import { randomBytes } from "node:crypto";
import type { Redis } from "ioredis";
import { RedisKeys } from "../core/queue/keys.ts";
import { whenReady } from "../core/redis/connect.ts";
import { parseMessage, wakeMessage } from "../core/queue/messages.ts";
import { Coalescer } from "./coalescer.ts";
import { loadLiveEndpoints, type ParsedEndpoint, type SchedulableEndpoint } from "./endpoints.ts";
import { Fleet } from "./fleet.ts";
import { LeaderLock } from "./leader-lock.ts";
import { processLog, errorFields, type Log } from "../core/log/process-log.ts";
import { EndpointObserver } from "./observe.ts";
import { availableParallelism, totalmem } from "node:os";
import { defaultHostWorkerCap } from "../core/policy/capacity.ts";
import { CapacityGate } from "./capacity-gate.ts";
import { BalanceCache } from "../core/redis/balance-cache.ts";
import { performance } from "node:perf_hooks";
import { StartBreakers } from "./start-breakers.ts";
import { choosePausedEvictions, type PausedPoolLimits } from "../core/policy/snapshot-pool.ts";
import type { SchedulerOptions } from "./scheduler-options.ts";
import { EndpointConverger } from "./endpoint-converger.ts";
import { WorkerReconciler } from "./worker-reconciler.ts";

// Importers take the options from beside the class, as before they had their own file.
export type { SchedulerOptions } from "./scheduler-options.ts";

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
  private readonly endpoints: EndpointConverger;
  private readonly workers: WorkerReconciler;
  private timer: NodeJS.Timeout | undefined;
  private closing = false;
  private readonly breakers: StartBreakers;
  private readonly pausedPool: PausedPoolLimits;

  constructor(private readonly opts: SchedulerOptions) {
    this.id = opts.id ?? `${hostname()}:${process.pid}:${randomBytes(4).toString("hex")}`;
    this.keys = new RedisKeys(opts.redisPrefix);
    this.tickMs = opts.tickMs ?? 1000;
    this.now = opts.now ?? Date.now;
    this.log = opts.log ?? processLog("scheduler");
    const heartbeatMs = opts.heartbeatMs ?? 1000;
    const drainTimeoutMs = opts.drainTimeoutMs ?? 30_000;
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
          this.endpoints.crashed(w.endpointId);
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
    this.endpoints = new EndpointConverger({
      db: opts.db,
      redis: opts.redis,
      keys: this.keys,
      fleet: this.fleet,
      observer: this.observer,
      capacity: this.capacity,
      breakers: this.breakers,
      acting: () => !this.closing && this.lock.isLeader,
      now: this.now,
      log: this.log,
      ...(opts.metrics && { metrics: opts.metrics }),
      ...(opts.workerTargets && { workerTargets: opts.workerTargets }),
      ...(opts.preload && { preload: opts.preload }),
    });
    this.workers = new WorkerReconciler({
      db: opts.db,
      redis: opts.redis,
      keys: this.keys,
      fleet: this.fleet,
      staleHeartbeatMs: 3 * heartbeatMs,
      ...(opts.workerRedisUsers && { workerRedisUsers: opts.workerRedisUsers }),
      ...(opts.userSweepMs !== undefined && { userSweepMs: opts.userSweepMs }),
      now: this.now,
      log: this.log,
    });
    this.converging = new Coalescer((endpointId, endpoint) => this.endpoints.converge(endpointId, endpoint));
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
      this.workers.sweepUsersNext();
      void this.workers.reconcileSessions();
      void this.tick();
    } else {
      // The new leader cannot stop workers of this provider; hand the fleet over by draining it.
      this.fleet.stopAll("leadership_lost");
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
      else this.endpoints.skip(p.id, p.reason);
    }
    this.endpoints.forgetDeleted(existing);
    if (this.closing || !this.lock.isLeader) return;
    // Workers of deleted endpoints drain away (an unreadable endpoint keeps what it has). One started
    // after the read may belong to an endpoint created since: it is left for the next tick.
    for (const w of this.fleet.held()) {
      if (!existing.has(w.endpointId) && w.startedAt < queriedAt) this.fleet.stop(w.workerId, "endpoint_deleted");
    }
    await Promise.all([
      this.fleet.refreshBooting().catch((err: unknown) => this.log({ level: "warn", msg: "boot heartbeat refresh failed", ...errorFields(err) })),
      ...[...live.values()].map((e) => this.converging.run(e.id, e)),
      this.workers.sweepWorkerUsers(queriedAt),
    ]);
    if (this.closing || !this.lock.isLeader) return;
    this.enforcePausedPool();
    this.opts.metrics?.keepEndpoints(new Set(live.keys()));
    this.opts.metrics?.tick((performance.now() - passStarted) / 1000);
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
}
