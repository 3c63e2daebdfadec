import { loadControlConfig } from "../../core/config/process-configs.ts";
import { openDb } from "../../core/db/client.ts";
import { processLog, errorFields } from "../../core/log/process-log.ts";
import { RedisKeys } from "../../core/queue/keys.ts";
import { connectRedis } from "../../core/redis/connect.ts";
import { warnIfRedisDoesNotPersist } from "../../core/redis/persistence.ts";
import { warnIfRedisDefaultUserOpen } from "../../core/redis/default-user-check.ts";
import { ControlPlane } from "./control-plane.ts";
import { serveMetrics } from "../../core/metrics/metrics-server.ts";
import { egressPolicy } from "../../core/config/egress.ts";
import { SecretBox } from "../../core/secrets/secret-box.ts";
import { createObjectStore, operatorBucket, platformBucket } from "../../core/objects/object-store-config.ts";

/** Composition root of the control plane: config → clients → consumers of the log → stop on SIGTERM/SIGINT. */
async function main(): Promise<void> {
  const config = loadControlConfig(process.env);
  const log = processLog("control", { level: config.logLevel });
  const redis = connectRedis(config.redisUrl);
  const dbh = openDb(config.databaseUrl, { max: 4 });
  void warnIfRedisDoesNotPersist(redis, (msg) => log({ level: "warn", msg }));
  void warnIfRedisDefaultUserOpen(config.redisUrl, (msg) => log({ level: "warn", msg }));
  const platform = platformBucket(config.objects);
  const control = new ControlPlane({
    redis,
    sql: dbh.sql,
    keys: new RedisKeys(config.redisPrefix),
    log,
    logRetentionMs: config.logRetentionMs,
    recordRetentionMs: config.recordRetentionMs,
    egress: egressPolicy(config.egressAllowHttp, config.egressAllowList),
    webhookScheduleS: config.webhookRetryScheduleS,
    ...(config.secretsKey && { secretsBox: new SecretBox(config.secretsKey) }),
    objects: createObjectStore(config.objects, platform),
    ...(platform && { platformBucket: platform }),
    ...(config.engineCacheBucket !== undefined && {
      engineCacheBucket: operatorBucket(config.engineCacheBucket, { ...(config.objects.s3Endpoint !== undefined && { endpoint: config.objects.s3Endpoint }), region: config.objects.s3Region }),
    }),
  });
  control.start();
  const metrics = config.metricsListen && (await serveMetrics(control.metrics.registry, config.metricsListen.host, config.metricsListen.port));
  log({ msg: "control plane started", prefix: config.redisPrefix, ...(metrics && { metrics: metrics.url }) });

  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log({ msg: "shutting down", signal });
    control
      .stop()
      .then(() => Promise.all([redis.quit(), dbh.close(), metrics?.close()]))
      .then(
        () => process.exit(0),
        (err: unknown) => {
          log({ level: "error", msg: "shutdown failed", ...errorFields(err) });
          process.exit(1);
        },
      );
  };
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  process.on("SIGINT", () => shutdown("SIGINT"));
}

main().catch((err: unknown) => {
  processLog("control", { destination: process.stderr })({ level: "fatal", msg: "cannot start", ...errorFields(err) });
  process.exit(1);
});
