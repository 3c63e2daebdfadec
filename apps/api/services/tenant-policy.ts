import type { Redis } from "ioredis";
import type { Sql } from "postgres";
import { z } from "zod";
import {
  applyLimitsUpdate,
  effectiveLimits,
  grantsUpdate,
  storedLimits,
  tenantGrants,
  type LimitName,
  type LimitsUpdate,
  type StoredLimits,
  type TenantGrants,
  type TenantLimits,
} from "../../../core/contracts/tenant-limits.ts";
import { applyRateUpdate, storedRateLimits, type RateLimits } from "../../../core/contracts/rate-limits.ts";
import { queueBound } from "../../../core/policy/queue-bound.ts";
import type { Endpoint } from "../../../core/contracts/endpoint.ts";
import { ENGINE_PROFILES, riskyArgs, type EngineProfile, type ProfileArgs } from "../../../core/engine/engine-profiles.ts";
import type { RedisKeys } from "../../../core/queue/keys.ts";
import { billingMode, type BillingMode } from "../../../core/contracts/billing.ts";
import { ApiError } from "../api-error.ts";
import { isBackendUnavailable } from "../backend-unavailable.ts";
import { TtlCache } from "./ttl-cache.ts";
import { appendAudit, auditRow, type AuditBy } from "../../../core/db/audit-writes.ts";

export interface TenantPolicyOptions {
  sql: Sql;
  redis: Redis;
  keys: RedisKeys;
  /** The operator's defaults (HEARTH_DEFAULT_MAX_*). */
  defaults: TenantLimits;
  /** How long a tenant's limits and grants are served from memory (ms). Default 5000: a change reaches every replica within it. */
  cacheMs?: number;
  /** How often one endpoint's queue depth is sampled for back-pressure (ms). Default 250. */
  depthSampleMs?: number;
  /** HEARTH_QUEUE_CAPACITY_MULTIPLE and _FLOOR (core/policy/queue-bound.ts); multiple 0 or absent: no capacity bound. */
  queueCapacity?: { multiple: number; floor: number };
  /** Counts a back-pressure refusal (metrics). */
  onQueueFull?: (endpointId: string) => void;
  now?: () => number;
}

const policyRow = z.object({ limits: z.unknown(), grants: z.unknown(), billing_mode: billingMode.catch("enforce") });
export interface Policy {
  overrides: StoredLimits;
  limits: TenantLimits;
  grants: TenantGrants;
  /** The tenant's own rate limits (`requestsPerSecond`, `burst`, `tokensPerMinute`); empty: the operator's preset. */
  rates: RateLimits;
  /** How the tenant pays: `enforce` tenants need credit for new jobs. */
  billingMode: BillingMode;
}

const isProfile = (p: unknown): p is EngineProfile => typeof p === "string" && (ENGINE_PROFILES as readonly string[]).includes(p);

/** 403 `quota_exceeded` naming the quota and its value. */
export function quotaExceeded(name: LimitName, value: number, detail: string): ApiError {
  return new ApiError(403, "quota_exceeded", `quota ${name} (${value}) exceeded: ${detail}`, [{ path: name, message: `quota is ${value}` }]);
}

/**
 * A tenant's quotas and grants (Postgres `tenants.limits`, `tenants.grants`), cached briefly for
 * the job path, and the admission checks that read them. Counts are checked against Postgres at
 * the moment of the change; the queue bound against a depth sampled at most every `depthSampleMs`
 * per endpoint, so it may be passed by what one sample period accepts (the price of keeping a
 * Redis read off every `/run`).
 */
export class TenantPolicy {
  private readonly cache: TtlCache<Policy>;
  private readonly depth = new Map<string, { at: number; depth: number }>();
  private readonly refreshing = new Map<string, Promise<number>>();
  private readonly now: () => number;

  constructor(private readonly options: TenantPolicyOptions) {
    this.now = options.now ?? Date.now;
    this.cache = new TtlCache(options.cacheMs ?? 5000, 10_000, this.now);
  }

  get defaults(): TenantLimits {
    return this.options.defaults;
  }

  /** The tenant's limits and grants; undefined for an unknown tenant. Served stale while Postgres is away. */
  async policy(tenantId: string): Promise<Policy | undefined> {
    const hit = this.cache.get(tenantId);
    if (hit) return hit;
    try {
      const rows = z.array(policyRow).parse(await this.options.sql`select limits, grants, billing_mode from tenants where id = ${tenantId}`);
      const row = rows[0];
      if (!row) return undefined;
      const overrides = storedLimits.catch({}).parse(row.limits);
      const policy: Policy = {
        overrides,
        limits: effectiveLimits(this.options.defaults, overrides),
        grants: tenantGrants.catch({ remoteCode: false }).parse(row.grants),
        rates: storedRateLimits.catch({}).parse(row.limits),
        billingMode: row.billing_mode,
      };
      this.cache.set(tenantId, policy);
      return policy;
    } catch (err) {
      const stale = isBackendUnavailable(err) ? this.cache.getStale(tenantId, 15 * 60_000) : undefined;
      if (stale) return stale;
      throw err;
    }
  }

  /** The limits in force for a tenant known to exist (an authenticated one); synchronous from the cache. */
  limits(tenantId: string): TenantLimits | Promise<TenantLimits> {
    const hit = this.cache.get(tenantId);
    if (hit) return hit.limits;
    return this.policy(tenantId).then((p) => p?.limits ?? this.options.defaults);
  }

  /** Limits and billing mode of a tenant known to exist; synchronous from the cache (the job path's read). */
  admission(tenantId: string): Pick<Policy, "limits" | "billingMode" | "rates"> | Promise<Pick<Policy, "limits" | "billingMode" | "rates">> {
    const hit = this.cache.get(tenantId);
    if (hit) return hit;
    return this.policy(tenantId).then((p) => p ?? { limits: this.options.defaults, billingMode: "meter" as const, rates: {} });
  }

  /** Sets how the tenant pays; undefined for an unknown tenant. Replicas see it within `cacheMs`. */
  async setBillingMode(tenantId: string, mode: BillingMode, by: AuditBy): Promise<BillingMode | undefined> {
    const found = await this.options.sql.begin(async (tx) => {
      const rows = await tx`update tenants set billing_mode = ${mode} where id = ${tenantId} returning id`;
      if (rows.length > 0) await appendAudit(tx, [auditRow(by, { action: "tenant.billing_mode.update", tenantId, targetId: tenantId, detail: { billingMode: mode } })]);
      return rows.length > 0;
    });
    this.cache.delete(tenantId);
    return found ? mode : undefined;
  }

  async setLimits(tenantId: string, update: LimitsUpdate, by: AuditBy): Promise<{ limits: TenantLimits; overrides: StoredLimits; rates: RateLimits } | undefined> {
    const { sql } = this.options;
    const next = await sql.begin(async (tx) => {
      const rows = z.array(z.object({ limits: z.unknown() })).parse(await tx`select limits from tenants where id = ${tenantId} for update`);
      if (!rows[0]) return undefined;
      const overrides = applyLimitsUpdate(storedLimits.catch({}).parse(rows[0].limits), update);
      // Rates share the column with the quotas: one JSON object, each name once.
      const rates = applyRateUpdate(storedRateLimits.catch({}).parse(rows[0].limits), update);
      await tx`update tenants set limits = ${JSON.stringify({ ...overrides, ...rates })}::text::jsonb where id = ${tenantId}`;
      await appendAudit(tx, [auditRow(by, { action: "tenant.limits.update", tenantId, targetId: tenantId, detail: { update, overrides, rates } })]);
      return { overrides, rates };
    });
    this.cache.delete(tenantId);
    return next && { limits: effectiveLimits(this.options.defaults, next.overrides), overrides: next.overrides, rates: next.rates };
  }

  async setGrants(tenantId: string, update: z.infer<typeof grantsUpdate>, by: AuditBy): Promise<TenantGrants | undefined> {
    const { sql } = this.options;
    const rows = await sql.begin(async (tx) => {
      const updated = z.array(z.object({ grants: z.unknown() })).parse(
        await tx`update tenants set grants = grants || ${JSON.stringify(update)}::text::jsonb where id = ${tenantId} returning grants`,
      );
      if (updated[0]) await appendAudit(tx, [auditRow(by, { action: "tenant.grants.update", tenantId, targetId: tenantId, detail: { update } })]);
      return updated;
    });
    this.cache.delete(tenantId);
    return rows[0] ? tenantGrants.parse(rows[0].grants) : undefined;
  }

  /** What the tenant uses of its counted quotas now. */
  async usage(tenantId: string, exceptEndpointId?: string): Promise<{ endpoints: number; workersMin: number }> {
    const { sql } = this.options;
    const rows = z.array(z.object({ endpoints: z.coerce.number(), workers_min: z.coerce.number() })).parse(
      await sql`select count(*) as endpoints, coalesce(sum(workers_min), 0) as workers_min from endpoints
                where tenant_id = ${tenantId} and deleted_at is null and id <> ${exceptEndpointId ?? ""}`,
    );
    return { endpoints: rows[0]?.endpoints ?? 0, workersMin: rows[0]?.workers_min ?? 0 };
  }

  /**
   * Refuses an endpoint (new, or `endpointId` changed to these settings) that would take the tenant
   * past `maxEndpoints`, `maxWorkersMin`, or whose `workersMax` alone passes `maxWorkers`.
   */
  async checkEndpoint(tenantId: string, settings: { workersMin: number; workersMax: number }, endpointId?: string): Promise<void> {
    const limits = await this.limits(tenantId);
    if (settings.workersMax > limits.maxWorkers) throw quotaExceeded("maxWorkers", limits.maxWorkers, `workersMax ${settings.workersMax} is more workers than the tenant may run at once`);
    const usage = await this.usage(tenantId, endpointId);
    if (endpointId === undefined && usage.endpoints + 1 > limits.maxEndpoints) throw quotaExceeded("maxEndpoints", limits.maxEndpoints, `the tenant has ${usage.endpoints} endpoints`);
    if (usage.workersMin + settings.workersMin > limits.maxWorkersMin) {
      throw quotaExceeded("maxWorkersMin", limits.maxWorkersMin, `the tenant's other endpoints keep ${usage.workersMin} workers at minimum; this one asks for ${settings.workersMin}`);
    }
  }

  /**
   * Refuses engine flags that load code or read paths (core/engine/engine-profiles.ts `risk`)
   * unless the admin granted the tenant `remoteCode`: 400 naming each flag.
   */
  async checkGrants(tenantId: string, engine: { kind: string; profile?: unknown; args?: unknown }, path: string): Promise<void> {
    if (engine.kind !== "openai" || !isProfile(engine.profile) || typeof engine.args !== "object" || engine.args === null) return;
    const risky = riskyArgs(engine.profile, engine.args as ProfileArgs);
    if (risky.length === 0) return;
    if ((await this.policy(tenantId))?.grants.remoteCode) return;
    const issues = risky.map((r) => ({
      path: `${path}.args.${r.key}`,
      message: `--${r.key} ${r.risk === "code" ? "runs code shipped with the model" : "reads a path the tenant names"}; it needs the remoteCode grant (PUT /admin/tenants/:id/grants)`,
    }));
    throw new ApiError(400, "grant_required", `invalid request: ${issues.map((i) => `${i.path}: ${i.message}`).join("; ")}`, issues);
  }

  /**
   * Back-pressure: 429 with Retry-After when the endpoint's queue holds `maxQueuedJobsPerEndpoint`
   * jobs or more, or more than its capacity bound (`queueCapacity`: a multiple of workersMax ×
   * per-worker concurrency). Synchronous while the sample is fresh (the common case: no await on
   * the job path); one refresh at a time per endpoint.
   */
  checkQueue(ep: Pick<Endpoint, "id" | "workersMax" | "engine">, limits: TenantLimits): void | Promise<void> {
    const endpointId = ep.id;
    const now = this.now();
    const sample = this.depth.get(endpointId);
    if (sample && now - sample.at < (this.options.depthSampleMs ?? 250)) return this.judgeDepth(ep, sample.depth, limits);
    let refresh = this.refreshing.get(endpointId);
    if (!refresh) {
      const { redis, keys } = this.options;
      refresh = Promise.all([redis.llen(`${keys.queuePrefix(endpointId)}:wait`), redis.zcard(`${keys.queuePrefix(endpointId)}:prioritized`)])
        .then(([wait, prioritized]) => {
          if (this.depth.size >= 10_000 && !this.depth.has(endpointId)) this.depth.delete(this.depth.keys().next().value!);
          this.depth.set(endpointId, { at: now, depth: wait + prioritized });
          return wait + prioritized;
        })
        .finally(() => this.refreshing.delete(endpointId));
      this.refreshing.set(endpointId, refresh);
    }
    return refresh.then((depth) => this.judgeDepth(ep, depth, limits));
  }

  private judgeDepth(ep: Pick<Endpoint, "id" | "workersMax" | "engine">, depth: number, limits: TenantLimits): void {
    const max = limits.maxQueuedJobsPerEndpoint;
    if (depth >= max) {
      this.options.onQueueFull?.(ep.id);
      throw new ApiError(429, "queue_full", `the endpoint's queue holds ${depth} jobs, its limit (maxQueuedJobsPerEndpoint ${max}); retry later`, undefined, { "Retry-After": "1" });
    }
    const cap = this.options.queueCapacity;
    if (!cap) return;
    const perWorker = "concurrency" in ep.engine && typeof ep.engine.concurrency === "number" ? ep.engine.concurrency : 1;
    const bound = queueBound(cap.multiple, cap.floor, ep.workersMax, perWorker);
    if (bound !== undefined && depth >= bound) {
      this.options.onQueueFull?.(ep.id);
      throw new ApiError(
        429,
        "queue_full",
        `the endpoint's queue holds ${depth} jobs, ${cap.multiple} times its capacity (workersMax ${ep.workersMax} × concurrency ${perWorker}, at least ${cap.floor}); retry later`,
        undefined,
        { "Retry-After": "1" },
      );
    }
  }
}
