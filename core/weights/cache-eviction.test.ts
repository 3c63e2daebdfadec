import { describe, expect, it } from "vitest";
import { planEviction, type CachedModel } from "./cache-eviction.ts";

const m = (digest: string, bytes: number, lastUsedMs: number, leased = false): CachedModel => ({ digest, bytes, lastUsedMs, leased });

describe("planEviction", () => {
  it("evicts nothing while the new model fits", () => {
    expect(planEviction([m("a", 40, 1), m("b", 40, 2)], 20, 100)).toEqual({ ok: true, evict: [] });
    expect(planEviction([], 100, 100)).toEqual({ ok: true, evict: [] });
  });

  it("evicts least recently used first, only as many as needed", () => {
    const entries = [m("new", 30, 300), m("old", 30, 100), m("mid", 30, 200)];
    expect(planEviction(entries, 20, 100)).toEqual({ ok: true, evict: ["old"] });
    expect(planEviction(entries, 50, 100)).toEqual({ ok: true, evict: ["old", "mid"] });
    expect(planEviction(entries, 100, 100)).toEqual({ ok: true, evict: ["old", "mid", "new"] });
  });

  it("breaks ties by digest so every host picks the same victims", () => {
    expect(planEviction([m("b", 50, 1), m("a", 50, 1)], 50, 100)).toEqual({ ok: true, evict: ["a"] });
  });

  it("never evicts a leased model, and skips to the next one instead", () => {
    const entries = [m("oldest", 30, 1, true), m("old", 30, 2), m("new", 30, 3)];
    expect(planEviction(entries, 20, 100)).toEqual({ ok: true, evict: ["old"] });
  });

  it("refuses a model larger than the whole budget", () => {
    const plan = planEviction([m("a", 10, 1)], 101, 100);
    expect(plan).toMatchObject({ ok: false, reason: "exceeds_budget" });
    expect(plan.ok || plan.message).toMatch(/101 bytes.*HEARTH_MODEL_CACHE_BYTES is 100/);
  });

  it("refuses, evicting nothing, when leased models keep the budget too full", () => {
    const plan = planEviction([m("a", 60, 1, true), m("b", 20, 2)], 50, 100);
    expect(plan).toMatchObject({ ok: false, reason: "held_by_leases" });
    expect(plan.ok || plan.message).toMatch(/hold 60 bytes/);
  });
});
