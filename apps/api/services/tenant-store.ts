import { createHash, timingSafeEqual } from "node:crypto";
import { and, eq, isNull } from "drizzle-orm";
import { z } from "zod";
import type { Db } from "../../../core/db/client.ts";
import { apiKeys, auditLog, tenants } from "../../../core/db/schema.ts";
import type { BillingMode } from "../../../core/contracts/billing.ts";
import { newApiKey, newKeyId, newTenantId } from "../../../core/ids/random-id.ts";
import { keyScope, type KeyScope } from "../../../core/contracts/key-scope.ts";
import { applyRateUpdate, hasRates, storedRateLimits, type RateLimits, type RateLimitsUpdate } from "../../../core/contracts/rate-limits.ts";
import { auditRow, type AuditBy } from "../../../core/db/audit-writes.ts";
import type { ControlMessage } from "../../../core/queue/messages.ts";
import { TtlCache } from "./ttl-cache.ts";
import { isBackendUnavailable } from "../backend-unavailable.ts";
import { STALE_IF_ERROR_MS } from "./endpoint-store.ts";

export interface Principal {
  tenantId: string;
  keyId: string;
  /** What the key may do (core/policy/key-scopes.ts). */
  scope: KeyScope;
  /** The key's own rate limits, under its tenant's; absent when it has none. */
  rates?: RateLimits;
}

export interface KeyInfo {
  id: string;
  name: string;
  /** The first characters of the key, to tell keys apart. */
  prefix: string;
  scope: KeyScope;
  /** The key's own rate limits (`{}`: only the tenant's apply). */
  rateLimits: RateLimits;
  createdAt: string;
  revokedAt: string | null;
}

export const hashKey = (key: string) => createHash("sha256").update(key).digest("hex");

/** Every key `newApiKey` has ever made: `hk_` and 24 random bytes in base64url. */
const KEY_SHAPE = /^hk_[A-Za-z0-9_-]{32}$/;

/** The row a presented key resolves to, checked as it comes back from Postgres. */
const keyRow = z.object({ tenantId: z.string(), keyId: z.string(), scope: keyScope, hash: z.string().regex(/^[0-9a-f]{64}$/), rateLimits: storedRateLimits.catch({}) });

export interface TenantStoreOptions {
  db: Db;
  /**
   * How long a resolved key is trusted without asking Postgres (ms), and so the longest a revoked
   * key still works on a replica that missed the revocation's broadcast. Default 60000.
   */
  keyCacheMs?: number;
  /** How long an unknown (or revoked) key is refused without asking Postgres again (ms). Default 5000. */
  unknownKeyCacheMs?: number;
  /** Bound on each of the two caches (entries; the oldest goes first). Default 10000. */
  maxCachedKeys?: number;
  /**
   * Tells the other API replicas to drop a revoked key (apps/api/services/invalidations.ts). Without
   * it a revocation is seen at once only by this process, by the others within `keyCacheMs`.
   */
  invalidations?: { announce(msg: ControlMessage): Promise<boolean> };
  /** Clock of the caches' TTLs (ms epoch). Default Date.now. */
  now?: () => number;
}

/** Tenants and their API keys. Keys are stored only as SHA-256 hashes; the plaintext is returned once, by the create call. */
export class TenantStore {
  private readonly db: Db;
  private readonly invalidations: TenantStoreOptions["invalidations"];
  /**
   * Both caches are keyed by the key's hash, never by the key: a heap dump or a debugger holds no
   * usable key. Hashing every request costs about a microsecond.
   */
  private readonly known: TtlCache<Principal>;
  /** Hashes Postgres just said no to: a client retrying a bad key in a loop costs one query per TTL, not one per request. */
  private readonly unknown: TtlCache<true>;
  /** Look-ups in flight by hash, shared by the requests that arrive meanwhile (a burst of one bad key is one query). */
  private readonly inFlight = new Map<string, Promise<Principal | undefined>>();
  /** Bumped by every invalidation: a look-up that started before one must not cache what it read. */
  private generation = 0;

  constructor(options: TenantStoreOptions) {
    this.db = options.db;
    this.invalidations = options.invalidations;
    const now = options.now ?? Date.now;
    const max = options.maxCachedKeys ?? 10_000;
    this.known = new TtlCache(options.keyCacheMs ?? 60_000, max, now);
    this.unknown = new TtlCache(options.unknownKeyCacheMs ?? 5_000, max, now);
  }

  /** A tenant and its first (`full`) key, with its audit entry, in one transaction. */
  async createTenant(name: string, billingMode: BillingMode, by: AuditBy): Promise<{ id: string; name: string; apiKey: string; billingMode: BillingMode }> {
    const id = newTenantId();
    const key = newApiKey();
    const keyId = newKeyId();
    await this.db.transaction(async (tx) => {
      await tx.insert(tenants).values({ id, name, billingMode });
      await tx.insert(apiKeys).values({ id: keyId, tenantId: id, name: "default", displayPrefix: key.slice(0, 10), hash: hashKey(key), scope: "full" });
      await tx.insert(auditLog).values(auditRow(by, { action: "tenant.create", tenantId: id, targetId: id, detail: { name, billingMode, firstKeyId: keyId } }));
    });
    this.unknown.delete(hashKey(key));
    return { id, name, apiKey: key, billingMode };
  }

  async createKey(tenantId: string, name: string, scope: KeyScope, by: AuditBy, rateLimits: RateLimits = {}): Promise<KeyInfo & { key: string }> {
    const key = newApiKey();
    const hash = hashKey(key);
    const row = await this.db.transaction(async (tx) => {
      const [inserted] = await tx.insert(apiKeys).values({ id: newKeyId(), tenantId, name, displayPrefix: key.slice(0, 10), hash, scope, rateLimits }).returning();
      await tx.insert(auditLog).values(auditRow(by, { action: "key.create", tenantId, targetId: inserted!.id, detail: { name, scope, rateLimits } }));
      return inserted!;
    });
    // Only someone who presented this exact key before it existed could have it cached as unknown; be exact anyway.
    this.unknown.delete(hash);
    return { ...toKeyInfo(row), key };
  }

  async listKeys(tenantId: string): Promise<KeyInfo[]> {
    const rows = await this.db.select().from(apiKeys).where(eq(apiKeys.tenantId, tenantId)).orderBy(apiKeys.createdAt);
    return rows.map(toKeyInfo);
  }

  /**
   * Revokes one of the tenant's keys: refused here at once, on the other replicas when the broadcast
   * reaches them (retried in the background if Redis is away) or at the latest after `keyCacheMs`.
   * Returns the key's hash, or undefined if it is not the tenant's (or already revoked).
   */
  async revokeKey(tenantId: string, keyId: string, by: AuditBy): Promise<string | undefined> {
    const row = await this.db.transaction(async (tx) => {
      const [revoked] = await tx
        .update(apiKeys)
        .set({ revokedAt: new Date() })
        .where(and(eq(apiKeys.id, keyId), eq(apiKeys.tenantId, tenantId), isNull(apiKeys.revokedAt)))
        .returning({ hash: apiKeys.hash });
      if (revoked) await tx.insert(auditLog).values(auditRow(by, { action: "key.revoke", tenantId, targetId: keyId }));
      return revoked;
    });
    if (!row) return undefined;
    this.forgetKeyHash(row.hash);
    void this.invalidations?.announce({ type: "invalidate-key", keyHash: row.hash });
    return row.hash;
  }

  /**
   * Sets a live key's own rate limits (a number sets, `null` removes); undefined when the key is not
   * the tenant's or is revoked. Replicas drop the cached key at once (or within `keyCacheMs`).
   */
  async setKeyRates(tenantId: string, keyId: string, update: RateLimitsUpdate, by: AuditBy): Promise<KeyInfo | undefined> {
    const row = await this.db.transaction(async (tx) => {
      const [current] = await tx
        .select()
        .from(apiKeys)
        .where(and(eq(apiKeys.id, keyId), eq(apiKeys.tenantId, tenantId), isNull(apiKeys.revokedAt)))
        .for("update");
      if (!current) return undefined;
      const rateLimits = applyRateUpdate(storedRateLimits.catch({}).parse(current.rateLimits), update);
      const [updated] = await tx.update(apiKeys).set({ rateLimits }).where(eq(apiKeys.id, keyId)).returning();
      await tx.insert(auditLog).values(auditRow(by, { action: "key.rate_limits.update", tenantId, targetId: keyId, detail: { update, rateLimits } }));
      return updated;
    });
    if (!row) return undefined;
    this.forgetKeyHash(row.hash);
    void this.invalidations?.announce({ type: "invalidate-key", keyHash: row.hash });
    return toKeyInfo(row);
  }

  /** Resolves a presented key to its tenant; cached so the job path does not touch Postgres. */
  async authenticate(key: string): Promise<Principal | undefined> {
    // Not a key we could have issued: refused without hashing, caching or a query.
    if (!KEY_SHAPE.test(key)) return undefined;
    const hash = hashKey(key);
    // These Map look-ups compare digests, not keys, in variable time. That leaks nothing useful: an
    // attacker cannot steer the bytes of SHA-256(key), and even a digest learnt in full does not
    // give back a 192-bit random key. The same holds for Postgres' index look-up by hash below.
    const hit = this.known.get(hash);
    if (hit) return hit;
    if (this.unknown.get(hash)) return undefined;
    let lookup = this.inFlight.get(hash);
    if (!lookup) {
      lookup = this.lookUp(hash).finally(() => {
        if (this.inFlight.get(hash) === lookup) this.inFlight.delete(hash);
      });
      this.inFlight.set(hash, lookup);
    }
    return lookup;
  }

  private async lookUp(hash: string): Promise<Principal | undefined> {
    const generation = this.generation;
    let rows: unknown[];
    try {
      rows = await this.db
        .select({ tenantId: apiKeys.tenantId, keyId: apiKeys.id, scope: apiKeys.scope, hash: apiKeys.hash, rateLimits: apiKeys.rateLimits })
        .from(apiKeys)
        .where(and(eq(apiKeys.hash, hash), isNull(apiKeys.revokedAt)));
    } catch (err) {
      // Postgres away: a key known recently still works (a revocation deletes it from the cache at once).
      const stale = isBackendUnavailable(err) ? this.known.getStale(hash, STALE_IF_ERROR_MS) : undefined;
      if (stale) return stale;
      throw err;
    }
    const parsed = keyRow.safeParse(rows[0]);
    // Postgres matched by hash already; the check in memory is constant-time, and makes sure the row
    // is the presented key's whatever the query matched on.
    const row = parsed.success && timingSafeEqual(Buffer.from(parsed.data.hash, "hex"), Buffer.from(hash, "hex")) ? parsed.data : undefined;
    // Revoked while we asked: answer this request as Postgres did, but remember nothing.
    const principalOf = (r: z.infer<typeof keyRow>): Principal => ({ tenantId: r.tenantId, keyId: r.keyId, scope: r.scope, ...(hasRates(r.rateLimits) && { rates: r.rateLimits }) });
    if (generation !== this.generation) return row && principalOf(row);
    if (!row) {
      this.unknown.set(hash, true);
      return undefined;
    }
    const principal = principalOf(row);
    this.known.set(hash, principal);
    return principal;
  }

  /** Drops a cached key (on a revocation here or announced by another replica). */
  forgetKeyHash(hash: string): void {
    this.generation++;
    this.known.delete(hash);
    this.inFlight.delete(hash);
  }
}

function toKeyInfo(row: typeof apiKeys.$inferSelect): KeyInfo {
  return {
    id: row.id,
    name: row.name,
    prefix: row.displayPrefix,
    scope: row.scope,
    rateLimits: storedRateLimits.catch({}).parse(row.rateLimits),
    createdAt: row.createdAt.toISOString(),
    revokedAt: row.revokedAt?.toISOString() ?? null,
  };
}
