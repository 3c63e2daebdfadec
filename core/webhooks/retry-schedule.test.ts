import { describe, expect, it } from "vitest";
import { ConfigError } from "../config/parse-env.ts";
import { loadControlConfig } from "../config/process-configs.ts";
import { DEFAULT_RETRY_SCHEDULE_S, MAX_RETRY_AFTER_MS, nextAttemptDelayMs, parseRetryAfterMs } from "./retry-schedule.ts";

const mid = () => 0.5; // no jitter
const low = () => 0; // -10 %
const high = () => 0.999_999; // just under +10 %

describe("HEARTH_WEBHOOK_RETRY_SCHEDULE", () => {
  it("defaults to 8 attempts over about 27 h", () => {
    const s = loadControlConfig({}).webhookRetryScheduleS;
    expect(s).toEqual([0, 5, 300, 1800, 7200, 18000, 36000, 36000]);
    expect(s).toEqual(DEFAULT_RETRY_SCHEDULE_S);
    expect(s.reduce((a, b) => a + b, 0)).toBe(99_305); // 27 h 35 min
    expect(loadControlConfig({ HEARTH_WEBHOOK_RETRY_SCHEDULE: "" }).webhookRetryScheduleS).toEqual(DEFAULT_RETRY_SCHEDULE_S);
  });

  it("takes comma-separated seconds, decimals for compressed schedules", () => {
    expect(loadControlConfig({ HEARTH_WEBHOOK_RETRY_SCHEDULE: "0, 0.2,1.5,60" }).webhookRetryScheduleS).toEqual([0, 0.2, 1.5, 60]);
    expect(loadControlConfig({ HEARTH_WEBHOOK_RETRY_SCHEDULE: "0" }).webhookRetryScheduleS).toEqual([0]);
  });

  it("stops the process at start naming the variable", () => {
    for (const bad of ["soon", "0,,5", "0,-5", "5s", "1e3", "0,999999999", Array(101).fill("1").join(",")]) {
      const load = () => loadControlConfig({ HEARTH_WEBHOOK_RETRY_SCHEDULE: bad });
      expect(load, bad).toThrow(ConfigError);
      expect(load, bad).toThrow(/HEARTH_WEBHOOK_RETRY_SCHEDULE: /);
    }
  });
});

describe("nextAttemptDelayMs", () => {
  const schedule = [0, 5, 300];

  it("gives each attempt its scheduled delay, then undefined when the schedule is exhausted", () => {
    expect(nextAttemptDelayMs(schedule, 0, undefined, mid)).toBe(0);
    expect(nextAttemptDelayMs(schedule, 1, undefined, mid)).toBe(5000);
    expect(nextAttemptDelayMs(schedule, 2, undefined, mid)).toBe(300_000);
    expect(nextAttemptDelayMs(schedule, 3, undefined, mid)).toBeUndefined();
    expect(nextAttemptDelayMs(schedule, 30, 1000, mid)).toBeUndefined();
    expect(nextAttemptDelayMs([], 0, undefined, mid)).toBeUndefined();
    expect(nextAttemptDelayMs([0.2], 0, undefined, mid)).toBe(200);
  });

  it("jitters by ±10 %, and a zero delay stays zero", () => {
    expect(nextAttemptDelayMs(schedule, 1, undefined, low)).toBe(4500);
    expect(nextAttemptDelayMs(schedule, 1, undefined, high)).toBe(5500);
    expect(nextAttemptDelayMs(schedule, 2, undefined, () => 0.25)).toBe(285_000);
    expect(nextAttemptDelayMs(schedule, 0, undefined, low)).toBe(0);
    expect(nextAttemptDelayMs(schedule, 0, undefined, high)).toBe(0);
  });

  it("waits at least the receiver's Retry-After", () => {
    expect(nextAttemptDelayMs(schedule, 1, 7000, high)).toBe(7000);
    expect(nextAttemptDelayMs(schedule, 1, 3000, low)).toBe(4500);
    expect(nextAttemptDelayMs(schedule, 0, 2000, mid)).toBe(2000);
    expect(nextAttemptDelayMs(schedule, 1, 0, mid)).toBe(5000);
  });

  it("refuses a nonsensical attempt count", () => {
    expect(() => nextAttemptDelayMs(schedule, -1, undefined, mid)).toThrow(RangeError);
    expect(() => nextAttemptDelayMs(schedule, 1.5, undefined, mid)).toThrow(RangeError);
  });
});

describe("parseRetryAfterMs", () => {
  const now = Date.parse("2025-01-01T00:00:00Z");

  it("reads delay-seconds and HTTP dates, capped at 1 h, the past as 0", () => {
    expect(parseRetryAfterMs("7", now)).toBe(7000);
    expect(parseRetryAfterMs(" 0 ", now)).toBe(0);
    expect(parseRetryAfterMs("Wed, 01 Jan 2025 00:00:30 GMT", now)).toBe(30_000);
    expect(parseRetryAfterMs("Tue, 31 Dec 2024 23:00:00 GMT", now)).toBe(0);
    expect(parseRetryAfterMs("86400", now)).toBe(MAX_RETRY_AFTER_MS);
    expect(parseRetryAfterMs("Fri, 01 Jan 2100 00:00:00 GMT", now)).toBe(MAX_RETRY_AFTER_MS);
  });

  it("ignores what is absent or unreadable", () => {
    for (const v of [undefined, "", "soon", "-5", "7.5", "1e3"]) expect(parseRetryAfterMs(v, now), String(v)).toBeUndefined();
  });
});
