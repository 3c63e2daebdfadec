import { afterEach, describe, expect, it } from "vitest";
import type { Engine, EngineResult } from "../worker/engines/engine.ts";
import { waitFor } from "./support/services.ts";

/** An engine and the input of one job for it. */
export interface EngineCase {
  engine: Engine;
  input: unknown;
}

/**
 * What each engine implementation provides to the shared suite: three ready-to-start engines (they
 * may be one engine, or three, as the implementation needs) and what their jobs must produce.
 */
export interface EngineFixtures {
  /** A job answered with one value, deep-equal to `expected`. */
  value: () => Promise<EngineCase & { expected: unknown }>;
  /**
   * A job answered with a stream whose chunks are `expectedChunks`, in order; or, where the chunks
   * are only known once the engine runs (a model's tokens), whatever `checkChunks` accepts.
   */
  stream: () => Promise<EngineCase & ({ expectedChunks: unknown[] } | { checkChunks: (chunks: unknown[]) => Promise<void> })>;
  /** A job that runs until aborted; `abortObserved` says whether the abort reached the work itself. */
  abortable: () => Promise<EngineCase & { abortObserved: () => Promise<boolean> }>;
}

/** Every `Engine` implementation runs this suite (STYLE: one conformance suite per two-implementation seam). */
export function describeEngineConformance(name: string, makeEngine: EngineFixtures): void {
  describe(`engine conformance: ${name}`, () => {
    const started: Engine[] = [];
    const start = async (engine: Engine) => {
      started.push(engine);
      return engine.start();
    };
    afterEach(async () => {
      await Promise.allSettled(started.splice(0).map((e) => e.stop()));
    });

    it("starts and reports a usable concurrency and stream setting", async () => {
      const { engine } = await makeEngine.value();
      const info = await start(engine);
      expect(Number.isInteger(info.concurrency)).toBe(true);
      expect(info.concurrency).toBeGreaterThanOrEqual(1);
      expect(typeof info.returnAggregateStream).toBe("boolean");
      expect(await engine.health()).toBe(true);
    });

    it("answers a value job", async () => {
      const { engine, input, expected } = await makeEngine.value();
      await start(engine);
      const result = await engine.run({ id: "conf-value", input }, new AbortController().signal);
      expect(result.kind).toBe("value");
      expect(result.kind === "value" && result.value).toEqual(expected);
    });

    it("streams every chunk of a stream job, in order", async () => {
      const fixture = await makeEngine.stream();
      await start(fixture.engine);
      const result = await fixture.engine.run({ id: "conf-stream", input: fixture.input }, new AbortController().signal);
      expect(result.kind).toBe("stream");
      const chunks = (await collect(result)) as unknown[];
      if ("expectedChunks" in fixture) expect(chunks).toEqual(fixture.expectedChunks);
      else await fixture.checkChunks(chunks);
    });

    it("delivers the abort signal to a running job", async () => {
      const { engine, input, abortObserved } = await makeEngine.abortable();
      await start(engine);
      const controller = new AbortController();
      let settled = false;
      const running = engine.run({ id: "conf-abort", input }, controller.signal).then(collect);
      running.then(
        () => (settled = true),
        () => (settled = true),
      );
      // Let the job get going before it is aborted; the assertion does not depend on how long this is.
      await new Promise((r) => setTimeout(r, 50));
      // A job that already ended (done or failed) would make the check below say nothing about the abort.
      expect(settled).toBe(false);
      controller.abort(new Error("conformance abort"));
      await running.catch(() => undefined);
      expect(await waitFor(abortObserved, 5000)).toBe(true);
    });

    it("stops, after which it no longer reports healthy", async () => {
      const { engine } = await makeEngine.value();
      await start(engine);
      await engine.stop();
      expect(await engine.health()).toBe(false);
    });
  });
}

async function collect(result: EngineResult): Promise<unknown> {
  if (result.kind === "value") return result.value;
  const chunks: unknown[] = [];
  for await (const c of result.chunks) chunks.push(c);
  return chunks;
}
