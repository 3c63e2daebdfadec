import { describe, expect, it } from "vitest";
import type { Engine, EngineInfo } from "./engine.ts";
import { startEarly } from "./early-start.ts";

class CountingEngine implements Engine {
  starts = 0;
  stopped = false;
  constructor(private readonly outcome: () => Promise<EngineInfo>) {}
  start(): Promise<EngineInfo> {
    this.starts++;
    return this.outcome();
  }
  async health(): Promise<boolean> {
    return !this.stopped;
  }
  async run(): Promise<never> {
    throw new Error("not used");
  }
  async stop(): Promise<void> {
    this.stopped = true;
  }
}

describe("startEarly", () => {
  it("starts the engine once: the runtime's start() gets that start's outcome, and the other methods reach the engine", async () => {
    const inner = new CountingEngine(async () => ({ concurrency: 3, returnAggregateStream: true }));
    const { engine } = startEarly(inner);
    expect(inner.starts).toBe(1);
    await expect(engine.start()).resolves.toEqual({ concurrency: 3, returnAggregateStream: true });
    await expect(engine.start()).resolves.toEqual({ concurrency: 3, returnAggregateStream: true });
    expect(inner.starts).toBe(1);
    await engine.stop();
    expect(inner.stopped).toBe(true);
    await expect(engine.health()).resolves.toBe(false);
  });

  it("keeps an early failure for the runtime to see, without an unhandled rejection meanwhile", async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on("unhandledRejection", onUnhandled);
    try {
      const { engine } = startEarly(new CountingEngine(async () => Promise.reject(new Error("model missing"))));
      await new Promise((r) => setTimeout(r, 20));
      expect(unhandled).toEqual([]);
      await expect(engine.start()).rejects.toThrow("model missing");
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });
});
