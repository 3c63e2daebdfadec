import type { BillingMode } from "../contracts/billing.ts";

export interface BillingHoldInput {
  /** HEARTH_BILLING_MODE: `meter` refuses nothing for anyone. */
  mode: BillingMode;
  tenantMode: BillingMode;
  /** From the tenant's ledger (core/redis/balance-cache.ts); undefined when none could be read. */
  balanceMicros: number | undefined;
  spentLastHourMicros: number | undefined;
  /** The tenant's `spendPerHourMicros` limit. */
  spendPerHourMicros: number;
}

export interface BillingHold {
  /** No new worker starts for the tenant. */
  holdStarts: boolean;
  /** Its idle workers stop too (running jobs finish): only at zero balance, not at the spend limit. */
  stopIdle: boolean;
  /** For the log and `/health`. */
  why?: "zero_balance" | "spend_limit";
}

/**
 * Whether billing stops a tenant's scale-up. At zero balance or below (an `enforce` tenant, under
 * HEARTH_BILLING_MODE=enforce) nothing new starts and idle workers stop; an unknown balance counts
 * as zero (a tenant that must pay first is not started on a guess). Past its spend per hour (any
 * tenant: a quota, like maxWorkers) nothing new starts; what runs keeps running.
 */
export function billingHold(s: BillingHoldInput): BillingHold {
  if (s.mode === "enforce" && s.tenantMode === "enforce" && (s.balanceMicros ?? 0) <= 0) return { holdStarts: true, stopIdle: true, why: "zero_balance" };
  if (s.spentLastHourMicros !== undefined && s.spentLastHourMicros >= s.spendPerHourMicros) return { holdStarts: true, stopIdle: false, why: "spend_limit" };
  return { holdStarts: false, stopIdle: false };
}
