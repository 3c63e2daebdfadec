import { describe, expect, it } from "vitest";
import { closedBreaker, crashLoopError, currentBreaker, isOpen, parseBreaker, recordFailedStart, recordReady } from "./start-breaker.ts";

const fail = (error: string, now: number, maxFailedStarts = 3) => ({ error, now, maxFailedStarts });

describe("start breaker", () => {
  it("opens at exactly maxFailedStarts failed starts in a row, keeping the last error", () => {
    let s = closedBreaker(100);
    s = recordFailedStart(s, fail("boom 1", 1000));
    expect(s).toEqual({ failedStarts: 1, lastError: "boom 1", openedAt: null, revision: 100 });
    s = recordFailedStart(s, fail("boom 2", 2000));
    expect(isOpen(s)).toBe(false);
    s = recordFailedStart(s, fail("boom 3", 3000));
    expect(s).toEqual({ failedStarts: 3, lastError: "boom 3", openedAt: 3000, revision: 100 });
    // Open: more failures change nothing (same object: nothing to write).
    expect(recordFailedStart(s, fail("boom 4", 4000))).toBe(s);
  });

  it("honours the endpoint's own maxFailedStarts (1 opens on the first failure)", () => {
    expect(recordFailedStart(closedBreaker(1), fail("x", 5, 1)).openedAt).toBe(5);
    let s = closedBreaker(1);
    for (let i = 0; i < 4; i++) s = recordFailedStart(s, fail("x", i, 5));
    expect(s.openedAt).toBeNull();
    expect(recordFailedStart(s, fail("x", 9, 5)).openedAt).toBe(9);
  });

  it("a ready worker clears the count, not an open breaker", () => {
    const two = recordFailedStart(recordFailedStart(closedBreaker(7), fail("a", 1)), fail("b", 2));
    expect(recordReady(two)).toEqual({ failedStarts: 0, lastError: null, openedAt: null, revision: 7 });
    const open = recordFailedStart(two, fail("c", 3));
    expect(recordReady(open)).toBe(open);
  });

  it("a state of another revision (the endpoint changed) reads closed", () => {
    const open = recordFailedStart(closedBreaker(1), fail("x", 5, 1));
    expect(currentBreaker(open, 1)).toBe(open);
    expect(currentBreaker(open, 2)).toEqual(closedBreaker(2));
    expect(currentBreaker(undefined, 3)).toEqual(closedBreaker(3));
  });

  it("reads damaged stored values as closed and keeps errors bounded", () => {
    expect(parseBreaker(null)).toBeUndefined();
    expect(parseBreaker("{not json")).toBeUndefined();
    expect(parseBreaker(JSON.stringify({ failedStarts: -1, lastError: null, openedAt: null, revision: 1 }))).toBeUndefined();
    const s = recordFailedStart(closedBreaker(1), fail("e".repeat(5000) + "\u0000\ud800", 1));
    expect(s.lastError).toHaveLength(1000);
    expect(parseBreaker(JSON.stringify(s))).toEqual(s);
    expect(crashLoopError(s)).toMatch(/^crash_loop: 1 failed worker starts in a row \(last: e+/);
  });
});
