import type { Redis } from "ioredis";
import type { Sql } from "postgres";
import { parseLogEntry } from "../../core/log/log-entry.ts";

/** One entry of an endpoint's log, fields as a map (`event`, `jobId`, `d`…). */
export interface RawLogEntry {
  id: string;
  event: string;
  fields: Map<string, string>;
}

/** Every entry of a log stream, oldest first, read in pages. */
export async function readLog(redis: Redis, key: string): Promise<RawLogEntry[]> {
  const out: RawLogEntry[] = [];
  let start = "-";
  for (;;) {
    const page = await redis.xrange(key, start, "+", "COUNT", 5000);
    for (const [id, raw] of page) {
      const fields = new Map<string, string>();
      for (let i = 0; i + 1 < raw.length; i += 2) fields.set(raw[i]!, raw[i + 1]!);
      out.push({ id, event: fields.get("event") ?? "", fields });
    }
    const last = page[page.length - 1];
    if (page.length < 5000 || !last) return out;
    start = `(${last[0]}`;
  }
}

/** The job ids of the log's acceptance records (`added` entries named by the API), one per entry (a duplicate accept shows up twice). */
export function acceptedJobIds(entries: RawLogEntry[]): string[] {
  return entries.flatMap((e) => {
    if (e.event !== "added") return [];
    try {
      const parsed = parseLogEntry(e.id, [...e.fields].flat());
      return parsed.kind === "accepted" ? [parsed.p.jobId] : [];
    } catch {
      return [];
    }
  });
}

/** Id of the newest entry of a log stream, or undefined when it is empty. */
export async function lastLogId(redis: Redis, key: string): Promise<string | undefined> {
  const [newest] = await redis.xrevrange(key, "+", "-", "COUNT", 1);
  return newest?.[0];
}

/** The records consumer's committed cursor on one endpoint's log, or undefined before its first batch. */
export async function recordsCursor(sql: Sql, endpointId: string): Promise<string | undefined> {
  const [row] = await sql<{ last_id: string }[]>`select last_id from log_cursors where consumer = 'records' and endpoint_id = ${endpointId}`;
  return row?.last_id;
}

/** Jobs among `ids` per status in `jobs`; ids without a row count under `missing`. */
export async function statusesOf(sql: Sql, ids: string[]): Promise<Record<string, number>> {
  const rows = await sql<{ status: string; n: number }[]>`
    select status, count(*)::int as n from jobs where id = any(${ids}::text[]) group by status`;
  const out: Record<string, number> = {};
  let found = 0;
  for (const r of rows) {
    out[r.status] = r.n;
    found += r.n;
  }
  if (found < ids.length) out.missing = ids.length - found;
  return out;
}

/**
 * Waits until every one of `ids` has a `jobs` row in `status`; on timeout the error says how the
 * rest stand, so a failure reads as a finding rather than a bare timeout.
 */
export async function waitForJobStatus(sql: Sql, ids: string[], status: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: Record<string, number> | string = {};
  for (;;) {
    try {
      last = await statusesOf(sql, ids);
      if (last[status] === ids.length) return;
    } catch (err) {
      last = String(err); // Postgres may still be coming back
    }
    if (Date.now() > deadline) throw new Error(`after ${timeoutMs}ms, ${ids.length} jobs stand ${JSON.stringify(last)}, not all ${status}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** The payloads (`d`, JSON) of a log's worker entries, oldest first: states, reasons, who logged them. */
export async function workerPayloads(redis: Redis, key: string): Promise<Array<{ workerId?: string; state?: string; reason?: string; by?: string }>> {
  return (await readLog(redis, key)).flatMap((e) => {
    const d = e.fields.get("d");
    if (d === undefined) return [];
    try {
      const p = JSON.parse(d) as Record<string, unknown>;
      return typeof p.state === "string" ? [p as { workerId?: string; state?: string; reason?: string; by?: string }] : [];
    } catch {
      return [];
    }
  });
}
