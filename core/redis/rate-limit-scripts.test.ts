import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clearPrefix, TEST_REDIS_URL, uniquePrefix } from "../../test/support/services.ts";
import { connectRedis, whenReady } from "./connect.ts";
import { settleHold, takeBuckets, type TakeBucket } from "./rate-limit-scripts.ts";
import { adjust, takeAll, type BucketState } from "../policy/rate-buckets.ts";
import { requestBucket, tokenBucket } from "../contracts/rate-limits.ts";

/** The scripts on the shared test Redis (unique prefix), checked against the pure functions they mirror. */
describe("rate-limit scripts agree with core/policy/rate-buckets", () => {
  const redis = connectRedis(TEST_REDIS_URL);
  const prefix = uniquePrefix();
  beforeAll(() => whenReady(redis, TEST_REDIS_URL));
  afterAll(async () => {
    await clearPrefix(redis, prefix);
    redis.disconnect();
  });

  async function state(key: string): Promise<BucketState | undefined> {
    const [l, t] = await redis.hmget(key, "l", "t");
    return l === null || t === null ? undefined : { level: Number(l), at: Number(t) };
  }

  it("takes, refuses and settles exactly as the pure functions predict, on Redis' clock", async () => {
    const req = requestBucket({ requestsPerSecond: 3, burst: 4 })!;
    const tok = tokenBucket({ tokensPerMinute: 1000 })!;
    const buckets = (cost: number): TakeBucket[] => [
      { key: `${prefix}:req`, spec: req, cost: 1 },
      { key: `${prefix}:tok`, spec: tok, cost },
    ];
    for (const cost of [100, 300, 500, 200, 50, 1001, 10]) {
      const before = await Promise.all([state(`${prefix}:req`), state(`${prefix}:tok`)]);
      const r = await takeBuckets(redis, buckets(cost));
      // The script reports the Redis time it decided at: the pure function at that time must agree.
      const predicted = takeAll([req, tok], before, [1, cost], r.now);
      expect({ allowed: r.allowed, refusedBy: r.refusedBy, buckets: r.buckets }).toEqual(predicted);
      if (r.allowed) expect(await state(`${prefix}:tok`)).toEqual({ level: predicted.buckets[1]!.level, at: r.now });
    }
    // A settlement: the hold names the token bucket; 400 held, 150 used.
    const holdKey = `${prefix}:hold:j1`;
    const taken = await takeBuckets(redis, [{ key: `${prefix}:tok2`, spec: tok, cost: 400 }], {
      key: holdKey,
      json: JSON.stringify({ tokens: 400, buckets: [{ key: `${prefix}:tok2`, ...tok }] }),
      ttlSeconds: 60,
    });
    expect(taken.allowed).toBe(true);
    const before = await state(`${prefix}:tok2`);
    expect(await settleHold(redis, holdKey, 150)).toBe(true);
    const after = (await state(`${prefix}:tok2`))!;
    expect(after.level).toBe(adjust(tok, before, 150 - 400, after.at));
    // Replayed: nothing more changes.
    expect(await settleHold(redis, holdKey, 150)).toBe(false);
    expect(await state(`${prefix}:tok2`)).toEqual(after);
  });

  it("expires a bucket once it would be full again", async () => {
    const spec = requestBucket({ requestsPerSecond: 1000, burst: 1 })!;
    await takeBuckets(redis, [{ key: `${prefix}:fast`, spec, cost: 1 }]);
    const ttl = await redis.pttl(`${prefix}:fast`);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(1001);
  });
});
