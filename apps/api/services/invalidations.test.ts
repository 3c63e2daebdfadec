import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { Redis } from "ioredis";
import { connectRedis, whenReady } from "../../../core/redis/connect.ts";
import { RedisKeys } from "../../../core/queue/keys.ts";
import { TEST_REDIS_URL, uniquePrefix } from "../../../test/support/services.ts";
import { Invalidations } from "./invalidations.ts";

/** Real Redis; the publisher is disconnected on purpose, which fails a publish at once (no offline queue), as with Redis away. */
describe("Invalidations", () => {
  let subscriber: Redis;
  let publisher: Redis;
  let keys: RedisKeys;
  let heard: string[];

  beforeAll(async () => {
    subscriber = connectRedis(TEST_REDIS_URL);
    await whenReady(subscriber, TEST_REDIS_URL);
  });
  afterAll(() => subscriber.disconnect());

  const setUp = async () => {
    keys = new RedisKeys(uniquePrefix());
    heard = [];
    await subscriber.unsubscribe();
    subscriber.removeAllListeners("message");
    subscriber.on("message", (_ch: string, raw: string) => heard.push(raw));
    await subscriber.subscribe(keys.apiChannel());
    publisher = connectRedis(TEST_REDIS_URL, { enableOfflineQueue: false, maxRetriesPerRequest: 1 });
    publisher.on("error", () => {});
    await whenReady(publisher, TEST_REDIS_URL);
  };
  afterEach(() => publisher.disconnect());

  /** Closes the publisher's socket for good (status "end"): each publish then fails at once, as with Redis away. */
  const goOffline = async () => {
    const ended = new Promise((r) => publisher.once("end", r));
    publisher.disconnect();
    await ended;
  };
  const comeBack = async () => {
    await publisher.connect();
    await whenReady(publisher, TEST_REDIS_URL);
  };
  /** A test's stand-in for the retry timer: yields to I/O, so a loop of failures cannot starve the event loop. */
  const turn = () => new Promise<void>((r) => setImmediate(r));

  /** Resolves once `heard` has `n` messages: waits on the subscriber, not on a timer. */
  const heardCount = async (n: number) => {
    while (heard.length < n) await new Promise((r) => setImmediate(r));
    return heard.length;
  };

  it("publishes on the API channel", async () => {
    await setUp();
    const inv = new Invalidations({ redis: publisher, keys });
    expect(await inv.announce({ type: "invalidate-key", keyHash: "ab".repeat(32) })).toBe(true);
    await heardCount(1);
    expect(JSON.parse(heard[0]!)).toEqual({ type: "invalidate-key", keyHash: "ab".repeat(32) });
  });

  it("retries a publish Redis refused until it lands, waiting longer each time", async () => {
    await setUp();
    await goOffline();
    const waits: number[] = [];
    const inv = new Invalidations({
      redis: publisher,
      keys,
      now: () => 0, // time does not pass: only success ends the retries
      wait: async (ms) => {
        waits.push(ms);
        await turn();
        if (waits.length === 3) await comeBack(); // Redis is back before the third retry
      },
    });
    expect(await inv.announce({ type: "invalidate-key", keyHash: "cd".repeat(32) })).toBe(true);
    expect(waits).toEqual([100, 200, 400]);
    await heardCount(1);
    expect(heard).toHaveLength(1);
  });

  it("gives up once retryForMs has passed by its clock, and never delivers late", async () => {
    await setUp();
    await goOffline();
    let clock = 1_000_000;
    const waits: number[] = [];
    const inv = new Invalidations({
      redis: publisher,
      keys,
      retryForMs: 60_000,
      now: () => clock,
      wait: async (ms) => {
        waits.push(ms);
        clock += ms;
        await turn();
      },
    });
    expect(await inv.announce({ type: "invalidate-key", keyHash: "ef".repeat(32) })).toBe(false);
    // 100 · 2^n up to the 5 s cap, until the 60 s are spent.
    expect(waits.slice(0, 8)).toEqual([100, 200, 400, 800, 1600, 3200, 5000, 5000]);
    const spent = waits.reduce((a, b) => a + b, 0);
    expect(spent).toBeGreaterThanOrEqual(60_000);
    expect(spent - waits.at(-1)!).toBeLessThan(60_000);
    await comeBack();
    expect(await inv.announce({ type: "invalidate-endpoint", endpointId: "probe" })).toBe(true);
    await heardCount(1);
    expect(heard.map((m) => JSON.parse(m).type)).toEqual(["invalidate-endpoint"]);
  });

  it("stops retrying on close()", async () => {
    await setUp();
    await goOffline();
    const inv = new Invalidations({ redis: publisher, keys, now: () => 0 });
    const pending = inv.announce({ type: "invalidate-key", keyHash: "01".repeat(32) });
    inv.close();
    expect(await pending).toBe(false);
    expect(await inv.announce({ type: "invalidate-key", keyHash: "02".repeat(32) })).toBe(false);
  });
});
