import type { ApiConfig } from "../../core/config/process-configs.ts";
import { defaultModelDir } from "../../core/config/model-sources.ts";
import { EMPTY_ALLOW_LIST } from "../../core/net/url-policy.ts";
import { openDb } from "../../core/db/client.ts";
import { controlMessage, parseMessage } from "../../core/queue/messages.ts";
import { connectRedis, whenReady } from "../../core/redis/connect.ts";
import { coalesceWrites } from "../../core/redis/write-coalescing.ts";
import { createApp } from "./app.ts";
import { buildApiServices } from "./api-services.ts";
import { listen, type ConnectionSettings } from "./node-listener.ts";
import { processLog, type Log } from "../../core/log/process-log.ts";
import type { Tracer } from "@opentelemetry/api";
import type { ApiDeps } from "./api-deps.ts";
import { loadLimitDefaults } from "../../core/config/tenant-limit-defaults.ts";
import { loadAdmissionDefaults, type AdmissionDefaults } from "../../core/config/admission-defaults.ts";
import type { TenantLimits } from "../../core/contracts/tenant-limits.ts";
import type { BillingMode } from "../../core/contracts/billing.ts";
import type { ResultRetention } from "../../core/policy/retention.ts";
import { createObjectStore } from "../../core/objects/object-store-config.ts";
import { parseOutputBucket } from "../../core/objects/output-bucket.ts";
import { DEFAULT_OFFLOAD_BYTES, defaultObjectDir, type ObjectStoreSettings } from "../../core/config/object-store-env.ts";

export interface RunningApi {
  url: string;
  port: number;
  deps: ApiDeps;
  /** Stops accepting, then closes connections (nothing is buffered: every accepted job is in Redis and its log). */
  close(): Promise<void>;
}

/**
 * Model sources default to HEARTH_MODEL_DIRS' default and an empty allow-list; secrets to none
 * (refused); webhooks to https:// towards public addresses only (no http, empty egress allow-list).
 */
type ServerConfig = Pick<ApiConfig, "databaseUrl" | "redisUrl" | "redisPrefix" | "handlerDirs" | "port" | "host" | "adminToken"> &
  Partial<Pick<ApiConfig, "modelDirs" | "modelAllowList" | "secretsKey" | "egressAllowHttp" | "egressAllowList" | "metricsPublic" | "metrics" | "logLevel" | "tls">> & {
    /** Default tenant quotas; default: from HEARTH_DEFAULT_MAX_* in the environment. */
    limitDefaults?: TenantLimits;
    /** Rate-limit preset and queue capacity bound; default: HEARTH_DEFAULT_RATE_LIMITS, HEARTH_QUEUE_CAPACITY_* in the environment. */
    admission?: AdmissionDefaults;
    /**
     * HEARTH_BILLING_MODE. Default `meter` for an embedder (tests, a program of one's own), which
     * then opts into refusals; the environment's default (loadApiConfig) is `enforce`.
     */
    billingMode?: BillingMode;
    /** HEARTH_RETENTION_ASYNC_S, HEARTH_RETENTION_SYNC_S. Default core/policy's DEFAULT_RETENTION (30 min, 1 min). */
    retention?: ResultRetention;
    /** Where large outputs are (must be the control plane's). Default the local directory HEARTH_OBJECT_DIR's default. */
    objects?: ObjectStoreSettings;
  };

/**
 * Builds the API's clients and services from config and serves it. The database must be migrated already.
 * `now` is the clock of job timing and TTLs (tests move it forward instead of sleeping); `log`
 * defaults to the process log at `config.logLevel`. With `config.tls` it serves HTTPS with HTTP/2
 * (and HTTP/1.1); `connections` overrides the connection settings (node-listener.ts; tests shorten them).
 */
export async function startApiServer(
  config: ServerConfig,
  options: { now?: () => number; sseHeartbeatMs?: number; log?: Log; tracer?: Tracer; connections?: Partial<ConnectionSettings> } = {},
): Promise<RunningApi> {
  const now = options.now ?? Date.now;
  const dbh = openDb(config.databaseUrl);
  // No ioredis auto-pipelining: each batch builds a Pipeline that copies every script BullMQ defines
  // on the connection, which cost more than the socket writes it saved (measured: /run 12% slower).
  // Corking the socket per event-loop turn (coalesceWrites) saves the writes without that cost.
  // Fail fast while Redis is away (503 with Retry-After) instead of holding every request open
  // until it returns; the subscriber keeps the default and resubscribes when Redis is back.
  const redis = connectRedis(config.redisUrl, { enableOfflineQueue: false, maxRetriesPerRequest: 1 });
  coalesceWrites(redis);
  const subscriber = connectRedis(config.redisUrl);
  subscriber.on("error", () => {}); // reconnects and resubscribes on its own
  redis.on("error", () => {}); // reconnects on its own; requests meanwhile get 503
  await Promise.all([whenReady(redis, config.redisUrl), whenReady(subscriber, config.redisUrl)]);
  const objectSettings = config.objects ?? { objectDir: defaultObjectDir, s3Region: "us-east-1", offloadBytes: DEFAULT_OFFLOAD_BYTES };
  const platformBucket = objectSettings.outputBucket === undefined ? undefined : parseOutputBucket(objectSettings.outputBucket).bucket;
  const services = buildApiServices(
    { redis, subscriber, dbh },
    {
      ...config,
      modelPolicy: { modelDirs: config.modelDirs ?? [defaultModelDir], allow: config.modelAllowList ?? EMPTY_ALLOW_LIST },
      limitDefaults: config.limitDefaults ?? loadLimitDefaults(),
      admission: config.admission ?? loadAdmissionDefaults(),
      objects: { store: createObjectStore(objectSettings), offloadBytes: objectSettings.offloadBytes, ...(platformBucket !== undefined && { platformBucket }) },
    },
    {
      log: options.log ?? processLog("api", { level: config.logLevel ?? "info" }),
      now,
      ...(options.tracer && { tracer: options.tracer }),
      ...(options.sseHeartbeatMs !== undefined && { sseHeartbeatMs: options.sseHeartbeatMs }),
      metrics: config.metrics !== false,
    },
  );
  const { deps, keys, tenants, endpoints, queues } = services;

  // Other replicas announce revocations and endpoint changes; drop our cached copies at once.
  subscriber.on("message", (channel: string, raw: string) => {
    if (channel !== keys.apiChannel()) return;
    const msg = parseMessage(controlMessage, raw);
    if (msg?.type === "invalidate-key") tenants.forgetKeyHash(msg.keyHash);
    if (msg?.type === "invalidate-endpoint") {
      endpoints.forget(msg.endpointId);
      // Deleted endpoints' Queue objects go (an update drops one too: rebuilt on next use, one round trip).
      queues.forget(msg.endpointId);
    }
  });
  await subscriber.subscribe(keys.apiChannel());

  const app = createApp(deps);
  const server = await listen({
    fetch: app.fetch,
    port: config.port,
    host: config.host,
    ...(config.tls && { tls: config.tls }),
    ...(options.connections && { connections: options.connections }),
  });

  return {
    url: server.url,
    port: server.port,
    deps,
    close: async () => {
      await server.close();
      await services.close();
      redis.disconnect();
      await dbh.close();
    },
  };
}
