import { z } from "zod";
import { workerState } from "./worker-state.ts";

/*
 * What tenants and admins read about money spent: usage, invoices, a session's bill, and the
 * reconciliation of billed seconds against observed lifetimes. Amounts are µ$ (1 USD = 1,000,000),
 * charges shown positive; times are ISO-8601 UTC; days and months are UTC.
 */

/** The latest instant a report reads: Postgres and `Date#toISOString` both take it. */
export const MAX_REPORT_MS = Date.UTC(9999, 11, 31, 23, 59, 59, 999);
/** The longest usage or reconciliation range (ms): a year, leap day included. */
export const MAX_REPORT_RANGE_MS = 366 * 86_400_000;

const isoDate = z.iso.date();
const isoDateTime = z.iso.datetime({ offset: true });

/**
 * A query instant: an ISO-8601 date-time with its offset (`2025-03-01T12:00:00Z`), or a date
 * (`2025-03-01`, its UTC midnight); from 1970 to 9999. Parsed to ms epoch.
 */
export const reportInstant = z.string().transform((s, ctx) => {
  const ms = isoDate.safeParse(s).success || isoDateTime.safeParse(s).success ? Date.parse(s) : NaN;
  if (!Number.isFinite(ms) || ms < 0 || ms > MAX_REPORT_MS) {
    ctx.addIssue({ code: "custom", message: "must be an ISO-8601 date-time with offset (2025-03-01T00:00:00Z) or a UTC date (2025-03-01), between 1970 and 9999" });
    return z.NEVER;
  }
  return ms;
});

/** A calendar month `YYYY-MM` (UTC), from 1970-01: its first ms and the next month's; undefined when malformed. */
export function parseMonth(s: string): { start: number; end: number } | undefined {
  const m = /^(\d{4})-(0[1-9]|1[0-2])$/.exec(s);
  if (!m) return undefined;
  const year = Number(m[1]);
  const month = Number(m[2]) - 1;
  if (year < 1970) return undefined;
  return { start: Date.UTC(year, month, 1), end: Date.UTC(year, month + 1, 1) };
}

export const USAGE_GROUPS = ["endpoint", "day", "gpuType"] as const;
export const usageGroupBy = z.enum(USAGE_GROUPS);
export type UsageGroupBy = z.infer<typeof usageGroupBy>;

const micros = z.number().int();

export const usageReport = z
  .object({
    from: z.string().describe("Inclusive."),
    to: z.string().describe("Exclusive."),
    groupBy: usageGroupBy,
    groups: z.array(
      z.object({
        key: z.string().nullable().describe("The endpoint id, the UTC day `YYYY-MM-DD`, or the GPU type; null for charges recorded without one."),
        seconds: z.number().int().describe("Billed seconds (net: a settlement that took time back counts negative)."),
        costMicros: micros.describe("What was charged, positive; negative only where a settlement gave back more than the group's minutes."),
      }),
    ),
    totalSeconds: z.number().int(),
    totalCostMicros: micros.describe("The sum of the groups: minus the sum of the ledger's charges dated in [from, to)."),
  })
  .meta({ id: "UsageReport" });
export type UsageReport = z.infer<typeof usageReport>;

export const invoiceLine = z.object({
  endpointId: z.string().nullable(),
  gpuType: z.string().nullable(),
  seconds: z.number().int(),
  costMicros: micros,
});
export type InvoiceLine = z.infer<typeof invoiceLine>;

export const invoice = z
  .object({
    month: z.string().describe("`YYYY-MM`, UTC."),
    from: z.string(),
    to: z.string().describe("Exclusive: the first instant of the next month."),
    /** The month has not ended yet (on the log's clock): more charges may come. */
    open: z.boolean(),
    lines: z.array(invoiceLine).describe("One per endpoint and GPU type with charges in the month."),
    totalSeconds: z.number().int(),
    totalMicros: micros.describe("The sum of the lines: minus the sum of the ledger's charges dated in the month."),
    credits: z.array(z.object({ at: z.string(), amountMicros: micros, reason: z.string().nullable() })).describe("Credits dated in the month, oldest first."),
    creditedMicros: micros,
  })
  .meta({ id: "Invoice" });
export type Invoice = z.infer<typeof invoice>;

/** Seconds and µ$ of one part of a bill. */
const pricedSpan = z.object({ seconds: z.number().int(), costMicros: micros });

export const billingSessionView = z
  .object({
    workerId: z.string(),
    endpointId: z.string(),
    gpuType: z.string().describe("`cpu` for a worker without a GPU."),
    start: z.string().describe("When the provider was asked for the worker (log clock)."),
    end: z.string().nullable().describe("The exit, or a lost worker's last heartbeat; null while open."),
    endedBy: z.enum(["exited", "lost"]).nullable(),
    asOf: z.string().describe("The meter's view: the log up to this instant."),
    billedSeconds: z.number().int().describe("From the ledger: the sum of the worker's charges."),
    costMicros: micros.describe("From the ledger, positive."),
    metered: pricedSpan.describe("What the meter makes of the session as of `asOf` (an open session's charges lag it by up to a minute)."),
    weightsFetchMs: z.number().int().describe("The weights-fetch phase subtracted (not billed)."),
    pausedMs: z.number().int().describe("Time paused in a snapshot pool (not billed)."),
    jobs: z.array(
      z.object({
        jobId: z.string(),
        startedAt: z.string(),
        executionMs: z.number().int().nullable().describe("Null while the job runs."),
        seconds: z.number().int().nullable(),
        costMicros: micros.nullable().describe("Execution rounded up to whole seconds at the session's price: a share explaining the bill, not charged on its own."),
      }),
    ),
    jobCount: z.number().int().describe("Jobs the worker started; `jobs` lists the first 1000."),
    idle: pricedSpan.describe("Billable time after the worker was ready during which no job ran."),
  })
  .meta({ id: "BillingSession" });
export type BillingSessionView = z.infer<typeof billingSessionView>;

export const RECONCILE_EXPLANATIONS = ["lost", "weights_fetch", "paused", "open", "unexplained"] as const;
export const reconcileExplanation = z.enum(RECONCILE_EXPLANATIONS);
export type ReconcileExplanation = z.infer<typeof reconcileExplanation>;

export const reconciledSession = z.object({
  workerId: z.string(),
  tenantId: z.string(),
  endpointId: z.string(),
  gpuType: z.string().nullable(),
  state: z.string(),
  requestedAt: z.string(),
  endedAt: z.string().nullable(),
  /** requested → ended (or → `asOf` while open), as the records projector saw the scheduler's transitions. */
  observedMs: z.number().int(),
  observedSeconds: z.number().int().describe("ceil(observedMs / 1000)."),
  billedSeconds: z.number().int().describe("The sum of the worker's charges' seconds in the ledger."),
  billedMicros: micros,
  meter: z
    .object({
      seconds: z.number().int(),
      micros,
      endedBy: z.enum(["exited", "lost"]).nullable(),
      weightsFetchMs: z.number().int(),
      pausedMs: z.number().int(),
    })
    .nullable()
    .describe("The meter's view of the billing consumer's record; null when there is none or it cannot be metered."),
  settled: z.boolean().describe("The billing consumer wrote the session's settlement."),
});
export type ReconciledSession = z.infer<typeof reconciledSession>;

export const reconcileDifference = z.object({
  workerId: z.string(),
  tenantId: z.string(),
  billedSeconds: z.number().int(),
  observedSeconds: z.number().int(),
  differenceSeconds: z.number().int().describe("billed − observed."),
  explanation: reconcileExplanation,
  detail: z.string(),
});
export type ReconcileDifference = z.infer<typeof reconcileDifference>;

export const reconcileReport = z
  .object({
    from: z.string(),
    to: z.string(),
    asOf: z.string(),
    sessions: z.array(reconciledSession).describe("Sessions requested in [from, to), oldest first."),
    differences: z.array(reconcileDifference).describe("Every session whose billed seconds differ from its observed ones by more than one."),
    nextFrom: z.string().nullable().describe("Set when more sessions started in the range than one answer holds: ask again from here."),
  })
  .meta({ id: "BillingReconciliation" });
export type ReconcileReport = z.infer<typeof reconcileReport>;

/*
 * `billing_sessions` JSON columns as the billing consumer writes them (core/billing's MeterTransition
 * and WeightsFetchReport), checked on the way back in. A null optional field counts as absent.
 */
const absentIfNull = <S extends z.ZodType>(s: S) => z.preprocess((v) => (v === null ? undefined : v), s.optional());

export const storedMeterTransition = z.object({
  seq: z.string().regex(/^\d{1,16}-\d{1,16}$/),
  state: workerState,
  at: absentIfNull(z.number()),
  tenantId: absentIfNull(z.string()),
  gpuType: absentIfNull(z.string()),
  by: absentIfNull(z.enum(["worker", "scheduler"])),
});
export const storedWeightsFetch = z.object({ seq: z.string().regex(/^\d{1,16}-\d{1,16}$/), durationMs: z.number() });
