import type { Redis } from "ioredis";
import type { RedisKeys } from "../core/queue/keys.ts";
import { workerHeartbeat, type WorkerHeartbeat } from "../core/contracts/worker-state.ts";
import type { EndpointSnapshot, ObservedWorker } from "../core/policy/scaling.ts";
import type { ProvidedWorker } from "./providers/provider.ts";

export interface EndpointObserverOptions {
  redis: Redis;
  keys: RedisKeys;
  /**
   * Called for a worker whose heartbeat went stale while no provider of ours runs it: it died
   * without a word. Must remove the entry (and log the worker lost).
   */
  markLost: (endpointId: string, workerId: string) => Promise<unknown>;
  /**
   * A heartbeat older than this whose worker the provider no longer runs is deleted (its worker died
   * without cleaning up). Default 3_000: three missed beats at the worker's default 1 s.
   */
  staleHeartbeatMs?: number;
  /**
   * A running process silent for this long is hung (ms). Longer than `staleHeartbeatMs`: a handler
   * that blocks the event loop for a few seconds delays beats without being dead. Default 15000.
   */
  hungAfterMs?: number;
}

export interface ObserveInput {
  endpointId: string;
  /** The provider's running and paused workers of this endpoint. */
  provided: readonly ProvidedWorker[];
  /** Workers the scheduler has asked to stop: shown as draining whatever their last heartbeat said. */
  stopping: ReadonlySet<string>;
  now: number;
}

/** A snapshot for the scaling policy, and what else the heartbeats said. */
export interface EndpointObservation extends EndpointSnapshot {
  /** `/metrics` ports the provider's running workers report in their heartbeats, by worker id. */
  metricsPorts: Map<string, number>;
}

/**
 * Reads one endpoint's demand from its BullMQ keys and its fleet from the provider and the heartbeat
 * hash, as the pure scaling policy wants it. Two round trips: counts, oldest waiting id and
 * heartbeats in one pipeline, then that job's timestamp.
 */
export class EndpointObserver {
  private readonly staleHeartbeatMs: number;
  private readonly hungAfterMs: number;

  constructor(private readonly opts: EndpointObserverOptions) {
    this.staleHeartbeatMs = opts.staleHeartbeatMs ?? 3_000;
    this.hungAfterMs = opts.hungAfterMs ?? 15_000;
  }

  async observe(input: ObserveInput): Promise<EndpointObservation> {
    const { redis, keys } = this.opts;
    const queueKey = `${keys.prefix}:${keys.queueName(input.endpointId)}`;
    const heartbeatsKey = keys.workers(input.endpointId);

    // BullMQ 6 keeps normal jobs in the `wait` list (LPUSHed, so the oldest is last), prioritized
    // ones (our low-priority jobs) in the `prioritized` zset, and jobs being processed in `active`.
    const results = await redis
      .pipeline()
      .llen(`${queueKey}:wait`)
      .zcard(`${queueKey}:prioritized`)
      .llen(`${queueKey}:active`)
      .lindex(`${queueKey}:wait`, -1)
      .hgetall(heartbeatsKey)
      .exec();
    if (!results) throw new Error("observe: pipeline was not executed");
    for (const [err] of results) if (err) throw err;
    const [queued, queuedLowPriority, inProgress, oldestId, heartbeatHash] = results.map(([, v]) => v) as [
      number,
      number,
      number,
      string | null,
      Record<string, string>,
    ];

    let oldestQueuedAt: number | null = null;
    if (oldestId !== null) {
      const ts = await redis.hget(`${queueKey}:${oldestId}`, "timestamp");
      // The job may have been taken between the two reads: then the next one is no older than now.
      oldestQueuedAt = ts === null ? input.now : Number(ts);
    }

    const heartbeats = parseHeartbeats(heartbeatHash);
    const workers: ObservedWorker[] = [];
    const provided = new Set<string>();
    const metricsPorts = new Map<string, number>();
    for (const p of input.provided) {
      provided.add(p.workerId);
      const hb = heartbeats.get(p.workerId);
      if (hb?.metricsPort !== undefined) metricsPorts.set(p.workerId, hb.metricsPort);
      // Started but not yet heard from: booting. Frozen by the provider: paused, whatever it last said.
      // Thawed but not yet heard from since (its last beat still says `paused`): resuming, as good as booting.
      const state = input.stopping.has(p.workerId)
        ? "draining"
        : p.state === "paused"
          ? "paused"
          : hb?.state === "paused"
            ? "initializing"
            : (hb?.state ?? "requested");
      // A process that runs but has stopped beating is hung. Booting is left out: until a worker's
      // own first beat its entry is the scheduler's stand-in, refreshed only once per tick. A paused
      // worker is silent by design (its process is stopped): not hung.
      const heartbeatLost =
        hb !== undefined && state !== "requested" && state !== "initializing" && state !== "draining" && state !== "paused" && input.now - hb.at > this.hungAfterMs;
      workers.push({
        id: p.workerId,
        state,
        idleSince: state === "idle" ? (hb?.idleSince ?? null) : null,
        startedAt: p.startedAt,
        ...(heartbeatLost ? { heartbeatLost } : {}),
        ...(p.pausedAt !== undefined && { pausedAt: p.pausedAt }),
      });
    }

    const stale: string[] = [];
    for (const [id, hb] of heartbeats) {
      if (provided.has(id)) continue;
      // A paused worker of another scheduler on this host is silent too; its provider's successor reclaims it (LocalProvider.reclaim).
      if (hb === undefined || input.now - hb.at > this.staleHeartbeatMs) {
        stale.push(id);
      } else {
        // A live worker this provider did not start (a previous leader's, still draining or serving):
        // it is capacity while it beats, though only its own provider could stop it.
        workers.push({ id, state: hb.state, idleSince: hb.state === "idle" ? hb.idleSince : null, startedAt: hb.at });
      }
    }
    if (stale.length > 0) await Promise.all(stale.map((id) => this.opts.markLost(input.endpointId, id)));

    return { queued, queuedLowPriority, inProgress, oldestQueuedAt, workers, metricsPorts };
  }
}

/** Unparseable entries map to undefined, so they are cleaned like stale ones unless their worker runs. */
function parseHeartbeats(hash: Record<string, string>): Map<string, WorkerHeartbeat | undefined> {
  const out = new Map<string, WorkerHeartbeat | undefined>();
  for (const [id, raw] of Object.entries(hash)) {
    let parsed: WorkerHeartbeat | undefined;
    try {
      const r = workerHeartbeat.safeParse(JSON.parse(raw));
      parsed = r.success ? r.data : undefined;
    } catch {
      parsed = undefined;
    }
    out.set(id, parsed);
  }
  return out;
}
