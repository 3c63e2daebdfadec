import type { TransactionSql } from "postgres";
import { parseStreamId, type LogEntry } from "../../core/log/log-entry.ts";
import { toPgText } from "../../core/db/pg-text.ts";
import type { EntryContext } from "./log-consumer.ts";
import { resultColumns, type FinishColumns } from "./job-columns.ts";

type JobEntry = Extract<LogEntry, { kind: "accepted" | "added" | "active" | "completed" | "failed" }>;

/** A job's entries in one batch, folded into one row: what the per-entry statements would leave. */
export interface FoldedJob extends Omit<FinishColumns, "status"> {
  id: string;
  tenant_id: string;
  endpoint_id: string;
  status: string;
  seq_ms: number;
  seq_n: number;
  accepted: boolean;
  sync?: boolean;
  low_priority?: boolean;
  webhook?: string | null;
  webhook_exact?: string | null;
  retries?: number;
  submitted_at?: string;
  trace_id?: string | null;
  started_at?: string;
  started_ms?: number;
  finished: boolean;
  finished_at?: string;
}

/** The life of a job that folds into one row: queued, then started, then finished (any part of it, in order). */
const FOLDABLE = /^(accepted|added)?(active)?(completed|failed)?$/;

/**
 * Splits a batch into jobs whose entries fold into one row each (the common life of a job under
 * load: accepted, started and finished, or any part of that, within one read) and the entries that
 * go one by one (worker
 * transitions, removals, retries, and any job whose entries take another shape). `storedOutputs`:
 * the object-store references of large outputs, by the entry id of their `completed` entry.
 */
export function foldJobs(entries: LogEntry[], ctx: EntryContext, storedOutputs: ReadonlyMap<string, string> = new Map()): { folded: FoldedJob[]; single: LogEntry[] } {
  const byJob = new Map<string, JobEntry[]>();
  const single: LogEntry[] = [];
  const jobIdOf = (e: LogEntry): string | undefined => {
    if (e.kind === "accepted") return e.p.jobId;
    if (e.kind === "added" || e.kind === "active" || e.kind === "completed" || e.kind === "failed") return e.jobId;
    return undefined;
  };
  // Jobs with any entry outside the foldable kinds go one by one, all their entries in order.
  const unfoldable = new Set<string>();
  for (const e of entries) {
    const id = jobIdOf(e) ?? (e.kind === "removing" || e.kind === "retried" ? e.p.jobId : e.kind === "requeued" || e.kind === "removed" ? e.jobId : undefined);
    if (id !== undefined && jobIdOf(e) === undefined) unfoldable.add(id);
  }
  for (const e of entries) {
    const id = jobIdOf(e);
    if (id === undefined || unfoldable.has(id)) continue;
    let list = byJob.get(id);
    if (!list) byJob.set(id, (list = []));
    list.push(e as JobEntry);
  }
  const folded: FoldedJob[] = [];
  const foldedIds = new Set<string>();
  for (const [id, list] of byJob) {
    if (!FOLDABLE.test(list.map((e) => e.kind).join(""))) continue;
    folded.push(fold(id, list, ctx, storedOutputs));
    foldedIds.add(id);
  }
  for (const e of entries) {
    const id = jobIdOf(e);
    if (id === undefined || !foldedIds.has(id)) single.push(e);
  }
  return { folded, single };
}

function fold(id: string, list: JobEntry[], ctx: EntryContext, storedOutputs: ReadonlyMap<string, string>): FoldedJob {
  const last = parseStreamId(list[list.length - 1]!.id);
  const row: FoldedJob = { id, tenant_id: ctx.tenantId, endpoint_id: ctx.endpointId, status: "IN_QUEUE", seq_ms: last.ms, seq_n: last.n, accepted: false, finished: false };
  for (const e of list) {
    const at = new Date(parseStreamId(e.id).ms).toISOString();
    switch (e.kind) {
      case "accepted": {
        const webhook = e.p.webhook === undefined ? undefined : toPgText(e.p.webhook);
        Object.assign(row, { accepted: true, tenant_id: e.p.tenantId, sync: e.p.sync, low_priority: e.p.lowPriority, webhook: webhook?.text ?? null, webhook_exact: webhook?.exact ?? null, retries: e.p.retries, submitted_at: at, trace_id: e.p.traceId ?? null });
        break;
      }
      case "added":
        row.submitted_at = at;
        break;
      case "active":
        Object.assign(row, { status: "IN_PROGRESS", started_at: at, started_ms: parseStreamId(e.id).ms });
        break;
      case "completed":
        Object.assign(row, { ...resultColumns(e.result, storedOutputs.get(e.id)), finished: true, finished_at: at });
        break;
      case "failed": {
        const error = toPgText(e.reason);
        Object.assign(row, { status: "FAILED", error: error.text, error_exact: error.exact, finished: true, finished_at: at });
        break;
      }
    }
  }
  return row;
}

/**
 * Writes folded jobs in one statement, with the batch as one JSON text parameter cast to jsonb (sent as
 * text: postgres.js would JSON-encode a string it is told is jsonb a second time, unless drizzle has
 * replaced its serializers, as openDb's pool has; a raw pool then made every batch fail). JSON escapes keep NUL
 * and lone surrogates out of it: outputs are JSON text, other strings went through toPgText). A row
 * older than what the table holds changes nothing, and only rows that changed and finished count.
 */
export async function upsertFolded(tx: TransactionSql, rows: FoldedJob[]): Promise<void> {
  if (rows.length === 0) return;
  await tx`
    with x as (
      select * from jsonb_to_recordset(${JSON.stringify(rows)}::text::jsonb) as x(
        id text, tenant_id text, endpoint_id text, status text, seq_ms bigint, seq_n integer, accepted boolean,
        sync boolean, low_priority boolean, webhook text, webhook_exact text, retries integer, submitted_at timestamptz,
        started_at timestamptz, started_ms bigint, finished boolean, finished_at timestamptz, worker_id text, error text,
        error_exact text, execution_time_ms integer, output_json text, output_ref text, ttft_ms integer, itl_ms real,
        prompt_tokens integer, completion_tokens integer, trace_id text)
    ),
    changed as (
      insert into jobs as j (id, tenant_id, endpoint_id, status, seq_ms, seq_n, sync, low_priority, webhook, webhook_exact, retries,
                             submitted_at, started_at, delay_time_ms, finished_at, worker_id, error, error_exact, execution_time_ms,
                             output_json, output_ref, ttft_ms, itl_ms, prompt_tokens, completion_tokens, trace_id)
      select id, tenant_id, endpoint_id, status, seq_ms, seq_n, coalesce(sync, false), coalesce(low_priority, false), webhook, webhook_exact,
             coalesce(retries, 0), submitted_at, started_at,
             case when started_ms is not null and submitted_at is not null
                  then greatest(0, started_ms - (extract(epoch from submitted_at) * 1000)::bigint)::integer end,
             finished_at, worker_id, error, error_exact, execution_time_ms, output_json, output_ref, ttft_ms, itl_ms, prompt_tokens, completion_tokens, trace_id
      from x
      on conflict (id) do update set
        status = excluded.status, seq_ms = excluded.seq_ms, seq_n = excluded.seq_n,
        sync = j.sync or excluded.sync, low_priority = j.low_priority or excluded.low_priority,
        webhook = coalesce(excluded.webhook, j.webhook), webhook_exact = coalesce(excluded.webhook_exact, j.webhook_exact),
        retries = greatest(j.retries, excluded.retries),
        submitted_at = coalesce(j.submitted_at, excluded.submitted_at),
        started_at = coalesce(excluded.started_at, j.started_at),
        delay_time_ms = case when excluded.started_at is not null
          then greatest(0, (extract(epoch from excluded.started_at) * 1000)::bigint - (extract(epoch from coalesce(j.submitted_at, excluded.submitted_at)) * 1000)::bigint)::integer
          else j.delay_time_ms end,
        finished_at = coalesce(excluded.finished_at, j.finished_at),
        worker_id = coalesce(excluded.worker_id, j.worker_id), error = coalesce(excluded.error, j.error), error_exact = coalesce(excluded.error_exact, j.error_exact),
        execution_time_ms = coalesce(excluded.execution_time_ms, j.execution_time_ms),
        output_json = coalesce(excluded.output_json, j.output_json), output_ref = coalesce(excluded.output_ref, j.output_ref),
        ttft_ms = coalesce(excluded.ttft_ms, j.ttft_ms), itl_ms = coalesce(excluded.itl_ms, j.itl_ms),
        prompt_tokens = coalesce(excluded.prompt_tokens, j.prompt_tokens), completion_tokens = coalesce(excluded.completion_tokens, j.completion_tokens),
        trace_id = coalesce(j.trace_id, excluded.trace_id)
      where (j.seq_ms, j.seq_n) < (excluded.seq_ms, excluded.seq_n)
      returning j.id, j.endpoint_id, j.status
    )
    insert into endpoint_job_counts (endpoint_id, status, count)
    select c.endpoint_id, c.status, count(*) from changed c join x on x.id = c.id where x.finished group by c.endpoint_id, c.status
    on conflict (endpoint_id, status) do update set count = endpoint_job_counts.count + excluded.count`;
}
