import type { Redis } from "ioredis";
import type { Sql } from "postgres";
import { z } from "zod";
import { compareStreamIds } from "../../core/log/log-entry.ts";
import type { RedisKeys } from "../../core/queue/keys.ts";
import type { Log } from "../../core/log/process-log.ts";

export interface LogTrimmerOptions {
  redis: Redis;
  sql: Sql;
  keys: RedisKeys;
  /** Every consumer that must have passed an entry before it may go (their cursors are in `log_cursors`). */
  consumers: readonly string[];
  /** Entries younger than this stay even when consumed, for inspection (ms). Default 3_600_000. */
  logRetentionMs: number;
  /** Finished job records and ended worker sessions older than this are deleted (ms). */
  recordRetentionMs: number;
  log: Log;
  now?: () => number;
}

const cursorRow = z.object({ endpoint_id: z.string(), consumer: z.string(), last_id: z.string() });

/**
 * Trims each endpoint's log once every consumer has passed an entry (and it is older than the log's
 * retention), and deletes records past theirs. An endpoint some consumer has never read is not
 * trimmed at all: nothing leaves the log before every consumer has it.
 */
export class LogTrimmer {
  constructor(private readonly options: LogTrimmerOptions) {}

  /** One pass; returns how many log entries were trimmed. */
  async trim(): Promise<number> {
    const { redis, sql, keys, consumers } = this.options;
    const now = (this.options.now ?? Date.now)();
    const rows = z.array(cursorRow).parse(await sql`select endpoint_id, consumer, last_id from log_cursors`);
    const byEndpoint = new Map<string, Map<string, string>>();
    for (const r of rows) {
      let m = byEndpoint.get(r.endpoint_id);
      if (!m) byEndpoint.set(r.endpoint_id, (m = new Map()));
      m.set(r.consumer, r.last_id);
    }
    const retentionId = `${Math.max(0, now - this.options.logRetentionMs)}-0`;
    let trimmed = 0;
    for (const [endpointId, cursors] of byEndpoint) {
      if (!consumers.every((c) => cursors.has(c))) continue;
      // XTRIM MINID drops entries with smaller ids: the slowest consumer's last entry itself stays.
      let minId = retentionId;
      for (const c of consumers) if (compareStreamIds(cursors.get(c)!, minId) < 0) minId = cursors.get(c)!;
      trimmed += Number(await redis.xtrim(keys.log(endpointId), "MINID", minId));
    }
    const cutoff = new Date(now - this.options.recordRetentionMs).toISOString();
    await sql`delete from jobs where finished_at < ${cutoff}::timestamptz`;
    await sql`delete from worker_transitions where at < ${cutoff}::timestamptz and worker_id in (select id from worker_sessions where ended_at < ${cutoff}::timestamptz)`;
    await sql`delete from worker_sessions where ended_at < ${cutoff}::timestamptz`;
    // The ledger keeps the money; a settled session's billing record is only how it was reached.
    await sql`delete from billing_sessions where settled_at < ${cutoff}::timestamptz`;
    // Webhooks: finished deliveries (their attempts cascade), and jobs that never ended within the retention.
    await sql`delete from webhook_deliveries where state <> 'pending' and created_at < ${cutoff}::timestamptz`;
    await sql`delete from webhook_jobs where created_at < ${cutoff}::timestamptz`;
    return trimmed;
  }
}
