import { and, eq, isNull, lt } from "drizzle-orm";
import type { Db } from "../core/db/client.ts";
import { endpoints, workerSessions } from "../core/db/schema.ts";
import { scalerType, storedEngineSpec, type StoredEngineSpec } from "../core/contracts/endpoint.ts";
import type { ScalingConfig } from "../core/policy/scaling.ts";
import { specHash } from "../core/policy/rolling.ts";

/** What the scheduler needs of an endpoint, checked: the engine comes from a JSON column. */
export interface SchedulableEndpoint {
  id: string;
  tenantId: string;
  /** The endpoint's GPU types, most preferred first; a worker's session is billed at the type it got. */
  gpuTypeIds: string[];
  /** As stored: secrets sealed, opened only to start a worker (scheduler/worker-secrets.ts). */
  engine: StoredEngineSpec;
  executionTimeoutMs: number;
  scaling: ScalingConfig;
  /** Its revision (`updatedAt`, ms): any change moves it (and closes the start breaker). */
  revision: number;
  /** Hash of its engine spec as stored (core/policy/rolling.ts): workers of another hash are replaced. */
  specHash: string;
  maxFailedStarts: number;
  /** Scale-down pauses workers (snapshot pool) where the provider can. */
  flashboot: boolean;
}

type EndpointRow = typeof endpoints.$inferSelect;

/** A row the schemas reject is reported by id and left unscheduled; it never stops the loop. */
export type ParsedEndpoint = { ok: true; endpoint: SchedulableEndpoint } | { ok: false; id: string; reason: string };

export function parseEndpointRow(row: EndpointRow): ParsedEndpoint {
  const engine = storedEngineSpec.safeParse(row.engine);
  if (!engine.success) return { ok: false, id: row.id, reason: `engine: ${engine.error.issues[0]?.message ?? "invalid"}` };
  const scaler = scalerType.safeParse(row.scalerType);
  if (!scaler.success) return { ok: false, id: row.id, reason: `scalerType: ${row.scalerType}` };
  return {
    ok: true,
    endpoint: {
      id: row.id,
      tenantId: row.tenantId,
      gpuTypeIds: Array.isArray(row.gpuTypeIds) ? row.gpuTypeIds.filter((g): g is string => typeof g === "string") : [],
      engine: engine.data,
      executionTimeoutMs: row.executionTimeoutMs,
      revision: row.updatedAt.getTime(),
      specHash: specHash(engine.data),
      maxFailedStarts: row.maxFailedStarts,
      scaling: {
        workersMin: row.workersMin,
        workersMax: row.workersMax,
        idleTimeout: row.idleTimeout,
        scalerType: scaler.data,
        scalerValue: row.scalerValue,
        workersStandby: row.workersStandby,
      },
      flashboot: row.flashboot,
    },
  };
}

/** Every endpoint not deleted, read fresh each tick so setting changes apply within one tick. */
export async function loadLiveEndpoints(db: Db): Promise<ParsedEndpoint[]> {
  const rows = await db.select().from(endpoints).where(isNull(endpoints.deletedAt));
  return rows.map(parseEndpointRow);
}

/** One live endpoint, or undefined when it does not exist or is deleted. */
export async function loadLiveEndpoint(db: Db, id: string): Promise<ParsedEndpoint | undefined> {
  const [row] = await db
    .select()
    .from(endpoints)
    .where(and(eq(endpoints.id, id), isNull(endpoints.deletedAt)))
    .limit(1);
  return row ? parseEndpointRow(row) : undefined;
}

/** Worker sessions the records show open whose last logged change is older than `before` (ms epoch). */
export async function loadOpenSessions(db: Db, before: number): Promise<{ id: string; endpointId: string }[]> {
  return db
    .select({ id: workerSessions.id, endpointId: workerSessions.endpointId })
    .from(workerSessions)
    .where(and(isNull(workerSessions.endedAt), lt(workerSessions.seqMs, before)));
}
