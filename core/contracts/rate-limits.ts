import { z } from "zod";
import type { BucketSpec } from "../policy/rate-buckets.ts";

/**
 * Rate limits of a tenant or of one API key: `requestsPerSecond` with `burst` (a token bucket over
 * the job routes, `/v2/{ep}/*`), and `tokensPerMinute` (LLM tokens of the OpenAI routes: estimated
 * prompt tokens + `max_tokens` held before dispatch, corrected by the engine's real counts when the
 * job ends). Unset means unlimited. Bounds keep the bucket arithmetic exact (core/policy/rate-buckets.ts).
 */
export const RATE_NAMES = ["requestsPerSecond", "burst", "tokensPerMinute"] as const;
export type RateName = (typeof RATE_NAMES)[number];

const rateValues = {
  /** Requests regained per second; thousandths allowed (RunPod's /purge-queue is 0.2/s). */
  requestsPerSecond: z
    .number()
    .min(0.001)
    .max(1_000_000)
    .refine((n) => Math.abs(Math.round(n * 1000) - n * 1000) < 1e-6, "at most three decimals"),
  /** Requests admitted at once from a full bucket. Default: `requestsPerSecond` rounded up (at least 1). */
  burst: z.number().int().min(1).max(1_000_000),
  /** LLM tokens (prompt + completion) per minute; also the most one minute can take at once. */
  tokensPerMinute: z.number().int().min(1).max(10_000_000_000),
} satisfies Record<RateName, z.ZodType>;

export const rateLimits = z.object(Object.fromEntries(RATE_NAMES.map((n) => [n, rateValues[n].optional()])) as { [K in RateName]: z.ZodOptional<(typeof rateValues)[K]> }).meta({ id: "RateLimits" });
export type RateLimits = z.infer<typeof rateLimits>;

/** As set: a number sets, `null` removes (unlimited, or the default preset), absent keeps. */
export const rateLimitsUpdate = z.object(Object.fromEntries(RATE_NAMES.map((n) => [n, rateValues[n].nullable().optional()])) as {
  [K in RateName]: z.ZodOptional<z.ZodNullable<(typeof rateValues)[K]>>;
});
export type RateLimitsUpdate = z.infer<typeof rateLimitsUpdate>;

/** Read back from Postgres JSON: a value out of bounds (or from a later version) is dropped, not trusted. */
export const storedRateLimits = z.object(Object.fromEntries(RATE_NAMES.map((n) => [n, rateValues[n].optional().catch(undefined)])) as { [K in RateName]: z.ZodCatch<z.ZodOptional<(typeof rateValues)[K]>> });

export function applyRateUpdate(current: RateLimits, update: RateLimitsUpdate): RateLimits {
  const next: Record<string, number> = {};
  for (const name of RATE_NAMES) {
    const v = update[name] === undefined ? current[name] : update[name];
    if (v !== null && v !== undefined) next[name] = v;
  }
  return next as RateLimits;
}

export const hasRates = (r: RateLimits | undefined): boolean => r !== undefined && (r.requestsPerSecond !== undefined || r.tokensPerMinute !== undefined);

/** The classes of job routes RunPod's table limits apart (runpod-contract.md §1.3). */
export const ROUTE_CLASSES = ["run", "runsync", "status", "stream", "cancel", "purge", "health", "openai"] as const;
export type RouteClass = (typeof ROUTE_CLASSES)[number];

/**
 * RunPod's per-route request limits ("N requests per 10 s", DOCS send-requests.mdx) as buckets of N
 * refilled at N/10 per second: what `HEARTH_DEFAULT_RATE_LIMITS=runpod` gives tenants without their
 * own. `/health` is not in RunPod's table; RunPod's concurrency caps (e.g. 200 running `/run`
 * requests) and its `max(base, running_workers × requests_per_worker)` scaling are not applied.
 */
export const RUNPOD_RATE_TABLE: Readonly<Record<RouteClass, RateLimits>> = {
  run: { requestsPerSecond: 100, burst: 1000 },
  runsync: { requestsPerSecond: 200, burst: 2000 },
  status: { requestsPerSecond: 200, burst: 2000 },
  stream: { requestsPerSecond: 200, burst: 2000 },
  cancel: { requestsPerSecond: 10, burst: 100 },
  purge: { requestsPerSecond: 0.2, burst: 2 },
  health: {},
  openai: { requestsPerSecond: 200, burst: 2000 },
};

export const defaultRatePreset = z.enum(["none", "runpod"]);
export type DefaultRatePreset = z.infer<typeof defaultRatePreset>;

/** The requests bucket of a set of limits: thousandths of a request per ms keep it integral. */
export function requestBucket(r: RateLimits): BucketSpec | undefined {
  if (r.requestsPerSecond === undefined) return undefined;
  return { capacity: r.burst ?? Math.max(1, Math.ceil(r.requestsPerSecond)), amount: Math.round(r.requestsPerSecond * 1000), periodMs: 1_000_000 };
}

export function tokenBucket(r: RateLimits): BucketSpec | undefined {
  if (r.tokensPerMinute === undefined) return undefined;
  return { capacity: r.tokensPerMinute, amount: r.tokensPerMinute, periodMs: 60_000 };
}

/**
 * The limits in force for one route class: the tenant's own when it set any, else the operator's
 * preset for that class, else none.
 */
export function ratesInForce(own: RateLimits, preset: DefaultRatePreset, routeClass: RouteClass): { rates: RateLimits; source: "tenant" | "runpod" | "none" } {
  if (hasRates(own)) return { rates: own, source: "tenant" };
  if (preset === "runpod") return { rates: RUNPOD_RATE_TABLE[routeClass], source: "runpod" };
  return { rates: {}, source: "none" };
}
