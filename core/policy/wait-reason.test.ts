import { describe, expect, it } from "vitest";
import { explainWait, WAIT_REASON_AFTER_MS } from "./wait-reason.ts";

const booting = { state: "initializing" as const };
const ready = { state: "idle" as const };

describe("explainWait", () => {
  it("says nothing for a job that has waited 5 s or less, or beside a ready worker", () => {
    expect(WAIT_REASON_AFTER_MS).toBe(5000);
    expect(explainWait({ waitedMs: 5000, workers: [booting] })).toBeUndefined();
    expect(explainWait({ waitedMs: 5001, workers: [booting, ready] })).toBeUndefined();
    expect(explainWait({ waitedMs: 5001, workers: [booting] })).toEqual({ waitReason: "starting", waitDetail: { phase: "process_start" } });
  });

  it("names the furthest booting worker's phase and its progress", () => {
    const workers = [
      { state: "requested" as const },
      { state: "initializing" as const, phase: "weights_fetch" as const, progress: { bytes: 1_048_576, totalBytes: 4_194_304 } },
      { state: "initializing" as const, phase: "process_start" as const },
    ];
    expect(explainWait({ waitedMs: 6000, workers })).toEqual({
      waitReason: "starting",
      waitDetail: { phase: "weights_fetch", progress: { bytes: 1_048_576, totalBytes: 4_194_304 } },
    });
    expect(explainWait({ waitedMs: 6000, workers: [{ state: "requested" }] })).toEqual({ waitReason: "starting", waitDetail: { phase: "provision" } });
  });

  it("an open breaker is named at once, whatever the wait, with the last start error", () => {
    const breaker = { failedStarts: 3, lastError: "engine failed to start: boom", openedAt: 1 };
    expect(explainWait({ waitedMs: 0, workers: [ready], breaker })).toEqual({
      waitReason: "crash_loop",
      waitDetail: { error: "engine failed to start: boom", failedStarts: 3, open: true },
    });
  });

  it("failed starts before the breaker opens: crash_loop ahead of a booting worker", () => {
    const breaker = { failedStarts: 1, lastError: "boom", openedAt: null };
    expect(explainWait({ waitedMs: 7000, workers: [booting], breaker })).toEqual({ waitReason: "crash_loop", waitDetail: { error: "boom", failedStarts: 1, open: false } });
    expect(explainWait({ waitedMs: 7000, workers: [booting], breaker: { ...breaker, failedStarts: 0, lastError: null } })?.waitReason).toBe("starting");
  });

  it("the capacity gate's reasons, with the count held back; billing before the workers", () => {
    expect(explainWait({ waitedMs: 9000, workers: [], capacity: { throttled: 2, waitReason: "no_capacity" } })).toEqual({ waitReason: "no_capacity", waitDetail: { throttled: 2 } });
    expect(explainWait({ waitedMs: 9000, workers: [], capacity: { throttled: 1, waitReason: "quota" } })?.waitReason).toBe("quota");
    expect(explainWait({ waitedMs: 9000, workers: [booting], capacity: { throttled: 1, waitReason: "billing" } })).toEqual({ waitReason: "billing", waitDetail: { throttled: 1 } });
    // A worker booting explains more than the extra ones held back.
    expect(explainWait({ waitedMs: 9000, workers: [booting], capacity: { throttled: 1, waitReason: "no_capacity" } })?.waitReason).toBe("starting");
  });

  it("a paused worker coming back is resuming; nothing at all is a start not yet asked for", () => {
    expect(explainWait({ waitedMs: 5500, workers: [{ state: "paused" }, booting] })).toEqual({ waitReason: "resuming", waitDetail: {} });
    expect(explainWait({ waitedMs: 5500, workers: [] })).toEqual({ waitReason: "starting", waitDetail: { phase: "queued" } });
  });
});
