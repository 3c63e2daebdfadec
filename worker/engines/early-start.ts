import { performance } from "node:perf_hooks";
import type { Engine, EngineInfo } from "./engine.ts";

/** An engine whose start is under way, and when it began (`performance.now()`). */
export interface EarlyStartedEngine {
  /** The same engine; its `start()` answers with the start already under way instead of starting again. */
  engine: Engine;
  startedAt: number;
}

/**
 * Starts an engine before the rest of its worker has loaded (issue 10): an engine process's boot
 * (a model load, seconds on a GPU) then overlaps the worker's own (its queue client, ~0.4 s of
 * module loading here) instead of following it. The runtime still awaits `start()` as it always
 * did, and sees the outcome of this one start: a failure is reported through it, as before.
 */
export function startEarly(engine: Engine): EarlyStartedEngine {
  const startedAt = performance.now();
  const started: Promise<EngineInfo> = engine.start();
  // Awaited by the runtime once it is loaded; until then an early failure must not count as unhandled.
  started.catch(() => {});
  const early = new Proxy(engine, {
    get(target, property) {
      if (property === "start") return () => started;
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === "function" ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
  return { engine: early, startedAt };
}
