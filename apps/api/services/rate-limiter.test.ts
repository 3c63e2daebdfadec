import { describe, expect, it } from "vitest";
import { limitHeaders, openAIDuration } from "./rate-limiter.ts";
import { requestBucket, tokenBucket } from "../../../core/contracts/rate-limits.ts";

describe("rate-limit headers", () => {
  it("writes OpenAI's reset durations as OpenAI does", () => {
    expect(openAIDuration(350)).toBe("350ms");
    expect(openAIDuration(1000)).toBe("1s");
    expect(openAIDuration(1001)).toBe("2s");
    expect(openAIDuration(360_000)).toBe("6m0s");
    expect(openAIDuration(3_600_001)).toBe("1h0m1s");
  });

  it("reports the tightest request bucket in X-RateLimit-*, and each kind in OpenAI's headers on the OpenAI routes only", () => {
    const tenantReq = requestBucket({ requestsPerSecond: 10, burst: 100 })!;
    const keyReq = requestBucket({ requestsPerSecond: 1, burst: 5 })!;
    const tok = tokenBucket({ tokensPerMinute: 600 })!;
    const plan = [
      { kind: "requests" as const, spec: tenantReq },
      { kind: "requests" as const, spec: keyReq },
      { kind: "tokens" as const, spec: tok },
    ];
    const reply = {
      buckets: [
        { level: 50_000_000, retryAfterMs: 0, resetMs: 5000 },
        { level: 2_500_000, retryAfterMs: 0, resetMs: 2500 },
        { level: 100 * 60_000, retryAfterMs: 0, resetMs: 50_000 },
      ],
    };
    expect(limitHeaders(plan, reply, false)).toEqual({ "X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "2", "X-RateLimit-Reset": "3" });
    expect(limitHeaders(plan, reply, true)).toEqual({
      "X-RateLimit-Limit": "5",
      "X-RateLimit-Remaining": "2",
      "X-RateLimit-Reset": "3",
      "x-ratelimit-limit-requests": "5",
      "x-ratelimit-remaining-requests": "2",
      "x-ratelimit-reset-requests": "3s",
      "x-ratelimit-limit-tokens": "600",
      "x-ratelimit-remaining-tokens": "100",
      "x-ratelimit-reset-tokens": "50s",
    });
  });
});
