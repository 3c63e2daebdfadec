import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Redis } from "ioredis";
import type { JobData } from "../../../core/queue/job-catalog.ts";
import { RedisKeys } from "../../../core/queue/keys.ts";
import { connectRedis, whenReady } from "../../../core/redis/connect.ts";
import { clearPrefix, TEST_REDIS_URL, uniquePrefix } from "../../../test/support/services.ts";
import { EndpointQueues } from "./endpoint-queues.ts";

/**
 * Real Redis. Each BullMQ Queue on the shared connection adds listeners to it and removes them on
 * close, so the connection's listener count shows how many Queue objects are really alive (not just
 * referenced from the map).
 */
describe("EndpointQueues", () => {
  const prefix = uniquePrefix();
  const keys = new RedisKeys(prefix);
  let redis: Redis;
  let baseline: number;

  beforeAll(async () => {
    redis = connectRedis(TEST_REDIS_URL, { enableOfflineQueue: false, maxRetriesPerRequest: 1 });
    redis.on("error", () => {});
    await whenReady(redis, TEST_REDIS_URL);
    baseline = redis.listenerCount("close");
  });
  afterAll(async () => {
    await clearPrefix(redis, prefix);
    redis.disconnect();
  });

  /** Queue objects alive on the connection, once it reads `expected` (a Queue's close is asynchronous) or after 1000 event-loop turns. */
  const alive = async (expected: number) => {
    for (let i = 0; i < 1000 && redis.listenerCount("close") - baseline !== expected; i++) await new Promise((r) => setImmediate(r));
    return redis.listenerCount("close") - baseline;
  };

  const job = (endpointId: string): JobData => ({
    endpointId, tenantId: "t", input: 1, executionTimeoutMs: 60_000, lowPriority: false,
    submittedAt: 0, expiresAt: 60_000, retentionMs: 60_000, retries: 0,
  });
  const accepted = (jobId: string) => ({ jobId, tenantId: "t", sync: false, lowPriority: false, retries: 0, submittedAt: 0, executionTimeoutMs: 60_000 });

  it("keeps at most maxQueues Queue objects, closing the least recently used", async () => {
    const queues = new EndpointQueues(redis, keys, { maxQueues: 3 });
    for (let i = 0; i < 50; i++) await queues.queue(`ep-many-${i}`).waitUntilReady();
    expect(queues.size).toBe(3);
    expect(await alive(3)).toBe(3);

    const a = queues.queue("ep-a");
    queues.queue("ep-b");
    queues.queue("ep-c");
    expect(queues.queue("ep-a")).toBe(a); // used again: now the most recent
    queues.queue("ep-d"); // evicts ep-b, the least recently used
    expect(queues.holds("ep-a")).toBe(true);
    expect(queues.holds("ep-b")).toBe(false);
    expect(queues.queue("ep-a")).toBe(a);
    await queues.close();
    expect(await alive(0)).toBe(0);
  });

  it("drops a forgotten endpoint's Queue, and builds a working one again on next use", async () => {
    const queues = new EndpointQueues(redis, keys);
    await queues.add("ep-gone", "job-1", job("ep-gone"), {}, accepted("job-1"));
    expect(queues.holds("ep-gone")).toBe(true);
    expect(await alive(1)).toBe(1);
    queues.forget("ep-gone");
    expect(queues.holds("ep-gone")).toBe(false);
    expect(await alive(0)).toBe(0);
    queues.forget("never-seen"); // nothing to do

    await queues.add("ep-gone", "job-2", job("ep-gone"), {}, accepted("job-2"));
    expect((await queues.readJob("ep-gone", "job-1"))?.stored.state).toBe("waiting");
    expect((await queues.readJob("ep-gone", "job-2"))?.stored.state).toBe("waiting");
    await queues.close();
  });

  it("lets a request finish with a Queue that was evicted under it", async () => {
    const queues = new EndpointQueues(redis, keys, { maxQueues: 1 });
    await queues.add("ep-held", "job-1", job("ep-held"), {}, accepted("job-1"));
    const read = await queues.readJob("ep-held", "job-1");
    queues.queue("ep-other"); // evicts ep-held while `read.job` still points into its Queue
    expect(queues.holds("ep-held")).toBe(false);
    expect(await alive(1)).toBe(1);
    expect(await queues.remove("ep-held", read!.job, "cancelled")).toBe(true);
    expect(await queues.readJob("ep-held", "job-1")).toBeUndefined();
    await queues.close();
  });
});
