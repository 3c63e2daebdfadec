import { createHash } from "node:crypto";
import { and, eq, isNull } from "drizzle-orm";
import type { Db } from "../../../core/db/client.ts";
import { apiKeys, tenants } from "../../../core/db/schema.ts";
import { newApiKey, newKeyId, newTenantId } from "../../../core/ids/random-id.ts";
import { TtlCache } from "./ttl-cache.ts";
import { isBackendUnavailable } from "../backend-unavailable.ts";
import { STALE_IF_ERROR_MS } from "./endpoint-store.ts";

export interface Principal {
  tenantId: string;
  keyId: string;
}

export interface KeyInfo {
  id: string;
  name: string;
  /** The first characters of the key, to tell keys apart. */
  prefix: string;
  createdAt: string;
  revokedAt: string | null;
}

export const hashKey = (key: string) => createHash("sha256").update(key).digest("hex");

export interface TenantStoreOptions {
  db: Db;
  /** How long a resolved key is trusted without asking Postgres (ms). Revocation also invalidates at once. Default 60000. */
  keyCacheMs?: number;
}

/** Tenants and their API keys. Keys are stored only as SHA-256 hashes; the plaintext is returned once, by the create call. */
export class TenantStore {
  private readonly db: Db;
  /** Keyed by the presented key itself, so a hit costs no hashing; `hashes` maps back for invalidation by hash. */
  private readonly cache: TtlCache<Principal & { hash: string }>;
  private readonly hashes = new Map<string, string>();

  constructor(options: TenantStoreOptions) {
    this.db = options.db;
    this.cache = new TtlCache(options.keyCacheMs ?? 60_000);
  }

  async createTenant(name: string): Promise<{ id: string; name: string; apiKey: string }> {
    const id = newTenantId();
    await this.db.insert(tenants).values({ id, name });
    const key = await this.createKey(id, "default");
    return { id, name, apiKey: key.key };
  }

  async createKey(tenantId: string, name: string): Promise<KeyInfo & { key: string }> {
    const key = newApiKey();
    const [row] = await this.db
      .insert(apiKeys)
      .values({ id: newKeyId(), tenantId, name, displayPrefix: key.slice(0, 10), hash: hashKey(key) })
      .returning();
    return { ...toKeyInfo(row!), key };
  }

  async listKeys(tenantId: string): Promise<KeyInfo[]> {
    const rows = await this.db.select().from(apiKeys).where(eq(apiKeys.tenantId, tenantId)).orderBy(apiKeys.createdAt);
    return rows.map(toKeyInfo);
  }

  /** Revokes one of the tenant's keys; returns its hash (to invalidate other replicas' caches) or undefined if not the tenant's. */
  async revokeKey(tenantId: string, keyId: string): Promise<string | undefined> {
    const [row] = await this.db
      .update(apiKeys)
      .set({ revokedAt: new Date() })
      .where(and(eq(apiKeys.id, keyId), eq(apiKeys.tenantId, tenantId), isNull(apiKeys.revokedAt)))
      .returning({ hash: apiKeys.hash });
    if (row) this.forgetKeyHash(row.hash);
    return row?.hash;
  }

  /** Resolves a presented key to its tenant; cached so the job path does not touch Postgres. */
  async authenticate(key: string): Promise<Principal | undefined> {
    const hit = this.cache.get(key);
    if (hit) return hit;
    const hash = hashKey(key);
    let row: Principal | undefined;
    try {
      [row] = await this.db
        .select({ tenantId: apiKeys.tenantId, keyId: apiKeys.id })
        .from(apiKeys)
        .where(and(eq(apiKeys.hash, hash), isNull(apiKeys.revokedAt)));
    } catch (err) {
      // Postgres away: a key known recently still works (a revocation deletes it from the cache at once).
      const stale = isBackendUnavailable(err) ? this.cache.getStale(key, STALE_IF_ERROR_MS) : undefined;
      if (stale) return { tenantId: stale.tenantId, keyId: stale.keyId };
      throw err;
    }
    if (!row) return undefined;
    // The reverse map has no TTL of its own: start both afresh rather than let it grow.
    if (this.hashes.size >= 10_000) {
      this.hashes.clear();
      this.cache.clear();
    }
    this.cache.set(key, { ...row, hash });
    this.hashes.set(hash, key);
    return row;
  }

  /** Drops a cached key (on a revocation announced by another replica). */
  forgetKeyHash(hash: string): void {
    const key = this.hashes.get(hash);
    if (key === undefined) return;
    this.hashes.delete(hash);
    this.cache.delete(key);
  }
}

function toKeyInfo(row: typeof apiKeys.$inferSelect): KeyInfo {
  return {
    id: row.id,
    name: row.name,
    prefix: row.displayPrefix,
    createdAt: row.createdAt.toISOString(),
    revokedAt: row.revokedAt?.toISOString() ?? null,
  };
}
