import type { Sql } from "postgres";

/** One write to a job's durable record; fields left undefined keep what the row has. */
export interface JobRecordWrite {
  id: string;
  tenantId: string;
  endpointId: string;
  status: string;
  /** ms epoch of the change; older writes never overwrite newer ones. */
  statusAt: number;
  sync?: boolean;
  lowPriority?: boolean;
  webhook?: string | null;
  submittedAt?: Date;
  startedAt?: Date | null;
  finishedAt?: Date | null;
  delayTimeMs?: number | null;
  executionTimeMs?: number | null;
  workerId?: string | null;
  retries?: number;
  error?: string | null;
  output?: unknown;
  outputRef?: string | null;
  ttftMs?: number | null;
  itlMs?: number | null;
  promptTokens?: number | null;
  completionTokens?: number | null;
}

/** Outputs larger than this (as JSON) are not copied into Postgres; Redis keeps them for their retention. */
export const MAX_INLINE_OUTPUT_BYTES = 256 * 1024;

export interface JobRecordBufferOptions {
  /** Flush when this many writes are pending. Default 500. */
  maxBatch?: number;
  /** Flush at least this often (ms). Default 200. */
  flushIntervalMs?: number;
  /** Called when a flush fails; the writes are kept and retried on the next flush. */
  onError?: (err: unknown) => void;
}

/**
 * Writes job records behind the hot path: `push` only appends to memory; a timer (or a full
 * batch) upserts them in one statement. `close()` flushes what is left, so a clean shutdown loses
 * no accepted job. Writes for the same id in one batch are merged, newest last.
 */
export class JobRecordBuffer {
  private pending = new Map<string, JobRecordWrite>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private readonly maxBatch: number;
  private readonly onError: (err: unknown) => void;

  constructor(
    private readonly sql: Sql,
    options: JobRecordBufferOptions = {},
  ) {
    this.maxBatch = options.maxBatch ?? 500;
    this.onError = options.onError ?? ((err) => console.error("job record flush failed:", err));
    this.timer = setInterval(() => void this.flush(), options.flushIntervalMs ?? 200);
    this.timer.unref();
  }

  push(write: JobRecordWrite): void {
    const prev = this.pending.get(write.id);
    // Merge so the newer write wins field by field and the older one only fills gaps.
    const merged =
      prev === undefined
        ? write
        : prev.statusAt > write.statusAt
          ? ({ ...definedOnly(write), ...definedOnly(prev) } as JobRecordWrite)
          : ({ ...prev, ...definedOnly(write) } as JobRecordWrite);
    this.pending.set(write.id, merged);
    if (this.pending.size >= this.maxBatch) void this.flush();
  }

  /** Writes everything pending now; concurrent calls share one flush at a time. */
  async flush(): Promise<void> {
    while (this.flushing) await this.flushing;
    if (this.pending.size === 0) return;
    const batch = [...this.pending.values()];
    this.pending = new Map();
    this.flushing = upsertJobRecords(this.sql, batch)
      .catch((err) => {
        // Keep them for the next attempt, without overwriting anything newer pushed meanwhile.
        for (const w of batch) if (!this.pending.has(w.id)) this.pending.set(w.id, w);
        this.onError(err);
      })
      .finally(() => {
        this.flushing = undefined;
      });
    await this.flushing;
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.flush();
    if (this.pending.size > 0) await this.flush(); // one retry for a flush that failed just now
  }
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function inlineOutput(output: unknown): { output: unknown; outputRef: string | null } | undefined {
  if (output === undefined) return undefined;
  const json = JSON.stringify(output);
  if (json === undefined) return undefined;
  if (Buffer.byteLength(json) <= MAX_INLINE_OUTPUT_BYTES) return { output, outputRef: null };
  return { output: null, outputRef: "redis" };
}

/** Columns of the upsert, as `jsonb_to_recordset` reads them from the batch. */
const COLUMNS = [
  ["id", "text"],
  ["tenant_id", "text"],
  ["endpoint_id", "text"],
  ["status", "text"],
  ["status_at", "bigint"],
  ["sync", "boolean"],
  ["low_priority", "boolean"],
  ["webhook", "text"],
  ["submitted_at", "timestamptz"],
  ["started_at", "timestamptz"],
  ["finished_at", "timestamptz"],
  ["delay_time_ms", "integer"],
  ["execution_time_ms", "integer"],
  ["worker_id", "text"],
  ["retries", "integer"],
  ["error", "text"],
  ["output", "jsonb"],
  ["output_ref", "text"],
  ["ttft_ms", "integer"],
  ["itl_ms", "real"],
  ["prompt_tokens", "integer"],
  ["completion_tokens", "integer"],
] as const;

/** Columns where a newer write's value wins when given, and an older write only fills a gap. */
const PICKED = ["webhook", "submitted_at", "started_at", "finished_at", "delay_time_ms", "execution_time_ms", "worker_id", "error", "output", "output_ref", "ttft_ms", "itl_ms", "prompt_tokens", "completion_tokens"];

/*
 * One statement for the whole batch, with the batch as a single JSON parameter: building it costs
 * one JSON.stringify, whatever the batch size (a query builder's per-value work showed up as a
 * tenth of the API's CPU under load). A write older than the row's `status_at` changes nothing but
 * fills columns the row lacks.
 */
const UPSERT_SQL = `
insert into jobs (${COLUMNS.map(([c]) => c).join(", ")})
select id, tenant_id, endpoint_id, status, status_at, coalesce(sync, false), coalesce(low_priority, false),
       webhook, submitted_at, started_at, finished_at, delay_time_ms, execution_time_ms, worker_id,
       coalesce(retries, 0), error, output, output_ref, ttft_ms, itl_ms, prompt_tokens, completion_tokens
from jsonb_to_recordset($1::jsonb) as x(${COLUMNS.map(([c, t]) => `${c} ${t}`).join(", ")})
on conflict (id) do update set
  status = case when excluded.status_at >= jobs.status_at then excluded.status else jobs.status end,
  status_at = greatest(excluded.status_at, jobs.status_at),
  sync = jobs.sync or excluded.sync,
  low_priority = jobs.low_priority or excluded.low_priority,
  retries = greatest(excluded.retries, jobs.retries),
  ${PICKED.map(
    (c) => `${c} = case when excluded.status_at >= jobs.status_at then coalesce(excluded.${c}, jobs.${c}) else coalesce(jobs.${c}, excluded.${c}) end`,
  ).join(",\n  ")}`;

export async function upsertJobRecords(sql: Sql, writes: JobRecordWrite[]): Promise<void> {
  if (writes.length === 0) return;
  // Fields a write does not give are left out of the JSON (jsonb_to_recordset reads them as NULL):
  // an accepted job's record is a third of the size, for the API to build and Postgres to parse.
  const rows = writes.map((w) => {
    const out = inlineOutput(w.output);
    return {
      id: w.id,
      tenant_id: w.tenantId,
      endpoint_id: w.endpointId,
      status: w.status,
      status_at: w.statusAt,
      sync: w.sync,
      low_priority: w.lowPriority,
      webhook: w.webhook,
      submitted_at: w.submittedAt,
      started_at: w.startedAt,
      finished_at: w.finishedAt,
      delay_time_ms: w.delayTimeMs,
      execution_time_ms: w.executionTimeMs,
      worker_id: w.workerId,
      retries: w.retries,
      error: w.error,
      output: out?.output,
      output_ref: out?.outputRef,
      ttft_ms: w.ttftMs,
      itl_ms: w.itlMs,
      prompt_tokens: w.promptTokens,
      completion_tokens: w.completionTokens,
    };
  });
  await sql.unsafe(UPSERT_SQL, [JSON.stringify(rows)]);
}
