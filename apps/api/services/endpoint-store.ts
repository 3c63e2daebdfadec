import { and, eq, isNull } from "drizzle-orm";
import type { Db } from "../../../core/db/client.ts";
import { auditLog, endpoints } from "../../../core/db/schema.ts";
import { auditRow, type AuditBy, type AuditWhat } from "../../../core/db/audit-writes.ts";
import { modelIdentity } from "../../../core/engine/model-identity.ts";
import { storedEngineSpec, type Endpoint, type EndpointCreate, type EndpointPatch, type EngineSpec, type StoredEngineSpec } from "../../../core/contracts/endpoint.ts";
import { guardrails, type Guardrails } from "../../../core/contracts/guardrails.ts";
import { sealEngine, viewEngine } from "../../../core/secrets/endpoint-secrets.ts";
import type { SecretBox } from "../../../core/secrets/secret-box.ts";
import { ApiError } from "../api-error.ts";
import { newEndpointId } from "../../../core/ids/random-id.ts";
import { TtlCache } from "./ttl-cache.ts";
import { isBackendUnavailable } from "../backend-unavailable.ts";

/** How long past its TTL a cached endpoint is still served while Postgres is unreachable (ms). */
export const STALE_IF_ERROR_MS = 15 * 60_000;

export interface EndpointStoreOptions {
  db: Db;
  /** How long a looked-up endpoint is served from memory (ms); updates here or announced by other replicas invalidate it. Default 30000. */
  cacheMs?: number;
  /** Seals the engine's secret values before they are stored. Absent: an engine with secrets is refused (400 `secrets_unavailable`). */
  secrets?: SecretBox;
}

/** Endpoints in Postgres, with a read cache for the job path. Deleted endpoints are invisible. */
export class EndpointStore {
  private readonly db: Db;
  private readonly cache: TtlCache<Endpoint>;
  private readonly secrets: SecretBox | undefined;

  constructor(options: EndpointStoreOptions) {
    this.db = options.db;
    this.secrets = options.secrets;
    this.cache = new TtlCache(options.cacheMs ?? 30_000);
  }

  async create(tenantId: string, input: EndpointCreate, by: AuditBy): Promise<Endpoint> {
    // The id first: each sealed value is bound to its endpoint.
    const id = newEndpointId();
    const engine = this.seal(input.engine, id, undefined);
    const row = await this.db.transaction(async (tx) => {
      const [inserted] = await tx.insert(endpoints).values({ id, tenantId, ...input, engine }).returning();
      await tx.insert(auditLog).values(auditRow(by, endpointAudit("endpoint.create", inserted!, { name: input.name })));
      return inserted!;
    });
    return toEndpoint(row);
  }

  async list(tenantId: string): Promise<Endpoint[]> {
    const rows = await this.db
      .select()
      .from(endpoints)
      .where(and(eq(endpoints.tenantId, tenantId), isNull(endpoints.deletedAt)))
      .orderBy(endpoints.createdAt);
    return rows.map(toEndpoint);
  }

  /** Ids of live endpoints, every tenant's, at most `limit` (the metrics scrape). */
  async liveIds(limit: number): Promise<string[]> {
    const rows = await this.db.select({ id: endpoints.id }).from(endpoints).where(isNull(endpoints.deletedAt)).orderBy(endpoints.id).limit(limit);
    return rows.map((r) => r.id);
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

  async update(tenantId: string, id: string, patch: EndpointPatch, by: AuditBy): Promise<Endpoint | undefined> {
    const owned = and(eq(endpoints.id, id), eq(endpoints.tenantId, tenantId), isNull(endpoints.deletedAt));
    const { engine: requested, ...settings } = patch;
    const row = await this.db.transaction(async (tx) => {
      let engine: StoredEngineSpec | undefined;
      if (requested !== undefined) {
        // A new engine may keep secrets of the stored one (`{"secret": true}`): read it under a row lock.
        const [current] = await tx.select({ engine: endpoints.engine }).from(endpoints).where(owned).for("update");
        if (current === undefined) return undefined;
        engine = this.seal(requested, id, parseStoredEngine(current.engine, id));
      }
      const [updated] = await tx
        .update(endpoints)
        .set({ ...settings, ...(engine !== undefined && { engine }), updatedAt: new Date() })
        .where(owned)
        .returning();
      // Which fields changed, with the settings' new values; of an engine only its kind and profile (its env may hold secrets).
      if (updated) await tx.insert(auditLog).values(auditRow(by, endpointAudit("endpoint.update", updated, { changed: Object.keys(patch).sort(), settings })));
      return updated;
    });
    this.cache.delete(id);
    return row ? toEndpoint(row) : undefined;
  }

  /** The engine as stored: secrets sealed for endpoint `id`; 400 naming the field when that cannot be done. */
  private seal(engine: EngineSpec, endpointId: string, current: StoredEngineSpec | undefined): StoredEngineSpec {
    const r = sealEngine(engine, { endpointId, ...(this.secrets && { box: this.secrets }), ...(current && { current }) });
    if (r.ok) return r.engine;
    const issues = r.issues.map((i) => ({ path: `engine.${i.path}`, message: i.message }));
    const code = r.issues.some((i) => i.code === "secrets_unavailable") ? "secrets_unavailable" : "invalid_request";
    throw new ApiError(400, code, `invalid request: ${issues.map((i) => `${i.path}: ${i.message}`).join("; ")}`, issues);
  }

  /** Records a start breaker reset (`POST …/reset`; the breaker itself lives in Redis). False when the endpoint is not the tenant's. */
  async recordReset(tenantId: string, id: string, by: AuditBy, detail: Record<string, unknown>): Promise<boolean> {
    const [row] = await this.db
      .select()
      .from(endpoints)
      .where(and(eq(endpoints.id, id), eq(endpoints.tenantId, tenantId), isNull(endpoints.deletedAt)));
    if (!row) return false;
    await this.db.insert(auditLog).values(auditRow(by, endpointAudit("endpoint.reset", row, detail)));
    return true;
  }

  async softDelete(tenantId: string, id: string, by: AuditBy): Promise<boolean> {
    const deleted = await this.db.transaction(async (tx) => {
      const [row] = await tx
        .update(endpoints)
        .set({ deletedAt: new Date() })
        .where(and(eq(endpoints.id, id), eq(endpoints.tenantId, tenantId), isNull(endpoints.deletedAt)))
        .returning();
      if (row) await tx.insert(auditLog).values(auditRow(by, endpointAudit("endpoint.delete", row, {})));
      return row !== undefined;
    });
    this.cache.delete(id);
    return deleted;
  }

  forget(id: string): void {
    this.cache.delete(id);
  }
}

/**
 * An endpoint change's audit entry: its model as it is after the change, its engine's kind and
 * profile (never its env or credentials), and its revision (`updated_at` in ms), by which the
 * control plane names the model of jobs submitted under this revision.
 */
function endpointAudit(action: AuditWhat["action"], row: typeof endpoints.$inferSelect, detail: Record<string, unknown>): AuditWhat {
  const engine = row.engine as { kind: string; profile?: unknown; model?: unknown; servedModelName?: unknown };
  return {
    action,
    tenantId: row.tenantId,
    endpointId: row.id,
    targetId: row.id,
    model: modelIdentity(engine),
    detail: { ...detail, engine: { kind: engine.kind, ...(typeof engine.profile === "string" && { profile: engine.profile }) }, revision: row.updatedAt.getTime() },
  };
}

export function toEndpoint(row: typeof endpoints.$inferSelect): Endpoint {
  return {
    id: row.id,
    tenantId: row.tenantId,
    name: row.name,
    // Whatever the row holds, a response shows no secret value.
    engine: viewEngine(parseStoredEngine(row.engine, row.id)),
    gpuTypeIds: row.gpuTypeIds,
    workersMin: row.workersMin,
    workersMax: row.workersMax,
    idleTimeout: row.idleTimeout,
    scalerType: row.scalerType,
    scalerValue: row.scalerValue,
    executionTimeoutMs: row.executionTimeoutMs,
    flashboot: row.flashboot,
    maxFailedStarts: row.maxFailedStarts,
    workersStandby: row.workersStandby,
    ...parseStoredGuardrails(row.guardrails, row.id),
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
  };
}

/** The guardrails column, checked like the engine's: null is none, a row that does not parse is an error (500). */
function parseStoredGuardrails(value: unknown, id: string): { guardrails?: Guardrails } {
  if (value === null || value === undefined) return {};
  const r = guardrails.safeParse(value);
  if (!r.success) throw new Error(`endpoint ${id}: stored guardrails do not parse (${r.error.issues[0]?.path.join(".")}: ${r.error.issues[0]?.message})`);
  return { guardrails: r.data };
}

/** The engine column, checked: a row that does not parse is an error (500), never passed on as it is. */
function parseStoredEngine(value: unknown, id: string): StoredEngineSpec {
  const r = storedEngineSpec.safeParse(value);
  if (!r.success) throw new Error(`endpoint ${id}: stored engine does not parse (${r.error.issues[0]?.path.join(".")}: ${r.error.issues[0]?.message})`);
  return r.data;
}
