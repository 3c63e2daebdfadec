import type { Redis } from "ioredis";
import type { Sql } from "postgres";
import { z } from "zod";
import { billingMode } from "../contracts/billing.ts";
import { pgSafeInt } from "../db/pg-int.ts";
import type { RedisKeys } from "../queue/keys.ts";
import { redisNowMs } from "./redis-clock.ts";

/** What the job path and the scheduler know of a tenant's money, rebuilt from its ledger entries. */
export const cachedBalance = z.object({
  balanceMicros: z.number().int(),
  /** How many ledger entries the sum holds: the ledger is append-only, so a larger count is newer. */
  entries: z.number().int().min(0),
  /** Charges dated within the hour before `at` (µ$, positive): what `spendPerHourMicros` is held to. */
  spentLastHourMicros: z.number().int(),
  billingMode,
  /** ms on Redis' clock the sum was taken. */
  at: z.number().int(),
});
export type CachedBalance = z.infer<typeof cachedBalance>;

const HOUR_MS = 3_600_000;

const sumRow = z.object({ id: z.string(), billing_mode: billingMode, balance: pgSafeInt, entries: pgSafeInt, spent_hour: pgSafeInt });

/**
 * --[[ Stores a tenant's rebuilt balance unless a newer one (more ledger entries) is already there:
 *   two writers racing (the billing consumer, a credit) cannot leave the older sum behind.
 *   KEYS[1] the balances hash; ARGV[1] tenant id; ARGV[2] entry count; ARGV[3] the JSON
 * ]]
 */
const PUT_LUA = `
local old = redis.call("HGET", KEYS[1], ARGV[1])
if old then
  local ok, decoded = pcall(cjson.decode, old)
  if ok and type(decoded) == "table" and tonumber(decoded["entries"]) and tonumber(decoded["entries"]) > tonumber(ARGV[2]) then return 0 end
end
redis.call("HSET", KEYS[1], ARGV[1], ARGV[3])
return 1
`;

type CacheRedis = Redis & { hearthPutBalance(key: string, tenantId: string, entries: string, json: string): Promise<number> };

/**
 * Tenants' balances in Redis (one hash), each rebuilt from the ledger's entries in Postgres, never
 * adjusted on its own: the ledger is the truth, this is how the hot path avoids reading it. Rebuilt
 * after every write to a tenant's ledger (a credit, the billing consumer's charges) and
 * periodically by the billing consumer (spend per hour decays with time; Redis may lose the hash).
 */
export class BalanceCache {
  private readonly redis: CacheRedis;

  constructor(
    redis: Redis,
    private readonly sql: Sql,
    private readonly keys: RedisKeys,
  ) {
    if (!("hearthPutBalance" in redis)) redis.defineCommand("hearthPutBalance", { numberOfKeys: 1, lua: PUT_LUA });
    this.redis = redis as CacheRedis;
  }

  /** Sums the tenants' ledgers now and stores the result; returns what it stored (unknown tenants are left out). */
  async rebuild(tenantIds: readonly string[]): Promise<Map<string, CachedBalance>> {
    const out = new Map<string, CachedBalance>();
    if (tenantIds.length === 0) return out;
    const at = await redisNowMs(this.redis);
    const hourAgo = new Date(at - HOUR_MS).toISOString();
    const rows = z.array(sumRow).parse(
      await this.sql`
        select t.id, t.billing_mode,
               coalesce(sum(l.amount_micros), 0) as balance,
               count(l.id) as entries,
               coalesce(-sum(l.amount_micros) filter (where l.kind = 'charge' and l.at >= ${hourAgo}::timestamptz), 0) as spent_hour
        from tenants t left join ledger_entries l on l.tenant_id = t.id
        where t.id = any(${tenantIds as string[]})
        group by t.id, t.billing_mode`,
    );
    for (const r of rows) {
      const b: CachedBalance = { balanceMicros: r.balance, entries: r.entries, spentLastHourMicros: r.spent_hour, billingMode: r.billing_mode, at };
      await this.redis.hearthPutBalance(this.keys.billingBalances(), r.id, String(b.entries), JSON.stringify(b));
      out.set(r.id, b);
    }
    return out;
  }

  /** Rebuilds every tenant that has ledger entries or pays in `enforce` mode. */
  async rebuildAll(): Promise<number> {
    const rows = z.array(z.object({ id: z.string() })).parse(
      await this.sql`select id from tenants where billing_mode = 'enforce' or exists (select 1 from ledger_entries l where l.tenant_id = tenants.id)`,
    );
    for (let i = 0; i < rows.length; i += 500) await this.rebuild(rows.slice(i, i + 500).map((r) => r.id));
    return rows.length;
  }

  /** The cached balance; rebuilt from Postgres when Redis has none (or an unreadable one). Undefined for an unknown tenant. */
  async get(tenantId: string): Promise<CachedBalance | undefined> {
    const raw = await this.redis.hget(this.keys.billingBalances(), tenantId);
    const cached = raw === null ? undefined : parseCached(raw);
    return cached ?? (await this.rebuild([tenantId])).get(tenantId);
  }

  /** The cached balances of these tenants (the scheduler's per-tick read); those Redis lacks are rebuilt from Postgres. */
  async getMany(tenantIds: readonly string[]): Promise<Map<string, CachedBalance>> {
    const out = new Map<string, CachedBalance>();
    if (tenantIds.length === 0) return out;
    const raw = await this.redis.hmget(this.keys.billingBalances(), ...tenantIds);
    const missing: string[] = [];
    tenantIds.forEach((id, i) => {
      const b = raw[i] == null ? undefined : parseCached(raw[i]!);
      if (b) out.set(id, b);
      else missing.push(id);
    });
    for (const [id, b] of await this.rebuild(missing)) out.set(id, b);
    return out;
  }
}

function parseCached(json: string): CachedBalance | undefined {
  try {
    const r = cachedBalance.safeParse(JSON.parse(json));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}
