import type { Sql, TransactionSql } from "postgres";
import type { AuditAction, AuditActor } from "../contracts/audit.ts";
import type { ModelIdentity } from "../engine/model-identity.ts";
import type { auditLog } from "./schema.ts";
import { toPgText } from "./pg-text.ts";

/** Who acted and from where: fixed per request by the API's authentication. */
export interface AuditBy {
  actor: AuditActor;
  /** The tenant API key the request came with; null for admin actors. */
  keyId: string | null;
  /** The client's socket address; null where the runtime does not expose it. */
  sourceAddress: string | null;
}

/** What was done: written by the code that makes the change, which knows it. */
export interface AuditWhat {
  action: AuditAction;
  tenantId?: string | null;
  endpointId?: string | null;
  model?: ModelIdentity | null;
  targetId?: string | null;
  /** Small and never secret: ids, counts, settings. Strings are stored with U+FFFD for what Postgres text cannot hold. */
  detail?: Record<string, unknown>;
  /** Projected entries only: the log entry they come from (a replay inserts nothing twice). */
  logEntryId?: string;
}

export type AuditRow = Omit<typeof auditLog.$inferInsert, "id" | "at">;

const text = (s: string | null | undefined) => (s === null || s === undefined ? null : toPgText(s).text);

/** The row for one entry (the database adds its id and time). */
export function auditRow(by: AuditBy, what: AuditWhat): AuditRow {
  // jsonb holds no NUL and no lone surrogate either: every string in the detail is made storable.
  const detail = JSON.parse(JSON.stringify(what.detail ?? {}, (_k, v: unknown) => (typeof v === "string" ? toPgText(v).text : v))) as Record<string, unknown>;
  return {
    actorKind: by.actor.kind,
    actorId: toPgText(by.actor.id).text,
    tenantId: text(what.tenantId),
    endpointId: text(what.endpointId),
    modelName: text(what.model?.name),
    modelVersion: text(what.model?.version),
    keyId: text(by.keyId),
    sourceAddress: text(by.sourceAddress),
    action: what.action,
    targetId: text(what.targetId),
    detail,
    logEntryId: text(what.logEntryId),
  };
}

/**
 * Appends entries with postgres.js, inside the caller's transaction (the one that makes the change
 * they record). One statement whatever the number of rows; an entry whose (endpoint, log entry) is
 * already there is skipped, so a replayed projection writes nothing twice.
 */
export async function appendAudit(sql: Sql | TransactionSql, rows: readonly AuditRow[]): Promise<void> {
  if (rows.length === 0) return;
  const json = JSON.stringify(
    rows.map((r) => ({
      actor_kind: r.actorKind,
      actor_id: r.actorId,
      tenant_id: r.tenantId,
      endpoint_id: r.endpointId,
      model_name: r.modelName,
      model_version: r.modelVersion,
      key_id: r.keyId,
      source_address: r.sourceAddress,
      action: r.action,
      target_id: r.targetId,
      detail: r.detail ?? {},
      log_entry_id: r.logEntryId,
    })),
  );
  await sql`
    insert into audit_log (actor_kind, actor_id, tenant_id, endpoint_id, model_name, model_version, key_id, source_address, action, target_id, detail, log_entry_id)
    select actor_kind, actor_id, tenant_id, endpoint_id, model_name, model_version, key_id, source_address, action, target_id, coalesce(detail, '{}'::jsonb), log_entry_id
    from jsonb_to_recordset(${json}::text::jsonb) as r(actor_kind text, actor_id text, tenant_id text, endpoint_id text, model_name text, model_version text,
                                                 key_id text, source_address text, action text, target_id text, detail jsonb, log_entry_id text)
    on conflict do nothing`;
}
