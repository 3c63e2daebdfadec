import type { Redis } from "ioredis";
import { ratesInForce, requestBucket, tokenBucket, type DefaultRatePreset, type RateLimits, type RouteClass } from "../../../core/contracts/rate-limits.ts";
import { remainingUnits, type BucketSpec } from "../../../core/policy/rate-buckets.ts";
import type { RedisKeys } from "../../../core/queue/keys.ts";
import { takeBuckets, type TakeBucket, type TakeReply, type TokenHold } from "../../../core/redis/rate-limit-scripts.ts";
import type { Log } from "../../../core/log/process-log.ts";
import { errorFields } from "../../../core/log/process-log.ts";
import { ApiError } from "../api-error.ts";
import { isBackendUnavailable } from "../backend-unavailable.ts";

export type LimitKind = "requests" | "tokens";

/** A 429 of a rate or token limit: OpenAI's routes answer it with `type` "requests" or "tokens", as OpenAI does. */
export class RateLimitError extends ApiError {
  constructor(
    readonly kind: LimitKind,
    message: string,
    headers: Record<string, string>,
  ) {
    super(429, "rate_limit_exceeded", message, [{ path: kind === "requests" ? "requestsPerSecond" : "tokensPerMinute", message: "limit reached" }], headers);
  }
}

export interface RateLimiterOptions {
  redis: Redis;
  keys: RedisKeys;
  /** HEARTH_DEFAULT_RATE_LIMITS: what tenants without limits of their own get. Default `none` (unlimited). */
  preset?: DefaultRatePreset;
  /** How long an unsettled token hold is kept (s); past it the estimate stands for good. Default 3 h (longer than any job's execution timeout plus its wait). */
  holdTtlSeconds?: number;
  log?: Log;
  /** Counts each refusal (bounded labels: endpoint and kind). */
  onRefused?: (endpointId: string, kind: LimitKind) => void;
}

export interface AdmitRequest {
  endpointId: string;
  tenantId: string;
  keyId: string;
  routeClass: RouteClass;
  /** The tenant's own limits (unset: the preset). */
  tenantRates: RateLimits;
  /** The API key's own limits, under the tenant's. */
  keyRates?: RateLimits | undefined;
  /** Tokens to hold (OpenAI generation routes); undefined elsewhere. */
  tokens?: number;
  /** The job the tokens are held for (its id names the hold the control plane settles). */
  holdJobId?: string;
}

interface Planned extends TakeBucket {
  kind: LimitKind;
}

/**
 * Admission by request rate and token rate, per tenant and per API key: every bucket that applies
 * is taken in one atomic script (core/redis/rate-limit-scripts.ts), so a request either passes all
 * of them or uses none. No limit applies: no Redis call at all.
 *
 * Redis away (fail open): the request is admitted unchecked and a warning logged (at most every
 * 10 s). Limits protect shared capacity from a tenant's excess; refusing every request while Redis
 * restarts would turn a short outage into a total one, and the job routes that need Redis fail
 * on their own with 503 anyway.
 */
export class RateLimiter {
  private readonly preset: DefaultRatePreset;
  private lastWarn = 0;

  constructor(private readonly options: RateLimiterOptions) {
    this.preset = options.preset ?? "none";
  }

  get defaultPreset(): DefaultRatePreset {
    return this.preset;
  }

  /**
   * Takes what the request costs. Undefined (synchronously) when no limit applies; else the
   * headers to send with the answer, or a rejection with a `RateLimitError` (429).
   */
  admit(req: AdmitRequest): undefined | Promise<Record<string, string>> {
    const plan = this.plan(req);
    if (plan.length === 0) return undefined;
    return this.take(req, plan);
  }

  private plan(req: AdmitRequest): Planned[] {
    const { keys } = this.options;
    const out: Planned[] = [];
    const tenant = ratesInForce(req.tenantRates, this.preset, req.routeClass);
    const suffix = tenant.source === "runpod" ? `.${req.routeClass}` : "";
    const add = (scope: "t" | "k", id: string, rates: RateLimits, sfx: string) => {
      const r = requestBucket(rates);
      if (r) out.push({ kind: "requests", key: keys.rateBucket(scope, id, `req${sfx}`), spec: r, cost: 1 });
      const t = req.tokens === undefined ? undefined : tokenBucket(rates);
      // A cost past the capacity is refused whatever its size: capped so the arithmetic stays exact.
      if (t) out.push({ kind: "tokens", key: keys.rateBucket(scope, id, "tok"), spec: t, cost: Math.min(req.tokens!, t.capacity + 1) });
    };
    add("t", req.tenantId, tenant.rates, suffix);
    if (req.keyRates) add("k", req.keyId, req.keyRates, "");
    return out;
  }

  private async take(req: AdmitRequest, plan: Planned[]): Promise<Record<string, string>> {
    const tokenBuckets = plan.filter((p) => p.kind === "tokens");
    let hold: { key: string; json: string; ttlSeconds: number } | undefined;
    if (req.holdJobId !== undefined && tokenBuckets.length > 0) {
      const h: TokenHold = { tokens: req.tokens!, buckets: tokenBuckets.map((b) => ({ key: b.key, ...b.spec })) };
      hold = { key: this.options.keys.tokenHold(req.holdJobId), json: JSON.stringify(h), ttlSeconds: this.options.holdTtlSeconds ?? 3 * 3600 };
    }
    let reply: TakeReply;
    try {
      reply = await takeBuckets(this.options.redis, plan, hold);
    } catch (err) {
      if (!isBackendUnavailable(err)) throw err;
      const now = Date.now();
      if (now - this.lastWarn > 10_000) {
        this.lastWarn = now;
        this.options.log?.({ level: "warn", msg: "rate limits not checked: Redis unreachable (failing open)", ...errorFields(err) });
      }
      return {};
    }
    const headers = limitHeaders(plan, reply, req.routeClass === "openai");
    if (reply.allowed) return headers;
    const refused = plan[reply.refusedBy]!;
    const answer = reply.buckets[reply.refusedBy]!;
    const retryS = Math.max(1, Math.ceil(answer.retryAfterMs / 1000));
    headers["Retry-After"] = String(retryS);
    this.options.onRefused?.(req.endpointId, refused.kind);
    const scope = refused.key.includes(":rl:k:") ? "API key" : "tenant";
    const what =
      refused.kind === "requests"
        ? `requests: the ${scope}'s limit is ${refused.spec.amount / 1000} per second with a burst of ${refused.spec.capacity}`
        : `tokens per minute: the ${scope}'s limit is ${refused.spec.capacity}, this request asks for about ${refused.cost > refused.spec.capacity ? `more than ${refused.spec.capacity}` : refused.cost}`;
    throw new RateLimitError(refused.kind, `rate limit reached for ${what}; retry in ${retryS} s`, headers);
  }
}

/** OpenAI's duration form of its reset headers: `1s`, `6m0s`, `350ms`. */
export function openAIDuration(ms: number): string {
  if (ms < 1000) return `${ms}ms`;
  const s = Math.ceil(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60}s`;
  return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m${s % 60}s`;
}

/**
 * `X-RateLimit-Limit/Remaining/Reset` of the tightest request bucket (else the tightest token
 * bucket): limit = its burst, remaining = whole requests left, reset = seconds until it is full.
 * On the OpenAI routes also OpenAI's `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` for each kind that applies.
 */
export function limitHeaders(plan: readonly { kind: LimitKind; spec: BucketSpec }[], reply: Pick<TakeReply, "buckets">, openai: boolean): Record<string, string> {
  const tightest: Partial<Record<LimitKind, { spec: BucketSpec; remaining: number; resetMs: number }>> = {};
  plan.forEach((p, i) => {
    const b = reply.buckets[i]!;
    const remaining = remainingUnits(p.spec, b.level);
    const t = tightest[p.kind];
    if (!t || remaining < t.remaining) tightest[p.kind] = { spec: p.spec, remaining, resetMs: b.resetMs };
  });
  const h: Record<string, string> = {};
  const main = tightest.requests ?? tightest.tokens;
  if (main) {
    h["X-RateLimit-Limit"] = String(main.spec.capacity);
    h["X-RateLimit-Remaining"] = String(main.remaining);
    h["X-RateLimit-Reset"] = String(Math.ceil(main.resetMs / 1000));
  }
  // OpenAI's own headers only where OpenAI's clients read them: three fewer headers on every RunPod answer.
  if (!openai) return h;
  for (const kind of ["requests", "tokens"] as const) {
    const t = tightest[kind];
    if (!t) continue;
    h[`x-ratelimit-limit-${kind}`] = String(t.spec.capacity);
    h[`x-ratelimit-remaining-${kind}`] = String(t.remaining);
    h[`x-ratelimit-reset-${kind}`] = openAIDuration(t.resetMs);
  }
  return h;
}
