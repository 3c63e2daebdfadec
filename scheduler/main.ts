import { join } from "node:path";
import { totalmem } from "node:os";
import { loadSchedulerConfig } from "../core/config/process-configs.ts";
import { openDb } from "../core/db/client.ts";
import { connectRedis } from "../core/redis/connect.ts";
import { LocalProvider } from "./providers/local-provider.ts";
import { Scheduler } from "./scheduler.ts";
import { errorFields, processLog } from "../core/log/process-log.ts";
import { warnIfRedisDoesNotPersist } from "../core/redis/persistence.ts";
import { warnIfRedisDefaultUserOpen } from "../core/redis/default-user-check.ts";
import { RedisKeys } from "../core/queue/keys.ts";
import { WorkerRedisUsers } from "./worker-redis-users.ts";
import { WorkerOutput } from "./worker-output.ts";
import { SecretBox } from "../core/secrets/secret-box.ts";
import { WorkerSecrets } from "./worker-secrets.ts";
import { Registry } from "prom-client";
import { SchedulerMetrics } from "./scheduler-metrics.ts";
import { WeightsPreloader } from "./weights-preloader.ts";
import { WorkerSdFile } from "./worker-sd-file.ts";
import { serveMetrics } from "../core/metrics/metrics-server.ts";

// The composition root: the only place that reads the environment and names concrete classes.
async function main(): Promise<void> {
  const config = loadSchedulerConfig(process.env);
  const log = processLog("scheduler", { level: config.logLevel });
  const redis = connectRedis(config.redisUrl);
  const dbh = openDb(config.databaseUrl, { max: 4 });
  void warnIfRedisDoesNotPersist(redis, (msg) => log({ level: "warn", msg }));
  void warnIfRedisDefaultUserOpen(config.redisUrl, (msg) => log({ level: "warn", msg }));
  if (!config.workerRedisAcl) log({ level: "warn", msg: "HEARTH_WORKER_REDIS_ACL=off: workers get the scheduler's own Redis credential, not one limited to their endpoint" });
  const workerRedisUsers = new WorkerRedisUsers({
    redis,
    redisUrl: config.redisUrl,
    keys: new RedisKeys(config.redisPrefix),
    enabled: config.workerRedisAcl,
    log,
  });
  // Workers' last lines, for the logs routes (bounded per worker and per job, 24 h).
  const output = new WorkerOutput({ redis, keys: new RedisKeys(config.redisPrefix), log });
  const provider = new LocalProvider({
    onOutput: (worker, stream, line) => output.add(worker, stream, line),
    redisUrl: config.redisUrl,
    redisPrefix: config.redisPrefix,
    handlerDirs: config.handlerDirs,
    workerLockMs: config.workerLockMs,
    workerMetrics: config.workerMetrics,
    // Paused process groups are listed here for the next scheduler on this host (snapshot pool).
    stateDir: join(config.dataDir, "scheduler"),
    // Booted ahead of demand: a cold start skips Node's start and the worker's module loading.
    prestarted: config.prestartedWorkers,
    log,
  });
  const metrics = config.metricsListen ? new SchedulerMetrics({ registry: new Registry() }) : undefined;
  const workerTargets = config.workerSdFile === undefined ? undefined : new WorkerSdFile({ path: config.workerSdFile, log });
  if (config.secretsKey === undefined) log({ level: "warn", msg: "HEARTH_SECRETS_KEY is not set: endpoints with secrets cannot start workers" });
  const workerSecrets = new WorkerSecrets({
    ...(config.secretsKey && { box: new SecretBox(config.secretsKey) }),
    modelAllowList: config.modelAllowList,
    // The operator's S3 credentials, for workers whose model is in an allow-listed bucket only.
    operatorS3Env: Object.fromEntries(Object.entries(process.env).filter((e): e is [string, string] => e[0].startsWith("AWS_") && e[1] !== undefined)),
  });
  // Workers check their model again at download, against the same settings as the API.
  const workerEnv = { HEARTH_MODEL_DIRS: config.modelDirs.join(":"), HEARTH_MODEL_ALLOWLIST: config.modelAllowList.entries.join(",") };
  const preloader = new WeightsPreloader({ workerEnv, secrets: workerSecrets, log });
  const scheduler = new Scheduler({
    preload: (endpoint) => preloader.preload(endpoint),
    redis,
    db: dbh.db,
    provider,
    redisPrefix: config.redisPrefix,
    tickMs: config.tickMs,
    log,
    workerRedisUsers,
    workerSecrets,
    workerEnv,
    defaultMaxWorkers: config.defaultMaxWorkers,
    defaultSpendPerHourMicros: config.defaultSpendPerHourMicros,
    billingMode: config.billingMode,
    ...(config.hostWorkerCap !== undefined && { hostWorkerCap: config.hostWorkerCap }),
    ...(metrics && { metrics }),
    ...(workerTargets && { workerTargets }),
    pausedPool: { memoryBytes: config.pausedMemoryBytes ?? Math.floor(totalmem() / 4), maxAgeMs: config.pausedMaxAgeS * 1000 },
  });
  const metricsListener = metrics && config.metricsListen && (await serveMetrics(metrics.registry, config.metricsListen.host, config.metricsListen.port));

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log({ msg: "shutting down", signal, schedulerId: scheduler.id });
    try {
      // Waits for every worker to drain and exit: no orphans are left behind.
      await scheduler.close();
      await output.close();
      await Promise.all([redis.quit(), dbh.close(), metricsListener?.close()]);
      process.exit(0);
    } catch (err) {
      log({ level: "error", msg: "shutdown failed", ...errorFields(err) });
      process.exit(1);
    }
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));

  await scheduler.start();
  log({
    msg: "scheduler started",
    schedulerId: scheduler.id,
    tickMs: config.tickMs,
    prefix: config.redisPrefix,
    ...(metricsListener && { metrics: metricsListener.url }),
    ...(config.workerSdFile !== undefined && { workerSdFile: config.workerSdFile }),
  });
}

main().catch((err: unknown) => {
  processLog("scheduler", { destination: process.stderr })({ level: "fatal", msg: "cannot start", ...errorFields(err) });
  process.exit(1);
});
