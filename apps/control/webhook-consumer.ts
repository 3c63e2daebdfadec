import type { Redis } from "ioredis";
import type { TransactionSql } from "postgres";
import { z } from "zod";
import { toPgText } from "../../core/db/pg-text.ts";
import type { LogEntry } from "../../core/log/log-entry.ts";
import { errorFields, type Log } from "../../core/log/process-log.ts";
import { jobData, type JobData } from "../../core/queue/job-catalog.ts";
import type { RedisKeys } from "../../core/queue/keys.ts";
import { deliveryId, webhookPayload, type TerminalState, type WebhookField } from "../../core/webhooks/webhook-payload.ts";
import type { EntryContext, LogConsumer } from "./log-consumer.ts";

export interface WebhookConsumerOptions {
  /** Reads the jobs' inputs (BullMQ's job hashes) for the payloads. */
  redis: Redis;
  keys: RedisKeys;
  log: Log;
  /** Called once a batch that created deliveries committed: the dispatcher sends them now, not at its next poll. */
  onDeliveries: () => void;
}

const jobRow = z.object({
  job_id: z.string(),
  webhook: z.string().nullable(),
  webhook_v2: z.string().nullable(),
  submitted_at: z.coerce.number(),
  retries: z.number().int(),
  input_json: z.string().nullable(),
  removal_reason: z.enum(["cancelled", "purged", "expired"]).nullable(),
});

/** How often an endpoint's set of jobs awaiting delivery is read again from Postgres (ms). */
const RESEED_MS = 30_000;

type Terminal = { entryId: string; jobId: string; end: TerminalState };

/**
 * Turns the log's terminal transitions of jobs with a webhook into deliveries (`webhook_deliveries`),
 * in the transaction that moves its cursor: a crash creates each delivery once or not yet, never
 * twice. Jobs without a webhook cost one indexed look-up per batch.
 */
export class WebhookConsumer implements LogConsumer {
  readonly name = "webhooks";
  /**
   * A first attempt is due within 100 ms of a job's end: the runner's usual 100 ms pause after a
   * short read (which batches records) would spend all of it; 20 ms keeps most of the batching (one
   * transaction per 20 ms of a busy log, measured to cost the job path little) and most of the budget.
   */
  readonly lingerMs = 20;
  private readonly created = new Set<string>();
  /**
   * Per endpoint, the jobs that may have a webhook not yet delivered: `webhook_jobs` as read from
   * Postgres, plus every one seen accepted since. A batch touching none of them needs no transaction.
   * Speed only, and only ever too large: ids are never removed in memory (a transaction that rolled
   * back must not lose one); the set is read again from Postgres every `RESEED_MS`, which drops the
   * delivered ones.
   */
  private readonly inFlight = new Map<string, { jobs: Set<string>; readAt: number }>();

  constructor(private readonly options: WebhookConsumerOptions) {}

  needsTransaction(entries: readonly LogEntry[], ctx: EntryContext): boolean {
    const known = this.inFlight.get(ctx.endpointId);
    if (!known || Date.now() - known.readAt >= RESEED_MS) {
      this.inFlight.delete(ctx.endpointId);
      return true; // read (again) from Postgres in the batch's transaction
    }
    const jobs = known.jobs;
    return entries.some((e) => {
      switch (e.kind) {
        case "accepted":
          return e.p.webhook !== undefined || e.p.webhookV2 !== undefined;
        case "removing":
        case "retried":
          return true;
        case "completed":
        case "failed":
        case "removed":
          return jobs.has(e.jobId);
        default:
          return false;
      }
    });
  }

  apply(tx: TransactionSql, entry: LogEntry, ctx: EntryContext): Promise<void> {
    return this.applyBatch(tx, [entry], ctx);
  }

  async applyBatch(tx: TransactionSql, entries: LogEntry[], ctx: EntryContext): Promise<void> {
    let known = this.inFlight.get(ctx.endpointId);
    if (!known) {
      const readAt = Date.now();
      const rows = z.array(z.object({ job_id: z.string() })).parse(await tx`select job_id from webhook_jobs where endpoint_id = ${ctx.endpointId}`);
      known = { jobs: new Set(rows.map((r) => r.job_id)), readAt };
      this.inFlight.set(ctx.endpointId, known);
    }
    const jobs = known.jobs;
    for (const e of entries) if (e.kind === "accepted" && (e.p.webhook !== undefined || e.p.webhookV2 !== undefined)) jobs.add(e.p.jobId);
    // The jobs' data while Redis still holds it: a cancelled or purged job's hash is gone by its end.
    const wanted = entries.flatMap((e) => (e.kind === "accepted" && (e.p.webhook !== undefined || e.p.webhookV2 !== undefined) ? [e.p.jobId] : e.kind === "retried" ? [e.p.jobId] : []));
    const stored = wanted.length > 0 ? await this.jobData(ctx.endpointId, wanted) : new Map<string, JobData>();
    const terminals: Terminal[] = [];
    for (const e of entries) {
      switch (e.kind) {
        case "accepted": {
          const { webhook, webhookV2 } = e.p;
          if (webhook === undefined && webhookV2 === undefined) break;
          await this.remember(tx, ctx, { jobId: e.p.jobId, tenantId: e.p.tenantId, webhook, webhookV2, submittedAt: e.p.submittedAt, retries: e.p.retries, data: stored.get(e.p.jobId) });
          break;
        }
        case "removing": {
          const input = e.p.input === undefined ? null : JSON.stringify(e.p.input);
          await tx`update webhook_jobs set removal_reason = ${e.p.reason}, input_json = coalesce(input_json, ${input}) where job_id = ${e.p.jobId}`;
          break;
        }
        case "retried": {
          // Its row went with its first deliveries: the job is back in Redis, with its webhooks.
          const data = stored.get(e.p.jobId);
          if (data && (data.webhook !== undefined || data.webhookV2 !== undefined)) {
            jobs.add(e.p.jobId);
            await this.remember(tx, ctx, { jobId: e.p.jobId, tenantId: data.tenantId, webhook: data.webhook, webhookV2: data.webhookV2, submittedAt: data.submittedAt, retries: e.p.retries, data });
          }
          break;
        }
        case "completed":
          terminals.push({ entryId: e.id, jobId: e.jobId, end: { kind: "completed", result: e.result } });
          break;
        case "failed":
          terminals.push({ entryId: e.id, jobId: e.jobId, end: { kind: "failed", reason: e.reason } });
          break;
        case "removed":
          terminals.push({ entryId: e.id, jobId: e.jobId, end: { kind: "removed", reason: null } });
          break;
        default:
          break;
      }
    }
    if (terminals.length === 0) return;
    const rows = z.array(jobRow).parse(
      await tx`select job_id, webhook, webhook_v2, submitted_at, retries, input_json, removal_reason from webhook_jobs where job_id = any(${[...new Set(terminals.map((t) => t.jobId))]})`,
    );
    if (rows.length === 0) return;
    const byJob = new Map(rows.map((r) => [r.job_id, r]));
    const deliveries = terminals.flatMap((t) => {
      const job = byJob.get(t.jobId);
      if (!job) return [];
      const end: TerminalState = t.end.kind === "removed" ? { kind: "removed", reason: job.removal_reason } : t.end;
      const input = job.input_json === null ? undefined : (JSON.parse(job.input_json) as unknown);
      const urls: [WebhookField, string | null][] = [
        ["webhook", job.webhook],
        ["webhookV2", job.webhook_v2],
      ];
      return urls.flatMap(([field, url]) => {
        if (url === null) return [];
        const payload = webhookPayload({ jobId: t.jobId, retries: job.retries, submittedAt: job.submitted_at, input, url }, end);
        return [
          {
            id: deliveryId(ctx.endpointId, t.jobId, t.entryId, field),
            job_id: t.jobId,
            endpoint_id: ctx.endpointId,
            tenant_id: ctx.tenantId,
            field,
            url,
            // JSON escapes NUL and lone surrogates: the text Postgres stores is the bytes sent.
            payload: JSON.stringify(payload),
            state: "pending",
          },
        ];
      });
    });
    if (deliveries.length === 0) return;
    await tx`insert into webhook_deliveries ${tx(deliveries)} on conflict (id) do nothing`;
    await tx`update webhook_deliveries set next_attempt_at = now() where id = any(${deliveries.map((d) => d.id)}) and next_attempt_at is null`;
    // Delivered jobs are forgotten (their input with them); a retry of the job brings it back.
    await tx`delete from webhook_jobs where job_id = any(${[...new Set(deliveries.map((d) => d.job_id))]})`;
    this.created.add(ctx.endpointId);
  }

  private async remember(
    tx: TransactionSql,
    ctx: EntryContext,
    j: { jobId: string; tenantId: string; webhook: string | undefined; webhookV2: string | undefined; submittedAt: number; retries: number; data: JobData | undefined },
  ): Promise<void> {
    // JSON text escapes NUL and lone surrogates, so any input is storable.
    const inputJson = j.data === undefined || j.data.input === undefined ? null : JSON.stringify(j.data.input);
    await tx`
      insert into webhook_jobs (job_id, endpoint_id, tenant_id, webhook, webhook_v2, submitted_at, retries, input_json)
      values (${j.jobId}, ${ctx.endpointId}, ${j.tenantId}, ${text(j.webhook)}, ${text(j.webhookV2)}, ${j.submittedAt}, ${j.retries}, ${inputJson})
      on conflict (job_id) do update set webhook = excluded.webhook, webhook_v2 = excluded.webhook_v2, retries = excluded.retries,
        input_json = coalesce(excluded.input_json, webhook_jobs.input_json), removal_reason = null`;
  }

  committed(ctx: EntryContext): void {
    if (this.created.delete(ctx.endpointId)) this.options.onDeliveries();
  }

  /** The jobs' data from their BullMQ hashes, where Redis still holds them. */
  private async jobData(endpointId: string, jobIds: string[]): Promise<Map<string, JobData>> {
    const out = new Map<string, JobData>();
    const prefix = this.options.keys.queuePrefix(endpointId);
    try {
      const pipeline = this.options.redis.pipeline();
      for (const id of jobIds) pipeline.hget(`${prefix}:${id}`, "data");
      const replies = (await pipeline.exec()) ?? [];
      replies.forEach(([err, raw], i) => {
        if (err || typeof raw !== "string") return;
        try {
          const data = jobData.safeParse(JSON.parse(raw));
          if (data.success) out.set(jobIds[i]!, data.data);
        } catch {
          // An unreadable hash: delivered without its input.
        }
      });
    } catch (err) {
      // Redis away: the round fails and is retried (a transient error, never a dead letter).
      this.options.log({ level: "warn", msg: "webhook jobs unreadable; retrying the batch", endpointId, ...errorFields(err) });
      throw Object.assign(new Error(`redis: ${errorFields(err).error}`), { code: "EREDISUNAVAILABLE" });
    }
    return out;
  }
}

const text = (s: string | undefined): string | null => (s === undefined ? null : toPgText(s).text);
