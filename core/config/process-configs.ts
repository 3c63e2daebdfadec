import { tmpdir } from "node:os";
import { join } from "node:path";
import { newAdminToken } from "../ids/random-id.ts";
import { z } from "zod";
import { logLevel, type LogLevel } from "../log/process-log.ts";
import { databaseUrl, intFrom, onOff, optionalString, parseEnv, redisPrefix, redisUrl } from "./parse-env.ts";
import { handlerDirs } from "./handler-dirs.ts";
import { loadLimitDefaults } from "./tenant-limit-defaults.ts";
import { modelAllowList, modelDirs } from "./model-sources.ts";
import { secretsKey } from "./secrets-key.ts";
import { egressEnv } from "./egress.ts";
import { webhookRetrySchedule } from "../webhooks/retry-schedule.ts";
import type { AllowList } from "../net/url-policy.ts";
import { billingMode, type BillingMode } from "../contracts/billing.ts";
import type { ResultRetention } from "../policy/retention.ts";
import { objectStoreEnv, objectStoreSettings, s3BucketUrl, type ObjectStoreSettings } from "./object-store-env.ts";
import { snapshotParts } from "../weights/engine-cache-key.ts";
import { CPU_GPU_TYPE } from "../billing/price-table.ts";
import { tlsEnv, tlsFilesFromEnv, type TlsFiles } from "./tls-files.ts";

/** HEARTH_LOG_LEVEL: trace, debug, info (default), warn, error, fatal or silent; every process reads it and passes it to its workers. */
const logLevelVar = z.preprocess((v) => (v === "" || v === undefined ? "info" : String(v).toLowerCase()), logLevel);

const shared = {
  DATABASE_URL: databaseUrl,
  REDIS_URL: redisUrl,
  HEARTH_REDIS_PREFIX: redisPrefix,
  HEARTH_HANDLER_DIRS: handlerDirs,
  HEARTH_LOG_LEVEL: logLevelVar,
};

/** HEARTH_BILLING_MODE: `enforce` (default: tenants need credit) or `meter` (record and show, refuse nothing). Read by the API and the scheduler. */
const billingModeVar = z.preprocess((v) => (v === "" || v === undefined ? "enforce" : v), billingMode);

/** Where tenants' models may come from: read by the API (at submission), the scheduler (passed to workers) and workers (at download). */
const modelSources = {
  HEARTH_MODEL_DIRS: modelDirs,
  HEARTH_MODEL_ALLOWLIST: modelAllowList,
};

const apiSchema = z.object({
  ...shared,
  ...modelSources,
  HEARTH_SECRETS_KEY: secretsKey,
  PORT: intFrom(8080, 0, 65535),
  HOST: z.preprocess((v) => (v === "" || v === undefined ? "127.0.0.1" : v), z.string()),
  HEARTH_ADMIN_TOKEN: optionalString.pipe(z.string().min(16, "must be at least 16 characters").optional()),
  HEARTH_BILLING_MODE: billingModeVar,
  ...egressEnv,
  /** How long a finished result stays readable through /status: after /run, after /runsync (up to 5 min with `wait`). */
  HEARTH_RETENTION_ASYNC_S: intFrom(1800, 1, 7 * 86_400),
  HEARTH_RETENTION_SYNC_S: intFrom(60, 1, 7 * 86_400),
  ...objectStoreEnv,
  /** `/metrics` without the admin token (for a Prometheus on a private network). */
  HEARTH_METRICS_PUBLIC: onOff(false),
  /** `off`: no request metrics and no `/metrics` (the benchmark's baseline). */
  HEARTH_METRICS: onOff(true),
  /** PEM certificate chain and key paths: both set, the API serves HTTPS and HTTP/2; neither, plain HTTP. */
  ...tlsEnv,
}).transform(tlsFilesFromEnv);

export interface ApiConfig {
  databaseUrl: string;
  redisUrl: string;
  redisPrefix: string;
  /** HEARTH_LOG_LEVEL: the least level written (default `info`). */
  logLevel: LogLevel;
  handlerDirs: string[];
  /** HEARTH_MODEL_DIRS: directories local models must resolve inside. */
  modelDirs: string[];
  /** HEARTH_MODEL_ALLOWLIST, parsed. */
  modelAllowList: AllowList;
  /** HEARTH_SECRETS_KEY (32 bytes); undefined: endpoint secrets are refused. */
  secretsKey?: Buffer;
  port: number;
  host: string;
  adminToken: string;
  /** True when the token was generated at start, so the entry point prints it. */
  adminTokenGenerated: boolean;
  /** HEARTH_BILLING_MODE: what new tenants get; `meter` refuses nothing for anyone. */
  billingMode: BillingMode;
  /** HEARTH_RETENTION_ASYNC_S and HEARTH_RETENTION_SYNC_S, in ms. */
  retention: ResultRetention;
  /** Where large outputs are (HEARTH_OBJECT_DIR, HEARTH_OUTPUT_BUCKET, HEARTH_S3_*): the API serves them. */
  objects: ObjectStoreSettings;
  /** HEARTH_EGRESS_ALLOW_HTTP: webhooks may be plain http:// (checked at submission). Default false. */
  egressAllowHttp: boolean;
  /** HEARTH_EGRESS_ALLOWLIST, parsed: non-public ranges and hosts webhooks may reach. Default empty. */
  egressAllowList: AllowList;
  /** HEARTH_METRICS_PUBLIC: `/metrics` answers without the admin token. Default false. */
  metricsPublic: boolean;
  /** HEARTH_METRICS: request metrics and `/metrics`. Default true. */
  metrics: boolean;
  /** HEARTH_TLS_CERT and HEARTH_TLS_KEY, read and checked at start; absent: plain HTTP. */
  tls?: TlsFiles;
}

export function loadApiConfig(env: NodeJS.ProcessEnv = process.env): ApiConfig {
  const c = parseEnv(apiSchema, env, "api");
  const generated = c.HEARTH_ADMIN_TOKEN === undefined;
  return {
    databaseUrl: c.DATABASE_URL,
    redisUrl: c.REDIS_URL,
    redisPrefix: c.HEARTH_REDIS_PREFIX,
    logLevel: c.HEARTH_LOG_LEVEL,
    handlerDirs: c.HEARTH_HANDLER_DIRS,
    modelDirs: c.HEARTH_MODEL_DIRS,
    modelAllowList: c.HEARTH_MODEL_ALLOWLIST,
    ...(c.HEARTH_SECRETS_KEY !== undefined && { secretsKey: c.HEARTH_SECRETS_KEY }),
    port: c.PORT,
    host: c.HOST,
    adminToken: c.HEARTH_ADMIN_TOKEN ?? newAdminToken(),
    adminTokenGenerated: generated,
    billingMode: c.HEARTH_BILLING_MODE,
    retention: { asyncMs: c.HEARTH_RETENTION_ASYNC_S * 1000, syncMs: c.HEARTH_RETENTION_SYNC_S * 1000 },
    objects: objectStoreSettings(c),
    egressAllowHttp: c.HEARTH_EGRESS_ALLOW_HTTP,
    egressAllowList: c.HEARTH_EGRESS_ALLOWLIST,
    metricsPublic: c.HEARTH_METRICS_PUBLIC,
    metrics: c.HEARTH_METRICS,
    ...(c.tls && { tls: c.tls }),
  };
}

const schedulerSchema = z.object({
  ...shared,
  ...modelSources,
  HEARTH_SECRETS_KEY: secretsKey,
  HEARTH_SCHEDULER_TICK_MS: intFrom(1000, 50, 60_000),
  HEARTH_WORKER_LOCK_MS: intFrom(30_000, 1000, 600_000),
  /** A Redis ACL user per worker, scoped to its endpoint's keys and channels (on by default). */
  HEARTH_WORKER_REDIS_ACL: onOff(true),
  /** The most workers this scheduler's provider runs at once; empty: 4 per core, at least 16. */
  HEARTH_HOST_WORKER_CAP: z.preprocess((v) => (v === "" || v === undefined ? undefined : Number(v)), z.number().int().min(1).max(100_000).optional()),
  HEARTH_BILLING_MODE: billingModeVar,
  /** Serve the scheduler's `/metrics` on this port (0: any free one); unset: no listener. */
  HEARTH_SCHEDULER_METRICS_PORT: z.preprocess((v) => (v === "" || v === undefined ? undefined : Number(v)), z.number().int().min(0).max(65535).optional()),
  HEARTH_SCHEDULER_METRICS_HOST: z.preprocess((v) => (v === "" || v === undefined ? "127.0.0.1" : v), z.string()),
  /** Prometheus file-based service discovery file listing workers' `/metrics` ports; unset: none kept. */
  HEARTH_WORKER_SD_FILE: optionalString,
  /** Where the scheduler keeps host-local state (its paused process groups, for a successor to reclaim). */
  HEARTH_DATA_DIR: z.preprocess((v) => (v === "" || v === undefined ? join(tmpdir(), "hearth-data") : v), z.string()),
  /** Snapshot pool: resident memory all paused workers of the host may keep (bytes); empty: a quarter of the host's memory. */
  HEARTH_PAUSED_MEMORY_BYTES: z.preprocess((v) => (v === "" || v === undefined ? undefined : Number(v)), z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional()),
  /** Snapshot pool: a worker paused longer than this is stopped (seconds). */
  HEARTH_PAUSED_MAX_AGE_S: intFrom(3600, 1, 30 * 86_400),
  /** Worker processes the local provider keeps booted ahead of demand, bound to no endpoint until one needs a worker; 0: none. */
  HEARTH_PRESTARTED_WORKERS: intFrom(1, 0, 64),
});

export interface SchedulerConfig {
  databaseUrl: string;
  redisUrl: string;
  redisPrefix: string;
  /** HEARTH_LOG_LEVEL: the least level written (default `info`). */
  logLevel: LogLevel;
  handlerDirs: string[];
  /** Period of the converge loop; an enqueue wakes it sooner. */
  tickMs: number;
  /** BullMQ lock duration handed to workers: how long a dead worker's job waits before another worker re-runs it. */
  workerLockMs: number;
  /** Handed to workers, which check their model against them again at download. */
  modelDirs: string[];
  modelAllowList: AllowList;
  /** Opens endpoint secrets for the workers of their endpoint; undefined: endpoints with secrets cannot start. */
  secretsKey?: Buffer;
  /**
   * Give each worker a Redis user of its own (ACL SETUSER), limited to its endpoint's keys and
   * channels. Fails open with a warning (workers get this process's credential) where Redis or this
   * process's user refuses ACL SETUSER.
   */
  workerRedisAcl: boolean;
  /** HEARTH_HOST_WORKER_CAP; undefined: the local provider's default (core/policy/capacity.ts). */
  hostWorkerCap?: number;
  /** maxWorkers of tenants without an override (HEARTH_DEFAULT_MAX_WORKERS). */
  defaultMaxWorkers: number;
  /** spendPerHourMicros of tenants without an override (HEARTH_DEFAULT_SPEND_PER_HOUR_MICROS). */
  defaultSpendPerHourMicros: number;
  /** HEARTH_BILLING_MODE: under `enforce`, no worker starts for an `enforce` tenant at zero balance, and its idle ones stop. */
  billingMode: BillingMode;
  /** HEARTH_SCHEDULER_METRICS_HOST and HEARTH_SCHEDULER_METRICS_PORT; absent: no `/metrics` listener. */
  metricsListen?: { host: string; port: number };
  /** HEARTH_WORKER_SD_FILE: where the scheduler lists its workers' `/metrics` for Prometheus; absent: no file. */
  workerSdFile?: string;
  /**
   * Workers serve `/metrics` on a loopback port of their own (HEARTH_WORKER_METRICS=on): whenever the
   * scheduler serves its own or keeps the discovery file. Otherwise they never load prom-client.
   */
  workerMetrics: boolean;
  /** HEARTH_DATA_DIR: host-local state (the paused process groups). Default `$TMPDIR/hearth-data`. */
  dataDir: string;
  /** HEARTH_PAUSED_MEMORY_BYTES; undefined: a quarter of the host's memory. */
  pausedMemoryBytes?: number;
  /** HEARTH_PAUSED_MAX_AGE_S. Default 3600. */
  pausedMaxAgeS: number;
  /** HEARTH_PRESTARTED_WORKERS. Default 1. */
  prestartedWorkers: number;
}

export function loadSchedulerConfig(env: NodeJS.ProcessEnv = process.env): SchedulerConfig {
  const c = parseEnv(schedulerSchema, env, "scheduler");
  return {
    databaseUrl: c.DATABASE_URL,
    redisUrl: c.REDIS_URL,
    redisPrefix: c.HEARTH_REDIS_PREFIX,
    logLevel: c.HEARTH_LOG_LEVEL,
    handlerDirs: c.HEARTH_HANDLER_DIRS,
    tickMs: c.HEARTH_SCHEDULER_TICK_MS,
    workerLockMs: c.HEARTH_WORKER_LOCK_MS,
    modelDirs: c.HEARTH_MODEL_DIRS,
    modelAllowList: c.HEARTH_MODEL_ALLOWLIST,
    ...(c.HEARTH_SECRETS_KEY !== undefined && { secretsKey: c.HEARTH_SECRETS_KEY }),
    workerRedisAcl: c.HEARTH_WORKER_REDIS_ACL,
    ...(c.HEARTH_HOST_WORKER_CAP !== undefined && { hostWorkerCap: c.HEARTH_HOST_WORKER_CAP }),
    defaultMaxWorkers: loadLimitDefaults(env).maxWorkers,
    defaultSpendPerHourMicros: loadLimitDefaults(env).spendPerHourMicros,
    billingMode: c.HEARTH_BILLING_MODE,
    ...(c.HEARTH_SCHEDULER_METRICS_PORT !== undefined && { metricsListen: { host: c.HEARTH_SCHEDULER_METRICS_HOST, port: c.HEARTH_SCHEDULER_METRICS_PORT } }),
    ...(c.HEARTH_WORKER_SD_FILE !== undefined && { workerSdFile: c.HEARTH_WORKER_SD_FILE }),
    workerMetrics: c.HEARTH_SCHEDULER_METRICS_PORT !== undefined || c.HEARTH_WORKER_SD_FILE !== undefined,
    dataDir: c.HEARTH_DATA_DIR,
    ...(c.HEARTH_PAUSED_MEMORY_BYTES !== undefined && { pausedMemoryBytes: c.HEARTH_PAUSED_MEMORY_BYTES }),
    pausedMaxAgeS: c.HEARTH_PAUSED_MAX_AGE_S,
    prestartedWorkers: c.HEARTH_PRESTARTED_WORKERS,
  };
}

const controlSchema = z.object({
  ...shared,
  /** Log entries stay this long after every consumer has them. */
  HEARTH_LOG_RETENTION_MS: intFrom(3_600_000, 0, 30 * 24 * 3_600_000),
  /** Finished job records and ended worker sessions are deleted after this many days. */
  HEARTH_RECORD_RETENTION_DAYS: intFrom(90, 1, 3650),
  ...egressEnv,
  HEARTH_WEBHOOK_RETRY_SCHEDULE: webhookRetrySchedule,
  /** Opens endpoints' sealed webhook signing secrets. */
  HEARTH_SECRETS_KEY: secretsKey,
  ...objectStoreEnv,
  /** Where engine cache snapshots are kept (`s3://bucket/prefix`, on HEARTH_S3_ENDPOINT and the SDK's credentials); unset: none are. */
  HEARTH_ENGINE_CACHE_BUCKET: s3BucketUrl,
  /** Serve the control plane's `/metrics` on this port (0: any free one); unset: no listener. */
  HEARTH_CONTROL_METRICS_PORT: z.preprocess((v) => (v === "" || v === undefined ? undefined : Number(v)), z.number().int().min(0).max(65535).optional()),
  HEARTH_CONTROL_METRICS_HOST: z.preprocess((v) => (v === "" || v === undefined ? "127.0.0.1" : v), z.string()),
});

export interface ControlConfig {
  databaseUrl: string;
  redisUrl: string;
  redisPrefix: string;
  /** HEARTH_LOG_LEVEL: the least level written (default `info`). */
  logLevel: LogLevel;
  logRetentionMs: number;
  recordRetentionMs: number;
  /** HEARTH_EGRESS_ALLOW_HTTP: webhooks may be sent over plain http://. Default false. */
  egressAllowHttp: boolean;
  /** HEARTH_EGRESS_ALLOWLIST, parsed: non-public ranges and hosts webhooks may reach. Default empty. */
  egressAllowList: AllowList;
  /** HEARTH_WEBHOOK_RETRY_SCHEDULE: delays in seconds before each webhook attempt. */
  webhookRetryScheduleS: number[];
  /** HEARTH_SECRETS_KEY: opens webhook signing secrets the API sealed. */
  secretsKey?: Buffer;
  /** Where outputs too large for Postgres are written (HEARTH_OBJECT_DIR, HEARTH_OUTPUT_BUCKET, HEARTH_S3_*). */
  objects: ObjectStoreSettings;
  /** HEARTH_ENGINE_CACHE_BUCKET (`s3://bucket/prefix`); absent: workers' engine cache requests are refused. */
  engineCacheBucket?: string;
  /** HEARTH_CONTROL_METRICS_HOST and HEARTH_CONTROL_METRICS_PORT; absent: no `/metrics` listener. */
  metricsListen?: { host: string; port: number };
}

export function loadControlConfig(env: NodeJS.ProcessEnv = process.env): ControlConfig {
  const c = parseEnv(controlSchema, env, "control");
  return {
    databaseUrl: c.DATABASE_URL,
    redisUrl: c.REDIS_URL,
    redisPrefix: c.HEARTH_REDIS_PREFIX,
    logLevel: c.HEARTH_LOG_LEVEL,
    logRetentionMs: c.HEARTH_LOG_RETENTION_MS,
    recordRetentionMs: c.HEARTH_RECORD_RETENTION_DAYS * 24 * 3_600_000,
    egressAllowHttp: c.HEARTH_EGRESS_ALLOW_HTTP,
    egressAllowList: c.HEARTH_EGRESS_ALLOWLIST,
    webhookRetryScheduleS: c.HEARTH_WEBHOOK_RETRY_SCHEDULE,
    ...(c.HEARTH_SECRETS_KEY !== undefined && { secretsKey: c.HEARTH_SECRETS_KEY }),
    objects: objectStoreSettings(c),
    ...(c.HEARTH_ENGINE_CACHE_BUCKET !== undefined && { engineCacheBucket: c.HEARTH_ENGINE_CACHE_BUCKET }),
    ...(c.HEARTH_CONTROL_METRICS_PORT !== undefined && { metricsListen: { host: c.HEARTH_CONTROL_METRICS_HOST, port: c.HEARTH_CONTROL_METRICS_PORT } }),
  };
}

const { DATABASE_URL: _workersHaveNoDatabase, ...workerShared } = shared;

/** Workers never get Postgres: what they do reaches it through their endpoint's log in Redis. */
const workerSchema = z.object({
  ...workerShared,
  ...modelSources,
  HEARTH_ENDPOINT_ID: z.string().min(1),
  HEARTH_WORKER_ID: z.string().min(1),
  /** The endpoint's engine, as JSON (see core/contracts/endpoint.ts). */
  HEARTH_ENGINE: z.string().min(2),
  HEARTH_EXECUTION_TIMEOUT_MS: intFrom(600_000, 1000, 7 * 24 * 3600 * 1000),
  HEARTH_WORKER_LOCK_MS: intFrom(30_000, 1000, 600_000),
  HEARTH_HEARTBEAT_MS: intFrom(1000, 100, 60_000),
  HEARTH_DRAIN_TIMEOUT_MS: intFrom(30_000, 0, 3_600_000),
  HEARTH_STREAM_LINGER_MS: intFrom(0, 0, 1000),
  /** Where `s3://` and `https://` models are downloaded to before the engine starts. */
  HEARTH_MODEL_CACHE_DIR: z.preprocess((v) => (v === "" || v === undefined ? join(tmpdir(), "hearth-models") : v), z.string()),
  /** Bytes the weights cache may hold; least recently used models no worker uses are evicted beyond it. Unset: no limit. */
  /** Also check single-part S3 ETags (the body's MD5) of models; costs an MD5 pass. Default off. */
  HEARTH_MODEL_VERIFY_ETAG: onOff(false),
  HEARTH_MODEL_CACHE_BYTES: z.preprocess((v) => (v === "" || v === undefined ? undefined : Number(v)), z.number().int().min(1).max(Number.MAX_SAFE_INTEGER).optional()),
  /** S3-compatible endpoint for `s3://` models (MinIO, R2, ...); unset means AWS itself. Credentials: the AWS SDK's own chain (AWS_ACCESS_KEY_ID, ...). */
  HEARTH_S3_ENDPOINT: optionalString.pipe(z.url().optional()),
  HEARTH_S3_REGION: z.preprocess((v) => (v === "" || v === undefined ? "us-east-1" : v), z.string()),
  /** User engine processes run as when the worker runs as root (default `nobody`); see worker/engines/openai/engine-user.ts. */
  HEARTH_ENGINE_USER: optionalString,
  /** Serve `/metrics` on 127.0.0.1, a port the OS picks, reported in the heartbeat (the local provider sets it). Default off. */
  HEARTH_WORKER_METRICS: onOff(false),
  /** Set by the scheduler: its part of this worker's cold start (request → spawn), a span of its monotonic clock, ms. */
  HEARTH_PROVISION_MS: z.preprocess((v) => (v === "" ? undefined : v), z.coerce.number().int().min(0).max(7 * 86_400_000).optional()),
  /** Set by the scheduler: the hash of the engine spec this worker runs (core/policy/rolling.ts). */
  HEARTH_SPEC_HASH: optionalString,
  /** Where jobs' external guardrails may be (inherited from the scheduler's environment, like the API's). */
  ...egressEnv,
  /**
   * Engine cache snapshots on when set (inherited from the scheduler's environment, like the control
   * plane's): the worker asks the control plane for URLs, it never sees the bucket's credentials.
   */
  HEARTH_ENGINE_CACHE_BUCKET: s3BucketUrl,
  /** Bytes the declared cache directories may hold for a snapshot to be archived or restored (default 2 GiB, at most S3's 5 GiB PUT). */
  HEARTH_ENGINE_CACHE_MAX_BYTES: intFrom(2 * 1024 ** 3, 1, 5 * 1024 ** 3),
  /** The worker image, set by the provider (`local` for local processes): part of a snapshot's key. */
  HEARTH_IMAGE: z.preprocess((v) => (v === "" || v === undefined ? "local" : v), snapshotParts.shape.image),
  /** The worker's GPU type, set by the provider (`cpu` for local processes): part of a snapshot's key. */
  HEARTH_GPU_TYPE: z.preprocess((v) => (v === "" || v === undefined ? CPU_GPU_TYPE : v), snapshotParts.shape.gpuType),
});

/** Every variable the worker's config reads: what a provider passes on to workers from its own environment. */
export const WORKER_CONFIG_NAMES: readonly string[] = Object.keys(workerSchema.shape);

export interface WorkerConfig {
  redisUrl: string;
  redisPrefix: string;
  /** HEARTH_LOG_LEVEL: the least level written (default `info`). */
  logLevel: LogLevel;
  handlerDirs: string[];
  endpointId: string;
  workerId: string;
  engineJson: string;
  /** Endpoint default; a job's `policy.executionTimeout` overrides it. */
  executionTimeoutMs: number;
  lockMs: number;
  heartbeatMs: number;
  /** How long SIGTERM waits for running jobs before aborting them and handing them back to the queue. */
  drainTimeoutMs: number;
  /** Least ms between two stream writes of one job: chunks arriving sooner go together (fewer writes, a little latency). */
  streamLingerMs: number;
  modelCacheDir: string;
  /** HEARTH_MODEL_CACHE_BYTES; undefined: the cache is not limited. */
  modelCacheBytes?: number;
  /** HEARTH_MODEL_VERIFY_ETAG. */
  modelVerifyEtag: boolean;
  /** Local models must resolve inside these (HEARTH_MODEL_DIRS). */
  modelDirs: string[];
  /** What model downloads may reach beyond the public internet, and the buckets the operator's credentials may read (HEARTH_MODEL_ALLOWLIST). */
  modelAllowList: AllowList;
  /** S3 client settings for `s3://` models; path-style addressing whenever a custom endpoint is set. */
  s3: { endpoint?: string; region: string; forcePathStyle: boolean };
  /** HEARTH_ENGINE_USER as given; undefined means "nobody" when the worker runs as root. */
  engineUser?: string;
  /** HEARTH_WORKER_METRICS: serve `/metrics` on a loopback port and report it in the heartbeat. */
  metrics: boolean;
  /** HEARTH_PROVISION_MS: the scheduler's part of this worker's cold start, ms. */
  provisionMs?: number;
  /** HEARTH_SPEC_HASH: the engine spec hash this worker runs. */
  specHash?: string;
  /** HEARTH_EGRESS_ALLOW_HTTP: an external guard may be plain http://. Default false. */
  egressAllowHttp: boolean;
  /** HEARTH_EGRESS_ALLOWLIST, parsed: non-public ranges and hosts an external guard may be at. Default empty. */
  egressAllowList: AllowList;
  /** Engine cache snapshots: on when HEARTH_ENGINE_CACHE_BUCKET is set, with HEARTH_ENGINE_CACHE_MAX_BYTES. */
  engineCache?: { maxBytes: number };
  /** HEARTH_IMAGE and HEARTH_GPU_TYPE: what a snapshot's key says this worker is. */
  image: string;
  gpuType: string;
}

export function loadWorkerConfig(env: NodeJS.ProcessEnv = process.env): WorkerConfig {
  const c = parseEnv(workerSchema, env, "worker");
  return {
    redisUrl: c.REDIS_URL,
    redisPrefix: c.HEARTH_REDIS_PREFIX,
    logLevel: c.HEARTH_LOG_LEVEL,
    handlerDirs: c.HEARTH_HANDLER_DIRS,
    endpointId: c.HEARTH_ENDPOINT_ID,
    workerId: c.HEARTH_WORKER_ID,
    engineJson: c.HEARTH_ENGINE,
    executionTimeoutMs: c.HEARTH_EXECUTION_TIMEOUT_MS,
    lockMs: c.HEARTH_WORKER_LOCK_MS,
    heartbeatMs: c.HEARTH_HEARTBEAT_MS,
    drainTimeoutMs: c.HEARTH_DRAIN_TIMEOUT_MS,
    streamLingerMs: c.HEARTH_STREAM_LINGER_MS,
    modelCacheDir: c.HEARTH_MODEL_CACHE_DIR,
    ...(c.HEARTH_MODEL_CACHE_BYTES !== undefined && { modelCacheBytes: c.HEARTH_MODEL_CACHE_BYTES }),
    modelVerifyEtag: c.HEARTH_MODEL_VERIFY_ETAG,
    modelDirs: c.HEARTH_MODEL_DIRS,
    modelAllowList: c.HEARTH_MODEL_ALLOWLIST,
    s3: { ...(c.HEARTH_S3_ENDPOINT && { endpoint: c.HEARTH_S3_ENDPOINT }), region: c.HEARTH_S3_REGION, forcePathStyle: c.HEARTH_S3_ENDPOINT !== undefined },
    ...(c.HEARTH_ENGINE_USER !== undefined && { engineUser: c.HEARTH_ENGINE_USER }),
    metrics: c.HEARTH_WORKER_METRICS,
    ...(c.HEARTH_PROVISION_MS !== undefined && { provisionMs: c.HEARTH_PROVISION_MS }),
    ...(c.HEARTH_SPEC_HASH !== undefined && { specHash: c.HEARTH_SPEC_HASH }),
    egressAllowHttp: c.HEARTH_EGRESS_ALLOW_HTTP,
    egressAllowList: c.HEARTH_EGRESS_ALLOWLIST,
    ...(c.HEARTH_ENGINE_CACHE_BUCKET !== undefined && { engineCache: { maxBytes: c.HEARTH_ENGINE_CACHE_MAX_BYTES } }),
    image: c.HEARTH_IMAGE,
    gpuType: c.HEARTH_GPU_TYPE,
  };
}
