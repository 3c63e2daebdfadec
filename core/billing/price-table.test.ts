import { describe, expect, it } from "vitest";
import {
  addPriceVersion,
  CPU_GPU_TYPE,
  DEFAULT_PRICES,
  isKnownGpuType,
  priceAt,
  pricesAt,
  priceSteps,
  priceTable,
  validatePriceVersion,
  type PriceTable,
} from "./price-table.ts";

const NOW = Date.UTC(2025, 5, 1); // 2025-06-01T00:00:00Z
const LATER = NOW + 86_400_000;

const table: PriceTable = {
  versions: [
    { effectiveFrom: 0, prices: { cpu: 20, AMPERE_80: 760, ADA_24: 310 } },
    { effectiveFrom: NOW, prices: { AMPERE_80: 700, "NVIDIA L4": 190 }, adds: ["NVIDIA L4"] },
  ],
};

describe("DEFAULT_PRICES", () => {
  it("is a valid table with cpu, RunPod's pools and common GPU type ids, in whole µ$ per second", () => {
    expect(priceTable.safeParse(DEFAULT_PRICES).success).toBe(true);
    const prices = pricesAt(DEFAULT_PRICES, NOW);
    for (const id of [CPU_GPU_TYPE, "AMPERE_16", "AMPERE_24", "ADA_24", "AMPERE_48", "ADA_48_PRO", "AMPERE_80", "ADA_80_PRO", "HOPPER_141"]) {
      expect(Number.isSafeInteger(prices[id]), id).toBe(true);
    }
    expect(prices["NVIDIA A100 80GB PCIe"]).toBe(760); // $0.00076 / s
    expect(prices["NVIDIA H100 80GB HBM3"]).toBe(1160);
    expect(prices["NVIDIA GeForce RTX 4090"]).toBe(310);
    expect(prices["NVIDIA L4"]).toBe(190);
    expect(prices["NVIDIA RTX A6000"]).toBe(340);
  });
});

describe("priceAt", () => {
  it("takes the latest version at or before t that prices the type", () => {
    expect(priceAt(table, "AMPERE_80", NOW - 1)).toBe(760);
    expect(priceAt(table, "AMPERE_80", NOW)).toBe(700);
    // The second version does not list cpu: it keeps its price.
    expect(priceAt(table, "cpu", NOW + 5)).toBe(20);
  });

  it("has no price for a type before the version that adds it, nor for an unknown one", () => {
    expect(priceAt(table, "NVIDIA L4", NOW - 1)).toBeUndefined();
    expect(priceAt(table, "NVIDIA L4", NOW)).toBe(190);
    expect(priceAt(table, "constructor", NOW)).toBeUndefined();
    expect(isKnownGpuType(table, "constructor")).toBe(false);
    expect(isKnownGpuType(table, "NVIDIA L4")).toBe(true);
  });

  it("lists one type's steps for the meter", () => {
    expect(priceSteps(table, "AMPERE_80")).toEqual([
      { from: 0, microsPerSecond: 760 },
      { from: NOW, microsPerSecond: 700 },
    ]);
  });
});

describe("validatePriceVersion", () => {
  const issuesOf = (candidate: unknown) => {
    const r = validatePriceVersion(table, candidate, NOW + 1000);
    return r.ok ? [] : r.issues;
  };

  it("accepts a future version of known types, and one starting exactly now", () => {
    expect(validatePriceVersion(table, { effectiveFrom: LATER, prices: { AMPERE_80: 650 } }, NOW)).toEqual({
      ok: true,
      version: { effectiveFrom: LATER, prices: { AMPERE_80: 650 } },
    });
    expect(validatePriceVersion(table, { effectiveFrom: NOW + 1, prices: { cpu: 0 } }, NOW + 1).ok).toBe(true);
  });

  it("refuses a version starting in the past or at an existing version's instant", () => {
    expect(issuesOf({ effectiveFrom: NOW + 999, prices: { cpu: 25 } })).toEqual([{ path: ["effectiveFrom"], message: expect.stringContaining("retroactively") }]);
    const r = validatePriceVersion(table, { effectiveFrom: NOW, prices: { cpu: 25 } }, NOW);
    expect(r).toEqual({ ok: false, issues: [{ path: ["effectiveFrom"], message: `a version already starts at ${NOW}` }] });
  });

  it("refuses negative, fractional and non-number prices with their paths", () => {
    const issues = issuesOf({ effectiveFrom: LATER, prices: { cpu: -1, AMPERE_80: 760.5, ADA_24: "310" } });
    expect(issues.map((i) => i.path)).toEqual([
      ["prices", "cpu"],
      ["prices", "AMPERE_80"],
      ["prices", "ADA_24"],
    ]);
  });

  it("refuses an unknown GPU type unless the version adds it", () => {
    expect(issuesOf({ effectiveFrom: LATER, prices: { "NVIDIA A100 80GB PCIE": 760 } })).toEqual([
      { path: ["prices", "NVIDIA A100 80GB PCIE"], message: expect.stringContaining("unknown GPU type") },
    ]);
    expect(issuesOf({ effectiveFrom: LATER, prices: { "NVIDIA H200": 1550 }, adds: ["NVIDIA H200"] })).toEqual([]);
  });

  it("refuses adding a known type, adding a type without a price, and an empty version", () => {
    expect(issuesOf({ effectiveFrom: LATER, prices: { cpu: 1 }, adds: ["cpu", "NVIDIA B200"] }).map((i) => i.path)).toEqual([
      ["adds", 0],
      ["adds", 1],
    ]);
    expect(issuesOf({ effectiveFrom: LATER, prices: {} })).toEqual([{ path: ["prices"], message: "sets no price" }]);
  });
});

describe("addPriceVersion", () => {
  it("inserts between two future versions and keeps the table valid", () => {
    const withLater = addPriceVersion(table, { effectiveFrom: LATER, prices: { cpu: 30 } }, NOW);
    if (!withLater.ok) throw new Error("unexpected");
    const r = addPriceVersion(withLater.table, { effectiveFrom: NOW + 3_600_000, prices: { cpu: 25 } }, NOW);
    if (!r.ok) throw new Error("unexpected");
    expect(r.table.versions.map((v) => v.effectiveFrom)).toEqual([0, NOW, NOW + 3_600_000, LATER]);
    expect(priceTable.safeParse(r.table).success).toBe(true);
    expect(table.versions).toHaveLength(2);
  });

  it("the stored schema refuses versions out of order", () => {
    const r = priceTable.safeParse({ versions: [{ effectiveFrom: 5, prices: { cpu: 1 } }, { effectiveFrom: 5, prices: { cpu: 2 } }] });
    expect(r.success).toBe(false);
    expect(r.error?.issues[0]?.path).toEqual(["versions", 1, "effectiveFrom"]);
  });
});
