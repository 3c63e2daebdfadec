import type { Redis } from "ioredis";
import { sql } from "drizzle-orm";
import { z } from "zod";
import type { Db } from "../core/db/client.ts";
import { admitStarts, type CapacityDecision, type CapacityReport } from "../core/policy/capacity.ts";
import { billingHold, type BillingHold } from "../core/policy/billing-hold.ts";
import { billingMode, type BillingMode } from "../core/contracts/billing.ts";
import type { BalanceCache } from "../core/redis/balance-cache.ts";
import type { RedisKeys } from "../core/queue/keys.ts";
import type { ProvidedWorker } from "./providers/provider.ts";

export interface CapacityGateOptions {
  db: Db;
  redis: Redis;
  keys: RedisKeys;
  /** HEARTH_HOST_WORKER_CAP: the most workers this scheduler's provider runs at once. */
  hostCap: number;
  /** maxWorkers of a tenant without an override (HEARTH_DEFAULT_MAX_WORKERS). */
  defaultMaxWorkers: number;
  /** HEARTH_BILLING_MODE: under `meter` only the spend per hour holds a tenant back. */
  billingMode: BillingMode;
  /** spendPerHourMicros of a tenant without an override (HEARTH_DEFAULT_SPEND_PER_HOUR_MICROS). */
  defaultSpendPerHourMicros: number;
  /** Tenants' balances and spend, from their ledgers. */
  balances: BalanceCache;
  /** How long a throttled count stays on `/health` without being renewed (ms): a few ticks. */
  reportTtlMs: number;
}

const tenantRow = z.object({
  id: z.string(),
  billing_mode: billingMode.catch("enforce"),
  max_workers: z.coerce.number().int().nullable(),
  spend_per_hour: z.coerce.number().int().nullable(),
});
const NO_HOLD: BillingHold = { holdStarts: false, stopIdle: false };

/**
 * Holds a scaling step's starts to the host's cap, the tenant's `maxWorkers` and its billing
 * (core/policy/capacity.ts, core/policy/billing-hold.ts),
 * counting workers the provider runs plus starts still on their way to it (reserved here
 * synchronously, so concurrent steps cannot both take the last slot), and reports what waits on
 * the endpoint's `/health` as throttled with its reason.
 */
export class CapacityGate {
  private readonly inFlight = new Map<string, number>();
  private readonly tenantOf = new Map<string, string>();
  private tenantCaps = new Map<string, number>();
  private holds = new Map<string, BillingHold>();
  /** Endpoints with a throttled count on `/health` now: only these need clearing. */
  private readonly reported = new Set<string>();

  constructor(private readonly opts: CapacityGateOptions) {}

  /**
   * Reads the tenants' maxWorkers overrides, billing modes, spend limits and balances (once per
   * tick, for the tenants of live endpoints), and decides which billing holds back.
   */
  async refreshTenants(tenantIds: readonly string[]): Promise<void> {
    const ids = [...new Set(tenantIds)];
    if (ids.length === 0) return;
    const rows = z.array(tenantRow).parse(
      await this.opts.db.execute(sql`
        select id, billing_mode, (limits->>'maxWorkers')::int as max_workers, (limits->>'spendPerHourMicros')::bigint as spend_per_hour
        from tenants where id in ${ids}`),
    );
    const balances = await this.opts.balances.getMany(rows.map((r) => r.id));
    const caps = new Map<string, number>();
    const holds = new Map<string, BillingHold>();
    for (const r of rows) {
      if (r.max_workers !== null) caps.set(r.id, r.max_workers);
      const b = balances.get(r.id);
      holds.set(
        r.id,
        billingHold({
          mode: this.opts.billingMode,
          tenantMode: r.billing_mode,
          balanceMicros: b?.balanceMicros,
          spentLastHourMicros: b?.spentLastHourMicros,
          spendPerHourMicros: r.spend_per_hour ?? this.opts.defaultSpendPerHourMicros,
        }),
      );
    }
    for (const id of ids) if (!caps.has(id)) this.tenantCaps.delete(id);
    for (const [id, cap] of caps) this.tenantCaps.set(id, cap);
    for (const [id, hold] of holds) this.holds.set(id, hold);
  }

  /** Reads a tenant first seen between ticks (a wake for a new endpoint). */
  async ensureTenant(tenantId: string): Promise<void> {
    if (!this.holds.has(tenantId)) await this.refreshTenants([tenantId]);
  }

  /** What billing does to the tenant's workers now. */
  billing(tenantId: string): BillingHold {
    return this.holds.get(tenantId) ?? NO_HOLD;
  }

  /**
   * How many of `want` workers of `endpoint` may start now; the admitted ones are reserved until
   * `release` is called for each. `running` is what the provider runs now, every endpoint.
   */
  admit(endpoint: { id: string; tenantId: string }, want: number, running: ProvidedWorker[]): CapacityDecision {
    this.tenantOf.set(endpoint.id, endpoint.tenantId);
    const starting = (filter: (endpointId: string) => boolean) => [...this.inFlight].reduce((n, [ep, k]) => (filter(ep) ? n + k : n), 0);
    const ofTenant = (endpointId: string) => this.tenantOf.get(endpointId) === endpoint.tenantId;
    const decision = admitStarts({
      want,
      hostLive: running.length + starting(() => true),
      hostCap: this.opts.hostCap,
      tenantLive: running.filter((w) => ofTenant(w.endpointId)).length + starting(ofTenant),
      tenantCap: this.tenantCaps.get(endpoint.tenantId) ?? this.opts.defaultMaxWorkers,
      billingHold: this.billing(endpoint.tenantId).holdStarts,
    });
    if (decision.start > 0) this.inFlight.set(endpoint.id, (this.inFlight.get(endpoint.id) ?? 0) + decision.start);
    return decision;
  }

  /** One admitted start reached the provider (or failed): it no longer counts as on its way. */
  release(endpointId: string): void {
    const n = (this.inFlight.get(endpointId) ?? 0) - 1;
    if (n > 0) this.inFlight.set(endpointId, n);
    else this.inFlight.delete(endpointId);
  }

  /** Puts the endpoint's throttled count (and why) where `/health` reads it; clears it when nothing waits. */
  async report(endpointId: string, decision: CapacityDecision): Promise<void> {
    const key = this.opts.keys.capacity(endpointId);
    if (decision.waitReason === undefined) {
      if (this.reported.delete(endpointId)) await this.opts.redis.del(key);
      return;
    }
    this.reported.add(endpointId);
    const report: CapacityReport = { throttled: decision.throttled, waitReason: decision.waitReason };
    await this.opts.redis.set(key, JSON.stringify(report), "PX", this.opts.reportTtlMs);
  }
}
