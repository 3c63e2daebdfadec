import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { WorkerState } from "../contracts/worker-state.ts";
import { idleCost, jobCost, sessionCharges, type ChargeEntry } from "./charges.ts";
import type { PriceTable } from "./price-table.ts";
import { meterSession, type MeterTransition, type SessionInput } from "./session-meter.ts";

const T = Date.UTC(2025, 2, 10, 12, 0, 0); // 2025-03-10T12:00:00Z, a minute boundary
const MIN = 60_000;
const M = T / MIN; // the UTC minute number of 12:00
const FAR = T + 86_400_000;
const TABLE: PriceTable = { versions: [{ effectiveFrom: 0, prices: { cpu: 20, AMPERE_80: 760 } }] };

const tr = (state: WorkerState, ms: number, extra: Partial<MeterTransition> = {}): MeterTransition => ({ seq: `${ms}-0`, state, ...extra });
const session = (transitions: MeterTransition[], over: Partial<SessionInput> = {}): SessionInput => ({
  workerId: "w1",
  endpointTenantId: "t0",
  transitions,
  ...over,
});
const start = (ms = T) => tr("requested", ms, { tenantId: "t1", gpuType: "AMPERE_80" });
/** [key suffix, seconds, micros] of each entry. */
const rows = (entries: ChargeEntry[]) => entries.map((e) => [e.key.replace("session:w1:", ""), e.seconds, e.micros]);
const sum = (entries: ChargeEntry[]) => entries.reduce((s, e) => ({ seconds: s.seconds + e.seconds, micros: s.micros + e.micros }), { seconds: 0, micros: 0 });

describe("sessionCharges — minute roll-up and settlement", () => {
  // requested 12:00:20, ready 12:00:25, exited 12:02:40.3: 140.3 s → 141 s.
  const input = session([start(T + 20_000), tr("idle", T + 25_000), tr("exited", T + 160_300)]);

  it("charges each UTC minute as it passes, then settles to the rounded-up total", () => {
    const entries = sessionCharges(input, TABLE, FAR);
    expect(rows(entries)).toEqual([
      [`minute:${M}`, 40, 40 * 760],
      [`minute:${M + 1}`, 60, 60 * 760],
      ["settle", 41, 41 * 760],
    ]);
    expect(sum(entries)).toEqual({ seconds: 141, micros: 141 * 760 });
    expect(entries[0]).toMatchObject({ kind: "minute", tenantId: "t1", gpuType: "AMPERE_80", at: T });
    expect(entries[2]).toMatchObject({ kind: "settle", at: T + 160_300 });
  });

  it("while open, only the minutes already over; recomputing later only adds entries", () => {
    expect(rows(sessionCharges(input, TABLE, T + 119_999))).toEqual([[`minute:${M}`, 40, 40 * 760]]);
    expect(rows(sessionCharges(input, TABLE, T + 120_000))).toEqual([
      [`minute:${M}`, 40, 40 * 760],
      [`minute:${M + 1}`, 60, 60 * 760],
    ]);
    // Before the exit is read, the minute it falls in is not charged yet and there is no settlement.
    expect(rows(sessionCharges(input, TABLE, T + 160_300))).toHaveLength(2);
  });

  it("a replayed, shuffled log yields the same keys and amounts", () => {
    const replayed = session([...input.transitions].reverse().concat(input.transitions));
    expect(sessionCharges(replayed, TABLE, FAR)).toEqual(sessionCharges(input, TABLE, FAR));
  });

  it("a lost worker's minutes after its last heartbeat are taken back by the settlement", () => {
    // Last heartbeat 12:01:30, noticed (logged) 12:03:10: three minutes were rolled up meanwhile.
    const lost = session([start(), tr("idle", T + 5000), tr("lost", T + 190_000, { at: T + 90_000 })]);
    expect(rows(sessionCharges(lost, TABLE, T + 240_000))).toEqual([
      [`minute:${M}`, 60, 45_600],
      [`minute:${M + 1}`, 60, 45_600],
      [`minute:${M + 2}`, 60, 45_600],
      ["settle", -90, -68_400],
    ]);
  });

  it("a price change mid-session: the minutes and the settlement add up to each second at its own price", () => {
    const table: PriceTable = { versions: [...TABLE.versions, { effectiveFrom: T + 60_500, prices: { AMPERE_80: 900 } }] };
    const entries = sessionCharges(session([start(), tr("idle", T + 2000), tr("exited", T + 130_000)]), table, FAR);
    // 130 s: seconds starting before 12:01:00.5 (61 of them) at 760, the other 69 at 900.
    expect(rows(entries)).toEqual([
      [`minute:${M}`, 60, 45_600],
      [`minute:${M + 1}`, 60, 61 * 760 + 59 * 900 - 45_600],
      ["settle", 10, 10 * 900],
    ]);
    expect(sum(entries)).toEqual({ seconds: 130, micros: 61 * 760 + 69 * 900 });
  });

  it("paused minutes write nothing", () => {
    const paused = session([start(), tr("idle", T + 2000), tr("paused", T + 30_000), tr("idle", T + 180_000), tr("exited", T + 200_000)]);
    expect(rows(sessionCharges(paused, TABLE, FAR))).toEqual([
      [`minute:${M}`, 30, 30 * 760],
      ["settle", 20, 20 * 760],
    ]);
  });

  it("the boot is charged once ready, without its weights fetch, so no minute is taken back", () => {
    const booting = session([start(), tr("initializing", T + 1000), tr("idle", T + 150_000), tr("exited", T + 210_500)], {
      weightsFetches: [{ seq: `${T + 149_000}-0`, durationMs: 120_000 }],
    });
    // By 12:03: 180 s elapsed, 120 s of it the weights fetch → 60 s. At the end: 210.5 − 120 = 90.5 → 91 s.
    expect(rows(sessionCharges(booting, TABLE, FAR))).toEqual([
      [`minute:${M + 2}`, 60, 60 * 760],
      ["settle", 31, 31 * 760],
    ]);
  });

  it("a session crossing midnight at a month end: every minute entry lies in one UTC day", () => {
    const t0 = Date.UTC(2025, 2, 31, 23, 59, 40);
    const entries = sessionCharges(session([start(t0), tr("idle", t0 + 1000), tr("exited", t0 + 85_001)]), TABLE, t0 + 86_400_000);
    expect(entries.map((e) => [new Date(e.at).toISOString(), e.kind, e.seconds])).toEqual([
      ["2025-03-31T23:59:00.000Z", "minute", 20],
      ["2025-04-01T00:00:00.000Z", "minute", 60],
      ["2025-04-01T00:01:05.001Z", "settle", 6],
    ]);
  });

  it("a session that ends within its first minute has only a settlement", () => {
    expect(rows(sessionCharges(session([start(T + 1000), tr("exited", T + 3500)]), TABLE, FAR))).toEqual([["settle", 3, 3 * 760]]);
    expect(sessionCharges(session([start(T + 1000)]), TABLE, T + 1000)).toEqual([]);
  });
});

describe("sessionCharges — replay safety (property)", () => {
  const states: WorkerState[] = ["initializing", "idle", "running", "paused", "unhealthy", "draining", "exited", "lost", "requested"];
  const arbSession = fc
    .record({
      steps: fc.array(fc.record({ gapMs: fc.integer({ min: 0, max: 70_000 }), state: fc.constantFrom(...states), atBackMs: fc.integer({ min: -5000, max: 200_000 }), by: fc.constantFrom(undefined, "worker" as const, "scheduler" as const) }), { maxLength: 12 }),
      weights: fc.option(fc.record({ afterMs: fc.integer({ min: 0, max: 200_000 }), durationMs: fc.integer({ min: 0, max: 150_000 }) }), { nil: undefined }),
      priceChangeAfterMs: fc.integer({ min: 0, max: 400_000 }),
      untils: fc.array(fc.integer({ min: 0, max: 900_000 }), { minLength: 2, maxLength: 4 }),
    })
    .map(({ steps, weights, priceChangeAfterMs, untils }) => {
      const t0 = T + 17_321;
      let ms = t0;
      const transitions: MeterTransition[] = [start(t0)];
      steps.forEach((s, i) => {
        ms += s.gapMs;
        transitions.push({ seq: `${ms}-${i + 1}`, state: s.state, at: s.state === "lost" ? ms - s.atBackMs : undefined, ...(s.by !== undefined && { by: s.by }) });
      });
      const input = session(transitions, { weightsFetches: weights && [{ seq: `${t0 + weights.afterMs}-0`, durationMs: weights.durationMs }] });
      const table: PriceTable = { versions: [...TABLE.versions, { effectiveFrom: t0 + priceChangeAfterMs, prices: { AMPERE_80: 1013 } }] };
      return { input, table, untils: untils.map((u) => t0 + u).sort((a, b) => a - b), settled: t0 + 1_000_000 };
    });

  it("an entry, once due, never changes; the entries of a settled session add up to its meter", () => {
    fc.assert(
      fc.property(arbSession, ({ input, table, untils, settled }) => {
        const byKey = new Map<string, ChargeEntry>();
        for (const until of [...untils, settled]) {
          for (const e of sessionCharges(input, table, until)) {
            const earlier = byKey.get(e.key);
            if (earlier) expect(e).toEqual(earlier);
            byKey.set(e.key, e);
          }
        }
        const final = meterSession(input, table, settled)!;
        if (final.end !== null) expect(sum([...byKey.values()])).toEqual({ seconds: final.seconds, micros: final.micros });
      }),
      { seed: 20250310, numRuns: 300 },
    );
  });

  it("fromMinute returns the same entries less the earlier minutes", () => {
    fc.assert(
      fc.property(arbSession, fc.integer({ min: -2, max: 20 }), ({ input, table, untils }, skip) => {
        const until = untils.at(-1)!;
        const all = sessionCharges(input, table, until);
        const fromMinute = M + skip;
        const later = sessionCharges(input, table, until, { fromMinute });
        expect(later).toEqual(all.filter((e) => e.kind === "settle" || Number(e.key.split(":").at(-1)) >= fromMinute));
      }),
      { seed: 7, numRuns: 200 },
    );
  });
});

describe("jobCost and idleCost", () => {
  const steps = [
    { from: 0, microsPerSecond: 760 },
    { from: T + 10_500, microsPerSecond: 900 },
  ];

  it("a job's share is its execution rounded up, each second at the price when it started", () => {
    expect(jobCost({ startedAt: T + 1000, executionMs: 2300 }, steps)).toMatchObject({ seconds: 3, micros: 3 * 760 });
    // Runs 12:00:08 → 12:00:13.2: seconds starting at +8, +9, +10 at 760; +11, +12, +13 at 900.
    expect(jobCost({ startedAt: T + 8000, executionMs: 5200 }, steps)).toMatchObject({ seconds: 6, micros: 3 * 760 + 3 * 900 });
    expect(jobCost({ startedAt: T, executionMs: 0 }, steps)).toMatchObject({ seconds: 0, micros: 0 });
  });

  it("idle is the billable time after ready with no job running, its own line", () => {
    const m = meterSession(session([start(), tr("idle", T + 4000), tr("running", T + 5000), tr("idle", T + 9000), tr("exited", T + 20_000)]), TABLE, FAR)!;
    // Ready at +4 s; jobs [+5, +9) and [+8, +12) overlap (concurrency 2); idle: [+4, +5) and [+12, +20) = 9 s.
    const idle = idleCost(m, [
      { startedAt: T + 5000, executionMs: 4000 },
      { startedAt: T + 8000, executionMs: 4000 },
    ]);
    expect(idle).toMatchObject({ billableMs: 9000, seconds: 9, micros: 9 * 760 });
  });
});
