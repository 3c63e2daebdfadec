import type { Redis } from "ioredis";
import type { Sql } from "postgres";
import { z } from "zod";
import { appendAudit, auditRow, type AuditBy } from "../../../core/db/audit-writes.ts";
import type { RedisKeys } from "../../../core/queue/keys.ts";
import { LOG_CONSUMERS } from "../../../core/log/log-stream.ts";

const deadLetterRef = z.object({ endpoint_id: z.string() });


/** Lag past this many entries per endpoint is reported as this number ("at least"). */
const LAG_COUNT_CAP = 10_000;

const cursorRow = z.object({ consumer: z.string(), endpoint_id: z.string(), last_id: z.string() });
const deadLetterRow = z.object({
  id: z.string(),
  consumer: z.string(),
  endpoint_id: z.string(),
  entry_id: z.string(),
  entry_json: z.string(),
  reason: z.string(),
  state: z.string(),
  created_at: z.coerce.date(),
});

export interface ConsumerLag {
  name: string;
  /** Entries in the logs this consumer has not applied yet (per endpoint capped at 10,000). */
  lagEntries: number;
  /** Age of the oldest entry it has not applied, ms (0 when caught up). */
  lagMs: number;
  endpoints: number;
}

/** What `/admin/log` shows: each consumer's lag and the dead letters; and the admin's actions on them. */
export class LogAdmin {
  constructor(
    private readonly redis: Redis,
    private readonly sql: Sql,
    private readonly keys: RedisKeys,
  ) {}

  async status(now = Date.now()): Promise<{ consumers: ConsumerLag[]; deadLetters: { open: number; items: unknown[] } }> {
    const { sql, redis, keys } = this;
    const endpoints = z.array(z.object({ id: z.string() })).parse(await sql`select id from endpoints`);
    const cursors = z.array(cursorRow).parse(await sql`select consumer, endpoint_id, last_id from log_cursors`);
    const consumers: ConsumerLag[] = [];
    for (const name of LOG_CONSUMERS) {
      const mine = new Map(cursors.filter((c) => c.consumer === name).map((c) => [c.endpoint_id, c.last_id]));
      const pipeline = redis.pipeline();
      for (const e of endpoints) pipeline.xrange(keys.log(e.id), `(${mine.get(e.id) ?? "0-0"}`, "+", "COUNT", LAG_COUNT_CAP);
      const results = endpoints.length === 0 ? [] : ((await pipeline.exec()) ?? []);
      let lagEntries = 0;
      let oldest = now;
      for (const [err, value] of results) {
        if (err) throw err;
        const entries = value as [string, string[]][];
        lagEntries += entries.length;
        const first = entries[0];
        if (first) oldest = Math.min(oldest, Number(first[0].split("-")[0]));
      }
      consumers.push({ name, lagEntries, lagMs: Math.max(0, now - oldest), endpoints: endpoints.length });
    }
    const [{ open } = { open: 0 }] = z.array(z.object({ open: z.coerce.number() })).parse(await sql`select count(*) as open from log_dead_letters where state <> 'discarded' and state <> 'retried'`);
    const items = z.array(deadLetterRow).parse(
      await sql`select id, consumer, endpoint_id, entry_id, entry_json, reason, state, created_at from log_dead_letters
                where state <> 'discarded' and state <> 'retried' order by created_at desc limit 100`,
    );
    return {
      consumers,
      deadLetters: {
        open,
        items: items.map((d) => ({ id: d.id, consumer: d.consumer, endpointId: d.endpoint_id, entryId: d.entry_id, entry: safeParse(d.entry_json), reason: d.reason, state: d.state, createdAt: d.created_at.toISOString() })),
      },
    };
  }

  /** Asks the consumer to apply the entry again (it does so on its next round); false when unknown or already closed. */
  async retry(id: string, by: AuditBy): Promise<boolean> {
    return this.sql.begin(async (tx) => {
      const rows = z.array(deadLetterRef).parse(await tx`update log_dead_letters set state = 'retrying' where id = ${id} and state in ('open', 'retrying') returning endpoint_id`);
      if (rows[0]) await appendAudit(tx, [auditRow(by, { action: "dead_letter.retry", endpointId: rows[0].endpoint_id, targetId: id })]);
      return rows.length > 0;
    });
  }

  async discard(id: string, by: AuditBy): Promise<boolean> {
    return this.sql.begin(async (tx) => {
      const rows = z.array(deadLetterRef).parse(await tx`update log_dead_letters set state = 'discarded', resolved_at = now() where id = ${id} and state in ('open', 'retrying') returning endpoint_id`);
      if (rows[0]) await appendAudit(tx, [auditRow(by, { action: "dead_letter.discard", endpointId: rows[0].endpoint_id, targetId: id })]);
      return rows.length > 0;
    });
  }
}

function safeParse(json: string): unknown {
  try {
    return JSON.parse(json);
  } catch {
    return json;
  }
}
