import type { Redis } from "ioredis";
import { z } from "zod";
import type { HealthView } from "../../../core/contracts/job-view.ts";
import { workerHeartbeat, type WorkerHeartbeat } from "../../../core/contracts/worker-state.ts";
import { countWorkers } from "../../../core/policy/worker-counts.ts";
import { capacityReport, type CapacityReport } from "../../../core/policy/capacity.ts";
import type { EndpointQueues } from "./endpoint-queues.ts";
import type { RedisKeys } from "../../../core/queue/keys.ts";

/** A heartbeat this old means the worker stopped reporting (ms). Workers beat every second by default. */
export const HEARTBEAT_STALE_MS = 5000;

/** `/health`: all five job counters and all six worker counters of an endpoint. */
export async function endpointHealth(queues: EndpointQueues, redis: Redis, endpointId: string, now = Date.now()): Promise<HealthView> {
  const keys = queues.keys;
  const [counts, stats, workers, capacityRaw] = await Promise.all([
    queues.queue(endpointId).getJobCounts("wait", "prioritized", "delayed", "active"),
    redis.hgetall(keys.stats(endpointId)),
    redis.hgetall(keys.workers(endpointId)),
    redis.get(keys.capacity(endpointId)),
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
  };
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
