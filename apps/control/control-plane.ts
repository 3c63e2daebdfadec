import type { Redis } from "ioredis";
import type { Sql } from "postgres";
import type { RedisKeys } from "../../core/queue/keys.ts";
import { errorFields, type Log } from "../../core/log/process-log.ts";
import { LogConsumerRunner, type LogConsumer } from "./log-consumer.ts";
import { LogTrimmer } from "./log-trimmer.ts";
import { RecordsProjector } from "./records-projector.ts";
import { LOG_CONSUMERS } from "../../core/log/log-stream.ts";
import { BalanceCache } from "../../core/redis/balance-cache.ts";
import type { PriceTable } from "../../core/billing/price-table.ts";
import { BillingConsumer } from "./billing-consumer.ts";

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

  constructor(private readonly options: ControlPlaneOptions) {
    this.balances = new BalanceCache(options.redis, options.sql, options.keys);
    const billing = new BillingConsumer({ balances: this.balances, log: options.log, ...(options.defaultPrices && { defaultPrices: options.defaultPrices }) });
    const consumers: LogConsumer[] = [new RecordsProjector(), billing];
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
    const stopped = Promise.all(this.runners.map((r) => r.stop()));
    await stopped;
    for (const c of this.connections) c.disconnect();
  }
}
