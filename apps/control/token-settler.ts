import type { Redis } from "ioredis";
import type { LogEntry } from "../../core/log/log-entry.ts";
import type { RedisKeys } from "../../core/queue/keys.ts";
import { settleHold } from "../../core/redis/rate-limit-scripts.ts";

/**
 * Settles the token holds of finished OpenAI jobs (apps/api/services/openai-admission.ts) with the
 * engine's real counts, from the job's `completed` log entry: the difference between the held
 * estimate and prompt + completion tokens goes back to (or is charged to) the tenant's and key's
 * token buckets. Exactly once per hold, however often an entry is replayed: the settling script
 * deletes the hold as it applies it. A job without counts (a handler, an engine that reported no
 * usage, a failure before generation) keeps its estimate; a job removed before it ran (cancelled,
 * purged, expired) has no completed entry and its hold expires with the estimate charged.
 */
export class TokenSettler {
  constructor(private readonly options: { redis: Redis; keys: RedisKeys }) {}

  async settle(entries: readonly LogEntry[]): Promise<void> {
    const finished = entries.filter((e): e is Extract<LogEntry, { kind: "completed" }> => e.kind === "completed");
    if (finished.length === 0) return;
    const { redis, keys } = this.options;
    const holdKeys = finished.map((e) => keys.tokenHold(e.jobId));
    // One read for the batch: most jobs hold nothing (no token limit, not an OpenAI route).
    const held = await redis.mget(...holdKeys);
    await Promise.all(
      finished.map((e, i) => {
        if (held[i] === null) return undefined;
        const g = e.result.generation;
        const real = g && (g.promptTokens !== undefined || g.completionTokens !== undefined) ? (g.promptTokens ?? 0) + (g.completionTokens ?? 0) : undefined;
        return settleHold(redis, holdKeys[i]!, real);
      }),
    );
  }
}
