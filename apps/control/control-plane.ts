import type { Redis } from "ioredis";
import type { Sql } from "postgres";
import type { RedisKeys } from "../../core/queue/keys.ts";
import { errorFields, type Log } from "../../core/log/process-log.ts";
import { LogConsumerRunner, type LogConsumer } from "./log-consumer.ts";
import { LogTrimmer } from "./log-trimmer.ts";
import { RecordsProjector } from "./records-projector.ts";
import { LOG_CONSUMERS } from "../../core/log/log-stream.ts";

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
}


/**
 * The control plane: the log's consumers (the records projector today; billing and webhook
 * delivery join it) and the trimmer. Kept apart from the scheduler, which holds provider
 * credentials, and from the API, which must stay fast.
 */
export class ControlPlane {
  private readonly runners: LogConsumerRunner[];
  private readonly connections: Redis[] = [];
  private readonly trimmer: LogTrimmer;
  private trimTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: ControlPlaneOptions) {
    const consumers: LogConsumer[] = [new RecordsProjector()];
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
    const every = this.options.trimIntervalMs ?? 10_000;
    const trimLoop = () => {
      this.trimTimer = setTimeout(() => {
        this.trimmer
          .trim()
          .catch((err: unknown) => this.options.log({ level: "warn", msg: "log trim failed", ...errorFields(err) }))
          .finally(() => {
            if (this.trimTimer) trimLoop();
          });
      }, every);
      this.trimTimer.unref();
    };
    trimLoop();
  }

  async stop(): Promise<void> {
    clearTimeout(this.trimTimer);
    this.trimTimer = undefined;
    // A consumer blocked in XREAD returns within its block time; disconnecting wakes it sooner.
    const stopped = Promise.all(this.runners.map((r) => r.stop()));
    await stopped;
    for (const c of this.connections) c.disconnect();
  }
}
