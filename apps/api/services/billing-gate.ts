import type { BillingMode } from "../../../core/contracts/billing.ts";
import type { BalanceCache, CachedBalance } from "../../../core/redis/balance-cache.ts";
import { ApiError } from "../api-error.ts";
import { TtlCache } from "./ttl-cache.ts";

export interface BillingGateOptions {
  /** HEARTH_BILLING_MODE: `meter` turns the gate off for every tenant. */
  mode: BillingMode;
  balances: BalanceCache;
  /** How long a balance is served from memory (ms). Default 1000: a credit or a charge is seen within it. */
  cacheMs?: number;
  now?: () => number;
}

/** 402 `insufficient_balance` with the balance, and where credit comes from. */
export function insufficientBalance(balanceMicros: number): ApiError {
  return new ApiError(
    402,
    "insufficient_balance",
    `the tenant's balance is ${balanceMicros} µ$ (1 USD = 1000000): new jobs need credit (an admin adds it with POST /admin/tenants/:id/credits)`,
    undefined,
    undefined,
    { balanceMicros },
  );
}

/**
 * Refuses new jobs of `enforce` tenants at zero balance or below (402), from the cached balance
 * (core/redis/balance-cache.ts: Redis, rebuilt from the ledger), held in memory for `cacheMs`: the job
 * path never reads Postgres for it. A job accepted just before a balance reaches zero runs (as do
 * jobs already queued); so does what one cache period admits.
 */
export class BillingGate {
  private readonly cache: TtlCache<CachedBalance>;
  private readonly loading = new Map<string, Promise<CachedBalance | undefined>>();

  constructor(private readonly options: BillingGateOptions) {
    this.cache = new TtlCache(options.cacheMs ?? 1000, 10_000, options.now ?? Date.now);
  }

  /** Synchronous while the tenant's balance is in memory (the common case: no await on the job path). */
  check(tenantId: string, tenantMode: BillingMode): void | Promise<void> {
    if (this.options.mode === "meter" || tenantMode === "meter") return;
    const hit = this.cache.get(tenantId);
    if (hit) return judge(hit);
    let load = this.loading.get(tenantId);
    if (!load) {
      load = this.options.balances
        .get(tenantId)
        .then((b) => {
          if (b) this.cache.set(tenantId, b);
          return b;
        })
        .finally(() => this.loading.delete(tenantId));
      this.loading.set(tenantId, load);
    }
    return load.then((b) => (b ? judge(b) : undefined));
  }

  /** Drops the tenant's balance from memory (after a credit on this replica). */
  forget(tenantId: string): void {
    this.cache.delete(tenantId);
  }
}

function judge(b: CachedBalance): void {
  if (b.balanceMicros <= 0) throw insufficientBalance(b.balanceMicros);
}
