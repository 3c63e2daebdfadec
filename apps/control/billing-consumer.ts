import type { Sql, TransactionSql } from "postgres";
import { z } from "zod";
import { storedMeterTransition, storedWeightsFetch } from "../../core/contracts/usage.ts";
import { compactTransitions } from "../../core/billing/compact-transitions.ts";
import { lastDueBoundary, sessionCharges, type ChargeEntry } from "../../core/billing/charges.ts";
import { DEFAULT_PRICES, type PriceTable } from "../../core/billing/price-table.ts";
import { meterSession, transitionOf, type SessionInput, type WeightsFetchReport } from "../../core/billing/session-meter.ts";
import { pgSafeInt } from "../../core/db/pg-int.ts";
import { toPgText } from "../../core/db/pg-text.ts";
import { PRICE_VERSIONS_LOCK, readPriceTable } from "../../core/db/price-versions.ts";
import type { LogEntry } from "../../core/log/log-entry.ts";
import { errorFields, type Log } from "../../core/log/process-log.ts";
import type { BalanceCache } from "../../core/redis/balance-cache.ts";
import type { BilledRow, ControlMetrics } from "./control-metrics.ts";
import { isTransient, type EntryContext, type LogConsumer } from "./log-consumer.ts";

export interface BillingConsumerOptions {
  /** Rebuilt for every tenant a batch charged, once it committed. */
  balances: BalanceCache;
  log: Log;
  /** The seed of the price table. Default core/billing's DEFAULT_PRICES. */
  defaultPrices?: PriceTable;
  /**
   * Least log time (ms) between two metering passes over an endpoint whose batches hold no worker
   * transition (a busy log of jobs): charges only fall due at minute boundaries, and a pass costs a
   * few queries. Default 5000.
   */
  passEveryMs?: number;
  /** Told the seconds of the ledger rows a transaction inserted, once it committed. */
  metrics?: ControlMetrics;
}

// The JSON columns read back: checked as the meter's own types (the same schemas the API reads them with).
const recordRow = z.object({ worker_id: z.string(), transitions: z.array(storedMeterTransition), weights_fetches: z.array(storedWeightsFetch) });
const openRow = recordRow.extend({ tenant_id: z.string(), charged_minute: pgSafeInt.nullable(), error: z.string().nullable() });

type WorkerEntry = Extract<LogEntry, { kind: "worker" }>;
const MINUTE_MS = 60_000;

/**
 * Turns worker sessions into charges on the ledger, as the log shows them: each `hearth:worker`
 * entry is added to its session's billing record (`billing_sessions`), and after every batch (and
 * every few seconds while an endpoint's log is quiet) each open session of the endpoint is metered
 * up to how far the log has been read (core/billing/charges.ts): its due minutes and, once it
 * ended, its settlement are inserted with their idempotency keys (ON CONFLICT DO NOTHING). The
 * entries, the records and the consumer's cursor commit together; a replay, a crash or a second
 * consumer writes nothing twice. A session that cannot be metered (its GPU type has no price, its
 * tenant is gone) keeps its error on its record and never holds up the others.
 */
export class BillingConsumer implements LogConsumer {
  readonly name = "billing";
  private readonly defaults: PriceTable;
  /** Tenants charged by the transaction in flight, per endpoint: their cached balances are rebuilt once it commits. */
  private readonly charged = new Map<string, Set<string>>();
  /** Endpoints whose batch in flight holds worker transitions: their sessions are metered at its end. */
  private readonly transitioned = new Set<string>();
  /** Per endpoint, the log position (ms) of its last metering pass: a busy log meters at most every `passEveryMs`. */
  private readonly lastPass = new Map<string, number>();
  /**
   * Seconds of the ledger rows the transaction in flight inserted, per endpoint: handed to the
   * metrics once it commits. Reset when the transaction meters (`finishBatch`, `advance`), so a
   * transaction that rolled back leaves nothing behind for the next one to count.
   */
  private readonly inserted = new Map<string, BilledRow[]>();

  constructor(private readonly options: BillingConsumerOptions) {
    this.defaults = options.defaultPrices ?? DEFAULT_PRICES;
  }

  async apply(tx: TransactionSql, entry: LogEntry, ctx: EntryContext): Promise<void> {
    if (entry.kind === "worker") await this.record(tx, [entry], ctx);
  }

  async applyBatch(tx: TransactionSql, entries: LogEntry[], ctx: EntryContext): Promise<void> {
    const workers = entries.filter((e): e is WorkerEntry => e.kind === "worker");
    if (workers.length > 0) await this.record(tx, workers, ctx);
  }

  /**
   * Meters the endpoint's open sessions when the batch changed one, when a minute boundary passed
   * since the last pass, or every `passEveryMs` of log time otherwise (a session waiting out its exit
   * grace). The throttle is memory only: a restarted consumer meters at its first batch.
   */
  async finishBatch(tx: TransactionSql, ctx: EntryContext): Promise<void> {
    this.inserted.delete(ctx.endpointId);
    const due = this.transitioned.has(ctx.endpointId) || this.meteringDue(ctx);
    this.transitioned.delete(ctx.endpointId);
    if (!due) return;
    await this.charge(tx, ctx);
    this.lastPass.set(ctx.endpointId, ctx.until);
  }

  /** A batch without worker transitions, read while no metering pass is due, changes nothing here. */
  needsTransaction(entries: readonly LogEntry[], ctx: EntryContext): boolean {
    return entries.some((e) => e.kind === "worker") || this.meteringDue(ctx);
  }

  private meteringDue(ctx: EntryContext): boolean {
    const last = this.lastPass.get(ctx.endpointId);
    return last === undefined || Math.floor(ctx.until / MINUTE_MS) > Math.floor(last / MINUTE_MS) || ctx.until - last >= (this.options.passEveryMs ?? 5000);
  }

  async advance(sql: Sql, ctx: EntryContext): Promise<void> {
    const open = await sql`select 1 from billing_sessions where endpoint_id = ${ctx.endpointId} and settled_at is null limit 1`;
    if (open.length === 0) return;
    this.inserted.delete(ctx.endpointId);
    await sql.begin((tx) => this.charge(tx, ctx));
    this.committed(ctx);
  }

  committed(ctx: EntryContext): void {
    const seconds = this.inserted.get(ctx.endpointId);
    this.inserted.delete(ctx.endpointId);
    if (seconds) this.options.metrics?.billedSeconds(ctx.endpointId, seconds);
    const tenants = this.charged.get(ctx.endpointId);
    this.charged.delete(ctx.endpointId);
    if (!tenants || tenants.size === 0) return;
    this.options.balances.rebuild([...tenants]).catch((err: unknown) => {
      // The periodic rebuild (control plane) repairs it; until then the cache shows the older sum.
      this.options.log({ level: "warn", msg: "balance cache rebuild failed", tenants: [...tenants], ...errorFields(err) });
    });
  }

  /** Adds the entries' transitions and weights reports to their sessions' billing records. */
  private async record(tx: TransactionSql, entries: WorkerEntry[], ctx: EntryContext): Promise<void> {
    this.transitioned.add(ctx.endpointId);
    const byWorker = new Map<string, WorkerEntry[]>();
    for (const e of entries) {
      const list = byWorker.get(e.p.workerId);
      if (list) list.push(e);
      else byWorker.set(e.p.workerId, [e]);
    }
    const ids = [...byWorker.keys()];
    const rows = z.array(recordRow).parse(
      await tx`select worker_id, transitions, weights_fetches from billing_sessions where worker_id = any(${ids}) for update`,
    );
    const existing = new Map(rows.map((r) => [r.worker_id, r]));
    for (const [workerId, list] of byWorker) {
      const row = existing.get(workerId);
      const transitions = compactTransitions([...(row?.transitions ?? []), ...list.map(transitionOf)]);
      const reports: WeightsFetchReport[] = [...(row?.weights_fetches ?? [])];
      for (const e of list) {
        if (e.p.weightsFetchMs !== undefined && !reports.some((r) => r.seq === e.id)) reports.push({ seq: e.id, durationMs: e.p.weightsFetchMs });
      }
      await tx`
        insert into billing_sessions (worker_id, endpoint_id, tenant_id, transitions, weights_fetches)
        values (${workerId}, ${ctx.endpointId}, ${ctx.tenantId}, ${JSON.stringify(transitions)}::text::jsonb, ${JSON.stringify(reports)}::text::jsonb)
        on conflict (worker_id) do update set transitions = excluded.transitions, weights_fetches = excluded.weights_fetches, updated_at = now()`;
    }
  }

  /** Meters every open session of the endpoint up to `ctx.until` and writes what is due. */
  private async charge(tx: TransactionSql, ctx: EntryContext): Promise<void> {
    const open = z.array(openRow).parse(
      await tx`select worker_id, tenant_id, transitions, weights_fetches, charged_minute, error from billing_sessions
               where endpoint_id = ${ctx.endpointId} and settled_at is null for update`,
    );
    if (open.length === 0) return;
    // Shared with the admin's exclusive hold while adding a version (core/db/price-versions.ts).
    await tx`select pg_advisory_xact_lock_shared(hashtext(${PRICE_VERSIONS_LOCK}))`;
    const table = await readPriceTable(tx, this.defaults);
    for (const row of open) {
      try {
        const seconds = await tx.savepoint((sp) => this.chargeSession(sp, row, table, ctx));
        // Counted once its savepoint held: rows rolled back with it were never written.
        if (seconds.length > 0) {
          const pending = this.inserted.get(ctx.endpointId);
          if (pending) pending.push(...seconds);
          else this.inserted.set(ctx.endpointId, seconds);
        }
      } catch (err) {
        if (isTransient(err)) throw err;
        const message = errorFields(err).error.slice(0, 2000);
        if (row.error !== message) this.options.log({ level: "warn", msg: "worker session not billable", workerId: row.worker_id, endpointId: ctx.endpointId, error: message });
        await tx`update billing_sessions set error = ${toPgText(message).text}, updated_at = now() where worker_id = ${row.worker_id}`;
      }
    }
  }

  /** Returns the ledger rows it inserted. */
  private async chargeSession(sql: TransactionSql, row: z.infer<typeof openRow>, table: PriceTable, ctx: EntryContext): Promise<BilledRow[]> {
    const input: SessionInput = {
      workerId: row.worker_id,
      endpointTenantId: row.tenant_id,
      transitions: row.transitions,
      weightsFetches: row.weights_fetches,
    };
    const meter = meterSession(input, table, ctx.until);
    if (meter === null) return [];
    const entries = sessionCharges(input, table, ctx.until, row.charged_minute === null ? {} : { fromMinute: row.charged_minute + 1 });
    const written = entries.length > 0 ? await this.insert(sql, entries, ctx) : [];
    const through = lastDueBoundary(meter, ctx.until) / MINUTE_MS - 1;
    const settledAt = meter.end === null ? null : new Date(meter.end).toISOString();
    if (entries.length === 0 && settledAt === null && row.error === null && row.charged_minute !== null && through <= row.charged_minute) return written;
    await sql`
      update billing_sessions set
        charged_minute = greatest(coalesce(charged_minute, ${through}), ${through}),
        settled_at = ${settledAt}::timestamptz, error = null, updated_at = now()
      where worker_id = ${row.worker_id}`;
    if (entries.length > 0) {
      let tenants = this.charged.get(ctx.endpointId);
      if (!tenants) this.charged.set(ctx.endpointId, (tenants = new Set()));
      tenants.add(meter.tenantId);
    }
    return written;
  }

  /** Inserts the charges not written yet; returns those it wrote (seconds and GPU type). */
  private async insert(sql: TransactionSql, entries: ChargeEntry[], ctx: EntryContext): Promise<BilledRow[]> {
    const rows = entries.map((e) => ({
      tenant_id: e.tenantId,
      key: e.key,
      kind: "charge",
      // A charge takes money: negative; a settlement that takes time back gives it back.
      amount_micros: String(-e.micros),
      seconds: e.seconds,
      endpoint_id: ctx.endpointId,
      worker_id: e.workerId,
      gpu_type: e.gpuType,
      at: new Date(e.at).toISOString(),
      reason: e.kind === "settle" ? "worker session settled" : "worker time",
    }));
    // Only the rows this insert really wrote come back: a replay's, or another consumer's, do not.
    const written = z
      .array(z.object({ seconds: z.number().int(), gpu_type: z.string().nullable() }))
      .parse(await sql`insert into ledger_entries ${sql(rows)} on conflict (key) do nothing returning seconds, gpu_type`);
    // A charge always names its GPU type (the column is nullable for credits and adjustments).
    return written.map((w) => ({ seconds: w.seconds, gpuType: w.gpu_type ?? "" }));
  }
}
