import type { Redis } from "ioredis";
import { workerHeartbeat, type WorkerHeartbeat } from "../../../core/contracts/worker-state.ts";
import { currentBreaker, isOpen, parseBreaker, type BreakerState } from "../../../core/policy/start-breaker.ts";
import { explainWait, WAIT_REASON_AFTER_MS, type WaitExplanation } from "../../../core/policy/wait-reason.ts";
import { capacityReport, type CapacityReport } from "../../../core/policy/capacity.ts";
import type { RedisKeys } from "../../../core/queue/keys.ts";
import { HEARTBEAT_STALE_MS } from "./endpoint-health.ts";

/** What the scheduler and the workers say about an endpoint, read in one round trip. */
export interface WaitFacts {
  breaker: BreakerState;
  capacity: CapacityReport | undefined;
  workers: WorkerHeartbeat[];
}

/** The endpoint's breaker as the API shows it (GET endpoint, `/health`). */
export function breakerView(b: BreakerState): { open: boolean; failedStarts: number; lastError: string | null; openedAt: string | null } {
  return { open: isOpen(b), failedStarts: b.failedStarts, lastError: b.lastError, openedAt: b.openedAt === null ? null : new Date(b.openedAt).toISOString() };
}

/** The start breaker of the endpoint at `revision` (its `updatedAt`, ms): one of an older revision reads closed. */
export async function readBreaker(redis: Redis, keys: RedisKeys, endpointId: string, revision: number): Promise<BreakerState> {
  return currentBreaker(parseBreaker(await redis.get(keys.startBreaker(endpointId))), revision);
}

export async function readWaitFacts(redis: Redis, keys: RedisKeys, endpointId: string, revision: number, now: number): Promise<WaitFacts> {
  const [breakerRaw, capacityRaw, workers] = await Promise.all([
    redis.get(keys.startBreaker(endpointId)),
    redis.get(keys.capacity(endpointId)),
    redis.hgetall(keys.workers(endpointId)),
  ]);
  return {
    breaker: currentBreaker(parseBreaker(breakerRaw), revision),
    capacity: parseJson(capacityRaw, (v) => capacityReport.safeParse(v)),
    workers: Object.values(workers).flatMap((raw) => {
      const hb = parseJson(raw, (v) => workerHeartbeat.safeParse(v));
      return hb && now - hb.at <= HEARTBEAT_STALE_MS ? [hb] : [];
    }),
  };
}

/**
 * A queued job's `waitReason` and `waitDetail` (core/policy/wait-reason.ts), or undefined. Reads
 * Redis only for a job that has waited past the threshold (or while the breaker may be open): a
 * fresh job's `/status` costs nothing more.
 */
export async function explainJobWait(redis: Redis, keys: RedisKeys, endpointId: string, revision: number, waitedMs: number, now: number): Promise<WaitExplanation | undefined> {
  if (waitedMs <= WAIT_REASON_AFTER_MS) {
    // Only an open breaker explains a young job's wait; one GET.
    const breaker = await readBreaker(redis, keys, endpointId, revision);
    return isOpen(breaker) ? explainWait({ waitedMs, workers: [], breaker }) : undefined;
  }
  const facts = await readWaitFacts(redis, keys, endpointId, revision, now);
  return explainWait({ waitedMs, workers: facts.workers, breaker: facts.breaker, ...(facts.capacity && { capacity: facts.capacity }) });
}

function parseJson<T>(raw: string | null, parse: (v: unknown) => { success: true; data: T } | { success: false }): T | undefined {
  if (raw === null) return undefined;
  try {
    const r = parse(JSON.parse(raw));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}
