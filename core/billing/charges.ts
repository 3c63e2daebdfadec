import { clip, subtract, type Interval } from "./intervals.ts";
import { addMicros, floorDiv } from "./micros.ts";
import type { PriceStep, PriceTable } from "./price-table.ts";
import { meterPrepared, prepareSession, type SessionInput, type SessionMeter } from "./session-meter.ts";
import { priceTime, type PricedTime } from "./timeline-pricing.ts";

const MINUTE_MS = 60_000;

/** One row of the ledger; the ledger inserts with ON CONFLICT (key) DO NOTHING. */
export interface ChargeEntry {
  /** `session:<workerId>:minute:<n>` (n: the UTC minute, ms epoch / 60000) or `session:<workerId>:settle`. */
  key: string;
  kind: "minute" | "settle";
  workerId: string;
  tenantId: string;
  gpuType: string;
  /** ms epoch the charge is dated by: the minute's start, or the session's end. */
  at: number;
  /** May be negative: a correction of seconds charged provisionally (see `sessionCharges`). */
  seconds: number;
  micros: number;
}

type Running = Pick<PricedTime, "seconds" | "micros">;
const NOTHING: Running = { seconds: 0, micros: 0 };

/**
 * The ledger entries a session should have once the log has been read up to `until` (ms on the
 * log's clock; every entry before it handed in). Recomputing with more of the log only adds entries;
 * an entry once due never changes key or amount, so a replay writes nothing new.
 *
 * Let R(P) be the session's running total as the log shows it before P (`meterPrepared` at asOf P:
 * whole elapsed seconds while open, ceil once ended). Minute buckets are UTC minutes, so every day
 * and month boundary is a bucket boundary. Bucket n = [60000·n, 60000·(n+1)) is due when its end
 * b is ≤ `until` and the session was still open before b (no exit or loss entry earlier than b); its amount
 * is R(b) − R(start of the bucket, or 0): it depends only on entries before b, so it is the same
 * whenever it is computed. Buckets with nothing in them (a paused or booting minute) are not
 * written. Once the end is in view the `settle` entry brings the sum to R(end): exactly the
 * session's ceil-rounded seconds, each at its own price. It is negative when the log took back
 * time already rolled up: a `lost` worker ends at its last heartbeat, before the minutes charged
 * until it was noticed; a weights-fetch report logged after the worker was ready.
 *
 * Cost: one meter view per minute bucket returned (see `fromMinute`).
 */
export function sessionCharges(input: SessionInput, table: PriceTable, until: number, options: ChargeOptions = {}): ChargeEntry[] {
  const prepared = prepareSession(input);
  const meter = meterPrepared(prepared, table, until);
  if (meter === null) return [];
  const runningTotal = (at: number): Running => meterPrepared(prepared, table, at) ?? NOTHING;
  const entry = (key: string, kind: ChargeEntry["kind"], at: number, now: Running, before: Running): ChargeEntry => ({
    key: `session:${meter.workerId}:${key}`,
    kind,
    workerId: meter.workerId,
    tenantId: meter.tenantId,
    gpuType: meter.gpuType,
    at,
    seconds: now.seconds - before.seconds,
    micros: addMicros(now.micros, -before.micros),
  });
  const out: ChargeEntry[] = [];
  const lastDue = lastDueBoundary(meter, until);
  const firstBoundary = Math.max(floorDiv(meter.start, MINUTE_MS) + 1, (options.fromMinute ?? -Infinity) + 1) * MINUTE_MS;
  let charged = runningTotal(firstBoundary - MINUTE_MS);
  for (let b = firstBoundary; b <= lastDue; b += MINUTE_MS) {
    const now = runningTotal(b);
    if (now.seconds !== charged.seconds || now.micros !== charged.micros) out.push(entry(`minute:${b / MINUTE_MS - 1}`, "minute", b - MINUTE_MS, now, charged));
    charged = now;
  }
  if (meter.end !== null) out.push(entry("settle", "settle", meter.end, meter, runningTotal(lastDue)));
  return out;
}

/**
 * The last minute boundary (ms) whose bucket is due: read up to `until`, and not past the first
 * entry that ends (or begins to end) the session, whichever end its grace then confirms. Every
 * bucket before it is final: `lastDueBoundary / 60000 − 1` is the last minute a writer needs never
 * look at again.
 */
export function lastDueBoundary(meter: SessionMeter, until: number): number {
  return floorDiv(Math.min(until, meter.closingLoggedAt ?? Infinity), MINUTE_MS) * MINUTE_MS;
}

export interface ChargeOptions {
  /**
   * The first UTC minute (ms epoch / 60000) to return a bucket for, e.g. the one after the last the
   * ledger holds: the result is the full one without the earlier buckets, computed in time
   * proportional to the minutes returned rather than to the session's age. Default: all of them.
   */
  fromMinute?: number;
}

/** One job's run on a session, dated by the log: its `active` entry and its finish entry. */
export interface JobRun {
  startedAt: number;
  executionMs: number;
}

/**
 * A job's share of its session's cost: its execution rounded up to whole seconds, each second at
 * the session's price in force when it started. A share explains the bill; it is not charged on
 * its own, so with concurrency > 1 (overlapping jobs) or many short jobs (each rounded up) the
 * shares and the idle line do not add up to the session's total.
 */
export function jobCost(job: JobRun, steps: readonly PriceStep[]): PricedTime {
  return priceTime(job.executionMs > 0 ? [{ from: job.startedAt, to: job.startedAt + job.executionMs }] : [], steps, "ceil");
}

/**
 * The idle line of a session: its billable time after it became ready during which no job ran
 * (the boot span is not idle), rounded like the session (ceil once ended, floor while open).
 */
export function idleCost(meter: SessionMeter, jobs: readonly JobRun[]): PricedTime {
  const ready = meter.readyAt === null ? [] : clip(meter.intervals, meter.readyAt, Infinity);
  const busy: Interval[] = jobs.map((j) => ({ from: j.startedAt, to: j.startedAt + j.executionMs }));
  return priceTime(subtract(ready, busy), meter.priceSteps, meter.end === null ? "floor" : "ceil");
}
