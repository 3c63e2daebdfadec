import { timingSafeEqual } from "node:crypto";
import type { Sql } from "postgres";
import { z } from "zod";
import { newAdminKey, newAdminKeyId } from "../../../core/ids/random-id.ts";
import { appendAudit, auditRow, type AuditBy } from "../../../core/db/audit-writes.ts";
import { hashKey } from "./tenant-store.ts";

/** An admin key as listings show it: never the key, never its hash. */
export const adminKeyView = z
  .object({ id: z.string(), name: z.string(), prefix: z.string(), createdAt: z.string(), revokedAt: z.string().nullable() })
  .meta({ id: "AdminKey" });
export type AdminKeyView = z.infer<typeof adminKeyView>;

/** Every key `newAdminKey` makes: `hak_` and 24 random bytes in base64url. */
const ADMIN_KEY_SHAPE = /^hak_[A-Za-z0-9_-]{32}$/;

const keyRow = z.object({ id: z.string(), name: z.string(), display_prefix: z.string(), created_at: z.coerce.date(), revoked_at: z.coerce.date().nullable() });
const hashRow = z.object({ id: z.string(), hash: z.string().regex(/^[0-9a-f]{64}$/) });

/**
 * The operator's named admin keys (Postgres `admin_keys`, SHA-256 hashes only). Looked up on every
 * admin request, with no cache: admin traffic is a trickle, and a revocation then holds at once on
 * every API replica without a broadcast to miss. Each change is audited in its own transaction.
 */
export class AdminKeyStore {
  constructor(private readonly sql: Sql) {}

  async create(name: string, by: AuditBy): Promise<AdminKeyView & { key: string }> {
    const key = newAdminKey();
    const id = newAdminKeyId();
    const row = await this.sql.begin(async (tx) => {
      const rows = z.array(keyRow).parse(
        await tx`insert into admin_keys (id, name, display_prefix, hash) values (${id}, ${name}, ${key.slice(0, 10)}, ${hashKey(key)})
                 returning id, name, display_prefix, created_at, revoked_at`,
      );
      await appendAudit(tx, [auditRow(by, { action: "admin_key.create", targetId: id, detail: { name } })]);
      return rows[0]!;
    });
    return { ...toView(row), key };
  }

  async list(): Promise<AdminKeyView[]> {
    const rows = z.array(keyRow).parse(await this.sql`select id, name, display_prefix, created_at, revoked_at from admin_keys order by created_at, id`);
    return rows.map(toView);
  }

  /** Revokes a live key; false when unknown or already revoked. Refused from the next request on, everywhere. */
  async revoke(id: string, by: AuditBy): Promise<boolean> {
    return this.sql.begin(async (tx) => {
      const rows = await tx`update admin_keys set revoked_at = now() where id = ${id} and revoked_at is null returning id`;
      if (rows.length === 0) return false;
      await appendAudit(tx, [auditRow(by, { action: "admin_key.revoke", targetId: id })]);
      return true;
    });
  }

  /** The id of the live admin key presented, or undefined. */
  async authenticate(key: string): Promise<string | undefined> {
    // Not a key we could have issued: refused without a query.
    if (!ADMIN_KEY_SHAPE.test(key)) return undefined;
    const hash = hashKey(key);
    const rows = z.array(hashRow).parse(await this.sql`select id, hash from admin_keys where hash = ${hash} and revoked_at is null`);
    const row = rows[0];
    // Postgres matched by hash; the constant-time check makes sure the row is the presented key's.
    return row && timingSafeEqual(Buffer.from(row.hash, "hex"), Buffer.from(hash, "hex")) ? row.id : undefined;
  }
}

function toView(r: z.infer<typeof keyRow>): AdminKeyView {
  return { id: r.id, name: r.name, prefix: r.display_prefix, createdAt: r.created_at.toISOString(), revokedAt: r.revoked_at?.toISOString() ?? null };
}
