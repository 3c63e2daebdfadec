import type { Sql } from "postgres";
import { z } from "zod";
import { addMicros } from "../../../core/billing/micros.ts";
import type { Invoice, InvoiceLine, UsageGroupBy, UsageReport } from "../../../core/contracts/usage.ts";
import { pgSafeInt } from "../../../core/db/pg-int.ts";

/** A range of `at` on the log's clock, ms epoch: `from` inclusive, `to` exclusive. */
export interface ReportRange {
  from: number;
  to: number;
}

// Fixed SQL per grouping (never caller text); days are UTC whatever the session's time zone.
const GROUP_KEY: Record<UsageGroupBy, string> = {
  endpoint: "endpoint_id",
  gpuType: "gpu_type",
  day: `to_char(at at time zone 'UTC', 'YYYY-MM-DD')`,
};

const groupRow = z.object({ key: z.string().nullable(), seconds: pgSafeInt, cost: pgSafeInt });
const lineRow = z.object({ endpoint_id: z.string().nullable(), gpu_type: z.string().nullable(), seconds: pgSafeInt, cost: pgSafeInt });
const creditRow = z.object({ at: z.coerce.date(), amount_micros: pgSafeInt, reason: z.string().nullable() });

const iso = (ms: number) => new Date(ms).toISOString();

/**
 * A tenant's usage and invoices, summed by Postgres from the ledger's `charge` entries (the
 * amounts the tenant was actually charged, settlements included), never recomputed from sessions:
 * what a report shows is what the balance lost. Charges are stored negative and shown positive.
 */
export class UsageReports {
  constructor(private readonly sql: Sql) {}

  /** Charges dated in [from, to), grouped by endpoint, UTC day or GPU type. */
  async usage(tenantId: string, range: ReportRange, groupBy: UsageGroupBy): Promise<UsageReport> {
    const { sql } = this;
    const rows = z.array(groupRow).parse(
      await sql`
        select ${sql.unsafe(GROUP_KEY[groupBy])} as key, coalesce(sum(seconds), 0) as seconds, -sum(amount_micros) as cost
        from ledger_entries
        where tenant_id = ${tenantId} and kind = 'charge' and at >= ${iso(range.from)}::timestamptz and at < ${iso(range.to)}::timestamptz
        group by 1
        order by 1 nulls last`,
    );
    const groups = rows.map((r) => ({ key: r.key, seconds: r.seconds, costMicros: r.cost }));
    const total = sum(groups);
    return { from: iso(range.from), to: iso(range.to), groupBy, groups, totalSeconds: total.seconds, totalCostMicros: total.costMicros };
  }

  /** The month [start, end) of a tenant: a line per endpoint and GPU type, and its credits. `open` while `now` is inside it. */
  async invoice(tenantId: string, month: string, range: ReportRange, now: number): Promise<Invoice> {
    const { sql } = this;
    const from = iso(range.from);
    const to = iso(range.to);
    // One snapshot, so that the lines and the credits describe the same ledger.
    const [lineRows, creditRows] = await sql.begin("isolation level repeatable read read only", async (tx) => [
      await tx`
        select endpoint_id, gpu_type, coalesce(sum(seconds), 0) as seconds, -sum(amount_micros) as cost
        from ledger_entries
        where tenant_id = ${tenantId} and kind = 'charge' and at >= ${from}::timestamptz and at < ${to}::timestamptz
        group by endpoint_id, gpu_type
        order by endpoint_id nulls last, gpu_type nulls last`,
      await tx`
        select at, amount_micros, reason from ledger_entries
        where tenant_id = ${tenantId} and kind = 'credit' and at >= ${from}::timestamptz and at < ${to}::timestamptz
        order by at, id`,
    ]);
    const lines: InvoiceLine[] = z.array(lineRow).parse(lineRows).map((r) => ({ endpointId: r.endpoint_id, gpuType: r.gpu_type, seconds: r.seconds, costMicros: r.cost }));
    const credits = z.array(creditRow).parse(creditRows).map((r) => ({ at: r.at.toISOString(), amountMicros: r.amount_micros, reason: r.reason }));
    const total = sum(lines);
    return {
      month,
      from,
      to,
      open: now < range.to,
      lines,
      totalSeconds: total.seconds,
      totalMicros: total.costMicros,
      credits,
      creditedMicros: credits.reduce((s, c) => addMicros(s, c.amountMicros), 0),
    };
  }
}

function sum(rows: readonly { seconds: number; costMicros: number }[]): { seconds: number; costMicros: number } {
  return rows.reduce((t, r) => ({ seconds: t.seconds + r.seconds, costMicros: addMicros(t.costMicros, r.costMicros) }), { seconds: 0, costMicros: 0 });
}

/**
 * An invoice as CSV (RFC 4180, CRLF): a header, one `charge` row per line, a `total` row (the
 * sum of the charge rows), then one `credit` row per credit. Text that a spreadsheet would run as
 * a formula (`=`, `+`, `-`, `@` first) is prefixed with `'`.
 */
export function invoiceCsv(inv: Invoice): string {
  const rows: (string | number | null)[][] = [["kind", "endpoint_id", "gpu_type", "seconds", "micros", "at", "reason"]];
  for (const l of inv.lines) rows.push(["charge", l.endpointId, l.gpuType, l.seconds, l.costMicros, null, null]);
  rows.push(["total", null, null, inv.totalSeconds, inv.totalMicros, null, null]);
  for (const c of inv.credits) rows.push(["credit", null, null, null, c.amountMicros, c.at, c.reason]);
  return rows.map((r) => r.map(csvField).join(",")).join("\r\n") + "\r\n";
}

function csvField(v: string | number | null): string {
  if (v === null) return "";
  if (typeof v === "number") return String(v);
  const s = /^[=+\-@\t\r]/.test(v) ? `'${v}` : v;
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}
