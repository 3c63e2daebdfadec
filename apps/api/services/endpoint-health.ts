import type { Redis } from "ioredis";
import { z } from "zod";
import type { HealthView } from "../../../core/contracts/job-view.ts";
import { workerHeartbeat, type WorkerHeartbeat } from "../../../core/contracts/worker-state.ts";
import { countWorkers } from "../../../core/policy/worker-counts.ts";
import { capacityReport, type CapacityReport } from "../../../core/policy/capacity.ts";
import type { EndpointQueues } from "./endpoint-queues.ts";
import type { RedisKeys } from "../../../core/queue/keys.ts";
import { currentBreaker, isOpen, parseBreaker } from "../../../core/policy/start-breaker.ts";
import { explainWait } from "../../../core/policy/wait-reason.ts";

/** A heartbeat this old means the worker stopped reporting (ms). Workers beat every second by default. */
export const HEARTBEAT_STALE_MS = 5000;

/**
 * `/health`: all five job counters and all six worker counters of an endpoint, and why its queue
 * waits (core/policy/wait-reason.ts, judged by its oldest waiting job) with the start breaker's
 * state. `revision` is the endpoint's `updatedAt` (ms): a breaker of an older revision reads closed;
 * without it (the metrics scrape) only the capacity reason is given.
 */
export async function endpointHealth(queues: EndpointQueues, redis: Redis, endpointId: string, now = Date.now(), revision?: number): Promise<HealthView> {
  const keys = queues.keys;
  const queueKey = keys.queuePrefix(endpointId);
  const [counts, stats, workers, capacityRaw, breakerRaw, oldestId] = await Promise.all([
    queues.queue(endpointId).getJobCounts("wait", "prioritized", "delayed", "active"),
    redis.hgetall(keys.stats(endpointId)),
    redis.hgetall(keys.workers(endpointId)),
    redis.get(keys.capacity(endpointId)),
    revision === undefined ? null : redis.get(keys.startBreaker(endpointId)),
    revision === undefined ? null : redis.lindex(`${queueKey}:wait`, -1),
  ]);
  const heartbeats: WorkerHeartbeat[] = [];
  for (const raw of Object.values(workers)) {
    try {
      const parsed = workerHeartbeat.safeParse(JSON.parse(raw));
      if (parsed.success) heartbeats.push(parsed.data);
    } catch {
      // a corrupt entry is not a worker
    }
  }
  const n = (v: string | undefined) => Number(v ?? 0) || 0;
  const held = parseCapacity(capacityRaw);
  const wait = revision === undefined ? undefined : await explainQueue(redis, queueKey, oldestId, now, {
    breaker: currentBreaker(parseBreaker(breakerRaw), revision),
    capacity: held,
    workers: heartbeats.filter((h) => now - h.at <= HEARTBEAT_STALE_MS),
  });
  const breaker = revision === undefined ? undefined : currentBreaker(parseBreaker(breakerRaw), revision);
  return {
    jobs: {
      completed: n(stats.completed),
      failed: n(stats.failed),
      inProgress: counts.active ?? 0,
      inQueue: (counts.wait ?? 0) + (counts.prioritized ?? 0) + (counts.delayed ?? 0),
      retried: n(stats.retried),
    },
    workers: { ...countWorkers(heartbeats, now, HEARTBEAT_STALE_MS), throttled: held?.throttled ?? 0 },
    ...(held && { waitReason: held.waitReason }),
    ...(wait && { waitReason: wait.waitReason, waitDetail: wait.waitDetail }),
    ...(breaker && { startBreaker: { open: isOpen(breaker), failedStarts: breaker.failedStarts, lastError: breaker.lastError } }),
  };
}

/** Why the endpoint's oldest waiting job waits (its age on the API's clock, from BullMQ's `timestamp`). */
async function explainQueue(
  redis: Redis,
  queueKey: string,
  oldestId: string | null,
  now: number,
  facts: { breaker: ReturnType<typeof currentBreaker>; capacity: CapacityReport | undefined; workers: WorkerHeartbeat[] },
) {
  let waitedMs = 0;
  if (oldestId !== null) {
    const ts = Number(await redis.hget(`${queueKey}:${oldestId}`, "timestamp"));
    if (Number.isFinite(ts)) waitedMs = Math.max(0, now - ts);
  }
  return explainWait({ waitedMs, workers: facts.workers, breaker: facts.breaker, ...(facts.capacity && { capacity: facts.capacity }) });
}

/** What the scheduler holds back for the endpoint now (scheduler/capacity-gate.ts), and why; undefined when nothing. */
export async function readCapacity(redis: Redis, keys: RedisKeys, endpointId: string): Promise<CapacityReport | undefined> {
  return parseCapacity(await redis.get(keys.capacity(endpointId)));
}

/** What the scheduler holds back for the endpoint (scheduler/capacity-gate.ts), if anything; a damaged value counts as nothing. */
function parseCapacity(raw: string | null): z.infer<typeof capacityReport> | undefined {
  if (raw === null) return undefined;
  try {
    const r = capacityReport.safeParse(JSON.parse(raw));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}
