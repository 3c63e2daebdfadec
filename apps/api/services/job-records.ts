import type { Sql } from "postgres";
import { z } from "zod";
import type { StoredObject } from "../../../core/objects/object-store.ts";
import { fromPgText } from "../../../core/db/pg-text.ts";
import { coldStartReport } from "../../../core/log/log-entry.ts";

/** A stored output as the record shows it: `url` is the API's own route for it (relative to the API). */
const outputObjectRef = z
  .object({ url: z.string(), store: z.enum(["local", "s3"]), bucket: z.string().optional(), key: z.string(), bytes: z.number(), sha256: z.string() })
  .meta({ id: "OutputRef" });

/** A job's durable record as the API returns it: RunPod's field names where they exist. */
export const jobRecordView = z
  .object({
    id: z.string(),
    endpointId: z.string(),
    status: z.string(),
    delayTime: z.number().nullable(),
    executionTime: z.number().nullable(),
    workerId: z.string().nullable(),
    retries: z.number(),
    error: z.string().nullable(),
    webhook: z.string().nullable(),
    sync: z.boolean(),
    submittedAt: z.string().nullable(),
    startedAt: z.string().nullable(),
    finishedAt: z.string().nullable(),
    /** Present in a single record's view when the output was small enough to keep (256 KB). */
    output: z.unknown().optional(),
    /**
     * Where an output too large to keep inline (256 KB) is: the object store (`url` serves it with
     * the tenant's key), or `"redis"` for a record written without one (readable from `/status` for
     * its retention only).
     */
    outputRef: z.union([z.literal("redis"), outputObjectRef]).nullable(),
    promptTokens: z.number().nullable(),
    completionTokens: z.number().nullable(),
    ttftMs: z.number().nullable(),
    itlMs: z.number().nullable(),
    /**
     * µ$: the job's share of its worker session's cost, its execution rounded up to whole seconds
     * at the session's price (apps/api/services/session-costs.ts). Null until it has finished on a
     * worker, or once the session is past retention. A share explains the bill; the worker's time is charged.
     */
    costMicros: z.number().nullable(),
    /** The seconds `costMicros` prices. */
    billedSeconds: z.number().nullable(),
    /** W3C trace id of the request that submitted the job: its lines in the worker's log and its spans carry it. */
    traceId: z.string().nullable(),
  })
  .meta({ id: "JobRecord" });
export type JobRecordView = z.infer<typeof jobRecordView>;

/** A worker session with its transitions, as `GET /api/v1/endpoints/:id/workers` lists it. */
export const workerSessionView = z
  .object({
    id: z.string(),
    endpointId: z.string(),
    state: z.string(),
    provider: z.string().nullable(),
    gpuType: z.string().nullable(),
    requestedAt: z.string().nullable(),
    readyAt: z.string().nullable(),
    endedAt: z.string().nullable(),
    exitCode: z.number().nullable(),
    endReason: z.string().nullable(),
    /** The engine spec hash it ran: after a PATCH of the engine, workers of the old hash are replaced. */
    specHash: z.string().nullable(),
    /**
     * Its cold start: `kind` (cold, cache-warm, resumed, warm) and each phase in ms (`provisionMs`,
     * `processStartMs`, `weightsFetchMs` or `cacheHit`, `engineLoadMs`, `firstJobMs`), each measured on
     * one process's monotonic clock. Null until it was ready.
     */
    coldStart: coldStartReport.nullable(),
    transitions: z.array(z.object({ state: z.string(), at: z.string(), reason: z.string().nullable(), exitCode: z.number().nullable() })),
  })
  .meta({ id: "WorkerSession" });
export type WorkerSessionView = z.infer<typeof workerSessionView>;

const jobRow = z.object({
  id: z.string(),
  endpoint_id: z.string(),
  status: z.string(),
  delay_time_ms: z.number().nullable(),
  execution_time_ms: z.number().nullable(),
  worker_id: z.string().nullable(),
  retries: z.number(),
  error: z.string().nullable(),
  error_exact: z.string().nullable(),
  webhook: z.string().nullable(),
  webhook_exact: z.string().nullable(),
  sync: z.boolean(),
  submitted_at: z.coerce.date().nullable(),
  started_at: z.coerce.date().nullable(),
  finished_at: z.coerce.date().nullable(),
  output_json: z.string().nullable().optional(),
  output_ref: z.string().nullable(),
  prompt_tokens: z.number().nullable(),
  completion_tokens: z.number().nullable(),
  ttft_ms: z.number().nullable(),
  itl_ms: z.number().nullable(),
  trace_id: z.string().nullable(),
});

const sessionRow = z.object({
  id: z.string(),
  endpoint_id: z.string(),
  state: z.string(),
  provider: z.string().nullable(),
  gpu_type: z.string().nullable(),
  requested_at: z.coerce.date().nullable(),
  ready_at: z.coerce.date().nullable(),
  ended_at: z.coerce.date().nullable(),
  exit_code: z.number().nullable(),
  end_reason: z.string().nullable(),
  spec_hash: z.string().nullable(),
  // A damaged value reads as none: it must not hide the session.
  cold_start: coldStartReport.nullable().catch(null),
});
const transitionRow = z.object({ worker_id: z.string(), state: z.string(), at: z.coerce.date(), reason: z.string().nullable(), exit_code: z.number().nullable() });

export interface JobListQuery {
  tenantId: string;
  endpointId?: string;
  status?: string;
  from?: Date;
  to?: Date;
  cursor?: string;
  limit: number;
}

/** An opaque position in the newest-first listing: the last item's submission time and id. */
// Bounded to dates Postgres and `Date#toISOString` both take (a forged `t` of 1e300 was a 500), and to ids Hearth issues.
const listCursor = z.object({ t: z.number().int().min(0).max(8.64e15), id: z.string().max(128).regex(/^[\x21-\x7e]*$/) });
export function encodeCursor(c: z.infer<typeof listCursor>): string {
  return Buffer.from(JSON.stringify(c)).toString("base64url");
}
export function decodeCursor(s: string): z.infer<typeof listCursor> | undefined {
  try {
    const r = listCursor.safeParse(JSON.parse(Buffer.from(s, "base64url").toString("utf8")));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}

const COLUMNS = `id, endpoint_id, status, delay_time_ms, execution_time_ms, worker_id, retries, error, error_exact, webhook, webhook_exact, sync,
  submitted_at, started_at, finished_at, output_ref, prompt_tokens, completion_tokens, ttft_ms, itl_ms, trace_id`;

/**
 * Reads of the durable records projected from the log (jobs after their Redis retention, worker
 * sessions): the only place the API reads them. Every row is checked with zod on the way out.
 */
export class JobRecords {
  constructor(private readonly sql: Sql) {}

  /** A tenant's jobs, newest first; `nextCursor` is null on the last page. */
  async list(q: JobListQuery): Promise<{ items: JobRecordView[]; nextCursor: string | null }> {
    const { sql } = this;
    const after = q.cursor === undefined ? undefined : decodeCursor(q.cursor);
    const rows = await sql`
      select ${sql.unsafe(COLUMNS)} from jobs
      where tenant_id = ${q.tenantId}
        ${q.endpointId === undefined ? sql`` : sql`and endpoint_id = ${q.endpointId}`}
        ${q.status === undefined ? sql`` : sql`and status = ${q.status}`}
        ${q.from === undefined ? sql`` : sql`and submitted_at >= ${q.from.toISOString()}::timestamptz`}
        ${q.to === undefined ? sql`` : sql`and submitted_at < ${q.to.toISOString()}::timestamptz`}
        ${after === undefined ? sql`` : sql`and (coalesce(submitted_at, 'epoch'::timestamptz), id) < (${new Date(after.t).toISOString()}::timestamptz, ${after.id})`}
      order by coalesce(submitted_at, 'epoch'::timestamptz) desc, id desc
      limit ${q.limit + 1}`;
    const parsed = z.array(jobRow).parse(rows);
    const page = parsed.slice(0, q.limit);
    const last = page[page.length - 1];
    const nextCursor = parsed.length > q.limit && last ? encodeCursor({ t: last.submitted_at?.getTime() ?? 0, id: last.id }) : null;
    return { items: page.map(toView), nextCursor };
  }

  /** One of the tenant's jobs with its output, or undefined (→ 404) when unknown or another tenant's. */
  /** Where the object store keeps the job's large output; undefined when the job is not the tenant's or has none there. */
  async storedOutput(tenantId: string, jobId: string): Promise<StoredObject | undefined> {
    const rows = z.array(z.object({ output_ref: z.string().nullable() })).parse(await this.sql`select output_ref from jobs where id = ${jobId} and tenant_id = ${tenantId}`);
    return parseStoredRef(rows[0]?.output_ref ?? null);
  }

  async get(tenantId: string, jobId: string): Promise<JobRecordView | undefined> {
    const { sql } = this;
    const rows = await sql`select ${sql.unsafe(COLUMNS)}, output_json from jobs where id = ${jobId} and tenant_id = ${tenantId}`;
    const row = z.array(jobRow).parse(rows)[0];
    return row && toView(row);
  }

  /** An endpoint's worker sessions, newest first, each with its transitions in log order. */
  async workerSessions(endpointId: string, limit = 100): Promise<WorkerSessionView[]> {
    const { sql } = this;
    const sessions = z.array(sessionRow).parse(
      await sql`select id, endpoint_id, state, provider, gpu_type, requested_at, ready_at, ended_at, exit_code, end_reason, spec_hash, cold_start
                from worker_sessions where endpoint_id = ${endpointId}
                order by coalesce(requested_at, 'epoch'::timestamptz) desc, id desc limit ${limit}`,
    );
    const ids = sessions.map((s) => s.id);
    const transitions = ids.length === 0 ? [] : z.array(transitionRow).parse(
      await sql`select worker_id, state, at, reason, exit_code from worker_transitions where worker_id in ${sql(ids)} order by seq_ms, seq_n`,
    );
    const byWorker = new Map<string, z.infer<typeof transitionRow>[]>();
    for (const t of transitions) {
      let list = byWorker.get(t.worker_id);
      if (!list) byWorker.set(t.worker_id, (list = []));
      list.push(t);
    }
    return sessions.map((s) => ({
      id: s.id,
      endpointId: s.endpoint_id,
      state: s.state,
      provider: s.provider,
      gpuType: s.gpu_type,
      requestedAt: iso(s.requested_at),
      readyAt: iso(s.ready_at),
      endedAt: iso(s.ended_at),
      exitCode: s.exit_code,
      endReason: s.end_reason,
      specHash: s.spec_hash,
      coldStart: s.cold_start,
      transitions: (byWorker.get(s.id) ?? []).map((t) => ({ state: t.state, at: t.at.toISOString(), reason: t.reason, exitCode: t.exit_code })),
    }));
  }
}

const iso = (d: Date | null) => (d === null ? null : d.toISOString());

function toView(r: z.infer<typeof jobRow>): JobRecordView {
  const view: JobRecordView = {
    id: r.id,
    endpointId: r.endpoint_id,
    status: r.status,
    delayTime: r.delay_time_ms,
    executionTime: r.execution_time_ms,
    workerId: r.worker_id,
    retries: r.retries,
    error: fromPgText(r.error, r.error_exact),
    webhook: fromPgText(r.webhook, r.webhook_exact),
    sync: r.sync,
    submittedAt: iso(r.submitted_at),
    startedAt: iso(r.started_at),
    finishedAt: iso(r.finished_at),
    outputRef: toOutputRef(r.id, r.output_ref),
    promptTokens: r.prompt_tokens,
    completionTokens: r.completion_tokens,
    ttftMs: r.ttft_ms,
    itlMs: r.itl_ms,
    // Priced by the routes (SessionCosts), which know the price table.
    costMicros: null,
    billedSeconds: null,
    traceId: r.trace_id,
  };
  if (r.output_json !== undefined && r.output_json !== null) {
    try {
      view.output = JSON.parse(r.output_json);
    } catch {
      view.output = null; // not written by the projector: never happens, and never a 500
    }
  }
  return view;
}


const storedObject = z.object({ store: z.enum(["local", "s3"]), bucket: z.string().optional(), key: z.string(), bytes: z.number().int().min(0), sha256: z.string() });

/** The `output_ref` column read back: JSON of core/objects' StoredObject, or a legacy marker. */
function parseStoredRef(raw: string | null): StoredObject | undefined {
  if (raw === null || !raw.startsWith("{")) return undefined;
  try {
    const r = storedObject.safeParse(JSON.parse(raw));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}

function toOutputRef(jobId: string, raw: string | null): z.infer<typeof outputObjectRef> | "redis" | null {
  if (raw === null) return null;
  const stored = parseStoredRef(raw);
  return stored ? { url: `/api/v1/jobs/${encodeURIComponent(jobId)}/output`, ...stored } : "redis";
}
