import { and, eq, isNull } from "drizzle-orm";
import type { Redis } from "ioredis";
import type { Db } from "../core/db/client.ts";
import { workers } from "../core/db/schema.ts";
import type { RedisKeys } from "../core/queue/keys.ts";
import type { ProvidedWorker, Provider } from "./providers/provider.ts";
import type { SchedulableEndpoint } from "./endpoints.ts";
import { errorFields, type Log } from "./log.ts";
import { BootHeartbeats } from "./boot-heartbeats.ts";
import { newWorkerId } from "../core/ids/random-id.ts";

export interface FleetOptions {
  redis: Redis;
  db: Db;
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
}

/**
 * Starts and stops workers through the provider and keeps their records: a `booting` heartbeat and
 * a `workers` row from the moment one is started, `stopped` with its exit code once it is gone.
 */
export class Fleet {
  /** Workers asked to stop and not yet exited: they are draining, whatever they last reported. */
  readonly stopping = new Set<string>();
  private readonly pending = new Set<Promise<unknown>>();
  private readonly unsubscribe: () => void;
  private readonly bootHeartbeats: BootHeartbeats;

  constructor(private readonly opts: FleetOptions) {
    this.bootHeartbeats = new BootHeartbeats(opts.redis, opts.keys);
    this.unsubscribe = opts.provider.onExit((w) => this.track(this.recordExit(w)));
  }

  /** Running workers this fleet's provider holds, optionally of one endpoint. */
  running(endpointId?: string): ProvidedWorker[] {
    return this.opts.provider
      .list()
      .filter((w) => w.state === "running" && (endpointId === undefined || w.endpointId === endpointId));
  }

  /** Starts one worker; failures are logged and recorded, not thrown. */
  async start(endpoint: SchedulableEndpoint): Promise<void> {
    const { db, provider, now, log } = this.opts;
    const workerId = newWorkerId();
    const startedAt = now();
    try {
      // Both before the spawn: the API counts the worker as initializing at once, the worker's own
      // first heartbeat lands over the stand-in, and its exit always finds its row.
      await Promise.all([
        this.bootHeartbeats.write(endpoint.id, workerId, startedAt),
        db.insert(workers).values({
          id: workerId,
          endpointId: endpoint.id,
          provider: provider.name,
          state: "booting",
          startedAt: new Date(startedAt),
        }),
      ]);
      await provider.start({
        workerId,
        endpointId: endpoint.id,
        engine: endpoint.engine,
        env: this.opts.workerEnv,
        executionTimeoutMs: endpoint.executionTimeoutMs,
      });
      log({ msg: "worker started", endpointId: endpoint.id, workerId });
    } catch (err) {
      log({ level: "error", msg: "worker start failed", endpointId: endpoint.id, workerId, ...errorFields(err) });
      this.track(this.recordExit({ workerId, endpointId: endpoint.id, startedAt, state: "exited" }));
    }
  }

  /** Asks one of this provider's workers to drain and stop; returns at once, the exit is recorded when it comes. */
  stop(workerId: string, reason: string, graceMs = this.opts.stopGraceMs): void {
    if (this.stopping.has(workerId)) return;
    const worker = this.running().find((w) => w.workerId === workerId);
    if (!worker) return;
    this.stopping.add(workerId);
    this.opts.log({ msg: "worker stopping", endpointId: worker.endpointId, workerId, reason });
    this.track(
      this.opts.db
        .update(workers)
        .set({ state: "draining" })
        .where(and(eq(workers.id, workerId), isNull(workers.stoppedAt))),
    );
    this.track(this.opts.provider.stop(workerId, { graceMs }));
  }

  /** Keeps the stand-in heartbeats of workers still starting fresh; call every tick. */
  refreshBooting(): Promise<void> {
    return this.bootHeartbeats.refresh(this.opts.now());
  }

  stopAll(reason: string): void {
    for (const w of this.running()) this.stop(w.workerId, reason);
  }

  /** Stops every worker and waits for them to exit (they drain) and for their records to be written. */
  async close(): Promise<void> {
    await this.opts.provider.close();
    await this.settle();
    this.unsubscribe();
  }

  /** Waits for every record write and stop in flight. */
  async settle(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
  }

  private async recordExit(w: ProvidedWorker): Promise<void> {
    const { redis, db, keys, now, log } = this.opts;
    const requested = this.stopping.delete(w.workerId);
    this.bootHeartbeats.forget(w.workerId);
    this.opts.onExit?.(w, requested);
    log({ msg: "worker exited", endpointId: w.endpointId, workerId: w.workerId, exitCode: w.exitCode ?? null, requested });
    await Promise.all([
      redis.hdel(keys.workers(w.endpointId), w.workerId),
      db
        .update(workers)
        .set({ state: "stopped", stoppedAt: new Date(now()), exitCode: w.exitCode ?? null })
        .where(eq(workers.id, w.workerId)),
    ]);
  }

  private track(p: Promise<unknown>): void {
    const tracked = p.catch((err: unknown) => this.opts.log({ level: "error", msg: "fleet write failed", ...errorFields(err) }));
    this.pending.add(tracked);
    void tracked.finally(() => this.pending.delete(tracked));
  }
}
