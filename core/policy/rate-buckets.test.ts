import { describe, expect, it } from "vitest";
import { adjust, levelAt, remainingUnits, takeAll, type BucketSpec } from "./rate-buckets.ts";
import { requestBucket, tokenBucket } from "../contracts/rate-limits.ts";

// 2 requests per second, burst 5: scaled units of 1/1_000_000 request, 2000 regained per ms.
const req: BucketSpec = requestBucket({ requestsPerSecond: 2, burst: 5 })!;
// 600 tokens per minute: 600 regained per ms in units of 1/60000 token.
const tok: BucketSpec = tokenBucket({ tokensPerMinute: 600 })!;

describe("token buckets (pure)", () => {
  it("scales requests and tokens to integers", () => {
    expect(req).toEqual({ capacity: 5, amount: 2000, periodMs: 1_000_000 });
    expect(tok).toEqual({ capacity: 600, amount: 600, periodMs: 60_000 });
    expect(requestBucket({ requestsPerSecond: 0.2, burst: 2 })).toEqual({ capacity: 2, amount: 200, periodMs: 1_000_000 });
    expect(requestBucket({ requestsPerSecond: 2.5 })!.capacity).toBe(3); // burst defaults to the rate rounded up
  });

  it("starts full, refills linearly, and caps at capacity", () => {
    expect(levelAt(req, undefined, 1000)).toBe(5_000_000);
    expect(levelAt(req, { level: 0, at: 1000 }, 1250)).toBe(500_000); // 250 ms × 2000
    expect(levelAt(req, { level: 0, at: 1000 }, 3500)).toBe(5_000_000); // 2.5 s refills 5
    expect(levelAt(req, { level: 0, at: 1000 }, 10_000_000)).toBe(5_000_000);
    expect(levelAt(req, { level: 0, at: 1000 }, 500)).toBe(0); // a clock behind the stored time refills nothing
  });

  it("admits the burst, then refuses with the wait for one request", () => {
    let states = [undefined as { level: number; at: number } | undefined];
    const allowed: boolean[] = [];
    for (let i = 0; i < 7; i++) {
      const d = takeAll([req], states, [1], 1000);
      allowed.push(d.allowed);
      states = [{ level: d.buckets[0]!.level, at: 1000 }];
    }
    expect(allowed).toEqual([true, true, true, true, true, false, false]);
    const refused = takeAll([req], states, [1], 1000);
    expect(refused).toEqual({ allowed: false, refusedBy: 0, buckets: [{ level: 0, retryAfterMs: 500, resetMs: 2500 }] });
    // 499 ms later: still 2000 units short; at 500 ms exactly one request fits.
    expect(takeAll([req], states, [1], 1499).allowed).toBe(false);
    expect(takeAll([req], states, [1], 1500)).toEqual({ allowed: true, refusedBy: -1, buckets: [{ level: 0, retryAfterMs: 0, resetMs: 2500 }] });
  });

  it("takes all buckets or none", () => {
    const states = [undefined, { level: 100 * 60_000, at: 0 }];
    const d = takeAll([req, tok], states, [1, 150], 0);
    expect(d.allowed).toBe(false);
    expect(d.refusedBy).toBe(1);
    // The request bucket keeps its level: nothing was charged.
    expect(d.buckets[0]!.level).toBe(5_000_000);
    // 50 tokens short at 10 tokens a second: 5 s.
    expect(d.buckets[1]!.retryAfterMs).toBe(5000);
    const ok = takeAll([req, tok], states, [1, 100], 0);
    expect(ok.allowed).toBe(true);
    expect(ok.buckets.map((b) => b.level)).toEqual([4_000_000, 0]);
    expect(ok.buckets[1]!.resetMs).toBe(60_000);
  });

  it("never admits a cost above the capacity; its wait is the time to fill up", () => {
    const d = takeAll([tok], [{ level: 0, at: 0 }], [601], 0);
    expect(d.allowed).toBe(false);
    expect(d.buckets[0]!.retryAfterMs).toBe(60_000);
    expect(takeAll([tok], [undefined], [601], 0).allowed).toBe(false);
  });

  it("settles: gives back up to capacity, charges below zero", () => {
    // 300 tokens held; the job used 120: 180 come back.
    expect(adjust(tok, { level: 300 * 60_000, at: 0 }, 120 - 300, 0)).toBe(480 * 60_000);
    expect(adjust(tok, { level: 550 * 60_000, at: 0 }, -300, 0)).toBe(600 * 60_000);
    // It used 200 more than held: the bucket owes them.
    expect(adjust(tok, { level: 100 * 60_000, at: 0 }, 200, 0)).toBe(-100 * 60_000);
    expect(remainingUnits(tok, -100 * 60_000)).toBe(0);
    expect(remainingUnits(tok, 60_000 * 3 + 59_999)).toBe(3);
    // A bucket in debt refuses until refilled: 100 tokens owed + 1 asked at 10/s is 10.1 s.
    expect(takeAll([tok], [{ level: -100 * 60_000, at: 0 }], [1], 0).buckets[0]!.retryAfterMs).toBe(10_100);
  });
});
