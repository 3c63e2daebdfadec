import type { Context, MiddlewareHandler } from "hono";
import type { Endpoint } from "../../../core/contracts/endpoint.ts";
import type { RouteClass } from "../../../core/contracts/rate-limits.ts";
import type { RateLimiter } from "../services/rate-limiter.ts";
import type { TenantPolicy } from "../services/tenant-policy.ts";
import type { TenantEnv } from "./tenant-auth.ts";
import { isBackendUnavailable } from "../backend-unavailable.ts";

type JobEnv = { Variables: TenantEnv["Variables"] & { endpoint: Endpoint } };

/** The OpenAI routes that take tokens: their handler admits request and tokens in one script, once the body is read. */
const TOKEN_ROUTES = /\/openai\/v1\/(chat\/completions|completions|embeddings)$/;

/** The RunPod rate-table class of a job route's path (`/v2/{ep}/...`). */
export function routeClassOf(path: string): RouteClass {
  if (path.includes("/openai/")) return "openai";
  if (path.endsWith("/runsync")) return "runsync";
  if (path.endsWith("/run") || path.includes("/retry/")) return "run";
  if (path.includes("/status")) return "status";
  if (path.includes("/stream/")) return "stream";
  if (path.includes("/cancel/")) return "cancel";
  if (path.endsWith("/purge-queue")) return "purge";
  return "health";
}

/** Copies the limit headers onto the answer (a stream's too: its headers are still open). */
export function setLimitHeaders(c: Context, headers: Record<string, string>): void {
  for (const [k, v] of Object.entries(headers)) c.res.headers.set(k, v);
}

/**
 * Request-rate limits of the job routes, per tenant and per API key, before anything else of the
 * request is done (a refused request costs one Redis script and nothing more). 429
 * `rate_limit_exceeded` with Retry-After and X-RateLimit-*; admitted answers carry X-RateLimit-*
 * when a limit applies. Nothing applies: no await, no Redis.
 */
export function rateLimit(options: { limiter: RateLimiter; policy: TenantPolicy }): MiddlewareHandler<JobEnv> {
  const { limiter, policy } = options;
  return async function rateLimitMiddleware(c, next) {
    const path = c.req.path;
    if (c.req.method === "POST" && TOKEN_ROUTES.test(path)) return next();
    const ep = c.get("endpoint");
    const principal = c.get("principal");
    const cached = policy.admission(ep.tenantId);
    // Postgres away with no cached policy: the read routes keep working unlimited (fail open, as for Redis).
    const { rates } = cached instanceof Promise ? await cached.catch((err: unknown) => (isBackendUnavailable(err) ? { rates: {} } : Promise.reject(err))) : cached;
    const admitted = limiter.admit({ endpointId: ep.id, tenantId: ep.tenantId, keyId: principal.keyId, routeClass: routeClassOf(path), tenantRates: rates, keyRates: principal.rates });
    if (admitted === undefined) return next();
    const headers = await admitted;
    await next();
    setLimitHeaders(c, headers);
  };
}
