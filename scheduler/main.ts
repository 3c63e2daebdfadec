import { loadSchedulerConfig } from "../core/config/process-configs.ts";
import { openDb } from "../core/db/client.ts";
import { connectRedis } from "../core/redis/connect.ts";
import { LocalProvider } from "./providers/local-provider.ts";
import { Scheduler } from "./scheduler.ts";
import { errorFields, jsonLineLog } from "../core/log/process-log.ts";
import { warnIfRedisDoesNotPersist } from "../core/redis/persistence.ts";

// The composition root: the only place that reads the environment and names concrete classes.
async function main(): Promise<void> {
  const config = loadSchedulerConfig(process.env);
  const log = jsonLineLog("scheduler");
  const redis = connectRedis(config.redisUrl);
  const dbh = openDb(config.databaseUrl, { max: 4 });
  void warnIfRedisDoesNotPersist(redis, (msg) => log({ level: "warn", msg }));
  const provider = new LocalProvider({
    redisUrl: config.redisUrl,
    redisPrefix: config.redisPrefix,
    handlerDirs: config.handlerDirs,
    workerLockMs: config.workerLockMs,
  });
  const scheduler = new Scheduler({ redis, db: dbh.db, provider, redisPrefix: config.redisPrefix, tickMs: config.tickMs, log });

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log({ msg: "shutting down", signal, schedulerId: scheduler.id });
    try {
      // Waits for every worker to drain and exit: no orphans are left behind.
      await scheduler.close();
      await Promise.all([redis.quit(), dbh.close()]);
      process.exit(0);
    } catch (err) {
      log({ level: "error", msg: "shutdown failed", ...errorFields(err) });
      process.exit(1);
    }
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));

  await scheduler.start();
  log({ msg: "scheduler started", schedulerId: scheduler.id, tickMs: config.tickMs, prefix: config.redisPrefix });
}

main().catch((err: unknown) => {
  process.stderr.write(`scheduler failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
