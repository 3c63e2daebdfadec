import { describe, expect, it } from "vitest";
import { NO_CRASHES, recordCrash, startDelayMs } from "./restart-backoff.ts";

describe("restart backoff", () => {
  it("lets a start through at once without failures", () => {
    expect(startDelayMs(NO_CRASHES, 5000)).toBe(0);
  });

  it("doubles the wait with each consecutive failure, up to the maximum", () => {
    let r = NO_CRASHES;
    r = recordCrash(r, 10_000);
    expect(startDelayMs(r, 10_000)).toBe(1000);
    expect(startDelayMs(r, 10_400)).toBe(600);
    expect(startDelayMs(r, 11_000)).toBe(0);
    r = recordCrash(r, 11_000);
    expect(startDelayMs(r, 11_000)).toBe(2000);
    r = recordCrash(r, 13_000);
    expect(startDelayMs(r, 13_000)).toBe(4000);
    for (let i = 0; i < 10; i++) r = recordCrash(r, 20_000);
    expect(startDelayMs(r, 20_000)).toBe(60_000);
    expect(startDelayMs(r, 20_000, { baseMs: 10, maxMs: 500 })).toBe(500);
  });
});
