import { sql } from "drizzle-orm";
import type { Db } from "./client.ts";
import { jobs } from "./schema.ts";

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
    private readonly db: Db,
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
    this.flushing = upsertJobRecords(this.db, batch)
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

/**
 * One upsert for the whole batch. Each column keeps the row's value when the write has none
 * (NULL in `excluded` for "not given" is distinguished by the `given` flags below), and a write
 * older than the row's `status_at` changes nothing but fills columns the row lacks.
 */
export async function upsertJobRecords(db: Db, writes: JobRecordWrite[]): Promise<void> {
  if (writes.length === 0) return;
  const rows = writes.map((w) => {
    const out = inlineOutput(w.output);
    return {
      id: w.id,
      tenantId: w.tenantId,
      endpointId: w.endpointId,
      status: w.status,
      statusAt: w.statusAt,
      sync: w.sync ?? false,
      lowPriority: w.lowPriority ?? false,
      webhook: w.webhook ?? null,
      submittedAt: w.submittedAt ?? null,
      startedAt: w.startedAt ?? null,
      finishedAt: w.finishedAt ?? null,
      delayTimeMs: w.delayTimeMs ?? null,
      executionTimeMs: w.executionTimeMs ?? null,
      workerId: w.workerId ?? null,
      retries: w.retries ?? 0,
      error: w.error ?? null,
      output: out?.output ?? null,
      outputRef: out?.outputRef ?? null,
    };
  });
  const newer = sql`excluded.status_at >= ${jobs.statusAt}`;
  // For the newest write: its value when given, else the row's. For an older write: the row's, else its own.
  const pick = (col: string) =>
    sql.raw(`case when excluded.status_at >= jobs.status_at then coalesce(excluded.${col}, jobs.${col}) else coalesce(jobs.${col}, excluded.${col}) end`);
  await db
    .insert(jobs)
    .values(rows)
    .onConflictDoUpdate({
      target: jobs.id,
      set: {
        status: sql`case when ${newer} then excluded.status else ${jobs.status} end`,
        statusAt: sql`greatest(excluded.status_at, ${jobs.statusAt})`,
        sync: sql`${jobs.sync} or excluded.sync`,
        lowPriority: sql`${jobs.lowPriority} or excluded.low_priority`,
        webhook: pick("webhook"),
        submittedAt: pick("submitted_at"),
        startedAt: pick("started_at"),
        finishedAt: pick("finished_at"),
        delayTimeMs: pick("delay_time_ms"),
        executionTimeMs: pick("execution_time_ms"),
        workerId: pick("worker_id"),
        retries: sql`greatest(excluded.retries, ${jobs.retries})`,
        error: pick("error"),
        output: pick("output"),
        outputRef: pick("output_ref"),
      },
    });
}
