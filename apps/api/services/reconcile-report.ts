import type { Sql } from "postgres";
import { z } from "zod";
import { ceilDiv } from "../../../core/billing/micros.ts";
import type { PriceTable } from "../../../core/billing/price-table.ts";
import { meterPrepared, prepareSession, type SessionMeter } from "../../../core/billing/session-meter.ts";
import type { ReconcileDifference, ReconciledSession, ReconcileReport } from "../../../core/contracts/usage.ts";
import { pgSafeInt } from "../../../core/db/pg-int.ts";
import type { PriceStore } from "./price-store.ts";
import type { ReportRange } from "./usage-report.ts";
import { sessionInput } from "./session-costs.ts";

export interface ReconcileReportsOptions {
  sql: Sql;
  prices: PriceStore;
  /** Sessions one answer holds; past it the answer says where to go on (`nextFrom`). Default 2000. */
  maxSessions?: number;
}

const sessionRow = z.object({
  id: z.string(),
  endpoint_id: z.string(),
  tenant_id: z.string(),
  gpu_type: z.string().nullable(),
  state: z.string(),
  requested_at: z.coerce.date(),
  ended_at: z.coerce.date().nullable(),
  billing_tenant_id: z.string().nullable(),
  transitions: z.unknown(),
  weights_fetches: z.unknown(),
  settled_at: z.coerce.date().nullable(),
});
type SessionRow = z.infer<typeof sessionRow>;
const chargedRow = z.object({ worker_id: z.string(), seconds: pgSafeInt, cost: pgSafeInt });

/** A difference this small is rounding (the observation and the meter each round to whole seconds). */
const TOLERANCE_SECONDS = 1;

const iso = (ms: number) => new Date(ms).toISOString();

/**
 * Billed seconds per worker session (the ledger's charges) next to its observed lifetime (the
 * records projector's `worker_sessions`: the scheduler's `requested` to the process's exit), for the
 * operator. Every session whose two differ by more than a second is listed with the reason the
 * meter gives: a `lost` worker billed to its last heartbeat, a subtracted weights fetch or pause
 * that accounts for the gap, an `open` session, or none (`unexplained`).
 */
export class ReconcileReports {
  private readonly maxSessions: number;

  constructor(private readonly options: ReconcileReportsOptions) {
    this.maxSessions = options.maxSessions ?? 2000;
  }

  /** Sessions requested in [from, to), metered as the log stands at `asOf` (ms, log clock). */
  async report(range: ReportRange, asOf: number): Promise<ReconcileReport> {
    const { sql } = this.options;
    const rows = z.array(sessionRow).parse(
      await sql`
        select ws.id, ws.endpoint_id, ws.tenant_id, ws.gpu_type, ws.state, ws.requested_at, ws.ended_at,
               bs.tenant_id as billing_tenant_id, bs.transitions, bs.weights_fetches, bs.settled_at
        from worker_sessions ws left join billing_sessions bs on bs.worker_id = ws.id
        where ws.requested_at >= ${iso(range.from)}::timestamptz and ws.requested_at < ${iso(range.to)}::timestamptz
        order by ws.requested_at, ws.id
        limit ${this.maxSessions + 1}`,
    );
    const { page, nextFrom } = cut(rows, this.maxSessions);
    const charged = new Map<string, { seconds: number; cost: number }>();
    if (page.length > 0) {
      const sums = z.array(chargedRow).parse(
        await sql`
          select worker_id, coalesce(sum(seconds), 0) as seconds, coalesce(-sum(amount_micros), 0) as cost
          from ledger_entries where kind = 'charge' and worker_id in ${sql(page.map((r) => r.id))}
          group by worker_id`,
      );
      for (const s of sums) charged.set(s.worker_id, s);
    }
    const table = await this.options.prices.table();
    const sessions: ReconciledSession[] = [];
    const differences: ReconcileDifference[] = [];
    for (const row of page) {
      const { meter, problem } = meterOf(row, table, asOf);
      const billed = charged.get(row.id) ?? { seconds: 0, cost: 0 };
      const requested = row.requested_at.getTime();
      const observedMs = Math.max(0, (row.ended_at?.getTime() ?? asOf) - requested);
      const s: ReconciledSession = {
        workerId: row.id,
        tenantId: row.tenant_id,
        endpointId: row.endpoint_id,
        gpuType: row.gpu_type,
        state: row.state,
        requestedAt: iso(requested),
        endedAt: row.ended_at === null ? null : row.ended_at.toISOString(),
        observedMs,
        observedSeconds: ceilDiv(observedMs, 1000),
        billedSeconds: billed.seconds,
        billedMicros: billed.cost,
        meter: meter && { seconds: meter.seconds, micros: meter.micros, endedBy: meter.endedBy, weightsFetchMs: meter.weightsFetchMs, pausedMs: meter.pausedMs },
        settled: row.settled_at !== null,
      };
      sessions.push(s);
      const differenceSeconds = s.billedSeconds - s.observedSeconds;
      if (Math.abs(differenceSeconds) <= TOLERANCE_SECONDS) continue;
      differences.push({ workerId: s.workerId, tenantId: s.tenantId, billedSeconds: s.billedSeconds, observedSeconds: s.observedSeconds, differenceSeconds, ...explain(s, row, meter, problem) });
    }
    return { from: iso(range.from), to: iso(range.to), asOf: iso(asOf), sessions, differences, nextFrom };
  }
}

/** At most `max` rows, never splitting the sessions of one ms across two answers (so `nextFrom` repeats none). */
function cut(rows: SessionRow[], max: number): { page: SessionRow[]; nextFrom: string | null } {
  const next = rows[max];
  if (next === undefined) return { page: rows, nextFrom: null };
  const at = next.requested_at.getTime();
  const whole = rows.slice(0, max).filter((r) => r.requested_at.getTime() < at);
  // More than `max` sessions requested in one ms: give them all rather than loop on one instant.
  return whole.length > 0 ? { page: whole, nextFrom: iso(at) } : { page: rows.slice(0, max), nextFrom: iso(at + 1) };
}

function meterOf(row: SessionRow, table: PriceTable, asOf: number): { meter: SessionMeter | null; problem?: string } {
  if (row.billing_tenant_id === null) return { meter: null, problem: "no billing record: the billing consumer has not metered this session" };
  try {
    const meter = meterPrepared(prepareSession(sessionInput({ worker_id: row.id, tenant_id: row.billing_tenant_id, transitions: row.transitions, weights_fetches: row.weights_fetches })), table, asOf);
    return meter === null ? { meter, problem: "the billing record holds no transition yet" } : { meter };
  } catch (e) {
    // One damaged or unpriced session must not hide the others from the operator.
    return { meter: null, problem: `the session cannot be metered: ${e instanceof Error ? e.message : String(e)}` };
  }
}

function explain(s: ReconciledSession, row: SessionRow, meter: SessionMeter | null, problem: string | undefined): Pick<ReconcileDifference, "explanation" | "detail"> {
  const diff = s.billedSeconds - s.observedSeconds;
  if (row.ended_at === null) return { explanation: "open", detail: "not ended yet: a running session is charged minute by minute and settled at its end" };
  if (meter === null) return { explanation: "unexplained", detail: problem ?? "no meter" };
  if (meter.end === null) return { explanation: "open", detail: "the billing consumer has not seen the session's end yet (it settles once it does)" };
  if (diff < 0 && (meter.endedBy === "lost" || row.state === "lost")) {
    return { explanation: "lost", detail: `lost: billed to its last heartbeat (${iso(meter.end)}), ${-diff} s short of the end observed` };
  }
  const subtracted = meter.weightsFetchMs + meter.pausedMs;
  if (subtracted > 0 && Math.abs(s.billedSeconds - ceilDiv(Math.max(0, s.observedMs - subtracted), 1000)) <= TOLERANCE_SECONDS) {
    const parts = [meter.weightsFetchMs > 0 && `a weights fetch of ${meter.weightsFetchMs} ms`, meter.pausedMs > 0 && `${meter.pausedMs} ms paused`].filter(Boolean).join(" and ");
    return { explanation: meter.weightsFetchMs >= meter.pausedMs ? "weights_fetch" : "paused", detail: `not billed: ${parts}` };
  }
  if (row.settled_at === null) return { explanation: "unexplained", detail: "ended but not settled yet: the billing consumer has not written its settlement" };
  if (s.billedSeconds !== meter.seconds) return { explanation: "unexplained", detail: `the ledger holds ${s.billedSeconds} s, the meter makes it ${meter.seconds} s` };
  return { explanation: "unexplained", detail: `the meter's span (${iso(meter.start)} to ${iso(meter.end)}) is not the observed one` };
}
