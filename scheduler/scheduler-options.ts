import type { Redis } from "ioredis";
import type { Db } from "../core/db/client.ts";
import type { Log } from "../core/log/process-log.ts";
import type { BillingMode } from "../core/contracts/billing.ts";
import type { PausedPoolLimits } from "../core/policy/snapshot-pool.ts";
import type { Provider } from "./providers/provider.ts";
import type { SchedulableEndpoint } from "./endpoints.ts";
import type { WorkerRedisUsers } from "./worker-redis-users.ts";
import type { WorkerSecrets } from "./worker-secrets.ts";
import type { SchedulerMetrics } from "./scheduler-metrics.ts";
import type { WorkerSdFile } from "./worker-sd-file.ts";

export interface SchedulerOptions {
  /** Command connection; the scheduler duplicates it once for its wake subscription. Closed by the caller. */
  redis: Redis;
  /** Closed by the caller. */
  db: Db;
  /** Owned from `start()` on: `close()` closes it, which stops (drains) every worker it runs. */
  provider: Provider;
  redisPrefix: string;
  /** Period of the converge loop over all endpoints. Default 1000. A wake converges one endpoint at once. */
  tickMs?: number;
  /** Leadership lease; a dead leader is replaced within it. Default 10_000. */
  lockTtlMs?: number;
  /** Heartbeat period handed to workers (HEARTH_HEARTBEAT_MS); three missed beats make a dead worker's entry stale. Default 1000. */
  heartbeatMs?: number;
  /** How long a stopped worker finishes its jobs before aborting them (HEARTH_DRAIN_TIMEOUT_MS). Default 30_000. */
  drainTimeoutMs?: number;
  /** Added to `drainTimeoutMs` before a worker that has not exited is killed. Default 10_000. */
  killMarginMs?: number;
  /** A worker process silent this long is hung: killed and replaced (ms). Default 15000. */
  hungAfterMs?: number;
  /** Extra environment for every worker. */
  workerEnv?: Record<string, string>;
  /** Opens each endpoint's secrets for its own workers (HEARTH_SECRETS_KEY, operator S3 credentials for allow-listed buckets). Default: none. */
  workerSecrets?: WorkerSecrets;
  /**
   * A Redis user per worker, limited to its endpoint. Owned: `close()` closes it. Default: none,
   * workers get the provider's Redis URL.
   */
  workerRedisUsers?: WorkerRedisUsers;
  /** How often the leader removes Redis users of workers that are gone and restores lost ones (ms). Default 30_000. */
  userSweepMs?: number;
  /** HEARTH_HOST_WORKER_CAP: the most workers the provider runs at once; more demand waits (throttled, `no_capacity`). Default: 4 per core, at least 16. */
  hostWorkerCap?: number;
  /** maxWorkers of a tenant without an override (HEARTH_DEFAULT_MAX_WORKERS). Default 100. */
  defaultMaxWorkers?: number;
  /**
   * HEARTH_BILLING_MODE: under `enforce`, no worker starts for an `enforce` tenant at zero balance
   * and its idle workers stop. Default `meter` for an embedder; the environment's default is `enforce`.
   */
  billingMode?: BillingMode;
  /** spendPerHourMicros of a tenant without an override (HEARTH_DEFAULT_SPEND_PER_HOUR_MICROS). Default 100_000_000. */
  defaultSpendPerHourMicros?: number;
  /** The scheduler's Prometheus series (scheduler/scheduler-metrics.ts). Default: none. */
  metrics?: SchedulerMetrics;
  /**
   * HEARTH_WORKER_SD_FILE: where Prometheus finds the `/metrics` ports workers report in their
   * heartbeats. Owned: written empty at `start()`, updated each converge and at each exit. Default: none.
   */
  workerTargets?: WorkerSdFile;
  /**
   * Warms an endpoint's model in this host's weights cache (scheduler/weights-preloader.ts) when the
   * endpoint is first seen and whenever its desired worker count rises, unless a worker is started
   * for it in the same step (core/weights/preload-trigger.ts). Fire-and-forget. Default: none.
   */
  preload?: (endpoint: SchedulableEndpoint) => void;
  /**
   * The snapshot pool's limits on this host (HEARTH_PAUSED_MEMORY_BYTES, HEARTH_PAUSED_MAX_AGE_S):
   * past them paused workers are stopped, least recently used first. Default: a quarter of the
   * host's memory, one hour.
   */
  pausedPool?: PausedPoolLimits;
  /** How long a worker may take to ready itself for a pause or to take jobs after a resume (ms). Default 10_000. */
  pauseTimeoutMs?: number;
  /** Unique per replica; default host:pid:random. */
  id?: string;
  /** Default Date.now. */
  now?: () => number;
  /** Default: JSON lines on stdout. */
  log?: Log;
}
