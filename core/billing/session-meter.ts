import type { WorkerState } from "../contracts/worker-state.ts";
import { parseStreamId, type LogEntry } from "../log/log-entry.ts";
import { BillingError } from "./billing-error.ts";
import { clip, dropFirst, measure, subtract, type Interval } from "./intervals.ts";
import { CPU_GPU_TYPE, priceSteps, type PriceStep, type PriceTable } from "./price-table.ts";
import { priceTime, type PricedTime } from "./timeline-pricing.ts";

/** One `hearth:worker` transition of a session, as the log holds it. */
export interface MeterTransition {
  /** The log entry's id `<ms>-<n>`: its ms (Redis' clock) dates the transition, the pair orders it. */
  seq: string;
  state: WorkerState;
  /**
   * The payload's `at`. Only a `lost` transition's counts (its last heartbeat as Redis received it);
   * on any other it may come from the worker's clock and is ignored: the entry's time wins.
   */
  at?: number;
  tenantId?: string;
  gpuType?: string;
  /**
   * Who logged an `exited`: the `scheduler` once its provider saw the process end (the session's
   * true end), or the `worker` itself just before it exits (absent on entries from before the field).
   */
  by?: "worker" | "scheduler";
}

/**
 * How long (ms of log time) after a worker's own `exited` the meter waits for the scheduler's, which
 * dates the end of the process. Past it the worker's own entry ends the session: the scheduler that
 * ran the worker may be gone.
 */
export const EXIT_CONFIRM_GRACE_MS = 30_000;

/** The worker's report of its weights-fetch phase (model download), which is not billed. */
export interface WeightsFetchReport {
  /** The log entry's id that carried the report. */
  seq: string;
  durationMs: number;
}

export interface SessionInput {
  workerId: string;
  /** The endpoint's tenant: the session's when its `requested` transition names none. */
  endpointTenantId: string;
  /** In any order, duplicates allowed (a replayed log hands the same entry twice). */
  transitions: readonly MeterTransition[];
  weightsFetches?: readonly WeightsFetchReport[];
}

export interface IgnoredTransition {
  seq: string;
  state: WorkerState;
  why: "duplicate" | "before start" | "repeated requested" | "after end";
}

export interface SessionMeter extends PricedTime {
  workerId: string;
  /** Fixed by the session's first transition (`requested`), like its GPU type. */
  tenantId: string;
  /** `cpu` for a worker without a GPU. */
  gpuType: string;
  /** ms of the `requested` entry; of the first entry when no `requested` was logged (`startInferred`). */
  start: number;
  startInferred: boolean;
  /** ms of the first `idle` or `running`: the end of the boot span; null while booting. */
  readyAt: number | null;
  /** Billing end: the `exited` entry's ms, or a `lost` worker's last heartbeat; null while open. */
  end: number | null;
  endedBy: "exited" | "lost" | null;
  /** ms of the entry that ended the session (a `lost` is logged after the heartbeat that dates it). */
  endLoggedAt: number | null;
  /**
   * ms of the first `exited` or `lost` entry in view, even while the end waits for the scheduler's
   * confirmation: no minute is charged as open time after it (core/billing/charges.ts).
   */
  closingLoggedAt: number | null;
  /** The view: entries at or after this ms are not in it; an open session is metered up to it. */
  asOf: number;
  pausedMs: number;
  /** Weights-fetch ms subtracted (the report, at most the billable boot span). */
  weightsFetchMs: number;
  /** Open and not ready yet: the boot span is not charged until its weights fetch is known. */
  bootPending: boolean;
  /** Billable spans (paused spans and the weights fetch removed). */
  intervals: Interval[];
  /** The price steps of the session's GPU type, for `jobCost`. */
  priceSteps: PriceStep[];
  ignored: IgnoredTransition[];
}

interface Ordered extends MeterTransition {
  ms: number;
  n: number;
}

/** A session's log entries parsed and in log order, computed once for many views. */
export interface PreparedSession {
  input: SessionInput;
  transitions: Ordered[];
  duplicates: Ordered[];
  weightsFetches: { ms: number; n: number; durationMs: number }[];
}

/** The transition a `hearth:worker` log entry records. */
export function transitionOf(entry: Extract<LogEntry, { kind: "worker" }>): MeterTransition {
  const { state, at, tenantId, gpuType, by } = entry.p;
  return { seq: entry.id, state, at, tenantId, gpuType, ...(by !== undefined && { by }) };
}

export function prepareSession(input: SessionInput): PreparedSession {
  const parsed = input.transitions.map((t) => ({ ...t, ...parseStreamId(t.seq) }));
  parsed.sort((a, b) => a.ms - b.ms || a.n - b.n);
  const transitions: Ordered[] = [];
  const duplicates: Ordered[] = [];
  for (const t of parsed) (transitions.at(-1)?.seq === t.seq ? duplicates : transitions).push(t);
  const weightsFetches = (input.weightsFetches ?? []).map((w) => ({ ...parseStreamId(w.seq), durationMs: w.durationMs }));
  return { input, transitions, duplicates, weightsFetches };
}

/** `meterPrepared(prepareSession(input), table, asOf)`. */
export function meterSession(input: SessionInput, table: PriceTable, asOf: number): SessionMeter | null {
  return meterPrepared(prepareSession(input), table, asOf);
}

/**
 * Meters one worker session as the log shows it up to `asOf` (ms on the log's clock: every entry
 * earlier than it must have been handed in; the caller's read position, never a process clock).
 * Returns null when no transition of the session is in view yet.
 *
 * - Start: the first `requested` entry (later ones are ignored), which also fixes tenant and GPU type.
 * - End: a `lost` (its `at`, kept within [start, its entry's time]), or the process's exit. The
 *   scheduler's `exited` (`by: scheduler`, logged once its provider saw the process end) ends the
 *   session at its entry's time; a worker's own `exited` (logged just before its process ends) only
 *   starts a grace of EXIT_CONFIRM_GRACE_MS: the last `exited` logged within it ends the session
 *   (the scheduler's, normally ms later), or the worker's own once the grace has passed in view
 *   with none (its scheduler is gone). Every other transition after the first exit or loss is
 *   ignored. Open sessions, and sessions waiting out the grace, are metered up to `asOf`.
 * - Paused: from a `paused` entry to the next entry of any other state (or the end) is free.
 * - Weights fetch: the largest report logged before the end (a resent report must not be
 *   subtracted twice), capped at the billable time before the first `idle`/`running`, is removed
 *   from the start of the session. While an open session is still booting nothing is charged yet,
 *   so a report arriving with its ready transition never has to take back seconds already rolled up.
 * - Seconds: closed sessions ceil(billable ms / 1000), open ones floor (see `priceTime`).
 *
 * Throws `BillingError` when the GPU type has no price for some billable second, or on overflow.
 */
export function meterPrepared(prepared: PreparedSession, table: PriceTable, asOf: number): SessionMeter | null {
  const { input } = prepared;
  const inView = prepared.transitions.filter((t) => t.ms < asOf);
  const ignored: IgnoredTransition[] = prepared.duplicates.filter((t) => t.ms < asOf).map((t) => ({ seq: t.seq, state: t.state, why: "duplicate" }));
  const requested = inView.findIndex((t) => t.state === "requested");
  const startIndex = requested >= 0 ? requested : inView.length > 0 ? 0 : -1;
  const first = inView[startIndex];
  if (first === undefined) return null;
  const start = first.ms;
  for (const t of inView.slice(0, startIndex)) ignored.push({ seq: t.seq, state: t.state, why: "before start" });

  const pauses: Interval[] = [];
  let pausedFrom: number | null = null;
  let readyAt: number | null = null;
  // The end: a `lost` (dated by its heartbeat) or an `exited` that ends the session (see above).
  let ending: { t: Ordered; at: number; by: "exited" | "lost" } | null = null;
  // The first and the last `exited` while the end waits for the scheduler's confirmation.
  let firstExit: Ordered | null = null;
  let lastExit: Ordered | null = null;
  const graceOver = (ms: number) => firstExit !== null && ms > firstExit.ms + EXIT_CONFIRM_GRACE_MS;
  for (const t of inView.slice(startIndex + 1)) {
    if (ending === null && lastExit !== null && graceOver(t.ms)) ending = { t: lastExit, at: lastExit.ms, by: "exited" };
    if (ending !== null) {
      ignored.push({ seq: t.seq, state: t.state, why: "after end" });
    } else if (t.state === "exited") {
      firstExit ??= t;
      lastExit = t;
      if (t.by === "scheduler") ending = { t, at: t.ms, by: "exited" };
    } else if (firstExit !== null) {
      // Nothing runs after its process said it exits; a `lost` now is a sweep of the same end.
      ignored.push({ seq: t.seq, state: t.state, why: "after end" });
    } else if (t.state === "requested") {
      ignored.push({ seq: t.seq, state: t.state, why: "repeated requested" });
    } else if (t.state === "lost") {
      // A heartbeat cannot be received after the entry that reports it missing, nor before the start.
      const at = t.at !== undefined && Number.isFinite(t.at) ? Math.min(t.ms, Math.max(start, Math.floor(t.at))) : t.ms;
      ending = { t, at, by: "lost" };
      firstExit = t;
    } else if (t.state === "paused") {
      pausedFrom ??= t.ms;
    } else {
      if (pausedFrom !== null) pauses.push({ from: pausedFrom, to: t.ms });
      pausedFrom = null;
      if (readyAt === null && (t.state === "idle" || t.state === "running")) readyAt = t.ms;
    }
  }
  if (ending === null && lastExit !== null && graceOver(asOf)) ending = { t: lastExit, at: lastExit.ms, by: "exited" };
  const end = ending?.at ?? null;
  const closing: Ordered | null = firstExit;
  const stop = end ?? asOf;
  if (pausedFrom !== null) pauses.push({ from: pausedFrom, to: stop });
  // A lost worker's end may precede transitions logged after its last heartbeat.
  if (readyAt !== null && readyAt >= stop) readyAt = null;

  const running = subtract([{ from: start, to: stop }], pauses);
  const bootMs = measure(clip(running, start, readyAt ?? stop));
  // A report logged after the end cannot come from the worker; ignoring it also keeps a settled
  // total from changing when the log is read further.
  const reported = prepared.weightsFetches
    .filter((w) => w.ms < asOf && (closing === null || w.ms < closing.ms || (w.ms === closing.ms && w.n < closing.n)) && Number.isFinite(w.durationMs))
    .reduce((max, w) => Math.max(max, Math.floor(w.durationMs)), 0);
  const weightsFetchMs = Math.min(reported, bootMs);
  const bootPending = end === null && readyAt === null;
  const intervals = bootPending ? [] : dropFirst(running, weightsFetchMs);

  const gpuType = first.gpuType || CPU_GPU_TYPE;
  const steps = priceSteps(table, gpuType);
  let priced: PricedTime;
  try {
    priced = priceTime(intervals, steps, end === null ? "floor" : "ceil");
  } catch (e) {
    if (e instanceof BillingError && e.code === "UNPRICED_GPU_TYPE") {
      throw new BillingError(e.code, `worker ${input.workerId}, GPU type ${JSON.stringify(gpuType)}: ${e.message}`);
    }
    throw e;
  }
  return {
    ...priced,
    workerId: input.workerId,
    tenantId: first.tenantId ?? input.endpointTenantId,
    gpuType,
    start,
    startInferred: first.state !== "requested",
    readyAt,
    end,
    endedBy: ending?.by ?? null,
    endLoggedAt: ending?.t.ms ?? null,
    closingLoggedAt: closing?.ms ?? null,
    asOf,
    pausedMs: stop - start - measure(running),
    weightsFetchMs,
    bootPending,
    intervals,
    priceSteps: steps,
    ignored,
  };
}
