import type { Redis } from "ioredis";
import { sql } from "drizzle-orm";
import { z } from "zod";
import type { Db } from "../core/db/client.ts";
import { admitStarts, type CapacityDecision } from "../core/policy/capacity.ts";
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
  /** How long a throttled count stays on `/health` without being renewed (ms): a few ticks. */
  reportTtlMs: number;
}

const tenantCapRow = z.object({ id: z.string(), max_workers: z.coerce.number().int().nullable() });

/**
 * Holds a scaling step's starts to the host's cap and the tenant's `maxWorkers` (core/policy/capacity.ts),
 * counting workers the provider runs plus starts still on their way to it (reserved here
 * synchronously, so concurrent steps cannot both take the last slot), and reports what waits on
 * the endpoint's `/health` as throttled with its reason.
 */
export class CapacityGate {
  private readonly inFlight = new Map<string, number>();
  private readonly tenantOf = new Map<string, string>();
  private tenantCaps = new Map<string, number>();
  /** Endpoints with a throttled count on `/health` now: only these need clearing. */
  private readonly reported = new Set<string>();

  constructor(private readonly opts: CapacityGateOptions) {}

  /** Reads every tenant's maxWorkers override (once per tick). */
  async refreshTenantCaps(): Promise<void> {
    const rows = z.array(tenantCapRow).parse(
      await this.opts.db.execute(sql`select id, (limits->>'maxWorkers')::int as max_workers from tenants where limits ? 'maxWorkers'`),
    );
    this.tenantCaps = new Map(rows.flatMap((r) => (r.max_workers === null ? [] : [[r.id, r.max_workers] as const])));
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
    if (decision.throttled === 0) {
      if (this.reported.delete(endpointId)) await this.opts.redis.del(key);
      return;
    }
    this.reported.add(endpointId);
    await this.opts.redis.set(key, JSON.stringify({ throttled: decision.throttled, waitReason: decision.waitReason }), "PX", this.opts.reportTtlMs);
  }
}
