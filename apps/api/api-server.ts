import type { ApiConfig } from "../../core/config/process-configs.ts";
import { defaultModelDir } from "../../core/config/model-sources.ts";
import { egressPolicy } from "../../core/config/egress.ts";
import { ExternalGuardClient } from "../../core/guardrails/external-guard.ts";
import { InputGuard } from "./services/input-guard.ts";
import { EMPTY_ALLOW_LIST } from "../../core/net/url-policy.ts";
import { SecretBox } from "../../core/secrets/secret-box.ts";
import { openDb } from "../../core/db/client.ts";
import { RedisKeys } from "../../core/queue/keys.ts";
import { controlMessage, parseMessage } from "../../core/queue/messages.ts";
import { connectRedis, whenReady } from "../../core/redis/connect.ts";
import { redisNowMs } from "../../core/redis/redis-clock.ts";
import { coalesceWrites } from "../../core/redis/write-coalescing.ts";
import { createApp } from "./app.ts";
import { listen, type ConnectionSettings } from "./node-listener.ts";
import { processLog, type Log } from "../../core/log/process-log.ts";
import type { Tracer } from "@opentelemetry/api";
import type { ApiDeps } from "./api-deps.ts";
import { EndpointQueues } from "./services/endpoint-queues.ts";
import { EndpointStore } from "./services/endpoint-store.ts";
import { JobControl } from "./services/job-control.ts";
import { JobEvents } from "./services/job-events.ts";
import { JobReader } from "./services/job-reader.ts";
import { JobSubmitter } from "./services/job-submitter.ts";
import { OpenAIRelay } from "./services/openai-relay.ts";
import { TenantStore } from "./services/tenant-store.ts";
import { TenantPolicy } from "./services/tenant-policy.ts";
import { loadLimitDefaults } from "../../core/config/tenant-limit-defaults.ts";
import type { TenantLimits } from "../../core/contracts/tenant-limits.ts";
import { Invalidations } from "./services/invalidations.ts";
import { JobRecords } from "./services/job-records.ts";
import { OutputLogs } from "./services/output-logs.ts";
import { LogAdmin } from "./services/log-admin.ts";
import { SyncRuns } from "./services/sync-runs.ts";
import { BillingGate } from "./services/billing-gate.ts";
import { WebhookDeliveries } from "./services/webhook-deliveries.ts";
import { DEFAULT_WEBHOOK_SECRET_GRACE_MS, WebhookSecretStore } from "../../core/db/webhook-secrets.ts";
import { BalanceCache } from "../../core/redis/balance-cache.ts";
import type { BillingMode } from "../../core/contracts/billing.ts";
import { DEFAULT_RETENTION, type ResultRetention } from "../../core/policy/retention.ts";
import { ApiMetrics } from "./metrics/api-metrics.ts";
import { endpointSampler } from "./metrics/endpoint-samples.ts";
import { createObjectStore, parseOutputBucket } from "../../core/objects/object-store-config.ts";
import { DEFAULT_OFFLOAD_BYTES, defaultObjectDir, type ObjectStoreSettings } from "../../core/config/object-store-env.ts";
import { PriceStore } from "./services/price-store.ts";
import { Ledger } from "./services/ledger.ts";
import { UsageReports } from "./services/usage-report.ts";
import { SessionCosts } from "./services/session-costs.ts";
import { ReconcileReports } from "./services/reconcile-report.ts";
import { AdminKeyStore } from "./services/admin-key-store.ts";
import { AuditTrail } from "./services/audit-trail.ts";

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
  const keys = new RedisKeys(config.redisPrefix);

  // Retrying a lost revocation for as long as the key cache's TTL: past that no replica still trusts the key.
  const keyCacheMs = 60_000;
  const invalidations = new Invalidations({ redis, keys, retryForMs: keyCacheMs, now });
  const tenants = new TenantStore({ db: dbh.db, keyCacheMs, invalidations, now });
  const secrets = config.secretsKey === undefined ? undefined : new SecretBox(config.secretsKey);
  const endpoints = new EndpointStore({ db: dbh.db, ...(secrets && { secrets }) });
  const queues = new EndpointQueues(redis, keys);
  const events = new JobEvents({ subscriber, keys });

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

  const objectSettings = config.objects ?? { objectDir: defaultObjectDir, s3Region: "us-east-1", offloadBytes: DEFAULT_OFFLOAD_BYTES };
  const platformBucket = objectSettings.outputBucket === undefined ? undefined : parseOutputBucket(objectSettings.outputBucket).bucket;
  const submitter = new JobSubmitter({
    queues,
    redis,
    now,
    ...(secrets && { secrets }),
    offload: { bytes: objectSettings.offloadBytes, platformBucket: platformBucket !== undefined },
  });
  const reader = new JobReader({ queues, events, redis, now });
  const control = new JobControl({ queues, events, redis, submitter, now });
  const syncRuns = new SyncRuns({ submitter, reader });
  const prices = new PriceStore({ sql: dbh.sql, now });
  const billingMode = config.billingMode ?? "meter";
  const egress = egressPolicy(config.egressAllowHttp ?? false, config.egressAllowList ?? EMPTY_ALLOW_LIST);
  const retention = config.retention ?? DEFAULT_RETENTION;
  const balances = new BalanceCache(redis, dbh.sql, keys);
  const log = options.log ?? processLog("api", { level: config.logLevel ?? "info" });
  const metrics = config.metrics !== false ? new ApiMetrics({ sampleEndpoints: endpointSampler({ endpoints, queues, redis, now }) }) : undefined;
  const deps: ApiDeps = {
    log,
    ...(options.tracer && { tracer: options.tracer }),
    adminToken: config.adminToken,
    adminKeys: new AdminKeyStore(dbh.sql),
    audit: new AuditTrail(dbh.sql),
    ...(metrics && { metrics }),
    metricsPublic: config.metricsPublic ?? false,
    handlerDirs: config.handlerDirs,
    modelPolicy: { modelDirs: config.modelDirs ?? [defaultModelDir], allow: config.modelAllowList ?? EMPTY_ALLOW_LIST },
    egress,
    guard: new InputGuard({ redis, keys, external: new ExternalGuardClient({ policy: egress }), log, ...(metrics && { metrics }) }),
    submissionChecks: { egress, ...(secrets && { secrets }), ...(platformBucket !== undefined && { platformBucket }) },
    ...(secrets && { secrets }),
    redis,
    keys,
    tenants,
    policy: new TenantPolicy({ sql: dbh.sql, redis, keys, defaults: config.limitDefaults ?? loadLimitDefaults(), now }),
    invalidations,
    endpoints,
    queues,
    submitter,
    reader,
    control,
    syncRuns,
    records: new JobRecords(dbh.sql),
    outputLogs: new OutputLogs(redis, dbh.sql, keys),
    logAdmin: new LogAdmin(redis, dbh.sql, keys),
    prices,
    ledger: new Ledger({ sql: dbh.sql, now }),
    billingMode,
    balances,
    billing: new BillingGate({ mode: billingMode, balances, now }),
    webhooks: new WebhookDeliveries(dbh.sql),
    webhookSecrets: new WebhookSecretStore(dbh.sql, secrets),
    webhookSecretGraceMs: DEFAULT_WEBHOOK_SECRET_GRACE_MS,
    retention,
    objects: createObjectStore(objectSettings),
    usage: new UsageReports(dbh.sql),
    sessionCosts: new SessionCosts({ sql: dbh.sql, prices }),
    reconcile: new ReconcileReports({ sql: dbh.sql, prices }),
    logNow: () => redisNowMs(redis),
    openai: new OpenAIRelay({ submitter, reader, events, control, syncRuns, retention, ...(options.sseHeartbeatMs !== undefined && { heartbeatMs: options.sseHeartbeatMs }) }),
    checkReady: async () => {
      const [r, p] = await Promise.all([
        redis.ping().then(() => true, () => false),
        dbh.sql`select 1`.then(() => true, () => false),
      ]);
      return { redis: r, postgres: p };
    },
  };

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
      invalidations.close();
      await events.close();
      await queues.close();
      redis.disconnect();
      await dbh.close();
    },
  };
}
