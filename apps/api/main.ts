import { loadApiConfig } from "../../core/config/process-configs.ts";
import { migrateDb } from "../../core/db/client.ts";
import { startApiServer } from "./api-server.ts";
import { warnIfRedisDoesNotPersist } from "../../core/redis/persistence.ts";
import { warnIfRedisDefaultUserOpen } from "../../core/redis/default-user-check.ts";

/** Composition root of the API process: config → migrate → serve → close on SIGTERM/SIGINT. */
async function main(): Promise<void> {
  const config = loadApiConfig(process.env);
  await migrateDb(config.databaseUrl);
  const api = await startApiServer(config);
  console.log(JSON.stringify({ t: "api", msg: "listening", url: api.url }));
  if (config.adminTokenGenerated) console.log(`HEARTH_ADMIN_TOKEN=${config.adminToken}`);
  void warnIfRedisDoesNotPersist(api.deps.redis, (msg) => console.warn(JSON.stringify({ t: "api", level: "warn", msg })));
  void warnIfRedisDefaultUserOpen(config.redisUrl, (msg) => console.warn(JSON.stringify({ t: "api", level: "warn", msg })));

  let closing = false;
  const shutdown = (signal: string) => {
    if (closing) return;
    closing = true;
    console.log(JSON.stringify({ t: "api", msg: "shutting down", signal }));
    api.close().then(
      () => process.exit(0),
      (err) => {
        console.error(err);
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  process.on("SIGINT", () => shutdown("SIGINT"));
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
