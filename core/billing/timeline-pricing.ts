import { BillingError } from "./billing-error.ts";
import type { Interval } from "./intervals.ts";
import { measure } from "./intervals.ts";
import { addMicros, ceilDiv, floorDiv, mulMicros } from "./micros.ts";
import type { PriceStep } from "./price-table.ts";

const DAY_MS = 86_400_000;

/**
 * How billable time becomes whole seconds. `ceil`: every started second (a closed session, a job);
 * `floor`: only seconds already complete (an open session's running total, which must never charge
 * a second that has not elapsed).
 */
export type Rounding = "ceil" | "floor";

/** The seconds of one UTC day at one price version. */
export interface PricedPart {
  /** UTC date, `YYYY-MM-DD`; the month is its first 7 characters. */
  day: string;
  /** ms epoch the price version took effect. */
  priceFrom: number;
  microsPerSecond: number;
  /** First and last-plus-one billable ms of the part (it may span a pause). */
  from: number;
  to: number;
  billableMs: number;
  seconds: number;
  micros: number;
}

export interface PricedTime {
  billableMs: number;
  seconds: number;
  micros: number;
  parts: PricedPart[];
}

const utcDay = (t: number): string => new Date(t).toISOString().slice(0, 10);

/**
 * Prices billable time second by second.
 *
 * Lay the billable spans end to end (pauses and gaps vanish) and number the seconds of that
 * timeline 1…N, where N = ceil(total / 1000) or floor(total / 1000) as `rounding` says. Second j
 * starts at billable offset 1000·(j − 1); it is priced at the price in force at that instant and
 * counted in that instant's UTC day. So a price change applies to the seconds that start at or
 * after its `effectiveFrom` (a second already under way keeps its price: never retroactive), and
 * the parts add up to exactly N seconds. A part holding billable offsets [a, b) gets
 * min(ceil(b/1000), N) − min(ceil(a/1000), N) seconds: the cumulative ceiling, which telescopes.
 *
 * Throws `BillingError("UNPRICED_GPU_TYPE")` when billable time falls before the first step.
 */
export function priceTime(intervals: readonly Interval[], steps: readonly PriceStep[], rounding: Rounding): PricedTime {
  const billableMs = measure(intervals);
  const n = rounding === "ceil" ? ceilDiv(billableMs, 1000) : floorDiv(billableMs, 1000);
  const secondsUpTo = (offset: number) => Math.min(ceilDiv(offset, 1000), n);
  const parts: PricedPart[] = [];
  let micros = 0;
  let offset = 0;
  for (const iv of intervals) {
    let t = iv.from;
    while (t < iv.to) {
      let k = -1;
      while (k + 1 < steps.length && steps[k + 1]!.from <= t) k++;
      const step = steps[k];
      if (step === undefined) throw new BillingError("UNPRICED_GPU_TYPE", `no price in force at ${new Date(t).toISOString()}`);
      const end = Math.min(iv.to, steps[k + 1]?.from ?? Infinity, floorDiv(t, DAY_MS) * DAY_MS + DAY_MS);
      const seconds = secondsUpTo(offset + (end - t)) - secondsUpTo(offset);
      const day = utcDay(t);
      const last = parts.at(-1);
      if (last && last.day === day && last.priceFrom === step.from) {
        last.to = end;
        last.billableMs += end - t;
        last.seconds += seconds;
        last.micros = mulMicros(last.seconds, last.microsPerSecond);
      } else {
        parts.push({ day, priceFrom: step.from, microsPerSecond: step.microsPerSecond, from: t, to: end, billableMs: end - t, seconds, micros: mulMicros(seconds, step.microsPerSecond) });
      }
      offset += end - t;
      t = end;
    }
  }
  for (const p of parts) micros = addMicros(micros, p.micros);
  return { billableMs, seconds: n, micros, parts };
}

export interface PeriodTotal {
  seconds: number;
  micros: number;
}

/** Seconds and µ$ per UTC day (`YYYY-MM-DD`) or month (`YYYY-MM`), in time order. */
export function totalsBy(parts: readonly PricedPart[], period: "day" | "month"): Map<string, PeriodTotal> {
  const out = new Map<string, PeriodTotal>();
  for (const p of parts) {
    const key = period === "day" ? p.day : p.day.slice(0, 7);
    const t = out.get(key) ?? { seconds: 0, micros: 0 };
    out.set(key, { seconds: t.seconds + p.seconds, micros: addMicros(t.micros, p.micros) });
  }
  return out;
}
