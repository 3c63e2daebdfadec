import { describe, expect, it } from "vitest";
import { warmPoolSize, type ArrivalSample } from "./warm-pool.ts";

const NOW = 10_000_000;
const at = (agoMs: number, count: number): ArrivalSample => ({ at: NOW - agoMs, count });

describe("warmPoolSize", () => {
  it("is workersStandby without demand", () => {
    expect(warmPoolSize([], { workersStandby: 2, workersMax: 5 }, NOW)).toBe(2);
  });

  it("keeps no pool when workersStandby is 0, whatever the demand", () => {
    expect(warmPoolSize([at(1000, 50)], { workersStandby: 0, workersMax: 5 }, NOW)).toBe(0);
  });

  it("grows to the busiest burst of arrivals within one cold start", () => {
    // 3 + 1 within 10 s of each other; 2 alone a minute earlier.
    const history = [at(70_000, 2), at(9000, 3), at(1000, 1)];
    expect(warmPoolSize(history, { workersStandby: 1, workersMax: 10 }, NOW)).toBe(4);
  });

  it("does not add up arrivals further apart than a burst", () => {
    const history = [at(50_000, 2), at(30_000, 2), at(10_000, 2)];
    expect(warmPoolSize(history, { workersStandby: 1, workersMax: 10, burstMs: 10_000 }, NOW)).toBe(2);
  });

  it("forgets arrivals older than the window", () => {
    expect(warmPoolSize([at(600_000, 9)], { workersStandby: 1, workersMax: 10 }, NOW)).toBe(1);
    expect(warmPoolSize([at(599_999, 9)], { workersStandby: 1, workersMax: 10 }, NOW)).toBe(9);
  });

  it("never exceeds workersMax", () => {
    expect(warmPoolSize([at(1000, 40)], { workersStandby: 1, workersMax: 3 }, NOW)).toBe(3);
    expect(warmPoolSize([], { workersStandby: 5, workersMax: 3 }, NOW)).toBe(3);
  });

  it("ignores samples from the future and empty ones, in any order", () => {
    expect(warmPoolSize([at(-5000, 7), at(2000, 0), at(1000, 2), at(3000, 1)], { workersStandby: 1, workersMax: 10 }, NOW)).toBe(3);
  });
});
