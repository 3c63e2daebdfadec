import type { Sql } from "postgres";
import { z } from "zod";
import { appendAudit, auditRow, type AuditBy } from "../../../core/db/audit-writes.ts";

export const deliveryAttemptView = z.object({
  attempt: z.number(),
  at: z.string(),
  /** delivered, retry, stop; `in_flight` while sending, `interrupted` when its deliverer died mid-attempt. */
  outcome: z.string(),
  status: z.number().nullable(),
  latencyMs: z.number().nullable(),
  error: z.string().nullable(),
});

export const deliveryView = z
  .object({
    /** The `webhook-id` header of every attempt. */
    id: z.string(),
    field: z.enum(["webhook", "webhookV2"]),
    url: z.string(),
    state: z.enum(["pending", "delivered", "failed", "exhausted"]),
    attempts: z.array(deliveryAttemptView),
    nextAttemptAt: z.string().nullable(),
    deliveredAt: z.string().nullable(),
    createdAt: z.string(),
  })
  .meta({ id: "WebhookDelivery" });
export type DeliveryView = z.infer<typeof deliveryView>;

export const receiverHealthView = z
  .object({
    endpointId: z.string(),
    /** When a delivery of this endpoint last reached its receiver. */
    lastSuccessAt: z.string().nullable(),
    /** Attempts that failed since then (all of them when none succeeded). */
    failuresInARow: z.number(),
    pending: z.number(),
    failed: z.number(),
    exhausted: z.number(),
  })
  .meta({ id: "WebhookReceiverHealth" });

const deliveryRow = z.object({
  id: z.string(),
  field: z.enum(["webhook", "webhookV2"]),
  url: z.string(),
  state: z.enum(["pending", "delivered", "failed", "exhausted"]),
  next_attempt_at: z.coerce.date().nullable(),
  delivered_at: z.coerce.date().nullable(),
  created_at: z.coerce.date(),
});
const attemptRow = z.object({
  delivery_id: z.string(),
  attempt: z.number(),
  started_at: z.coerce.date(),
  outcome: z.string(),
  status: z.number().nullable(),
  latency_ms: z.number().nullable(),
  error: z.string().nullable(),
});
const countRow = z.object({ state: z.string(), n: z.coerce.number() });

/** The tenant's view of webhook deliveries (`webhook_deliveries`, written by the control plane). */
export class WebhookDeliveries {
  constructor(private readonly sql: Sql) {}

  /** A job's deliveries, oldest first, with every attempt; undefined when the job is not the tenant's or has none. */
  async forJob(tenantId: string, jobId: string): Promise<DeliveryView[] | undefined> {
    const rows = z.array(deliveryRow).parse(
      await this.sql`select id, field, url, state, next_attempt_at, delivered_at, created_at from webhook_deliveries
                     where job_id = ${jobId} and tenant_id = ${tenantId} order by created_at, id`,
    );
    if (rows.length === 0) return undefined;
    const attempts = z.array(attemptRow).parse(
      await this.sql`select delivery_id, attempt, started_at, outcome, status, latency_ms, error from webhook_attempts
                     where delivery_id = any(${rows.map((r) => r.id)}) order by attempt`,
    );
    return rows.map((r) => ({
      id: r.id,
      field: r.field,
      url: r.url,
      state: r.state,
      attempts: attempts
        .filter((a) => a.delivery_id === r.id)
        .map((a) => ({ attempt: a.attempt, at: a.started_at.toISOString(), outcome: a.outcome, status: a.status, latencyMs: a.latency_ms, error: a.error })),
      nextAttemptAt: r.state === "pending" ? (r.next_attempt_at?.toISOString() ?? null) : null,
      deliveredAt: r.delivered_at?.toISOString() ?? null,
      createdAt: r.created_at.toISOString(),
    }));
  }

  /**
   * Delivers the job's webhooks again, now, on a fresh schedule (its attempt numbers go on; the
   * `webhook-id` stays). Undefined when the job is not the tenant's or has no deliveries.
   */
  async retry(tenantId: string, jobId: string, by: AuditBy): Promise<DeliveryView[] | undefined> {
    const updated = await this.sql.begin(async (tx) => {
      const rows = z.array(z.object({ id: z.string(), endpoint_id: z.string() })).parse(
        await tx`
          update webhook_deliveries set state = 'pending', schedule_offset = attempts, next_attempt_at = now()
          where job_id = ${jobId} and tenant_id = ${tenantId}
          returning id, endpoint_id`,
      );
      if (rows[0]) await appendAudit(tx, [auditRow(by, { action: "webhook_delivery.retry", tenantId, endpointId: rows[0].endpoint_id, targetId: jobId, detail: { deliveries: rows.length } })]);
      return rows;
    });
    if (updated.length === 0) return undefined;
    return this.forJob(tenantId, jobId);
  }

  /** How an endpoint's receivers fare: last success, failures in a row since, deliveries by state. */
  async receiverHealth(endpointId: string): Promise<z.infer<typeof receiverHealthView>> {
    const [last] = z.array(z.object({ at: z.coerce.date().nullable() })).parse(
      await this.sql`select max(a.started_at) as at from webhook_attempts a join webhook_deliveries d on d.id = a.delivery_id
                     where d.endpoint_id = ${endpointId} and a.outcome = 'delivered'`,
    );
    const since = last?.at ?? null;
    const [failures] = z.array(z.object({ n: z.coerce.number() })).parse(
      await this.sql`select count(*) as n from webhook_attempts a join webhook_deliveries d on d.id = a.delivery_id
                     where d.endpoint_id = ${endpointId} and a.outcome in ('retry', 'stop', 'interrupted')
                       ${since === null ? this.sql`` : this.sql`and a.started_at > ${since.toISOString()}::timestamptz`}`,
    );
    const counts = new Map(
      z
        .array(countRow)
        .parse(await this.sql`select state, count(*) as n from webhook_deliveries where endpoint_id = ${endpointId} and state <> 'delivered' group by state`)
        .map((r) => [r.state, r.n]),
    );
    return {
      endpointId,
      lastSuccessAt: since?.toISOString() ?? null,
      failuresInARow: failures?.n ?? 0,
      pending: counts.get("pending") ?? 0,
      failed: counts.get("failed") ?? 0,
      exhausted: counts.get("exhausted") ?? 0,
    };
  }
}
