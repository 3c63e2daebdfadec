import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RedisKeys } from "../../core/queue/keys.ts";
import { jobEvent, parseMessage } from "../../core/queue/messages.ts";
import { connectRedis, whenReady } from "../../core/redis/connect.ts";
import { clearPrefix, TEST_REDIS_URL, uniquePrefix, waitFor } from "../../test/support/services.ts";
import { StreamWriter } from "./stream-writer.ts";

const prefix = uniquePrefix();
const keys = new RedisKeys(prefix);
const redis = connectRedis(TEST_REDIS_URL);
const subscriber = connectRedis(TEST_REDIS_URL);
/** Every chunk event published, in order, as the API's relay sees them. */
const events: { jobId: string; outputs: unknown[] }[] = [];

beforeAll(async () => {
  subscriber.on("message", (_ch: string, raw: string) => {
    const e = parseMessage(jobEvent, raw);
    if (e?.type === "chunk") events.push({ jobId: e.jobId, outputs: (e.chunks ?? []).map((c) => c.output) });
  });
  // Subscribing before the connection is ready races ioredis' ready check (INFO, which Redis
  // refuses on a subscribed connection): the subscription can then come late, after a reconnect.
  await whenReady(subscriber, TEST_REDIS_URL);
  await subscriber.subscribe(keys.jobEventsChannel("ep"));
});
afterAll(async () => {
  await clearPrefix(redis, prefix);
  subscriber.disconnect();
  redis.disconnect();
});

const writer = (jobId: string, lingerMs = 0) => new StreamWriter({ redis, keys, jobId, endpointId: "ep", liveTtlMs: () => 60_000, lingerMs });
const listed = async (jobId: string) => (await redis.lrange(keys.stream("ep", jobId), 0, -1)).map((r) => (JSON.parse(r) as { output: unknown }).output);
const relayed = (jobId: string) => events.filter((e) => e.jobId === jobId);

describe("StreamWriter", () => {
  it("lands every chunk once and in order, in the list and in the messages, sending chunks added during a write together", async () => {
    const w = writer("j-burst");
    for (let i = 0; i < 50; i++) w.add(i); // synchronously: all but the first wait for the first write
    await w.flush();
    const expected = Array.from({ length: 50 }, (_, i) => i);
    expect(await listed("j-burst")).toEqual(expected);
    await waitFor(() => relayed("j-burst").flatMap((e) => e.outputs).length === 50);
    expect(relayed("j-burst").flatMap((e) => e.outputs)).toEqual(expected);
    expect(relayed("j-burst").length).toBeLessThan(50);
    expect(w.chunks).toBe(50);
  });

  it("with a linger, batches chunks that arrive sooner than it, and flush sends the rest at once", async () => {
    const w = writer("j-linger", 10_000);
    w.add("first"); // written at once: nothing was written before
    await waitFor(async () => (await listed("j-linger")).length === 1);
    w.add("second");
    w.add("third");
    // Held back by the linger (10 s), until the end of the stream flushes them.
    expect(await listed("j-linger")).toEqual(["first"]);
    await w.flush();
    expect(await listed("j-linger")).toEqual(["first", "second", "third"]);
    await waitFor(() => relayed("j-linger").length === 2);
    expect(relayed("j-linger").map((e) => e.outputs)).toEqual([["first"], ["second", "third"]]);
  });

  it("writes a chunk after a quiet spell at once, even with a linger", async () => {
    const w = writer("j-quiet", 20);
    w.add(1);
    await w.flush();
    await new Promise((r) => setTimeout(r, 40));
    w.add(2);
    await waitFor(async () => (await listed("j-quiet")).length === 2, 1000, 1);
    expect(relayed("j-quiet").length).toBeLessThanOrEqual(2);
  });

  it("refuses a chunk that is not JSON before anything reaches Redis", async () => {
    const w = writer("j-bad");
    expect(() => w.add(10n)).toThrow();
    await w.flush();
    expect(await listed("j-bad")).toEqual([]);
  });
});
