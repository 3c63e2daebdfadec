import type { Sql } from "postgres";
import { z } from "zod";
import { BillingError } from "../../../core/billing/billing-error.ts";
import { idleCost, jobCost, type JobRun } from "../../../core/billing/charges.ts";
import { CPU_GPU_TYPE, priceSteps, type PriceTable } from "../../../core/billing/price-table.ts";
import { meterPrepared, prepareSession, type SessionInput } from "../../../core/billing/session-meter.ts";
import { isTerminal, jobStatus } from "../../../core/contracts/job-view.ts";
import { storedMeterTransition, storedWeightsFetch, type BillingSessionView } from "../../../core/contracts/usage.ts";
import { pgSafeInt } from "../../../core/db/pg-int.ts";
import { ApiError } from "../api-error.ts";
import type { JobRecordView } from "./job-records.ts";
import type { PriceStore } from "./price-store.ts";

export interface SessionCostsOptions {
  sql: Sql;
  prices: PriceStore;
  /** Jobs a session's view lists (all of them count for its idle line). Default 1000. */
  maxJobsListed?: number;
}

const sessionGpuRow = z.object({ id: z.string(), gpu_type: z.string().nullable() });
const billingRow = z.object({ worker_id: z.string(), endpoint_id: z.string(), tenant_id: z.string(), transitions: z.unknown(), weights_fetches: z.unknown() });
const chargedRow = z.object({ seconds: pgSafeInt, cost: pgSafeInt });
const jobRow = z.object({ id: z.string(), started_at: z.coerce.date(), finished_at: z.coerce.date().nullable(), execution_time_ms: z.number().int().nullable() });

/**
 * A `billing_sessions` row as core/billing's meter input; throws (a 500: the billing consumer
 * wrote something it should not have) when its JSON columns do not hold what the meter takes.
 */
export function sessionInput(row: { worker_id: string; tenant_id: string; transitions: unknown; weights_fetches: unknown }): SessionInput {
  return {
    workerId: row.worker_id,
    endpointTenantId: row.tenant_id,
    transitions: z.array(storedMeterTransition).parse(row.transitions),
    weightsFetches: z.array(storedWeightsFetch).parse(row.weights_fetches),
  };
}

/** What a piece of work cost, for the tenant: jobs' shares and a session's bill line by line. */
export class SessionCosts {
  private readonly maxJobsListed: number;

  constructor(private readonly options: SessionCostsOptions) {
    this.maxJobsListed = options.maxJobsListed ?? 1000;
  }

  /**
   * The records with `costMicros` and `billedSeconds`: for a finished job with a worker, a start
   * and an execution time, its execution rounded up to whole seconds at its session's price
   * (core/billing `jobCost`; the GPU type is the session's, `cpu` when it has none). Null otherwise,
   * and when the session is no longer on record (past retention) or its type has no price.
   * One query for the whole page.
   */
  async withJobCosts(records: readonly JobRecordView[]): Promise<JobRecordView[]> {
    const billable = new Set(records.filter((r) => r.workerId !== null && r.startedAt !== null && r.executionTime !== null && isFinished(r.status)));
    if (billable.size === 0) return records.map((r) => ({ ...r, costMicros: null, billedSeconds: null }));
    const { sql } = this.options;
    const workerIds = [...new Set([...billable].map((r) => r.workerId!))];
    const gpuTypes = new Map(
      z
        .array(sessionGpuRow)
        .parse(await sql`select id, gpu_type from worker_sessions where id in ${sql(workerIds)}`)
        .map((s) => [s.id, s.gpu_type ?? CPU_GPU_TYPE]),
    );
    const table = await this.options.prices.table();
    return records.map((r) => {
      const gpuType = r.workerId === null ? undefined : gpuTypes.get(r.workerId);
      const cost = gpuType === undefined || !billable.has(r) ? null : priced(table, gpuType, { startedAt: Date.parse(r.startedAt!), executionMs: r.executionTime! });
      return { ...r, costMicros: cost?.micros ?? null, billedSeconds: cost?.seconds ?? null };
    });
  }

  /**
   * A session of the tenant as the meter sees it at `asOf` (ms, log clock), next to what the
   * ledger charged for it, with its jobs' shares and its idle line. Undefined when it is not the
   * tenant's, unknown, or has no transition in view. 409 `unmeterable` when the meter refuses it
   * (a GPU type without a price, an amount past 2^53): the billing consumer cannot charge it either.
   */
  async session(tenantId: string, workerId: string, asOf: number): Promise<BillingSessionView | undefined> {
    const { sql } = this.options;
    const row = z.array(billingRow).parse(
      await sql`select worker_id, endpoint_id, tenant_id, transitions, weights_fetches from billing_sessions where worker_id = ${workerId} and tenant_id = ${tenantId}`,
    )[0];
    if (!row) return undefined;
    const table = await this.options.prices.table();
    const meter = meterOrRefuse(() => meterPrepared(prepareSession(sessionInput(row)), table, asOf));
    // The session's own tenant is fixed by its `requested` transition.
    if (meter === null || meter.tenantId !== tenantId) return undefined;

    const [charged, jobRows] = await Promise.all([
      sql`select coalesce(sum(seconds), 0) as seconds, coalesce(-sum(amount_micros), 0) as cost
          from ledger_entries where tenant_id = ${tenantId} and worker_id = ${workerId} and kind = 'charge'`.then((r) => z.array(chargedRow).parse(r)[0]!),
      sql`select id, started_at, finished_at, execution_time_ms from jobs
          where worker_id = ${workerId} and tenant_id = ${tenantId} and started_at is not null order by started_at, id`.then((r) => z.array(jobRow).parse(r)),
    ]);
    // A job still running is busy up to the view's end; one ended without an execution time, up to its end.
    const runs: JobRun[] = jobRows.map((j) => {
      const startedAt = j.started_at.getTime();
      const until = j.execution_time_ms !== null ? startedAt + j.execution_time_ms : (j.finished_at?.getTime() ?? asOf);
      return { startedAt, executionMs: Math.max(0, until - startedAt) };
    });
    const idle = meterOrRefuse(() => idleCost(meter, runs));
    const jobs = jobRows.slice(0, this.maxJobsListed).map((j) => {
      const cost = j.execution_time_ms === null ? null : meterOrRefuse(() => jobCost({ startedAt: j.started_at.getTime(), executionMs: j.execution_time_ms! }, meter.priceSteps));
      return { jobId: j.id, startedAt: j.started_at.toISOString(), executionMs: j.execution_time_ms, seconds: cost?.seconds ?? null, costMicros: cost?.micros ?? null };
    });
    return {
      workerId,
      endpointId: row.endpoint_id,
      gpuType: meter.gpuType,
      start: iso(meter.start),
      end: meter.end === null ? null : iso(meter.end),
      endedBy: meter.endedBy,
      asOf: iso(asOf),
      billedSeconds: charged.seconds,
      costMicros: charged.cost,
      metered: { seconds: meter.seconds, costMicros: meter.micros },
      weightsFetchMs: meter.weightsFetchMs,
      pausedMs: meter.pausedMs,
      jobs,
      jobCount: jobRows.length,
      idle: { seconds: idle.seconds, costMicros: idle.micros },
    };
  }
}

const iso = (ms: number) => new Date(ms).toISOString();

function isFinished(status: string): boolean {
  const s = jobStatus.safeParse(status);
  return s.success && isTerminal(s.data);
}

function priced(table: PriceTable, gpuType: string, run: JobRun): { seconds: number; micros: number } | null {
  try {
    return jobCost(run, priceSteps(table, gpuType));
  } catch (e) {
    if (e instanceof BillingError) return null;
    throw e;
  }
}

function meterOrRefuse<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof BillingError) throw new ApiError(409, "unmeterable", `the session cannot be metered (${e.code}): ${e.message}`);
    throw e;
  }
}
