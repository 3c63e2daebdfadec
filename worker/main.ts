/**
 * Composition root of a worker process: config → clients → engine → runtime → jobs, and a clean
 * drain on SIGTERM/SIGINT or when the parent (the scheduler, over IPC) goes away. Every phase is
 * logged as one JSON line, `{"t":"worker","phase":…,"ms":…}`, with ms since the process started.
 */
import { performance } from "node:perf_hooks";
import { z } from "zod";
import { loadWorkerConfig } from "../core/config/process-configs.ts";
import { parseEnv } from "../core/config/parse-env.ts";
import { engineSpec } from "../core/contracts/endpoint.ts";
import { connectRedis } from "../core/redis/connect.ts";
import { createEngine } from "./engines/create-engine.ts";
import { FileModelSource } from "./models/file-model-source.ts";
import { HttpModelSource } from "./models/http-model-source.ts";
import { ModelStore } from "./models/model-source.ts";
import { S3ModelSource } from "./models/s3-model-source.ts";
import { WorkerRuntime } from "./runtime/worker-runtime.ts";

function log(phase: string, detail: Record<string, unknown> = {}): void {
  process.stdout.write(`${JSON.stringify({ t: "worker", phase, ms: Math.round(performance.now()), ...detail })}\n`);
}

async function main(): Promise<void> {
  const config = loadWorkerConfig(process.env);
  const spec = parseEnv(z.object({ HEARTH_ENGINE: z.string().transform(parseJson).pipe(engineSpec) }), process.env, "worker").HEARTH_ENGINE;
  log("boot", { workerId: config.workerId, endpointId: config.endpointId, engine: spec.kind });

  // A stop requested while the engine is still loading is honoured as soon as the runtime exists.
  let stopReason: string | undefined;
  let runtime: WorkerRuntime | undefined;
  let stopping: Promise<void> | undefined;
  const stop = (reason: string) => {
    stopReason ??= reason;
    if (runtime) stopping ??= shutdown(runtime, reason);
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  // Spawned with an IPC channel: its loss means the scheduler died, and a worker must not outlive it.
  if (process.send) process.on("disconnect", () => stop("parent disconnected"));
  // A dead parent also closes our stdout/stderr pipes; a failed log write must not crash the drain.
  process.stdout.on("error", () => {});
  process.stderr.on("error", () => {});

  const redis = connectRedis(config.redisUrl);
  const subscriber = redis.duplicate();
  // Both reconnect on their own; a Redis outage shows in failed heartbeats, logged by the runtime.
  redis.on("error", () => {});
  subscriber.on("error", () => {});
  // No Postgres here: what this worker does reaches it through the endpoint's log in Redis.
  const closeClients = async () => {
    await Promise.allSettled([redis.quit(), subscriber.quit()]);
  };

  async function shutdown(rt: WorkerRuntime, reason: string): Promise<void> {
    let code = 0;
    try {
      await rt.drain(reason);
    } catch (err) {
      // Whatever was not handed back is still locked in Redis and returns to the queue when the lock lapses.
      logError("drain", err);
      code = 1;
    }
    await closeClients();
    log("exit", { reason, code });
    process.exit(code);
  }

  try {
    runtime = await WorkerRuntime.create({
      endpointId: config.endpointId,
      workerId: config.workerId,
      redisPrefix: config.redisPrefix,
      lockMs: config.lockMs,
      heartbeatMs: config.heartbeatMs,
      drainTimeoutMs: config.drainTimeoutMs,
      streamLingerMs: config.streamLingerMs,
      engine: createEngine(spec, {
        handlerDirs: config.handlerDirs,
        models: new ModelStore({
          cacheDir: config.modelCacheDir,
          sources: [new FileModelSource(), new S3ModelSource(config.s3), new HttpModelSource()],
        }),
        onEngineState: (state, detail) => log("engine", { state, ...(detail && { detail }) }),
      }),
      redis,
      subscriber,
      onPhase: (phase, detail) => log(phase, detail),
      onError: (err, context) => logError(context, err),
    });
  } catch (err) {
    await closeClients();
    throw err;
  }
  if (stopReason !== undefined) return stop(stopReason);
  runtime.start();
  log("ready");
}

/** One line per error, its cause chain shortened (a full driver error can quote a whole command). */
function logError(context: string, err: unknown): void {
  const parts: string[] = [];
  for (let e: unknown = err, depth = 0; e !== undefined && depth < 4; depth++) {
    parts.push((e instanceof Error ? e.message.split("\n")[0]! : String(e)).slice(0, 200));
    e = e instanceof Error ? e.cause : undefined;
  }
  process.stderr.write(`${JSON.stringify({ t: "worker", error: context, message: parts.join(": ") })}\n`);
}

function parseJson(s: string, ctx: z.RefinementCtx): unknown {
  try {
    return JSON.parse(s);
  } catch {
    ctx.addIssue({ code: "custom", message: "must be JSON" });
    return z.NEVER;
  }
}

main().catch((err: unknown) => {
  logError("start", err);
  log("failed", { error: err instanceof Error ? err.message : String(err) });
  process.exit(1);
});
