import type { Sql } from "postgres";
import { z } from "zod";
import { auditActorKind, type AuditAction, type AuditEntryView } from "../../../core/contracts/audit.ts";
import { pgSafeInt } from "../../../core/db/pg-int.ts";

/** What `GET /admin/audit` and `GET /api/v1/audit` filter by; all optional, combined with AND. */
export interface AuditFilter {
  tenantId?: string;
  endpointId?: string;
  action?: AuditAction;
  /** An actor's id: `bootstrap`, an admin key's or an API key's. */
  actor?: string;
  /** Inclusive, on the database's clock. */
  since?: Date;
  /** Exclusive. */
  until?: Date;
  cursor?: string;
  limit: number;
}

const auditRowRead = z.object({
  id: pgSafeInt,
  at: z.coerce.date(),
  actor_kind: auditActorKind,
  actor_id: z.string(),
  tenant_id: z.string().nullable(),
  endpoint_id: z.string().nullable(),
  model_name: z.string().nullable(),
  model_version: z.string().nullable(),
  key_id: z.string().nullable(),
  source_address: z.string().nullable(),
  action: z.string(),
  target_id: z.string().nullable(),
  detail: z.record(z.string(), z.unknown()),
});

/** The listing's position: the last entry's id (ids grow in append order, so newest first is id descending). */
const auditCursor = z.object({ id: z.number().int().min(1) });
export function decodeAuditCursor(s: string): number | undefined {
  try {
    const r = auditCursor.safeParse(JSON.parse(Buffer.from(s, "base64url").toString("utf8")));
    return r.success ? r.data.id : undefined;
  } catch {
    return undefined;
  }
}
const encodeCursor = (id: number) => Buffer.from(JSON.stringify({ id })).toString("base64url");

/** Reads the audit log (Postgres `audit_log`), newest first, a page at a time. Writes are core/db/audit-writes.ts'. */
export class AuditTrail {
  constructor(private readonly sql: Sql) {}

  async list(f: AuditFilter): Promise<{ items: AuditEntryView[]; nextCursor: string | null }> {
    const { sql } = this;
    const after = f.cursor === undefined ? undefined : decodeAuditCursor(f.cursor);
    const rows = z.array(auditRowRead).parse(
      await sql`
        select id, at, actor_kind, actor_id, tenant_id, endpoint_id, model_name, model_version, key_id, source_address, action, target_id, detail
        from audit_log
        where true
          ${f.tenantId === undefined ? sql`` : sql`and tenant_id = ${f.tenantId}`}
          ${f.endpointId === undefined ? sql`` : sql`and endpoint_id = ${f.endpointId}`}
          ${f.action === undefined ? sql`` : sql`and action = ${f.action}`}
          ${f.actor === undefined ? sql`` : sql`and actor_id = ${f.actor}`}
          ${f.since === undefined ? sql`` : sql`and at >= ${f.since.toISOString()}::timestamptz`}
          ${f.until === undefined ? sql`` : sql`and at < ${f.until.toISOString()}::timestamptz`}
          ${after === undefined ? sql`` : sql`and id < ${after}`}
        order by id desc
        limit ${f.limit + 1}`,
    );
    const page = rows.slice(0, f.limit);
    const last = page[page.length - 1];
    return { items: page.map(toView), nextCursor: rows.length > f.limit && last ? encodeCursor(last.id) : null };
  }
}

function toView(r: z.infer<typeof auditRowRead>): AuditEntryView {
  return {
    id: r.id,
    at: r.at.toISOString(),
    actor: { kind: r.actor_kind, id: r.actor_id },
    tenantId: r.tenant_id,
    endpointId: r.endpoint_id,
    modelName: r.model_name,
    modelVersion: r.model_version,
    keyId: r.key_id,
    sourceAddress: r.source_address,
    action: r.action,
    targetId: r.target_id,
    detail: r.detail,
  };
}
