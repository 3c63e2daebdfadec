import { Hono } from "hono";
import type { EmbeddedEngine } from "./embedded-server.ts";
import { OpenAiError } from "./openai-error.ts";
import type { Log } from "../../../core/log/process-log.ts";

/** The embedded engine with vLLM's sleep mode around it: one HTTP app whatever its state. */
export interface SleepableEngine {
  /** `/sleep`, `/wake_up`, `/is_sleeping`, and the engine's own routes while awake. */
  app: Hono;
  readonly sleeping: boolean;
  /** Frees whatever is loaded (the model, if awake). */
  close(): Promise<void>;
}

/**
 * vLLM's sleep mode (`--enable-sleep-mode`: `POST /sleep`, `POST /wake_up`, `GET /is_sleeping`) for
 * the embedded engine: `/sleep` aborts what runs, unloads the model and its contexts (the process
 * stays, small); `/wake_up` loads it again with `load`. While asleep, the OpenAI routes answer 503;
 * `/health` stays 200 (the process is alive and wakes on request, as vLLM's does). Sleep and wake
 * run one at a time, in order; repeating one is a no-op.
 */
export function sleepable(first: EmbeddedEngine, load: () => Promise<EmbeddedEngine>, log: Log = () => {}): SleepableEngine {
  let engine: EmbeddedEngine | undefined = first;
  let chain: Promise<unknown> = Promise.resolve();
  const serial = <T>(step: () => Promise<T>): Promise<T> => {
    const next = chain.then(step);
    chain = next.catch(() => {});
    return next;
  };

  const app = new Hono();
  app.post("/sleep", async (c) => {
    await serial(async () => {
      if (!engine) return;
      const current = engine;
      engine = undefined; // new requests see it asleep from here on
      const started = performance.now();
      await current.close();
      log({ msg: "asleep", ms: Math.round(performance.now() - started) });
    });
    return c.json({ is_sleeping: true });
  });
  app.post("/wake_up", async (c) => {
    await serial(async () => {
      if (engine) return;
      const started = performance.now();
      engine = await load();
      log({ msg: "awake", ms: Math.round(performance.now() - started) });
    });
    return c.json({ is_sleeping: false });
  });
  app.get("/is_sleeping", (c) => c.json({ is_sleeping: engine === undefined }));
  app.get("/health", (c) => c.json({ status: "ok" }));
  app.all("*", (c) => {
    if (engine) return engine.app.fetch(c.req.raw);
    const err = new OpenAiError(503, "server_error", "the engine is asleep: POST /wake_up first", null, "engine_asleep");
    return c.json(err.toBody(), 503);
  });

  return {
    app,
    get sleeping() {
      return engine === undefined;
    },
    close: () =>
      serial(async () => {
        const current = engine;
        engine = undefined;
        await current?.close();
      }),
  };
}
