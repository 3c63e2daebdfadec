import type { MiddlewareHandler } from "hono";
import type { Endpoint } from "../../../core/contracts/endpoint.ts";
import type { TenantPolicy } from "../services/tenant-policy.ts";
import type { TenantEnv } from "./tenant-auth.ts";
import { limitBody } from "./json-body-limit.ts";

type JobEnv = { Variables: TenantEnv["Variables"] & { endpoint: Endpoint } };

/**
 * Admission of a job-submitting request, after its key and endpoint are resolved: its body must
 * fit both the operation's limit and the tenant's `maxInputBytes` (413), and the endpoint's queue
 * must be under the tenant's `maxQueuedJobsPerEndpoint` (429 with Retry-After).
 */
export function jobAdmission(options: { policy: TenantPolicy; operationMaxBytes: number }): MiddlewareHandler<JobEnv> {
  const { policy, operationMaxBytes } = options;
  return async function jobAdmissionMiddleware(c, next) {
    const ep = c.get("endpoint");
    // Both answer synchronously from memory on the common path; await only when they return a promise.
    const cached = policy.limits(ep.tenantId);
    const limits = cached instanceof Promise ? await cached : cached;
    const queued = policy.checkQueue(ep.id, limits);
    if (queued) await queued;
    if (limits.maxInputBytes < operationMaxBytes) return limitBody(c, next, limits.maxInputBytes, "the tenant's maxInputBytes quota");
    return limitBody(c, next, operationMaxBytes, "the limit of this operation");
  };
}
