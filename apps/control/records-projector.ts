import type { TransactionSql } from "postgres";
import { parseStreamId, type LogEntry } from "../../core/log/log-entry.ts";
import { toPgText } from "../../core/db/pg-text.ts";
import { FINAL_WORKER_STATES } from "../../core/contracts/worker-state.ts";
import type { EntryContext, LogConsumer } from "./log-consumer.ts";
import { foldJobs, upsertFolded } from "./job-batch.ts";
import { EMPTY_FINISH, largeOutputJson, resultColumns, type FinishColumns } from "./job-columns.ts";
import { createHash } from "node:crypto";
import type { ObjectStore } from "../../core/objects/object-store.ts";
import { errorFields, type Log } from "../../core/log/process-log.ts";
import type { ControlMetrics } from "./control-metrics.ts";
import { auditSubmissions } from "./submission-audit.ts";
import type { TokenSettler } from "./token-settler.ts";


/** Error text of a job removed from its queue, by reason (CANCELLED has none, as RunPod). */
const REMOVAL = {
  cancelled: { status: "CANCELLED", error: null },
  purged: { status: "CANCELLED", error: "purged from the queue" },
  expired: { status: "TIMED_OUT", error: "ttl expired before the job started" },
} as const;

type Tx = TransactionSql;

/**
 * Projects the log into the job records, worker sessions and per-endpoint counters in Postgres.
 * Every statement is guarded by the log position it carries (`seq_ms`, `seq_n`): an entry older
 * than what a row holds changes nothing, so a replay, or a dead letter retried later, is harmless,
 * and a counter moves only when its job's row really changed.
 */
export class RecordsProjector implements LogConsumer {
  readonly name = "records";

  /** `objects`: where outputs over 256 KB are kept (without one they stay in Redis only, for their retention). */
  /** `tokens`: settles finished jobs' token holds (apps/control/token-settler.ts) before the batch commits; a Redis failure retries the batch. */
  constructor(private readonly options: { objects?: ObjectStore; log?: Log; metrics?: ControlMetrics; tokens?: TokenSettler } = {}) {}

  /** Jobs and workers reach the metrics once their records committed: each entry observed once. */
  committed(ctx: EntryContext, entries: readonly LogEntry[]): void {
    this.options.metrics?.observeCommitted(ctx.endpointId, entries);
  }

  /**
   * A whole batch: jobs whose entries fold into one row each go in one statement (under load most
   * jobs are accepted, started and finished within one read), the rest entry by entry, in order.
   */
  async applyBatch(tx: Tx, entries: LogEntry[], ctx: EntryContext): Promise<void> {
    const stored = await this.storeLargeOutputs(entries, ctx);
    await this.options.tokens?.settle(entries);
    const { folded, single } = foldJobs(entries, ctx, stored);
    // Acceptances also reach the audit log, in this same transaction (Postgres stays off the /run path).
    await Promise.all([upsertFolded(tx, folded), ...single.map((e) => this.applyOne(tx, e, ctx, stored)), auditSubmissions(tx, entries, ctx)]);
  }

  async apply(tx: Tx, entry: LogEntry, ctx: EntryContext): Promise<void> {
    await auditSubmissions(tx, [entry], ctx);
    await this.options.tokens?.settle([entry]);
    return this.applyOne(tx, entry, ctx, await this.storeLargeOutputs([entry], ctx));
  }

  /**
   * Writes the outputs too large for Postgres to the object store (before the records that point at
   * them commit; a replay writes the same key again), returning their references by entry id. A store
   * that fails is an outage, not a bad record: the batch is retried until it is back (nothing
   * recorded without its output).
   */
  private async storeLargeOutputs(entries: LogEntry[], ctx: EntryContext): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    const { objects } = this.options;
    if (!objects) return out;
    for (const e of entries) {
      if (e.kind !== "completed") continue;
      const json = largeOutputJson(e.result);
      if (json === undefined) continue;
      const key = `outputs/${ctx.endpointId}/${createHash("sha256").update(e.jobId).digest("hex").slice(0, 32)}-${e.id}.json`;
      try {
        out.set(e.id, JSON.stringify(await objects.put(key, Buffer.from(json, "utf8"), "application/json")));
      } catch (err) {
        this.options.log?.({ level: "warn", msg: "large output not stored; retrying the batch", endpointId: ctx.endpointId, jobId: e.jobId, ...errorFields(err) });
        throw Object.assign(new Error(`object store: ${errorFields(err).error}`), { code: "EOBJECTSTORE" });
      }
    }
    return out;
  }

  private async applyOne(tx: Tx, entry: LogEntry, ctx: EntryContext, stored: ReadonlyMap<string, string>): Promise<void> {
    const { ms, n } = parseStreamId(entry.id);
    // Times go as ISO text with a cast: postgres.js cannot always infer a Date parameter's type.
    const at = new Date(ms).toISOString();
    switch (entry.kind) {
      case "accepted": {
        const p = entry.p;
        const webhook = p.webhook === undefined ? undefined : toPgText(p.webhook);
        await tx`
          insert into jobs (id, tenant_id, endpoint_id, status, seq_ms, seq_n, sync, low_priority, webhook, webhook_exact, submitted_at, retries, trace_id)
          values (${p.jobId}, ${p.tenantId}, ${ctx.endpointId}, 'IN_QUEUE', ${ms}, ${n}, ${p.sync}, ${p.lowPriority},
                  ${webhook?.text ?? null}, ${webhook?.exact ?? null}, ${at}::timestamptz, ${p.retries}, ${p.traceId ?? null})
          on conflict (id) do update set
            tenant_id = excluded.tenant_id, sync = excluded.sync, low_priority = excluded.low_priority, trace_id = coalesce(jobs.trace_id, excluded.trace_id),
            webhook = excluded.webhook, webhook_exact = excluded.webhook_exact,
            submitted_at = coalesce(jobs.submitted_at, excluded.submitted_at),
            status = case when (jobs.seq_ms, jobs.seq_n) < (excluded.seq_ms, excluded.seq_n) then excluded.status else jobs.status end,
            seq_ms = greatest(jobs.seq_ms, excluded.seq_ms),
            seq_n = case when (jobs.seq_ms, jobs.seq_n) < (excluded.seq_ms, excluded.seq_n) then excluded.seq_n else jobs.seq_n end`;
        return;
      }
      case "added":
        // A job queued without the API (or whose accepted entry was set aside) still gets a record.
        await tx`
          insert into jobs (id, tenant_id, endpoint_id, status, seq_ms, seq_n, submitted_at)
          values (${entry.jobId}, ${ctx.tenantId}, ${ctx.endpointId}, 'IN_QUEUE', ${ms}, ${n}, ${at}::timestamptz)
          on conflict (id) do nothing`;
        return;
      case "active":
        await tx`
          insert into jobs (id, tenant_id, endpoint_id, status, seq_ms, seq_n, started_at)
          values (${entry.jobId}, ${ctx.tenantId}, ${ctx.endpointId}, 'IN_PROGRESS', ${ms}, ${n}, ${at}::timestamptz)
          on conflict (id) do update set
            status = 'IN_PROGRESS', seq_ms = excluded.seq_ms, seq_n = excluded.seq_n, started_at = excluded.started_at,
            delay_time_ms = greatest(0, ${ms} - (extract(epoch from jobs.submitted_at) * 1000)::bigint)::integer
          where (jobs.seq_ms, jobs.seq_n) < (excluded.seq_ms, excluded.seq_n)`;
        return;
      case "requeued":
        await tx`
          update jobs set status = 'IN_QUEUE', seq_ms = ${ms}, seq_n = ${n}
          where id = ${entry.jobId} and (seq_ms, seq_n) < (${ms}, ${n})`;
        return;
      case "retried":
        await tx`
          update jobs set status = 'IN_QUEUE', seq_ms = ${ms}, seq_n = ${n}, retries = ${entry.p.retries},
            started_at = null, finished_at = null, delay_time_ms = null, execution_time_ms = null, worker_id = null,
            error = null, error_exact = null, output_json = null, output_ref = null, removal_reason = null,
            ttft_ms = null, itl_ms = null, prompt_tokens = null, completion_tokens = null
          where id = ${entry.p.jobId} and (seq_ms, seq_n) < (${ms}, ${n})`;
        return;
      case "removing":
        await tx`update jobs set removal_reason = ${entry.p.reason} where id = ${entry.p.jobId}`;
        return;
      case "completed":
        return this.finished(tx, entry.jobId, ms, n, ctx, resultColumns(entry.result, stored.get(entry.id)));
      case "failed": {
        const error = toPgText(entry.reason);
        return this.finished(tx, entry.jobId, ms, n, ctx, { status: "FAILED", error: error.text, error_exact: error.exact });
      }
      case "removed":
        return this.removed(tx, entry.jobId, ms, n, ctx);
      case "worker":
        return this.worker(tx, entry, ms, n, ctx);
      case "other":
        return;
    }
  }

  /** A terminal transition: the row and, only when the row really changed, the endpoint's counter. */
  private async finished(tx: Tx, jobId: string, ms: number, n: number, ctx: EntryContext, cols: FinishColumns): Promise<void> {
    const c = { ...EMPTY_FINISH, ...cols };
    await tx`
      with changed as (
        insert into jobs (id, tenant_id, endpoint_id, status, seq_ms, seq_n, finished_at, worker_id, error, error_exact,
                          execution_time_ms, output_json, output_ref, ttft_ms, itl_ms, prompt_tokens, completion_tokens)
        values (${jobId}, ${ctx.tenantId}, ${ctx.endpointId}, ${c.status}, ${ms}, ${n}, ${new Date(ms).toISOString()}::timestamptz, ${c.worker_id}, ${c.error}, ${c.error_exact},
                ${c.execution_time_ms}, ${c.output_json}, ${c.output_ref}, ${c.ttft_ms}, ${c.itl_ms}, ${c.prompt_tokens}, ${c.completion_tokens})
        on conflict (id) do update set
          status = excluded.status, seq_ms = excluded.seq_ms, seq_n = excluded.seq_n, finished_at = excluded.finished_at,
          worker_id = coalesce(excluded.worker_id, jobs.worker_id), error = excluded.error, error_exact = excluded.error_exact,
          execution_time_ms = excluded.execution_time_ms, output_json = excluded.output_json, output_ref = excluded.output_ref,
          ttft_ms = excluded.ttft_ms, itl_ms = excluded.itl_ms, prompt_tokens = excluded.prompt_tokens, completion_tokens = excluded.completion_tokens
        where (jobs.seq_ms, jobs.seq_n) < (excluded.seq_ms, excluded.seq_n)
        returning status
      )
      insert into endpoint_job_counts (endpoint_id, status, count)
      select ${ctx.endpointId}, status, 1 from changed
      on conflict (endpoint_id, status) do update set count = endpoint_job_counts.count + 1`;
  }

  private async removed(tx: Tx, jobId: string, ms: number, n: number, ctx: EntryContext): Promise<void> {
    // The reason was logged just before the removal and stored on the row; cancel is the default.
    await tx`
      with changed as (
        insert into jobs (id, tenant_id, endpoint_id, status, seq_ms, seq_n, finished_at)
        values (${jobId}, ${ctx.tenantId}, ${ctx.endpointId}, 'CANCELLED', ${ms}, ${n}, ${new Date(ms).toISOString()}::timestamptz)
        on conflict (id) do update set
          status = case jobs.removal_reason when 'expired' then ${REMOVAL.expired.status} else 'CANCELLED' end,
          error = case jobs.removal_reason when 'expired' then ${REMOVAL.expired.error} when 'purged' then ${REMOVAL.purged.error} else null end,
          error_exact = null, seq_ms = excluded.seq_ms, seq_n = excluded.seq_n, finished_at = excluded.finished_at
        where (jobs.seq_ms, jobs.seq_n) < (excluded.seq_ms, excluded.seq_n)
        returning status
      )
      insert into endpoint_job_counts (endpoint_id, status, count)
      select ${ctx.endpointId}, status, 1 from changed
      on conflict (endpoint_id, status) do update set count = endpoint_job_counts.count + 1`;
  }

  private async worker(tx: Tx, entry: Extract<LogEntry, { kind: "worker" }>, ms: number, n: number, ctx: EntryContext): Promise<void> {
    const p = entry.p;
    const final = FINAL_WORKER_STATES.has(p.state);
    // A lost worker ends at its last heartbeat as Redis received it, not at the moment it was noticed.
    const at = new Date(p.state === "lost" && p.at !== undefined ? p.at : ms).toISOString();
    const reason = p.reason === undefined ? null : toPgText(p.reason).text;
    await tx`
      insert into worker_transitions (worker_id, entry_id, seq_ms, seq_n, state, at, reason, exit_code)
      values (${p.workerId}, ${entry.id}, ${ms}, ${n}, ${p.state}, ${at}::timestamptz, ${reason}, ${p.exitCode ?? null})
      on conflict do nothing`;
    await tx`
      insert into worker_sessions (id, endpoint_id, tenant_id, provider, gpu_type, spec_hash, cold_start, state, requested_at, ready_at, ended_at, exit_code, end_reason, seq_ms, seq_n)
      values (${p.workerId}, ${ctx.endpointId}, ${p.tenantId ?? ctx.tenantId}, ${p.provider ?? null}, ${p.gpuType ?? null}, ${p.specHash ?? null},
              ${p.coldStart === undefined ? null : JSON.stringify(p.coldStart)}::jsonb, ${p.state},
              ${p.state === "requested" ? at : null}::timestamptz, ${p.state === "idle" ? at : null}::timestamptz, ${final ? at : null}::timestamptz,
              ${p.exitCode ?? null}, ${final ? reason : null}, ${ms}, ${n})
      on conflict (id) do update set
        tenant_id = case when ${p.state === "requested"} then excluded.tenant_id else worker_sessions.tenant_id end,
        provider = coalesce(worker_sessions.provider, excluded.provider),
        gpu_type = coalesce(worker_sessions.gpu_type, excluded.gpu_type),
        spec_hash = coalesce(worker_sessions.spec_hash, excluded.spec_hash),
        -- Phases arrive on two entries (ready, then after the first job): merged, the later one adding its own.
        cold_start = case when excluded.cold_start is null then worker_sessions.cold_start
          else coalesce(worker_sessions.cold_start, '{}'::jsonb) || excluded.cold_start end,
        requested_at = coalesce(worker_sessions.requested_at, excluded.requested_at),
        ready_at = coalesce(worker_sessions.ready_at, excluded.ready_at),
        -- Once ended, a session stays ended; a later exit (the provider's, after the worker's own) only
        -- adds its exit code and moves the end to when the process really ended.
        state = case
          when worker_sessions.state = 'exited' then 'exited'
          when worker_sessions.state = 'lost' and excluded.state <> 'exited' then 'lost'
          else excluded.state end,
        ended_at = case
          when excluded.state = 'exited' then greatest(coalesce(worker_sessions.ended_at, excluded.ended_at), excluded.ended_at)
          when excluded.state = 'lost' then coalesce(worker_sessions.ended_at, excluded.ended_at)
          else worker_sessions.ended_at end,
        exit_code = coalesce(excluded.exit_code, worker_sessions.exit_code),
        end_reason = coalesce(worker_sessions.end_reason, excluded.end_reason),
        seq_ms = excluded.seq_ms, seq_n = excluded.seq_n
      where (worker_sessions.seq_ms, worker_sessions.seq_n) < (excluded.seq_ms, excluded.seq_n)`;
  }
}
