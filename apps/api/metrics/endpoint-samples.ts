import type { Redis } from "ioredis";
import type { EndpointQueues } from "../services/endpoint-queues.ts";
import type { EndpointStore } from "../services/endpoint-store.ts";
import { endpointHealth } from "../services/endpoint-health.ts";
import type { EndpointSample } from "./api-metrics.ts";

/** Endpoints one scrape reads at most: each costs a handful of Redis reads. */
export const MAX_SCRAPED_ENDPOINTS = 1000;

/**
 * Each live endpoint's sample for a scrape: its `/health` view (the same reads `/health` does) and
 * the age of its oldest waiting job (the head of BullMQ's wait list, and of its prioritized set for
 * low-priority jobs).
 */
export function endpointSampler(opts: { endpoints: EndpointStore; queues: EndpointQueues; redis: Redis; now: () => number }): () => Promise<EndpointSample[]> {
  return async () => {
    const ids = await opts.endpoints.liveIds(MAX_SCRAPED_ENDPOINTS);
    return Promise.all(
      ids.map(async (endpointId) => {
        const queue = opts.queues.queue(endpointId);
        const [health, waiting, prioritized] = await Promise.all([
          endpointHealth(opts.queues, opts.redis, endpointId, opts.now()),
          queue.getJobs(["wait"], 0, 0, true),
          queue.getJobs(["prioritized"], 0, 0, true),
        ]);
        const oldest = Math.min(...[...waiting, ...prioritized].map((j) => j?.timestamp ?? Number.POSITIVE_INFINITY));
        return { endpointId, health, oldestQueuedAgeS: Number.isFinite(oldest) ? Math.max(0, opts.now() - oldest) / 1000 : 0 };
      }),
    );
  };
}
