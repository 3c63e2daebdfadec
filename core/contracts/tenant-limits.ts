import { z } from "zod";
import { rateLimitsUpdate } from "./rate-limits.ts";

/**
 * A tenant's quotas. The admin sets overrides (`PUT /admin/tenants/:id/limits`); every other
 * quota takes the operator's default (environment, core/config/tenant-limit-defaults.ts). Counts
 * are refused with 403 `quota_exceeded`, queue back-pressure with 429, sizes with 413.
 */
export const LIMIT_NAMES = ["maxEndpoints", "maxWorkers", "maxWorkersMin", "maxQueuedJobsPerEndpoint", "maxInputBytes", "spendPerHourMicros"] as const;
export type LimitName = (typeof LIMIT_NAMES)[number];
export type TenantLimits = Record<LimitName, number>;

const count = (max: number) => z.number().int().min(0).max(max);
const limitValues = {
  /** Endpoints a tenant may have (deleted ones do not count). */
  maxEndpoints: count(1_000_000),
  /** Workers running at once across all of a tenant's endpoints; the scheduler holds the rest back. */
  maxWorkers: count(1_000_000),
  /** The sum of `workersMin` over a tenant's endpoints: workers kept running with no work. */
  maxWorkersMin: count(1_000_000),
  /** Jobs waiting in one endpoint's queue; past it `/run` answers 429 with Retry-After. */
  maxQueuedJobsPerEndpoint: count(1_000_000_000),
  /** Bytes of one job request's body (which carries its input); past it 413. */
  maxInputBytes: count(1 << 30),
  /** µ$ of charges in the last hour past which no new worker starts for the tenant (what runs keeps running). */
  spendPerHourMicros: count(1_000_000_000_000_000),
} satisfies Record<LimitName, z.ZodType>;

export const tenantLimits = z.object(limitValues);

/** The body of `PUT /admin/tenants/:id/limits`: the quotas to set; `null` returns one to its default. */
export const limitsUpdate = z
  .object({
    ...(Object.fromEntries(LIMIT_NAMES.map((n) => [n, limitValues[n].nullable().optional()])) as { [K in LimitName]: z.ZodOptional<z.ZodNullable<(typeof limitValues)[K]>> }),
    // Rate limits (core/contracts/rate-limits.ts) live beside the quotas; `null` makes one unlimited again.
    ...rateLimitsUpdate.shape,
  })
  .strict()
  .meta({ id: "TenantLimitsUpdate" });
export type LimitsUpdate = z.infer<typeof limitsUpdate>;

/** Overrides as stored in `tenants.limits` (read back through zod: unknown keys from later versions are kept out). */
export const storedLimits = z.object(Object.fromEntries(LIMIT_NAMES.map((n) => [n, limitValues[n].optional()])) as { [K in LimitName]: z.ZodOptional<(typeof limitValues)[K]> });
export type StoredLimits = z.infer<typeof storedLimits>;

/** Applies an update to stored overrides: a number sets, `null` removes, absent keeps. */
export function applyLimitsUpdate(current: StoredLimits, update: LimitsUpdate): StoredLimits {
  const next: Record<string, number> = { ...current };
  for (const name of LIMIT_NAMES) {
    const v = update[name];
    if (v === null) delete next[name];
    else if (v !== undefined) next[name] = v;
  }
  return next as StoredLimits;
}

/** The limits in force: the overrides over the defaults. */
export function effectiveLimits(defaults: TenantLimits, overrides: StoredLimits): TenantLimits {
  const out = { ...defaults };
  for (const name of LIMIT_NAMES) {
    const v = overrides[name];
    if (v !== undefined) out[name] = v;
  }
  return out;
}

/** Rights an admin may grant a tenant (`PUT /admin/tenants/:id/grants`). */
export const tenantGrants = z
  .object({
    /** Engine flags that load code shipped with a model or read arbitrary paths (`trust-remote-code`, …). */
    remoteCode: z.boolean().default(false),
  })
  .meta({ id: "TenantGrants" });
export type TenantGrants = z.infer<typeof tenantGrants>;
export const grantsUpdate = z.object({ remoteCode: z.boolean().optional() }).strict();
