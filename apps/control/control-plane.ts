import type { Redis } from "ioredis";
import type { Sql } from "postgres";
import type { RedisKeys } from "../../core/queue/keys.ts";
import { errorFields, type Log } from "../../core/log/process-log.ts";
import { LogConsumerRunner, type LogConsumer } from "./log-consumer.ts";
import { LogTrimmer } from "./log-trimmer.ts";
import { RecordsProjector } from "./records-projector.ts";
import { TokenSettler } from "./token-settler.ts";
import { LOG_CONSUMERS } from "../../core/log/log-stream.ts";
import { BalanceCache } from "../../core/redis/balance-cache.ts";
import type { PriceTable } from "../../core/billing/price-table.ts";
import { BillingConsumer } from "./billing-consumer.ts";
import { WebhookConsumer } from "./webhook-consumer.ts";
import { WebhookDispatcher } from "./webhook-dispatcher.ts";
import { WebhookSender } from "./webhook-sender.ts";
import { WebhookSecretStore } from "../../core/db/webhook-secrets.ts";
import type { SecretBox } from "../../core/secrets/secret-box.ts";
import type { ObjectStore } from "../../core/objects/object-store.ts";
import type { UrlPolicy } from "../../core/net/url-policy.ts";
import { egressPolicy } from "../../core/config/egress.ts";
import { EMPTY_ALLOW_LIST } from "../../core/net/url-policy.ts";
import { DEFAULT_RETRY_SCHEDULE_S } from "../../core/webhooks/retry-schedule.ts";
import { OffloadBroker } from "./offload-broker.ts";
import { EngineCacheGrants } from "./engine-cache-grants.ts";
import { ControlMetrics } from "./control-metrics.ts";
import type { S3ObjectStoreOptions } from "../../core/objects/s3-object-store.ts";

export interface ControlPlaneOptions {
  /** For XTRIM; each consumer gets a duplicate of it (they block in XREAD). Not closed here. */
  redis: Redis;
  sql: Sql;
  keys: RedisKeys;
  log: Log;
  /** Log entries stay at least this long after every consumer has them (ms). Default 1 h. */
  logRetentionMs?: number;
  /** Finished records are kept this long (ms). Default 90 days. */
  recordRetentionMs?: number;
  /** How often the log is trimmed (ms). Default 10000. */
  trimIntervalMs?: number;
  /** Consumer runner settings (tests shorten them). */
  blockMs?: number;
  batchSize?: number;
  /** Least ms between two passes over a quiet endpoint's open sessions (billing). Default 5000. */
  advanceMs?: number;
  /** How often every tenant's cached balance is rebuilt from its ledger (ms). Default 30000. */
  balanceRefreshMs?: number;
  /** Seed of the price table (tests). Default core/billing's DEFAULT_PRICES. */
  defaultPrices?: PriceTable;
  /** Where webhooks may go (HEARTH_EGRESS_ALLOW_HTTP, HEARTH_EGRESS_ALLOWLIST). Default: https to public addresses only. */
  egress?: UrlPolicy;
  /** HEARTH_WEBHOOK_RETRY_SCHEDULE, seconds before each attempt. Default core/webhooks' DEFAULT_RETRY_SCHEDULE_S. */
  webhookScheduleS?: readonly number[];
  /** Opens endpoints' sealed webhook secrets (HEARTH_SECRETS_KEY). */
  secretsBox?: SecretBox;
  /** Timeout of one webhook attempt (ms). Default 15000. */
  webhookTimeoutMs?: number;
  /** Where outputs over 256 KB are kept; without one they stay in Redis only, for their retention. */
  objects?: ObjectStore;
  /** HEARTH_OUTPUT_BUCKET, where jobs without `s3Config` offload; without it only `s3Config` jobs do. */
  platformBucket?: S3ObjectStoreOptions;
  /** HEARTH_ENGINE_CACHE_BUCKET, where engine cache snapshots are kept; without it workers' requests for them are refused. */
  engineCacheBucket?: S3ObjectStoreOptions;
}


/**
 * The control plane: the log's consumers (the records projector, billing; webhook delivery joins
 * them), the trimmer, and the periodic rebuild of tenants' cached balances. Kept apart from the scheduler, which holds provider
 * credentials, and from the API, which must stay fast.
 */
export class ControlPlane {
  private readonly runners: LogConsumerRunner[];
  private readonly connections: Redis[] = [];
  private readonly trimmer: LogTrimmer;
  private readonly timers = new Set<NodeJS.Timeout>();
  private stopped = false;
  readonly balances: BalanceCache;
  private readonly dispatcher: WebhookDispatcher;
  private readonly offload: OffloadBroker;
  /** What the control plane observes, for its `/metrics` (core/metrics/metrics-server.ts). */
  readonly metrics = new ControlMetrics();

  constructor(private readonly options: ControlPlaneOptions) {
    this.balances = new BalanceCache(options.redis, options.sql, options.keys);
    const billing = new BillingConsumer({ balances: this.balances, log: options.log, metrics: this.metrics, ...(options.defaultPrices && { defaultPrices: options.defaultPrices }) });
    this.dispatcher = new WebhookDispatcher({
      sql: options.sql,
      sender: new WebhookSender({ policy: options.egress ?? egressPolicy(false, EMPTY_ALLOW_LIST), ...(options.webhookTimeoutMs !== undefined && { timeoutMs: options.webhookTimeoutMs }) }),
      secrets: new WebhookSecretStore(options.sql, options.secretsBox),
      scheduleS: options.webhookScheduleS ?? DEFAULT_RETRY_SCHEDULE_S,
      log: options.log,
      metrics: this.metrics,
    });
    this.offload = new OffloadBroker({
      redis: options.redis,
      keys: options.keys,
      log: options.log,
      egress: options.egress ?? egressPolicy(false, EMPTY_ALLOW_LIST),
      ...(options.secretsBox && { secrets: options.secretsBox }),
      ...(options.platformBucket && { platform: options.platformBucket }),
      ...(options.engineCacheBucket && { engineCache: new EngineCacheGrants({ sql: options.sql, bucket: options.engineCacheBucket }) }),
    });
    const webhooks = new WebhookConsumer({ redis: options.redis, keys: options.keys, log: options.log, onDeliveries: () => this.dispatcher.wake() });
    const records = new RecordsProjector({ ...(options.objects && { objects: options.objects }), log: options.log, metrics: this.metrics, tokens: new TokenSettler({ redis: options.redis, keys: options.keys }) });
    const consumers: LogConsumer[] = [records, billing, webhooks];
    this.runners = consumers.map((consumer) => {
      const redis = options.redis.duplicate();
      redis.on("error", () => {}); // reconnects by itself; the runner logs failed rounds
      this.connections.push(redis);
      return new LogConsumerRunner({
        consumer,
        redis,
        sql: options.sql,
        keys: options.keys,
        log: options.log,
        ...(options.blockMs !== undefined && { blockMs: options.blockMs }),
        ...(options.batchSize !== undefined && { batchSize: options.batchSize }),
        ...(options.advanceMs !== undefined && { advanceMs: options.advanceMs }),
      });
    });
    this.trimmer = new LogTrimmer({
      redis: options.redis,
      sql: options.sql,
      keys: options.keys,
      consumers: LOG_CONSUMERS,
      logRetentionMs: options.logRetentionMs ?? 3_600_000,
      recordRetentionMs: options.recordRetentionMs ?? 90 * 24 * 3_600_000,
      log: options.log,
    });
  }

  start(): void {
    for (const r of this.runners) r.start();
    this.dispatcher.start();
    this.offload.start();
    this.repeat(this.options.trimIntervalMs ?? 10_000, "log trim failed", () => this.trimmer.trim());
    this.repeat(this.options.balanceRefreshMs ?? 30_000, "balance cache rebuild failed", () => this.balances.rebuildAll());
  }

  /** Runs `task` every `ms` after the previous run ended, until `stop()`; a failed run is logged. */
  private repeat(ms: number, failure: string, task: () => Promise<unknown>): void {
    const next = () => {
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        task()
          .catch((err: unknown) => this.options.log({ level: "warn", msg: failure, ...errorFields(err) }))
          .finally(() => {
            if (!this.stopped) next();
          });
      }, ms);
      timer.unref();
      this.timers.add(timer);
    };
    next();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    // A consumer blocked in XREAD returns within its block time; disconnecting wakes it sooner.
    const stopped = Promise.all([...this.runners.map((r) => r.stop()), this.dispatcher.stop(), this.offload.stop()]);
    await stopped;
    for (const c of this.connections) c.disconnect();
  }
}
