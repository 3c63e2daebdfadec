import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Redis } from "ioredis";
import { EndpointQueues } from "../apps/api/services/endpoint-queues.ts";
import { JobEvents } from "../apps/api/services/job-events.ts";
import { JobReader } from "../apps/api/services/job-reader.ts";
import type { JobData, JobResult } from "../core/queue/job-catalog.ts";
import { RedisKeys } from "../core/queue/keys.ts";
import type { JobEvent } from "../core/queue/messages.ts";
import { connectRedis } from "../core/redis/connect.ts";
import { clearPrefix, TEST_REDIS_URL, uniquePrefix, waitFor } from "./support/services.ts";

const prefix = uniquePrefix();
const keys = new RedisKeys(prefix);
let redis: Redis;
let events: JobEvents;
let queues: EndpointQueues;
let reader: JobReader;

beforeAll(() => {
  redis = connectRedis(TEST_REDIS_URL);
  events = new JobEvents({ subscriber: connectRedis(TEST_REDIS_URL), keys, lingerMs: 300 });
  queues = new EndpointQueues(redis, keys);
  reader = new JobReader({ queues, events, redis });
});
afterAll(async () => {
  await events.close();
  await queues.close();
  await clearPrefix(redis, prefix);
  redis.disconnect();
});

const subscribers = async (channel: string) => Number(((await redis.pubsub("NUMSUB", channel)) as [string, number])[1]);

describe("job events per endpoint", () => {
  it("subscribes to an endpoint's channel only while it has waiters (and a linger after)", async () => {
    const channel = keys.jobEventsChannel("ep-a");
    expect(await subscribers(channel)).toBe(0);
    await events.ready("ep-a");
    const watch = events.watch("ep-a", "job-1", () => true);
    expect(await subscribers(channel)).toBe(1);
    // Another endpoint's traffic is not heard here.
    expect(await subscribers(keys.jobEventsChannel("ep-b"))).toBe(0);
    watch.dispose();
    await waitFor(async () => (await subscribers(channel)) === 0, 5000);
  });

  it("answers a waiter whose job finished before the submit returned: the watch was there first", async () => {
    const data: JobData = { endpointId: "ep-c", tenantId: "t", input: 1, executionTimeoutMs: 60_000, lowPriority: false, submittedAt: Date.now(), expiresAt: Date.now() + 60_000, retentionMs: 60_000, retries: 0 };
    const result: JobResult = { status: "COMPLETED", output: { ok: true }, workerId: "w-1", startedAt: data.submittedAt + 1, finishedAt: data.submittedAt + 3 };
    await reader.ready("ep-c");
    const watch = reader.watchFinish("ep-c", "job-fast");
    // The worker's message arrives (and is delivered) before the waiter starts waiting.
    const heard = new Promise<void>((resolve) => events.listen("ep-c", "job-fast", () => resolve()));
    const event: JobEvent = { type: "finished", jobId: "job-fast", endpointId: "ep-c", result };
    await redis.publish(keys.jobEventsChannel("ep-c"), JSON.stringify(event));
    await heard;
    // A minute's wait would fail this test by its timeout if the message had been missed.
    const view = await reader.waitFinished("ep-c", "job-fast", 60_000, undefined, { data, watch });
    watch.dispose();
    expect(view).toMatchObject({ id: "job-fast", status: "COMPLETED", output: { ok: true }, workerId: "w-1", executionTime: 2 });
  }, 10_000);
});
