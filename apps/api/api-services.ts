import type { Tracer } from "@opentelemetry/api";
import type { Redis } from "ioredis";
import type { ApiConfig } from "../../core/config/process-configs.ts";
import { egressPolicy } from "../../core/config/egress.ts";
import type { ModelSourcePolicy } from "../../core/engine/model-source-policy.ts";
import { EMPTY_ALLOW_LIST } from "../../core/net/url-policy.ts";
import { SecretBox } from "../../core/secrets/secret-box.ts";
import type { DbHandle } from "../../core/db/client.ts";
import { RedisKeys } from "../../core/queue/keys.ts";
import { redisNowMs } from "../../core/redis/redis-clock.ts";
import type { Log } from "../../core/log/process-log.ts";
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
import type { AdmissionDefaults } from "../../core/config/admission-defaults.ts";
import { RateLimiter } from "./services/rate-limiter.ts";
import { OpenAIAdmission } from "./services/openai-admission.ts";
import { InputGuard } from "./services/input-guard.ts";
import { ExternalGuardClient } from "../../core/guardrails/external-guard.ts";
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
import type { ObjectStore } from "../../core/objects/object-store.ts";
import { PriceStore } from "./services/price-store.ts";
import { Ledger } from "./services/ledger.ts";
import { UsageReports } from "./services/usage-report.ts";
import { SessionCosts } from "./services/session-costs.ts";
import { ReconcileReports } from "./services/reconcile-report.ts";
import { AdminKeyStore } from "./services/admin-key-store.ts";
import { AuditTrail } from "./services/audit-trail.ts";

/** The connections the API's services share; whoever opened them closes them (see `ApiServices.close`). */
export interface ApiClients {
  /** Commands and BullMQ producers (never blocking). */
  redis: Redis;
  /** Pub/sub only: job events, and the API channel where the entry subscribes. */
  subscriber: Redis;
  dbh: DbHandle;
}

/** What the services read from the process's configuration, whichever entry (Node or Workers) parsed it. */
export type ApiServiceSettings = Pick<ApiConfig, "redisPrefix" | "handlerDirs" | "adminToken"> &
  Partial<Pick<ApiConfig, "secretsKey" | "egressAllowHttp" | "egressAllowList" | "metricsPublic" | "logLevel">> & {
    modelPolicy: ModelSourcePolicy;
    /** Tenants' default quotas (HEARTH_DEFAULT_MAX_*). */
    limitDefaults: TenantLimits;
    /** Rate-limit preset and queue capacity bound (HEARTH_DEFAULT_RATE_LIMITS, HEARTH_QUEUE_CAPACITY_*). Default: no preset, no bound. */
    admission?: AdmissionDefaults;
    /** HEARTH_BILLING_MODE; default `meter`. */
    billingMode?: BillingMode;
    /** Default core/policy's DEFAULT_RETENTION (30 min, 1 min). */
    retention?: ResultRetention;
    /** Where large outputs are; `platformBucket` when it is the operator's S3 bucket (HEARTH_OUTPUT_BUCKET). */
    objects: { store: ObjectStore; offloadBytes: number; platformBucket?: string };
  };

export interface ApiServiceOptions {
  log: Log;
  /** Clock of job timing and TTLs (ms epoch); default Date.now. */
  now?: () => number;
  tracer?: Tracer;
  sseHeartbeatMs?: number;
  /** Request metrics and `/metrics` (prom-client, with Node's process metrics). Default true. */
  metrics?: boolean;
}

/** The deps, and the parts an entry must reach to wire pub/sub and to close. */
export interface ApiServices {
  deps: ApiDeps;
  keys: RedisKeys;
  tenants: TenantStore;
  endpoints: EndpointStore;
  queues: EndpointQueues;
  events: JobEvents;
  invalidations: Invalidations;
  /** Stops the services' timers and closes their Queue objects and the subscriber; the entry closes `redis` and the database. */
  close(): Promise<void>;
}

/**
 * Builds every service of the API on connections opened by the entry: one composition for the Node
 * server (connections for the process's life) and the Workers entry (connections for one request).
 * Constructors do no I/O.
 */
export function buildApiServices(clients: ApiClients, settings: ApiServiceSettings, options: ApiServiceOptions): ApiServices {
  const now = options.now ?? Date.now;
  const { redis, subscriber, dbh } = clients;
  const keys = new RedisKeys(settings.redisPrefix);
  // Retrying a lost revocation for as long as the key cache's TTL: past that no replica still trusts the key.
  const keyCacheMs = 60_000;
  const invalidations = new Invalidations({ redis, keys, retryForMs: keyCacheMs, now });
  const tenants = new TenantStore({ db: dbh.db, keyCacheMs, invalidations, now });
  const secrets = settings.secretsKey === undefined ? undefined : new SecretBox(settings.secretsKey);
  const endpoints = new EndpointStore({ db: dbh.db, ...(secrets && { secrets }) });
  const queues = new EndpointQueues(redis, keys);
  const events = new JobEvents({ subscriber, keys });

  const platformBucket = settings.objects.platformBucket;
  const submitter = new JobSubmitter({
    queues,
    redis,
    now,
    ...(secrets && { secrets }),
    offload: { bytes: settings.objects.offloadBytes, platformBucket: platformBucket !== undefined },
  });
  const reader = new JobReader({ queues, events, redis, now });
  const control = new JobControl({ queues, events, redis, submitter, now });
  const syncRuns = new SyncRuns({ submitter, reader });
  const prices = new PriceStore({ sql: dbh.sql, now });
  const billingMode = settings.billingMode ?? "meter";
  const egress = egressPolicy(settings.egressAllowHttp ?? false, settings.egressAllowList ?? EMPTY_ALLOW_LIST);
  const retention = settings.retention ?? DEFAULT_RETENTION;
  const balances = new BalanceCache(redis, dbh.sql, keys);
  const admission = settings.admission;
  const metrics = options.metrics !== false ? new ApiMetrics({ sampleEndpoints: endpointSampler({ endpoints, queues, redis, now }) }) : undefined;
  const policy = new TenantPolicy({
    sql: dbh.sql,
    redis,
    keys,
    defaults: settings.limitDefaults,
    now,
    ...(admission && admission.queueCapacityMultiple > 0 && { queueCapacity: { multiple: admission.queueCapacityMultiple, floor: admission.queueCapacityFloor } }),
    ...(metrics && { onQueueFull: (endpointId: string) => metrics.refused(endpointId, "queue") }),
  });
  const rateLimiter = new RateLimiter({
    redis,
    keys,
    preset: admission?.ratePreset ?? "none",
    log: options.log,
    ...(metrics && { onRefused: (endpointId: string, kind: Parameters<ApiMetrics["refused"]>[1]) => metrics.refused(endpointId, kind) }),
  });
  const deps: ApiDeps = {
    log: options.log,
    ...(options.tracer && { tracer: options.tracer }),
    adminToken: settings.adminToken,
    adminKeys: new AdminKeyStore(dbh.sql),
    audit: new AuditTrail(dbh.sql),
    ...(metrics && { metrics }),
    metricsPublic: settings.metricsPublic ?? false,
    handlerDirs: settings.handlerDirs,
    modelPolicy: settings.modelPolicy,
    egress,
    guard: new InputGuard({ redis, keys, external: new ExternalGuardClient({ policy: egress }), log: options.log, ...(metrics && { metrics }) }),
    submissionChecks: { egress, ...(secrets && { secrets }), ...(platformBucket !== undefined && { platformBucket }) },
    ...(secrets && { secrets }),
    redis,
    keys,
    tenants,
    policy,
    rateLimiter,
    openaiAdmission: new OpenAIAdmission({ limiter: rateLimiter, policy, redis, keys, ...(metrics && { onContextRefused: (endpointId: string) => metrics.refused(endpointId, "context_length") }) }),
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
    objects: settings.objects.store,
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
  return {
    deps,
    keys,
    tenants,
    endpoints,
    queues,
    events,
    invalidations,
    close: async () => {
      invalidations.close();
      await events.close();
      await queues.close();
    },
  };
}
