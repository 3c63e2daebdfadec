import { loadApiConfig } from "../../core/config/process-configs.ts";
import { migrateDb } from "../../core/db/client.ts";
import { errorFields, processLog } from "../../core/log/process-log.ts";
import { startApiServer } from "./api-server.ts";
import { startTracing } from "../../core/trace/otlp-tracing.ts";
import { warnIfRedisDoesNotPersist } from "../../core/redis/persistence.ts";
import { warnIfRedisDefaultUserOpen } from "../../core/redis/default-user-check.ts";

/** Composition root of the API process: config → migrate → serve → close on SIGTERM/SIGINT. */
async function main(): Promise<void> {
  const config = loadApiConfig(process.env);
  const log = processLog("api", { level: config.logLevel });
  await migrateDb(config.databaseUrl);
  const tracing = startTracing("hearth-api");
  const api = await startApiServer(config, { log, ...(tracing.tracer && { tracer: tracing.tracer }) });
  // With TLS: HTTPS with HTTP/2 and HTTP/1.1 on the one port; the certificate's expiry is worth a glance at each start.
  log({ msg: "listening", url: api.url, ...(config.tls && { tls: { cert: config.tls.certPath, validTo: config.tls.validTo, protocols: ["h2", "http/1.1"] } }) });
  // For the operator's eyes, on a line of its own that a shell can `eval`: never in the structured log.
  if (config.adminTokenGenerated) process.stdout.write(`HEARTH_ADMIN_TOKEN=${config.adminToken}\n`);
  void warnIfRedisDoesNotPersist(api.deps.redis, (msg) => log({ level: "warn", msg }));
  void warnIfRedisDefaultUserOpen(config.redisUrl, (msg) => log({ level: "warn", msg }));

  let closing = false;
  const shutdown = (signal: string) => {
    if (closing) return;
    closing = true;
    log({ msg: "shutting down", signal });
    api.close().then(() => tracing.shutdown().catch(() => {})).then(
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
  processLog("api", { destination: process.stderr })({ level: "fatal", msg: "cannot start", ...errorFields(err) });
  process.exit(1);
});
