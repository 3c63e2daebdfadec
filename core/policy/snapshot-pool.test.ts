import { describe, expect, it } from "vitest";
import { choosePausedEvictions, type PausedWorkerView } from "./snapshot-pool.ts";

const NOW = 10_000_000;
const MB = 1024 * 1024;
const paused = (id: string, agoMs: number, mb: number): PausedWorkerView => ({ id, endpointId: "e", pausedAt: NOW - agoMs, residentBytes: mb * MB });

describe("choosePausedEvictions", () => {
  it("keeps everything within the budget and the age", () => {
    expect(choosePausedEvictions([paused("a", 1000, 100), paused("b", 2000, 100)], { memoryBytes: 200 * MB, maxAgeMs: 60_000 }, NOW)).toEqual([]);
  });

  it("evicts every worker paused longer than the maximum age, whatever the memory", () => {
    const out = choosePausedEvictions([paused("a", 60_001, 1), paused("b", 60_000, 1), paused("c", 120_000, 1)], { memoryBytes: 1e12, maxAgeMs: 60_000 }, NOW);
    expect(out).toEqual([
      { id: "c", why: "max_age" },
      { id: "a", why: "max_age" },
    ]);
  });

  it("over the budget, evicts the least recently paused first until the rest fit", () => {
    const ws = [paused("new", 1000, 300), paused("old", 9000, 300), paused("mid", 5000, 300)];
    expect(choosePausedEvictions(ws, { memoryBytes: 600 * MB, maxAgeMs: 60_000 }, NOW)).toEqual([{ id: "old", why: "memory_budget" }]);
    expect(choosePausedEvictions(ws, { memoryBytes: 299 * MB, maxAgeMs: 60_000 }, NOW)).toEqual([
      { id: "old", why: "memory_budget" },
      { id: "mid", why: "memory_budget" },
      { id: "new", why: "memory_budget" },
    ]);
  });

  it("counts only what the age left against the budget", () => {
    const out = choosePausedEvictions([paused("stale", 100_000, 500), paused("a", 2000, 300), paused("b", 1000, 300)], { memoryBytes: 600 * MB, maxAgeMs: 60_000 }, NOW);
    expect(out).toEqual([{ id: "stale", why: "max_age" }]);
  });

  it("answers the same whatever the input's order (ties by id)", () => {
    const ws = [paused("b", 1000, 100), paused("a", 1000, 100), paused("c", 1000, 100)];
    const limits = { memoryBytes: 150 * MB, maxAgeMs: 60_000 };
    const expected = [
      { id: "a", why: "memory_budget" },
      { id: "b", why: "memory_budget" },
    ];
    expect(choosePausedEvictions(ws, limits, NOW)).toEqual(expected);
    expect(choosePausedEvictions([...ws].reverse(), limits, NOW)).toEqual(expected);
  });

  it("a zero budget evicts every paused worker; an empty pool evicts nothing", () => {
    expect(choosePausedEvictions([paused("a", 0, 1)], { memoryBytes: 0, maxAgeMs: 60_000 }, NOW)).toEqual([{ id: "a", why: "memory_budget" }]);
    expect(choosePausedEvictions([], { memoryBytes: 0, maxAgeMs: 0 }, NOW)).toEqual([]);
  });
});
