import type { TransactionSql } from "postgres";
import { z } from "zod";
import { parseStreamId, type LogEntry } from "../../core/log/log-entry.ts";
import { appendAudit, auditRow } from "../../core/db/audit-writes.ts";
import { modelIdentity, type ModelIdentity } from "../../core/engine/model-identity.ts";
import type { EntryContext } from "./log-consumer.ts";

type Accepted = Extract<LogEntry, { kind: "accepted" }>;

const endpointRow = z.object({ engine: z.looseObject({ kind: z.string() }), updated_at: z.coerce.date() });
const auditedModel = z.object({ model_name: z.string().nullable(), model_version: z.string().nullable() });

/**
 * Projects job acceptances into the audit log (`job.submit`), inside the records projector's batch
 * transaction, so no consumer reads the log again for it and an entry commits with the cursor that
 * passed it. Idempotent: the (endpoint, log entry id) unique index makes a replayed batch, or a
 * dead letter retried, insert nothing twice. Acceptances without a key id (queued before the
 * audit log existed, or not by the API) are left out: there is no actor to name.
 */
export async function auditSubmissions(tx: TransactionSql, entries: readonly LogEntry[], ctx: EntryContext): Promise<void> {
  const accepted = entries.filter((e): e is Accepted => e.kind === "accepted" && e.p.keyId !== undefined);
  if (accepted.length === 0) return;
  const models = await modelsByRevision(tx, ctx.endpointId, new Set(accepted.flatMap((e) => (e.p.epRev === undefined ? [] : [e.p.epRev]))));
  await appendAudit(
    tx,
    accepted.map((e) =>
      auditRow(
        { actor: { kind: "api_key", id: e.p.keyId! }, keyId: e.p.keyId!, sourceAddress: e.p.source ?? null },
        {
          action: "job.submit",
          tenantId: e.p.tenantId,
          endpointId: ctx.endpointId,
          model: e.p.epRev === undefined ? null : (models.get(e.p.epRev) ?? null),
          targetId: e.p.jobId,
          // When the log accepted it (Redis' clock); never its input.
          detail: { sync: e.p.sync, acceptedAt: new Date(parseStreamId(e.id).ms).toISOString(), ...(e.p.lowPriority && { lowPriority: true }) },
          logEntryId: e.id,
        },
      ),
    ),
  );
}

/**
 * The model of each endpoint revision the batch's jobs were accepted under: the endpoint as it is
 * when its revision is still current (the common case, one query), else as the audit entry of the
 * change that made that revision recorded it. Unknown revisions (an endpoint changed before the
 * audit log existed) have no model.
 */
async function modelsByRevision(tx: TransactionSql, endpointId: string, revisions: ReadonlySet<number>): Promise<Map<number, ModelIdentity | null>> {
  const out = new Map<number, ModelIdentity | null>();
  if (revisions.size === 0) return out;
  const [row] = z.array(endpointRow).parse(await tx`select engine, updated_at from endpoints where id = ${endpointId}`);
  if (row) out.set(row.updated_at.getTime(), modelIdentity(row.engine));
  for (const rev of revisions) {
    if (out.has(rev)) continue;
    const [audited] = z.array(auditedModel).parse(
      await tx`select model_name, model_version from audit_log
               where endpoint_id = ${endpointId} and action in ('endpoint.create', 'endpoint.update') and detail->>'revision' = ${String(rev)}
               order by id desc limit 1`,
    );
    out.set(rev, audited?.model_name != null && audited.model_version != null ? { name: audited.model_name, version: audited.model_version } : null);
  }
  return out;
}
