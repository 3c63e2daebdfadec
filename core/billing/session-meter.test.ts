import { describe, expect, it } from "vitest";
import { hearthEntry, parseLogEntry } from "../log/log-entry.ts";
import type { WorkerState } from "../contracts/worker-state.ts";
import { totalsBy } from "./timeline-pricing.ts";
import { EXIT_CONFIRM_GRACE_MS, meterSession, transitionOf, type MeterTransition, type SessionInput } from "./session-meter.ts";
import type { PriceTable } from "./price-table.ts";

const T = Date.UTC(2025, 2, 10, 12, 0, 0); // 2025-03-10T12:00:00Z
const TABLE: PriceTable = { versions: [{ effectiveFrom: 0, prices: { cpu: 20, AMPERE_80: 760 } }] };
const FAR = T + 86_400_000 * 40;

const tr = (state: WorkerState, ms: number, extra: Partial<MeterTransition> & { n?: number } = {}): MeterTransition => {
  const { n = 0, ...rest } = extra;
  return { seq: `${ms}-${n}`, state, ...rest };
};
const session = (transitions: MeterTransition[], over: Partial<SessionInput> = {}): SessionInput => ({
  workerId: "w1",
  endpointTenantId: "endpoint-tenant",
  transitions,
  ...over,
});
const start = (ms = T, extra: Partial<MeterTransition> = {}) => tr("requested", ms, { tenantId: "t1", gpuType: "AMPERE_80", ...extra });
const meter = (input: SessionInput, asOf = FAR, table = TABLE) => {
  const m = meterSession(input, table, asOf);
  if (m === null) throw new Error("no session in view");
  return m;
};

describe("meterSession — span and rounding", () => {
  it("bills requested → exited rounded up to the next whole second: 62.001 s is 63 s", () => {
    const m = meter(session([start(), tr("idle", T + 5000), tr("exited", T + 62_001)]));
    expect(m).toMatchObject({ start: T, end: T + 62_001, endedBy: "exited", billableMs: 62_001, seconds: 63, micros: 63 * 760 });
  });

  it("62.000 s exactly is 62 s", () => {
    expect(meter(session([start(), tr("exited", T + 62_000)])).seconds).toBe(62);
  });

  it("fixes tenant and GPU type at the start; later transitions cannot change them", () => {
    const m = meter(session([start(), tr("idle", T + 1000, { tenantId: "t2", gpuType: "cpu" }), tr("exited", T + 10_000)]));
    expect(m).toMatchObject({ tenantId: "t1", gpuType: "AMPERE_80", micros: 10 * 760 });
  });

  it("a worker without a GPU is billed at the cpu price; no tenant named means the endpoint's", () => {
    const m = meter(session([tr("requested", T), tr("exited", T + 10_500)]));
    expect(m).toMatchObject({ tenantId: "endpoint-tenant", gpuType: "cpu", seconds: 11, micros: 220 });
  });
});

describe("meterSession — repeated and out-of-order transitions", () => {
  const ordered = [start(), tr("initializing", T + 300), tr("idle", T + 5000), tr("running", T + 6000), tr("idle", T + 9000), tr("exited", T + 20_400)];

  it("sorts by log position and ignores replayed entries", () => {
    const shuffled = [ordered[5]!, ordered[2]!, ordered[0]!, ordered[2]!, ordered[4]!, ordered[1]!, ordered[3]!, ordered[0]!];
    const a = meter(session(ordered));
    const b = meter(session(shuffled));
    expect(b).toMatchObject({ start: a.start, end: a.end, readyAt: T + 5000, seconds: 21, micros: 21 * 760 });
    expect(b.ignored).toEqual([
      { seq: `${T}-0`, state: "requested", why: "duplicate" },
      { seq: `${T + 5000}-0`, state: "idle", why: "duplicate" },
    ]);
  });

  it("orders entries of the same ms by their sequence number", () => {
    const m = meter(session([tr("exited", T + 4000, { n: 1 }), tr("paused", T + 4000, { n: 0 }), start()]));
    // paused at 4000-0, exited at 4000-1: nothing paused before the end.
    expect(m).toMatchObject({ end: T + 4000, pausedMs: 0, seconds: 4 });
  });

  it("a second requested, a second exited and anything after the end are ignored", () => {
    const m = meter(session([start(), tr("requested", T + 2000, { gpuType: "cpu" }), tr("exited", T + 30_000), tr("running", T + 31_000), tr("exited", T + 95_000)]));
    expect(m).toMatchObject({ gpuType: "AMPERE_80", end: T + 30_000, seconds: 30 });
    expect(m.ignored.map((i) => [i.state, i.why])).toEqual([
      ["requested", "repeated requested"],
      ["running", "after end"],
      ["exited", "after end"],
    ]);
  });

  it("without a requested entry, starts at the first entry and says so", () => {
    const m = meter(session([tr("idle", T + 1000, { gpuType: "AMPERE_80", tenantId: "t1" }), tr("exited", T + 11_000)]));
    expect(m).toMatchObject({ start: T + 1000, startInferred: true, tenantId: "t1", seconds: 10 });
  });

  it("reads a session from parsed hearth:worker log entries", () => {
    const entry = parseLogEntry(`${T}-3`, hearthEntry("hearth:worker", { workerId: "w1", state: "requested", tenantId: "t1", gpuType: "AMPERE_80" }));
    if (entry.kind !== "worker") throw new Error("not a worker entry");
    expect(transitionOf(entry)).toEqual({ seq: `${T}-3`, state: "requested", at: undefined, tenantId: "t1", gpuType: "AMPERE_80" });
  });
});

describe("meterSession — lost workers and clock skew", () => {
  it("a session with no exit ends at its last heartbeat: lost logged at +95 s, heartbeat at +61.5 s → 62 s", () => {
    const m = meter(session([start(), tr("idle", T + 2000), tr("lost", T + 95_000, { at: T + 61_500 })]));
    expect(m).toMatchObject({ end: T + 61_500, endedBy: "lost", endLoggedAt: T + 95_000, seconds: 62, micros: 62 * 760 });
  });

  it("a lost heartbeat after its own entry is impossible on one clock: the entry's time caps it", () => {
    const m = meter(session([start(), tr("lost", T + 40_000, { at: T + 45_000 })]));
    expect(m).toMatchObject({ end: T + 40_000, seconds: 40 });
  });

  it("a lost heartbeat before the start bills nothing; a lost without `at` ends at its entry", () => {
    expect(meter(session([start(), tr("lost", T + 40_000, { at: T - 5000 })]))).toMatchObject({ end: T, seconds: 0, micros: 0 });
    expect(meter(session([start(), tr("lost", T + 40_000)]))).toMatchObject({ end: T + 40_000, seconds: 40 });
  });

  it("a worker's own clock (`at` on any other transition) is ignored: the log entry's time wins", () => {
    const skewed = [
      start(T, { at: T - 600_000 }),
      tr("idle", T + 1000, { at: T - 599_000 }),
      tr("paused", T + 10_000, { at: T - 590_000 }),
      tr("idle", T + 40_000, { at: T - 560_000 }),
      tr("exited", T + 50_000, { at: T + 900_000 }),
    ];
    expect(meter(session(skewed))).toMatchObject({ start: T, end: T + 50_000, pausedMs: 30_000, seconds: 20 });
  });
});

describe("meterSession — paused and weights fetch", () => {
  it("paused time is free: 90.4 s with a 60 s pause is 31 s", () => {
    const m = meter(session([start(), tr("idle", T + 1000), tr("paused", T + 20_000), tr("paused", T + 30_000), tr("idle", T + 80_000), tr("exited", T + 90_400)]));
    expect(m).toMatchObject({ pausedMs: 60_000, billableMs: 30_400, seconds: 31 });
    expect(m.intervals).toEqual([
      { from: T, to: T + 20_000 },
      { from: T + 80_000, to: T + 90_400 },
    ]);
  });

  it("a pause that lasts to the end is free to the end", () => {
    expect(meter(session([start(), tr("idle", T + 1000), tr("paused", T + 10_000), tr("exited", T + 70_000)]))).toMatchObject({ seconds: 10 });
  });

  const booted = [start(), tr("initializing", T + 500), tr("idle", T + 45_000), tr("exited", T + 100_200)];

  it("subtracts the reported weights fetch from the start: 100.2 s − 30 s is 71 s", () => {
    const m = meter(session(booted, { weightsFetches: [{ seq: `${T + 44_000}-0`, durationMs: 30_000 }] }));
    expect(m).toMatchObject({ weightsFetchMs: 30_000, billableMs: 70_200, seconds: 71 });
    expect(m.intervals).toEqual([{ from: T + 30_000, to: T + 100_200 }]);
  });

  it("a resent report is not subtracted twice (the largest report counts)", () => {
    const reports = [
      { seq: `${T + 40_000}-0`, durationMs: 20_000 },
      { seq: `${T + 44_000}-0`, durationMs: 30_000 },
      { seq: `${T + 44_500}-0`, durationMs: 30_000 },
    ];
    expect(meter(session(booted, { weightsFetches: reports }))).toMatchObject({ weightsFetchMs: 30_000, seconds: 71 });
  });

  it("a report longer than the boot span is capped at it: 60 s claimed, 45 s booting → 56 s", () => {
    const m = meter(session(booted, { weightsFetches: [{ seq: `${T + 44_000}-0`, durationMs: 60_000 }] }));
    expect(m).toMatchObject({ weightsFetchMs: 45_000, billableMs: 55_200, seconds: 56 });
  });

  it("a report logged after the end is ignored", () => {
    expect(meter(session(booted, { weightsFetches: [{ seq: `${T + 100_200}-1`, durationMs: 30_000 }] }))).toMatchObject({ weightsFetchMs: 0, seconds: 101 });
  });
});

describe("meterSession — open sessions", () => {
  it("meters an open session up to `until`, in whole elapsed seconds", () => {
    const m = meter(session([start(), tr("idle", T + 10_000)]), T + 75_500);
    expect(m).toMatchObject({ end: null, billableMs: 75_500, seconds: 75, micros: 75 * 760 });
  });

  it("entries at or after `until` are not in view", () => {
    const input = session([start(), tr("idle", T + 10_000), tr("exited", T + 20_000, { by: "scheduler" })]);
    expect(meter(input, T + 20_000)).toMatchObject({ end: null, seconds: 20 });
    expect(meter(input, T + 20_001)).toMatchObject({ end: T + 20_000, seconds: 20 });
    expect(meterSession(input, TABLE, T)).toBeNull();
  });

  it("charges nothing while still booting: the weights fetch is not known yet", () => {
    expect(meter(session([start(), tr("initializing", T + 500)]), T + 90_000)).toMatchObject({ bootPending: true, seconds: 0, micros: 0 });
  });
});

describe("meterSession — UTC days and months, price changes", () => {
  it("splits a session across midnight and a month end: 31 Mar 23:59:30 → 1 Apr 00:00:45.25 is 30 s + 46 s", () => {
    const t0 = Date.UTC(2025, 2, 31, 23, 59, 30);
    const m = meter(session([start(t0), tr("idle", t0 + 1000), tr("exited", t0 + 75_250)]));
    expect(m.seconds).toBe(76);
    expect(Object.fromEntries(totalsBy(m.parts, "day"))).toEqual({
      "2025-03-31": { seconds: 30, micros: 30 * 760 },
      "2025-04-01": { seconds: 46, micros: 46 * 760 },
    });
    expect([...totalsBy(m.parts, "month").keys()]).toEqual(["2025-03", "2025-04"]);
  });

  it("splits a session at a price change, never retroactively: 61 s across +30.5 s is 31 × 760 + 30 × 900", () => {
    const table: PriceTable = { versions: [...TABLE.versions, { effectiveFrom: T + 30_500, prices: { AMPERE_80: 900 } }] };
    const m = meter(session([start(), tr("idle", T + 3000), tr("exited", T + 60_200)]), FAR, table);
    expect(m.parts.map((p) => [p.microsPerSecond, p.seconds, p.micros])).toEqual([
      [760, 31, 23_560],
      [900, 30, 27_000],
    ]);
    expect(m).toMatchObject({ seconds: 61, micros: 50_560 });
  });

  it("a GPU type the table does not price is an error, not a zero bill", () => {
    expect(() => meter(session([start(T, { gpuType: "NVIDIA B300" }), tr("exited", T + 1000)]))).toThrow(
      expect.objectContaining({ code: "UNPRICED_GPU_TYPE", message: expect.stringContaining("NVIDIA B300") }),
    );
  });
});

describe("meterSession — whose exit ends the session", () => {
  const worker = (ms: number) => tr("exited", ms, { by: "worker" });
  const scheduler = (ms: number) => tr("exited", ms, { by: "scheduler" });

  it("the scheduler's exit (the process seen gone) ends it, not the worker's own announcement before it", () => {
    const m = meter(session([start(), tr("idle", T + 1000), worker(T + 20_000), scheduler(T + 20_400)]));
    expect(m).toMatchObject({ end: T + 20_400, endedBy: "exited", endLoggedAt: T + 20_400, closingLoggedAt: T + 20_000, seconds: 21 });
  });

  it("while the grace runs the session stays open; once it passes without the scheduler's, the worker's own ends it", () => {
    const input = session([start(), tr("idle", T + 1000), worker(T + 20_000)]);
    expect(meter(input, T + 20_000 + EXIT_CONFIRM_GRACE_MS)).toMatchObject({ end: null, closingLoggedAt: T + 20_000, seconds: 50 });
    expect(meter(input, T + 20_001 + EXIT_CONFIRM_GRACE_MS)).toMatchObject({ end: T + 20_000, endedBy: "exited", seconds: 20 });
  });

  it("a scheduler's exit logged after the grace comes too late; anything but an exit after the first is ignored", () => {
    const m = meter(session([start(), worker(T + 20_000), tr("idle", T + 21_000), tr("lost", T + 22_000, { at: T + 19_000 }), scheduler(T + 20_001 + EXIT_CONFIRM_GRACE_MS)]));
    expect(m).toMatchObject({ end: T + 20_000, seconds: 20 });
    expect(m.ignored.map((i) => [i.state, i.why])).toEqual([
      ["idle", "after end"],
      ["lost", "after end"],
      ["exited", "after end"],
    ]);
  });

  it("entries from before the field: the last exit within the grace ends it", () => {
    expect(meter(session([start(), tr("exited", T + 20_000), tr("exited", T + 20_300)]))).toMatchObject({ end: T + 20_300, seconds: 21 });
  });
});
