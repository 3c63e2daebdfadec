import { describe, expect, it } from "vitest";
import { BillingError } from "./billing-error.ts";
import { dropFirst, normalize, subtract } from "./intervals.ts";
import { addMicros, ceilDiv, floorDiv, mulMicros } from "./micros.ts";
import { priceTime, totalsBy } from "./timeline-pricing.ts";

const T = Date.UTC(2025, 2, 10, 12, 0, 0); // 2025-03-10T12:00:00Z
const flat = [{ from: 0, microsPerSecond: 100 }];

describe("micros", () => {
  it("multiplies exactly through BigInt and refuses a product beyond 2^53 − 1", () => {
    expect(mulMicros(604_800, 1550)).toBe(937_440_000); // a week of H200 at $0.00155/s = $937.44
    expect(mulMicros(3, 3_000_000_000_000_000)).toBe(9_000_000_000_000_000);
    expect(() => mulMicros(100_000_000, 100_000_000)).toThrow(BillingError);
    expect(() => addMicros(Number.MAX_SAFE_INTEGER, 1)).toThrow(expect.objectContaining({ code: "AMOUNT_OVERFLOW" }));
  });

  it("divides without a float quotient", () => {
    expect([ceilDiv(0, 1000), ceilDiv(1, 1000), ceilDiv(1000, 1000), ceilDiv(1001, 1000)]).toEqual([0, 1, 1, 2]);
    expect(ceilDiv(Number.MAX_SAFE_INTEGER, 1000)).toBe(9_007_199_254_741);
    expect([floorDiv(1999, 1000), floorDiv(-1, 60_000)]).toEqual([1, -1]);
  });
});

describe("intervals", () => {
  it("subtracts holes, merges touching spans and drops leading time across gaps", () => {
    expect(subtract([{ from: 0, to: 100 }], [{ from: 20, to: 30 }, { from: 25, to: 40 }, { from: 90, to: 200 }])).toEqual([
      { from: 0, to: 20 },
      { from: 40, to: 90 },
    ]);
    expect(normalize([{ from: 5, to: 9 }, { from: 0, to: 5 }, { from: 7, to: 7 }])).toEqual([{ from: 0, to: 9 }]);
    expect(dropFirst([{ from: 0, to: 10 }, { from: 20, to: 30 }], 15)).toEqual([{ from: 25, to: 30 }]);
    expect(dropFirst([{ from: 0, to: 10 }], 10)).toEqual([]);
  });
});

describe("priceTime — rounding", () => {
  it.each([
    [2300, "ceil", 3],
    [2000, "ceil", 2],
    [1, "ceil", 1],
    [0, "ceil", 0],
    [2999, "floor", 2],
  ] as const)("%i ms rounded %s is %i s", (ms, rounding, seconds) => {
    const r = priceTime(ms > 0 ? [{ from: T, to: T + ms }] : [], flat, rounding);
    expect(r).toMatchObject({ billableMs: ms, seconds, micros: seconds * 100 });
  });

  it("rounds the session, not each span: 3 spans of 1.2 s are 4 s, not 6", () => {
    const spans = [0, 5000, 9000].map((o) => ({ from: T + o, to: T + o + 1200 }));
    expect(priceTime(spans, flat, "ceil")).toMatchObject({ billableMs: 3600, seconds: 4, micros: 400 });
  });
});

describe("priceTime — price changes", () => {
  it("prices each second at its start: 10.5 s across a change at +4.5 s is 5 s old + 6 s new", () => {
    const steps = [
      { from: 0, microsPerSecond: 100 },
      { from: T + 4500, microsPerSecond: 200 },
    ];
    const r = priceTime([{ from: T, to: T + 10_500 }], steps, "ceil");
    // Second 5 runs [4000, 5000): it started before the change and keeps the old price.
    expect(r.parts.map((p) => [p.microsPerSecond, p.billableMs, p.seconds, p.micros])).toEqual([
      [100, 4500, 5, 500],
      [200, 6000, 6, 1200],
    ]);
    expect(r).toMatchObject({ seconds: 11, micros: 1700 });
  });

  it("a change inside a pause: the second after the pause is at the new price", () => {
    const steps = [
      { from: 0, microsPerSecond: 100 },
      { from: T + 3000, microsPerSecond: 200 },
    ];
    const r = priceTime([{ from: T, to: T + 1500 }, { from: T + 5000, to: T + 6000 }], steps, "ceil");
    // Billable offsets [0, 1500) hold seconds 1 and 2; second 3 starts at offset 2000 = T + 5500.
    expect(r.parts.map((p) => [p.microsPerSecond, p.seconds])).toEqual([
      [100, 2],
      [200, 1],
    ]);
    expect(r).toMatchObject({ seconds: 3, micros: 400 });
  });

  it("floor while open: 4.7 s across a change at +2.5 s is 3 s old + 1 s new", () => {
    const steps = [
      { from: 0, microsPerSecond: 100 },
      { from: T + 2500, microsPerSecond: 200 },
    ];
    expect(priceTime([{ from: T, to: T + 4700 }], steps, "floor")).toMatchObject({ seconds: 4, micros: 500 });
  });

  it("refuses time before the GPU type's first price", () => {
    expect(() => priceTime([{ from: T, to: T + 2000 }], [{ from: T + 1000, microsPerSecond: 1 }], "ceil")).toThrow(
      expect.objectContaining({ code: "UNPRICED_GPU_TYPE" }),
    );
  });
});

describe("priceTime — UTC days and months", () => {
  it("a second straddling midnight counts in the day it started", () => {
    const midnight = Date.UTC(2025, 2, 11);
    const r = priceTime([{ from: midnight - 1500, to: midnight + 2200 }], flat, "ceil");
    expect(r.parts.map((p) => [p.day, p.billableMs, p.seconds])).toEqual([
      ["2025-03-10", 1500, 2],
      ["2025-03-11", 2200, 2],
    ]);
    expect(r.seconds).toBe(4);
  });

  it("totals by month across 31 Jan → 1 Feb", () => {
    const feb = Date.UTC(2025, 1, 1);
    const r = priceTime([{ from: feb - 600, to: feb + 1000 }], flat, "ceil");
    expect(Object.fromEntries(totalsBy(r.parts, "month"))).toEqual({
      "2025-01": { seconds: 1, micros: 100 },
      "2025-02": { seconds: 1, micros: 100 },
    });
  });
});
