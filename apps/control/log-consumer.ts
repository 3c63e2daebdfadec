import type { Redis } from "ioredis";
import postgres, { type Sql, type TransactionSql } from "postgres";
import { z } from "zod";
import { compareStreamIds, InvalidLogEntry, parseLogEntry, parseStreamId, type LogEntry } from "../../core/log/log-entry.ts";
import { redisNowMs } from "../../core/redis/redis-clock.ts";
import { toPgText } from "../../core/db/pg-text.ts";
import type { RedisKeys } from "../../core/queue/keys.ts";
import type { Log } from "../../core/log/process-log.ts";

/** What a consumer knows of the endpoint an entry came from. */
export interface EntryContext {
  endpointId: string;
  tenantId: string;
  /**
   * How far this endpoint's log has been read, ms on Redis' clock: every entry with a smaller ms
   * has been handed to the consumer (this batch included). A consumer that acts on time (billing's
   * minutes) may act up to it and never past it.
   */
  until: number;
}

/**
 * One consumer of the endpoints' logs. `apply` runs inside the Postgres transaction that also
 * advances the consumer's cursor, so an entry's effects are committed exactly once; it must be
 * idempotent all the same (a dead letter may be retried after newer entries were applied).
 */
export interface LogConsumer {
  readonly name: string;
  /** Its own pause after a short read (ms), where latency matters more than batching; the runner's `lingerMs` wins. */
  readonly lingerMs?: number;
  apply(tx: TransactionSql, entry: LogEntry, ctx: EntryContext): Promise<void>;
  /** Applies a batch at once where that is cheaper; must leave what `apply` one by one would. */
  applyBatch?(tx: TransactionSql, entries: LogEntry[], ctx: EntryContext): Promise<void>;
  /**
   * After a batch's entries were applied (or set aside), in the same transaction, before the cursor
   * moves. It must not throw for one bad record (set it aside itself), or the batch is retried.
   */
  finishBatch?(tx: TransactionSql, ctx: EntryContext): Promise<void>;
  /**
   * For an endpoint whose log had nothing new in a round: the log has still been read up to
   * `ctx.until`. Called at most every `advanceMs` per endpoint; a consumer that acts on time
   * catches up here. Effects must be idempotent (no cursor moves with them).
   */
  advance?(sql: Sql, ctx: EntryContext): Promise<void>;
  /** Once a batch's transaction committed, with the batch's readable entries (caches and metrics may be updated now). Must not throw. */
  committed?(ctx: EntryContext, entries: readonly LogEntry[]): void;
  /**
   * False when a batch (every entry readable) would change nothing of this consumer's: the runner
   * then opens no transaction and saves its cursor at most every `cursorSaveMs` (a crash replays
   * such entries, which change nothing again). Speed only: say true whenever unsure.
   */
  needsTransaction?(entries: readonly LogEntry[], ctx: EntryContext): boolean;
}

export interface LogConsumerRunnerOptions {
  consumer: LogConsumer;
  /** A connection of its own: it blocks in XREAD. Not closed here. */
  redis: Redis;
  sql: Sql;
  keys: RedisKeys;
  log: Log;
  /** Most entries read per endpoint per round. Default 500. */
  batchSize?: number;
  /** How long one XREAD waits for new entries (ms). Default 1000. */
  blockMs?: number;
  /** How often the list of endpoints is re-read from Postgres (ms). Default 2000. */
  endpointRefreshMs?: number;
  /**
   * Least ms between two looks for dead letters an admin asked to retry. Default 1000: each look is
   * a Postgres query, and a round can come every 20 ms under load (three consumers, one each).
   */
  deadLetterPollMs?: number;
  /** Pause after a failed round (Redis or Postgres away) before the next (ms). Default 1000. */
  retryMs?: number;
  /** A warning is logged when the consumer is this far behind the log (ms). Default 30000. */
  lagWarnMs?: number;
  /** Least ms between two `advance` calls of one endpoint. Default 5000. */
  advanceMs?: number;
  /** Least ms between two saves of a cursor moved by batches that needed no transaction. Default 1000. */
  cursorSaveMs?: number;
  /**
   * After a round that read less than a full batch, wait this long before the next (ms). Default
   * 100: a steady trickle then costs one transaction per interval, not one per entry or two.
   */
  lingerMs?: number;
}

const endpointRow = z.object({ id: z.string(), tenant_id: z.string() });
const cursorRow = z.object({ endpoint_id: z.string(), last_id: z.string() });
const deadLetterRow = z.object({ id: z.string(), endpoint_id: z.string(), entry_id: z.string(), entry_json: z.string() });

type Raw = [id: string, fields: string[]];

/**
 * Runs one consumer over every endpoint's log: reads entries after its cursors (one XREAD over all
 * streams), applies each batch in one Postgres transaction with the new cursor, and resumes from the
 * committed cursors after any crash. An entry that cannot be parsed or applied is set aside as a
 * dead letter (in the same transaction) and never blocks the entries behind it; a failure of Redis
 * or Postgres themselves is retried, with nothing skipped.
 */
export class LogConsumerRunner {
  private readonly cursors = new Map<string, string>();
  private readonly tenants = new Map<string, string>();
  private endpointsReadAt = -Infinity;
  private deadLettersReadAt = -Infinity;
  private running: Promise<void> | undefined;
  private stopping = false;
  private lastLagWarning = 0;
  private readonly advancedAt = new Map<string, number>();
  /** When each endpoint's cursor was last saved (ms, this process's clock: pacing only). */
  private readonly savedAt = new Map<string, number>();
  private readonly batchSize: number;
  private readonly blockMs: number;

  constructor(private readonly options: LogConsumerRunnerOptions) {
    this.batchSize = options.batchSize ?? 500;
    this.blockMs = options.blockMs ?? 1000;
  }

  get name(): string {
    return this.options.consumer.name;
  }

  start(): void {
    this.running ??= this.loop();
  }

  /** Finishes the round in flight (its transaction commits or rolls back whole) and stops. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.running;
  }

  private async loop(): Promise<void> {
    while (!this.stopping) {
      try {
        const n = await this.round();
        if (n > 0 && n < this.batchSize) await sleep(this.options.lingerMs ?? this.options.consumer.lingerMs ?? 100);
      } catch (err) {
        this.options.log({ level: "warn", msg: "log consumer round failed; retrying", consumer: this.name, error: errorText(err) });
        await sleep(this.options.retryMs ?? 1000);
      }
    }
  }

  /** Reads and applies one round of entries; returns how many were consumed. Public for tests. */
  async round(): Promise<number> {
    await this.refreshEndpoints();
    await this.retryDeadLetters();
    const ids = [...this.tenants.keys()];
    if (ids.length === 0) {
      await sleep(Math.min(this.blockMs, 200));
      return 0;
    }
    const { keys, redis } = this.options;
    const streams = ids.map((id) => keys.log(id));
    const after = ids.map((id) => this.cursors.get(id) ?? "0-0");
    // Read before the XREAD: Redis dates each entry by its own clock, never below the stream's last
    // id, so every entry with a smaller ms is already in the stream when XREAD looks.
    const before = await redisNowMs(redis);
    const res = (await redis.xread("COUNT", this.batchSize, "BLOCK", this.blockMs, "STREAMS", ...streams, ...after)) as [string, Raw[]][] | null;
    const byKey = new Map(ids.map((id) => [keys.log(id), id]));
    const read = new Set<string>();
    let consumed = 0;
    for (const [key, entries] of res ?? []) {
      const endpointId = byKey.get(key);
      if (!endpointId || entries.length === 0) continue;
      read.add(endpointId);
      const lastMs = parseStreamId(entries[entries.length - 1]![0]).ms;
      // A full batch may have left entries of its last ms (and later) behind; a short one did not.
      const until = entries.length >= this.batchSize ? lastMs : Math.max(before, lastMs);
      await this.consume(endpointId, entries, until);
      this.advancedAt.set(endpointId, Date.now());
      consumed += entries.length;
      if (entries.length >= this.batchSize) this.noteLag(endpointId, entries[entries.length - 1]![0]);
    }
    if (this.options.consumer.advance) await this.advanceQuiet(ids.filter((id) => !read.has(id)), before);
    return consumed;
  }

  /** Lets the consumer act on time for endpoints whose logs were quiet, each at most every `advanceMs`. */
  private async advanceQuiet(endpointIds: string[], until: number): Promise<void> {
    const now = Date.now();
    const every = this.options.advanceMs ?? 5000;
    for (const endpointId of endpointIds) {
      if (now - (this.advancedAt.get(endpointId) ?? -Infinity) < every) continue;
      this.advancedAt.set(endpointId, now);
      await this.options.consumer.advance!(this.options.sql, { endpointId, tenantId: this.tenants.get(endpointId)!, until });
    }
  }

  private async consume(endpointId: string, entries: Raw[], until: number): Promise<void> {
    const ctx: EntryContext = { endpointId, tenantId: this.tenants.get(endpointId)!, until };
    const lastId = entries[entries.length - 1]![0];
    const parsed = entries.map(([id, fields]) => {
      try {
        return { id, fields, entry: parseLogEntry(id, fields) };
      } catch (err) {
        return { id, fields, invalid: errorText(err) };
      }
    });
    const { sql, consumer } = this.options;
    if (consumer.needsTransaction && parsed.every((p) => p.entry) && !consumer.needsTransaction(parsed.map((p) => p.entry!), ctx)) {
      this.cursors.set(endpointId, lastId);
      if (Date.now() - (this.savedAt.get(endpointId) ?? -Infinity) >= (this.options.cursorSaveMs ?? 1000)) {
        await this.saveCursor(sql, endpointId, lastId);
        this.savedAt.set(endpointId, Date.now());
      }
      return;
    }
    const valid = parsed.flatMap((p) => (p.entry ? [p.entry] : []));
    try {
      // Fast path: the whole batch in one transaction, statements pipelined.
      await sql.begin(async (tx) => {
        const applied = consumer.applyBatch ? consumer.applyBatch(tx, valid, ctx) : Promise.all(valid.map((e) => consumer.apply(tx, e, ctx)));
        await Promise.all([applied, ...parsed.filter((p) => !p.entry).map((p) => this.deadLetter(tx, endpointId, p.id, p.fields, p.invalid ?? "invalid"))]);
        await consumer.finishBatch?.(tx, ctx);
        await this.saveCursor(tx, endpointId, lastId);
      });
    } catch (err) {
      if (isTransient(err)) throw err;
      // Slow path: one savepoint per entry, so the one that fails is set aside alone.
      await sql.begin(async (tx) => {
        for (const p of parsed) {
          if (!p.entry) {
            await this.deadLetter(tx, endpointId, p.id, p.fields, p.invalid ?? "invalid");
            continue;
          }
          const entry = p.entry;
          try {
            await tx.savepoint((sp) => consumer.apply(sp, entry, ctx));
          } catch (entryErr) {
            if (isTransient(entryErr)) throw entryErr;
            await this.deadLetter(tx, endpointId, p.id, p.fields, errorText(entryErr));
            this.options.log({ level: "warn", msg: "log entry set aside", consumer: this.name, endpointId, entryId: p.id, error: errorText(entryErr) });
          }
        }
        await consumer.finishBatch?.(tx, ctx);
        await this.saveCursor(tx, endpointId, lastId);
      });
    }
    this.cursors.set(endpointId, lastId);
    this.savedAt.set(endpointId, Date.now());
    consumer.committed?.(ctx, valid);
  }

  private async saveCursor(tx: TransactionSql | Sql, endpointId: string, lastId: string): Promise<void> {
    await tx`
      insert into log_cursors (consumer, endpoint_id, last_id, updated_at) values (${this.name}, ${endpointId}, ${lastId}, now())
      on conflict (consumer, endpoint_id) do update set last_id = excluded.last_id, updated_at = now()`;
  }

  private async deadLetter(tx: TransactionSql, endpointId: string, entryId: string, fields: string[], reason: string): Promise<void> {
    // The entry as JSON text: whatever it holds (NUL, lone surrogates) survives as escapes.
    await tx`
      insert into log_dead_letters (id, consumer, endpoint_id, entry_id, entry_json, reason)
      values (${`${this.name}:${endpointId}:${entryId}`}, ${this.name}, ${endpointId}, ${entryId}, ${JSON.stringify(fields)}, ${toPgText(reason.slice(0, 2000)).text})
      on conflict (id) do nothing`;
  }

  /**
   * Applies again the dead letters an admin asked to retry (`POST /admin/log/dead-letters/:id/retry`):
   * one that applies now is `retried`; one that still fails is `open` again, with the new reason.
   * Looks at most every `deadLetterPollMs`.
   */
  private async retryDeadLetters(): Promise<void> {
    const now = Date.now();
    if (now - this.deadLettersReadAt < (this.options.deadLetterPollMs ?? 1000)) return;
    const { sql, consumer } = this.options;
    const rows = z.array(deadLetterRow).parse(
      await sql`select id, endpoint_id, entry_id, entry_json from log_dead_letters where consumer = ${this.name} and state = 'retrying' order by created_at limit 50`,
    );
    for (const d of rows) {
      const tenantId = this.tenants.get(d.endpoint_id);
      await sql.begin(async (tx) => {
        let reason: string | undefined;
        try {
          const fields = z.array(z.string()).parse(JSON.parse(d.entry_json));
          const entry = parseLogEntry(d.entry_id, fields);
          if (tenantId === undefined) throw new Error(`endpoint ${d.endpoint_id} is unknown`);
          await tx.savepoint((sp) => consumer.apply(sp, entry, { endpointId: d.endpoint_id, tenantId, until: parseStreamId(d.entry_id).ms }));
        } catch (err) {
          if (isTransient(err)) throw err;
          reason = errorText(err);
        }
        if (reason === undefined) await tx`update log_dead_letters set state = 'retried', resolved_at = now() where id = ${d.id}`;
        else await tx`update log_dead_letters set state = 'open', reason = ${toPgText(reason.slice(0, 2000)).text} where id = ${d.id}`;
      });
    }
    // Only once the look succeeded: a failed one (Postgres away) is tried again next round.
    this.deadLettersReadAt = now;
  }

  /** New endpoints join the read with their committed cursor (or from the start of their log). */
  private async refreshEndpoints(): Promise<void> {
    const now = Date.now();
    if (now - this.endpointsReadAt < (this.options.endpointRefreshMs ?? 2000)) return;
    const { sql } = this.options;
    // Deleted endpoints included: their logs may still hold entries to project.
    const rows = z.array(endpointRow).parse(await sql`select id, tenant_id from endpoints`);
    const fresh = rows.filter((r) => !this.tenants.has(r.id));
    if (fresh.length > 0) {
      const cursors = z.array(cursorRow).parse(await sql`select endpoint_id, last_id from log_cursors where consumer = ${this.name}`);
      for (const c of cursors) {
        const known = this.cursors.get(c.endpoint_id);
        if (known === undefined || compareStreamIds(c.last_id, known) > 0) this.cursors.set(c.endpoint_id, c.last_id);
      }
    }
    for (const r of rows) this.tenants.set(r.id, r.tenant_id);
    this.endpointsReadAt = now;
  }

  private noteLag(endpointId: string, lastReadId: string): void {
    const lagMs = Date.now() - Number(lastReadId.split("-")[0]);
    const warnMs = this.options.lagWarnMs ?? 30_000;
    if (lagMs < warnMs || Date.now() - this.lastLagWarning < 10_000) return;
    this.lastLagWarning = Date.now();
    this.options.log({ level: "warn", msg: "log consumer lagging", consumer: this.name, endpointId, lagMs });
  }
}

/**
 * A failure of Postgres or the connection (retried, nothing skipped) as opposed to one entry the
 * database refuses (set aside). SQLSTATE classes 08 connection, 40 rollback, 53 resources, 55 object
 * state, 57 operator intervention are the server's condition, not the entry's.
 */
export function isTransient(err: unknown): boolean {
  if (err instanceof postgres.PostgresError) return ["08", "40", "53", "55", "57", "58"].includes(err.code.slice(0, 2));
  // postgres.js' own connection errors (CONNECTION_CLOSED, CONNECT_TIMEOUT…) and socket errnos (ECONNREFUSED…).
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && (code.startsWith("CONNECT") || /^E[A-Z]+$/.test(code));
}

function errorText(err: unknown): string {
  if (err instanceof InvalidLogEntry) return `invalid entry: ${err.message}`;
  return err instanceof Error ? err.message : String(err);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
