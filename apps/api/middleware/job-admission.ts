import type { MiddlewareHandler } from "hono";
import type { Endpoint } from "../../../core/contracts/endpoint.ts";
import type { TenantPolicy } from "../services/tenant-policy.ts";
import type { BillingGate } from "../services/billing-gate.ts";
import type { TenantEnv } from "./tenant-auth.ts";
import { limitBody } from "./json-body-limit.ts";

type JobEnv = { Variables: TenantEnv["Variables"] & { endpoint: Endpoint } };

/**
 * Admission of a job-submitting request, after its key and endpoint are resolved: its body must
 * fit both the operation's limit and the tenant's `maxInputBytes` (413), and the endpoint's queue
 * must be under the tenant's `maxQueuedJobsPerEndpoint` (429 with Retry-After), and an `enforce`
 * tenant must have a balance above zero (402).
 */
export function jobAdmission(options: { policy: TenantPolicy; billing: BillingGate; operationMaxBytes: number }): MiddlewareHandler<JobEnv> {
  const { policy, billing, operationMaxBytes } = options;
  return async function jobAdmissionMiddleware(c, next) {
    const ep = c.get("endpoint");
    // Each answers synchronously from memory on the common path; await only when it returns a promise.
    const cached = policy.admission(ep.tenantId);
    const { limits, billingMode } = cached instanceof Promise ? await cached : cached;
    const paid = billing.check(ep.tenantId, billingMode);
    if (paid) await paid;
    const queued = policy.checkQueue(ep, limits);
    if (queued) await queued;
    if (limits.maxInputBytes < operationMaxBytes) return limitBody(c, next, limits.maxInputBytes, "the tenant's maxInputBytes quota");
    return limitBody(c, next, operationMaxBytes, "the limit of this operation");
  };
}
