import { and, eq, isNull } from "drizzle-orm";
import type { Db } from "../../../core/db/client.ts";
import { endpoints } from "../../../core/db/schema.ts";
import type { Endpoint, EndpointCreate, EndpointPatch } from "../../../core/contracts/endpoint.ts";
import { newEndpointId } from "../../../core/ids/random-id.ts";
import { TtlCache } from "./ttl-cache.ts";
import { isBackendUnavailable } from "../backend-unavailable.ts";

/** How long past its TTL a cached endpoint is still served while Postgres is unreachable (ms). */
export const STALE_IF_ERROR_MS = 15 * 60_000;

export interface EndpointStoreOptions {
  db: Db;
  /** How long a looked-up endpoint is served from memory (ms); updates here or announced by other replicas invalidate it. Default 30000. */
  cacheMs?: number;
}

/** Endpoints in Postgres, with a read cache for the job path. Deleted endpoints are invisible. */
export class EndpointStore {
  private readonly db: Db;
  private readonly cache: TtlCache<Endpoint>;

  constructor(options: EndpointStoreOptions) {
    this.db = options.db;
    this.cache = new TtlCache(options.cacheMs ?? 30_000);
  }

  async create(tenantId: string, input: EndpointCreate): Promise<Endpoint> {
    const [row] = await this.db
      .insert(endpoints)
      .values({ id: newEndpointId(), tenantId, ...input })
      .returning();
    return toEndpoint(row!);
  }

  async list(tenantId: string): Promise<Endpoint[]> {
    const rows = await this.db
      .select()
      .from(endpoints)
      .where(and(eq(endpoints.tenantId, tenantId), isNull(endpoints.deletedAt)))
      .orderBy(endpoints.createdAt);
    return rows.map(toEndpoint);
  }

  /** The endpoint if it exists and belongs to `tenantId`; otherwise undefined (callers answer 404 either way). */
  async getOwned(tenantId: string, id: string, options: { includeDeleted?: boolean } = {}): Promise<Endpoint | undefined> {
    const ep = options.includeDeleted ? await this.getEvenDeleted(id) : await this.get(id);
    return ep && ep.tenantId === tenantId ? ep : undefined;
  }

  /** An endpoint whether deleted or not (history reads); never cached. */
  private async getEvenDeleted(id: string): Promise<Endpoint | undefined> {
    const [row] = await this.db.select().from(endpoints).where(eq(endpoints.id, id));
    return row ? toEndpoint(row) : undefined;
  }

  async get(id: string): Promise<Endpoint | undefined> {
    const hit = this.cache.get(id);
    if (hit) return hit;
    const [row] = await this.db
      .select()
      .from(endpoints)
      .where(and(eq(endpoints.id, id), isNull(endpoints.deletedAt)))
      .catch((err: unknown) => {
        // Postgres away: the job path goes on with what it knew (jobs need Redis, not Postgres).
        const stale = isBackendUnavailable(err) ? this.cache.getStale(id, STALE_IF_ERROR_MS) : undefined;
        if (stale) return [{ stale }] as const;
        throw err;
      });
    if (row && "stale" in row) return row.stale;
    if (!row) return undefined;
    const ep = toEndpoint(row);
    this.cache.set(id, ep);
    return ep;
  }

  async update(tenantId: string, id: string, patch: EndpointPatch): Promise<Endpoint | undefined> {
    const [row] = await this.db
      .update(endpoints)
      .set({ ...patch, updatedAt: new Date() })
      .where(and(eq(endpoints.id, id), eq(endpoints.tenantId, tenantId), isNull(endpoints.deletedAt)))
      .returning();
    this.cache.delete(id);
    return row ? toEndpoint(row) : undefined;
  }

  async softDelete(tenantId: string, id: string): Promise<boolean> {
    const rows = await this.db
      .update(endpoints)
      .set({ deletedAt: new Date() })
      .where(and(eq(endpoints.id, id), eq(endpoints.tenantId, tenantId), isNull(endpoints.deletedAt)))
      .returning({ id: endpoints.id });
    this.cache.delete(id);
    return rows.length > 0;
  }

  forget(id: string): void {
    this.cache.delete(id);
  }
}

export function toEndpoint(row: typeof endpoints.$inferSelect): Endpoint {
  return {
    id: row.id,
    tenantId: row.tenantId,
    name: row.name,
    engine: row.engine,
    gpuTypeIds: row.gpuTypeIds,
    workersMin: row.workersMin,
    workersMax: row.workersMax,
    idleTimeout: row.idleTimeout,
    scalerType: row.scalerType,
    scalerValue: row.scalerValue,
    executionTimeoutMs: row.executionTimeoutMs,
    flashboot: row.flashboot,
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
  };
}
