import type { Redis } from "ioredis";
import type { Sql } from "postgres";
import { z } from "zod";
import { outputLine, type OutputLine } from "../../../core/contracts/output-line.ts";
import type { RedisKeys } from "../../../core/queue/keys.ts";

/**
 * Reads what the scheduler kept of workers' output (scheduler/worker-output.ts): a worker's last
 * lines, and the lines its worker logged about one job. Ownership is the route's to check.
 */
export class OutputLogs {
  constructor(
    private readonly redis: Redis,
    private readonly sql: Sql,
    private readonly keys: RedisKeys,
  ) {}

  /** The last `tail` lines of the worker, oldest first; undefined when no such session of the endpoint is known. */
  async worker(endpointId: string, workerId: string, tail: number): Promise<OutputLine[] | undefined> {
    const lines = await this.read(this.keys.workerOutput(endpointId, workerId), tail);
    if (lines.length > 0) return lines;
    const known = z.array(z.object({})).parse(await this.sql`select 1 from worker_sessions where id = ${workerId} and endpoint_id = ${endpointId} limit 1`);
    return known.length > 0 ? lines : undefined;
  }

  /** The last `tail` lines logged about the job, oldest first. */
  job(endpointId: string, jobId: string, tail: number): Promise<OutputLine[]> {
    return this.read(this.keys.jobOutput(endpointId, jobId), tail);
  }

  private async read(key: string, tail: number): Promise<OutputLine[]> {
    const raw = await this.redis.lrange(key, -tail, -1);
    const lines: OutputLine[] = [];
    for (const entry of raw) {
      // An entry that does not parse is skipped: one damaged line must not hide the others.
      const parsed = outputLine.safeParse(safeJson(entry));
      if (parsed.success) lines.push(parsed.data);
    }
    return lines;
  }
}

function safeJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return undefined;
  }
}
