/**
 * Composition root of a worker process: config → clients → engine → runtime → jobs, and a clean
 * drain on SIGTERM/SIGINT or when the parent (the scheduler, over IPC) goes away. Every phase is
 * logged (pino, one JSON line) with `phase` and `ms` since the process started; every line carries
 * the worker's `workerId` and `endpointId`, and a job's lines its `jobId` and `traceId`.
 */
import { performance } from "node:perf_hooks";
import { z } from "zod";
import { loadWorkerConfig, type WorkerConfig } from "../core/config/process-configs.ts";
import type { ModelCredentials } from "../core/contracts/endpoint-env.ts";
import { parseEnv } from "../core/config/parse-env.ts";
import { egressPolicy } from "../core/config/egress.ts";
import { engineSpec } from "../core/contracts/endpoint.ts";
import { WORKER_METRICS_HOST } from "../core/contracts/worker-state.ts";
import { pauseRequest, type PauseReply } from "../core/contracts/pause-messages.ts";
import { createEngine, preloadEngines } from "./engines/create-engine.ts";
import { startEarly } from "./engines/early-start.ts";
import { awaitAssignment } from "./prestart.ts";
import type { Engine } from "./engines/engine.ts";
import { resolveEngineUser } from "./engines/openai/engine-user.ts";
import { ENDPOINT_ENV_VAR, loadWorkerSecrets, MODEL_CREDENTIALS_VAR } from "../core/config/endpoint-secrets-env.ts";
import type { ModelStore } from "./models/model-store.ts";
import type { WorkerRuntime } from "./runtime/worker-runtime.ts";
import { jobLogContext, routeConsole } from "./runtime/job-log-context.ts";
import { processLog, type Log } from "../core/log/process-log.ts";
import { NO_TRACING, otlpTracesUrl } from "../core/trace/tracing-config.ts";
import type { RuntimeMetrics } from "./runtime/runtime-metrics.ts";
import type { EngineCacheSnapshots } from "./engine-cache/engine-cache-snapshots.ts";

/** Until the config is read: the level's default and no worker fields. */
let processLines: Log = processLog("worker");
/** What `ms` in the phase lines counts from: the process's start, or a prestarted process's assignment. */
let bootOrigin = 0;

/** The runtime's modules: loaded once the engine has spawned, or ahead by a prestarted process. */
const runtimeModules = () => Promise.all([import("./runtime/worker-runtime.ts"), import("../core/redis/connect.ts"), import("../core/redis/default-user-check.ts")]);
/** An openai engine's model store and sources (the S3 SDK stays behind its own lazy import). */
const modelStoreModules = () => Promise.all([import("./models/model-store.ts"), import("./models/model-sources.ts")]);

function log(phase: string, detail: Record<string, unknown> = {}): void {
  // Inside a job (an offload's progress), the line carries the job's ids.
  processLines({ msg: phase, phase, ms: Math.round(performance.now() - bootOrigin), ...jobLogContext.getStore(), ...detail });
}

async function main(): Promise<void> {
  // A prestarted process becomes this worker here, its environment replaced by the assigned one.
  bootOrigin = await awaitAssignment(() => Promise.all([runtimeModules(), preloadEngines(), modelStoreModules()]));
  const config = loadWorkerConfig(process.env);
  processLines = processLog("worker", { level: config.logLevel, fields: { workerId: config.workerId, endpointId: config.endpointId } });
  // A handler's console output is logged as structured lines, tagged with the job it ran for.
  routeConsole(processLines);
  // The OpenTelemetry SDK only when spans have somewhere to go: it is not on a plain cold start.
  const tracing = otlpTracesUrl(process.env) === undefined ? NO_TRACING : (await import("../core/trace/otlp-tracing.ts")).startTracing("hearth-worker");
  // Loaded beside the rest of the boot, and only when asked for: prom-client is not on a plain cold start.
  const metricsReady = config.metrics ? startMetrics(config.endpointId) : Promise.resolve(undefined);
  const spec = parseEnv(z.object({ HEARTH_ENGINE: z.string().transform(parseJson).pipe(engineSpec) }), process.env, "worker").HEARTH_ENGINE;
  log("boot", { engine: spec.kind });
  // Only engine processes switch users; a handler runs in this process. Fails here, naming the variable.
  const engineUser = spec.kind === "handler" ? undefined : resolveEngineUser(config.engineUser);
  if (engineUser) log("engine-user", { user: engineUser.name, uid: engineUser.uid, gid: engineUser.gid });
  // The endpoint's own variables and model credentials (set for this worker alone by the scheduler):
  // read once, then gone from this process's environment, which a handler and its libraries can read.
  const secrets = loadWorkerSecrets(process.env, { runpodWorker: spec.kind === "runpod" });
  delete process.env[ENDPOINT_ENV_VAR];
  delete process.env[MODEL_CREDENTIALS_VAR];

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
  // A prestarted worker's channel may have closed before this handler existed (worker/prestart.ts).
  if (bootOrigin > 0 && !process.connected) stop("parent disconnected");
  // A dead parent also closes our stdout/stderr pipes; a failed log write must not crash the drain.
  process.stdout.on("error", () => {});
  process.stderr.on("error", () => {});

  // Set once loaded (see below); the engine's state callback reads it when it fires.
  let metrics: { series: RuntimeMetrics; port: number } | undefined;
  // Only an openai engine has a model to fetch: the model sources (the S3 SDK among them) load for it alone.
  const models = spec.kind === "openai" ? await modelStore(config, secrets.modelCredentials) : undefined;
  // Engine cache snapshots: only for an openai engine, and only where the operator keeps them (HEARTH_ENGINE_CACHE_BUCKET).
  // Their restore asks the control plane before the engine spawns, so they bring a Redis connection of their own.
  const snapshots = models && config.engineCache ? await engineCacheSnapshots(config, config.engineCache.maxBytes, models) : undefined;
  let engineSpawned: () => void = () => {};
  const spawned = new Promise<void>((resolve) => (engineSpawned = resolve));
  let engine: Engine = await createEngine(spec, {
    handlerDirs: config.handlerDirs,
    endpointId: config.endpointId,
    workerId: config.workerId,
    log: processLines,
    // A job-done with stopPod: drained like a SIGTERM, after that job (RunPod refresh_worker).
    onStopRequested: (reason) => stop(reason),
    onLost: (reason) => {
      // Its jobs stay locked and run again elsewhere when the locks lapse, as for any worker that died.
      logError("runpod worker", new Error(reason));
      process.exit(1);
    },
    ...(models && { models }),
    endpointEnv: secrets.endpointEnv,
    onEngineState: (state, detail) => {
      if (state === "starting") engineSpawned();
      log("engine", { state, ...(detail && { detail }) });
      // The supervisor reports `unhealthy` only when its engine process was lost (or a restart failed): it restarts it.
      if (state === "unhealthy") metrics?.series.engineLost();
    },
    // The engine's own lines, tagged with this worker's fields; a JSON line (the embedded engine's pino) stays an object.
    onEngineLog: (line, stream) => processLines({ msg: "engine output", stream, ...engineLine(line) }),
    ...(engineUser && { engineUser }),
    ...(snapshots && { engineCache: snapshots.hooks }),
  });
  // An engine process (an openai engine: a model to load) starts now, before the queue client and
  // the runtime load (~0.4 s of modules here), so the two overlap on a cold start; the runtime
  // awaits this same start. Those modules load only once its process is spawned (or its start
  // failed), so that the spawn does not wait for them. A handler loads in this process: no gain.
  let engineStartedAt: number | undefined;
  if (spec.kind === "openai") {
    const early = startEarly(engine);
    engine = early.engine;
    engineStartedAt = early.startedAt;
    // A model to download first (s3://, https://, not cached): the rest loads during the download.
    await Promise.race([spawned, engine.start().catch(() => {}), ...(models ? [models.downloading] : [])]);
  }
  const [{ WorkerRuntime }, { connectRedis }, { warnIfRedisDefaultUserOpen }] = await runtimeModules();

  const redis = connectRedis(config.redisUrl);
  const subscriber = redis.duplicate();
  void warnIfRedisDefaultUserOpen(config.redisUrl, (msg) => log("warning", { msg }));
  // Both reconnect on their own; a Redis outage shows in failed heartbeats, logged by the runtime.
  redis.on("error", () => {});
  subscriber.on("error", () => {});
  // No Postgres here: what this worker does reaches it through the endpoint's log in Redis.
  const closeClients = async () => {
    await Promise.allSettled([redis.quit(), subscriber.quit(), snapshots?.close()]);
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
    await tracing.shutdown().catch(() => {});
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
      engine,
      ...(engineStartedAt !== undefined && { engineStartedAt }),
      bootOrigin,
      weightsFetchMs: () => models?.weightsFetchMs,
      ...(snapshots && { engineCacheReport: () => snapshots.hooks.report() }),
      weightsCacheHit: () => models?.cacheHit,
      bootPhase: () => {
        if (!models?.fetchingNow) return undefined;
        const progress = models.fetchProgress;
        return { phase: "weights_fetch", ...(progress && { progress }) };
      },
      ...(config.provisionMs !== undefined && { provisionMs: config.provisionMs }),
      ...(config.specHash !== undefined && { specHash: config.specHash }),
      redis,
      subscriber,
      onPhase: (phase, detail) => log(phase, detail),
      onError: (err, context) => logError(context, err),
      log: processLines,
      ...(tracing.tracer && { tracer: tracing.tracer }),
      guardEgress: egressPolicy(config.egressAllowHttp, config.egressAllowList),
    });
  } catch (err) {
    // An engine started early and still running (the runtime failed before it took the engine over) goes too.
    if (engineStartedAt !== undefined) await engine.stop().catch(() => {});
    await closeClients();
    throw err;
  }
  // Awaited only now: loading prom-client overlapped the engine's start; every job is still counted.
  metrics = await metricsReady;
  if (metrics) runtime.attachMetrics(metrics.series, metrics.port);
  if (stopReason !== undefined) return stop(stopReason);
  runtime.start();
  if (process.send) {
    listenForPause(runtime);
    // The provider boots its next prestarted process only now, off this cold start's cores.
    sendToProvider({ type: "hearth:ready" });
  }
  log("ready");
}

/**
 * Snapshot pool: the local provider asks over the IPC channel; the worker readies itself and says
 * so, and only then is its process group frozen (SIGSTOP). Resumed (thawed by SIGCONT, then asked),
 * it takes jobs again and says so. One request at a time, in order.
 */
function listenForPause(runtime: WorkerRuntime): void {
  const reply = (message: PauseReply) => sendToProvider(message);
  let queue: Promise<void> = Promise.resolve();
  process.on("message", (raw: unknown) => {
    const parsed = pauseRequest.safeParse(raw);
    if (!parsed.success) return;
    queue = queue.then(async () => {
      if (parsed.data.type === "hearth:pause") {
        const refused = await runtime.pause();
        reply(refused === undefined ? { type: "hearth:paused" } : { type: "hearth:pause-refused", reason: refused.slice(0, 500) });
      } else {
        await runtime.resume().catch((err: unknown) => logError("resume", err));
        reply({ type: "hearth:resumed" });
      }
    });
  });
}

function sendToProvider(message: PauseReply | { type: "hearth:ready" }): void {
  try {
    process.send?.(message);
  } catch {
    // the scheduler is gone: the disconnect handler drains this worker
  }
}

/**
 * The store an openai engine's model is materialised through; its sources are checked again here,
 * at download, on what is really opened and connected to (a refused S3 endpoint throws). The store
 * measures its own downloads; the runtime reports their length (not billed) as the worker leaves boot.
 */
async function modelStore(config: WorkerConfig, tenantCredentials: ModelCredentials | undefined): Promise<ModelStore> {
  const [{ ModelStore }, { createModelSources }] = await modelStoreModules();
  const modelSources = createModelSources({
    modelDirs: config.modelDirs,
    allow: config.modelAllowList,
    s3: config.s3,
    verifyEtag: config.modelVerifyEtag,
    ...(tenantCredentials && { tenantCredentials }),
  });
  return new ModelStore({
    cacheDir: config.modelCacheDir,
    sources: modelSources.sources,
    ...(config.modelCacheBytes !== undefined && { budgetBytes: config.modelCacheBytes }),
    log: (entry) => log(entry.msg, entry),
  });
}

/**
 * Engine cache snapshots (worker/engine-cache), asking the control plane for URLs on the offload
 * lists. The restore is on the cold start's path: a control plane that does not answer within 5 s
 * costs that once, and the engine starts without its cache.
 */
async function engineCacheSnapshots(config: WorkerConfig, maxBytes: number, models: ModelStore): Promise<{ hooks: EngineCacheSnapshots; close: () => Promise<unknown> }> {
  const [{ EngineCacheSnapshots }, { OffloadClient }, { RedisKeys }, { requireBuiltEntry }, { connectRedis }] = await Promise.all([
    import("./engine-cache/engine-cache-snapshots.ts"),
    import("./runtime/offload-client.ts"),
    import("../core/queue/keys.ts"),
    import("../core/build/built-entry.ts"),
    import("../core/redis/connect.ts"),
  ]);
  const redis = connectRedis(config.redisUrl);
  redis.on("error", () => {}); // reconnects by itself; a failed ask is logged by the snapshots
  const broker = new OffloadClient({ redis, keys: new RedisKeys(config.redisPrefix), endpointId: config.endpointId, timeoutMs: 5000 });
  const hooks = new EngineCacheSnapshots({
    broker,
    image: config.image,
    gpuType: config.gpuType,
    maxBytes,
    modelDigest: (path) => models.digestOf(path),
    tarEntry: requireBuiltEntry("worker/engine-cache/snapshot-tar-main.ts"),
    log: processLines,
  });
  return {
    hooks,
    close: () => {
      broker.close();
      return redis.quit();
    },
  };
}

/**
 * The worker's `/metrics` on 127.0.0.1, a port the OS picks (logged, and put in every heartbeat for
 * the scheduler's service discovery file). Left open until the process exits. A failure is logged
 * and the worker serves without metrics: they are not worth a job.
 */
async function startMetrics(endpointId: string): Promise<{ series: RuntimeMetrics; port: number } | undefined> {
  try {
    const [{ Registry }, { WorkerMetrics }, { serveMetrics }] = await Promise.all([
      import("prom-client"),
      import("./metrics/worker-metrics.ts"),
      import("../core/metrics/metrics-server.ts"),
    ]);
    const series = new WorkerMetrics({ registry: new Registry(), endpointId });
    const listener = await serveMetrics(series.registry, WORKER_METRICS_HOST, 0);
    log("metrics", { url: listener.url, metricsPort: listener.port });
    return { series, port: listener.port };
  } catch (err) {
    logError("metrics", err);
    return undefined;
  }
}

/** One line per error, its cause chain shortened (a full driver error can quote a whole command). */
function logError(context: string, err: unknown): void {
  const parts: string[] = [];
  for (let e: unknown = err, depth = 0; e !== undefined && depth < 4; depth++) {
    parts.push((e instanceof Error ? e.message.split("\n")[0]! : String(e)).slice(0, 200));
    e = e instanceof Error ? e.cause : undefined;
  }
  processLines({ level: "error", msg: `${context} failed`, context, error: parts.join(": ") });
}

function engineLine(line: string): { engine: Record<string, unknown> } | { line: string } {
  if (line.startsWith("{")) {
    try {
      const parsed: unknown = JSON.parse(line);
      if (parsed !== null && typeof parsed === "object" && !Array.isArray(parsed)) return { engine: parsed as Record<string, unknown> };
    } catch {
      // not JSON after all: kept as text
    }
  }
  return { line };
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
