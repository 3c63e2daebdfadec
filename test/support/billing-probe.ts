import { readFileSync } from "node:fs";
import type { Redis } from "ioredis";
import type { Sql } from "postgres";
import { z } from "zod";
import { EXIT_CONFIRM_GRACE_MS } from "../../core/billing/session-meter.ts";
import { compareStreamIds, parseLogEntry, parseStreamId, type WorkerPayload } from "../../core/log/log-entry.ts";
import type { RedisKeys } from "../../core/queue/keys.ts";
import { redisNowMs } from "../../core/redis/redis-clock.ts";
import { readLog } from "./event-log-probe.ts";
import { waitFor } from "./services.ts";

/**
 * What billing tests compare: worker sessions as an endpoint's log shows them (Redis' clock), the
 * ledger's charges of a session, and when a process really ended.
 */

export interface WorkerEvent {
  id: string;
  ms: number;
  p: WorkerPayload;
}

/** Every worker's `hearth:worker` entries on an endpoint's log, in log order. */
export async function workerEvents(redis: Redis, keys: RedisKeys, endpointId: string): Promise<Map<string, WorkerEvent[]>> {
  const out = new Map<string, WorkerEvent[]>();
  for (const e of await readLog(redis, keys.log(endpointId))) {
    let parsed;
    try {
      parsed = parseLogEntry(e.id, [...e.fields].flat());
    } catch {
      continue;
    }
    if (parsed.kind !== "worker") continue;
    const list = out.get(parsed.p.workerId) ?? [];
    list.push({ id: e.id, ms: parseStreamId(e.id).ms, p: parsed.p });
    out.set(parsed.p.workerId, list);
  }
  return out;
}

export interface SessionSpan {
  start: number;
  /** ms of the first `exited` or `lost`: no minute at or after it is charged as open time. */
  closingLoggedAt: number;
  /** The billing end, by the issue's rule (see core/billing/session-meter.ts). */
  end: number;
  endedBy: "scheduler exit" | "worker exit" | "lost";
  /** The weights fetch reported before the end, at most the boot span: not billed (0 for handlers). */
  weightsFetchMs: number;
  /** Seconds the session must be billed: ceil of its billable length. */
  expectedSeconds: number;
}

/**
 * The session's span as the issue defines it, from its log entries alone: from `requested` to the
 * scheduler's `exited` (the process seen gone), or to the worker's own `exited` when no scheduler's
 * came within EXIT_CONFIRM_GRACE_MS of it, or to a `lost` worker's last heartbeat. Undefined while
 * the end is not known yet (open, or a worker's own exit still within its grace at `now`).
 */
export function sessionSpan(events: readonly WorkerEvent[], now: number): SessionSpan | undefined {
  const requested = events.find((e) => e.p.state === "requested");
  if (!requested) return undefined;
  const after = events.filter((e) => compareStreamIds(e.id, requested.id) > 0);
  const closing = after.find((e) => e.p.state === "exited" || e.p.state === "lost");
  if (!closing) return undefined;
  let end: number;
  let endedBy: SessionSpan["endedBy"];
  if (closing.p.state === "lost") {
    end = Math.min(closing.ms, Math.max(requested.ms, Math.floor(closing.p.at ?? closing.ms)));
    endedBy = "lost";
  } else {
    const inGrace = after.filter((e) => e.p.state === "exited" && compareStreamIds(e.id, closing.id) >= 0 && e.ms <= closing.ms + EXIT_CONFIRM_GRACE_MS);
    const confirmed = inGrace.find((e) => e.p.by === "scheduler");
    if (confirmed) {
      end = confirmed.ms;
      endedBy = "scheduler exit";
    } else {
      if (now <= closing.ms + EXIT_CONFIRM_GRACE_MS) return undefined;
      end = inGrace[inGrace.length - 1]!.ms;
      endedBy = "worker exit";
    }
  }
  const ready = after.find((e) => e.ms < end && (e.p.state === "idle" || e.p.state === "running"));
  const reported = after.filter((e) => compareStreamIds(e.id, closing.id) < 0 && e.p.weightsFetchMs !== undefined).reduce((m, e) => Math.max(m, e.p.weightsFetchMs!), 0);
  const weightsFetchMs = Math.min(reported, (ready?.ms ?? end) - requested.ms);
  return { start: requested.ms, closingLoggedAt: closing.ms, end, endedBy, weightsFetchMs, expectedSeconds: Math.ceil((end - requested.ms - weightsFetchMs) / 1000) };
}

// `at` as ms epoch (the column is timestamptz(3)): what the billing end and minute starts are compared with.
const ledgerRow = z.object({ key: z.string(), seconds: z.number(), amount_micros: z.coerce.number(), at: z.coerce.number(), worker_id: z.string() });
export type LedgerRow = z.infer<typeof ledgerRow>;

export async function ledgerOf(sql: Sql, workerId: string): Promise<LedgerRow[]> {
  return z.array(ledgerRow).parse(await sql`select key, seconds, amount_micros, round(extract(epoch from at) * 1000)::bigint::text as at, worker_id from ledger_entries where worker_id = ${workerId} order by key`);
}

/** Waits for the session's settlement on the ledger, then returns all of its entries. */
export async function settledLedger(sql: Sql, workerId: string, timeoutMs: number): Promise<LedgerRow[]> {
  await waitFor(async () => (await sql`select 1 from ledger_entries where key = ${`session:${workerId}:settle`}`).length === 1, timeoutMs, 100);
  return ledgerOf(sql, workerId);
}

export const billedSeconds = (rows: readonly LedgerRow[]) => rows.reduce((s, r) => s + r.seconds, 0);
export const minuteOf = (key: string) => Number(/:minute:(\d+)$/.exec(key)?.[1] ?? NaN);
export const minuteRows = (rows: readonly LedgerRow[]) => rows.filter((r) => r.key.includes(":minute:")).sort((a, b) => minuteOf(a.key) - minuteOf(b.key));

/** False once the process is gone or a zombie (its parent, killed, may leave reaping to an init that is slow or absent). */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

/**
 * Watches a process until it ends and brackets the moment on Redis' clock: it was still running at
 * `lastAliveMs` and gone by `goneByMs` (the true end of the session lies between them).
 */
export async function watchEnd(redis: Redis, pid: number, timeoutMs: number): Promise<{ lastAliveMs: number; goneByMs: number }> {
  const deadline = Date.now() + timeoutMs;
  let lastAliveMs = await redisNowMs(redis);
  for (;;) {
    const before = await redisNowMs(redis);
    const running = alive(pid);
    const after = await redisNowMs(redis);
    if (!running) return { lastAliveMs, goneByMs: after };
    lastAliveMs = before;
    if (Date.now() > deadline) throw new Error(`process ${pid} still running after ${timeoutMs}ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

