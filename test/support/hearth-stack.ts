import { tmpdir } from "node:os";
import { randomBytes } from "node:crypto";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { createObjectStore, platformBucket } from "../../core/objects/object-store-config.ts";
import type { S3ObjectStoreOptions } from "../../core/objects/s3-object-store.ts";
import { DEFAULT_OFFLOAD_BYTES, type ObjectStoreSettings } from "../../core/config/object-store-env.ts";
import { fileURLToPath } from "node:url";
import { startApiServer, type RunningApi } from "../../apps/api/api-server.ts";
import type { ConnectionSettings } from "../../apps/api/node-listener.ts";
import type { TlsFiles } from "../../core/config/tls-files.ts";
import { defaultHandlerDir } from "../../core/config/handler-dirs.ts";
import { openDb, type DbHandle } from "../../core/db/client.ts";
import { connectRedis } from "../../core/redis/connect.ts";
import { LocalProvider } from "../../scheduler/providers/local-provider.ts";
import { WorkerOutput } from "../../scheduler/worker-output.ts";
import type { Tracer } from "@opentelemetry/api";
import { Scheduler } from "../../scheduler/scheduler.ts";
import { WorkerRedisUsers } from "../../scheduler/worker-redis-users.ts";
import { WorkerSecrets } from "../../scheduler/worker-secrets.ts";
import { Registry } from "prom-client";
import { SchedulerMetrics } from "../../scheduler/scheduler-metrics.ts";
import { WorkerSdFile } from "../../scheduler/worker-sd-file.ts";
import { parseAllowList } from "../../core/net/url-policy.ts";
import { SecretBox } from "../../core/secrets/secret-box.ts";
import { ControlPlane } from "../../apps/control/control-plane.ts";
import { RedisKeys } from "../../core/queue/keys.ts";
import { apiClient } from "./api-client.ts";
import { egressPolicy } from "../../core/config/egress.ts";
import type { Log } from "../../core/log/process-log.ts";
import type { BillingMode } from "../../core/contracts/billing.ts";
import type { ResultRetention } from "../../core/policy/retention.ts";
import { createTestDatabase, TEST_REDIS_URL, uniquePrefix } from "./services.ts";

export const fixturesDir = fileURLToPath(new URL("../fixtures/handlers", import.meta.url));
export const examplesDir = defaultHandlerDir;
export const STACK_ADMIN_TOKEN = "stack-admin-token-0123456789";
const ADMIN = STACK_ADMIN_TOKEN;

export interface StackOptions {
  /** BullMQ lock of workers: how soon a killed worker's job is re-run. Default 30000. */
  workerLockMs?: number;
  tickMs?: number;
  drainTimeoutMs?: number;
  /** Idle ms before an SSE response gets a keep-alive comment. Default: the API's own (15000). */
  sseHeartbeatMs?: number;
  /** Run the control plane (the log's consumers) in this process. Default true. */
  control?: boolean;
  /** Redis of the whole stack (API, scheduler, workers, control plane). Default: the shared test Redis. */
  redisUrl?: string;
  /**
   * A database already migrated (`migrateDb`) for the whole stack, which the caller owns: `close()`
   * leaves it in place. Default: a fresh test database, dropped by `close()`.
   */
  databaseUrl?: string;
  /** HEARTH_HOST_WORKER_CAP of the scheduler. Default: the scheduler's own. */
  hostWorkerCap?: number;
  /** A Redis user per worker, limited to its endpoint (HEARTH_WORKER_REDIS_ACL). Default true, as in production. */
  workerRedisAcl?: boolean;
  /** HEARTH_MODEL_DIRS of the API and the workers. Default: the OS temp directory, where tests write their models. */
  modelDirs?: string[];
  /** HEARTH_MODEL_ALLOWLIST of the API, the scheduler and the workers. Default empty. */
  modelAllowList?: string;
  /** HEARTH_SECRETS_KEY. Default none: endpoint secrets are refused. */
  secretsKey?: Buffer;
  /** The operator's S3 credentials as variables, which the scheduler gives to workers of allow-listed buckets only. */
  operatorS3Env?: Record<string, string>;
  /** The environment the local provider takes workers' allow-listed part from. Default: this process's. */
  workerInheritEnv?: NodeJS.ProcessEnv;
  /** HEARTH_RETENTION_ASYNC_S / HEARTH_RETENTION_SYNC_S of the API (in ms here). Default 30 min / 1 min. */
  retention?: ResultRetention;
  /** HEARTH_WEBHOOK_RETRY_SCHEDULE of the control plane (seconds). Default the production schedule. */
  webhookScheduleS?: number[];
  /** Timeout of one webhook attempt (ms). Default 15000. */
  webhookTimeoutMs?: number;
  /** HEARTH_BILLING_MODE of the API and the scheduler. Default `meter`: tests not about billing need no credit. */
  billingMode?: BillingMode;
  /**
   * HEARTH_EGRESS_ALLOW_HTTP of the stack. Default true, unlike production (off): tests' webhook
   * receivers are plain http:// servers on loopback.
   */
  egressAllowHttp?: boolean;
  /** HEARTH_EGRESS_ALLOWLIST of the stack. Default `127.0.0.0/8` (production: empty), for the same receivers. */
  egressAllowList?: string;
  /** HEARTH_OFFLOAD_BYTES of the API. Default 1 MB. */
  offloadBytes?: number;
  /**
   * HEARTH_OUTPUT_BUCKET (`s3://bucket/prefix`) and HEARTH_S3_ENDPOINT of the API and the control
   * plane, on the SDK's credential chain (the test sets AWS_* in its environment). Default: none,
   * the local object store.
   */
  outputBucket?: { url: string; endpoint: string };
  /** HEARTH_ENGINE_CACHE_BUCKET of the control plane, as a bucket and its client. Default: none (workers' snapshot requests refused). */
  engineCacheBucket?: S3ObjectStoreOptions;
  /** Every line workers write (their pino JSON), as the local provider reads it. Default: kept for the logs routes only. */
  workerOutput?: (worker: { workerId: string; endpointId: string }, stream: "stdout" | "stderr", line: string) => void;
  /** The control plane's log lines. Default: dropped. */
  controlLog?: Log;
  /** The API's log; default a silent one. */
  apiLog?: Log;
  /** The API's OpenTelemetry tracer (spans exported); default none. */
  apiTracer?: Tracer;
  /**
   * The scheduler's series (SchedulerMetrics, on a registry of its own) and workers serving
   * `/metrics` (HEARTH_WORKER_METRICS=on), listed in `workerSdFile` when given. Default: off.
   */
  metrics?: { workerSdFile?: string };
  /** The scheduler's log lines. Default: dropped. */
  schedulerLog?: Log;
  /**
   * HEARTH_TLS_CERT and HEARTH_TLS_KEY of the API, read (core/config/tls-files.ts): HTTPS with HTTP/2
   * and HTTP/1.1. The test makes its clients (and `call`) trust the certificate. Default: plain HTTP.
   */
  tls?: TlsFiles;
  /** The API's connection timeouts (apps/api/node-listener.ts). Default: the production ones. */
  connections?: Partial<ConnectionSettings>;
  /**
   * Snapshot pool: the local provider lists paused groups in this directory (HEARTH_DATA_DIR), which
   * lets flashboot endpoints pause on scale-down. Default none: workers are stopped, never paused.
   */
  pausedStateDir?: string;
  /** HEARTH_PAUSED_MEMORY_BYTES and HEARTH_PAUSED_MAX_AGE_S (in ms here). Default the scheduler's. */
  pausedPool?: { memoryBytes: number; maxAgeMs: number };
}

/**
 * The whole of Hearth for a test: a migrated database of its own, a Redis prefix of its own, the
 * API on a free port, the scheduler in this process and real worker processes from the local
 * provider. `tenant()` makes a tenant and returns its key; `endpoint()` creates an endpoint through the API.
 */
export async function startStack(options: StackOptions = {}) {
  const database = options.databaseUrl === undefined ? await createTestDatabase() : { url: options.databaseUrl, drop: async () => {} };
  const redisUrl = options.redisUrl ?? TEST_REDIS_URL;
  const redisPrefix = uniquePrefix();
  const handlerDirs = [examplesDir, fixturesDir];
  const modelDirs = options.modelDirs ?? [tmpdir()];
  const parsedAllowList = parseAllowList(options.modelAllowList ?? "");
  if (!parsedAllowList.ok) throw new Error(`modelAllowList: ${parsedAllowList.errors.join("; ")}`);
  const modelAllowList = parsedAllowList.allow;
  // The API and the control plane share one object store: a directory of this stack's own.
  const objectDir = join(tmpdir(), `hearth-objects-${randomBytes(6).toString("hex")}`);
  const parsedEgress = parseAllowList(options.egressAllowList ?? "127.0.0.0/8");
  if (!parsedEgress.ok) throw new Error(`egressAllowList: ${parsedEgress.errors.join("; ")}`);
  const egressAllowList = parsedEgress.allow;
  const egressAllowHttp = options.egressAllowHttp ?? true;
  const objectSettings: ObjectStoreSettings = {
    objectDir,
    s3Region: "us-east-1",
    offloadBytes: options.offloadBytes ?? DEFAULT_OFFLOAD_BYTES,
    ...(options.outputBucket && { outputBucket: options.outputBucket.url, s3Endpoint: options.outputBucket.endpoint }),
  };
  const platform = platformBucket(objectSettings);
  const api: RunningApi = await startApiServer({
    databaseUrl: database.url,
    redisUrl,
    redisPrefix,
    handlerDirs,
    port: 0,
    host: "127.0.0.1",
    adminToken: ADMIN,
    modelDirs,
    modelAllowList,
    ...(options.secretsKey && { secretsKey: options.secretsKey }),
    billingMode: options.billingMode ?? "meter",
    egressAllowHttp,
    egressAllowList,
    ...(options.retention && { retention: options.retention }),
    objects: objectSettings,
    ...(options.tls && { tls: options.tls }),
  }, {
    ...(options.connections && { connections: options.connections }),
    ...(options.sseHeartbeatMs !== undefined && { sseHeartbeatMs: options.sseHeartbeatMs }),
    log: options.apiLog ?? ((line) => void (line.level === "error" && process.stderr.write(`${JSON.stringify(line)}\n`))),
    ...(options.apiTracer && { tracer: options.apiTracer }),
  });
  const redis = connectRedis(redisUrl);
  const dbh: DbHandle = openDb(database.url, { max: 3 });
  // Workers' output kept for the logs routes, as the scheduler's composition root does.
  const output = new WorkerOutput({ redis, keys: new RedisKeys(redisPrefix), flushMs: 50 });
  const provider = new LocalProvider({
    onOutput: (worker, stream, line) => {
      output.add(worker, stream, line);
      options.workerOutput?.(worker, stream, line);
    },
    redisUrl,
    redisPrefix,
    handlerDirs,
    workerLockMs: options.workerLockMs ?? 30_000,
    output: process.env.HEARTH_TEST_WORKER_LOGS ? "forward" : "silent",
    ...(options.workerInheritEnv && { inheritEnv: options.workerInheritEnv }),
    workerMetrics: options.metrics !== undefined,
    ...(options.pausedStateDir !== undefined && { stateDir: options.pausedStateDir }),
  });
  const schedulerMetrics = options.metrics && new SchedulerMetrics({ registry: new Registry() });
  const sdFile = options.metrics?.workerSdFile;
  const workerTargets = sdFile === undefined ? undefined : new WorkerSdFile({ path: sdFile, log: options.schedulerLog ?? (() => {}) });
  const workerRedisUsers = new WorkerRedisUsers({ redis, redisUrl, keys: new RedisKeys(redisPrefix), enabled: options.workerRedisAcl ?? true, log: () => {} });
  const scheduler = new Scheduler({
    redis,
    db: dbh.db,
    provider,
    workerRedisUsers,
    workerSecrets: new WorkerSecrets({
      ...(options.secretsKey && { box: new SecretBox(options.secretsKey) }),
      modelAllowList,
      ...(options.operatorS3Env && { operatorS3Env: options.operatorS3Env }),
    }),
    workerEnv: {
      HEARTH_MODEL_DIRS: modelDirs.join(":"),
      HEARTH_MODEL_ALLOWLIST: modelAllowList.entries.join(","),
      // Workers check jobs' external guards against the same egress policy as the API.
      HEARTH_EGRESS_ALLOWLIST: egressAllowList.entries.join(","),
      HEARTH_EGRESS_ALLOW_HTTP: egressAllowHttp ? "on" : "off",
    },
    redisPrefix,
    tickMs: options.tickMs ?? 500,
    billingMode: options.billingMode ?? "meter",
    ...(options.hostWorkerCap !== undefined && { hostWorkerCap: options.hostWorkerCap }),
    drainTimeoutMs: options.drainTimeoutMs ?? 10_000,
    log: options.schedulerLog ?? (() => {}),
    ...(schedulerMetrics && { metrics: schedulerMetrics }),
    ...(workerTargets && { workerTargets }),
    ...(options.pausedPool && { pausedPool: options.pausedPool }),
  });
  await scheduler.start();
  // The control plane in this process, reading the log often so tests wait little for records.
  const control =
    options.control === false
      ? undefined
      : new ControlPlane({
          redis,
          sql: dbh.sql,
          keys: new RedisKeys(redisPrefix),
          log: options.controlLog ?? (() => {}),
          blockMs: 100,
          trimIntervalMs: 1000,
          egress: egressPolicy(egressAllowHttp, egressAllowList),
          ...(options.webhookScheduleS && { webhookScheduleS: options.webhookScheduleS }),
          ...(options.secretsKey && { secretsBox: new SecretBox(options.secretsKey) }),
          ...(options.webhookTimeoutMs !== undefined && { webhookTimeoutMs: options.webhookTimeoutMs }),
          objects: createObjectStore(objectSettings, platform),
          ...(platform && { platformBucket: platform }),
          ...(options.engineCacheBucket && { engineCacheBucket: options.engineCacheBucket }),
        });
  control?.start();
  const call = apiClient(api.url);

  return {
    api,
    redis,
    redisUrl,
    redisPrefix,
    databaseUrl: database.url,
    db: dbh.db,
    sql: dbh.sql,
    provider,
    scheduler,
    schedulerMetrics,
    control,
    call,
    async tenant(name = "t"): Promise<string> {
      const r = await call("POST", "/admin/tenants", { key: ADMIN, body: { name } });
      if (r.status !== 200) throw new Error(`tenant: ${r.status} ${JSON.stringify(r.body)}`);
      return r.body.apiKey as string;
    },
    /** A tenant with its id, in the stack's billing mode unless `billingMode` says otherwise. */
    async tenantWithId(name: string, body: { billingMode?: BillingMode } = {}): Promise<{ id: string; key: string }> {
      const r = await call("POST", "/admin/tenants", { key: ADMIN, body: { name, ...body } });
      if (r.status !== 200) throw new Error(`tenant: ${r.status} ${JSON.stringify(r.body)}`);
      return { id: r.body.id as string, key: r.body.apiKey as string };
    },
    async endpoint(key: string, body: Record<string, unknown>): Promise<string> {
      const r = await call("POST", "/api/v1/endpoints", { key, body: { name: "ep", ...body } });
      if (r.status !== 200) throw new Error(`endpoint: ${r.status} ${JSON.stringify(r.body)}`);
      return r.body.id as string;
    },
    async close(): Promise<void> {
      await scheduler.close(); // drains and stops every worker
      await output.close();
      await control?.stop();
      await api.close();
      redis.disconnect();
      await dbh.close();
      await database.drop();
      await rm(objectDir, { recursive: true, force: true });
    },
  };
}

export type Stack = Awaited<ReturnType<typeof startStack>>;
