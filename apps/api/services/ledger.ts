import { randomUUID } from "node:crypto";
import type { Sql, TransactionSql } from "postgres";
import { z } from "zod";
import { billingMode, ledgerKind, type BillingMode, type CreditRequest } from "../../../core/contracts/billing.ts";
import { pgSafeInt } from "../../../core/db/pg-int.ts";
import { ApiError } from "../api-error.ts";
import { appendAudit, auditRow, type AuditBy } from "../../../core/db/audit-writes.ts";

export interface LedgerOptions {
  sql: Sql;
  /** Clock credits are dated by (ms epoch). Default Date.now. */
  now?: () => number;
}

/** One ledger entry as the API shows it; amounts in µ$, credits positive, charges negative. */
export const ledgerEntryView = z
  .object({
    id: z.number(),
    kind: ledgerKind,
    amountMicros: z.number(),
    seconds: z.number().nullable(),
    endpointId: z.string().nullable(),
    workerId: z.string().nullable(),
    gpuType: z.string().nullable(),
    at: z.string(),
    reason: z.string().nullable(),
    /** The entry's idempotency key: `credit:<tenant>:key:<Idempotency-Key>`, `session:<worker>:minute:<n>`… */
    key: z.string(),
    createdAt: z.string(),
  })
  .meta({ id: "LedgerEntry" });
export type LedgerEntryView = z.infer<typeof ledgerEntryView>;

export const balanceView = z
  .object({
    /** creditedMicros − chargedMicros: the sum of every entry. */
    balanceMicros: z.number(),
    /** Credits and adjustments (net). */
    creditedMicros: z.number(),
    /** Charges as a positive amount (net of settlements that took time back). */
    chargedMicros: z.number(),
    billingMode,
  })
  .meta({ id: "Balance" });
export type BalanceView = z.infer<typeof balanceView>;

const COLUMNS = "id, key, kind, amount_micros, seconds, endpoint_id, worker_id, gpu_type, at, reason, created_at";
const entryRow = z.object({
  id: pgSafeInt,
  key: z.string(),
  kind: ledgerKind,
  amount_micros: pgSafeInt,
  seconds: z.number().int().nullable(),
  endpoint_id: z.string().nullable(),
  worker_id: z.string().nullable(),
  gpu_type: z.string().nullable(),
  at: z.coerce.date(),
  reason: z.string().nullable(),
  created_at: z.coerce.date(),
});
const balanceRow = z.object({ billing_mode: billingMode, balance: pgSafeInt, credited: pgSafeInt, charged: pgSafeInt });

/** An opaque position in the newest-first listing: the last item's `at` (ms) and id. */
// Bounded to the years 1970-9999, so that a forged cursor is a 400, never an invalid Date or a timestamp Postgres refuses.
const ledgerCursor = z.object({ at: z.number().int().min(0).max(Date.UTC(9999, 11, 31, 23, 59, 59, 999)), id: z.number().int() });
export function decodeLedgerCursor(s: string): z.infer<typeof ledgerCursor> | undefined {
  try {
    const r = ledgerCursor.safeParse(JSON.parse(Buffer.from(s, "base64url").toString("utf8")));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}
const encodeCursor = (c: z.infer<typeof ledgerCursor>) => Buffer.from(JSON.stringify(c)).toString("base64url");

const MAX_CREDITED = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * Tenants' money (Postgres `ledger_entries`, append-only): credits in, entries out, balances as
 * the sum of the entries (there is no balance column to drift from them). Every write carries a
 * unique key and is inserted with ON CONFLICT (key) DO NOTHING, so a retried write adds nothing.
 */
export class Ledger {
  private readonly now: () => number;

  constructor(private readonly options: LedgerOptions) {
    this.now = options.now ?? Date.now;
  }

  /**
   * Credits a tenant. With `idempotencyKey`, a repeat (same tenant, same key) credits nothing and
   * returns the first entry (`replayed`), whatever its amount; without one every call credits.
   * Refused with 400 naming `amountMicros` when the tenant's credits would pass the largest exact
   * amount (2^53 − 1 µ$), so that every balance stays an exact integer. Undefined for an unknown tenant.
   */
  async credit(tenantId: string, request: CreditRequest, by: AuditBy, idempotencyKey?: string): Promise<{ entry: LedgerEntryView; replayed: boolean } | undefined> {
    const key = idempotencyKey === undefined ? `credit:${tenantId}:once:${randomUUID()}` : `credit:${tenantId}:key:${idempotencyKey}`;
    const at = new Date(this.now()).toISOString();
    return this.options.sql.begin(async (tx) => {
      // One credit of a tenant at a time: a repeated key waits for the first and finds its entry, and
      // the credited total is not raced. NO KEY UPDATE leaves charges' foreign-key checks unblocked.
      if ((await tx`select id from tenants where id = ${tenantId} for no key update`).length === 0) return undefined;
      const earlier = await this.byKey(tx, key);
      if (earlier) return { entry: earlier, replayed: true };
      const [total] = z.array(z.object({ credited: pgSafeInt })).parse(
        await tx`select coalesce(sum(amount_micros) filter (where kind <> 'charge'), 0) as credited from ledger_entries where tenant_id = ${tenantId}`,
      );
      if (BigInt(total!.credited) + BigInt(request.amountMicros) > MAX_CREDITED) {
        const message = `the tenant's credits (${total!.credited} µ$) would pass ${MAX_CREDITED} µ$, the largest exact amount`;
        throw ApiError.badRequest(`amountMicros: ${message}`, [{ path: "amountMicros", message }]);
      }
      const rows = await tx`
        insert into ledger_entries (tenant_id, key, kind, amount_micros, at, reason)
        values (${tenantId}, ${key}, 'credit', ${String(request.amountMicros)}::bigint, ${at}::timestamptz, ${request.reason})
        on conflict (key) do nothing
        returning ${tx.unsafe(COLUMNS)}`;
      if (rows[0]) {
        const entry = toView(entryRow.parse(rows[0]));
        // A replayed Idempotency-Key credits nothing, so it is not audited again.
        await appendAudit(tx, [auditRow(by, { action: "credit.add", tenantId, targetId: String(entry.id), detail: { amountMicros: entry.amountMicros, ledgerKey: entry.key } })]);
        return { entry, replayed: false };
      }
      // Only a writer that skipped the tenant lock could have taken the key meanwhile; its entry stands.
      const raced = await this.byKey(tx, key);
      return raced && { entry: raced, replayed: true };
    });
  }

  /** A tenant's entries, newest first (by `at`, then id); `nextCursor` is null on the last page. Undefined for an unknown tenant. */
  async list(tenantId: string, q: { cursor?: string; limit: number }): Promise<{ items: LedgerEntryView[]; nextCursor: string | null } | undefined> {
    const { sql } = this.options;
    if ((await sql`select 1 from tenants where id = ${tenantId}`).length === 0) return undefined;
    const after = q.cursor === undefined ? undefined : decodeLedgerCursor(q.cursor);
    const rows = z.array(entryRow).parse(
      await sql`
        select ${sql.unsafe(COLUMNS)} from ledger_entries
        where tenant_id = ${tenantId}
          ${after === undefined ? sql`` : sql`and (at, id) < (${new Date(after.at).toISOString()}::timestamptz, ${after.id})`}
        order by at desc, id desc
        limit ${q.limit + 1}`,
    );
    const page = rows.slice(0, q.limit);
    const last = page[page.length - 1];
    return { items: page.map(toView), nextCursor: rows.length > q.limit && last ? encodeCursor({ at: last.at.getTime(), id: last.id }) : null };
  }

  /** The tenant's balance from its entries, and its billing mode; undefined for an unknown tenant. */
  async balance(tenantId: string): Promise<BalanceView | undefined> {
    const rows = z.array(balanceRow).parse(
      await this.options.sql`
        select t.billing_mode,
               coalesce(sum(l.amount_micros), 0) as balance,
               coalesce(sum(l.amount_micros) filter (where l.kind <> 'charge'), 0) as credited,
               coalesce(-sum(l.amount_micros) filter (where l.kind = 'charge'), 0) as charged
        from tenants t left join ledger_entries l on l.tenant_id = t.id
        where t.id = ${tenantId}
        group by t.billing_mode`,
    );
    const r = rows[0];
    return r && { balanceMicros: r.balance, creditedMicros: r.credited, chargedMicros: r.charged, billingMode: r.billing_mode satisfies BillingMode };
  }

  private async byKey(sql: Sql | TransactionSql, key: string): Promise<LedgerEntryView | undefined> {
    const rows = z.array(entryRow).parse(await sql`select ${sql.unsafe(COLUMNS)} from ledger_entries where key = ${key}`);
    return rows[0] && toView(rows[0]);
  }
}

function toView(r: z.infer<typeof entryRow>): LedgerEntryView {
  return {
    id: r.id,
    kind: r.kind,
    amountMicros: r.amount_micros,
    seconds: r.seconds,
    endpointId: r.endpoint_id,
    workerId: r.worker_id,
    gpuType: r.gpu_type,
    at: r.at.toISOString(),
    reason: r.reason,
    key: r.key,
    createdAt: r.created_at.toISOString(),
  };
}
